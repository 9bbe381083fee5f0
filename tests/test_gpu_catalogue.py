"""The GPU catalogue: B200 and L4 types, MIG resource names, one GPU table for pack and stack."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from components.compute.instances import INSTANCE_TYPES, PRICES_CHECKED_ON
from components.compute.mig import MIG_PROFILES, MigLayoutError, mig_resource_name, validate_layout
from policies.rules.gpu import GPU_FAMILY, GPUS_PER_INSTANCE, RULES, mig_resource_suffix
from stacks.config import ConfigError, StackConfig, accelerator_resource, load, pool_offers
from stacks.plan.policy import evaluate
from stacks.plan.runner import read_program_input, run_program

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "stacks/Pulumi.pilot.yaml"
Raw = dict[str, Any]


# --- one table of GPUs per instance type: the policy pack and the components ----------


def test_the_pack_counts_the_gpus_the_components_know() -> None:
    for name, itype in INSTANCE_TYPES.items():
        if itype.gpus:
            assert GPUS_PER_INSTANCE.get(name) == itype.gpus, (
                f"{name}: the policy pack counts {GPUS_PER_INSTANCE.get(name)} GPUs, "
                f"components/compute/instances.py {itype.gpus}"
            )
            assert GPU_FAMILY.match(name), f"the pack would not see {name} as a GPU type"
        else:
            assert name not in GPUS_PER_INSTANCE, name
            assert not GPU_FAMILY.match(name), f"the pack would take {name} for a GPU type"


def test_every_type_of_the_pack_is_an_nvidia_gpu_type_of_a_known_family() -> None:
    families = {name.split(".")[0] for name, t in INSTANCE_TYPES.items() if t.gpus}
    for name, gpus in GPUS_PER_INSTANCE.items():
        assert gpus > 0 and name.split(".")[0] in families, name


def test_the_pack_names_mig_resources_as_the_device_plugin_does() -> None:
    for gpu, profiles in MIG_PROFILES.items():
        for profile in profiles:
            resource = mig_resource_name(profile, "mixed")
            assert resource == f"nvidia.com/mig-{mig_resource_suffix(profile)}", (gpu, profile)
            assert "+" not in resource  # Kubernetes resource names allow no '+'
    assert mig_resource_name("1g.23gb+me", "mixed") == "nvidia.com/mig-1g.23gb.me"


# --- B200 ------------------------------------------------------------------------------


def test_b200_layouts_that_fit() -> None:
    # the MIG manager's own balanced B200 layout, and a full GPU of each 1g size
    for layout in (
        ["1g.23gb", "1g.23gb", "2g.45gb", "3g.90gb"],
        ["1g.23gb"] * 7,
        ["1g.45gb"] * 4,
        ["4g.90gb", "3g.90gb"],
        ["1g.23gb+me", "1g.23gb", "2g.45gb", "3g.90gb"],
    ):
        profiles = validate_layout("B200-180GB", layout, "mixed")
        assert sum(p.compute_slices for p in profiles) <= 7
        assert sum(p.memory_slices for p in profiles) <= 8


@pytest.mark.parametrize(
    "layout,message",
    [
        (
            ["4g.90gb", "3g.90gb", "1g.23gb"],
            "layout ['4g.90gb', '3g.90gb', '1g.23gb'] needs 8 compute and 9 memory slices; "
            "a B200-180GB has 7 compute and 8 memory slices",
        ),
        (["1g.45gb"] * 5, "5 x 1g.45gb exceeds that profile's maximum of 4 per B200-180GB"),
        (
            ["1g.23gb+me", "1g.23gb+me"],
            "2 x 1g.23gb+me exceeds that profile's maximum of 1 per B200-180GB",
        ),
        (
            ["3g.90gb", "3g.80gb"],
            "'3g.80gb' is not a MIG profile of B200-180GB (one of 1g.23gb, 1g.23gb+me, 1g.45gb, "
            "2g.45gb, 3g.90gb, 4g.90gb, 7g.180gb)",
        ),
    ],
)
def test_b200_layouts_that_do_not_fit(layout: list[str], message: str) -> None:
    with pytest.raises(MigLayoutError) as err:
        validate_layout("B200-180GB", layout, "mixed")
    assert str(err.value) == message


def b200_stack(raw: Raw, layout: list[str], profiles: tuple[str, str]) -> Raw:
    """The pilot moved onto one p6-b200.48xlarge node with `layout` on each of its 8 GPUs."""
    raw["gpuPools"] = [
        {
            "name": "b200-mig",
            "instanceType": "p6-b200.48xlarge",
            "minSize": 1,
            "maxSize": 1,
            "diskSizeGib": 1000,
            "mig": {"profiles": layout},
        }
    ]
    for model, profile in zip(raw["models"], profiles, strict=True):
        model.update(pool="b200-mig", migProfile=profile)
    return raw


LAYOUT = ["1g.23gb+me", "1g.23gb", "2g.45gb", "3g.90gb"]


def test_models_size_on_b200_slices(pilot_raw: Raw) -> None:
    config = load(b200_stack(pilot_raw, LAYOUT, ("3g.90gb", "1g.23gb+me")), "us-east-1", SOURCE)
    qwen, llama = config.models
    pool = config.gpu_pools[0]
    assert accelerator_resource(llama, config) == ("nvidia.com/mig-1g.23gb.me", 1)
    # one node: 8 GPUs, each with the whole layout
    assert pool_offers(pool, "mixed", 1) == {
        "nvidia.com/mig-1g.23gb.me": 8,
        "nvidia.com/mig-1g.23gb": 8,
        "nvidia.com/mig-2g.45gb": 8,
        "nvidia.com/mig-3g.90gb": 8,
    }
    assert accelerator_resource(qwen, config) == ("nvidia.com/mig-3g.90gb", 1)


def test_a_model_too_large_for_its_b200_slice_names_the_slice(pilot_raw: Raw) -> None:
    raw = b200_stack(pilot_raw, LAYOUT, ("3g.90gb", "1g.23gb"))
    raw["models"][1]["vllm"]["maxModelLen"] = 131072
    with pytest.raises(ConfigError) as err:
        load(raw, "us-east-1", SOURCE)
    assert [str(p) for p in err.value.problems] == [
        "models[1].architecture: meta-llama/Llama-3.1-8B-Instruct does not fit a MIG 1g.23gb "
        "slice at gpuMemoryUtilization 0.9: weights 16.06 GB + KV cache of one full sequence "
        "17.18 GB = 33.24 GB, budget 20.18 GB. Use a larger slice, a shorter maxModelLen, fp8 "
        "KV cache or a quantized model"
    ]
    # the same model and context fit the next larger slice
    raw["gpuPools"][0]["mig"]["profiles"] = ["1g.23gb", "2g.45gb", "1g.23gb", "3g.90gb"]
    raw["models"][1]["migProfile"] = "2g.45gb"
    assert isinstance(load(raw, "us-east-1", SOURCE), StackConfig)


def test_a_b200_stack_plans_with_me_slices_the_pack_accepts(pilot_raw: Raw) -> None:
    """The real program on the mock runtime: the +me slice is requested by the device
    plugin's name for it, and the pack finds it in the pool's mig-parted configuration."""
    stack = b200_stack(copy.deepcopy(pilot_raw), LAYOUT, ("3g.90gb", "1g.23gb+me"))
    inp = read_program_input(ROOT, "pilot")
    inp.config["swarmstack:gpuPools"] = json.dumps(stack["gpuPools"])
    inp.config["swarmstack:models"] = json.dumps(stack["models"])
    capture = run_program(inp)
    limits = {
        d.inputs["metadata"]["name"]: d.inputs["spec"]["template"]["spec"]["containers"][0][
            "resources"
        ]["limits"]
        for d in capture.of_type("kubernetes:apps/v1:Deployment")
    }
    assert limits["llama31-8b"]["nvidia.com/mig-1g.23gb.me"] == "1"
    assert limits["qwen25-7b"]["nvidia.com/mig-3g.90gb"] == "1"
    groups = {
        g.inputs["nodeGroupName"]: g.inputs for g in capture.of_type("aws:eks/nodeGroup:NodeGroup")
    }
    assert groups["b200-mig"]["instanceTypes"] == ["p6-b200.48xlarge"]
    assert groups["b200-mig"]["labels"]["nvidia.com/mig.config"] == "swarmstack-b200-mig"
    assert [str(v) for v in evaluate(capture.registrations, {}, RULES)] == []


# --- L4 (g6) ---------------------------------------------------------------------------


def l4_stack(raw: Raw, instance_type: str) -> Raw:
    pool = raw["gpuPools"][0]
    pool.update(name="l4", instanceType=instance_type)
    del pool["mig"]
    for model in raw["models"]:
        model.update(pool="l4")
        model.pop("migProfile")
    return raw


def test_an_l4_pool_refuses_mig(pilot_raw: Raw) -> None:
    raw = l4_stack(pilot_raw, "g6.xlarge")
    raw["gpuPools"][0]["mig"] = {"profiles": ["1g.10gb"]}
    with pytest.raises(ConfigError) as err:
        load(raw, "us-east-1", SOURCE)
    mig_problem = next(str(p) for p in err.value.problems if p.path == "gpuPools[0].mig")
    assert mig_problem.startswith(
        "gpuPools[0].mig: g6.xlarge has 1 x L4-24GB, which does not support MIG "
        "(MIG instance types: p4d.24xlarge, p4de.24xlarge, p5.48xlarge, p5.4xlarge, "
        "p5e.48xlarge, p5en.48xlarge, p6-b200.48xlarge); remove mig"
    )


def test_models_size_on_whole_l4_gpus(pilot_raw: Raw) -> None:
    raw = l4_stack(pilot_raw, "g6.12xlarge")
    raw["gpuPools"][0]["maxSize"] = 2
    config = load(raw, "us-east-1", SOURCE)
    assert pool_offers(config.gpu_pools[0], "mixed", 2) == {"nvidia.com/gpu": 8}
    # a g6.12xlarge has 4 L4s: tensor parallelism stops there
    raw["models"][0]["tensorParallelSize"] = 8
    with pytest.raises(ConfigError) as err:
        load(raw, "us-east-1", SOURCE)
    assert (
        "models[0].tensorParallelSize: 8 exceeds the 4 GPU(s) of a g6.12xlarge node in pool "
        "'l4' (at most 4)"
    ) in [str(p) for p in err.value.problems]


def test_a_model_too_large_for_one_l4_names_the_gpu(pilot_raw: Raw) -> None:
    raw = l4_stack(pilot_raw, "g6.xlarge")
    raw["gpuPools"][0]["maxSize"] = 2
    raw["models"][1]["vllm"]["maxModelLen"] = 65536
    with pytest.raises(ConfigError) as err:
        load(raw, "us-east-1", SOURCE)
    assert [str(p) for p in err.value.problems] == [
        "models[1].architecture: meta-llama/Llama-3.1-8B-Instruct does not fit a 1 x L4-24GB "
        "at gpuMemoryUtilization 0.9: weights 16.06 GB + KV cache of one full sequence 8.59 GB "
        "= 24.65 GB, budget 21.06 GB. Use a larger slice, a shorter maxModelLen, fp8 KV cache "
        "or a quantized model"
    ]


# --- prices --------------------------------------------------------------------------


def test_the_readme_dates_the_prices_as_the_catalogue_does() -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"the date of the price list: {PRICES_CHECKED_ON}" in readme
