"""Shared fixtures: the shipped pilot stack file as raw config."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent
PILOT_FILE = ROOT / "stacks" / "Pulumi.pilot.yaml"

# Property tests judge results, not speed: on 2 shared cores (CI builds, servers started by
# other tests) one example may take longer than Hypothesis's 200 ms default deadline, which
# would fail a correct test. Every test's own @settings inherits this profile.
settings.register_profile("swarmstack", deadline=None)
settings.load_profile("swarmstack")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/ from the current plan instead of comparing",
    )


def pilot_stack_file() -> dict[str, Any]:
    return yaml.safe_load(PILOT_FILE.read_text())["config"]


@pytest.fixture
def pilot_raw() -> dict[str, Any]:
    """The `swarmstack:` keys of the shipped pilot stack, as a fresh mutable dict."""
    doc = pilot_stack_file()
    return copy.deepcopy(
        {k.split(":", 1)[1]: v for k, v in doc.items() if k.startswith("swarmstack:")}
    )
