"""Plan checks of the KEDA objects: their CRD schemas, what each ScaledObject scales, and
what it reads.

Schemas: ScaledObjects and TriggerAuthentications are validated by the validators that the
npm package `@kubernetes-models/keda` generates from KEDA's CRDs (`make setup` installs it
into node_modules/; Node runs `schema_validate.mjs`).

Targets and sources: a ScaledObject must scale a Deployment the stack declares in its own
namespace; a prometheus trigger's query may select only metric families of the metrics
contracts (components/observe/catalogue.py: the vLLM release's own `/metrics`, the
worker's METRICS.md, the exporters) and only labels those families carry; a kafka trigger
must name a KafkaTopic of the stack; an `authenticationRef` must name a
TriggerAuthentication of the stack in the ScaledObject's namespace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from components.observe.catalogue import unknown_labels, unknown_metrics
from stacks.plan.model import Finding, Manifest, Plan, as_dict, as_list
from stacks.plan.monitoring_checks import ROOT, run_validator, schema_findings

SCHEMA_PACKAGE = "@kubernetes-models/keda"
MODULES = {"keda.sh/v1alpha1": f"{SCHEMA_PACKAGE}/keda.sh/v1alpha1"}
KEDA_GROUP = "keda.sh"


def is_keda_object(body: Mapping[str, Any]) -> bool:
    return str(body.get("apiVersion", "")).rpartition("/")[0] == KEDA_GROUP


def keda_problems(bodies: Sequence[Mapping[str, Any]], root: Path = ROOT) -> list[list[str]]:
    """For each body, what KEDA's CRD schemas refuse in it."""
    return run_validator(SCHEMA_PACKAGE, MODULES, bodies, root)


def check_keda_schemas(manifests: Iterable[Manifest]) -> list[Finding]:
    objects = [m for m in manifests if is_keda_object(m.body)]
    return schema_findings(objects, SCHEMA_PACKAGE, MODULES)


def _trigger_problems(
    trigger: Mapping[str, Any], namespace: str, topics: set[str], auths: set[tuple[str, str]]
) -> list[str]:
    kind = str(trigger.get("type", ""))
    meta = as_dict(trigger.get("metadata"))
    problems: list[str] = []
    if kind == "prometheus":
        query = str(meta.get("query", ""))
        missing = sorted(unknown_metrics(query))
        if missing:
            problems.append(
                f"prometheus trigger queries {', '.join(missing)}, which no metrics contract "
                "of the stack exposes (components/observe/catalogue.py)"
            )
        for metric, labels in sorted(unknown_labels(query).items()):
            problems.append(
                f"prometheus trigger selects {metric} by {', '.join(sorted(labels))}, which "
                "that metric does not carry"
            )
    elif kind in ("kafka", "apache-kafka"):
        topic = str(meta.get("topic", ""))
        if topic not in topics:
            problems.append(f"kafka trigger topic {topic!r} is not a KafkaTopic of the stack")
    else:
        problems.append(f"trigger type {kind!r} is not one the stack's checks know")
    ref = as_dict(trigger.get("authenticationRef"))
    if ref:
        kind_ref = str(ref.get("kind") or "TriggerAuthentication")
        key = (namespace if kind_ref == "TriggerAuthentication" else "", str(ref.get("name")))
        if kind_ref != "TriggerAuthentication" or key not in auths:
            problems.append(
                f"authenticationRef {kind_ref} {ref.get('name')} is not declared by the stack "
                f"in namespace {namespace}"
            )
    return problems


def check_scaled_objects(plan: Plan) -> list[Finding]:
    """Every ScaledObject scales a Deployment of the stack and reads signals that exist."""
    manifests = plan.manifests
    deployments = {(m.namespace, m.name) for m in manifests if m.kind == "Deployment"}
    topics: set[str] = set()
    for m in manifests:
        if m.kind == "KafkaTopic":
            topics.add(str(as_dict(m.body.get("spec")).get("topicName") or m.name))
    auths = {
        (m.namespace, m.name)
        for m in manifests
        if is_keda_object(m.body) and m.kind == "TriggerAuthentication"
    }
    findings: list[Finding] = []
    for so in manifests:
        if not (is_keda_object(so.body) and so.kind == "ScaledObject"):
            continue
        spec = as_dict(so.body.get("spec"))
        target = as_dict(spec.get("scaleTargetRef"))
        kind = str(target.get("kind") or "Deployment")
        name = str(target.get("name", ""))
        if kind != "Deployment" or (so.namespace, name) not in deployments:
            findings.append(
                Finding(
                    "error",
                    "scaling-target",
                    so.ref,
                    f"scaleTargetRef {kind} {so.namespace}/{name} is not a Deployment of the stack",
                )
            )
        for t in as_list(spec.get("triggers")):
            findings += [
                Finding("error", "scaling-signal", so.ref, p)
                for p in _trigger_problems(as_dict(t), so.namespace, topics, auths)
            ]
    return findings
