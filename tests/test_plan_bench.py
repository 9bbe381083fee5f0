"""benchmarks/plan_bench.py: the stacks it finds, and the floor it times against."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from stacks.plan.runner import ProgramInput

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "plan_bench.py"


def bench() -> ModuleType:
    sys.path.insert(0, str(BENCH.parent))  # the script imports machine.py beside it
    spec = importlib.util.spec_from_file_location("plan_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["plan_bench"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_every_stack_file_is_benchmarked() -> None:
    found = bench().discover(ROOT)
    expected = sorted(p.name.split(".")[1] for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))
    assert found == expected and "pilot" in found


def test_the_floor_runs_the_program_on_plain_mocks_and_names_its_stack_references(
    tmp_path: Path,
) -> None:
    main = tmp_path / "main.py"
    main.write_text(
        "import pulumi\n"
        "import pulumi_kubernetes as k8s\n"
        "cfg = pulumi.Config('swarmstack')\n"
        "ref = pulumi.StackReference('regional', stack_name=cfg.require('regional'))\n"
        "k8s.core.v1.Namespace('ns', metadata={'name': cfg.require('namespace')})\n"
        "k8s.core.v1.ConfigMap('cm', metadata={'name': 'x', 'namespace': 'ns'})\n"
    )
    inp = ProgramInput(
        project="swarmstack",
        main=main,
        stack="global",
        stack_file=tmp_path / "Pulumi.global.yaml",
        config={"swarmstack:regional": "org/swarmstack/use1", "swarmstack:namespace": "a"},
        secret_keys=[],
        region="us-east-1",
    )
    references: list[str] = []
    declared = bench().floor(inp, references)
    assert references == ["regional"]
    assert declared == 3  # the reference, the Namespace and the ConfigMap
