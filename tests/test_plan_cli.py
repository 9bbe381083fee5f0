"""The installed `swarmstack` command, as a user runs it, and the existing-cluster mode."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path
from typing import Any

import yaml

from stacks.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXE = Path(sys.executable).parent / "swarmstack"


def test_console_script_plans_the_pilot(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(EXE), "plan", "pilot", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "GPUs                               1             2" in result.stdout
    assert f"Wrote {tmp_path / 'pilot'}" in result.stdout
    assert (tmp_path / "pilot" / "summary.txt").read_text() in result.stdout


def test_console_script_reports_config_errors_without_a_traceback(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", root)
    shutil.copy(ROOT / "stacks" / "__main__.py", root / "stacks")
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.pilot.yaml").read_text())
    doc["config"]["swarmstack:models"][0]["migProfile"] = "7g.80gb"
    (root / "stacks" / "Pulumi.pilot.yaml").write_text(yaml.safe_dump(doc))
    result = subprocess.run(
        [str(EXE), "plan", "pilot", "--root", str(root), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2
    assert (
        "models[0].migProfile: '7g.80gb' is not in the MIG layout of pool 'h100-mig'"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_existing_cluster_mode_declares_no_aws_resources(tmp_path: Path) -> None:
    def existing(config: dict[str, Any]) -> None:
        config["swarmstack:cluster"]["mode"] = "existing"
        config["swarmstack:cluster"]["kubeconfigContext"] = "platform-admin@gpu-cluster"

    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", root)
    shutil.copy(ROOT / "stacks" / "__main__.py", root / "stacks")
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.pilot.yaml").read_text())
    existing(doc["config"])
    (root / "stacks" / "Pulumi.pilot.yaml").write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    # The stack cannot see an existing cluster's CNI: until the policy config names the
    # one that enforces NetworkPolicies, the plan refuses the stack.
    assert main(["plan", "pilot", "--root", str(root), "--out", str(out)]) == 1
    policy = json.loads((ROOT / "policies" / "config" / "pilot.json").read_text())
    policy["network-policy-enforced"] = {"attestedEnforcer": "calico"}
    (root / "policies" / "config").mkdir(parents=True)
    (root / "policies" / "config" / "pilot.json").write_text(json.dumps(policy))
    assert main(["plan", "pilot", "--root", str(root), "--out", str(out)]) == 0
    assert yaml.safe_load((out / "pilot" / "aws-resources.yaml").read_text()) == []
    tree = json.loads((out / "pilot" / "tree.json").read_text())
    provider = next(r for r in tree if r["type"] == "pulumi:providers:kubernetes")
    deployments = [r for r in tree if r["type"] == "kubernetes:apps/v1:Deployment"]
    # two model servers, two agent types, the collector, the gateway
    assert len(deployments) == 6
    assert all(d["provider"].startswith(provider["urn"]) for d in deployments)
    summary = json.loads((out / "pilot" / "summary.json").read_text())
    assert any(
        w.startswith(
            "[program] model qwen25-7b reads weights from S3 but the cluster is not managed"
        )
        for w in summary["warnings"]
    )
    assert any(w.startswith("[program] cluster.mode is 'existing'") for w in summary["warnings"])
    checks = json.loads((out / "pilot" / "checks.json").read_text())
    assert any(c["check"] == "scheduling" and c["severity"] == "warning" for c in checks)


def test_wrote_line_names_every_file_and_folder_written(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(EXE), "plan", "pilot", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("Wrote "))
    listed = line.split(": ", 1)[1].split(", ")
    on_disk = sorted(f"{p.name}/" if p.is_dir() else p.name for p in (tmp_path / "pilot").iterdir())
    assert sorted(entry.split(" (")[0] for entry in listed) == on_disk
    manifests = len(list((tmp_path / "pilot" / "manifests").iterdir()))
    assert f"manifests/ ({manifests} Kubernetes manifests)" in listed
    # GPU operator, cert-manager, Strimzi, kube-prometheus-stack, KEDA, Cluster Autoscaler,
    # Istio base, istiod and cni
    assert "helm/ (9 Helm releases)" in listed


def _dist(requirement: str) -> str:
    bare = re.split(r"[\s;\[<>=!~]", requirement.strip(), maxsplit=1)[0]
    return bare.lower().replace("_", "-")


def _closure(names: set[str]) -> set[str]:
    """The distributions `names` install, their dependencies included (extras left out)."""
    found: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        todo += [_dist(r) for r in requires if "extra ==" not in r]
    return found


def _serve_only_modules() -> list[str]:
    """Top-level modules of what the `serve` extra installs beyond what `make plan`
    installs (the project's dependencies and theirs), read from pyproject.toml and the
    installed metadata."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = _closure({_dist(r) for r in project["dependencies"]})
    serve = _closure({_dist(r) for r in project["optional-dependencies"]["serve"]}) - base
    modules: set[str] = set()
    for module, dists in packages_distributions().items():
        owners = {d.lower().replace("_", "-") for d in dists}
        if owners & serve and not owners & base and module.isidentifier():
            modules.add(module)
    return sorted(modules)


def test_plan_runs_without_the_serve_packages(tmp_path: Path) -> None:
    """`make plan` installs only the project's own dependencies: the CLI and the plan must
    not import the agent worker's or load tests' packages (matplotlib, locust, redis...)."""
    blocked = _serve_only_modules()
    assert {"matplotlib", "locust", "redis"} <= set(blocked), blocked
    script = (
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None  # import of it raises ImportError\n"
        "from stacks.cli import main\n"
        f"sys.exit(main(['plan', 'pilot', '--out', {str(tmp_path)!r}]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "pilot" / "summary.json").is_file()
