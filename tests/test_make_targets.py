"""What the Makefile's targets run, read from `make -n` (the commands make would execute)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def dry_run(target: str) -> str:
    result = subprocess.run(
        ["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return result.stdout


def test_generate_never_touches_the_golden_plans() -> None:
    commands = dry_run("generate")
    assert "swarmstack generate" in commands
    assert "--update-golden" not in commands and "tests/golden" not in commands


def test_golden_rewrites_the_snapshot_and_shows_the_diff() -> None:
    commands = dry_run("golden").splitlines()
    update = next(i for i, c in enumerate(commands) if "tests/test_golden.py --update-golden" in c)
    shown = commands[update + 1 :]
    assert any("git status --short" in c and "tests/golden" in c for c in shown)  # new files
    assert any(c.endswith("git --no-pager diff --stat") for c in shown)
    assert any(c.endswith("git --no-pager diff -- tests/golden") for c in shown)
