"""The placement planner over pools of different GPU types: the slice and pool each model
gets, the order of the pools, the error for a model no pool holds, and what the stack
renders from it (pod node affinity and priority, the model PriorityClasses, the Cluster
Autoscaler's priority expander), down to a whole offline plan of a multi-pool stack that
passes the plan's checks and the policy pack."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.compute.nodes import POOL_LABEL
from components.compute.placement import (
    asg_name_pattern,
    expander_priorities,
    pool_order,
    usd_per_compute_slice_hour,
)
from components.scale import cluster_autoscaler_chart
from components.scale.cluster_autoscaler import EXPANDERS, cluster_autoscaler_values
from components.serving.model_serving import MODEL_PRIORITY_CLASSES, pod_template
from stacks.cli import main
from stacks.config import ConfigError, StackConfig, load, placements, serving_placement
from tests.conftest import ROOT, pilot_stack_file

Raw = dict[str, Any]
MIG_LAYOUT = ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"]  # NVIDIA's "all-balanced"


def _swarmstack_keys(doc: Raw) -> Raw:
    return copy.deepcopy(
        {k.split(":", 1)[1]: v for k, v in doc.items() if k.startswith("swarmstack:")}
    )


def multi_pool_raw() -> Raw:
    """The pilot with three pools of two GPU types and four models, none pinned: an A100
    MIG pool preferred by priority, an H100 MIG pool with the same layout, and a pool of
    whole H100s."""
    raw = _swarmstack_keys(pilot_stack_file())
    raw["gpuPools"] = [
        {
            "name": "a100-mig",
            "instanceType": "p4de.24xlarge",
            "minSize": 1,
            "maxSize": 1,
            "priority": 20,
            "availabilityZone": "us-east-1a",
            "mig": {"profiles": MIG_LAYOUT},
        },
        {
            "name": "h100-mig",
            "instanceType": "p5.4xlarge",
            "minSize": 1,
            "maxSize": 2,
            "mig": {"profiles": MIG_LAYOUT},
        },
        {"name": "h100", "instanceType": "p5.48xlarge", "minSize": 1, "maxSize": 1},
    ]
    qwen7b, llama8b = raw["models"]
    small = copy.deepcopy(qwen7b)
    small.update(
        name="qwen25-1p5b",
        model="Qwen/Qwen2.5-1.5B-Instruct",
        replicas={"min": 1, "max": 4},
        architecture={
            "parametersB": 1.54,
            "layers": 28,
            "kvHeads": 2,
            "headDim": 128,
            "dtype": "bfloat16",
        },
        vllm={**qwen7b["vllm"], "maxModelLen": 8192},
    )
    large = copy.deepcopy(llama8b)
    large.update(
        name="llama31-70b",
        model="meta-llama/Llama-3.1-70B-Instruct",
        tensorParallelSize=4,
        replicas={"min": 1, "max": 2},
        architecture={
            "parametersB": 70.6,
            "layers": 80,
            "kvHeads": 8,
            "headDim": 128,
            "dtype": "bfloat16",
        },
    )
    raw["models"] = [small, qwen7b, llama8b, large]
    for model in raw["models"]:
        model.pop("pool")
        model.pop("migProfile")
    return raw


def _load(raw: Raw) -> StackConfig:
    return load(raw, "us-east-1", "Pulumi.binpack.yaml")


def _problems(raw: Raw) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        _load(raw)
    return [str(p) for p in exc.value.problems]


# --------------------------------------------------------------------------- decisions


def test_each_model_gets_the_smallest_slice_that_holds_it_on_the_preferred_pool() -> None:
    placed = placements(_load(multi_pool_raw()))
    # 1.5B at 8k tokens fits a 1g.10gb slice; 7B at 32k needs 2g.20gb; 8B at 16k with 32
    # sequences 3g.40gb: all on the A100 pool, the one of highest priority.
    assert (placed["qwen25-1p5b"].pool, placed["qwen25-1p5b"].profile) == ("a100-mig", "1g.10gb")
    assert placed["qwen25-1p5b"].resource == "nvidia.com/mig-1g.10gb"
    assert (placed["qwen25-7b"].pool, placed["qwen25-7b"].profile) == ("a100-mig", "2g.20gb")
    assert (placed["llama31-8b"].pool, placed["llama31-8b"].profile) == ("a100-mig", "3g.40gb")
    # 70B in bf16 holds on no slice (a process sees one MIG device): four whole H100s.
    big = placed["llama31-70b"]
    assert (big.pool, big.profile, big.resource, big.count) == ("h100", None, "nvidia.com/gpu", 4)
    # The H100 MIG pool offers the same slices: replicas may overflow onto it, not onto
    # the whole-GPU pool (another resource).
    assert placed["qwen25-1p5b"].overflow == ("h100-mig",)
    assert big.overflow == ()
    # A slice's price is its share of compute slices of the GPU's layout.
    assert placed["qwen25-1p5b"].usd_per_replica_hour == pytest.approx(27.447 / 8 / 7)


def test_pools_are_tried_by_priority_then_by_the_price_of_a_compute_slice() -> None:
    config = _load(multi_pool_raw())
    assert [p.name for p in pool_order(config.gpu_pools)] == ["a100-mig", "h100", "h100-mig"]
    # h100 and h100-mig: the same GPU at the same price, all 7 compute slices used.
    assert usd_per_compute_slice_hour(config.pool("h100")) == pytest.approx(6.88 / 7)
    assert usd_per_compute_slice_hour(config.pool("a100-mig")) == pytest.approx(27.447 / 8 / 7)

    raw = multi_pool_raw()
    raw["gpuPools"][1]["priority"] = 30  # now the H100 MIG pool comes first
    placed = placements(_load(raw))
    assert placed["qwen25-1p5b"].pool == "h100-mig"
    assert placed["qwen25-1p5b"].overflow == ("a100-mig",)

    raw = multi_pool_raw()
    del raw["gpuPools"][0]["priority"]  # equal priorities: the cheaper slice wins
    assert placements(_load(raw))["qwen25-1p5b"].pool == "a100-mig"


def test_largest_slices_are_placed_first_and_spill_to_the_next_pool() -> None:
    raw = multi_pool_raw()
    # 9 x 3g.40gb: the A100 node has 8, the H100 MIG pool 2: whole H100s take it.
    raw["models"][2]["replicas"] = {"min": 1, "max": 9}
    raw["gpuPools"][2]["maxSize"] = 3
    placed = placements(_load(raw))
    assert (placed["llama31-8b"].pool, placed["llama31-8b"].count) == ("h100", 1)
    # The smaller models still find their slices on the A100 pool.
    assert placed["qwen25-7b"].pool == placed["qwen25-1p5b"].pool == "a100-mig"


def test_a_pinned_pool_and_profile_are_kept_and_never_overflow() -> None:
    raw = multi_pool_raw()
    raw["models"][0].update(pool="h100-mig", migProfile="2g.20gb", replicas={"min": 1, "max": 2})
    placed = placements(_load(raw))["qwen25-1p5b"]
    assert (placed.pool, placed.profile, placed.pinned, placed.overflow) == (
        "h100-mig",
        "2g.20gb",
        True,
        (),
    )


def test_the_pilot_keeps_its_pinned_placement() -> None:
    config = load(_swarmstack_keys(pilot_stack_file()), "us-east-1", "Pulumi.pilot.yaml")
    for model in config.models:
        placed = placements(config)[model.name]
        assert (placed.pool, placed.profile, placed.overflow) == ("h100-mig", "3g.40gb", ())


def test_a_model_no_pool_holds_names_its_path_and_every_pool_tried() -> None:
    raw = multi_pool_raw()
    raw["models"][3].update(
        name="llama31-405b",
        model="meta-llama/Llama-3.1-405B-Instruct",
        tensorParallelSize=8,
        architecture={
            "parametersB": 405.0,
            "layers": 126,
            "kvHeads": 8,
            "headDim": 128,
            "dtype": "bfloat16",
        },
    )
    (problem,) = _problems(raw)
    assert problem.startswith("models[3]: 'llama31-405b' (meta-llama/Llama-3.1-405B-Instruct)")
    assert "fits no GPU pool; tried: a100-mig (" in problem
    assert "h100 (8 x H100-80GB too small" in problem
    assert "h100-mig (is partitioned with MIG" in problem


def test_a_pinned_model_that_fits_no_slice_of_its_pool_names_the_pool() -> None:
    raw = multi_pool_raw()
    raw["models"][2]["pool"] = "h100-mig"
    raw["models"][2]["architecture"]["parametersB"] = 30.0  # 60 GB of bf16 weights
    (problem,) = _problems(raw)
    assert problem.startswith(
        "models[2].pool: 'llama31-8b' (meta-llama/Llama-3.1-8B-Instruct) does not fit its "
        "pool 'h100-mig'; tried: h100-mig (no slice of its layout holds it (largest 3g.40gb:"
    )


def test_a_model_that_holds_but_finds_no_room_says_what_is_left() -> None:
    raw = multi_pool_raw()
    raw["models"][2]["replicas"] = {"min": 1, "max": 9}
    (problem,) = _problems(raw)
    assert problem.startswith("models[2]: 'llama31-8b'")
    assert "a100-mig (8 x nvidia.com/mig-3g.40gb left at maxSize 1, 9 needed" in problem
    assert "h100 (0 x nvidia.com/gpu left at maxSize 1, 9 needed" in problem


def test_a_pool_priority_out_of_range_is_refused() -> None:
    raw = multi_pool_raw()
    raw["gpuPools"][0]["priority"] = 0
    assert any(p.startswith("gpuPools[0].priority: 0 is not valid") for p in _problems(raw))


# --------------------------------------------------------------------------- rendered


def test_pods_require_their_pools_prefer_the_planned_one_and_carry_their_tier() -> None:
    config = _load(multi_pool_raw())
    small = next(m for m in config.models if m.name == "qwen25-1p5b")
    pod = pod_template(
        small,
        image=config.images.vllm,
        placement=serving_placement(small, config),
        cost_labels=config.cost_labels,
        service_account=small.name,
        hf_token_secret=None,
    )["spec"]
    assert "nodeSelector" not in pod
    affinity = pod["affinity"]["nodeAffinity"]
    (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [
        {"key": POOL_LABEL, "operator": "In", "values": ["a100-mig", "h100-mig"]}
    ]
    (preferred,) = affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["weight"] == 100
    assert preferred["preference"]["matchExpressions"][0]["values"] == ["a100-mig"]
    assert pod["priorityClassName"] == "swarmstack-model-interactive"
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/mig-1g.10gb"] == "1"

    big = next(m for m in config.models if m.name == "llama31-70b")
    pod = pod_template(
        big,
        image=config.images.vllm,
        placement=serving_placement(big, config),
        cost_labels=config.cost_labels,
        service_account=big.name,
        hf_token_secret=None,
    )["spec"]
    assert pod["nodeSelector"] == {POOL_LABEL: "h100"}
    assert "affinity" not in pod
    assert pod["priorityClassName"] == "swarmstack-model-batch"


def test_interactive_models_outrank_batch_ones() -> None:
    interactive, batch = MODEL_PRIORITY_CLASSES["interactive"], MODEL_PRIORITY_CLASSES["batch"]
    assert interactive[1] > batch[1] > 0


def test_the_expander_grows_pools_in_placement_order_and_still_grows_the_rest() -> None:
    config = _load(multi_pool_raw())
    table = expander_priorities(config.gpu_pools)
    assert table == {
        1: [".*"],
        10: [asg_name_pattern("h100"), asg_name_pattern("h100-mig")],
        20: [asg_name_pattern("a100-mig")],
    }
    # The patterns match the Auto Scaling group EKS names after the node group, and not a
    # group whose name only starts the same.
    group = "eks-h100-mig-4ec6a1b2-9c1d-7e2f-0a3b-5c6d7e8f9a0b"
    assert re.match(asg_name_pattern("h100-mig"), group)
    assert not re.match(asg_name_pattern("h100"), group)
    values = cluster_autoscaler_values(
        cluster_name="c",
        region="us-east-1",
        kubernetes_version="1.33",
        role_arn="arn:aws:iam::111122223333:role/r",
        cost_labels=config.cost_labels,
        priorities=table,
    )
    assert values["extraArgs"]["expander"] == EXPANDERS == "priority,least-waste"
    assert values["expanderPriorities"] == {str(k): v for k, v in table.items()}
    assert cluster_autoscaler_chart.unchecked_value_paths(values) == []


# --------------------------------------------------------------------------- the plan


@pytest.fixture(scope="module")
def binpack_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The offline plan of the multi-pool stack, from a project root whose program is this
    checkout's."""
    root = tmp_path_factory.mktemp("binpack")
    (root / "stacks").mkdir()
    (root / "Pulumi.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "swarmstack",
                "runtime": "python",
                "main": str(ROOT / "stacks"),
                "stackConfigDir": "stacks",
            }
        )
    )
    doc = {k: v for k, v in pilot_stack_file().items() if not k.startswith("swarmstack:")}
    doc.update({f"swarmstack:{k}": v for k, v in multi_pool_raw().items()})
    (root / "stacks" / "Pulumi.binpack.yaml").write_text(yaml.safe_dump({"config": doc}))
    # The pilot's policy levels, with a GPU budget for three pools (18 GPUs at max).
    levels = json.loads((ROOT / "policies" / "config" / "pilot.json").read_text())
    levels["gpu-budget"]["maxGpus"] = 18
    (root / "policies" / "config").mkdir(parents=True)
    (root / "policies" / "config" / "binpack.json").write_text(json.dumps(levels))
    out = root / "out"
    # 0: every check of the plan passes and no mandatory policy is violated.
    assert main(["plan", "binpack", "--root", str(root), "--out", str(out)]) == 0
    return out / "binpack"


def _manifest(plan: Path, kind: str, name: str) -> dict[str, Any]:
    docs = [yaml.safe_load(p.read_text()) for p in sorted((plan / "manifests").glob("*.yaml"))]
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def test_the_multi_pool_plan_renders_classes_affinity_and_the_expander(
    binpack_plan: Path,
) -> None:
    for tier, (name, value) in MODEL_PRIORITY_CLASSES.items():
        cls = _manifest(binpack_plan, "PriorityClass", name)
        assert (cls["value"], cls["preemptionPolicy"], cls["globalDefault"]) == (
            value,
            "PreemptLowerPriority",
            False,
        ), tier
    pod = _manifest(binpack_plan, "Deployment", "qwen25-1p5b")["spec"]["template"]["spec"]
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    release = yaml.safe_load((binpack_plan / "helm" / "cluster-autoscaler.yaml").read_text())
    assert release["values"]["extraArgs"]["expander"] == "priority,least-waste"
    assert release["values"]["expanderPriorities"]["20"] == [asg_name_pattern("a100-mig")]
    assert release["values"]["expanderPriorities"]["1"] == [".*"]


def test_the_plan_summary_reports_slices_needed_against_offered_per_pool(
    binpack_plan: Path,
) -> None:
    summary = json.loads((binpack_plan / "summary.json").read_text())
    rows = {(r["pool"], r["resource"]): r for r in summary["poolSlicesAtMax"]}
    one_g = rows[("a100-mig", "nvidia.com/mig-1g.10gb")]
    # 4 replicas of the 1.5B model; one p4de node: 8 GPUs x 2 slices of 1g.10gb.
    assert (one_g["needed"], one_g["offered"], one_g["nodesNeeded"]) == (4, 16, 1)
    whole = rows[("h100", "nvidia.com/gpu")]
    assert (whole["needed"], whole["offered"]) == (8, 8)
    assert rows[("h100-mig", "nvidia.com/mig-3g.40gb")]["needed"] == 0
    text = (binpack_plan / "summary.txt").read_text()
    assert "  a100-mig: mig-1g.10gb 4 needed / 16 offered; 1 of maxSize 1 node(s) hold them" in text
