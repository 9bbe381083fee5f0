"""`swarmstack diff`: the pull-request comment between two real plans of the pilot.

The variants are real config changes, planned once per session: the shipped pilot, a scale
change (an agent's minimum replicas and the GPU pool's maximum), a rename (the cluster's
name, which every AWS name derives from) and a policy-config change (one rule disabled,
one budget tightened), as a pull request would make them. Golden comments live in
tests/diff_golden/ (`pytest tests/test_diff.py --update-golden` rewrites them), with the
comment between the shipped pilot and production plans.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacks.cli import main
from stacks.plan.diff import (
    COMMENT_LIMIT,
    MARKER,
    PlanDiff,
    ResourceChange,
    diff_plans,
    load_plan,
    property_changes,
    render_markdown,
    render_property,
)
from stacks.plan.recorder import REDACTED

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "diff_golden"


def _variant_root(
    tmp: Path, edit: Callable[[dict[str, Any]], None], policy: dict[str, Any] | None = None
) -> Path:
    """A project root with the real program and an edited copy of the pilot's config."""
    (tmp / "stacks").mkdir(parents=True)
    (tmp / "policies" / "config").mkdir(parents=True)
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    project["main"] = str(ROOT / "stacks")
    (tmp / "Pulumi.yaml").write_text(yaml.safe_dump(project))
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.pilot.yaml").read_text())
    edit(doc["config"])
    (tmp / "stacks" / "Pulumi.pilot.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    levels = json.loads((ROOT / "policies" / "config" / "pilot.json").read_text())
    (tmp / "policies" / "config" / "pilot.json").write_text(
        json.dumps({**levels, **(policy or {})})
    )
    return tmp


def _scale(config: dict[str, Any]) -> None:
    concierge = next(a for a in config["swarmstack:agents"] if a["name"] == "concierge")
    concierge["replicas"]["min"] = 3
    config["swarmstack:gpuPools"][0]["maxSize"] = 3


def _rename(config: dict[str, Any]) -> None:
    config["swarmstack:cluster"]["name"] = "swarm-pilot-b"


@pytest.fixture(scope="session")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("diff-plans")
    roots = {
        "base": ROOT,
        "scale": _variant_root(out / "scale-root", _scale),
        "rename": _variant_root(out / "rename-root", _rename),
        "policy": _variant_root(
            out / "policy-root",
            lambda _: None,
            {
                "image-digest-pinned": "disabled",
                "gpu-budget": {"enforcementLevel": "advisory", "maxGpus": 1},
            },
        ),
    }
    folders: dict[str, Path] = {}
    for name, root in roots.items():
        assert main(["plan", "pilot", "--root", str(root), "--out", str(out / name)]) == 0
        folders[name] = out / name / "pilot"
    return folders


def _diff_cli(base: Path, head: Path, output: Path) -> str:
    code = main(
        [
            "diff",
            str(base),
            str(head),
            "--base-label",
            "pilot (base)",
            "--head-label",
            "pilot (head)",
            "--output",
            str(output),
        ]
    )
    assert code == 0
    return output.read_text()


def _check_golden(name: str, text: str, request: pytest.FixtureRequest) -> None:
    golden = GOLDEN / f"{name}.md"
    if request.config.getoption("--update-golden"):
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(text)
        return
    assert golden.is_file(), f"no golden {golden}: run pytest {__file__} --update-golden"
    assert text == golden.read_text(), f"{name}: the comment differs from {golden}"


@pytest.mark.parametrize("variant", ["identical", "scale", "rename", "policy"])
def test_comment_matches_golden(
    variant: str,
    plans: dict[str, Path],
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    head = plans["base"] if variant == "identical" else plans[variant]
    if variant == "identical":  # a second copy, so nothing is compared with itself
        head = Path(shutil.copytree(plans["base"], tmp_path / "copy"))
    text = _diff_cli(plans["base"], head, tmp_path / "comment.md")
    assert capsys.readouterr().out == text  # stdout and --output carry the same comment
    _check_golden(variant, text, request)


@pytest.fixture(scope="session")
def production_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("production-plan")
    assert main(["plan", "production", "--root", str(ROOT), "--out", str(out)]) == 0
    return out / "production"


def test_pilot_to_production_comment_matches_golden(
    plans: dict[str, Path], production_plan: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The two shipped stacks, as if the pilot became production: resources are matched
    across the stacks by URN without the stack name."""
    output = tmp_path / "comment.md"
    argv = ["diff", str(plans["base"]), str(production_plan), "--output", str(output)]
    assert main([*argv, "--base-label", "pilot", "--head-label", "production"]) == 0
    text = output.read_text()
    assert len(text) < COMMENT_LIMIT
    assert "plans of two stacks are compared (pilot -> production)" in text
    assert REDACTED not in text
    assert "  - `stringData.pagerduty-routing-key`: added (secret)" in text
    for added in ("aws:msk/cluster:Cluster", "aws:elasticache/replicationGroup:ReplicationGroup"):
        assert f"#### `{added}` (1 add)" in text
    assert "#### `aws:ec2/natGateway:NatGateway` (1 change, 2 add)" in text
    assert "- - **remove** `Kafka swarmstack-data/events`" in text  # Strimzi gives way to MSK
    assert "Resolved (15):" in text  # the pilot's advisory digest findings, none added
    assert "Added (" not in text
    _check_golden("pilot-production", text, request)


def test_identical_plans_say_no_changes(plans: dict[str, Path], tmp_path: Path) -> None:
    text = _diff_cli(plans["base"], plans["base"], tmp_path / "c.md")
    assert "**No resource changes.**" in text
    assert "No policy finding added or resolved." in text
    assert "### Resources" not in text


def test_scale_change_is_an_in_place_change(plans: dict[str, Path]) -> None:
    diff = diff_plans(load_plan(plans["base"]), load_plan(plans["scale"]))
    by_label = {r.label: r for r in diff.resources}
    deployment = by_label["Deployment swarmstack-agents/agent-concierge"]
    assert deployment.action == "change"
    assert [(c.path, c.old, c.new) for c in deployment.changes] == [("spec.replicas", 2, 3)]
    pool = next(r for r in diff.resources if r.type == "aws:eks/nodeGroup:NodeGroup")
    assert pool.action == "change"
    assert ("scalingConfig.maxSize", 2, 3) in [(c.path, c.old, c.new) for c in pool.changes]
    assert not [r for r in diff.resources if r.action in ("add", "remove", "replace")]
    assert diff.head_summary["max"]["gpus"] == diff.base_summary["max"]["gpus"] + 1


def test_rename_flags_replacements(plans: dict[str, Path], tmp_path: Path) -> None:
    diff = diff_plans(load_plan(plans["base"]), load_plan(plans["rename"]))
    replaced = {r.label: r for r in diff.resources if r.action == "replace"}
    cluster = replaced["cluster-eks"]
    forced = [c for c in cluster.changes if c.forces]
    assert [(c.path, c.old, c.new) for c in forced] == [("name", "swarm-pilot", "swarm-pilot-b")]
    assert "cluster-system" in replaced  # its clusterName changes with it
    # matched by URN: a rename is a replacement, never a removal plus an addition
    assert not [r for r in diff.resources if r.action in ("add", "remove")]
    text = _diff_cli(plans["base"], plans["rename"], tmp_path / "c.md")
    assert "[!WARNING]" in text
    assert "`name`: `swarm-pilot` → `swarm-pilot-b` **forces replacement**" in text


def test_policy_findings_added_and_resolved(plans: dict[str, Path]) -> None:
    diff = diff_plans(load_plan(plans["base"]), load_plan(plans["policy"]))
    assert [f["rule"] for f in diff.findings_added] == ["gpu-budget"]
    resolved = {f["rule"] for f in diff.findings_resolved}
    assert resolved == {"image-digest-pinned"}
    assert len(diff.findings_resolved) == len(
        [f for f in load_plan(plans["base"]).policy if f["rule"] == "image-digest-pinned"]
    )


def test_a_plan_without_an_index_is_matched_by_name(plans: dict[str, Path], tmp_path: Path) -> None:
    """A base planned by an older swarmstack (no index.json): still a diff, with a note."""
    old = Path(shutil.copytree(plans["base"], tmp_path / "old"))
    (old / "index.json").unlink()
    diff = diff_plans(load_plan(old), load_plan(plans["scale"]))
    assert any("without index.json" in n for n in diff.notes)
    labels = {r.label: r.action for r in diff.resources}
    assert labels["Deployment swarmstack-agents/agent-concierge"] == "change"
    assert "add" not in labels.values() and "remove" not in labels.values()


def test_secret_values_are_never_shown() -> None:
    old = {"stringData": {"token": REDACTED}, "data": {"url": "redis://plain-old-value"}}
    new = {"stringData": {"token": REDACTED, "extra": REDACTED}, "data": {"url": REDACTED}}
    lines = [line for c in property_changes(old, new) for line in render_property(c)]
    assert lines == [
        "  - `data.url`: changed (secret)",
        "  - `stringData.extra`: added (secret)",
    ]
    assert "plain-old-value" not in "\n".join(lines)
    # both sides redacted: the plan cannot tell, so nothing is claimed
    assert property_changes({"a": REDACTED}, {"a": REDACTED}) == []


def test_a_redacted_secret_in_a_real_plan_reads_changed_secret(
    plans: dict[str, Path], tmp_path: Path
) -> None:
    """A Secret whose value was plain in the base and is a secret now (the plan redacts it)."""
    base = Path(shutil.copytree(plans["base"], tmp_path / "base"))
    manifest = next((base / "manifests").glob("*-secret-huggingface-token.yaml"))
    doc = yaml.safe_load(manifest.read_text())
    doc["stringData"]["token"] = "hf_plain_text_value"
    manifest.write_text(yaml.safe_dump(doc))
    text = _diff_cli(base, plans["base"], tmp_path / "c.md")
    assert "`stringData.token`: changed (secret)" in text
    assert "hf_plain_text_value" not in text
    assert REDACTED not in text


def test_the_comment_stays_under_the_limit_and_says_what_was_cut(plans: dict[str, Path]) -> None:
    diff = diff_plans(load_plan(plans["base"]), load_plan(plans["rename"]))
    full = render_markdown(diff, title="t", base_label="a", head_label="b")
    small = render_markdown(diff, title="t", base_label="a", head_label="b", limit=4000)
    assert len(small) <= 4000 < len(full)
    assert "more resource changes not shown" in small
    assert "### GPUs, MIG slices and cost" in small  # the summary is never cut
    # a pull request that touches thousands of resources still fits one comment
    many = PlanDiff(
        [ResourceChange("add", "kubernetes:core/v1:ConfigMap", f"cm-{i:05d}") for i in range(5000)],
        [],
        [],
        diff.base_summary,
        diff.head_summary,
        [],
    )
    text = render_markdown(many, title="t", base_label="a", head_label="b")
    assert len(text) <= COMMENT_LIMIT < 65_536
    assert text.startswith(MARKER)
    assert "not shown" in text


def test_not_a_plan_folder_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diff", str(tmp_path), str(tmp_path)]) == 2
    assert f"{tmp_path}: not a plan folder (no summary.json)" in capsys.readouterr().err
    assert main(["diff", str(tmp_path)]) == 2
    assert "give two plan folders" in capsys.readouterr().err


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


def test_base_ref_plans_the_ref_against_the_work_tree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--base-ref plans the committed stack in a temporary worktree (the ref's code and
    config) and compares the work tree's plan with it: a clone with an uncommitted scale
    change shows exactly that change."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    repo = tmp_path / "repo"
    subprocess.run(
        ["git", "clone", "--quiet", "--shared", str(ROOT), str(repo)], check=True, timeout=120
    )
    stack_file = repo / "stacks" / "Pulumi.pilot.yaml"
    doc = yaml.safe_load(stack_file.read_text())
    _scale(doc["config"])
    stack_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    before = _git(repo, "worktree", "list")
    output = tmp_path / "c.md"
    assert main(["diff", "--base-ref", "HEAD", "--root", str(repo), "--output", str(output)]) == 0
    text = capsys.readouterr().out
    assert text == output.read_text()
    assert text.startswith(f"{MARKER}\n## swarmstack plan diff: stack pilot\n")
    assert "`pilot at HEAD` → `pilot (work tree)`" in text
    assert "**0 to add, 5 to change, 0 to replace, 0 to remove.**" in text
    assert "  - `spec.replicas`: `2` → `3`" in text
    assert _git(repo, "worktree", "list") == before  # the temporary worktree is gone
    # a stack the ref does not have: every resource is added
    shutil.copy(stack_file, repo / "stacks" / "Pulumi.pilot2.yaml")
    assert main(["diff", "--base-ref", "HEAD", "--stack", "pilot2", "--root", str(repo)]) == 0
    text = capsys.readouterr().out
    assert "`pilot2 at HEAD (no such stack there: everything is new)`" in text
    added = len(json.loads((ROOT / "tests" / "golden" / "pilot" / "index.json").read_text()))
    assert f"**{added} to add, 0 to change, 0 to replace, 0 to remove.**" in text
    assert "without index.json" not in text
    assert main(["diff", "--base-ref", "no-such-ref-x", "--root", str(repo)]) == 2
    assert "--base-ref no-such-ref-x: not a commit" in capsys.readouterr().err
