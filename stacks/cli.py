"""`swarmstack` command: offline plans of a stack and generated artefacts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pulumi

from stacks.plan.checks import run_checks
from stacks.plan.model import Plan
from stacks.plan.runner import PlanInputError, read_program_input, run_program
from stacks.plan.summary import summarize
from stacks.plan.writer import write_plan
from stacks.reference import generate

EXIT_CONFIG = 2
EXIT_CHECKS = 1


def plan(stack: str, root: Path, out: Path) -> int:
    try:
        inp = read_program_input(root, stack)
    except PlanInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        capture = run_program(inp)
    except pulumi.RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(
            f"plan stopped before declaring anything; {out / stack} is unchanged", file=sys.stderr
        )
        return EXIT_CONFIG
    model = Plan.from_capture(capture)
    findings = run_checks(model)
    errors = [f for f in findings if f.severity == "error"]
    warnings = [f"[program] {w}" for w in capture.warnings]
    warnings += [str(f) for f in findings if f.severity == "warning"]
    warnings += [
        f"{key} is a secret the plan cannot read; a redacted placeholder stood in for it"
        for key in sorted(inp.placeholders)
    ]
    summary = summarize(model, stack, warnings)
    if errors:
        print(f"plan of stack {stack} failed {len(errors)} check(s):", file=sys.stderr)
        for f in errors:
            print(f"  {f}", file=sys.stderr)
        print(f"{out / stack} is unchanged", file=sys.stderr)
        return EXIT_CHECKS
    destination = write_plan(
        model, findings, summary, out / stack, forbidden=list(inp.placeholders.values())
    )
    print(summary.render(), end="")
    print(
        f"\nWrote {destination}: {len(model.manifests)} Kubernetes manifests, "
        f"{len(model.releases)} Helm release(s), {len(model.aws)} AWS resources, tree.json, "
        "summary.txt"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="swarmstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_plan = sub.add_parser("plan", help="offline plan of a stack (no cloud account needed)")
    p_plan.add_argument("stack", nargs="?", default="pilot", help="stack name (default: pilot)")
    p_plan.add_argument(
        "--out", type=Path, default=Path("out"), help="output folder (default: out)"
    )
    p_plan.add_argument("--root", type=Path, default=Path("."), help="project root (Pulumi.yaml)")
    p_gen = sub.add_parser("generate", help="regenerate config schema and README reference")
    p_gen.add_argument("--root", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    if args.command == "plan":
        return plan(args.stack, args.root.resolve(), args.out)
    for path in generate(args.root.resolve()):
        print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
