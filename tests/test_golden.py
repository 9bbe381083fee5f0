"""Golden snapshots of the pilot and production plans: any change to what a stack declares
shows up here.

Update deliberately with `make golden` (pytest tests/test_golden.py --update-golden, then
the diff is shown) and review the diff like any other change; `make generate` never
touches these files.
"""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest

from stacks.cli import main

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"


def _files(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("stack", ["pilot", "production"])
def test_plan_matches_golden(stack: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    assert main(["plan", stack, "--root", str(ROOT), "--out", str(tmp_path)]) == 0
    produced = _files(tmp_path / stack)
    golden_dir = GOLDEN / stack
    if request.config.getoption("--update-golden"):
        shutil.rmtree(golden_dir, ignore_errors=True)
        shutil.copytree(tmp_path / stack, golden_dir)
        return
    assert golden_dir.is_dir(), f"no golden plan for {stack}: run `make golden`"
    expected = _files(golden_dir)
    assert sorted(produced) == sorted(expected), "files added or removed: run `make golden`"
    for name, text in produced.items():
        if text != expected[name]:
            diff = "".join(
                difflib.unified_diff(
                    expected[name].splitlines(True), text.splitlines(True), name, name, n=2
                )
            )
            pytest.fail(f"{name} differs from the golden plan (run `make golden`):\n{diff[:4000]}")


def test_two_plans_are_identical(tmp_path: Path) -> None:
    assert main(["plan", "pilot", "--root", str(ROOT), "--out", str(tmp_path / "a")]) == 0
    assert main(["plan", "pilot", "--root", str(ROOT), "--out", str(tmp_path / "b")]) == 0
    assert _files(tmp_path / "a" / "pilot") == _files(tmp_path / "b" / "pilot")
