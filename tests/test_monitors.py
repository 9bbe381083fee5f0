# pyright: strict
"""The monitor builder, the monitors the pilot declares, and the plan's monitoring checks:
the prometheus-operator CRD schemas (the npm package's own validators, run by Node), what
each monitor selects, and whether NetworkPolicies let Prometheus reach it."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.observe.monitors import Endpoint, MonitorTarget, SecretKey, monitor_body
from components.observe.selection import PROMETHEUS_POD_LABELS, STACK_MONITOR_LABELS
from stacks.cli import EXIT_CONFIG, main
from stacks.config import StackConfig, load_file
from stacks.observability import stack_monitors
from stacks.plan.model import Manifest, Plan
from stacks.plan.monitoring_checks import (
    check_monitoring_schemas,
    check_monitors,
    prometheus_operator_problems,
)
from stacks.plan.recorder import Capture, Registration
from stacks.plan.runner import read_program_input, run_program

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pilot() -> StackConfig:
    return load_file(ROOT / "stacks" / "Pulumi.pilot.yaml")


@pytest.fixture(scope="module")
def pilot_plan() -> Plan:
    return Plan.from_capture(run_program(read_program_input(ROOT, "pilot")))


# --------------------------------------------------------------------------- builder


def test_builder_labels_every_monitor_for_the_release_and_keeps_its_namespace() -> None:
    body = monitor_body(
        MonitorTarget("PodMonitor", "store", "data", {"app": "store"}, (Endpoint("metrics"),)),
        {"team": "agents", **{k: "overridden" for k in STACK_MONITOR_LABELS}},
    )
    assert body["metadata"]["labels"] == {"team": "agents", **STACK_MONITOR_LABELS}
    assert body["spec"] == {
        "selector": {"matchLabels": {"app": "store"}},
        "namespaceSelector": {"matchNames": ["data"]},
        "podMetricsEndpoints": [
            {"port": "metrics", "path": "/metrics", "scheme": "http", "interval": "30s"}
        ],
    }


def test_builder_renders_bearer_auth_and_tls() -> None:
    endpoint = Endpoint(
        "http",
        scheme="https",
        bearer_token=SecretKey("keys", "read-only"),
        ca=SecretKey("store-tls", "ca.crt"),
        server_name="store.data.svc",
    ).render()
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "keys", "key": "read-only"},
    }
    assert endpoint["tlsConfig"] == {
        "ca": {"secret": {"name": "store-tls", "key": "ca.crt"}},
        "serverName": "store.data.svc",
    }


def test_builder_refuses_an_empty_selector() -> None:
    with pytest.raises(ValueError, match="empty selector would select everything"):
        MonitorTarget("ServiceMonitor", "x", "ns", {}, (Endpoint("http"),))


def test_the_pilot_monitors_each_workload_kind(pilot: StackConfig) -> None:
    monitors = {(b["kind"], b["metadata"]["name"]): b for b in stack_monitors(pilot)}
    assert set(monitors) == {
        ("PodMonitor", "model-servers"),
        ("PodMonitor", "agents"),
        ("PodMonitor", "model-gateway"),
        ("PodMonitor", "model-gateway-db"),
        ("PodMonitor", "kafka"),
        ("PodMonitor", "session-store"),
        ("PodMonitor", "vector-store"),
    }
    agents = monitors[("PodMonitor", "agents")]
    assert agents["metadata"]["namespace"] == "swarmstack-agents"
    assert agents["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/component": "agent"}}
    assert agents["spec"]["podMetricsEndpoints"] == [
        {"portNumber": 15020, "path": "/stats/prometheus", "scheme": "http", "interval": "30s"}
    ]
    # Meshed model servers are scraped on Istio's merged metrics port (STRICT mTLS on 8000),
    # and every series carries the pod's version (stable | canary) as `track`.
    models = monitors[("PodMonitor", "model-servers")]["spec"]["podMetricsEndpoints"]
    assert models == [
        {
            "portNumber": 15020,
            "path": "/stats/prometheus",
            "scheme": "http",
            "interval": "30s",
            "relabelings": [
                {
                    "action": "replace",
                    "sourceLabels": ["__meta_kubernetes_pod_label_swarmstack_io_track"],
                    "targetLabel": "track",
                }
            ],
        }
    ]
    kafka = monitors[("PodMonitor", "kafka")]["spec"]
    assert kafka["podMetricsEndpoints"][0]["port"] == "tcp-prometheus"
    qdrant = monitors[("PodMonitor", "vector-store")]["spec"]["podMetricsEndpoints"][0]
    assert qdrant["scheme"] == "https"  # the pilot's Qdrant serves TLS
    assert qdrant["authorization"]["credentials"] == {
        "name": "vector-store-api-keys",
        "key": "read-only-api-key",
    }


# --------------------------------------------------------------------------- schemas


def test_the_crd_schemas_refuse_a_bad_monitor_and_a_bad_rule() -> None:
    good = monitor_body(MonitorTarget("ServiceMonitor", "m", "ns", {"a": "b"}, (Endpoint("http"),)))
    bad_scheme = copy.deepcopy(good)
    bad_scheme["spec"]["endpoints"][0]["scheme"] = "tcp"
    bad_interval = copy.deepcopy(good)
    bad_interval["spec"]["endpoints"][0]["interval"] = "30 seconds"
    rule: dict[str, Any] = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "r", "namespace": "ns"},
        "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0"}]}]},
    }
    rule_without_expr = copy.deepcopy(rule)
    del rule_without_expr["spec"]["groups"][0]["rules"][0]["expr"]
    results = prometheus_operator_problems(
        [good, bad_scheme, bad_interval, rule, rule_without_expr]
    )
    assert results[0] == [] and results[3] == []
    assert any("/spec/endpoints/0/scheme" in p for p in results[1]), results[1]
    assert any("/spec/endpoints/0/interval" in p for p in results[2]), results[2]
    assert any("expr" in p for p in results[4]), results[4]


def test_every_monitor_of_the_pilot_plan_passes_the_crd_schemas(pilot_plan: Plan) -> None:
    monitors = [m for m in pilot_plan.manifests if m.kind in ("ServiceMonitor", "PodMonitor")]
    assert len(monitors) == 7
    assert check_monitoring_schemas(pilot_plan.manifests) == []


# --------------------------------------------------------------------------- selection


def _with(plan: Plan, replace: dict[str, Any] | None = None, drop: str | None = None) -> Plan:
    """The plan with manifests changed (body by ref) or one dropped (by ref)."""
    registrations: list[Registration] = []
    for r in plan.capture.registrations:
        ref = Manifest(r).ref if r.custom and r.type.startswith("kubernetes:") else None
        if ref is not None and ref == drop:
            continue
        if ref is not None and replace is not None and ref in replace:
            registrations.append(dataclasses.replace(r, inputs=replace[ref]))
        else:
            registrations.append(r)
    return Plan.from_capture(Capture(registrations=registrations))


def _monitor(plan: Plan, kind: str, name: str) -> Manifest:
    return next(m for m in plan.manifests if m.kind == kind and m.name == name)


def test_the_pilot_monitors_select_workloads_prometheus_can_reach(pilot_plan: Plan) -> None:
    assert check_monitors(pilot_plan) == []


def test_a_monitor_naming_a_port_the_pods_lack_fails(pilot_plan: Plan) -> None:
    redis = _monitor(pilot_plan, "PodMonitor", "session-store")
    body = copy.deepcopy(redis.body)
    body["spec"]["podMetricsEndpoints"][0]["port"] = "exporter"
    [finding] = check_monitors(_with(pilot_plan, {redis.ref: body}))
    assert finding.check == "monitor-selection"
    assert "endpoint port 'exporter' is not a named container port of StatefulSet" in (
        finding.message
    )


def test_a_service_monitor_selecting_no_service_fails(pilot_plan: Plan) -> None:
    models = _monitor(pilot_plan, "PodMonitor", "model-servers")
    body = copy.deepcopy(models.body)
    body["kind"] = "ServiceMonitor"
    body["spec"]["endpoints"] = [{"port": "http"}]
    body["spec"]["selector"] = {"matchLabels": {"app.kubernetes.io/component": "agent-worker"}}
    [finding] = check_monitors(_with(pilot_plan, {models.ref: body}))
    assert "matches no Service of the stack in namespace(s) ['swarmstack-models']" in (
        finding.message
    )


def test_the_merged_metrics_port_must_be_declared_and_pointed_at_the_apps_metrics(
    pilot_plan: Plan,
) -> None:
    """Port 15020 is served by the injected proxy, which declares only 15090; the Prometheus
    operator keeps a portNumber target only where a container declares the port, so the
    app container declares it. It is worth scraping only when the pods point the Istio
    agent at their own metrics."""
    model = next(
        m for m in pilot_plan.manifests if m.kind == "Deployment" and m.name == "qwen25-7b"
    )
    undeclared = copy.deepcopy(model.body)
    (vllm,) = undeclared["spec"]["template"]["spec"]["containers"]
    vllm["ports"] = [p for p in vllm["ports"] if p["containerPort"] != 15020]
    [finding] = check_monitors(_with(pilot_plan, {model.ref: undeclared}))
    assert "endpoint portNumber 15020 is not a container port of Deployment" in finding.message
    assert "(namespace swarmstack-models is meshed): the injected proxy declares only 15090" in (
        finding.message
    )

    unannotated = copy.deepcopy(model.body)
    del unannotated["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]
    [finding] = check_monitors(_with(pilot_plan, {model.ref: unannotated}))
    assert "its pods name no prometheus.io/port annotation" in finding.message


def test_a_port_the_network_policies_close_fails(pilot_plan: Plan) -> None:
    opening = next(
        m
        for m in pilot_plan.manifests
        if m.kind == "NetworkPolicy" and m.name == "allow-prometheus-to-model-servers"
    )
    findings = check_monitors(_with(pilot_plan, drop=opening.ref))
    assert {f.check for f in findings} == {"monitor-reachable"}
    assert len(findings) == 2  # both model servers
    assert (
        f"do not let Prometheus (pods {PROMETHEUS_POD_LABELS} of namespace "
        "'swarmstack-monitoring') reach Deployment swarmstack-models/" in findings[0].message
    )
    assert "on port 15020 (istio-metrics)" in findings[0].message


def test_the_data_stores_admit_prometheus_pods_only(pilot_plan: Plan) -> None:
    redis_policy = next(
        m
        for m in pilot_plan.manifests
        if m.kind == "NetworkPolicy" and m.name == "allow-redis-clients"
    )
    body = copy.deepcopy(redis_policy.body)
    for rule in body["spec"]["ingress"]:
        for peer in rule["from"]:
            if "podSelector" in peer and peer["podSelector"] == {
                "matchLabels": PROMETHEUS_POD_LABELS
            }:
                peer["podSelector"] = {"matchLabels": {"app.kubernetes.io/name": "grafana"}}
    [finding] = check_monitors(_with(pilot_plan, {redis_policy.ref: body}))
    assert finding.check == "monitor-reachable" and "on port 9121 (metrics)" in finding.message


# --------------------------------------------------------------------------- the plan


def test_the_plan_has_the_release_and_labels_the_dcgm_monitor(pilot_plan: Plan) -> None:
    docs = {r.name: r.document() for r in pilot_plan.releases}
    release = docs["monitoring"]
    assert release["chart"] == "kube-prometheus-stack" and release["version"] == "88.5.3"
    assert release["namespace"] == "swarmstack-monitoring"
    dcgm = docs["gpu-operator"]["values"]["dcgmExporter"]["serviceMonitor"]
    assert dcgm == {"enabled": True, "additionalLabels": STACK_MONITOR_LABELS}
    namespace = next(
        m for m in pilot_plan.manifests if m.kind == "Namespace" and m.name == release["namespace"]
    )
    assert namespace.metadata["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def test_plan_output_holds_the_monitors_and_no_receiver_secret(tmp_path: Path) -> None:
    assert main(["plan", "pilot", "--root", str(ROOT), "--out", str(tmp_path)]) == 0
    out = tmp_path / "pilot"
    docs = [yaml.safe_load(p.read_text()) for p in sorted((out / "manifests").glob("*.yaml"))]
    monitors = {(d["kind"], d["metadata"]["name"]) for d in docs if d["kind"].endswith("Monitor")}
    assert ("PodMonitor", "kafka") in monitors and len(monitors) == 7
    secret = next(
        d
        for d in docs
        if d["kind"] == "Secret" and d["metadata"]["name"] == "alertmanager-receivers"
    )
    assert secret["stringData"] == {"slack-api-url": "REDACTED"}
    summary = (out / "summary.json").read_text()
    assert "alertmanagerSlackApiUrl" in summary  # the placeholder warning names the key


def test_a_missing_monitoring_secret_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["plan", "pilot", "--root", str(ROOT), "--out", str(tmp_path)]
    assert main([*argv, "--unset-secret", "alertmanagerSlackApiUrl"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert (
        "alertmanagerSlackApiUrl: not set, but Alertmanager receiver 'platform-slack' (slack) "
        "posts alerts with this URL: run `pulumi config set --secret alertmanagerSlackApiUrl "
        "<value>`"
    ) in err
    assert not (tmp_path / "pilot").exists()
