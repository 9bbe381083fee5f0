# pyright: strict
"""The gpu-operator chart pin: rendered values hold to the keys checked at that release."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from components.compute.gpu_node_pool import gpu_operator_values, mig_parted_config
from components.compute.gpu_operator_chart import (
    CHART_VERSION,
    VALUE_KEYS,
    mig_parted_problems,
    unchecked_value_paths,
    value_key_paths,
)
from components.compute.instances import INSTANCE_TYPES
from components.compute.mig import MIG_PROFILES, MigLayoutError, validate_layout
from components.specs import CostLabels, GpuOperatorSpec, GpuPoolSpec
from stacks.config import ConfigError, load
from tests.vllm_support import cluster_stack_files

ROOT = Path(__file__).resolve().parent.parent
COST = CostLabels.model_validate({"team": "t", "costCenter": "cc-1", "environment": "pilot"})


def operator(strategy: str) -> GpuOperatorSpec:
    return GpuOperatorSpec.model_validate({"chartVersion": CHART_VERSION, "migStrategy": strategy})


def renderings() -> list[dict[str, Any]]:
    """Every shape of values the component renders: both strategies, with and without labels."""
    return [
        gpu_operator_values(operator(strategy), labels)
        for strategy in ("single", "mixed")
        for labels in (None, COST)
    ]


def test_every_rendered_key_path_was_checked_against_the_pinned_chart() -> None:
    for values in renderings():
        assert unchecked_value_paths(values) == [], (
            f"set only keys checked in the gpu-operator chart {CHART_VERSION} "
            "(components/compute/gpu_operator_chart.py)"
        )


def test_every_recorded_key_is_one_the_component_renders() -> None:
    rendered = {path for values in renderings() for path in value_key_paths(values)}
    assert rendered == set(VALUE_KEYS)


def test_rendered_values_have_the_recorded_shapes() -> None:
    for values in renderings():
        for path in value_key_paths(values):
            node: Any = values
            for part in path.split("."):
                node = node[part]
            kind = VALUE_KEYS[path].kind
            if kind == "map":
                assert isinstance(node, dict), path
                entries = cast(dict[str, object], node)
                assert all(isinstance(v, str) for v in entries.values()), path
            elif kind == "list":
                assert isinstance(node, list) and node, path
            else:
                assert isinstance(node, str | bool | int), path


def test_key_paths_stop_at_recorded_maps_and_report_what_was_not_checked() -> None:
    values = {
        "operator": {"labels": {"team": "t"}},
        "dcgmExporter": {"serviceMonitor": {"enabled": True, "interval": "30s"}},
        "driver": {"enabled": False, "version": "595.91.07"},
    }
    assert list(value_key_paths(values)) == [
        "operator.labels",
        "dcgmExporter.serviceMonitor.enabled",
        "dcgmExporter.serviceMonitor.interval",
        "driver.enabled",
        "driver.version",
    ]
    assert unchecked_value_paths(values) == [
        "dcgmExporter.serviceMonitor.interval",
        "driver.version",
    ]


def test_every_stack_pins_the_checked_chart_version() -> None:
    for path in cluster_stack_files():
        config = yaml.safe_load(path.read_text())["config"]
        assert config["swarmstack:gpuOperator"]["chartVersion"] == CHART_VERSION, path.name


def test_a_chart_version_that_was_not_checked_is_refused_by_path(pilot_raw: dict[str, Any]) -> None:
    pilot_raw["gpuOperator"]["chartVersion"] = "v25.3.0"
    with pytest.raises(ConfigError) as err:
        load(pilot_raw, "us-east-1", "stacks/Pulumi.pilot.yaml")
    assert [str(p) for p in err.value.problems] == [
        "gpuOperator.chartVersion: 'v25.3.0' is not the gpu-operator chart version swarmstack's "
        "Helm values were checked against (v26.7.0); another version needs its values.yaml read "
        "again and components/compute/gpu_operator_chart.py updated first"
    ]


# --- the mig-parted document, against the format the MIG manager reads -----------------


def test_format_problems_are_named() -> None:
    bad = {
        "version": "v2",
        "mig-configs": {
            "empty": [],
            "odd": [
                {"devices": "some", "mig-enabled": True, "mig-devices": {"3g.40": 1}},
                {"devices": [0], "mig-enabled": False, "mig-devices": {"1g.10gb": 1}},
                {"devices": "all", "mig-enabled": True, "mig-devices": {"1g.10gb": 0}},
                {"devices": "all", "mig-enabled": "yes", "gpus": 1},
            ],
        },
    }
    assert mig_parted_problems(bad) == [
        "version is 'v2', not 'v1'",
        "empty: needs at least one entry",
        "odd[0]: devices is 'some': 'all' or a list of GPU indices",
        "odd[0]: '3g.40' is not a MIG profile name",
        "odd[1]: mig-devices given although mig-enabled is false",
        "odd[2]: every count in mig-devices is 0",
        "odd[3]: unexpected field 'gpus'",
        "odd[3]: mig-enabled is 'yes': true or false",
    ]


MIG_INSTANCE_FOR = {
    str(t.gpu_model): name for name, t in sorted(INSTANCE_TYPES.items()) if t.mig_capable
}


@st.composite
def mig_pools(draw: st.DrawFn) -> list[GpuPoolSpec]:
    """One to three pools, each with a layout validate_layout accepts (built up, not filtered)."""
    pools: list[GpuPoolSpec] = []
    for i in range(draw(st.integers(min_value=1, max_value=3))):
        gpu = draw(st.sampled_from(sorted(MIG_PROFILES)))
        layout: list[str] = []
        for name in draw(st.lists(st.sampled_from(sorted(MIG_PROFILES[gpu])), min_size=1)):
            try:
                validate_layout(gpu, [*layout, name], "mixed")
            except MigLayoutError:
                continue
            layout.append(name)
        pools.append(
            GpuPoolSpec.model_validate(
                {
                    "name": f"pool-{i}",
                    "instanceType": MIG_INSTANCE_FOR[gpu],
                    "minSize": 0,
                    "maxSize": 1,
                    "mig": {"profiles": layout},
                }
            )
        )
    return pools


@settings(max_examples=100, deadline=None)
@given(mig_pools())
def test_property_rendered_mig_parted_documents_have_the_managers_format(
    pools: list[GpuPoolSpec],
) -> None:
    # the MIG manager reads the YAML text of the ConfigMap
    document = yaml.safe_load(yaml.safe_dump(mig_parted_config(pools), sort_keys=True))
    assert mig_parted_problems(document) == []
    assert len(document["mig-configs"]) == len(pools) + 1  # + all-disabled
