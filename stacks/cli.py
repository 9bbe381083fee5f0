"""`swarmstack` command: offline plans of a stack, generated artefacts, and $ per agent,
session, user and team from the workers' usage records."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pulumi

from components.traffic.region_peering import overlapping_regions
from policies.framework import Level
from policies.pack import stack_phase
from stacks import cost as usage_cost
from stacks import loadtest
from stacks.config import (
    HF_TOKEN_CONFIG_KEY,
    ConfigError,
    file_region,
    load,
    load_file,
    raw_from_config,
    secret_purposes,
)
from stacks.global_config import GlobalRegion, is_global, load_global
from stacks.plan.checks import run_checks
from stacks.plan.diff import PlanFolderError, diff_plans, load_plan, render_markdown
from stacks.plan.model import Plan
from stacks.plan.policy import (
    Levels,
    PolicyConfigError,
    Violation,
    count_levels,
    effective_levels,
    evaluate,
    load_config,
    report_markdown,
    unknown_rules,
)
from stacks.plan.recorder import Capture, PlannedOutputs
from stacks.plan.runner import PlanInputError, ProgramInput, read_program_input, run_program
from stacks.plan.summary import summarize
from stacks.plan.writer import describe_written, write_plan
from stacks.reference import generate
from stacks.stack_refs import StackReferenceError, plan_order, target_stack

POLICY_CONFIG_DIR = Path("policies/config")
EXIT_CONFIG = 2
EXIT_CHECKS = 1


def secret_warnings(inp: ProgramInput, purposes: dict[str, str], source: str) -> list[str]:
    """One warning per secret a placeholder stood in for: what it is for, and whether
    `pulumi up` would find it set."""
    warnings: list[str] = []
    for full in sorted(inp.placeholders):
        key = full.split(":", 1)[1]
        purpose = purposes.get(key)
        if full not in inp.not_in_stack_file:
            why = f": {purpose}" if purpose else ""
            warnings.append(
                f"{full} is encrypted in {source}, which the plan cannot read; a redacted "
                f"placeholder stood in for it{why}"
            )
        elif purpose:
            value = "<token>" if key == HF_TOKEN_CONFIG_KEY else "<value>"
            warnings.append(
                f"{full} is not set in {source}, so `pulumi up` refuses to run: {purpose}. "
                f"A redacted placeholder stood in for it here; `pulumi config set --secret {key} "
                f"{value}` sets it, and `swarmstack plan {inp.stack} --unset-secret {key}` shows "
                "the refusal"
            )
    return warnings


def plan(stack: str, root: Path, out: Path, unset: list[str] | None = None) -> int:
    """Plan `stack`, after every stack it references (StackReference), in dependency
    order: each referenced stack is planned (and written to `out/<stack>`) first, and its
    planned outputs answer the references of the stacks after it."""
    try:
        order = plan_order(root / "stacks", stack)
    except StackReferenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except FileNotFoundError:
        order = [stack]  # no such stack: plan_one says which exist
    for name in order if len(order) > 1 else []:
        problem = _global_config_problem(root, name)
        if problem:  # before planning what it references
            print(f"error: {problem}", file=sys.stderr)
            return EXIT_CONFIG
    planned: dict[str, PlannedOutputs] = {}
    if len(order) > 1:
        print(f"Planning {' -> '.join(order)} (dependency order)")
    for name in order[:-1]:
        code, capture = plan_one(name, root, out, references=planned)
        if capture is None:
            print(
                f"error: stack {stack} references stack {name}, whose plan failed (above); "
                f"{out / stack} is unchanged",
                file=sys.stderr,
            )
            return code
        planned[name] = capture.planned_outputs()
    code, _ = plan_one(stack, root, out, unset, references=planned)
    return code


def _global_config_problem(root: Path, stack: str) -> str | None:
    """A global stack's config errors, found before its references are planned."""
    try:
        inp = read_program_input(root, stack)
    except PlanInputError as exc:
        return str(exc)
    raw, _ = raw_from_config(inp.config)
    if not is_global(raw):
        return None
    source = str(inp.stack_file.relative_to(root))
    try:
        config = load_global(raw, source)
    except ConfigError as exc:
        return str(exc)
    return _overlapping_regions_problem(root, stack, source, config.global_.regions)


def _overlapping_regions_problem(
    root: Path, stack: str, source: str, regions: list[GlobalRegion]
) -> str | None:
    """The global stack peers its regions' VPCs: two that overlap are refused before
    anything is planned, naming both stacks' files and their `cluster.vpcCidr`. A region
    whose own config is invalid is left to its own plan to report."""
    labelled: list[tuple[str, str]] = []
    for i, region in enumerate(regions):
        target = target_stack(region.stack)
        path = root / "stacks" / f"Pulumi.{target}.yaml"
        try:
            cidr = load_file(path).cluster.vpc_cidr
        except (ConfigError, OSError):
            continue
        labelled.append(
            (
                f"global.regions[{i}].stack {region.stack!r} (cluster.vpcCidr {cidr} in "
                f"{path.relative_to(root)})",
                cidr,
            )
        )
    clashes = overlapping_regions(labelled)
    if not clashes:
        return None
    return (
        f"stack {stack} ({source}): "
        + "; ".join(f"{a} overlaps {b}" for a, b in clashes)
        + ": the global stack peers the regions' VPCs, which needs disjoint CIDRs"
    )


def plan_one(
    stack: str,
    root: Path,
    out: Path,
    unset: list[str] | None = None,
    references: dict[str, PlannedOutputs] | None = None,
) -> tuple[int, Capture | None]:
    """One stack's plan; its StackReferences read `references`. Returns the exit code and,
    when the plan was written, what the program declared and exported."""
    try:
        inp = read_program_input(root, stack, unset or [])
    except PlanInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG, None
    try:
        capture = run_program(inp, references)
    except pulumi.RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(
            f"plan stopped before declaring anything; {out / stack} is unchanged", file=sys.stderr
        )
        return EXIT_CONFIG, None
    model = Plan.from_capture(capture)
    findings = run_checks(model)
    errors = [f for f in findings if f.severity == "error"]
    warnings = [f"[program] {w}" for w in capture.warnings]
    warnings += [str(f) for f in findings if f.severity == "warning"]
    raw, region = raw_from_config(inp.config)
    source = str(inp.stack_file.relative_to(root))
    if not is_global(raw):  # a global stack reads no secret
        config = load(raw, region, str(inp.stack_file))  # the program has validated it
        warnings += secret_warnings(inp, secret_purposes(config), source)
    summary = summarize(model, stack, warnings)
    policy_file = root / POLICY_CONFIG_DIR / f"{stack}.json"
    shown_file = str(POLICY_CONFIG_DIR / f"{stack}.json")
    levels = Levels(
        phase=stack_phase(inp.config),
        config_file=shown_file if policy_file.is_file() else None,
        expected_file=shown_file,
    )
    try:
        policy_config = load_config(policy_file)
        unknown = unknown_rules(policy_config)
        if unknown:
            raise PolicyConfigError(f"{policy_file}: no such rule(s) {unknown}")
        effective = effective_levels(levels, policy_config)
        violations = evaluate(capture.registrations, policy_config, defaults=levels.defaults)
    except PolicyConfigError as exc:
        print(f"error: policy config {exc}", file=sys.stderr)
        return EXIT_CONFIG, None
    mandatory = [v for v in violations if v.level == "mandatory"]
    if errors or mandatory:
        if errors:
            print(f"plan of stack {stack} failed {len(errors)} check(s):", file=sys.stderr)
            for f in errors:
                print(f"  {f}", file=sys.stderr)
        if mandatory:
            print(
                f"plan of stack {stack} violates {len(mandatory)} mandatory polic"
                f"{'y' if len(mandatory) == 1 else 'ies'}:",
                file=sys.stderr,
            )
            for v in mandatory:
                print(f"  {v}\n    fix: {v.remediation}", file=sys.stderr)
        print(f"{out / stack} is unchanged", file=sys.stderr)
        return EXIT_CHECKS, None
    destination = out / stack
    written = write_plan(
        model,
        findings,
        summary,
        destination,
        forbidden=list(inp.placeholders.values()),
        extra={
            "policy.md": report_markdown(violations, levels, effective),
            "policy.json": json.dumps([v.as_dict() for v in violations], indent=2) + "\n",
        },
    )
    print(summary.render(), end="")
    print(policy_summary(violations, levels, effective), end="")
    print(f"\nWrote {destination}: {describe_written(model, written)}")
    return 0, capture


def policy_summary(violations: list[Violation], levels: Levels, effective: dict[str, Level]) -> str:
    advisory = [v for v in violations if v.level == "advisory"]
    lines = [
        "",
        f"Policies (pack swarmstack): 0 mandatory violations, {len(advisory)} advisory finding(s)",
        f"  levels: {levels.describe()}: {count_levels(effective)}",
    ]
    lines += [f"  - {v.rule}: {v.message}" for v in advisory]
    return "\n".join(lines) + "\n"


class BaseRefError(RuntimeError):
    pass


def plan_at_ref(root: Path, ref: str, stack: str, out: Path) -> Path | None:
    """Plan `stack` with the code and config of git `ref` in a temporary worktree, with
    that ref's own `swarmstack plan`; None when the stack does not exist at `ref`."""
    git = ["git", "-C", str(root)]
    try:
        commit = subprocess.run(
            [*git, "rev-parse", "--verify", f"{ref}^{{commit}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BaseRefError(f"--base-ref {ref}: not a commit of {root}") from exc
    worktree = out.parent / f"{out.name}-tree"  # beside the plan, in the caller's scratch dir
    subprocess.run(
        [*git, "worktree", "add", "--detach", "--quiet", str(worktree), commit],
        capture_output=True,
        check=True,
    )
    try:
        if not (worktree / "stacks" / f"Pulumi.{stack}.yaml").is_file():
            return None
        if (root / "node_modules").is_dir() and not (worktree / "node_modules").exists():
            (worktree / "node_modules").symlink_to(root / "node_modules")
        # The ref's own packages first, ahead of the installed (work tree) ones.
        paths = [str(worktree), str(worktree / "images" / "agent-worker")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        run = subprocess.run(
            [sys.executable, "-m", "stacks.cli", "plan", stack, "--root", ".", "--out", str(out)],
            cwd=worktree,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            raise BaseRefError(
                f"plan of stack {stack} at {ref} ({commit[:12]}) failed:\n{run.stderr.strip()}"
            )
        return out / stack
    finally:
        subprocess.run(
            [*git, "worktree", "remove", "--force", str(worktree)], capture_output=True, check=False
        )


def diff(args: argparse.Namespace) -> int:
    """Markdown for a pull-request comment: what changes from one plan to another."""
    root = args.root.resolve()
    with tempfile.TemporaryDirectory(prefix="swarmstack-diff-") as tmp:
        scratch = Path(tmp)
        if args.base_ref:
            if args.plans:
                print("error: give two plan folders or --base-ref, not both", file=sys.stderr)
                return EXIT_CONFIG
            try:
                base_dir = plan_at_ref(root, args.base_ref, args.stack, scratch / "base")
            except BaseRefError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_CONFIG
            with contextlib.redirect_stdout(sys.stderr):  # stdout is the comment alone
                code = plan(args.stack, root, scratch / "head")
            if code:
                return code
            head_dir = scratch / "head" / args.stack
            base_label = f"{args.stack} at {args.base_ref}"
            if base_dir is None:  # a new stack: everything is added
                base_dir = scratch / "empty"
                base_dir.mkdir()
                (base_dir / "summary.json").write_text("{}\n")
                (base_dir / "aws-resources.yaml").write_text("[]\n")
                (base_dir / "index.json").write_text("[]\n")
                base_label += " (no such stack there: everything is new)"
            head_label = f"{args.stack} (work tree)"
        elif len(args.plans) == 2:
            base_dir, head_dir = args.plans
            base_label, head_label = str(base_dir), str(head_dir)
        else:
            print("error: give two plan folders (base head) or --base-ref REF", file=sys.stderr)
            return EXIT_CONFIG
        try:
            result = diff_plans(load_plan(base_dir), load_plan(head_dir))
        except PlanFolderError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    stack = args.stack if args.base_ref else str(result.head_summary.get("stack") or "")
    text = render_markdown(
        result,
        title=f"swarmstack plan diff: stack {stack}" if stack else "swarmstack plan diff",
        base_label=args.base_label or base_label,
        head_label=args.head_label or head_label,
    )
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    sys.stdout.write(text)
    return 0


def cost(args: argparse.Namespace) -> int:
    """$ per agent, session, user and team over a window, from the usage stream."""
    try:
        config = load_file(args.root.resolve() / "stacks" / f"Pulumi.{args.stack}.yaml")
    except (ConfigError, OSError) as exc:
        print(f"error: stack {args.stack}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        until = time.time()
        since = (
            usage_cost.parse_since(args.since)
            if args.since
            else until - usage_cost.parse_duration(args.window)
        )
        if since >= until:
            raise usage_cost.CostError(f"--since: {args.since!r} is not in the past")
        tps = usage_cost.tokens_per_second_arg(args.tokens_per_second)
        tps_from = "--tokens-per-second"
        if not tps and args.prometheus_url:
            tps = _tokens_per_second_from(args.prometheus_url, until - since)
            tps_from = (
                f"Prometheus {args.prometheus_url}: {usage_cost.prometheus_query(until - since)}"
            )
        elif not tps:
            raise usage_cost.CostError(
                "give --tokens-per-second MODEL=N (repeatable) or --prometheus-url to price tokens"
            )
        records = _read_records(args.redis_url, since, until)
        prices = usage_cost.price_models(
            config,
            (r.model for r in records),
            tokens_per_second=tps,
            tokens_per_second_from=tps_from,
            replicas=usage_cost.replicas_arg(args.replicas),
            price_as=usage_cost.parse_assignments(args.price_as, "--price-as"),
        )
    except usage_cost.CostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    report = usage_cost.aggregate(records, prices, since, until)
    print(usage_cost.to_json(report) if args.json else report.render(), end="")
    return 0


def _read_records(url: str, since: float, until: float) -> list[usage_cost.UsageRecord]:
    import redis  # noqa: PLC0415  (the serve extra; plan and generate do not need it)

    client: Any = redis.Redis.from_url(  # pyright: ignore[reportUnknownMemberType]
        url, decode_responses=True, socket_timeout=10
    )
    try:
        return usage_cost.read_usage(client, since, until)
    except redis.RedisError as exc:
        raise usage_cost.CostError(f"--redis-url {url}: {exc}") from exc
    finally:
        client.close()


def _tokens_per_second_from(url: str, window_s: float) -> dict[str, float]:
    import httpx  # noqa: PLC0415  (the serve extra)

    query = usage_cost.prometheus_query(window_s)
    try:
        response = httpx.get(f"{url.rstrip('/')}/api/v1/query", params={"query": query}, timeout=10)
        body: Any = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise usage_cost.CostError(f"--prometheus-url {url}: {exc}") from exc
    return usage_cost.tokens_per_second_from_prometheus(body)


def capacity(args: argparse.Namespace) -> int:
    """What the stack's expected peak needs against what it provides; exit 1 on a shortfall."""
    from stacks import capacity as sizing  # noqa: PLC0415

    try:
        config = load_file(args.root.resolve() / "stacks" / f"Pulumi.{args.stack}.yaml")
    except (ConfigError, OSError) as exc:
        print(f"error: stack {args.stack}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        measured = sizing.measured_args(args.measured, sizing.replicas_args(args.measured_replicas))
        report = sizing.plan_capacity(config, args.stack, measured)
    except sizing.CapacityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(report.to_json() if args.json else report.render(), end="")
    return EXIT_CHECKS if report.shortfalls else 0


def images(args: argparse.Namespace) -> int:
    """Every image the stack runs and its mirror (stacks/images.py); exit 2 without a mirror."""
    from stacks import images as mirror_images  # noqa: PLC0415

    try:
        config = load_file(args.root.resolve() / "stacks" / f"Pulumi.{args.stack}.yaml")
    except (ConfigError, OSError) as exc:
        print(f"error: stack {args.stack}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    mirror = config.images.mirror
    if mirror is None:
        print(
            f"error: stack {args.stack}: images.mirror is not set, so its images run from "
            "their upstream registries (set images.mirror.prefix to mirror them)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    region = file_region(args.root.resolve() / "stacks" / f"Pulumi.{args.stack}.yaml")
    planned = mirror_images.mirror_plan(config, mirror, args.account, region)
    if args.format == "tsv":
        # One copy a line: source, mirrored reference, ECR repository name (for scripts).
        for image in mirror_images.copies(planned):
            print(f"{image.source}\t{image.reference}\t{image.repository_name}")
        return 0
    width = max(len(i.path) for i in planned)
    print(f"# stack {args.stack}: images -> the account's ECR mirror (prefix {mirror.prefix})")
    for image in planned:
        target = image.reference if image.copy else f"{image.reference} (already in ECR)"
        print(f"{image.path:<{width}}  {image.upstream.reference} -> {target}")
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
    p_plan.add_argument(
        "--unset-secret",
        action="append",
        default=[],
        metavar="KEY",
        help="plan as if the secret config KEY (e.g. huggingFaceToken) were not set, instead "
        "of a placeholder: shows whether `pulumi up` would refuse without it (repeatable)",
    )
    p_diff = sub.add_parser(
        "diff",
        help="Markdown for a pull-request comment: resources, replacements, policy findings, "
        "GPUs and $/hour between two plans",
    )
    p_diff.add_argument(
        "plans", nargs="*", type=Path, metavar="PLAN", help="two plan folders: base head"
    )
    p_diff.add_argument(
        "--base-ref",
        metavar="REF",
        help="plan --stack at this git ref (in a temporary worktree) and compare the work "
        "tree's plan with it",
    )
    p_diff.add_argument("--stack", default="pilot", help="stack for --base-ref (pilot)")
    p_diff.add_argument("--root", type=Path, default=Path("."), help="project root (Pulumi.yaml)")
    p_diff.add_argument("--output", type=Path, help="also write the Markdown to this file")
    p_diff.add_argument("--base-label", help="what to call the base plan (its folder or ref)")
    p_diff.add_argument("--head-label", help="what to call the head plan (its folder)")
    p_gen = sub.add_parser("generate", help="regenerate config schema and README reference")
    p_gen.add_argument("--root", type=Path, default=Path("."))
    p_cost = sub.add_parser(
        "cost",
        help="$ per agent, session, user and team from the usage records and the stack's "
        "GPU prices",
    )
    p_cost.add_argument("--stack", default="pilot", help="stack whose prices apply (pilot)")
    p_cost.add_argument("--root", type=Path, default=Path("."), help="project root")
    p_cost.add_argument(
        "--redis-url", required=True, help="the session store holding the swarm:usage stream"
    )
    when = p_cost.add_mutually_exclusive_group()
    when.add_argument("--window", default="1h", help="records of the last 30m, 2h, 1d (1h)")
    when.add_argument("--since", help="records since this ISO-8601 time (UTC unless it says)")
    p_cost.add_argument(
        "--tokens-per-second",
        action="append",
        default=[],
        metavar="MODEL=N",
        help="tokens (prompt + generated) a model served per second over the window; "
        "MODEL is its served name or stack name (repeatable)",
    )
    p_cost.add_argument(
        "--prometheus-url",
        help=f"read tokens per second from {usage_cost.TOKENS_PER_SECOND_RULE} instead",
    )
    p_cost.add_argument(
        "--replicas",
        action="append",
        default=[],
        metavar="MODEL=N",
        help="replicas that served the model (default: the stack's models[].replicas.min)",
    )
    p_cost.add_argument(
        "--price-as",
        action="append",
        default=[],
        metavar="SERVED=MODEL",
        help="price a served model that is not in the stack as the stack's MODEL (the local "
        "target's small model, for instance)",
    )
    p_cost.add_argument("--json", action="store_true", help="print JSON")
    p_cap = sub.add_parser(
        "capacity",
        help="replicas, MIG slices, nodes, KEDA thresholds and $/hour the stack's demand "
        "needs, from a load test's summary.json, against what the stack provides",
    )
    p_cap.add_argument("stack", nargs="?", default="pilot", help="stack name (default: pilot)")
    p_cap.add_argument("--root", type=Path, default=Path("."), help="project root")
    p_cap.add_argument(
        "--measured",
        action="append",
        default=[],
        metavar="MODEL=PATH",
        help="a load test's summary.json of the stack model MODEL (repeatable)",
    )
    p_cap.add_argument(
        "--measured-replicas",
        action="append",
        default=[],
        metavar="MODEL=N",
        help="replicas of MODEL that served that run (default 1, the local target's)",
    )
    p_cap.add_argument("--json", action="store_true", help="print JSON")
    p_load = sub.add_parser(
        "loadtest-manifests",
        help="the in-cluster load test's Jobs, Service and policies from the stack's outputs, "
        "checked like the plan's manifests (apply them, or `python -m loadtests.incluster run`)",
    )
    loadtest.add_options(p_load)
    p_img = sub.add_parser(
        "images",
        help="every image of a stack and its copy in the account's ECR mirror (images.mirror)",
    )
    p_img.add_argument("stack", nargs="?", default="pilot", help="stack name (default: pilot)")
    p_img.add_argument("--root", type=Path, default=Path("."), help="project root")
    p_img.add_argument(
        "--account",
        default="<account>",
        help="the AWS account id of the mirror (e.g. from `aws sts get-caller-identity`)",
    )
    p_img.add_argument(
        "--format",
        choices=["text", "tsv"],
        default="text",
        help="text: every image by config path; tsv: each distinct copy as `source "
        "mirror repository-name`, for stacks/bootstrap/mirror-images.sh",
    )
    args = parser.parse_args(argv)
    if args.command == "loadtest-manifests":
        return loadtest.manifests_command(args)
    if args.command == "images":
        return images(args)
    if args.command == "capacity":
        return capacity(args)
    if args.command == "cost":
        return cost(args)
    if args.command == "diff":
        return diff(args)
    if args.command == "plan":
        return plan(args.stack, args.root.resolve(), args.out, args.unset_secret)
    for path in generate(args.root.resolve()):
        print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
