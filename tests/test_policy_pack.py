"""The pack as a whole: entry point, pins, config files, and enforcement in the plan."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import runpy
import tomllib
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_policy
import pytest
from pulumi.runtime import rpc

import components.model_serving as serving
import policies.rules
import stacks.pilot
import stacks.program
from policies.framework import KEBAB, Rule
from policies.pack import RULES, rules_by_name
from stacks.cli import EXIT_CHECKS, main
from stacks.plan.policy import PolicyConfigError, evaluate, load_config, settings, unknown_rules
from stacks.plan.recorder import Registration

ROOT = Path(__file__).resolve().parent.parent


def _module_rules() -> list[Rule]:
    found: list[Rule] = []
    for info in pkgutil.iter_modules(policies.rules.__path__):
        module = importlib.import_module(f"policies.rules.{info.name}")
        found += module.RULES
    return found


def test_at_least_thirty_rules_with_unique_kebab_names() -> None:
    assert len(RULES) >= 30
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
    assert [f.stem for f in files] == sorted(
        p.stem.split(".")[1] for p in (ROOT / "stacks").glob("Pulumi.*.yaml")
    )
    for path in files:
        config = load_config(path)
        assert unknown_rules(config) == [], path
        for rule in RULES:
            settings(rule, config)  # raises on a bad level or unknown option


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
    assert (
        "Policies (pack swarmstack, config policies/config/pilot.json): 0 mandatory violations"
        in stdout
    )
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
    original = stacks.pilot.build

    def with_public_service(*args: Any) -> None:
        original(*args)
        k8s.core.v1.Service(
            "public-chat",
            metadata={"name": "chat", "namespace": "swarmstack-agents"},
            spec={"type": "LoadBalancer", "selector": {"app": "chat"}, "ports": [{"port": 443}]},
            opts=pulumi.ResourceOptions(provider=k8s.Provider("direct", kubeconfig="{}")),
        )

    monkeypatch.setattr(stacks.pilot, "build", with_public_service)
    monkeypatch.setitem(stacks.program.PHASES, "pilot", with_public_service)
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
