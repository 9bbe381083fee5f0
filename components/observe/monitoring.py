"""The monitoring release: kube-prometheus-stack (Prometheus, Alertmanager, Grafana,
kube-state-metrics, node exporter) as one pinned Helm release, and the Secrets it reads.

What the release renders is decided by `monitoring_values`, a pure function of the typed
`MonitoringSpec`; `components/observe/monitoring_chart.py` records what every key it sets
means at the pinned chart version. No secret is a Helm value:

- Grafana's admin user and password are a Secret (`GRAFANA_ADMIN_SECRET`) that
  `grafana.admin.existingSecret` names.
- Alertmanager's receivers read their webhook URLs and routing keys from the files of one
  Secret (`RECEIVERS_SECRET`) mounted through `alertmanagerSpec.secrets`, with Alertmanager's
  `api_url_file` / `routing_key_file` / `url_file` fields.

Prometheus loads exactly the ServiceMonitors, PodMonitors and PrometheusRules labelled
`STACK_MONITOR_LABELS`, in every namespace; the chart's own monitors and rules get that
label too (`commonLabels` and the sub-charts' label keys), so the platform's Kubernetes
metrics (kube-state-metrics with the MIG node labels, node exporter, kubelet) keep flowing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, field_validator, model_validator

from components.compute.cluster import DEFAULT_STORAGE_CLASS
from components.compute.nodes import POOL_LABEL
from components.observe.monitoring_chart import CHART, CHART_REPOSITORY, CHART_VERSION
from components.observe.monitors import declare_monitor
from components.observe.selection import (
    DASHBOARD_LABEL,
    MONITORING_RELEASE,
    STACK_MONITOR_LABELS,
)
from components.specs import CostLabels, DnsLabel, Spec

GRAFANA_ADMIN_SECRET = "grafana-admin"
GRAFANA_USER_KEY = "admin-user"
GRAFANA_PASSWORD_KEY = "admin-password"
RECEIVERS_SECRET = "alertmanager-receivers"
# Where the operator mounts a Secret named in alertmanagerSpec.secrets.
SECRETS_DIR = "/etc/alertmanager/secrets"
# The node labels kube-state-metrics always exports: MIG state is what the GPU alerts read.
MIG_STATE_LABEL = "nvidia.com/mig.config.state"

ReceiverType = Literal["slack", "pagerduty", "webhook"]
Severity = Literal["critical", "warning", "info"]

# The file (Secret key) each receiver type reads its secret from, and the Alertmanager
# field that names the file.
RECEIVER_SECRET_FIELD: dict[ReceiverType, tuple[str, str]] = {
    "slack": ("slack-api-url", "api_url_file"),
    "pagerduty": ("pagerduty-routing-key", "routing_key_file"),
    "webhook": ("webhook-url", "url_file"),
}


class PrometheusSpec(Spec):
    retention_days: int = Field(
        default=15, ge=1, le=365, description="Days of samples Prometheus keeps."
    )
    volume_size_gib: int = Field(
        default=50,
        ge=5,
        le=16384,
        description="Prometheus' persistent volume, GiB. The TSDB is capped at 90% of it "
        "(retentionSize), so a full volume drops the oldest samples instead of crashing.",
    )
    storage_class: DnsLabel = Field(
        default=DEFAULT_STORAGE_CLASS,
        description="StorageClass of the Prometheus and Alertmanager volumes. The cluster "
        "declares `gp3` as its default, encrypted class; on an existing cluster name an "
        "encrypted class it has.",
    )


class ReceiverSpec(Spec):
    """Where Alertmanager sends alerts; its URL or key is a Pulumi secret (see README)."""

    name: DnsLabel = Field(description="Receiver name (unique).")
    type: ReceiverType = Field(
        description="`slack` (incoming webhook URL from secret alertmanagerSlackApiUrl), "
        "`pagerduty` (Events API v2 routing key from alertmanagerPagerdutyRoutingKey) or "
        "`webhook` (URL from alertmanagerWebhookUrl)."
    )
    channel: str | None = Field(
        default=None,
        pattern=r"^[#@]?[a-z0-9][a-z0-9._-]{0,79}$",
        description="Slack channel (slack only, required there).",
    )
    severities: list[Severity] = Field(
        default_factory=lambda: list[Severity](["critical", "warning"]),
        min_length=1,
        description="Alert severities routed to this receiver.",
    )
    send_resolved: bool = Field(default=True, description="Also notify when an alert resolves.")

    @model_validator(mode="after")
    def _channel(self) -> ReceiverSpec:
        if self.type == "slack" and self.channel is None:
            raise ValueError("channel is required for a slack receiver")
        if self.type != "slack" and self.channel is not None:
            raise ValueError(f"channel is for slack receivers only, not {self.type}")
        return self


class AlertmanagerSpec(Spec):
    receivers: list[ReceiverSpec] = Field(
        default_factory=list[ReceiverSpec],
        description="Notification receivers, at most one of each type (each reads its own "
        "secret config key). None: alerts are only visible in Alertmanager and Grafana.",
    )
    volume_size_gib: int = Field(
        default=5, ge=1, le=100, description="Alertmanager's volume (silences, log), GiB."
    )

    @field_validator("receivers")
    @classmethod
    def _one_per_type(cls, receivers: list[ReceiverSpec]) -> list[ReceiverSpec]:
        types = Counter(r.type for r in receivers)
        names = Counter(r.name for r in receivers)
        twice = sorted(t for t, n in types.items() if n > 1)
        if twice:
            raise ValueError(
                f"more than one {', '.join(twice)} receiver: each type reads one secret "
                "config key, so at most one receiver of each type"
            )
        if any(n > 1 for n in names.values()):
            raise ValueError("receiver names must be unique")
        return receivers


class GrafanaSpec(Spec):
    admin_user: DnsLabel = Field(
        default="admin",
        description="Grafana admin user; its password is the secret grafanaAdminPassword.",
    )


class KubeStateMetricsSpec(Spec):
    node_labels: list[str] = Field(
        default_factory=lambda: [
            MIG_STATE_LABEL,
            "nvidia.com/mig.config",
            "nvidia.com/gpu.product",
            "node.kubernetes.io/instance-type",
            "topology.kubernetes.io/zone",
            POOL_LABEL,
        ],
        min_length=1,
        description="Node labels exported on kube_node_labels (must include "
        f"{MIG_STATE_LABEL}, which the MIG alerts read).",
    )

    @field_validator("node_labels")
    @classmethod
    def _mig_state(cls, labels: list[str]) -> list[str]:
        if MIG_STATE_LABEL not in labels:
            raise ValueError(f"must include {MIG_STATE_LABEL} (the MIG alerts read it)")
        bad = [lbl for lbl in labels if not lbl or any(c in lbl for c in ",[] ")]
        if bad:
            raise ValueError(f"{bad} are not label keys")
        return labels


class MonitoringSpec(Spec):
    """The kube-prometheus-stack release."""

    chart_version: str = Field(
        default=CHART_VERSION,
        description=f"kube-prometheus-stack chart version. Only {CHART_VERSION} is accepted: "
        "the Helm values swarmstack renders were checked against that release's chart.",
        json_schema_extra={"enum": [CHART_VERSION]},
    )
    repository: str = Field(default=CHART_REPOSITORY, description="Helm repository URL.")
    prometheus: PrometheusSpec = Field(
        default_factory=PrometheusSpec, description="Retention and storage."
    )
    alertmanager: AlertmanagerSpec = Field(
        default_factory=AlertmanagerSpec, description="Receivers and storage."
    )
    grafana: GrafanaSpec = Field(default_factory=GrafanaSpec, description="Grafana admin.")
    kube_state_metrics: KubeStateMetricsSpec = Field(
        default_factory=KubeStateMetricsSpec, description="Exported node labels."
    )

    @field_validator("chart_version")
    @classmethod
    def _checked_chart(cls, version: str) -> str:
        if version != CHART_VERSION:
            raise ValueError(
                f"{version!r} is not the {CHART} chart version swarmstack's Helm values were "
                f"checked against ({CHART_VERSION}); another version needs its values.yaml read "
                "again and components/observe/monitoring_chart.py updated first"
            )
        return version


# --------------------------------------------------------------------------- pure rendering


def receiver_config(receiver: ReceiverSpec) -> dict[str, Any]:
    """One Alertmanager receiver; its secret is a file of the mounted receivers Secret."""
    key, file_field = RECEIVER_SECRET_FIELD[receiver.type]
    entry: dict[str, Any] = {
        file_field: f"{SECRETS_DIR}/{RECEIVERS_SECRET}/{key}",
        "send_resolved": receiver.send_resolved,
    }
    if receiver.type == "slack":
        entry["channel"] = receiver.channel
    return {"name": receiver.name, f"{receiver.type}_configs": [entry]}


def alertmanager_config(spec: AlertmanagerSpec) -> dict[str, Any]:
    """The whole Alertmanager configuration: each receiver gets the severities it asked for;
    everything else (and the always-firing Watchdog) goes to the `null` receiver."""
    routes: list[dict[str, Any]] = [{"receiver": "null", "matchers": ['alertname = "Watchdog"']}]
    routes += [
        {
            "receiver": r.name,
            "matchers": [f'severity =~ "{"|".join(r.severities)}"'],
            "continue": True,
        }
        for r in spec.receivers
    ]
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "null",
            "group_by": ["namespace", "alertname"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "12h",
            "routes": routes,
        },
        "receivers": [{"name": "null"}, *(receiver_config(r) for r in spec.receivers)],
        "inhibit_rules": [
            {
                "source_matchers": ["severity = critical"],
                "target_matchers": ["severity =~ warning|info"],
                "equal": ["namespace", "alertname"],
            }
        ],
        "templates": ["/etc/alertmanager/config/*.tmpl"],
    }


def _volume(storage_class: str, size_gib: int) -> dict[str, Any]:
    return {
        "volumeClaimTemplate": {
            "spec": {
                "storageClassName": storage_class,
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": f"{size_gib}Gi"}},
            }
        }
    }


def monitoring_values(spec: MonitoringSpec) -> dict[str, Any]:
    """Helm values of kube-prometheus-stack at CHART_VERSION (no secret among them)."""
    labels = dict(STACK_MONITOR_LABELS)
    selector = {"matchLabels": labels}
    prom = spec.prometheus
    prometheus_spec: dict[str, Any] = {
        "retention": f"{prom.retention_days}d",
        "retentionSize": f"{prom.volume_size_gib * 9 // 10}GB",
        "storageSpec": _volume(prom.storage_class, prom.volume_size_gib),
    }
    for key in ("serviceMonitor", "podMonitor", "rule"):
        prometheus_spec[f"{key}SelectorNilUsesHelmValues"] = False
        prometheus_spec[f"{key}Selector"] = selector
        prometheus_spec[f"{key}NamespaceSelector"] = {}
    dash_key, dash_value = DASHBOARD_LABEL
    return {
        "crds": {"enabled": True},
        "commonLabels": labels,
        "prometheus": {"prometheusSpec": prometheus_spec},
        "alertmanager": {
            "config": alertmanager_config(spec.alertmanager),
            "alertmanagerSpec": {
                "secrets": [RECEIVERS_SECRET],
                "storage": _volume(prom.storage_class, spec.alertmanager.volume_size_gib),
            },
        },
        "grafana": {
            "admin": {
                "existingSecret": GRAFANA_ADMIN_SECRET,
                "userKey": GRAFANA_USER_KEY,
                "passwordKey": GRAFANA_PASSWORD_KEY,
            },
            "sidecar": {
                "dashboards": {
                    "enabled": True,
                    "label": dash_key,
                    "labelValue": dash_value,
                    "searchNamespace": "ALL",
                }
            },
            "serviceMonitor": {"labels": labels},
        },
        "kube-state-metrics": {
            "metricLabelsAllowlist": [f"nodes=[{','.join(spec.kube_state_metrics.node_labels)}]"],
            "prometheus": {"monitor": {"additionalLabels": labels}},
        },
        "prometheus-node-exporter": {"prometheus": {"monitor": {"additionalLabels": labels}}},
    }


# --------------------------------------------------------------------------- component


@dataclass(frozen=True)
class MonitoringSecrets:
    """The Pulumi secrets the release reads (a receiver type not configured is absent)."""

    grafana_admin_password: pulumi.Output[str]
    receivers: Mapping[ReceiverType, pulumi.Output[str]]


@dataclass(frozen=True)
class MonitoringArgs:
    spec: MonitoringSpec
    namespace: pulumi.Input[str]  # the monitoring namespace (created by Tenancy)
    cost_labels: CostLabels
    secrets: MonitoringSecrets
    # ServiceMonitor / PodMonitor bodies (components/observe/monitors.py) declared once the
    # release has installed their CRDs.
    monitors: Sequence[Mapping[str, Any]] = ()
    depends_on: Sequence[pulumi.Resource] = ()


class Monitoring(pulumi.ComponentResource):
    """kube-prometheus-stack and the two Secrets it reads, in the monitoring namespace."""

    release: k8s.helm.v3.Release
    release_name: pulumi.Output[str]
    monitors: list[k8s.apiextensions.CustomResource]

    def __init__(
        self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("swarmstack:observe:Monitoring", name, None, opts)
        spec, labels = args.spec, args.cost_labels.as_labels()
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))

        def meta(secret: str) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=secret, namespace=args.namespace, labels=labels)

        grafana = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata=meta(GRAFANA_ADMIN_SECRET),
            type="Opaque",
            string_data=args.secrets.grafana_admin_password.apply(
                lambda p: {GRAFANA_USER_KEY: spec.grafana.admin_user, GRAFANA_PASSWORD_KEY: p}
            ),
            opts=child,
        )
        types: list[ReceiverType] = sorted({r.type for r in spec.alertmanager.receivers})
        files = pulumi.Output.all(*(args.secrets.receivers[t] for t in types)).apply(
            lambda values: {
                RECEIVER_SECRET_FIELD[t][0]: str(v) for t, v in zip(types, values, strict=True)
            }
        )
        receivers = k8s.core.v1.Secret(
            f"{name}-receivers",
            metadata=meta(RECEIVERS_SECRET),
            type="Opaque",
            string_data=files,
            opts=child,
        )
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            k8s.helm.v3.ReleaseArgs(
                name=MONITORING_RELEASE,
                chart=CHART,
                version=spec.chart_version,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=spec.repository),
                namespace=args.namespace,
                values=monitoring_values(spec),
                cleanup_on_fail=True,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[grafana, receivers]),
        )
        self.release_name = self.release.name.apply(lambda n: n or MONITORING_RELEASE)
        after_release = pulumi.ResourceOptions(
            parent=self, depends_on=[self.release, *args.depends_on]
        )
        self.monitors = [
            declare_monitor(
                f"{name}-{body['kind'].lower()}-{body['metadata']['name']}", body, after_release
            )
            for body in args.monitors
        ]
        self.register_outputs(
            {
                "release": self.release_name,
                "chartVersion": spec.chart_version,
                "monitors": [
                    f"{b['metadata']['namespace']}/{b['metadata']['name']}" for b in args.monitors
                ],
            }
        )
