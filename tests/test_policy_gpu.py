"""GPU rules: extended-resource limits, MIG profiles the nodes offer, GPU taints, the GPU budget."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi_aws as aws
import pulumi_kubernetes as k8s
import yaml

from policies.rules.gpu import RULES, mig_offers, quantity_nanos, read_yaml_subset
from stacks.plan.policy import evaluate, load_config
from stacks.plan.runner import read_program_input, run_program
from tests.policy_support import container, deployment, messages, restricted_pod, violations

ROOT = Path(__file__).resolve().parent.parent

MIG_PARTED = {
    "version": "v1",
    "mig-configs": {
        "all-disabled": [{"devices": "all", "mig-enabled": False}],
        "swarmstack-h100-mig": [
            {"devices": "all", "mig-enabled": True, "mig-devices": {"3g.40gb": 2}}
        ],
        "swarmstack-h100-small": [
            {"devices": "all", "mig-enabled": True, "mig-devices": {"1g.10gb": 7}}
        ],
    },
}


def gpu_app(
    requests: dict[str, str] | None = None,
    limits: dict[str, str] | None = None,
    node_selector: dict[str, str] | None = None,
    name: str = "app",
) -> k8s.apps.v1.Deployment:
    resources: dict[str, Any] = {
        "requests": {"cpu": "1", "memory": "1Gi", **(requests or {})},
        "limits": {"memory": "1Gi", **(limits or {})},
    }
    pod = restricted_pod(containers=[container(name="vllm", resources=resources)])
    if node_selector is not None:
        pod["nodeSelector"] = node_selector
    return deployment(name=name, pod=pod)


def node_group(
    name: str,
    instance_type: str = "p5.4xlarge",
    max_size: int = 1,
    *,
    ami_type: str | None = "AL2023_x86_64_NVIDIA",
    labels: dict[str, str] | None = None,
    taint_effect: str | None = "NO_SCHEDULE",
    instance_types: list[str] | None = None,
) -> aws.eks.NodeGroup:
    taints = (
        [aws.eks.NodeGroupTaintArgs(key="nvidia.com/gpu", value="present", effect=taint_effect)]
        if taint_effect
        else []
    )
    return aws.eks.NodeGroup(
        name,
        cluster_name="swarm-test",
        node_role_arn="arn:aws:iam::111122223333:role/node",
        subnet_ids=["subnet-a", "subnet-b"],
        ami_type=ami_type,
        instance_types=[instance_type] if instance_types is None else instance_types,
        labels={"swarmstack.io/pool": name, **(labels or {})},
        taints=taints,
        scaling_config=aws.eks.NodeGroupScalingConfigArgs(
            min_size=0, max_size=max_size, desired_size=0
        ),
    )


def mig_parted(document: str | None = None) -> k8s.core.v1.ConfigMap:
    return k8s.core.v1.ConfigMap(
        "mig-parted",
        metadata={"name": "swarmstack-mig-parted", "namespace": "gpu-operator"},
        data={"config.yaml": document or yaml.safe_dump(MIG_PARTED, sort_keys=True)},
    )


# ------------------------------------------------------------------------ gpu-limits-equal-requests


def test_gpu_limits_equal_to_requests_pass() -> None:
    def program() -> None:
        gpu_app({"nvidia.com/gpu": "1"}, {"nvidia.com/gpu": "1"}, name="whole")
        gpu_app({"nvidia.com/mig-3g.40gb": "2"}, {"nvidia.com/mig-3g.40gb": "2"}, name="mig")
        # A request left out defaults to the limit.
        gpu_app(None, {"nvidia.com/gpu": "4"}, name="limit-only")
        gpu_app(name="cpu")

    assert violations(program, "gpu-limits-equal-requests") == []


def test_gpu_requests_without_equal_limits_fail() -> None:
    def program() -> None:
        gpu_app({"nvidia.com/gpu": "1"}, None, name="no-limit")
        gpu_app({"nvidia.com/mig-1g.10gb": "1"}, {"nvidia.com/mig-1g.10gb": "2"}, name="unequal")
        gpu_app({"nvidia.com/gpu": "500m"}, {"nvidia.com/gpu": "500m"}, name="fraction")

    found = violations(program, "gpu-limits-equal-requests")
    assert [(v.rule, v.level) for v in found] == [("gpu-limits-equal-requests", "mandatory")] * 3
    assert sorted(v.message for v in found) == sorted(
        [
            "Deployment agents/no-limit (no-limit): container vllm requests nvidia.com/gpu without "
            "a limit (Kubernetes requires extended resources in limits)",
            "Deployment agents/unequal (unequal): container vllm requests 1 nvidia.com/mig-1g.10gb "
            "but limits 2; GPUs cannot be overcommitted, set both equal",
            "Deployment agents/fraction (fraction): container vllm asks for 0.5 nvidia.com/gpu, "
            "which is not a whole number",
        ]
    )


def test_quantities_are_exact_in_nano_units() -> None:
    one = quantity_nanos("1")
    assert one == 10**9
    assert quantity_nanos(1) == quantity_nanos(1.0) == quantity_nanos("1000m") == one
    assert quantity_nanos("500m") == quantity_nanos("0.5") == 5 * 10**8
    assert quantity_nanos("1Ki") == 1024 * one
    assert quantity_nanos("2e3") == 2000 * one
    assert quantity_nanos("one") is None
    assert quantity_nanos("") is None


# --------------------------------------------------------------------------- mig-parted documents


def test_the_yaml_reader_reads_what_pyyaml_writes() -> None:
    document = yaml.safe_dump(MIG_PARTED, sort_keys=True)
    assert read_yaml_subset(document) == MIG_PARTED
    assert mig_offers(document) == {
        "all-disabled": set(),
        "swarmstack-h100-mig": {"3g.40gb"},
        "swarmstack-h100-small": {"1g.10gb"},
    }


def test_the_yaml_reader_reads_hand_written_and_json_documents() -> None:
    hand_written = """
# written by hand, indented by four, with flow collections
version: v1
mig-configs:
    mixed:
      - devices: [0, 1]
        mig-enabled: true   # turn MIG on
        mig-devices: {"3g.40gb": 1, 2g.20gb: 1, 1g.10gb: 0}
    whole:
      - devices: all
        mig-enabled: false
"""
    assert read_yaml_subset(hand_written) == yaml.safe_load(hand_written)
    assert mig_offers(hand_written) == {"mixed": {"2g.20gb", "3g.40gb"}, "whole": set()}
    # JSON is YAML too: a document written as JSON is read with json.
    assert mig_offers(json.dumps(MIG_PARTED))["swarmstack-h100-mig"] == {"3g.40gb"}


# ------------------------------------------------------------------------------ mig-profile-offered


def test_a_profile_the_selected_pool_creates_passes() -> None:
    def program() -> None:
        mig_parted()
        node_group("h100-mig", labels={"nvidia.com/mig.config": "swarmstack-h100-mig"})
        gpu_app(
            {"nvidia.com/mig-3g.40gb": "1"},
            {"nvidia.com/mig-3g.40gb": "1"},
            node_selector={"swarmstack.io/pool": "h100-mig", "kubernetes.io/arch": "amd64"},
        )

    assert violations(program, "mig-profile-offered") == []


def test_a_profile_no_pool_creates_fails_on_the_workload() -> None:
    def program() -> None:
        mig_parted()
        node_group("h100-mig", labels={"nvidia.com/mig.config": "swarmstack-h100-mig"})
        gpu_app({"nvidia.com/mig-2g.20gb": "1"}, {"nvidia.com/mig-2g.20gb": "1"})

    found = violations(program, "mig-profile-offered")
    assert [(v.rule, v.level) for v in found] == [("mig-profile-offered", "mandatory")]
    assert found[0].resource.endswith("::app")  # reported against the workload's URN
    assert found[0].message == (
        "Deployment agents/app (app): container vllm requests nvidia.com/mig-2g.20gb, which no "
        "MIG configuration its nodes get creates (node group h100-mig applies "
        "swarmstack-h100-mig: 3g.40gb); it would stay Pending"
    )


def test_the_node_selector_narrows_the_pools() -> None:
    def program() -> None:
        mig_parted()
        node_group("h100-mig", labels={"nvidia.com/mig.config": "swarmstack-h100-mig"})
        node_group("h100-small", labels={"nvidia.com/mig.config": "swarmstack-h100-small"})
        node_group("whole", instance_type="p5.48xlarge")  # no label: the default, all-disabled
        # 1g.10gb exists in the stack, but not on the pool this workload is pinned to.
        gpu_app(
            {"nvidia.com/mig-1g.10gb": "1"},
            {"nvidia.com/mig-1g.10gb": "1"},
            node_selector={"swarmstack.io/pool": "h100-mig"},
            name="pinned",
        )
        gpu_app({"nvidia.com/mig-1g.10gb": "1"}, {"nvidia.com/mig-1g.10gb": "1"}, name="anywhere")
        gpu_app(
            {"nvidia.com/mig-3g.40gb": "1"},
            {"nvidia.com/mig-3g.40gb": "1"},
            node_selector={"swarmstack.io/pool": "whole"},
            name="whole-gpus",
        )

    assert sorted(messages(program, "mig-profile-offered")) == sorted(
        [
            "Deployment agents/pinned (pinned): container vllm requests nvidia.com/mig-1g.10gb, "
            "which no MIG configuration its nodes get creates (node group h100-mig applies "
            "swarmstack-h100-mig: 3g.40gb); it would stay Pending",
            "Deployment agents/whole-gpus (whole-gpus): container vllm requests "
            "nvidia.com/mig-3g.40gb, which no MIG configuration its nodes get creates (node group "
            "whole applies the default: no MIG profile); it would stay Pending",
        ]
    )


def test_without_labelled_pools_any_configuration_of_the_stack_counts() -> None:
    def offered() -> None:
        mig_parted()
        gpu_app({"nvidia.com/mig-1g.10gb": "1"}, {"nvidia.com/mig-1g.10gb": "1"})

    def missing() -> None:
        mig_parted()
        gpu_app({"nvidia.com/mig-7g.80gb": "1"}, {"nvidia.com/mig-7g.80gb": "1"})

    def no_configuration() -> None:
        gpu_app({"nvidia.com/mig-1g.10gb": "1"}, {"nvidia.com/mig-1g.10gb": "1"})

    assert violations(offered, "mig-profile-offered") == []
    assert [v.message for v in violations(missing, "mig-profile-offered")] == [
        "Deployment agents/app (app): container vllm requests nvidia.com/mig-7g.80gb, which no "
        "MIG configuration its nodes get creates (mig-parted configurations of the stack offer "
        "1g.10gb, 3g.40gb); it would stay Pending"
    ]
    assert [v.message for v in violations(no_configuration, "mig-profile-offered")] == [
        "Deployment agents/app (app): container vllm requests nvidia.com/mig-1g.10gb, which no "
        "MIG configuration its nodes get creates (the stack declares no mig-parted "
        "configuration); it would stay Pending"
    ]


# --------------------------------------------------------------------------- gpu-node-group-tainted


def test_tainted_gpu_node_groups_and_untainted_cpu_groups_pass() -> None:
    def program() -> None:
        node_group("gpu")
        node_group(
            "system",
            "m7i.xlarge",
            ami_type="AL2023_x86_64_STANDARD",
            taint_effect=None,
        )

    assert violations(program, "gpu-node-group-tainted") == []


def test_gpu_node_groups_without_the_no_schedule_taint_fail() -> None:
    def program() -> None:
        node_group("gpu", "g5.xlarge", ami_type=None, taint_effect=None)
        node_group("gpu-evict", taint_effect="NO_EXECUTE")

    found = violations(program, "gpu-node-group-tainted")
    assert [(v.rule, v.level) for v in found] == [("gpu-node-group-tainted", "mandatory")] * 2
    assert sorted(v.message for v in found) == sorted(
        [
            "NodeGroup gpu: runs GPU nodes (g5.xlarge) but it has no nvidia.com/gpu taint; pods "
            "that ask for no GPU would be scheduled there (taint nvidia.com/gpu with effect "
            "NO_SCHEDULE)",
            "NodeGroup gpu-evict: runs GPU nodes (AL2023_x86_64_NVIDIA, p5.4xlarge) but its "
            "nvidia.com/gpu taint has effect NO_EXECUTE; pods that ask for no GPU would be "
            "scheduled there (taint nvidia.com/gpu with effect NO_SCHEDULE)",
        ]
    )


# --------------------------------------------------------------------------------------- gpu-budget


def test_gpus_within_the_budget_pass() -> None:
    def program() -> None:
        node_group("big", "p5.48xlarge", max_size=1)  # 8
        node_group("small", "g6e.12xlarge", max_size=2)  # 8
        node_group("system", "m7i.xlarge", max_size=10, ami_type="AL2023_x86_64_STANDARD")

    assert violations(program, "gpu-budget") == []


def test_gpus_over_the_budget_fail_with_the_pools() -> None:
    def program() -> None:
        node_group("big", "p5.48xlarge", max_size=2)  # 16
        node_group("small", "g5.xlarge", max_size=3)  # 3

    found = violations(program, "gpu-budget")
    assert [(v.rule, v.level, v.resource) for v in found] == [("gpu-budget", "mandatory", "stack")]
    assert found[0].message == (
        "GPU node groups: 19 GPUs at max scale (big 2 x p5.48xlarge (8 GPUs) = 16; small 3 x "
        "g5.xlarge (1 GPUs) = 3) exceed the budget of 16 (maxGpus)"
    )


def test_the_budget_comes_from_config() -> None:
    def program() -> None:
        node_group("h100", "p5.4xlarge", max_size=5)

    assert violations(program, "gpu-budget") == []
    found = messages(program, "gpu-budget", {"gpu-budget": {"maxGpus": 4}})
    assert found == [
        "GPU node groups: 5 GPUs at max scale (h100 5 x p5.4xlarge (1 GPUs) = 5) exceed the "
        "budget of 4 (maxGpus)"
    ]


def test_instance_types_outside_the_table_are_reported_until_configured() -> None:
    def program() -> None:
        node_group("t4", "g4dn.xlarge", max_size=20)
        node_group("mixed", "p5.48xlarge", max_size=1, instance_types=["p5.48xlarge", "p5.4xlarge"])

    assert messages(program, "gpu-budget") == [
        "GPU node groups: cannot count the GPUs of t4 (g4dn.xlarge): add the instance types to "
        "gpusPerInstance"
    ]
    config = {"gpu-budget": {"gpusPerInstance": {"g4dn.xlarge": 1}}}
    # A group that may launch several types counts the largest.
    assert messages(program, "gpu-budget", config) == [
        "GPU node groups: 28 GPUs at max scale (mixed 1 x p5.48xlarge (8 GPUs) = 8; t4 20 x "
        "g4dn.xlarge (1 GPUs) = 20) exceed the budget of 16 (maxGpus)"
    ]


# --------------------------------------------------------------------------- the pilot stack


def test_pilot_plan_breaks_no_mandatory_gpu_rule() -> None:
    capture = run_program(read_program_input(ROOT, "pilot"))
    assert [str(v) for v in evaluate(capture.registrations, {}, RULES)] == []
    # The pilot's own policy config lowers the budget to 4 GPUs; it plans 2 (2 x p5.4xlarge).
    pilot_config = load_config(ROOT / "policies" / "config" / "pilot.json")
    assert [str(v) for v in evaluate(capture.registrations, pilot_config, RULES)] == []
    tighter = {"gpu-budget": {"maxGpus": 1}}
    assert [v.message for v in evaluate(capture.registrations, tighter, RULES)] == [
        "GPU node groups: 2 GPUs at max scale (gpu-h100-mig 2 x p5.4xlarge (1 GPUs) = 2) "
        "exceed the budget of 1 (maxGpus)"
    ]
