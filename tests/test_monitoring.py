# pyright: strict
"""The monitoring release: typed spec, values held to the pinned chart, the component under
mocks, and the secrets it reads staying out of the values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components.observe.monitoring import (
    GRAFANA_ADMIN_SECRET,
    RECEIVERS_SECRET,
    AlertmanagerSpec,
    Monitoring,
    MonitoringArgs,
    MonitoringSecrets,
    MonitoringSpec,
    alertmanager_config,
    monitoring_values,
)
from components.observe.monitoring_chart import (
    CHART_VERSION,
    VALUE_KEYS,
    unchecked_value_paths,
    value_key_paths,
)
from components.observe.selection import DASHBOARD_LABEL, STACK_MONITOR_LABELS
from components.specs import CostLabels
from stacks.config import ConfigError, load_file
from stacks.plan.recorder import REDACTED, run

ROOT = Path(__file__).resolve().parent.parent
COST = CostLabels(team="agents", cost_center="cc-1", environment="test")
SLACK_URL = "https://hooks.example.invalid/services/not-a-real-hook"
ALL_RECEIVERS: dict[str, Any] = {
    "alertmanager": {
        "receivers": [
            {"name": "chat", "type": "slack", "channel": "#alerts"},
            {"name": "pager", "type": "pagerduty", "severities": ["critical"]},
            {"name": "hook", "type": "webhook", "sendResolved": False},
        ]
    }
}


def spec(raw: dict[str, Any] | None = None) -> MonitoringSpec:
    return MonitoringSpec.model_validate(raw or {})


def renderings() -> list[dict[str, Any]]:
    return [monitoring_values(spec()), monitoring_values(spec(ALL_RECEIVERS))]


# --------------------------------------------------------------------------- chart pin


def test_every_rendered_key_path_was_checked_against_the_pinned_chart() -> None:
    for values in renderings():
        assert unchecked_value_paths(values) == []


def test_every_recorded_key_is_one_the_component_renders() -> None:
    rendered = {p for values in renderings() for p in value_key_paths(values)}
    assert rendered == set(VALUE_KEYS)


def test_an_unrecorded_key_is_reported() -> None:
    values = monitoring_values(spec())
    values["prometheus"]["prometheusSpec"]["retentionTime"] = "15d"
    assert unchecked_value_paths(values) == ["prometheus.prometheusSpec.retentionTime"]


# --------------------------------------------------------------------------- values


def test_prometheus_selects_exactly_the_stacks_monitors_and_rules_in_every_namespace() -> None:
    prom = monitoring_values(spec())["prometheus"]["prometheusSpec"]
    for key in ("serviceMonitor", "podMonitor", "rule"):
        assert prom[f"{key}Selector"] == {"matchLabels": STACK_MONITOR_LABELS}
        assert prom[f"{key}SelectorNilUsesHelmValues"] is False
        assert prom[f"{key}NamespaceSelector"] == {}


def test_the_charts_own_monitors_carry_the_stack_label() -> None:
    values = monitoring_values(spec())
    assert values["commonLabels"] == STACK_MONITOR_LABELS
    ksm = values["kube-state-metrics"]["prometheus"]["monitor"]["additionalLabels"]
    node = values["prometheus-node-exporter"]["prometheus"]["monitor"]["additionalLabels"]
    assert ksm == node == values["grafana"]["serviceMonitor"]["labels"] == STACK_MONITOR_LABELS


def test_retention_and_encrypted_volume() -> None:
    prom = monitoring_values(spec({"prometheus": {"retentionDays": 30, "volumeSizeGib": 200}}))
    p = prom["prometheus"]["prometheusSpec"]
    assert p["retention"] == "30d"
    assert p["retentionSize"] == "180GB"  # 90% of the volume
    claim = p["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"] == "gp3"  # the cluster's encrypted default class
    assert claim["resources"] == {"requests": {"storage": "200Gi"}}


def test_grafana_reads_its_password_from_a_secret_and_loads_labelled_dashboards() -> None:
    grafana = monitoring_values(spec())["grafana"]
    assert grafana["admin"]["existingSecret"] == GRAFANA_ADMIN_SECRET
    dashboards = grafana["sidecar"]["dashboards"]
    assert (dashboards["label"], dashboards["labelValue"]) == DASHBOARD_LABEL
    assert dashboards["searchNamespace"] == "ALL"


def test_kube_state_metrics_exports_the_mig_state_node_label() -> None:
    allow = monitoring_values(spec())["kube-state-metrics"]["metricLabelsAllowlist"]
    assert len(allow) == 1 and allow[0].startswith("nodes=[")
    assert "nvidia.com/mig.config.state" in allow[0][len("nodes=[") : -1].split(",")


def test_receivers_read_their_secrets_from_mounted_files() -> None:
    am = AlertmanagerSpec.model_validate(ALL_RECEIVERS["alertmanager"])
    config = alertmanager_config(am)
    by_name = {r["name"]: r for r in config["receivers"]}
    base = f"/etc/alertmanager/secrets/{RECEIVERS_SECRET}"
    assert by_name["chat"]["slack_configs"] == [
        {"api_url_file": f"{base}/slack-api-url", "send_resolved": True, "channel": "#alerts"}
    ]
    assert by_name["pager"]["pagerduty_configs"][0]["routing_key_file"] == (
        f"{base}/pagerduty-routing-key"
    )
    assert by_name["hook"]["webhook_configs"] == [
        {"url_file": f"{base}/webhook-url", "send_resolved": False}
    ]
    routes = {r["receiver"]: r for r in config["route"]["routes"]}
    assert routes["pager"]["matchers"] == ['severity =~ "critical"']
    assert routes["chat"]["matchers"] == ['severity =~ "critical|warning"']
    values = monitoring_values(spec(ALL_RECEIVERS))
    assert values["alertmanager"]["alertmanagerSpec"]["secrets"] == [RECEIVERS_SECRET]


# --------------------------------------------------------------------------- bad config


def _pilot_with(tmp_path: Path, monitoring: dict[str, Any]) -> Path:
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.pilot.yaml").read_text())
    doc["config"]["swarmstack:observability"] = {"monitoring": monitoring}
    path = tmp_path / "Pulumi.pilot.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    ("monitoring", "expected"),
    [
        (
            {"chartVersion": "88.4.0"},
            "observability.monitoring.chartVersion: '88.4.0' is not the kube-prometheus-stack "
            f"chart version swarmstack's Helm values were checked against ({CHART_VERSION})",
        ),
        (
            {"alertmanager": {"receivers": [{"name": "chat", "type": "slack"}]}},
            "observability.monitoring.alertmanager.receivers[0]: channel is required for a "
            "slack receiver",
        ),
        (
            {
                "alertmanager": {
                    "receivers": [
                        {"name": "a", "type": "webhook"},
                        {"name": "b", "type": "webhook"},
                    ]
                }
            },
            "observability.monitoring.alertmanager.receivers: more than one webhook receiver",
        ),
        (
            {"kubeStateMetrics": {"nodeLabels": ["nvidia.com/mig.config"]}},
            "observability.monitoring.kubeStateMetrics.nodeLabels: must include "
            "nvidia.com/mig.config.state",
        ),
        (
            {"prometheus": {"retentionDays": 0}},
            "observability.monitoring.prometheus.retentionDays: 0 is not valid: Input should be "
            "greater than or equal to 1",
        ),
    ],
)
def test_bad_monitoring_config_names_the_path_and_the_value(
    tmp_path: Path, monitoring: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_file(_pilot_with(tmp_path, monitoring))
    assert expected in str(err.value)


# --------------------------------------------------------------------------- component


def test_component_declares_the_release_and_its_secrets_without_values_in_clear() -> None:
    monitoring = spec(ALL_RECEIVERS)

    def program() -> None:
        Monitoring(
            "monitoring",
            MonitoringArgs(
                spec=monitoring,
                namespace="swarmstack-monitoring",
                cost_labels=COST,
                secrets=MonitoringSecrets(
                    grafana_admin_password=pulumi.Output.secret("grafana-pass-not-real"),
                    receivers={
                        "slack": pulumi.Output.secret(SLACK_URL),
                        "pagerduty": pulumi.Output.secret("routing-key-not-real"),
                        "webhook": pulumi.Output.secret("https://hook.example.invalid/x"),
                    },
                ),
            ),
        )

    capture = run(program)
    by_type: dict[str, list[Any]] = {}
    for r in capture.registrations:
        by_type.setdefault(r.type, []).append(r)
    [component] = by_type["swarmstack:observe:Monitoring"]
    [release] = by_type["kubernetes:helm.sh/v3:Release"]
    assert release.parent == component.urn
    assert release.inputs["chart"] == "kube-prometheus-stack"
    assert release.inputs["version"] == CHART_VERSION
    assert release.inputs["name"] == "monitoring"
    assert release.inputs["namespace"] == "swarmstack-monitoring"
    secrets = {r.inputs["metadata"]["name"]: r for r in by_type["kubernetes:core/v1:Secret"]}
    assert set(secrets) == {GRAFANA_ADMIN_SECRET, RECEIVERS_SECRET}
    assert secrets[RECEIVERS_SECRET].inputs["stringData"] == {
        "slack-api-url": REDACTED,
        "pagerduty-routing-key": REDACTED,
        "webhook-url": REDACTED,
    }
    assert secrets[GRAFANA_ADMIN_SECRET].inputs["stringData"]["admin-password"] == REDACTED
    everything = json.dumps([r.inputs for r in capture.registrations])
    for value in ("grafana-pass-not-real", "not-a-real-hook", "routing-key-not-real"):
        assert value not in everything
    assert release.dependencies  # after both Secrets
