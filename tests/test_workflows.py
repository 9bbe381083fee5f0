"""The GitHub workflows: actionlint (with ShellCheck on every `run:` block) is clean, every
action is pinned by commit, every job has least-privilege permissions, and jobs that touch a
stack's state queue per stack."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = Path(sys.executable).parent / "actionlint"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"uses:\s*\S+@[0-9a-f]{40} # v\d+(\.\d+)*\s*$")


def _workflows() -> dict[str, dict[str, Any]]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(WORKFLOWS.glob("*.yml"))}


def _triggers(doc: dict[str, Any]) -> Any:
    """The `on:` map (YAML 1.1 reads the bare key `on` as True)."""
    return cast(dict[Any, Any], doc)[True]


def _steps(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job, step) for job, spec in doc["jobs"].items() for step in spec.get("steps", [])]


def test_the_workflows_exist() -> None:
    assert set(_workflows()) == {
        "ci.yml",
        "plan.yml",
        "plan-comment.yml",
        "preview.yml",
        "up.yml",
        "drift.yml",
    }


def test_actionlint_and_shellcheck_are_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed: `make system-deps` installs it")
    run = subprocess.run(
        [str(ACTIONLINT), "-no-color", "-shellcheck", shutil.which("shellcheck") or ""],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_actionlint_catches_an_error(tmp_path: Path) -> None:
    """The linter really runs: a workflow with an unquoted variable fails."""
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    permissions: {}\n"
        "    steps:\n      - run: echo $FOO > $OUT\n"
    )
    run = subprocess.run(
        [str(ACTIONLINT), "-no-color", str(bad)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 1
    assert "shellcheck reported issue" in run.stdout


@pytest.mark.parametrize("name", sorted(_workflows()))
def test_every_action_is_pinned_by_commit_with_its_version(name: str) -> None:
    doc = _workflows()[name]
    uses = [step["uses"] for _, step in _steps(doc) if "uses" in step]
    assert uses, name
    for ref in uses:
        assert PINNED.match(ref), f"{name}: {ref} is not pinned to a 40-hex commit"
    text = (WORKFLOWS / name).read_text()
    for line in text.splitlines():
        if "uses:" in line:
            assert VERSION_COMMENT.search(line), f"{name}: no `# vX.Y.Z` after: {line.strip()}"


@pytest.mark.parametrize("name", sorted(_workflows()))
def test_every_job_has_least_privilege_permissions(name: str) -> None:
    doc = _workflows()[name]
    assert doc.get("permissions") == {}, f"{name}: top-level permissions must be {{}}"
    for job, spec in doc["jobs"].items():
        assert "permissions" in spec, f"{name}: job {job} has no permissions"
        for scope, level in spec["permissions"].items():
            assert level in ("read", "write"), (name, job, scope)
            if level == "write":
                assert scope in ("pull-requests", "id-token"), f"{name}/{job}: {scope}: write"


def test_jobs_that_touch_a_stack_queue_per_stack() -> None:
    for name in ("preview.yml", "up.yml", "drift.yml"):
        doc = _workflows()[name]
        for job, spec in doc["jobs"].items():
            if "matrix" not in spec.get("strategy", {}):
                continue
            group = spec["concurrency"]["group"]
            assert "${{ matrix.stack }}" in group, f"{name}/{job}: concurrency {group}"
    assert _workflows()["up.yml"]["jobs"]["up"]["concurrency"]["cancel-in-progress"] is False


def test_deploys_go_through_the_stack_environment() -> None:
    up = _workflows()["up.yml"]["jobs"]["up"]
    assert up["environment"] == "${{ matrix.stack }}"
    drift = _workflows()["drift.yml"]["jobs"]["drift"]
    pulumi = next(
        s for _, s in _steps({"jobs": {"d": drift}}) if "pulumi/actions" in s.get("uses", "")
    )
    assert pulumi["with"]["refresh"] is True and pulumi["with"]["expect-no-changes"] is True


def test_the_comment_job_runs_no_pull_request_code() -> None:
    """plan-comment.yml runs with a write token: it must not check out or run the pull
    request, and the artifact must reach its script only as files, never as `${{ }}`."""
    doc = _workflows()["plan-comment.yml"]
    assert _triggers(doc)["workflow_run"]["workflows"] == ["plan"]
    steps = [s for _, s in _steps(doc)]
    assert not [s for s in steps if "actions/checkout" in s.get("uses", "")]
    assert not [s for s in steps if "run" in s]
    script = next(s for s in steps if "github-script" in s.get("uses", ""))["with"]["script"]
    assert "${{" not in script
    plan = _workflows()["plan.yml"]
    assert _triggers(plan) == {"pull_request": None}
    assert plan["jobs"]["diff"]["permissions"] == {"contents": "read"}


def test_preview_runs_only_with_credentials_and_not_for_forks() -> None:
    doc = _workflows()["preview.yml"]
    condition = doc["jobs"]["stacks"]["if"]
    assert "vars.AWS_READ_ROLE_ARN != ''" in condition
    assert "head.repo.full_name == github.repository" in condition
    pulumi = next(s for _, s in _steps(doc) if "pulumi/actions" in s.get("uses", ""))
    assert pulumi["with"]["comment-on-pr"] is True
    assert pulumi["with"]["policyPacks"] == "policies"
    assert pulumi["with"]["policyPackConfigs"] == "policies/config/${{ matrix.stack }}.json"


@pytest.mark.parametrize("name", ["bootstrap.sh", "mirror-images.sh"])
def test_the_bootstrap_scripts_pass_shellcheck(name: str) -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed: `make system-deps` installs it")
    script = ROOT / "stacks" / "bootstrap" / name
    run = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout
