"""The stack's alert and cost rules: built from config, one rendering for the cluster's
PrometheusRules and the local Prometheus, objectives on vLLM's bucket edges, a runbook for
every alert, and the `alerts-have-runbooks` policy."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pulumi_kubernetes as k8s
import pytest
import yaml

from components.compute.instances import INSTANCE_TYPES
from components.observe.alerts import (
    ITL_BUCKETS_S,
    KSM_NODE_LABELS,
    TTFT_BUCKETS_S,
    kebab,
    le_value,
    render_rule_file,
    replica_usd_per_hour,
    rule_groups,
    rule_groups_wire,
)
from components.observe.prometheus_rule_schema import prometheus_rule_problems
from components.observe.rules_component import prometheus_rule_bodies
from components.observe.selection import MONITORING_NAMESPACE, STACK_MONITOR_LABELS
from stacks.config import ConfigError, StackConfig, load
from stacks.plan.runner import read_program_input, run_program
from tests.policy_support import messages
from tests.promtool_cases import (
    CASES,
    EXPR_CASES,
    P5_4XLARGE_USD_PER_HOUR,
    promtool_files,
)

ROOT = Path(__file__).resolve().parent.parent
RUNBOOKS = ROOT / "docs" / "runbooks"
SOURCE = "Pulumi.pilot.yaml"
PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
SCENARIOS = {
    "cold-start",
    "graceful-degradation",
    "session-recovery",
    "mig-reconfiguration",
    "broker-loss",
    "budget-exhaustion",
}


@pytest.fixture
def pilot(pilot_raw: dict[str, Any]) -> StackConfig:
    return load(pilot_raw, "us-east-1", SOURCE)


def alerts_of(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


PILOT_ALERTS = {
    "AgentToolCallLoop",
    "AgentToolErrorCascade",
    "AgentLatencyDegradation",
    "AgentTokenRateAnomaly",
    "AgentBudgetBurnHigh",
    "AgentBudgetExhausted",
    "ModelSloFastBurn",
    "ModelSloSlowBurn",
    "VllmQueueSaturated",
    "VllmKvCacheSaturated",
    "GpuMigConfigFailed",
    "GpuMigConfigPending",
    "GpuXidErrors",
    "GpuPoolAtMaxNodes",
    "KafkaConsumerLagHigh",
    "KafkaUnderReplicatedPartitions",
    "RedisMemoryNearLimit",
}


# --------------------------------------------------------------------------- what is built


def test_the_pilot_has_every_alert_and_the_cost_rules(pilot: StackConfig) -> None:
    groups = rule_groups_wire(pilot)
    assert set(alerts_of(groups)) == PILOT_ALERTS
    cost = next(g for g in groups if g["name"] == "swarmstack-cost")
    assert {r["record"] for r in cost["rules"]} >= {
        "swarmstack:pool_usd_per_hour",
        "swarmstack:model_usd_per_hour",
        "swarmstack:model_tokens_per_second",
        "swarmstack:model_usd_per_token",
        "swarmstack:agent_usd_per_hour",
        "swarmstack:agent_usd_per_1k_turns",
    }
    for alert in alerts_of(groups).values():
        assert alert["labels"]["severity"] in ("warning", "critical")
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]


def test_thresholds_come_from_config(pilot_raw: dict[str, Any]) -> None:
    pilot_raw["observability"] = {
        "alerts": {"loopRepeats": 7, "redisMemoryRatio": 0.75, "vllmQueueWaiting": 40}
    }
    alerts = alerts_of(rule_groups_wire(load(pilot_raw, "us-east-1", SOURCE)))
    assert alerts["AgentToolCallLoop"]["expr"].endswith("> 7")
    assert alerts["RedisMemoryNearLimit"]["expr"].endswith("> 0.75")
    assert alerts["VllmQueueSaturated"]["expr"].endswith("> 40")


def test_bad_thresholds_name_their_path(pilot_raw: dict[str, Any]) -> None:
    pilot_raw["observability"] = {"alerts": {"budgetWarnRatio": 1.5, "loopRepeat": 3}}
    with pytest.raises(ConfigError) as caught:
        load(pilot_raw, "us-east-1", SOURCE)
    text = str(caught.value)
    assert "observability.alerts.budgetWarnRatio: 1.5 is not valid" in text
    assert "observability.alerts.loopRepeat: unknown key (valid keys here: budgetWarnRatio" in text


def test_slo_objectives_count_requests_at_their_own_bucket_edge(pilot: StackConfig) -> None:
    records = [
        r
        for g in rule_groups_wire(pilot)
        for r in g["rules"]
        if r.get("record", "").startswith("swarmstack:model_slo_errors:")
    ]
    by = {(r["labels"]["model"], r["labels"]["slo"], r["record"]): r["expr"] for r in records}
    qwen = by[("Qwen/Qwen2.5-7B-Instruct", "itl", "swarmstack:model_slo_errors:ratio_rate1h")]
    llama = by[
        ("meta-llama/Llama-3.1-8B-Instruct", "ttft", "swarmstack:model_slo_errors:ratio_rate5m")
    ]
    itl = "vllm:inter_token_latency_seconds"
    ttft = "vllm:time_to_first_token_seconds"
    assert f'{itl}_bucket{{model_name="Qwen/Qwen2.5-7B-Instruct", le="0.05"}}[1h]' in qwen
    assert f'{ttft}_bucket{{model_name="meta-llama/Llama-3.1-8B-Instruct", le="2.5"}}[5m]' in llama
    assert len(records) == 2 * 3 * 7  # models x objectives x windows  # fmt: skip


def test_an_objective_off_the_bucket_edges_is_refused_with_the_nearest_edges(
    pilot_raw: dict[str, Any],
) -> None:
    pilot_raw["models"][1]["slo"]["ttftP99Ms"] = 2000
    pilot_raw["models"][0]["slo"]["itlP99Ms"] = 60
    with pytest.raises(ConfigError) as caught:
        load(pilot_raw, "us-east-1", SOURCE)
    text = str(caught.value)
    assert (
        "models[1].slo.ttftP99Ms: 2000 ms is not a bucket edge of "
        "vllm:time_to_first_token_seconds (vLLM 0.32.0)"
    ) in text
    assert "use 1000 or 2500 (the nearest edges)" in text
    assert "models[0].slo.itlP99Ms: 60 ms is not a bucket edge" in text
    assert "use 50 or 75 (the nearest edges)" in text


def test_bucket_edges_render_as_vllm_writes_them() -> None:
    # prometheus_client writes floats (le="1.0"); Prometheus 3 normalises to the same.
    assert [le_value(e) for e in (0.5, 1, 60, 2560)] == ["0.5", "1.0", "60.0", "2560.0"]
    assert 0.05 in ITL_BUCKETS_S and 2.5 in TTFT_BUCKETS_S and 2.0 not in TTFT_BUCKETS_S


def test_replicas_are_priced_by_gpu_or_mig_share(pilot_raw: dict[str, Any]) -> None:
    pilot = load(pilot_raw, "us-east-1", SOURCE)
    assert INSTANCE_TYPES["p5.4xlarge"].on_demand_usd_per_hour == P5_4XLARGE_USD_PER_HOUR
    # 3g.40gb + 3g.40gb on one H100: each slice is half the GPU.
    assert replica_usd_per_hour(pilot.models[0], pilot) == pytest.approx(6.88 / 2)
    pilot_raw["gpuPools"][0]["mig"]["profiles"] = ["4g.40gb", "3g.40gb"]
    pilot_raw["models"][1]["migProfile"] = "4g.40gb"
    uneven = load(pilot_raw, "us-east-1", SOURCE)
    assert replica_usd_per_hour(uneven.models[0], uneven) == pytest.approx(6.88 * 3 / 7)
    assert replica_usd_per_hour(uneven.models[1], uneven) == pytest.approx(6.88 * 4 / 7)
    pilot_raw["gpuPools"][0].pop("mig")
    for model in pilot_raw["models"]:
        model.pop("migProfile")
    pilot_raw["gpuPools"][0]["instanceType"] = "g6e.12xlarge"  # 4 x L40S at $10.4926/h
    pilot_raw["gpuPools"][0]["maxSize"] = 2
    pilot_raw["models"][0]["tensorParallelSize"] = 2
    whole = load(pilot_raw, "us-east-1", SOURCE)
    assert replica_usd_per_hour(whole.models[0], whole) == pytest.approx(10.4926 / 4 * 2)


def test_pool_cost_reads_the_allow_listed_pool_label(pilot: StackConfig) -> None:
    cost = next(g for g in rule_groups_wire(pilot) if g["name"] == "swarmstack-cost")
    pool = next(r for r in cost["rules"] if r["record"] == "swarmstack:pool_usd_per_hour")
    assert 'kube_node_labels{label_swarmstack_io_pool="h100-mig"}' in pool["expr"]
    assert pool["expr"].endswith("* 6.88")
    assert KSM_NODE_LABELS == ("swarmstack.io/pool", "nvidia.com/mig.config.state")


def test_stores_a_stack_lacks_get_no_alerts(pilot_raw: dict[str, Any]) -> None:
    pilot_raw["dataPlane"] = {}
    pilot_raw["agents"] = []
    pilot_raw.pop("gateway")  # it needs the session store
    pilot_raw.pop("demand")  # its shares name the agents left out
    alerts = alerts_of(rule_groups_wire(load(pilot_raw, "us-east-1", SOURCE)))
    assert not {a for a in alerts if a.startswith(("Kafka", "Redis", "Agent"))}
    assert "ModelSloFastBurn" in alerts


# --------------------------------------------------------------------------- one rendering


def test_rule_file_and_prometheus_rules_hold_the_same_groups(pilot: StackConfig) -> None:
    from_file = yaml.safe_load(render_rule_file(pilot))["groups"]
    capture = run_program(read_program_input(ROOT, "pilot"))
    declared = capture.of_type(PROMETHEUS_RULE)  # registered concurrently: any order
    by_name = {r.inputs["metadata"]["name"]: r.inputs["spec"]["groups"] for r in declared}
    assert len(by_name) == len(declared) == len(from_file)
    assert [g for group in from_file for g in by_name[group["name"]]] == from_file
    for rule in declared:
        metadata = rule.inputs["metadata"]
        assert metadata["namespace"] == MONITORING_NAMESPACE
        assert STACK_MONITOR_LABELS.items() <= metadata["labels"].items()
        assert rule.inputs["apiVersion"] == "monitoring.coreos.com/v1"
    parent = {r.urn: r for r in capture.registrations}[declared[0].parent]
    assert parent.type == "swarmstack:observe:AlertRules"


# --------------------------------------------------------------------------- runbooks


def test_every_alert_links_a_runbook_that_exists(pilot: StackConfig) -> None:
    for group in rule_groups(pilot):
        for alert in group.alerts:
            assert alert.runbook == f"docs/runbooks/{kebab(alert.name)}.md"
            assert (ROOT / alert.runbook).is_file(), f"{alert.name}: {alert.runbook} is missing"
    urls = {a["annotations"]["runbook_url"] for a in alerts_of(rule_groups_wire(pilot)).values()}
    assert all(u.startswith("docs/runbooks/") for u in urls)


def test_runbook_base_url_prefixes_every_link(pilot_raw: dict[str, Any]) -> None:
    base = "https://github.com/acme/swarmstack/blob/main/"
    pilot_raw["observability"] = {"alerts": {"runbookBaseUrl": base}}
    alerts = alerts_of(rule_groups_wire(load(pilot_raw, "us-east-1", SOURCE)))
    assert alerts["GpuXidErrors"]["annotations"]["runbook_url"] == (
        base + "docs/runbooks/gpu-xid-errors.md"
    )


def _links(path: Path) -> set[str]:
    return set(re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", path.read_text()))


def test_every_runbook_is_linked_and_every_link_resolves(pilot: StackConfig) -> None:
    files = {p.name for p in RUNBOOKS.glob("*.md")} - {"README.md"}
    alert_books = {Path(a.runbook).name for g in rule_groups(pilot) for a in g.alerts}
    assert {f"{s}.md" for s in SCENARIOS} <= files
    linked: set[str] = set()
    for path in RUNBOOKS.glob("*.md"):
        for link in _links(path):
            target = (path.parent / link).resolve()
            assert target.is_file(), f"{path.name} links {link}, which does not exist"
            linked.add(target.name)
    index = _links(RUNBOOKS / "README.md")
    assert files <= {Path(i).name for i in index}, files - index  # the index lists every runbook
    assert files - alert_books <= linked  # scenario runbooks are linked from alert runbooks
    for name in files:
        text = (RUNBOOKS / name).read_text()
        assert text.startswith("# "), name
        for heading in ("## What it means", "## First checks", "## Mitigation"):
            assert heading in text, f"{name} lacks {heading!r}"


# --------------------------------------------------------------------------- promtool cases


def test_every_alert_has_a_firing_and_a_silent_promtool_case(pilot: StackConfig) -> None:
    names = set(alerts_of(rule_groups_wire(pilot)))
    assert {c.alert for c in CASES if c.fires} == names
    assert {c.alert for c in CASES if not c.fires} == names
    assert EXPR_CASES


def test_promtool_files_hold_every_case(pilot: StackConfig, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(render_rule_file(pilot))
    files = promtool_files(rules, rule_groups_wire(pilot), tmp_path)
    docs = [yaml.safe_load(f.read_text()) for f in files]
    assert all(d["rule_files"] == [str(rules)] for d in docs)
    assert sum(len(d["tests"]) for d in docs) == len(CASES) + len(EXPR_CASES)


# --------------------------------------------------------------------------- policy


def _rule(annotations: dict[str, str]) -> k8s.apiextensions.CustomResource:
    return k8s.apiextensions.CustomResource(
        "agents",
        api_version="monitoring.coreos.com/v1",
        kind="PrometheusRule",
        metadata={"name": "agents", "namespace": MONITORING_NAMESPACE},
        spec={
            "groups": [
                {
                    "name": "g",
                    "rules": [
                        {"record": "r:x", "expr": "1"},
                        {"alert": "AgentToolCallLoop", "expr": "1", "annotations": annotations},
                    ],
                }
            ]
        },
    )


def test_alerts_have_runbooks_policy() -> None:
    good = "docs/runbooks/agent-tool-call-loop.md"
    assert messages(lambda: _rule({"runbook_url": good}), "alerts-have-runbooks") == []
    browse = "https://github.com/acme/swarmstack/blob/main/" + good
    assert messages(lambda: _rule({"runbook_url": browse}), "alerts-have-runbooks") == []
    assert messages(lambda: _rule({}), "alerts-have-runbooks") == [
        "PrometheusRule swarmstack-monitoring/agents (agents): alert AgentToolCallLoop "
        "(group g) has no runbook_url annotation"
    ]
    wrong = messages(lambda: _rule({"runbook_url": "https://wiki/loops"}), "alerts-have-runbooks")
    assert wrong == [
        "PrometheusRule swarmstack-monitoring/agents (agents): alert AgentToolCallLoop "
        "(group g): runbook_url 'https://wiki/loops' does not point at its runbook "
        "docs/runbooks/agent-tool-call-loop.md"
    ]


# --------------------------------------------------------------------------- CRD model


def test_the_plan_checks_prometheus_rules_against_the_crd_model(pilot: StackConfig) -> None:
    bodies = prometheus_rule_bodies(pilot, MONITORING_NAMESPACE)
    assert [prometheus_rule_problems(b) for b in bodies] == [[] for _ in bodies]
    models = next(b for b in bodies if b["metadata"]["name"] == "swarmstack-models")
    models["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"
    assert prometheus_rule_problems(models) == [
        "spec.groups.0.rules.0.for: String should match pattern "
        "'^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'"
    ]
    cost = next(b for b in bodies if b["metadata"]["name"] == "swarmstack-cost")
    cost["spec"]["groups"].append(cost["spec"]["groups"][0])
    assert "group names must be unique" in prometheus_rule_problems(cost)[0]
