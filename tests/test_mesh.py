# pyright: strict
"""The mesh: Istio's pinned charts, the traffic rules of every model and agent type as the
plan renders them, and the plan checks over the Istio objects."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from agent_worker.model import SESSION_HEADER as WORKER_SESSION_HEADER
from hypothesis import given
from hypothesis import strategies as st

from components.specs import CostLabels, Replicas
from components.traffic.istio_chart import (
    CHARTS,
    VALUE_KEYS,
    ChartName,
    unchecked_value_paths,
    value_key_paths,
)
from components.traffic.mesh import (
    SAFE_RETRY_ON,
    SESSION_HEADER,
    MeshSpec,
    ProxyResources,
    ejection_limits,
    istio_values,
    mesh_network_policies,
    mesh_resources,
    model_callers_policy,
    routable_hosts,
)
from components.traffic.tenancy import namespace_labels
from components.traffic.timeouts import timeout_chain
from policies.framework import selects
from policies.pack import RULES
from policies.rules.traffic import parse_duration
from stacks.agents import managed_stores
from stacks.config import ConfigError, StackConfig, load
from stacks.plan.checks import run_checks
from stacks.plan.mesh_checks import check_istio_schemas, check_mesh_hosts, istio_problems
from stacks.plan.model import Manifest, Plan
from stacks.plan.policy import evaluate
from stacks.plan.recorder import Capture, Registration
from stacks.plan.runner import read_program_input, run_program
from stacks.quotas import gateway_workloads, stack_quotas
from tests.vllm_support import stack_configs

ROOT = Path(__file__).resolve().parent.parent
# Envoy retry conditions that fire on a response the upstream already produced.
RESPONSE_CONDITIONS = ("5xx", "gateway-error", "retriable-status-codes", "reset", "unavailable")


@pytest.fixture(scope="module")
def pilot_plan() -> Plan:
    return Plan.from_capture(run_program(read_program_input(ROOT, "pilot")))


def _of(plan: Plan, kind: str) -> dict[str, Manifest]:
    return {m.name: m for m in plan.manifests if m.kind == kind}


def _with(plan: Plan, replace: dict[str, dict[str, Any]]) -> list[Manifest]:
    out: list[Manifest] = []
    for m in plan.manifests:
        body = replace.get(m.ref)
        out.append(
            m if body is None else Manifest(dataclasses.replace(m.registration, inputs=body))
        )
    return out


# --------------------------------------------------------------------------- charts


def renderings() -> list[dict[ChartName, dict[str, Any]]]:
    return [
        istio_values(MeshSpec()),
        istio_values(MeshSpec(istiod_replicas=Replicas(min=1, max=1), proxy=ProxyResources())),
    ]


def test_every_rendered_istio_key_was_checked_against_the_pinned_charts() -> None:
    for values in renderings():
        for chart in CHARTS:
            assert unchecked_value_paths(chart, values[chart]) == [], chart


def test_an_unrecorded_key_is_reported() -> None:
    values = istio_values(MeshSpec())
    values["istiod"]["meshConfig"]["accessLogFile"] = "/dev/stdout"
    assert unchecked_value_paths("istiod", values["istiod"]) == ["meshConfig.accessLogFile"]


def test_every_recorded_key_is_rendered() -> None:
    for chart in CHARTS:
        rendered = {p for values in renderings() for p in value_key_paths(chart, values[chart])}
        assert rendered == set(VALUE_KEYS[chart]), chart


def test_the_mesh_runs_sidecars_with_cni_native_sidecars_and_registry_only() -> None:
    istiod = istio_values(MeshSpec())["istiod"]
    assert istiod["cni"] == {"enabled": True}  # no NET_ADMIN istio-init container
    assert istiod["env"]["ENABLE_NATIVE_SIDECARS"] == "true"
    assert istiod["meshConfig"]["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}
    assert istiod["meshConfig"]["enablePrometheusMerge"] is True
    assert istio_values(MeshSpec())["cni"]["ambient"] == {"enabled": False}


def test_pilot_releases_are_pinned_in_their_namespaces(pilot_plan: Plan) -> None:
    releases = {r.document()["chart"]: r.document() for r in pilot_plan.releases}
    for chart in CHARTS:
        assert releases[chart]["version"] == "1.30.3"
    assert releases["cni"]["namespace"] == "istio-cni"
    assert releases["istiod"]["namespace"] == "istio-system"
    namespaces = _of(pilot_plan, "Namespace")
    cni = namespaces["istio-cni"].metadata["labels"]
    assert cni["pod-security.kubernetes.io/enforce"] == "privileged"
    assert namespaces["istio-system"].metadata["labels"]["pod-security.kubernetes.io/enforce"] == (
        "restricted"
    )


def test_a_chart_version_that_was_not_checked_is_refused_by_path(
    pilot_raw: dict[str, Any],
) -> None:
    pilot_raw["mesh"] = {"chartVersion": "1.31.0"}
    with pytest.raises(ConfigError) as err:
        load(pilot_raw, "us-east-1", "Pulumi.pilot.yaml")
    assert "mesh.chartVersion: '1.31.0' is not the Istio chart version" in str(err.value)


def test_models_and_agents_are_meshed_and_the_data_namespace_is_not() -> None:
    cost = CostLabels(team="t", cost_center="c", environment="e")
    assert namespace_labels("models", cost)["istio-injection"] == "enabled"
    assert namespace_labels("agents", cost)["istio-injection"] == "enabled"
    assert namespace_labels("data", cost)["istio-injection"] == "disabled"
    assert namespace_labels("monitoring", cost)["istio-injection"] == "disabled"


# --------------------------------------------------------------------------- model routes


@pytest.mark.parametrize("stack", sorted(stack_configs()))
def test_every_models_route_times_out_on_its_chain_and_never_retries_a_response(
    stack: str,
) -> None:
    """For every model of every stack, as the program renders the VirtualService."""
    config = stack_configs()[stack]
    plan = Plan.from_capture(run_program(read_program_input(ROOT, stack)))
    routes = _of(plan, "VirtualService")
    for model in config.models:
        chain = timeout_chain(model, config.timeouts)
        [http] = routes[model.name].body["spec"]["http"]
        assert parse_duration(http["timeout"]) == chain.model_route_s > model.slo.e2e_p99_s
        retries = http["retries"]
        conditions = retries["retryOn"].split(",")
        assert set(conditions) <= set(SAFE_RETRY_ON), conditions
        assert not [c for c in conditions if c in RESPONSE_CONDITIONS or c.isdigit()]
        per_try = parse_duration(retries["perTryTimeout"])
        assert per_try is not None and per_try >= model.slo.e2e_p99_s


def test_pilot_routes_hold_a_multi_minute_stream(pilot_plan: Plan) -> None:
    """llama31-8b's P99 is 120 s: its stream lives to the 135 s route timeout. Nothing
    shorter is set on its path: no connection idle timeout on the DestinationRule (and
    istiod disables the sidecars' stream idle timeout), keepalive finds a dead peer."""
    [http] = _of(pilot_plan, "VirtualService")["llama31-8b"].body["spec"]["http"]
    assert http["timeout"] == "135s" and http["retries"]["perTryTimeout"] == "135s"
    policy = _of(pilot_plan, "DestinationRule")["llama31-8b"].body["spec"]["trafficPolicy"]
    pool = policy["connectionPool"]
    assert "idleTimeout" not in pool["http"]
    keepalive = pool["tcp"]["tcpKeepalive"]
    assert keepalive == {"time": "60s", "interval": "15s", "probes": 4}
    assert policy["tls"] == {"mode": "ISTIO_MUTUAL"}


def test_connection_limits_cover_every_sequence_slot_of_the_largest_scale(
    pilot_plan: Plan,
) -> None:
    config = stack_configs()["pilot"]
    rules = _of(pilot_plan, "DestinationRule")
    for model in config.models:
        pool = rules[model.name].body["spec"]["trafficPolicy"]["connectionPool"]
        slots = model.vllm.max_num_seqs * model.replicas.max
        assert pool["tcp"]["maxConnections"] == slots
        assert pool["http"]["http2MaxRequests"] == slots
        assert pool["http"]["http1MaxPendingRequests"] == model.vllm.max_num_seqs


@given(
    low=st.integers(min_value=0, max_value=20),
    extra=st.integers(min_value=0, max_value=30),
    data=st.data(),
)
def test_outlier_detection_never_takes_the_last_replica_out(
    low: int, extra: int, data: st.DataObject
) -> None:
    replicas = Replicas(min=low, max=max(low, 1) + extra)
    limits = ejection_limits(replicas)
    hosts = data.draw(st.integers(min_value=max(low, 1), max_value=replicas.max))
    assert routable_hosts(hosts, limits) >= 1
    # and the limits do not disable outlier detection for the largest pool
    if replicas.max >= 2:
        assert routable_hosts(replicas.max, limits) < replicas.max


def test_a_single_replica_relies_on_the_panic_threshold(pilot_plan: Plan) -> None:
    outlier = _of(pilot_plan, "DestinationRule")["qwen25-7b"].body["spec"]["trafficPolicy"][
        "outlierDetection"
    ]
    # replicas 1-2: Envoy ejects one host whatever maxEjectionPercent says; below 50 %
    # healthy it balances over all hosts again.
    assert "maxEjectionPercent" not in outlier
    assert outlier["minHealthPercent"] == 50
    assert outlier["consecutive5xxErrors"] == 5


def test_every_model_hashes_its_replicas_on_the_workers_session_header(
    pilot_plan: Plan,
) -> None:
    """A session's calls reach one replica: the rule hashes on the header the worker sends
    (the two names are one), on a ring, and keeps its outlier detection, so a failing
    replica is still ejected (it leaves the ring; only its sessions move)."""
    assert SESSION_HEADER == WORKER_SESSION_HEADER
    rules = _of(pilot_plan, "DestinationRule")
    for name in ("qwen25-7b", "llama31-8b"):
        policy = rules[name].body["spec"]["trafficPolicy"]
        assert policy["loadBalancer"] == {
            "consistentHash": {
                "httpHeaderName": "x-swarmstack-session-id",
                "ringHash": {"minimumRingSize": 1024},
            }
        }
        assert policy["outlierDetection"]["consecutive5xxErrors"] == 5
        assert policy["outlierDetection"]["baseEjectionTime"] == "30s"
    # The gateway's own rule is not hashed: its replicas hold no session state.
    assert "loadBalancer" not in rules["model-gateway"].body["spec"]["trafficPolicy"]


def test_a_second_hashing_algorithm_fails_the_istio_schema(pilot_plan: Plan) -> None:
    """The plan's schema check reads the load balancer: one hash key and one algorithm
    (ringHash or maglev), never two, and no `simple` policy beside a hash."""
    rule = _of(pilot_plan, "DestinationRule")["qwen25-7b"]
    both = copy.deepcopy(rule.body)
    both["spec"]["trafficPolicy"]["loadBalancer"]["consistentHash"]["maglev"] = {"tableSize": 65537}
    findings = check_istio_schemas(_with(pilot_plan, {rule.ref: both}))
    assert {f.resource for f in findings} == {rule.ref}
    assert any(
        "/spec/trafficPolicy/loadBalancer/consistentHash: must match exactly one schema"
        in f.message
        for f in findings
    )
    simple = copy.deepcopy(rule.body)
    simple["spec"]["trafficPolicy"]["loadBalancer"]["simple"] = "ROUND_ROBIN"
    findings = check_istio_schemas(_with(pilot_plan, {rule.ref: simple}))
    assert {f.resource for f in findings} == {rule.ref}
    assert any(
        "/spec/trafficPolicy/loadBalancer: must match exactly one schema" in f.message
        for f in findings
    )


# --------------------------------------------------------------------------- authz, egress


def test_only_the_gateway_calls_model_servers(pilot_plan: Plan) -> None:
    """The pilot has a gateway: the model servers admit its service account alone."""
    policy = _of(pilot_plan, "AuthorizationPolicy")["model-servers-agent-callers"]
    assert policy.namespace == "swarmstack-models"
    spec = policy.body["spec"]
    assert spec["action"] == "ALLOW"
    assert spec["selector"] == {"matchLabels": {"app.kubernetes.io/component": "model-server"}}
    [rule] = spec["rules"]
    assert rule["from"][0]["source"]["principals"] == [
        "cluster.local/ns/swarmstack-agents/sa/model-gateway"
    ]
    assert rule["to"] == [{"operation": {"ports": ["8000"]}}]


def test_gateway_callers_reach_every_path_of_its_port_but_the_metrics(pilot_plan: Plan) -> None:
    """The proxy serves /metrics without a key (for the Istio agent's merged scrape, which
    does not pass this policy): its callers are not admitted to it on the API port."""
    policy = _of(pilot_plan, "AuthorizationPolicy")["model-gateway-callers"]
    [rule] = policy.body["spec"]["rules"]
    assert rule["to"] == [
        {"operation": {"ports": ["4000"], "notPaths": ["/metrics", "/metrics/*"]}}
    ]


def test_without_a_gateway_only_agent_service_accounts_call_model_servers(
    pilot_raw: dict[str, Any],
) -> None:
    pilot_raw.pop("gateway")
    config = load(pilot_raw, "us-east-1", "Pulumi.pilot.yaml")
    spec = model_callers_policy(config.agents, config.namespaces)
    [rule] = spec["rules"]
    assert rule["from"][0]["source"]["principals"] == [
        "cluster.local/ns/swarmstack-agents/sa/agent-researcher",
        "cluster.local/ns/swarmstack-agents/sa/agent-concierge",
    ]


def test_strict_mtls_in_both_meshed_namespaces(pilot_plan: Plan) -> None:
    found = {
        m.namespace: m.body["spec"] for m in pilot_plan.manifests if m.kind == "PeerAuthentication"
    }
    assert found == {
        "swarmstack-models": {"mtls": {"mode": "STRICT"}},
        "swarmstack-agents": {"mtls": {"mode": "STRICT"}},
    }


def test_an_agents_egress_hosts_get_an_entry_a_sidecar_and_a_policy(
    pilot_raw: dict[str, Any],
) -> None:
    pilot_raw["agents"][1]["egress"] = ["api.example.com", "*.search.example.org"]
    config = load(pilot_raw, "us-east-1", "Pulumi.pilot.yaml")
    resources = mesh_resources([], config.agents, config.namespaces, "us-east-1")
    by = {(r.kind, r.name): r for r in resources}
    entry = by[("ServiceEntry", "agent-concierge-egress")]
    assert entry.namespace == "swarmstack-agents"
    assert entry.spec["hosts"] == ["api.example.com", "*.search.example.org"]
    assert entry.spec["exportTo"] == ["."] and entry.spec["location"] == "MESH_EXTERNAL"
    sidecar = by[("Sidecar", "agent-concierge")].spec
    assert sidecar["workloadSelector"]["labels"]["swarmstack.io/agent"] == "concierge"
    assert sidecar["egress"][0]["hosts"][:2] == ["./api.example.com", "./*.search.example.org"]
    # the other agent type's proxy does not see these hosts
    other = by[("Sidecar", "agent-researcher")].spec["egress"][0]["hosts"]
    assert not [h for h in other if "example" in h]
    assert ("ServiceEntry", "agent-researcher-egress") not in by
    policies = mesh_network_policies(config.agents, config.namespaces)
    assert "agents-allow-egress-concierge" in policies
    assert "agents-allow-egress-researcher" not in policies


def _managed_stores(raw: dict[str, Any]) -> dict[str, Any]:
    """The pilot with MSK (IAM auth) and ElastiCache instead of its in-cluster stores."""
    raw["dataPlane"]["kafka"] = {
        "mode": "msk",
        "version": "4.1.x.kraft",
        "brokers": 3,
        "replicationFactor": 3,
        "minInsyncReplicas": 2,
        "storage": {"sizeGib": 200},
        "msk": {"brokerType": "kafka.m7g.large", "clientAuth": "iam"},
    }
    raw["dataPlane"]["redis"] = {
        "mode": "elasticache",
        "engine": "valkey",
        "version": "8.1",
        "elasticache": {"nodeType": "cache.r7g.large", "nodes": 2},
    }
    return raw


MANAGED_ENTRIES = {
    "managed-msk": (["*.kafka.us-east-1.amazonaws.com"], 9098),
    "managed-sts": (["sts.us-east-1.amazonaws.com"], 443),
    "managed-elasticache": (["*.cache.amazonaws.com"], 6379),
}


def test_managed_stores_get_service_entries_only_their_agents_see(
    pilot_raw: dict[str, Any],
) -> None:
    config = load(_managed_stores(pilot_raw), "us-east-1", "Pulumi.pilot.yaml")
    resources = mesh_resources(
        [],
        config.agents,
        config.namespaces,
        "us-east-1",
        stores=managed_stores(config, "us-east-1"),
    )
    entries = {r.name: r for r in resources if r.kind == "ServiceEntry"}
    assert set(entries) == set(MANAGED_ENTRIES)
    for name, (hosts, port) in MANAGED_ENTRIES.items():
        entry = entries[name]
        assert entry.namespace == "swarmstack-agents"
        assert entry.spec["hosts"] == hosts
        assert entry.spec["resolution"] == "NONE" and entry.spec["location"] == "MESH_EXTERNAL"
        assert entry.spec["exportTo"] == ["."]
        [entry_port] = entry.spec["ports"]
        assert entry_port["number"] == port and entry_port["protocol"] == "TLS"
    sidecars = {r.name: r.spec["egress"][0]["hosts"] for r in resources if r.kind == "Sidecar"}
    # The events agent dials MSK with IRSA credentials from STS, and checkpoints to
    # ElastiCache; the http agent only checkpoints.
    assert sidecars["agent-researcher"][:3] == [
        "./*.kafka.us-east-1.amazonaws.com",
        "./sts.us-east-1.amazonaws.com",
        "./*.cache.amazonaws.com",
    ]
    assert [h for h in sidecars["agent-concierge"] if "amazonaws" in h] == [
        "./*.cache.amazonaws.com"
    ]
    bodies = [
        {
            "apiVersion": r.api_version,
            "kind": r.kind,
            "metadata": {"name": r.name, "namespace": r.namespace},
            "spec": dict(r.spec),
        }
        for r in resources
        if r.kind in ("ServiceEntry", "Sidecar")
    ]
    assert istio_problems(bodies) == [[] for _ in bodies]


def test_the_pilot_with_in_cluster_stores_gets_no_managed_entries(pilot_plan: Plan) -> None:
    config = stack_configs()["pilot"]
    assert managed_stores(config, "us-east-1") is None
    entries = _of(pilot_plan, "ServiceEntry")
    assert not set(entries) & set(MANAGED_ENTRIES)
    for sidecar in _of(pilot_plan, "Sidecar").values():
        assert not [h for h in sidecar.body["spec"]["egress"][0]["hosts"] if "amazonaws" in h]


def test_a_bad_managed_entry_fails_the_istio_schema() -> None:
    body = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "managed-msk", "namespace": "swarmstack-agents"},
        "spec": {
            "hosts": ["*.kafka.us-east-1.amazonaws.com"],
            "resolution": "WILDCARD",
            "ports": [{"number": 9098, "name": "tls-kafka", "protocol": "TLS"}],
        },
    }
    [problems] = istio_problems([body])
    assert any("/spec/resolution" in p for p in problems)


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        (["https://api.example.com"], "agents[1].egress[0]"),
        (["redis.swarmstack-data.svc.cluster.local"], "in-cluster Services"),
        (["a.example.com", "a.example.com"], "lists a.example.com more than once"),
    ],
)
def test_bad_egress_hosts_are_refused_by_path(
    pilot_raw: dict[str, Any], hosts: list[str], message: str
) -> None:
    pilot_raw["agents"][1]["egress"] = hosts
    with pytest.raises(ConfigError) as err:
        load(pilot_raw, "us-east-1", "Pulumi.pilot.yaml")
    assert "agents[1].egress" in str(err.value) and message in str(err.value)


def test_model_servers_reach_only_their_weights_hosts(pilot_plan: Plan) -> None:
    entry = _of(pilot_plan, "ServiceEntry")["model-weights"]
    assert entry.namespace == "swarmstack-models"
    assert entry.body["spec"]["hosts"] == [
        "*.hf.co",
        "*.huggingface.co",
        "huggingface.co",
        "s3.us-east-1.amazonaws.com",
        "sts.us-east-1.amazonaws.com",
        "swarm-pilot-models.s3.us-east-1.amazonaws.com",
    ]


# --------------------------------------------------------------------------- plan checks


def test_the_pilots_istio_objects_pass_schemas_and_hosts(pilot_plan: Plan) -> None:
    assert check_istio_schemas(pilot_plan.manifests) == []
    assert check_mesh_hosts(pilot_plan.manifests) == []


def test_a_mistyped_istio_object_fails_its_schema(pilot_plan: Plan) -> None:
    rule = _of(pilot_plan, "DestinationRule")["qwen25-7b"]
    body = copy.deepcopy(rule.body)
    body["spec"]["trafficPolicy"]["outlierDetection"]["minHealthPercent"] = "half"
    [finding] = check_istio_schemas(_with(pilot_plan, {rule.ref: body}))
    assert finding.resource == rule.ref
    assert "/spec/trafficPolicy/outlierDetection/minHealthPercent: must be of type integer" in (
        finding.message
    )


def test_a_route_to_no_service_of_the_stack_fails(pilot_plan: Plan) -> None:
    route = _of(pilot_plan, "VirtualService")["qwen25-7b"]
    body = copy.deepcopy(route.body)
    body["spec"]["http"][0]["route"][0]["destination"]["host"] = "qwen25-7b.swarmstack-agents"
    rule = _of(pilot_plan, "DestinationRule")["llama31-8b"]
    short = copy.deepcopy(rule.body)
    short["spec"]["host"] = "llama31-8b"  # short names resolve in the rule's own namespace
    findings = check_mesh_hosts(_with(pilot_plan, {route.ref: body, rule.ref: short}))
    assert [(f.check, f.resource) for f in findings] == [("mesh-host", route.ref)]
    assert "host 'qwen25-7b.swarmstack-agents' (qwen25-7b.swarmstack-agents.svc.cluster.local)" in (
        findings[0].message
    )


def test_a_route_bound_to_gateways_only_is_held_to_its_destinations(pilot_plan: Plan) -> None:
    """At a Gateway, `hosts` match the Host header, not Services: `*` is fine there, and
    still refused on a route the sidecars use (`mesh`) or one whose destination is no
    Service."""
    route = _of(pilot_plan, "VirtualService")["qwen25-7b"]
    at_gateway = copy.deepcopy(route.body)
    at_gateway["spec"].update(hosts=["*"], gateways=["gateway-ingress"])
    assert check_mesh_hosts(_with(pilot_plan, {route.ref: at_gateway})) == []
    also_mesh = copy.deepcopy(at_gateway)
    also_mesh["spec"]["gateways"] = ["gateway-ingress", "mesh"]
    [finding] = check_mesh_hosts(_with(pilot_plan, {route.ref: also_mesh}))
    assert "host '*'" in finding.message
    nowhere = copy.deepcopy(at_gateway)
    nowhere["spec"]["http"][0]["route"][0]["destination"]["host"] = "nothing.swarmstack-models"
    [finding] = check_mesh_hosts(_with(pilot_plan, {route.ref: nowhere}))
    assert "host 'nothing.swarmstack-models'" in finding.message


def test_routes_the_policy_pack_reads_are_the_plans(pilot_plan: Plan) -> None:
    """The traffic rules see the real VirtualServices: cutting one below the P99 fails."""
    registrations: list[Registration] = []
    for r in pilot_plan.capture.registrations:
        changed = r
        if r.type.endswith(":VirtualService") and r.inputs["metadata"]["name"] == "llama31-8b":
            inputs = copy.deepcopy(r.inputs)  # no secrets in it: its wire form is the same
            inputs["spec"]["http"][0]["timeout"] = "30s"
            inputs["spec"]["http"][0]["retries"]["retryOn"] = "5xx,connect-failure"
            changed = dataclasses.replace(r, inputs=inputs, wire=inputs)
        registrations.append(changed)
    assert [v.rule for v in evaluate(pilot_plan.capture.registrations, {}, RULES)] == [
        v.rule
        for v in evaluate(pilot_plan.capture.registrations, {}, RULES)
        if v.level != "mandatory"
    ]
    violations = evaluate(Capture(registrations=registrations).registrations, {}, RULES)
    rules = sorted(v.rule for v in violations if v.level == "mandatory")
    assert rules == ["model-route-retries", "model-route-timeout"]


# --------------------------------------------------------------------------- canaries


def _canary_plan(pilot_raw: dict[str, Any], canary: dict[str, Any]) -> Plan:
    pilot_raw["models"][0]["canary"] = canary
    pilot_raw["gpuPools"][0].update(minSize=2, maxSize=3)  # room for the canary's slice
    config = load(pilot_raw, "us-east-1", "Pulumi.pilot.yaml")
    inp = read_program_input(ROOT, "pilot")

    def dump(specs: Any) -> str:
        return json.dumps(
            [x.model_dump(by_alias=True, exclude_none=True, mode="json") for x in specs]
        )

    doc = {
        **inp.config,
        "swarmstack:gpuPools": dump(config.gpu_pools),
        "swarmstack:models": dump(config.models),
    }
    return Plan.from_capture(run_program(dataclasses.replace(inp, config=doc)))


def test_a_canary_renders_a_second_deployment_and_a_weighted_route(
    pilot_raw: dict[str, Any],
) -> None:
    plan = _canary_plan(pilot_raw, {"weight": 10, "vllm": {"maxNumSeqs": 32, "maxModelLen": 32768}})
    deployments = _of(plan, "Deployment")
    canary = deployments["qwen25-7b-canary"].body["spec"]
    stable = deployments["qwen25-7b"].body["spec"]
    assert canary["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "qwen25-7b-canary"
    assert stable["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "qwen25-7b"
    args = canary["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--max-num-seqs") + 1] == "32"
    service = _of(plan, "Service")["qwen25-7b"].body["spec"]["selector"]
    assert service == {"app.kubernetes.io/name": "qwen25-7b"}  # both versions
    [http] = _of(plan, "VirtualService")["qwen25-7b"].body["spec"]["http"]
    assert [(d["destination"]["subset"], d["weight"]) for d in http["route"]] == [
        ("stable", 90),
        ("canary", 10),
    ]
    subsets = _of(plan, "DestinationRule")["qwen25-7b"].body["spec"]["subsets"]
    assert [s["labels"]["app.kubernetes.io/instance"] for s in subsets] == [
        "qwen25-7b",
        "qwen25-7b-canary",
    ]
    # The split picks the version per call; inside each subset the rule's hash picks the
    # replica (a subset policy of its own would replace it).
    assert not [s for s in subsets if "trafficPolicy" in s]
    rule = _of(plan, "DestinationRule")["qwen25-7b"].body["spec"]
    assert rule["trafficPolicy"]["loadBalancer"]["consistentHash"]["httpHeaderName"] == (
        SESSION_HEADER
    )
    assert "qwen25-7b-canary" in _of(plan, "PodDisruptionBudget")
    # Each version's pods say which they are; the PodMonitor copies it into their series.
    assert canary["template"]["metadata"]["labels"]["swarmstack.io/track"] == "canary"
    assert stable["template"]["metadata"]["labels"]["swarmstack.io/track"] == "stable"
    [endpoint] = _of(plan, "PodMonitor")["model-servers"].body["spec"]["podMetricsEndpoints"]
    assert endpoint["relabelings"] == [
        {
            "action": "replace",
            "sourceLabels": ["__meta_kubernetes_pod_label_swarmstack_io_track"],
            "targetLabel": "track",
        }
    ]
    assert check_mesh_hosts(plan.manifests) == []
    assert check_istio_schemas(plan.manifests) == []


@pytest.mark.parametrize("weight", [-1, 101])
def test_a_canary_weight_outside_0_100_is_refused_by_path(
    pilot_raw: dict[str, Any], weight: int
) -> None:
    pilot_raw["models"][0]["canary"] = {"weight": weight}
    with pytest.raises(ConfigError) as err:
        load(pilot_raw, "us-east-1", "Pulumi.pilot.yaml")
    assert f"models[0].canary.weight: {weight} is not valid" in str(err.value)


# --------------------------------------------------------------------------- agent canaries


def _agent_canary_plan(pilot_raw: dict[str, Any]) -> tuple[StackConfig, Plan]:
    """The pilot with a canary for each agent type: concierge (http) 25% of its calls,
    researcher (events) one replica beside its six."""
    pilot_raw["agents"][0]["canary"] = {"tag": "0.2.0-rc.1", "weight": 25, "replicas": 1}
    pilot_raw["agents"][0]["topics"]["tasks"]["partitions"] = 7  # room for the canary
    pilot_raw["agents"][1]["canary"] = {"tag": "0.2.0-rc.1", "weight": 25, "replicas": 1}
    config = load(pilot_raw, "us-east-1", "Pulumi.pilot.yaml")
    inp = read_program_input(ROOT, "pilot")
    agents = [a.model_dump(by_alias=True, exclude_none=True, mode="json") for a in config.agents]
    doc = {**inp.config, "swarmstack:agents": json.dumps(agents)}
    return config, Plan.from_capture(run_program(dataclasses.replace(inp, config=doc)))


def test_an_agent_canary_renders_its_deployment_and_for_http_a_weighted_route(
    pilot_raw: dict[str, Any],
) -> None:
    config, plan = _agent_canary_plan(pilot_raw)
    deployments = _of(plan, "Deployment")
    for name in ("agent-concierge", "agent-researcher"):
        stable, canary = deployments[name].body["spec"], deployments[f"{name}-canary"].body["spec"]
        assert canary["replicas"] == 1
        assert canary["selector"]["matchLabels"]["app.kubernetes.io/name"] == f"{name}-canary"
        assert stable["selector"]["matchLabels"]["app.kubernetes.io/name"] == name
        [worker] = canary["template"]["spec"]["containers"]
        assert worker["image"].endswith("/agent-worker:0.2.0-rc.1")
        assert stable["template"]["spec"]["containers"][0]["image"].endswith(":0.1.0")
        labels = canary["template"]["metadata"]["labels"]
        assert labels["swarmstack.io/track"] == "canary"
        assert stable["template"]["metadata"]["labels"]["swarmstack.io/track"] == "stable"
        assert f"{name}-canary" in _of(plan, "PodDisruptionBudget")
    # The http agent: its Service selects both versions, the route splits 75 / 25.
    service = _of(plan, "Service")["agent-concierge"].body["spec"]["selector"]
    assert service == {"swarmstack.io/agent": "concierge"}
    routes = {m.name: m for m in plan.manifests if m.kind == "VirtualService"}
    [http] = routes["agent-concierge"].body["spec"]["http"]
    assert [(d["destination"]["subset"], d["weight"]) for d in http["route"]] == [
        ("stable", 75),
        ("canary", 25),
    ]
    rules = {m.name: m for m in plan.manifests if m.kind == "DestinationRule"}
    subsets = rules["agent-concierge"].body["spec"]["subsets"]
    assert [s["labels"]["app.kubernetes.io/name"] for s in subsets] == [
        "agent-concierge",
        "agent-concierge-canary",
    ]
    # The events agent has no route: its split is by replicas in one consumer group.
    assert "agent-researcher" not in routes
    # Both versions keep the openings and the Sidecar of their agent type.
    canary_labels = deployments["agent-researcher-canary"].body["spec"]["template"]["metadata"][
        "labels"
    ]
    opening = _of(plan, "NetworkPolicy")["allow-agent-researcher-to-gateway"]
    assert selects(opening.body["spec"]["podSelector"], canary_labels)
    sidecar = _of(plan, "Sidecar")["agent-researcher"].body["spec"]["workloadSelector"]
    assert selects({"matchLabels": sidecar["labels"]}, canary_labels)
    # The quota counts the canaries; the plan's checks pass.
    gateway_pods = sum(w.max_replicas + w.surge for w in gateway_workloads(config))
    assert gateway_pods == 6  # proxy 2 + 1 surge, its Postgres, the migration and key Jobs
    assert stack_quotas(config)["agents"]["pods"] == str(12 + 2 * 2 + gateway_pods)
    assert check_mesh_hosts(plan.manifests) == []
    assert check_istio_schemas(plan.manifests) == []
    assert [f for f in run_checks(plan) if f.severity == "error"] == []
    mandatory = evaluate(plan.capture.registrations, {}, RULES)
    assert [v.rule for v in mandatory if v.level == "mandatory"] == []


def test_an_events_canary_needs_partitions_for_its_consumers_too(
    pilot_raw: dict[str, Any],
) -> None:
    pilot_raw["agents"][0]["canary"] = {"tag": "0.2.0-rc.1", "weight": 10, "replicas": 2}
    with pytest.raises(ConfigError) as err:
        load(pilot_raw, "us-east-1", "Pulumi.pilot.yaml")
    assert (
        "agents[0].topics.tasks.partitions: 6 partitions for up to 6 replicas of researcher "
        "and 2 of its canary, one consumer group: consumers past 6 would sit idle; use at "
        "least 8"
    ) in str(err.value)


@pytest.mark.parametrize(("key", "value"), [("weight", 101), ("tag", "latest")])
def test_a_bad_agent_canary_is_refused_by_path(
    pilot_raw: dict[str, Any], key: str, value: object
) -> None:
    pilot_raw["agents"][1]["canary"] = {"tag": "0.2.0", "weight": 10, key: value}
    with pytest.raises(ConfigError) as err:
        load(pilot_raw, "us-east-1", "Pulumi.pilot.yaml")
    assert f"agents[1].canary.{key}" in str(err.value)
