"""The production phase: the pilot's values with `phase: production` are refused, each
pilot-grade setting by its config path, its value and the floor; its defaults apply where
the stack file leaves a key out; a policy config may not lower any level."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.compute.instances import INSTANCE_TYPES
from policies.pack import RULES
from stacks import program
from stacks.cli import main as cli
from stacks.config import ConfigError, load, load_file, policy_config_problems
from stacks.plan.runner import ProgramInput, read_program_input, run_program

Raw = dict[str, Any]


def _production(pilot_raw: Raw) -> Raw:
    """The pilot raised to every production floor, so one change shows one rule."""
    raw = copy.deepcopy(pilot_raw)
    raw["phase"] = "production"
    raw["cluster"]["natGateways"] = "perAz"
    raw["images"]["mirror"] = {"prefix": "mirror"}
    raw["gpuPools"][0].update(minSize=2, maxSize=3)  # room for two interactive replicas
    for agent in raw["agents"]:
        agent["replicas"]["min"] = max(agent["replicas"]["min"], 2)
    for model in raw["models"]:
        if model["slo"]["tier"] == "interactive":
            model["replicas"]["min"] = 2
    return raw


def _errors(raw: Raw) -> str:
    with pytest.raises(ConfigError) as info:
        load(raw, "us-east-1", "stacks/Pulumi.production.yaml")
    return str(info.value)


def test_pilot_raised_to_the_floors_is_a_valid_production_stack(pilot_raw: Raw) -> None:
    assert load(_production(pilot_raw), "us-east-1", "x").phase == "production"


def test_the_pilot_file_as_production_names_every_pilot_grade_value(pilot_raw: Raw) -> None:
    raw = copy.deepcopy(pilot_raw)
    raw["phase"] = "production"
    text = _errors(raw)
    assert "cluster.natGateways: 'single': phase 'production' needs 'perAz'" in text
    assert "agents[0].replicas.min: 1 for agent 'researcher': phase 'production' needs at " in text
    assert "models[0].replicas.min: 1 for interactive model 'qwen25-7b'" in text
    assert "models[1]" not in text  # a batch model may keep one replica


def test_two_zones_are_refused(pilot_raw: Raw) -> None:
    raw = _production(pilot_raw)
    raw["cluster"]["availabilityZones"] = 2
    raw["dataPlane"]["allowFewerZonesThanReplicas"] = True
    text = _errors(raw)
    assert "cluster.availabilityZones: 2 AZs: phase 'production' needs at least 3" in text
    assert "dataPlane.allowFewerZonesThanReplicas: true: phase 'production' keeps" in text


def test_kafka_replication_below_three_is_refused(pilot_raw: Raw) -> None:
    raw = _production(pilot_raw)
    raw["dataPlane"]["kafka"].update(replicationFactor=2, minInsyncReplicas=1, brokers=2)
    text = _errors(raw)
    assert "dataPlane.kafka.replicationFactor: 2: phase 'production' needs 3" in text
    assert "dataPlane.kafka.brokers: 2: phase 'production' needs at least 3 brokers" in text


def test_production_requires_the_image_mirror(pilot_raw: Raw) -> None:
    raw = _production(pilot_raw)
    del raw["images"]["mirror"]
    assert (
        "images.mirror: not set: phase 'production' runs every image from the account's ECR "
        "mirror, pinned by digest (policy image-digest-pinned is mandatory)"
    ) in _errors(raw)


def test_gateway_keeps_two_replicas(pilot_raw: Raw) -> None:
    raw = _production(pilot_raw)
    raw["gateway"]["replicas"] = 1
    assert "gateway.replicas: 1 is not valid: Input should be greater than or equal to 2" in (
        _errors(raw)
    )


def test_production_defaults_apply_where_the_file_is_silent(pilot_raw: Raw) -> None:
    raw = _production(pilot_raw)
    del raw["cluster"]["availabilityZones"], raw["cluster"]["natGateways"]
    cluster = load(raw, "us-east-1", "x").cluster
    assert (cluster.availability_zones, cluster.nat_gateways) == (3, "perAz")
    pilot = copy.deepcopy(pilot_raw)
    del pilot["cluster"]["availabilityZones"], pilot["cluster"]["natGateways"]
    del pilot["dataPlane"]["kafka"]  # 2 AZs cannot hold its 3 replicas
    pilot["agents"] = [a for a in pilot["agents"] if a["mode"] != "events"]
    pilot["gateway"]["keys"] = [k for k in pilot["gateway"]["keys"] if k["agent"] != "researcher"]
    pilot.pop("demand")  # its shares name the agent left out
    cluster = load(pilot, "us-east-1", "x").cluster
    assert (cluster.availability_zones, cluster.nat_gateways) == (2, "single")


def test_a_policy_config_may_not_lower_a_level_in_production() -> None:
    config = {
        "mesh-present": "advisory",
        "all": "disabled",
        "gpu-budget": {"enforcementLevel": "mandatory", "maxGpus": 24},
        "image-digest-pinned": {"enforcementLevel": "advisory"},
        "no-scale-to-zero-interactive": {"maxGpus": 1},
    }
    found = [str(p) for p in policy_config_problems("production", config)]
    assert found == [
        "mesh-present: 'advisory': phase 'production' runs every policy mandatory; set "
        "'mandatory' or remove the level (a rule's options may stay)",
        "all: 'disabled': phase 'production' runs every policy mandatory; set 'mandatory' or "
        "remove the level (a rule's options may stay)",
        "image-digest-pinned: 'advisory': phase 'production' runs every policy mandatory; set "
        "'mandatory' or remove the level (a rule's options may stay)",
    ]
    assert policy_config_problems("pilot", config) == []


# --- The real production stack: it plans clean, and one pilot-grade value fails it --------

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_FILE = ROOT / "stacks" / "Pulumi.production.yaml"
PRODUCTION_POLICY = ROOT / "policies" / "config" / "production.json"


def test_the_production_stack_plans_with_every_policy_mandatory_and_none_violated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["plan", "production", "--root", str(ROOT), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Policies (pack swarmstack): 0 mandatory violations, 0 advisory finding(s)" in out
    assert f"applied: {len(RULES)} mandatory\n" in out
    assert json.loads((tmp_path / "production" / "policy.json").read_text()) == []
    config = load_file(PRODUCTION_FILE)
    assert config.phase == "production"
    assert (config.cluster.availability_zones, config.cluster.nat_gateways) == (3, "perAz")
    data, gateway = config.data_plane, config.gateway
    assert data.kafka is not None and data.kafka.mode == "msk"
    assert data.kafka.msk is not None and data.kafka.msk.client_auth == "iam"
    assert data.redis is not None and data.redis.mode == "elasticache"
    assert gateway is not None and gateway.database.mode == "rds" and gateway.replicas >= 2
    assert {p.instance_type.split(".")[0] for p in config.gpu_pools} <= {"p4de", "p5"}
    assert all(p.mig is not None for p in config.gpu_pools)
    assert config.images.mirror is not None
    receivers = config.observability.monitoring.alertmanager.receivers
    assert {r.type for r in receivers} == {"pagerduty", "slack"}


def _production_input(section: str, change: Callable[[Raw], None]) -> ProgramInput:
    inp = read_program_input(ROOT, "production")
    key = f"swarmstack:{section}"
    value = json.loads(inp.config[key])
    change(value)
    inp.config[key] = json.dumps(value)
    return inp


def _refusal(inp: ProgramInput) -> str:
    with pytest.raises(pulumi.RunError) as info:
        run_program(inp)
    return str(info.value)


def test_two_zones_fail_the_production_plan() -> None:
    def two_zones(cluster: Raw) -> None:
        cluster["availabilityZones"] = 2

    text = _refusal(_production_input("cluster", two_zones))
    assert "stacks/Pulumi.production.yaml" in text
    assert "cluster.availabilityZones: 2 AZs: phase 'production' needs at least 3" in text


def test_one_nat_gateway_fails_the_production_plan() -> None:
    def one_nat(cluster: Raw) -> None:
        cluster["natGateways"] = "single"

    text = _refusal(_production_input("cluster", one_nat))
    assert "cluster.natGateways: 'single': phase 'production' needs 'perAz'" in text


def test_an_advisory_level_in_the_production_policy_config_fails_the_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = json.loads(PRODUCTION_POLICY.read_text())
    lowered = {**shipped, "image-digest-pinned": "advisory"}
    (tmp_path / "production.json").write_text(json.dumps(lowered))
    monkeypatch.setattr(program, "POLICY_CONFIG_DIR", tmp_path)
    text = _refusal(read_program_input(ROOT, "production"))
    assert (
        "policies/config/production.json: image-digest-pinned: 'advisory': phase 'production' "
        "runs every policy mandatory"
    ) in text


def test_the_shipped_production_policy_config_only_sets_options() -> None:
    shipped = json.loads(PRODUCTION_POLICY.read_text())
    assert policy_config_problems("production", shipped) == []
    assert shipped == {"gpu-budget": {"enforcementLevel": "mandatory", "maxGpus": 4}}
    config = load_file(PRODUCTION_FILE)
    gpus_at_max = sum(p.max_size * INSTANCE_TYPES[p.instance_type].gpus for p in config.gpu_pools)
    assert gpus_at_max == shipped["gpu-budget"]["maxGpus"]  # the budget is what it needs
