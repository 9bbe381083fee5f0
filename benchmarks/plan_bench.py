"""Time the offline plan of every stack against the SDK floor, interleaved in one run.

Usage: .venv/bin/python benchmarks/plan_bench.py [--stack pilot ...] [--runs 7] [--json FILE]

For each stack (every `stacks/Pulumi.<stack>.yaml`, or those given with `--stack`):

- **plan**: what `swarmstack plan <stack>` does (`stacks.cli.plan`): read the stack file,
  run the program on the mock runtime recording every registration, the checks (schemas,
  selectors, scheduling, monitors, mesh), the policy pack, and write `out/<stack>/`.
- **floor**: the same program with the same config (`read_program_input`, placeholders
  for secrets) and the same look-up mocks (`PlanMocks`, whose calls answer from
  `LOOKUPS`), on the SDK's plain `MockMonitor` (what `pulumi.runtime.set_mocks` builds
  when given no monitor): nothing recorded, decoded, checked or written. This is what
  any mocked run of the program costs; the ratio plan / floor is what the plan adds.

Both run in this one process, in rounds: each round times every stack's plan and floor,
alternating which goes first, after one untimed warm-up of each (imports, schema caches),
so both see the same machine load. Medians of `--runs` rounds, min and max, and the ratio
of the medians are printed with the machine (benchmarks/machine.py).

Stacks with StackReferences: the plan feeds a reference from the referenced stack's
planned outputs; the plain floor has no such outputs, so a stack whose program declares a
`pulumi:pulumi:StackReference` gets no floor: it is reported as skipped with the
references named, and its plan time alone is given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import runpy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await  # pyright: ignore[reportPrivateUsage]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machine import machine, machine_line  # noqa: E402 (benchmarks/machine.py, beside this)

from stacks.cli import plan  # noqa: E402
from stacks.mode import offline_plan  # noqa: E402
from stacks.plan.recorder import PlanMocks  # noqa: E402
from stacks.plan.runner import ProgramInput, read_program_input  # noqa: E402

STACK_REFERENCE = "pulumi:pulumi:StackReference"


def discover(root: Path) -> list[str]:
    """Every stack of the project: `Pulumi.<stack>.yaml` in the stack config folder."""
    return sorted(
        p.name[len("Pulumi.") : -len(".yaml")] for p in (root / "stacks").glob("Pulumi.*.yaml")
    )


class ReferenceSpy(pulumi_mocks.MockMonitor):
    """A plain MockMonitor that notes the StackReferences a program declares (the SDK reads
    them: their id is the referenced stack's name) and counts what it declares. Only for the
    untimed warm-up: whether the floor can run, and that it runs the plan's program."""

    def __init__(self, mocks: pulumi_mocks.Mocks, references: list[str]) -> None:
        super().__init__(mocks)
        self.references = references
        self.registered = 0  # resources the floor declared, the stack itself not counted

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        if request.type == STACK_REFERENCE:  # registered, in case an SDK registers it
            self.references.append(str(request.name))
        if request.type != "pulumi:pulumi:Stack":
            self.registered += 1
        return super().RegisterResource(request)  # pyright: ignore[reportUnknownMemberType]

    def ReadResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        # A StackReference is read (its id is the referenced stack's name), not registered.
        if request.type == STACK_REFERENCE:
            self.references.append(str(request.name))
        self.registered += 1
        return super().ReadResource(request)  # pyright: ignore[reportUnknownMemberType]


def floor(inp: ProgramInput, references: list[str] | None = None) -> int:
    """Run the stack's program on PlanMocks and the SDK's MockMonitor; nothing recorded.
    With `references`, a ReferenceSpy notes the program's StackReferences there and the
    count of resources it declared is returned (0 without)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    quiet = logging.getLogger("swarmstack.bench.floor")
    quiet.propagate = False
    quiet.handlers = [logging.NullHandler()]
    try:
        pulumi_settings.reset_options()
        pulumi.runtime.set_all_config(inp.config, inp.secret_keys)
        mocks = PlanMocks(inp.region)
        spy = ReferenceSpy(mocks, references) if references is not None else None
        pulumi.runtime.set_mocks(
            mocks, project=inp.project, stack=inp.stack, preview=False, monitor=spy, logger=quiet
        )

        def body() -> None:
            runpy.run_path(str(inp.main), run_name="__main__")

        with offline_plan():
            _sync_await(run_pulumi_func(body))
        return spy.registered if spy is not None else 0
    finally:
        asyncio.set_event_loop(None)
        loop.close()


class PlanError(RuntimeError):
    pass


def timed_plan(stack: str, out: Path) -> float:
    sink = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        code = plan(stack, ROOT, out)
    elapsed = time.perf_counter() - start
    if code != 0:
        raise PlanError(f"swarmstack plan {stack} failed ({code}):\n{sink.getvalue()[-3000:]}")
    return elapsed


def timed_floor(stack: str) -> float:
    start = time.perf_counter()
    floor(read_program_input(ROOT, stack))
    return time.perf_counter() - start


@dataclass
class StackTimes:
    stack: str
    resources: int = 0
    floor_resources: int = 0  # what the floor's program declared (the same program: equal)
    references: list[str] = field(default_factory=list[str])
    plan_s: list[float] = field(default_factory=list[float])
    floor_s: list[float] = field(default_factory=list[float])

    @property
    def ratio(self) -> float | None:
        if not self.floor_s:
            return None
        return statistics.median(self.plan_s) / statistics.median(self.floor_s)

    def as_dict(self) -> dict[str, Any]:
        def stats(xs: list[float]) -> dict[str, float] | None:
            if not xs:
                return None
            return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}

        return {
            "stack": self.stack,
            "resources": self.resources,
            "floorResources": self.floor_resources,
            "stackReferences": self.references,
            "plan_s": stats(self.plan_s),
            "floor_s": stats(self.floor_s),
            "ratio": self.ratio,
            "runs": {"plan": self.plan_s, "floor": self.floor_s},
        }


def _resources(out: Path, stack: str) -> int:
    """Resources the plan declared (out/<stack>/summary.json `resourcesByType`)."""
    summary = json.loads((out / stack / "summary.json").read_text())
    return sum(int(n) for n in summary.get("resourcesByType", {}).values())


def warm_up(stacks: list[str], out: Path) -> list[str]:
    """Plan every stack once, untimed, in an order that works: a stack whose plan reads
    another's planned outputs (a StackReference) fails until that one is planned, so the
    failures are retried while each pass plans at least one more. Returns that order."""
    order: list[str] = []
    pending = list(stacks)
    while pending:
        failures: dict[str, str] = {}
        for stack in pending:
            try:
                timed_plan(stack, out)
                order.append(stack)
            except PlanError as exc:
                failures[stack] = str(exc)
        if len(failures) == len(pending):
            raise SystemExit("\n\n".join(failures.values()))
        pending = list(failures)
    return order


def bench(stacks: list[str], runs: int, out: Path) -> list[StackTimes]:
    stacks = warm_up(stacks, out)  # untimed: imports and caches, and the dependency order
    results = {s: StackTimes(s) for s in stacks}
    for stack in stacks:
        references = results[stack].references
        try:
            # untimed warm-up; also counts what the floor declares
            results[stack].floor_resources = floor(read_program_input(ROOT, stack), references)
        except Exception:
            if not references:
                raise
            # The program needs what its references export: no floor (reported as skipped).
        results[stack].resources = _resources(out, stack)
    for i in range(runs):
        for stack in stacks:
            times = results[stack]
            sides: list[tuple[list[float], Callable[[], float]]] = [
                (times.plan_s, lambda s=stack: timed_plan(s, out)),
            ]
            if not times.references:
                sides.append((times.floor_s, lambda s=stack: timed_floor(s)))
            if i % 2:
                sides.reverse()
            for into, run in sides:
                into.append(run())
    return list(results.values())


def report(results: list[StackTimes], runs: int) -> list[str]:
    lines = [f"offline plan vs SDK floor, median of {runs} interleaved runs (s):"]
    lines.append(f"  {'stack':<20} {'resources':>9} {'plan':>8} {'floor':>8} {'ratio':>7}")
    for r in results:
        p = statistics.median(r.plan_s)
        if r.floor_s:
            f = statistics.median(r.floor_s)
            lines.append(
                f"  {r.stack:<20} {r.resources:>9} {p:>8.2f} {f:>8.2f} {r.ratio or 0:>6.2f}x"
                f"   (plan {min(r.plan_s):.2f}-{max(r.plan_s):.2f}, "
                f"floor {min(r.floor_s):.2f}-{max(r.floor_s):.2f})"
            )
        else:
            lines.append(
                f"  {r.stack:<20} {r.resources:>9} {p:>8.2f} {'skipped':>8} {'-':>7}"
                f"   (StackReferences {', '.join(r.references)}: no planned outputs to feed "
                "the plain floor)"
            )
    for r in results:
        if r.floor_s and r.floor_resources != r.resources:
            lines.append(
                f"  warning: {r.stack}: the floor declared {r.floor_resources} resources, the "
                f"plan {r.resources}: not the same program run"
            )
    largest = max(results, key=lambda r: r.resources)
    if largest.ratio is not None:
        lines.append(
            f"  largest stack: {largest.stack} ({largest.resources} resources), plan "
            f"{statistics.median(largest.plan_s):.2f} s = {largest.ratio:.2f}x the floor"
        )
    lines.append(f"  machine: {machine_line()}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description="Offline plan of every stack vs the SDK floor.")
    parser.add_argument("--stack", action="append", help="a stack (repeatable; default: every)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    known = discover(ROOT)
    stacks = args.stack or known
    unknown = sorted(set(stacks) - set(known))
    if unknown:
        print(f"error: no stack {unknown} (stacks: {', '.join(known)})", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as out:
        results = bench(stacks, args.runs, Path(out))
    for line in report(results, args.runs):
        print(line)
    if args.json:
        doc = {"runs": args.runs, "machine": machine(), "stacks": [r.as_dict() for r in results]}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
