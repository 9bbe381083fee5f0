"""The pilot's rule file through Prometheus' own promtool (Debian's `prometheus` package,
installed by `make system-deps`): `check rules` accepts it, and `test rules` runs for every
alert a case where it fires and one where it stays silent, and the cost figures.

The cases are tests/promtool_cases.py; tests/test_alert_rules.py checks that they cover
every alert the pilot declares.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.observe.alerts import render_rule_file
from stacks.config import StackConfig, load
from tests.promtool_cases import Case, promtool_files, series

pytestmark = pytest.mark.e2e
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: `make system-deps` installs Debian's prometheus"
)


@pytest.fixture
def pilot(pilot_raw: dict[str, object]) -> StackConfig:
    return load(pilot_raw, "us-east-1", "Pulumi.pilot.yaml")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=300, check=False
    )


def write_rules(config: StackConfig, folder: Path) -> Path:
    path = folder / "swarmstack.rules.yaml"
    path.write_text(render_rule_file(config))
    return path


@needs_promtool
def test_promtool_accepts_the_rendered_rule_file(pilot: StackConfig, tmp_path: Path) -> None:
    result = promtool("check", "rules", str(write_rules(pilot, tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_rejects_a_broken_expression(pilot: StackConfig, tmp_path: Path) -> None:
    path = write_rules(pilot, tmp_path)
    path.write_text(path.read_text().replace("sum by (agent, tool)", "sum by (agent, tool", 1))
    result = promtool("check", "rules", str(path))
    assert result.returncode != 0
    assert "parse error" in result.stdout + result.stderr


@needs_promtool
def test_every_alert_fires_and_stays_silent_and_costs_add_up(
    pilot: StackConfig, tmp_path: Path
) -> None:
    rules = write_rules(pilot, tmp_path)
    groups = yaml.safe_load(rules.read_text())["groups"]
    files = promtool_files(rules, groups, tmp_path)
    result = promtool("test", "rules", *map(str, files))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    assert result.stdout.count("SUCCESS") == len(files)


@needs_promtool
def test_promtool_reports_an_alert_that_does_not_fire(pilot: StackConfig, tmp_path: Path) -> None:
    # A case that expects a loop where there is none must fail: the harness can tell.
    wrong = Case(
        "AgentToolCallLoop",
        True,
        "expects a loop from a single repeat",
        [series("agent_tool_call_repeats_total", {"agent": "a", "tool": "clock"}, "0x5 1x10")],
        "15m",
        {"agent": "a", "tool": "clock"},
    )
    rules = write_rules(pilot, tmp_path)
    groups = yaml.safe_load(rules.read_text())["groups"]
    files = promtool_files(rules, groups, tmp_path, [wrong], [])
    result = promtool("test", "rules", *map(str, files))
    assert result.returncode != 0
    assert "AgentToolCallLoop" in result.stdout + result.stderr
