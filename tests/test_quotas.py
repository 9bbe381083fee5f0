"""Quotas: a pod's effective request as the scheduler counts it, the models' and agents'
namespace quotas from the pods the stack renders, tenant teams' namespaces, and the refusal of a
quota below what the stack's own workloads request."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from components.compute.sandbox import RUNTIME_CLASS, runtime_class_body
from components.traffic.quotas import (
    GIB,
    Demand,
    admitted_pod,
    format_quantity,
    namespace_demand,
    parse_quantity,
    pod_requests,
    quota_hard,
    shortfalls,
    surge_pods,
)
from components.traffic.tenancy import team_policies
from stacks.config import ConfigError, load
from stacks.plan.recorder import Capture
from stacks.plan.runner import read_program_input, run_program
from stacks.quotas import agent_workloads, gateway_workloads, namespace_demands, stack_quotas
from tests.vllm_support import ROOT, stack_configs

Raw = dict[str, Any]


@pytest.fixture(scope="module")
def plan_capture() -> Capture:
    return run_program(read_program_input(ROOT, "pilot"))


def _c(name: str, cpu: str, memory: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "resources": {"requests": {"cpu": cpu, "memory": memory}}, **extra}


@pytest.mark.parametrize(
    "text,value",
    [("500m", "0.5"), ("4", "4"), ("1.5", "1.5"), ("32Gi", str(32 * 2**30)), ("128Mi", str(2**27)),
     ("1k", "1000"), ("2G", str(2 * 10**9))],
)  # fmt: skip
def test_quantities(text: str, value: str) -> None:
    assert parse_quantity(text) == Decimal(value)


def test_a_bad_quantity_is_named() -> None:
    with pytest.raises(ValueError, match="'4 cores' is not a Kubernetes quantity"):
        parse_quantity("4 cores")


def test_effective_requests_follow_the_schedulers_rules() -> None:
    pod = {
        "initContainers": [
            _c("sidecar", "100m", "64Mi", restartPolicy="Always"),  # runs beside the rest
            _c("migrate", "2", "1Gi"),  # runs alone, beside the sidecar started before it
        ],
        "containers": [_c("app", "500m", "2Gi"), _c("exporter", "100m", "32Mi")],
        "overhead": {"cpu": "50m", "memory": "16Mi"},
    }
    requests = pod_requests(pod)
    # cpu: max(init 2 + sidecar 0.1, app+exporter 0.6 + sidecar 0.1) + overhead 0.05
    assert requests["cpu"] == Decimal("2.15")
    # memory: max(1Gi + 64Mi, 2Gi + 32Mi + 64Mi) + 16Mi: the app side wins here
    assert requests["memory"] == 2 * GIB + 112 * 2**20


def test_a_limit_without_a_request_counts_as_the_request_and_injection_adds_up() -> None:
    pod = {
        "containers": [
            {"name": "a", "resources": {"limits": {"memory": "1Gi", "nvidia.com/gpu": "1"}}}
        ]
    }
    injected = {"cpu": Decimal("0.1"), "memory": Decimal(128 * 2**20)}
    assert pod_requests(pod, injected) == {
        "memory": GIB + 128 * 2**20,
        "nvidia.com/gpu": Decimal(1),
        "cpu": Decimal("0.1"),
    }


def test_surge_and_formatting() -> None:
    assert (surge_pods(4, "25%"), surge_pods(3, "25%"), surge_pods(4, 0)) == (1, 1, 0)
    assert format_quantity("cpu", Decimal("2.15")) == "2150m"
    assert format_quantity("cpu", Decimal(16)) == "16"
    assert format_quantity("memory", 128 * GIB) == "128Gi"
    assert quota_hard({"nvidia.com/gpu": Decimal(2)}, 3) == {
        "requests.nvidia.com/gpu": "2",
        "pods": "3",
    }


def test_the_pilots_model_quota_is_every_model_at_max_replicas() -> None:
    """vLLM's requests and the mesh's sidecar (100m, 128Mi in the pilot) in every pod."""
    config = stack_configs()["pilot"]
    pods = sum(m.replicas.max for m in config.models)
    cpu = sum(Decimal(m.cpu) * m.replicas.max for m in config.models) + Decimal("0.1") * pods
    memory_mi = sum(m.memory_gib * 1024 * m.replicas.max for m in config.models) + 128 * pods
    slices = sum(m.replicas.max for m in config.models if m.mig_profile == "3g.40gb")
    assert config.mesh.proxy.cpu == "100m" and config.mesh.proxy.memory_mib == 128
    assert stack_quotas(config)["models"] == {
        "requests.cpu": f"{int(cpu * 1000)}m",
        "requests.memory": f"{memory_mi}Mi",
        "requests.nvidia.com/mig-3g.40gb": str(slices),
        "pods": str(pods),
    }


def test_a_quota_below_the_stacks_own_workloads_is_refused(pilot_raw: Raw) -> None:
    short = {"cpu": 64, "memoryGib": 512, "mig": {"3g.40gb": 2}, "pods": 3}
    raw = {**pilot_raw, "tenancy": {"quotas": {"models": short}}}
    with pytest.raises(ConfigError) as caught:
        load(raw, "us-east-1", "stacks/Pulumi.pilot.yaml")
    text = str(caught.value)
    assert "tenancy.quotas.models: nvidia.com/mig-3g.40gb: quota 2 is below the 4 its " in text
    assert "tenancy.quotas.models: pods: quota 3 is below the 4 pods its workloads reach" in text
    assert "cpu:" not in text  # enough CPU is not a problem


def test_a_quota_for_a_namespace_without_one_is_refused(pilot_raw: Raw) -> None:
    raw = {**pilot_raw, "tenancy": {"quotas": {"data": {"cpu": 1, "memoryGib": 1, "pods": 1}}}}
    with pytest.raises(
        ConfigError,
        match=r"tenancy.quotas.data: unknown key \(valid keys here: agents, models\)",
    ):
        load(raw, "us-east-1", "stacks/Pulumi.pilot.yaml")


def _requests(pod: dict[str, Any]) -> tuple[int, int]:
    """A rendered pod's CPU (millicores) and memory (MiB) requests, the sidecar's added."""
    cpu_m, memory_mi = 100, 128  # the mesh's sidecar
    for c in pod["containers"] + pod.get("initContainers", []):
        requests = c.get("resources", {}).get("requests", {})
        cpu = str(requests.get("cpu", "0"))
        cpu_m += int(cpu[:-1]) if cpu.endswith("m") else int(Decimal(cpu) * 1000)
        memory = str(requests.get("memory", "0Mi"))
        assert memory.endswith("Mi") or memory == "0Mi", memory
        memory_mi += int(memory.removesuffix("Mi"))
    return cpu_m, memory_mi


def test_the_pilots_agent_quota_is_every_worker_gateway_pod_and_sidecar_at_max(
    plan_capture: Capture,
) -> None:
    """Each agent type at max replicas plus the one pod a rollout adds, the worker's
    requests and the mesh's sidecar (100m, 128Mi) in each pod, plus the model gateway's
    pods (proxy replicas + surge, Postgres, the migration and key Jobs), as rendered."""
    config = stack_configs()["pilot"]
    pods = {a.name: a.replicas.max + 1 for a in config.agents}
    cpu_m = sum((a.resources.cpu_millis + 100) * pods[a.name] for a in config.agents)
    memory_mi = sum((a.resources.memory_mib + 128) * pods[a.name] for a in config.agents)
    # researcher 6+1 pods x (500m, 1024Mi), concierge 4+1 x (500m, 512Mi), sidecars added
    assert (cpu_m, memory_mi, sum(pods.values())) == (7200, 11264, 12)
    # The gateway's pods as the plan renders them, each with its sidecar.
    assert config.gateway is not None
    gateway = {
        "kubernetes:apps/v1:Deployment": config.gateway.replicas + 1,
        "kubernetes:apps/v1:StatefulSet": 1,
        "kubernetes:batch/v1:Job": 1,
    }
    gateway_pods = 0
    for kind, count in gateway.items():
        for r in plan_capture.of_type(kind):
            meta = r.inputs["metadata"]
            if meta["namespace"] != "swarmstack-agents" or meta["name"].startswith("agent-"):
                continue
            c, m = _requests(r.inputs["spec"]["template"]["spec"])
            cpu_m, memory_mi, gateway_pods = (
                cpu_m + c * count,
                memory_mi + m * count,
                (gateway_pods + count),
            )
    assert gateway_pods == config.gateway.replicas + 1 + 3
    quota = plan_capture.named("tenancy-agents-quota").inputs
    assert quota["metadata"] == {
        "name": "swarmstack-quota",
        "namespace": "swarmstack-agents",
        "labels": config.cost_labels.as_labels(),
    }
    assert quota["spec"]["hard"] == {
        "requests.cpu": f"{cpu_m}m",
        "requests.memory": f"{memory_mi}Mi" if memory_mi % 1024 else f"{memory_mi // 1024}Gi",
        "pods": str(12 + gateway_pods),
    }
    # The figures come from the pods the plan's Deployments carry, not from the config.
    deployments = {
        r.inputs["metadata"]["name"]: r.inputs["spec"]
        for r in plan_capture.of_type("kubernetes:apps/v1:Deployment")
        if r.inputs["metadata"]["namespace"] == "swarmstack-agents"
    }
    assert sorted(deployments) == ["agent-concierge", "agent-researcher", "model-gateway"]
    for w in agent_workloads(config) + gateway_workloads(config):
        if w.name not in deployments:
            continue
        rendered = deployments[w.name]["template"]["spec"]["containers"][0]["resources"]
        assert w.pod["containers"][0]["resources"] == rendered
        assert w.surge == deployments[w.name]["strategy"]["rollingUpdate"]["maxSurge"]


def test_an_agent_quota_below_the_workers_demand_is_refused(pilot_raw: Raw) -> None:
    demand = namespace_demands(stack_configs()["pilot"])["agents"]
    cpu, pods = demand.requests["cpu"], demand.pods
    memory_gib = demand.requests["memory"] / 2**30
    short = {"cpu": int(cpu) - 1, "memoryGib": float(memory_gib) + 1, "pods": pods - 1}
    raw = {**pilot_raw, "tenancy": {"quotas": {"agents": short}}}
    with pytest.raises(ConfigError) as caught:
        load(raw, "us-east-1", "stacks/Pulumi.pilot.yaml")
    text = str(caught.value)
    assert (
        f"tenancy.quotas.agents: cpu: quota {int(cpu) - 1} is below the "
        f"{int(cpu * 1000)}m its workloads request at max replicas" in text
    )
    assert (
        f"tenancy.quotas.agents: pods: quota {pods - 1} is below the {pods} pods its "
        "workloads reach" in text
    )
    assert "memory:" not in text  # a GiB more than needed
    enough = {
        **pilot_raw,
        "tenancy": {"quotas": {"agents": {**short, "cpu": float(cpu), "pods": pods}}},
    }
    config = load(enough, "us-east-1", "stacks/Pulumi.pilot.yaml")
    assert stack_quotas(config)["agents"]["pods"] == str(pods)
    assert stack_quotas(config)["agents"]["requests.cpu"] == f"{int(cpu * 1000)}m"


def test_a_sandboxed_pod_counts_its_runtime_class_overhead(pilot_raw: Raw) -> None:
    """The RuntimeClass admission controller copies `overhead.podFixed` into the pod; the
    stack's gvisor class declares none today, so a class that does is passed in here."""
    raw = copy.deepcopy(pilot_raw)
    raw["cluster"]["sandboxPool"] = {"instanceType": "m7i.xlarge", "minSize": 0, "maxSize": 4}
    raw["agents"][1]["sandbox"] = "gvisor"  # concierge, 4 + 1 pods
    config = load(raw, "us-east-1", "stacks/Pulumi.pilot.yaml")
    assert "overhead" not in runtime_class_body()
    plain = namespace_demands(config)["agents"]
    with_overhead = {
        RUNTIME_CLASS: {**runtime_class_body(), "overhead": {"podFixed": {"cpu": "250m",
                                                                          "memory": "160Mi"}}}
    }  # fmt: skip
    workloads = {w.name: w for w in agent_workloads(config, with_overhead)}
    assert workloads["agent-concierge"].pod["overhead"] == {"cpu": "250m", "memory": "160Mi"}
    assert "overhead" not in workloads["agent-researcher"].pod  # runc: no class, no overhead
    sidecar = {"cpu": Decimal("0.1"), "memory": Decimal(128 * 2**20)}
    demand = namespace_demand([*workloads.values(), *gateway_workloads(config)], sidecar)
    assert demand.requests["cpu"] - plain.requests["cpu"] == Decimal("0.25") * 5
    assert demand.requests["memory"] - plain.requests["memory"] == 160 * 2**20 * 5


def test_admission_sets_overhead_only_from_a_class_that_declares_it() -> None:
    pod = {"runtimeClassName": "kata", "containers": []}
    classes = {"kata": {"overhead": {"podFixed": {"cpu": "100m"}}}, "plain": {}}
    assert admitted_pod(pod, classes) == {**pod, "overhead": {"cpu": "100m"}}
    assert admitted_pod({**pod, "runtimeClassName": "plain"}, classes) == {
        **pod,
        "runtimeClassName": "plain",
    }
    assert admitted_pod({"containers": []}, classes) == {"containers": []}


def test_shortfalls_name_both_figures() -> None:
    demand = Demand({"cpu": Decimal(4), "memory": 8 * GIB}, 2)
    assert shortfalls({"cpu": Decimal(4), "memory": 4 * GIB}, 2, demand) == [
        "memory: quota 4Gi is below the 8Gi its workloads request at max replicas"
    ]


def test_team_namespaces_are_closed_and_quota_bound(
    plan_capture: Capture,
) -> None:
    ns = plan_capture.named("tenancy-team-research").inputs
    assert ns["metadata"]["name"] == "swarmstack-team-research"
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    quota = plan_capture.named("tenancy-team-research-quota").inputs
    assert quota["metadata"]["namespace"] == "swarmstack-team-research"
    assert quota["spec"]["hard"] == {"requests.cpu": "8", "requests.memory": "32Gi", "pods": "20"}
    limits = plan_capture.named("tenancy-team-research-limits").inputs["spec"]["limits"]
    assert limits == [{"type": "Container", "defaultRequest": {"cpu": "250m", "memory": "256Mi"},
                       "default": {"memory": "256Mi"}}]  # fmt: skip
    models_quota = plan_capture.named("tenancy-models-quota").inputs
    assert models_quota["metadata"]["namespace"] == "swarmstack-models"
    deny = plan_capture.named("tenancy-team-research-default-deny").inputs
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    team_policies = [
        r.inputs["metadata"]["name"]
        for r in plan_capture.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
        if r.inputs["metadata"]["namespace"] == "swarmstack-team-research"
    ]
    assert sorted(team_policies) == ["allow-dns", "default-deny"]  # outside the mesh: DNS only


def test_no_teams_no_team_policies() -> None:
    config = stack_configs()["pilot"]
    assert team_policies([], config.namespaces) == {}
