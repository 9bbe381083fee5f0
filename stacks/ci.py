"""Which stacks a change touches, for the pull-request and deploy workflows.

A change to `stacks/Pulumi.<stack>.yaml` or `policies/config/<stack>.json` touches that
stack and every stack that references it (StackReference, stacks/stack_refs.py); a change
to anything the program, the plan or the policy pack reads touches every stack;
documentation, tests, workflows, load tests and benchmarks touch none.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from stacks.stack_refs import GLOBAL_CONFIG_KEY, dependents

STACK_FILE = re.compile(r"^stacks/Pulumi\.([A-Za-z0-9_.-]+)\.yaml$")
POLICY_CONFIG = re.compile(r"^policies/config/([A-Za-z0-9_.-]+)\.json$")
# Paths that change no plan (prefixes, or whole names).
NOT_CODE = ("docs/", "tests/", ".github/", ".ci/", "loadtests/", "benchmarks/", ".gitignore")


def stacks(root: Path) -> list[str]:
    """Every stack with a config file, sorted."""
    return sorted(
        p.name[len("Pulumi.") : -len(".yaml")] for p in (root / "stacks").glob("Pulumi.*.yaml")
    )


def _is_code(path: str) -> bool:
    if path.startswith(NOT_CODE):
        return False
    return not (path.endswith(".md") and "/" not in path)  # README.md and friends


def changed_stacks(
    paths: Iterable[str], available: list[str], root: Path | None = None
) -> list[str]:
    """The stacks the changed paths touch, and (given the checkout's `root`) every stack
    that reads one of them through a StackReference: a change to a region re-plans the
    global stack, whose plan is fed from the region's planned outputs."""
    touched: set[str] = set()
    for path in paths:
        match = STACK_FILE.match(path) or POLICY_CONFIG.match(path)
        if match:
            touched.add(match.group(1))
        elif _is_code(path):
            return list(available)
    touched &= set(available)
    if root is not None and touched:
        try:
            touched |= dependents(root / "stacks", available, touched)
        except ImportError:  # no PyYAML: every stack that references others, to be safe
            touched |= {
                s
                for s in available
                if GLOBAL_CONFIG_KEY in (root / "stacks" / f"Pulumi.{s}.yaml").read_text()
            }
    return sorted(touched)


def _changed_paths(root: Path, base: str, head: str) -> list[str] | None:
    """Paths changed from `base` to `head`; None when git cannot tell (a new branch's
    all-zero `before`, a force push, a shallow clone), and every stack counts as changed."""
    run = subprocess.run(
        ["git", "-C", str(root), "diff", "--name-only", f"{base}...{head}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        print(
            f"cannot compare {base}...{head} ({run.stderr.strip()}): every stack", file=sys.stderr
        )
        return None
    return [line for line in run.stdout.splitlines() if line]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stacks.ci", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_all = sub.add_parser("stacks", help="every stack")
    p_changed = sub.add_parser("changed-stacks", help="stacks a change between two refs touches")
    p_changed.add_argument("--base", required=True)
    p_changed.add_argument("--head", default="HEAD")
    for p in (p_all, p_changed):
        p.add_argument("--root", type=Path, default=Path("."))
        p.add_argument("--json", action="store_true", help="a JSON list (for a job matrix)")
    args = parser.parse_args(argv)
    available = stacks(args.root)
    if args.command == "stacks":
        names = available
    else:
        paths = _changed_paths(args.root, args.base, args.head)
        names = available if paths is None else changed_stacks(paths, available, args.root)
    print(json.dumps(names) if args.json else "\n".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
