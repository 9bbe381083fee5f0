"""Which stacks the workflows plan, preview and deploy for a change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stacks.ci import changed_stacks, main, stacks

ROOT = Path(__file__).resolve().parent.parent
AVAILABLE = ["multi-east", "pilot", "production"]


def test_every_stack_file_is_a_stack() -> None:
    assert "pilot" in stacks(ROOT)
    assert stacks(ROOT) == sorted(p.name[7:-5] for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["stacks/Pulumi.pilot.yaml"], ["pilot"]),
        (["policies/config/production.json", "README.md"], ["production"]),
        (["stacks/Pulumi.pilot.yaml", "components/compute/mig.py"], AVAILABLE),
        (["stacks/plan/diff.py"], AVAILABLE),
        (["pyproject.toml"], AVAILABLE),
        (["README.md", "docs/runbooks/x.md", "tests/test_x.py", ".github/workflows/ci.yml"], []),
        (["stacks/Pulumi.gone.yaml"], []),  # a stack the head no longer has
    ],
)
def test_changed_stacks(paths: list[str], expected: list[str]) -> None:
    assert changed_stacks(paths, AVAILABLE) == expected


def test_stacks_as_a_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stacks", "--root", str(ROOT), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == stacks(ROOT)
