"""Plan checks of the KEDA objects: their CRD schemas, what each ScaledObject scales, and
what it reads.

Schemas: ScaledObjects and TriggerAuthentications are validated by the validators that the
npm package `@kubernetes-models/keda` generates from KEDA's CRDs (`make setup` installs it
into node_modules/; Node runs `keda_validate.mjs`).

Targets and sources: a ScaledObject must scale a Deployment the stack declares in its own
namespace; a prometheus trigger's query may select only metric families of the metrics
contracts (components/observe/catalogue.py: the vLLM release's own `/metrics`, the
worker's METRICS.md, the exporters) and only labels those families carry; a kafka trigger
must name a KafkaTopic of the stack; an `authenticationRef` must name a
TriggerAuthentication of the stack in the ScaledObject's namespace.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from components.observe.catalogue import unknown_labels, unknown_metrics
from stacks.plan.model import Finding, Manifest, Plan, as_dict, as_list

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PACKAGE = "@kubernetes-models/keda"
VALIDATOR = Path(__file__).with_name("keda_validate.mjs")
KEDA_GROUP = "keda.sh"


class SchemasUnavailableError(RuntimeError):
    """Node or the schema package is not installed."""


def is_keda_object(body: Mapping[str, Any]) -> bool:
    return str(body.get("apiVersion", "")).rpartition("/")[0] == KEDA_GROUP


def schema_package_version(root: Path = ROOT) -> str:
    manifest = root / "node_modules" / SCHEMA_PACKAGE / "package.json"
    if not manifest.is_file():
        raise SchemasUnavailableError(
            f"{SCHEMA_PACKAGE} is not installed in {root / 'node_modules'}: run `make setup`"
        )
    return str(json.loads(manifest.read_text()).get("version", "?"))


def keda_problems(bodies: Sequence[Mapping[str, Any]], root: Path = ROOT) -> list[list[str]]:
    """For each body, what KEDA's CRD schemas refuse in it."""
    schema_package_version(root)
    node = shutil.which("node")
    if node is None:
        raise SchemasUnavailableError("node is not installed: run `make setup`")
    if not bodies:
        return []
    done = subprocess.run(
        [node, str(VALIDATOR)],
        input=json.dumps(list(bodies)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=root,
    )
    if done.returncode != 0:
        raise SchemasUnavailableError(f"{VALIDATOR.name} failed: {done.stderr.strip()[-2000:]}")
    results: list[list[str]] = json.loads(done.stdout)
    return results


def check_keda_schemas(manifests: Iterable[Manifest]) -> list[Finding]:
    objects = [m for m in manifests if is_keda_object(m.body)]
    if not objects:
        return []
    try:
        version = schema_package_version()
        problems = keda_problems([m.body for m in objects])
    except SchemasUnavailableError as exc:
        return [
            Finding("warning", "custom-resource", m.ref, f"not validated: {exc}") for m in objects
        ]
    return [
        Finding(
            "error", "custom-resource", m.ref, f"{problem} (schema: {SCHEMA_PACKAGE} {version})"
        )
        for m, found in zip(objects, problems, strict=True)
        for problem in found
    ]


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
