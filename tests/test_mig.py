"""MIG layout rules: NVIDIA's profile tables, slice budgets, maximum counts and placements."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.compute.mig import (
    COMPUTE_SLICES,
    MEMORY_SLICES,
    MIG_PROFILES,
    MigLayoutError,
    mig_resource_name,
    place_instances,
    validate_layout,
)
from tests.mig_strategies import valid_layouts


def test_every_mig_gpu_lists_the_seven_nvidia_profiles() -> None:
    assert list(MIG_PROFILES["A100-40GB"]) == [
        "1g.5gb",
        "1g.5gb+me",
        "1g.10gb",
        "2g.10gb",
        "3g.20gb",
        "4g.20gb",
        "7g.40gb",
    ]
    assert "1g.20gb" in MIG_PROFILES["H100-80GB"]
    assert MIG_PROFILES["H200-141GB"]["3g.71gb"].max_per_gpu == 2
    assert MIG_PROFILES["A100-80GB"]["1g.10gb"].max_per_gpu == 7


@pytest.mark.parametrize(
    "gpu,layout",
    [
        ("H100-80GB", ["7g.80gb"]),
        ("H100-80GB", ["3g.40gb", "3g.40gb"]),
        ("H100-80GB", ["4g.40gb", "2g.20gb", "1g.10gb"]),
        ("H100-80GB", ["3g.40gb", "2g.20gb", "1g.20gb"]),
        ("A100-40GB", ["2g.10gb", "2g.10gb", "3g.20gb"]),
        ("A100-40GB", ["1g.5gb"] * 7),
        ("A100-40GB", ["1g.10gb"] * 4),
        ("H200-141GB", ["4g.71gb", "3g.71gb"]),
    ],
)
def test_valid_layouts_pass(gpu: str, layout: list[str]) -> None:
    assert len(validate_layout(gpu, layout, "mixed")) == len(layout)


def test_unknown_profile_names_the_gpu_and_the_valid_profiles() -> None:
    with pytest.raises(MigLayoutError) as err:
        validate_layout("H100-80GB", ["3g.40gb", "3g.45gb"], "mixed")
    assert err.value.index == 1
    assert "'3g.45gb' is not a MIG profile of H100-80GB (one of 1g.10gb, 1g.10gb+me" in str(
        err.value
    )


def test_over_maximum_count_gives_the_numbers() -> None:
    with pytest.raises(MigLayoutError, match=r"2 x 4g.40gb exceeds that profile's maximum of 1"):
        validate_layout("H100-80GB", ["4g.40gb", "4g.40gb"], "mixed")


def test_over_slice_budget_gives_the_numbers() -> None:
    with pytest.raises(MigLayoutError, match=r"needs 7 compute and 9 memory slices"):
        validate_layout("H100-80GB", ["3g.40gb", "3g.40gb", "1g.10gb"], "mixed")


def test_placement_respects_fixed_start_positions() -> None:
    # 3g may start at slice 0 or 4 only; with 2g + 2g the 3g has to go right.
    profiles = validate_layout("A100-40GB", ["3g.20gb", "2g.10gb", "2g.10gb"], "mixed")
    assert place_instances(profiles) == [4, 0, 2]


def test_single_strategy_allows_one_profile_per_node() -> None:
    validate_layout("H100-80GB", ["3g.40gb", "3g.40gb"], "single")
    with pytest.raises(MigLayoutError, match="'single' MIG strategy") as err:
        validate_layout("H100-80GB", ["3g.40gb", "2g.20gb"], "single")
    assert err.value.index == 1


def test_mig_on_a_gpu_without_mig() -> None:
    with pytest.raises(MigLayoutError, match="L40S-48GB does not support MIG"):
        validate_layout("L40S-48GB", ["1g.10gb"], "mixed")


def test_resource_names_follow_the_device_plugin_strategy() -> None:
    assert mig_resource_name("3g.40gb", "mixed") == "nvidia.com/mig-3g.40gb"
    assert mig_resource_name("3g.40gb", "single") == "nvidia.com/gpu"


# Properties draw only layouts validate_layout accepts (built up one accepted profile at a
# time), so each checks something on every example instead of returning on a rejection.
mixed_layouts = valid_layouts(strategies=("mixed",))


@settings(max_examples=400, deadline=None)
@given(mixed_layouts)
def test_every_accepted_layout_fits_budget_and_counts(case: tuple[str, list[str], str]) -> None:
    gpu, names, _ = case
    assert names, "a single profile is always a valid layout"
    profiles = validate_layout(gpu, names, "mixed")
    assert [p.name for p in profiles] == names
    assert sum(p.compute_slices for p in profiles) <= COMPUTE_SLICES
    assert sum(p.memory_slices for p in profiles) <= MEMORY_SLICES
    for name, count in Counter(names).items():
        assert count <= MIG_PROFILES[gpu][name].max_per_gpu


@settings(max_examples=200, deadline=None)
@given(mixed_layouts, st.randoms(use_true_random=False))
def test_accepted_layouts_are_accepted_in_any_order(
    case: tuple[str, list[str], str], rng: random.Random
) -> None:
    gpu, names, _ = case
    shuffled = list(names)
    rng.shuffle(shuffled)
    for order in (shuffled, list(reversed(names))):
        profiles = validate_layout(gpu, order, "mixed")
        assert [p.name for p in profiles] == order
        assert place_instances(profiles) is not None


@settings(max_examples=300, deadline=None)
@given(mixed_layouts)
def test_accepted_layouts_have_a_non_overlapping_placement(
    case: tuple[str, list[str], str],
) -> None:
    gpu, names, _ = case
    profiles = validate_layout(gpu, names, "mixed")
    starts = place_instances(profiles)
    assert starts is not None
    compute: list[int] = []
    memory: list[int] = []
    for p, start in zip(profiles, starts, strict=True):
        assert start in p.placements()
        compute += range(start, start + p.compute_slices)
        memory += range(start, start + p.memory_slices)
    assert len(compute) == len(set(compute)) and max(compute) < COMPUTE_SLICES
    assert len(memory) == len(set(memory)) and max(memory) < MEMORY_SLICES
