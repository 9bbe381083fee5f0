"""`swarmstack loadtest-manifests`: the in-cluster load test's manifests, checked as the plan
checks a stack's.

The manifests (`loadtests/incluster.py`, from the stack's outputs) are declared as real
`pulumi_kubernetes` resources on the plan's mock runtime, then held to what a stack's
manifests are held to: the Kubernetes schema of the cluster's version
(`kubernetes-validate`, strict), Istio's schemas, selectors that match their pods, and
every resource rule of the policy pack at the stack's levels (its phase, then
`policies/config/<stack>.json`). Stack rules (default-deny, STRICT mTLS and the like) are
about the whole stack and are the stack's plan's to pass: a run adds openings only
inside the namespace's default-deny, which it does not declare.

Nothing is rendered into `pulumi up`: a run starts only when its manifests are applied.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pulumi_kubernetes as k8s
from pulumi_policy import ResourceValidationPolicy

from loadtests.incluster import RunSpecError, add_run_options, render_manifests, spec_from_args
from loadtests.incluster import to_yaml as manifests_yaml
from loadtests.stack_outputs import OutputsError, read_outputs
from policies.framework import Rule
from policies.pack import RULES, Phase, phase_levels
from stacks.plan.checks import check_schemas, check_selectors
from stacks.plan.mesh_checks import check_istio_schemas
from stacks.plan.model import Finding, Plan
from stacks.plan.policy import PolicyConfigError, Violation, evaluate, load_config
from stacks.plan.recorder import run

POLICY_CONFIG_DIR = Path("policies/config")
DEFAULT_KUBERNETES_VERSION = "1.33"  # the plan's default (stacks/plan/model.py)


def resource_rules() -> list[Rule]:
    """The pack's rules that judge one resource at a time (pod, image, label rules...)."""
    return [r for r in RULES if isinstance(r.policy(), ResourceValidationPolicy)]


def _declare(manifest: Mapping[str, Any]) -> None:
    kind = str(manifest["kind"])
    meta: Any = manifest["metadata"]
    name = f"{kind.lower()}-{meta['name']}"
    spec = cast(Any, manifest.get("spec"))  # wire form (camelCase), sent as written
    declare: dict[str, Callable[[], object]] = {
        "ServiceAccount": lambda: k8s.core.v1.ServiceAccount(
            name,
            metadata=meta,
            automount_service_account_token=bool(manifest.get("automountServiceAccountToken")),
        ),
        "ConfigMap": lambda: k8s.core.v1.ConfigMap(
            name, metadata=meta, data=cast(Any, manifest.get("data"))
        ),
        "Service": lambda: k8s.core.v1.Service(name, metadata=meta, spec=spec),
        "NetworkPolicy": lambda: k8s.networking.v1.NetworkPolicy(name, metadata=meta, spec=spec),
        "Job": lambda: k8s.batch.v1.Job(name, metadata=meta, spec=spec),
        "AuthorizationPolicy": lambda: k8s.apiextensions.CustomResource(
            name,
            api_version=str(manifest["apiVersion"]),
            kind=kind,
            metadata=meta,
            spec=spec,
        ),
    }
    if kind not in declare:
        raise ValueError(f"no declaration for {kind} (known: {sorted(declare)})")
    declare[kind]()


@dataclass(frozen=True)
class Verdict:
    findings: list[Finding]  # schema, selector and Istio checks
    violations: list[Violation]  # the pack's resource rules

    @property
    def blocking(self) -> list[str]:
        errors = [str(f) for f in self.findings if f.severity == "error"]
        return errors + [str(v) for v in self.violations if v.level == "mandatory"]


def check_manifests(
    manifests: Sequence[Mapping[str, Any]],
    *,
    phase: Phase,
    policy_config: dict[str, Any],
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION,
) -> Verdict:
    """The plan's checks and the pack's resource rules over a run's manifests."""

    def program() -> None:
        for manifest in manifests:
            _declare(manifest)

    capture = run(program, stack="loadtest")
    plan = Plan.from_capture(capture)
    findings = [
        *check_schemas(plan.manifests, kubernetes_version),
        *check_istio_schemas(plan.manifests),
        *check_selectors(plan.manifests),
    ]
    violations = evaluate(
        capture.registrations, policy_config, resource_rules(), defaults=phase_levels(phase)
    )
    return Verdict(findings, violations)


def _phase(outputs: Mapping[str, Any]) -> Phase:
    # Outputs without a phase (not swarmstack's) get the strictest levels, as the pack does.
    return "pilot" if outputs.get("phase") == "pilot" else "production"


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stack", help="the stack the outputs are of (its policy config)")
    add_run_options(parser)
    parser.add_argument("--root", type=Path, default=Path("."), help="project root")
    parser.add_argument(
        "--kubernetes-version",
        default=DEFAULT_KUBERNETES_VERSION,
        help="schema version to validate against (the cluster's)",
    )
    parser.add_argument("--output", type=Path, help="write the YAML here (default: stdout)")


def manifests_command(args: argparse.Namespace) -> int:
    """Render, check and print (or write) a run's manifests; 1 if a check fails."""
    try:
        outputs = read_outputs(args.outputs)
        manifests = render_manifests(outputs, spec_from_args(args))
        policy_config = load_config(args.root / POLICY_CONFIG_DIR / f"{args.stack}.json")
    except (OutputsError, RunSpecError, PolicyConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    phase = _phase(outputs)
    verdict = check_manifests(
        manifests,
        phase=phase,
        policy_config=policy_config,
        kubernetes_version=args.kubernetes_version,
    )
    for v in verdict.violations:
        if v.level != "mandatory":
            print(f"warning: {v}", file=sys.stderr)
    for f in verdict.findings:
        if f.severity != "error":
            print(f"warning: {f}", file=sys.stderr)
    if verdict.blocking:
        print(
            f"the load test's manifests fail {len(verdict.blocking)} check(s) ({phase} levels):",
            file=sys.stderr,
        )
        for line in verdict.blocking:
            print(f"  {line}", file=sys.stderr)
        return 1
    text = manifests_yaml(manifests)
    if args.output:
        args.output.write_text(text)
        print(f"wrote {args.output}: {len(manifests)} objects", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
