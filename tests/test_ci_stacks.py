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


def test_an_unknown_base_means_every_stack(capsys: pytest.CaptureFixture[str]) -> None:
    """A push that opens a branch has an all-zero `before`: nothing to compare with."""
    zero = "0" * 40
    assert main(["changed-stacks", "--root", str(ROOT), "--base", zero, "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == stacks(ROOT)
    assert f"cannot compare {zero}...HEAD" in captured.err


def test_a_change_between_two_commits(capsys: pytest.CaptureFixture[str]) -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    assert main(["changed-stacks", "--root", str(ROOT), "--base", "HEAD", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []  # HEAD...HEAD changes nothing
