"""Stack config: the shipped stacks load; each mistake is named by its path and value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stacks.config import ConfigError, StackConfig, load

Raw = dict[str, Any]
SOURCE = "stacks/Pulumi.pilot.yaml"


def errors_of(raw: Raw, region: str = "us-east-1") -> list[str]:
    with pytest.raises(ConfigError) as err:
        load(raw, region, SOURCE)
    assert str(err.value).startswith(f"invalid stack config ({SOURCE}):")
    return [str(p) for p in err.value.problems]


def test_shipped_pilot_loads(pilot_raw: Raw) -> None:
    config = load(pilot_raw, "us-east-1", SOURCE)
    assert isinstance(config, StackConfig)
    assert [m.name for m in config.models] == ["qwen25-7b", "llama31-8b"]
    assert config.gpu_pools[0].mig is not None


def _set(path: str, value: Any) -> Callable[[Raw], None]:
    def apply(raw: Raw) -> None:
        node: Any = raw
        parts = path.replace("]", "").replace("[", ".").split(".")
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        last = parts[-1]
        if last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return apply


# A mutator edits the raw config in place; what it returns is ignored.
MISTAKES: list[tuple[str, Callable[[Raw], object], str]] = [
    (
        "wrong MIG profile",
        _set("gpuPools[0].mig.profiles[1]", "3g.45gb"),
        "gpuPools[0].mig.profiles[1]: '3g.45gb' is not a MIG profile of H100-80GB "
        "(one of 1g.10gb, 1g.10gb+me, 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb)",
    ),
    (
        "MIG layout over the slice budget",
        _set("gpuPools[0].mig.profiles", ["3g.40gb", "3g.40gb", "1g.10gb"]),
        "gpuPools[0].mig.profiles: layout ['3g.40gb', '3g.40gb', '1g.10gb'] needs 7 compute "
        "and 9 memory slices; a H100-80GB has 7 compute and 8 memory slices",
    ),
    (
        "profile over its maximum count",
        _set("gpuPools[0].mig.profiles", ["4g.40gb", "4g.40gb"]),
        "gpuPools[0].mig.profiles[1]: 2 x 4g.40gb exceeds that profile's maximum of 1 "
        "per H100-80GB",
    ),
    (
        "MIG on a GPU without MIG",
        _set("gpuPools[0].instanceType", "g6e.12xlarge"),
        "gpuPools[0].mig: g6e.12xlarge has 4 x L40S-48GB, which does not support MIG",
    ),
    (
        "model too large for its slice",
        lambda raw: raw["models"][1]["vllm"].update(maxModelLen=131072, gpuMemoryUtilization=0.8),
        "models[1].architecture: meta-llama/Llama-3.1-8B-Instruct does not fit a MIG 3g.40gb "
        "slice at gpuMemoryUtilization 0.8: weights 16.06 GB + KV cache of one full sequence "
        "17.18 GB = 33.24 GB, budget 31.20 GB",
    ),
    (
        "tensor parallelism on MIG",
        _set("models[0].tensorParallelSize", 2),
        "models[0].tensorParallelSize: 2 is not possible on MIG pool 'h100-mig': a process sees "
        "one MIG device, so it must be 1",
    ),
    (
        "unknown key",
        _set("gpuPools[0].instanceTyp", "p5.4xlarge"),
        "gpuPools[0].instanceTyp: unknown key (valid keys here: availabilityZone, "
        "capacityReservationId, diskSizeGib, instanceType, maxSize, mig, minSize, name, priority)",
    ),
    (
        "wrong type",
        _set("gpuPools[0].minSize", "two"),
        "gpuPools[0].minSize: 'two' is not valid: Input should be a valid integer",
    ),
    (
        "unknown instance type",
        _set("gpuPools[0].instanceType", "p5.5xlarge"),
        "gpuPools[0].instanceType: 'p5.5xlarge' is not valid: Input should be 'g5.12xlarge'",
    ),
    (
        "latest image tag",
        _set("images.vllm.tag", "latest"),
        "images.vllm.tag: 'latest' is not a version: pin a release tag",
    ),
    (
        "API open to the internet",
        _set("cluster.endpoint.publicAccessCidrs", ["0.0.0.0/0"]),
        "cluster.endpoint.publicAccessCidrs[0]: '0.0.0.0/0' opens the whole internet",
    ),
    (
        "model on a pool that does not exist",
        _set("models[0].pool", "a100"),
        "models[0].pool: 'a100' is not a GPU pool (one of ['h100-mig'])",
    ),
    (
        "MIG profile not in the pool's layout",
        _set("models[0].migProfile", "1g.10gb"),
        "models[0].migProfile: '1g.10gb' is not in the MIG layout of pool 'h100-mig' "
        "(one of ['3g.40gb'])",
    ),
    (
        "more replicas than slices",
        _set("gpuPools[0].maxSize", 1),
        "gpuPools[0].maxSize: 1 node(s) of p5.4xlarge offer 2 x nvidia.com/mig-3g.40gb, but the "
        "models on this pool need 4 at max replicas",
    ),
    (
        "single strategy with two profiles",
        lambda raw: (
            raw["gpuOperator"].update(migStrategy="single"),
            raw["gpuPools"][0]["mig"].update(profiles=["3g.40gb", "2g.20gb"]),
        ),
        "gpuPools[0].mig.profiles[1]: '2g.20gb' differs from '3g.40gb': the 'single' MIG "
        "strategy allows one profile per node",
    ),
    (
        "duplicate model names",
        _set("models[1].name", "qwen25-7b"),
        "models[1].name: 'qwen25-7b' is used more than once",
    ),
    (
        "AZ outside the region",
        _set("gpuPools[0].availabilityZone", "eu-west-1a"),
        "gpuPools[0].availabilityZone: 'eu-west-1a' is not in the stack's region 'us-east-1'",
    ),
    (
        "missing required key",
        lambda raw: raw["models"][0].pop("slo"),
        "models[0].slo: required key is missing",
    ),
    (
        "bad weights source field",
        _set("models[0].weights.bucket", "x"),
        "models[0].weights.bucket: unknown key (valid keys here: source, uri)",
    ),
    (
        "tool strictness without a tool parser",
        lambda raw: raw["models"][1]["vllm"].pop("toolCallParser"),
        "models[1].vllm: toolStrictLevel 'parameter' needs toolCallParser: without a parser "
        "vLLM serves no tool calls to constrain",
    ),
    (
        "tool strictness vLLM does not know",
        _set("models[0].vllm.toolStrictLevel", "strict"),
        "models[0].vllm.toolStrictLevel: 'strict' is not valid: Input should be 'auto', "
        "'function' or 'parameter'",
    ),
    (
        "a VPC CNI that cannot enforce NetworkPolicies",
        _set("cluster.addons.vpcCni", "v1.13.4-eksbuild.1"),
        "cluster.addons.vpcCni: 'v1.13.4-eksbuild.1' is not valid: v1.13.4-eksbuild.1 cannot "
        "enforce NetworkPolicies: use v1.14.0 or later",
    ),
    (
        "a phase that does not exist",
        _set("phase", "staging"),
        "phase: 'staging' is not valid: Input should be 'pilot' or 'production'",
    ),
]


@pytest.mark.parametrize(
    "mutate,expected", [(m, e) for _, m, e in MISTAKES], ids=[n for n, _, _ in MISTAKES]
)
def test_each_mistake_is_named(
    pilot_raw: Raw, mutate: Callable[[Raw], object], expected: str
) -> None:
    mutate(pilot_raw)
    problems = errors_of(pilot_raw)
    assert any(p.startswith(expected) for p in problems), problems


def test_several_mistakes_are_reported_together(pilot_raw: Raw) -> None:
    pilot_raw["gpuPools"][0]["mig"]["profiles"][0] = "9g.99gb"
    pilot_raw["models"][0]["tensorParallelSize"] = 2
    problems = errors_of(pilot_raw)
    assert problems[0].startswith("gpuPools[0].mig.profiles[0]: '9g.99gb'")
    assert any(p.startswith("models[0].tensorParallelSize") for p in problems)


def test_tensor_parallel_on_full_gpus_is_bounded_by_gpus_per_node(pilot_raw: Raw) -> None:
    pool = pilot_raw["gpuPools"][0]
    pool.update(instanceType="g6e.12xlarge")
    del pool["mig"]
    for model in pilot_raw["models"]:
        model.pop("migProfile")
    pilot_raw["models"][0]["tensorParallelSize"] = 8
    problems = errors_of(pilot_raw)
    assert (
        "models[0].tensorParallelSize: 8 exceeds the 4 GPU(s) of a g6e.12xlarge node in pool "
        "'h100-mig' (at most 4)"
    ) in problems


def test_full_gpu_pool_accepts_tensor_parallel_models(pilot_raw: Raw) -> None:
    pool = pilot_raw["gpuPools"][0]
    pool.update(instanceType="g6e.12xlarge")
    del pool["mig"]
    for model in pilot_raw["models"]:
        model.pop("migProfile")
        model["tensorParallelSize"] = 2
    config = load(pilot_raw, "us-east-1", SOURCE)
    assert config.models[0].tensor_parallel_size == 2


def test_region_is_required_for_eks(pilot_raw: Raw) -> None:
    assert "aws:region: is not set: the EKS cluster needs a region" in errors_of(pilot_raw, "")


def test_existing_cluster_needs_a_context(pilot_raw: Raw) -> None:
    pilot_raw["cluster"]["mode"] = "existing"
    assert any(
        p.startswith("cluster: mode 'existing' needs kubeconfigContext")
        for p in errors_of(pilot_raw)
    )
