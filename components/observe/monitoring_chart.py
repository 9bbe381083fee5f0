"""What swarmstack relies on in the `kube-prometheus-stack` Helm chart, at the release it was read.

`components.observe.monitoring.monitoring_values` renders Helm values for one chart version,
`CHART_VERSION`. Every value key path it may set is listed in `VALUE_KEYS` with what the
chart does with it at that release, as read in the release's `values.yaml`, the templates
that consume the keys (`templates/prometheus/prometheus.yaml`,
`templates/alertmanager/alertmanager.yaml` and `secret.yaml`, `templates/_helpers.tpl`) and
the values of the sub-charts it pins (kube-state-metrics 8.4.0, prometheus-node-exporter
4.56.1, grafana 12.11.1). A test holds every key path the component renders to this list,
and the stack config accepts no other chart version: moving the pin means reading the new
release's chart, updating the meanings below, then `CHART_VERSION`.

Checked at 88.5.3 (2026-08-21, the latest 88.x; prometheus-operator v0.93.1, Prometheus
v3.14.0, Alertmanager v0.34.0):

- Selectors: with `*SelectorNilUsesHelmValues: true` (the default) and no selector, the
  chart renders `matchLabels: {release: <release>}`, which every chart of the release sets.
  A non-empty `serviceMonitorSelector` / `podMonitorSelector` / `ruleSelector` is rendered
  as given; the namespace selectors render `{}` when empty, which the operator reads as
  every namespace (nil would be its own namespace only).
- `commonLabels` goes through the `kube-prometheus-stack.labels` helper onto every object
  of the chart itself, its own ServiceMonitors (kubelet, API server, CoreDNS, operator,
  Prometheus, Alertmanager) and PrometheusRules included; the sub-charts' monitors take
  their labels from their own `additionalLabels` / `labels` keys.
- `alertmanager.config` is written as a whole into the Alertmanager's configuration Secret
  (lists are replaced, maps merged with the chart's default: swarmstack gives every key).
- `alertmanager.alertmanagerSpec.secrets` mounts each named Secret of the release's
  namespace at `/etc/alertmanager/secrets/<name>/`: receivers read their URLs and keys from
  there through Alertmanager's `*_file` fields, so no secret is in the Helm values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from components import chart_values
from components.chart_values import ValueKey

CHART = "kube-prometheus-stack"
CHART_VERSION = "88.5.3"
CHART_REPOSITORY = "https://prometheus-community.github.io/helm-charts"


_PROM = "prometheus.prometheusSpec"
_AM = "alertmanager.alertmanagerSpec"


def _selector_keys(kind: str, key: str) -> dict[str, ValueKey]:
    return {
        f"{_PROM}.{key}SelectorNilUsesHelmValues": ValueKey(
            "scalar",
            f"false: without {key}Selector Prometheus would select every {kind}; true (the "
            "default) selects only those labelled release=<release>",
        ),
        f"{_PROM}.{key}Selector": ValueKey(
            "map", f"LabelSelector of the {kind}s Prometheus loads (Prometheus spec.{key}Selector)"
        ),
        f"{_PROM}.{key}NamespaceSelector": ValueKey(
            "map",
            f"namespaces searched for {kind}s; {{}} is every namespace (Prometheus "
            f"spec.{key}NamespaceSelector)",
        ),
    }


VALUE_KEYS: dict[str, ValueKey] = {
    "crds.enabled": ValueKey(
        "scalar", "true: the chart installs the monitoring.coreos.com CRDs (crds sub-chart)"
    ),
    "commonLabels": ValueKey(
        "map", "labels on every object the chart itself renders, its monitors and rules included"
    ),
    f"{_PROM}.retention": ValueKey(
        "scalar", "how long Prometheus keeps samples (Prometheus spec.retention, e.g. 15d)"
    ),
    f"{_PROM}.retentionSize": ValueKey(
        "scalar",
        "the most the TSDB may use before the oldest blocks go (spec.retentionSize, e.g. 45GB)",
    ),
    f"{_PROM}.storageSpec": ValueKey(
        "map",
        "Prometheus spec.storage: a volumeClaimTemplate gives each replica a PersistentVolumeClaim "
        "(without it the TSDB is an emptyDir and is lost with the pod)",
    ),
    **_selector_keys("ServiceMonitor", "serviceMonitor"),
    **_selector_keys("PodMonitor", "podMonitor"),
    **_selector_keys("PrometheusRule", "rule"),
    "alertmanager.config": ValueKey(
        "map",
        "the whole Alertmanager configuration (global, route, receivers, inhibit_rules, "
        "templates), rendered into its configuration Secret",
    ),
    f"{_AM}.secrets": ValueKey(
        "list",
        "Secrets of the release namespace mounted at /etc/alertmanager/secrets/<name>/ "
        "(Alertmanager spec.secrets)",
    ),
    f"{_AM}.storage": ValueKey(
        "map",
        "Alertmanager spec.storage: a volumeClaimTemplate keeps silences and the notification "
        "log across restarts",
    ),
    "grafana.admin.existingSecret": ValueKey(
        "scalar",
        "Secret with the admin user and password; the chart then generates no password of its "
        "own (grafana sub-chart `admin`)",
    ),
    "grafana.admin.userKey": ValueKey("scalar", "key of the admin user name in that Secret"),
    "grafana.admin.passwordKey": ValueKey("scalar", "key of the admin password in that Secret"),
    "grafana.sidecar.dashboards.enabled": ValueKey(
        "scalar", "true: the sidecar loads dashboards from labelled ConfigMaps"
    ),
    "grafana.sidecar.dashboards.label": ValueKey(
        "scalar", "label key a dashboard ConfigMap carries"
    ),
    "grafana.sidecar.dashboards.labelValue": ValueKey(
        "scalar", "value of that label (empty would accept any value)"
    ),
    "grafana.sidecar.dashboards.searchNamespace": ValueKey(
        "scalar", "ALL: the sidecar watches ConfigMaps in every namespace"
    ),
    "grafana.serviceMonitor.labels": ValueKey(
        "map", "labels on Grafana's own ServiceMonitor (grafana sub-chart)"
    ),
    "kube-state-metrics.metricLabelsAllowlist": ValueKey(
        "list",
        "resource=[label,...] entries: kube-state-metrics exports those Kubernetes labels on "
        "kube_<resource>_labels (e.g. nodes=[nvidia.com/mig.config.state] gives "
        "kube_node_labels{label_nvidia_com_mig_config_state=...})",
    ),
    "kube-state-metrics.prometheus.monitor.additionalLabels": ValueKey(
        "map", "labels on kube-state-metrics' ServiceMonitor"
    ),
    "prometheus-node-exporter.prometheus.monitor.additionalLabels": ValueKey(
        "map", "labels on node-exporter's ServiceMonitor"
    ),
}


def value_key_paths(values: Mapping[str, Any]) -> Iterator[str]:
    """Every dotted key path of these Helm values, down to scalars, lists and recorded maps."""
    return chart_values.value_key_paths(values, VALUE_KEYS)


def unchecked_value_paths(values: Mapping[str, Any]) -> list[str]:
    """Key paths of `values` that were not checked against the chart at CHART_VERSION."""
    return chart_values.unchecked_value_paths(values, VALUE_KEYS)
