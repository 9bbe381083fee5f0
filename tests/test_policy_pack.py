"""The pack as a whole: entry point, pins, config files, and enforcement in the plan."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import runpy
import shutil
import subprocess
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

import grpc
import pulumi
import pulumi_kubernetes as k8s
import pulumi_policy
import pytest
from google.protobuf import empty_pb2
from pulumi.runtime import proto, rpc
from pulumi.runtime.proto import analyzer_pb2_grpc

import components.serving.model_serving as serving
import policies.rules
import stacks.cli
import stacks.composition
import stacks.program
from policies.framework import KEBAB, Rule
from policies.pack import PHASES, RULES, Phase, phase_levels, rules_by_name, stack_phase
from stacks.cli import EXIT_CHECKS, main
from stacks.config import StackConfig
from stacks.plan.policy import PolicyConfigError, evaluate, load_config, settings, unknown_rules
from stacks.plan.recorder import Registration
from stacks.plan.runner import read_program_input, run_program

ROOT = Path(__file__).resolve().parent.parent


def _module_rules() -> list[Rule]:
    found: list[Rule] = []
    for info in pkgutil.iter_modules(policies.rules.__path__):
        module = importlib.import_module(f"policies.rules.{info.name}")
        found += module.RULES
    return found


def test_at_least_forty_six_rules_with_unique_kebab_names() -> None:
    assert len(RULES) >= 46
    assert len(rules_by_name()) == len(RULES)
    for rule in RULES:
        assert KEBAB.match(rule.name)
        assert rule.description and rule.remediation, rule.name


def test_entry_point_declares_every_rule_of_every_module(monkeypatch: pytest.MonkeyPatch) -> None:
    declared: dict[str, Any] = {}

    class CapturingPack:
        def __init__(self, name: str, policies: list[pulumi_policy.Policy], **kwargs: Any) -> None:
            declared["name"] = name
            declared["policies"] = [p.name for p in policies]

    monkeypatch.setattr(pulumi_policy, "PolicyPack", CapturingPack)
    runpy.run_path(str(ROOT / "policies" / "__main__.py"), run_name="__main__")
    assert declared["name"] == "swarmstack"
    assert sorted(declared["policies"]) == sorted(r.name for r in _module_rules())


def test_requirements_match_pyproject_pins() -> None:
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = dict(p.split("==") for p in pins)
    lines = (ROOT / "policies" / "requirements.txt").read_text().splitlines()
    required = dict(line.split("==") for line in lines if line and not line.startswith("#"))
    assert required, "policies/requirements.txt pins nothing"
    for name, version in required.items():
        assert pinned.get(name) == version, f"{name}=={version} differs from pyproject"
    assert set(required) == {"pulumi", "pulumi-policy"}


def test_rule_modules_import_nothing_the_pack_venv_lacks() -> None:
    allowed = re.compile(
        r"^(from|import) (__future__|policies|pulumi_policy|collections|dataclasses|"
        r"typing|re|json|math|fnmatch|ipaddress|itertools|functools|enum)\b"
    )
    for path in [*(ROOT / "policies").glob("*.py"), *(ROOT / "policies" / "rules").glob("*.py")]:
        for line in path.read_text().splitlines():
            if line.startswith(("import ", "from ")) and path.name != "__main__.py":
                assert allowed.match(line), f"{path.name}: {line}"


def test_shipped_policy_configs_name_real_rules_and_levels() -> None:
    files = sorted((ROOT / "policies" / "config").glob("*.json"))
    stacks = {p.stem.split(".")[1] for p in (ROOT / "stacks").glob("Pulumi.*.yaml")}
    assert files and {f.stem for f in files} <= stacks  # a stack may have none
    for path in files:
        config = load_config(path)
        assert unknown_rules(config) == [], path
        for rule in RULES:
            settings(rule, config)  # raises on a bad level or unknown option


# ----------------------------------------------------------------------- levels by phase


def test_phase_levels_pilot_keeps_each_rule_level_production_makes_all_mandatory() -> None:
    pilot, production = phase_levels("pilot"), phase_levels("production")
    assert pilot == {r.name: r.level for r in RULES}
    assert "advisory" in pilot.values()  # so the two phases differ
    assert production == {r.name: "mandatory" for r in RULES}
    assert set(PHASES) == {"pilot", "production"}


def test_every_phase_a_stack_can_name_has_levels() -> None:
    phase = StackConfig.model_fields["phase"].annotation
    assert set(typing.get_args(phase)) <= set(PHASES)


def test_stack_phase_reads_the_config_the_cli_hands_the_pack() -> None:
    assert stack_phase({"swarmstack:phase": "pilot", "aws:region": "us-east-1"}) == "pilot"
    assert stack_phase({"swarmstack:phase": "production"}) == "production"
    assert stack_phase({}) == "production"  # not a swarmstack stack: the strictest levels
    with pytest.raises(ValueError, match=r"'multi' is not a phase \(one of pilot, production\)"):
        stack_phase({"swarmstack:phase": "multi"})


def _served_levels(env_config: dict[str, str] | None) -> dict[str, str]:
    """Start the real pack as the Pulumi CLI does and ask its analyzer for its policies."""
    env = {k: v for k, v in os.environ.items() if k != "PULUMI_CONFIG"}
    if env_config is not None:
        env["PULUMI_CONFIG"] = json.dumps(env_config)
    pack = subprocess.Popen(
        [sys.executable, str(ROOT / "policies" / "__main__.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert pack.stdout is not None
        port = int(pack.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            info = analyzer_pb2_grpc.AnalyzerStub(channel).GetAnalyzerInfo(
                empty_pb2.Empty(), timeout=30
            )
        return {
            p.name: proto.EnforcementLevel.Name(p.enforcementLevel).lower() for p in info.policies
        }
    finally:
        pack.kill()
        pack.wait(timeout=30)


@pytest.mark.parametrize("phase", ["pilot", "production"])
def test_entry_point_serves_the_phase_levels(phase: Phase) -> None:
    served = _served_levels({"swarmstack:phase": phase, "swarmstack:costLabels": "{}"})
    assert served == phase_levels(phase)


def test_entry_point_without_stack_config_serves_production_levels() -> None:
    assert _served_levels(None) == phase_levels("production")


def test_plan_of_a_production_stack_enforces_advisory_rules_as_mandatory() -> None:
    registrations = run_program(read_program_input(ROOT, "pilot")).registrations
    digest = [rules_by_name()["image-digest-pinned"]]
    pilot = evaluate(registrations, {}, digest, defaults=phase_levels("pilot"))
    production = evaluate(registrations, {}, digest, defaults=phase_levels("production"))
    assert pilot and {v.level for v in pilot} == {"advisory"}
    assert [v.message for v in production] == [v.message for v in pilot]
    assert {v.level for v in production} == {"mandatory"}


def _stack_without_policy_config(tmp_path: Path) -> Path:
    """A project whose stack `staging` is the pilot's stack file with no policy config."""
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", root)
    shutil.copy(ROOT / "stacks" / "__main__.py", root / "stacks")
    shutil.copy(ROOT / "stacks" / "Pulumi.pilot.yaml", root / "stacks" / "Pulumi.staging.yaml")
    return root


def test_a_stack_without_policy_config_says_which_levels_it_uses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, out = _stack_without_policy_config(tmp_path), tmp_path / "out"
    assert main(["plan", "staging", "--root", str(root), "--out", str(out)]) == 0
    said = (
        "no policies/config/staging.json, so the pilot phase defaults (each rule's own level): "
        f"{sum(r.level == 'mandatory' for r in RULES)} mandatory, "
        f"{sum(r.level == 'advisory' for r in RULES)} advisory"
    )
    assert f"  levels: {said}\n" in capsys.readouterr().out
    report = (out / "staging" / "policy.md").read_text()
    assert f"Enforcement levels: {said}." in report
    # pilot.json makes this rule advisory; without it the rule runs at its own level
    assert "| `no-scale-to-zero-interactive` | mandatory |" in report


def test_plan_takes_its_levels_from_the_stack_phase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """stacks/config.py accepts no production stack yet: the phase the plan reads is forced."""
    read: list[dict[str, str]] = []

    def production(config: dict[str, str]) -> Phase:
        read.append(config)
        return "production"

    monkeypatch.setattr(stacks.cli, "stack_phase", production)
    root, out = _stack_without_policy_config(tmp_path), tmp_path / "out"
    assert main(["plan", "staging", "--root", str(root), "--out", str(out)]) == EXIT_CHECKS
    err = capsys.readouterr().err
    assert "[mandatory] image-digest-pinned: Deployment swarmstack-models/llama31-8b" in err
    # The pilot's mesh passes the traffic rules even when every rule is mandatory.
    assert "mesh-present" not in err and "model-route-" not in err
    assert read and read[0]["swarmstack:phase"] == "pilot"  # the stack file's config
    assert not out.exists()


def test_bad_level_and_unknown_option_are_named() -> None:
    rule = rules_by_name()["no-host-namespaces"]
    with pytest.raises(PolicyConfigError, match="'blocking' is not one of advisory, mandatory"):
        settings(rule, {"no-host-namespaces": "blocking"})
    with pytest.raises(
        PolicyConfigError, match=r"unknown config \['exempt'\] \(valid: \['exemptions'\]\)"
    ):
        settings(rule, {"no-host-namespaces": {"exempt": []}})


def test_all_sets_every_level_and_a_rule_entry_overrides_it() -> None:
    rule = rules_by_name()["no-host-namespaces"]
    assert settings(rule, {"all": "advisory"})[0] == "advisory"
    assert settings(rule, {"all": "advisory", "no-host-namespaces": "mandatory"})[0] == "mandatory"


# ----------------------------------------------------------------------- enforcement in the plan


def _plan_fails_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], expected: list[str]
) -> None:
    out = tmp_path / "out"
    (out / "pilot").mkdir(parents=True)
    (out / "pilot" / "summary.txt").write_text("previous\n")
    assert main(["plan", "pilot", "--root", str(ROOT), "--out", str(out)]) == EXIT_CHECKS
    err = capsys.readouterr().err
    for text in expected:
        assert text in err, err
    assert (out / "pilot" / "summary.txt").read_text() == "previous\n"


def test_pilot_plan_writes_policy_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "pilot", "--root", str(ROOT), "--out", str(tmp_path)]) == 0
    stdout = capsys.readouterr().out
    assert "Policies (pack swarmstack): 0 mandatory violations" in stdout
    assert (
        "  levels: the pilot phase defaults (each rule's own level) with "
        "policies/config/pilot.json applied: "
    ) in stdout
    report = json.loads((tmp_path / "pilot" / "policy.json").read_text())
    assert all(v["level"] != "mandatory" for v in report)
    assert (tmp_path / "pilot" / "policy.md").read_text().startswith("# Policy report")


def _with_container_change(monkeypatch: pytest.MonkeyPatch, **changes: Any) -> None:
    original = serving.pod_template

    def changed(*args: Any, **kwargs: Any) -> dict[str, Any]:
        template = original(*args, **kwargs)
        template["spec"]["containers"][0].update(changes)
        return template

    monkeypatch.setattr(serving, "pod_template", changed)


def test_privileged_container_fails_the_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_container_change(monkeypatch, securityContext={"privileged": True, "runAsNonRoot": True})
    _plan_fails_with(
        tmp_path,
        capsys,
        [
            "[mandatory] no-privileged-containers: Deployment swarmstack-models/qwen25-7b "
            "(model-qwen25-7b-deployment): container vllm runs privileged",
            "fix: Remove securityContext.privileged",
        ],
    )


def test_latest_image_fails_the_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_container_change(monkeypatch, image="docker.io/vllm/vllm-openai:latest")
    _plan_fails_with(
        tmp_path,
        capsys,
        ["[mandatory] image-tag-pinned: Deployment swarmstack-models/qwen25-7b"],
    )


def test_public_load_balancer_fails_the_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = stacks.composition.build

    def with_public_service(*args: Any) -> None:
        original(*args)
        k8s.core.v1.Service(
            "public-chat",
            metadata={"name": "chat", "namespace": "swarmstack-agents"},
            spec={"type": "LoadBalancer", "selector": {"app": "chat"}, "ports": [{"port": 443}]},
            opts=pulumi.ResourceOptions(provider=k8s.Provider("direct", kubeconfig="{}")),
        )

    monkeypatch.setattr(stacks.composition, "build", with_public_service)
    _plan_fails_with(
        tmp_path,
        capsys,
        ["[mandatory] no-public-load-balancer: Service swarmstack-agents/chat (public-chat)"],
    )


def test_values_unknown_at_preview_are_reported_as_not_run_not_as_crashes() -> None:
    wire: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app", "namespace": rpc.UNKNOWN},
        "spec": rpc.UNKNOWN,
    }
    registration = Registration(
        "kubernetes:apps/v1:Deployment", "app", "urn:app", "", True, "", [], {}, wire=wire
    )
    found = evaluate([registration], {}, [rules_by_name()["container-resources"]])
    assert len(found) == 1
    assert found[0].level == "advisory"
    assert found[0].message.startswith("could not run: ")
