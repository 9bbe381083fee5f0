"""Checks that fail a plan: schemas, names, selectors, monitors, mesh hosts, scheduling and
accelerators.

A schema catches unknown or mistyped fields; the rest catches what a schema
cannot see: a Service whose selector matches no pod, a pod that no node pool
would accept, a GPU slice no pool offers.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# kubernetes_validate ships no stubs or py.typed marker; its inferred types are enough here.
import kubernetes_validate  # pyright: ignore[reportMissingTypeStubs]

from components.data.cert_manager_schema import cert_manager_problems
from components.data.strimzi_schema import strimzi_problems
from components.observe.prometheus_rule_schema import prometheus_rule_problems
from stacks.plan.mesh_checks import check_istio_schemas, check_mesh_hosts, is_istio_object
from stacks.plan.model import Finding, Manifest, NodePool, Plan, as_dict, as_list
from stacks.plan.monitoring_checks import (
    check_monitoring_schemas,
    check_monitors,
    is_monitoring_object,
)
from stacks.plan.scaling_checks import (
    check_keda_schemas,
    check_scaled_object_sources,
    check_scaled_objects,
    is_keda_object,
)


def run_checks(plan: Plan) -> list[Finding]:
    pools = plan.node_pools()
    findings = [
        *check_schemas(plan.manifests, plan.kubernetes_version()),
        *check_names(plan),
        *check_selectors(plan.manifests),
        *check_monitoring_schemas(plan.manifests),
        *check_monitors(plan),
        *check_keda_schemas(plan.manifests),
        *check_scaled_objects(plan),
        *check_scaled_object_sources(plan),
        *check_istio_schemas(plan.manifests),
        *check_mesh_hosts(plan.manifests),
    ]
    if pools:
        findings += check_scheduling(plan.manifests, pools)
    elif plan.manifests:  # a stack without Kubernetes objects (the global one) has none to check
        findings.append(
            Finding(
                "warning",
                "scheduling",
                "stack",
                "no node groups declared (existing cluster): tolerations, node selectors and "
                "GPU requests were not checked against node pools",
            )
        )
    findings += [
        Finding(
            "warning",
            "helm-contents",
            f"HelmRelease {r.name}",
            f"chart {r.document()['chart']} {r.document()['version']}: the resources it "
            "renders are not in this plan and were not checked",
        )
        for r in plan.releases
    ]
    return findings


# --------------------------------------------------------------------------- schemas


# Fields whose values the API server decodes as base64 (`format: byte` in the schema,
# which kubernetes-validate does not check).
BASE64_MAPS = {"Secret": "data", "ConfigMap": "binaryData"}


def _base64_problems(manifest: Manifest) -> list[str]:
    field = BASE64_MAPS.get(manifest.kind)
    if field is None:
        return []
    problems: list[str] = []
    for key, value in sorted(as_dict(manifest.body.get(field)).items()):
        try:
            base64.b64decode(str(value), validate=True)
        except binascii.Error:
            problems.append(f"$.{field}.{key}: not base64, which the API server refuses")
    return problems


@dataclass(frozen=True)
class CustomResourceModel:
    """A typed model of one operator's CRDs (no registry package ships their schemas)."""

    source: str  # where the model's fields were read
    problems: Callable[[dict[str, Any]], list[str]]
    kinds: frozenset[str] | None = None  # None: every kind of the group


# API group -> the model every custom resource of that group is checked against.
CUSTOM_RESOURCE_MODELS: dict[str, CustomResourceModel] = {
    "kafka.strimzi.io": CustomResourceModel(
        "components/data/strimzi_schema.py (Strimzi 1.2.0 CRDs)", strimzi_problems
    ),
    "cert-manager.io": CustomResourceModel(
        "components/data/cert_manager_schema.py (cert-manager v1.21.1 CRDs)",
        cert_manager_problems,
    ),
    "monitoring.coreos.com": CustomResourceModel(
        "components/observe/prometheus_rule_schema.py (prometheus-operator PrometheusRule CRD)",
        prometheus_rule_problems,
        # Monitors are checked by the operator's published schemas (monitoring_checks.py).
        kinds=frozenset({"PrometheusRule"}),
    ),
}


def custom_resource_model(body: dict[str, Any]) -> CustomResourceModel | None:
    group = str(body.get("apiVersion", "")).rpartition("/")[0]
    model = CUSTOM_RESOURCE_MODELS.get(group)
    if model is None or (model.kinds is not None and body.get("kind") not in model.kinds):
        return None
    return model


def check_custom_resource(m: Manifest) -> list[Finding]:
    """Errors naming the resource and each field its CRD model refuses."""
    model = custom_resource_model(m.body)
    assert model is not None
    return [
        Finding("error", "custom-resource", m.ref, f"{problem} (model: {model.source})")
        for problem in model.problems(m.body)
    ]


def check_schemas(manifests: Iterable[Manifest], version: str) -> list[Finding]:
    """Strict validation of every manifest exactly as the plan writes it: core kinds against
    the Kubernetes schemas, custom resources against their CRD models."""
    findings: list[Finding] = []
    for m in manifests:
        if custom_resource_model(m.body) is not None:
            findings += check_custom_resource(m)
            continue
        if is_monitoring_object(m.body):
            continue  # the prometheus-operator schemas (check_monitoring_schemas)
        if is_keda_object(m.body):
            continue  # KEDA's published schemas (check_keda_schemas)
        if is_istio_object(m.body):
            continue  # Istio's published schemas (mesh_checks.check_istio_schemas)
        findings += [
            Finding("error", "schema", m.ref, f"{problem} (Kubernetes {version})")
            for problem in _base64_problems(m)
        ]
        try:
            kubernetes_validate.validate(m.body, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            findings.append(
                Finding(
                    "warning",
                    "schema",
                    m.ref,
                    f"no Kubernetes {version} schema for {m.body.get('apiVersion')}/{m.kind}",
                )
            )
        except kubernetes_validate.ValidationError as exc:
            findings.append(
                Finding(
                    "error",
                    "schema",
                    m.ref,
                    f"{exc.json_path}: {exc.message} (Kubernetes {version})",
                )
            )
    return findings


# --------------------------------------------------------------------------- names


def check_names(plan: Plan) -> list[Finding]:
    findings = [
        Finding(
            "error",
            "explicit-name",
            m.ref,
            "metadata.name is not set: Pulumi would append a random suffix",
        )
        for m in plan.manifests
        if not m.name
    ]
    findings += [
        Finding("error", "explicit-name", f"HelmRelease ({r.registration.name})", "name is not set")
        for r in plan.releases
        if not r.name
    ]
    seen: dict[tuple[str, str, str], Manifest] = {}
    for m in plan.manifests:
        key = (m.kind, m.namespace, m.name)
        if m.name and key in seen:
            findings.append(
                Finding("error", "explicit-name", m.ref, f"same name as {seen[key].ref}")
            )
        seen[key] = m
    return findings


# --------------------------------------------------------------------------- selectors


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _template_labels(m: Manifest) -> dict[str, str]:
    template = m.pod_template() or {}
    return {
        str(k): str(v) for k, v in as_dict(as_dict(template.get("metadata")).get("labels")).items()
    }


# Kubernetes writes these kinds' selectors itself (a Job's controller-uid, unless
# spec.manualSelector); an empty one is what a Job should have.
GENERATED_SELECTOR_KINDS = frozenset({"Job", "CronJob"})


def check_selectors(manifests: list[Manifest]) -> list[Finding]:
    findings: list[Finding] = []
    workloads = [m for m in manifests if m.pod_template() is not None]
    for w in workloads:
        if w.kind in GENERATED_SELECTOR_KINDS:
            continue
        selector = as_dict(as_dict(as_dict(w.body.get("spec")).get("selector")).get("matchLabels"))
        if not selector:
            findings.append(
                Finding("error", "selector", w.ref, "spec.selector.matchLabels is empty")
            )
        elif not _matches(selector, _template_labels(w)):
            findings.append(
                Finding(
                    "error",
                    "selector",
                    w.ref,
                    f"selector {selector} does not match its pod template labels "
                    f"{_template_labels(w)}",
                )
            )
    for m in manifests:
        spec = as_dict(m.body.get("spec"))
        if m.kind == "Service":
            selector = as_dict(spec.get("selector"))
        elif m.kind == "PodDisruptionBudget":
            selector = as_dict(as_dict(spec.get("selector")).get("matchLabels"))
        else:
            continue
        if not selector:
            continue
        targets = [
            w
            for w in workloads
            if w.namespace == m.namespace and _matches(selector, _template_labels(w))
        ]
        if not targets:
            findings.append(
                Finding(
                    "error",
                    "selector",
                    m.ref,
                    f"selector {selector} matches no pod template in namespace {m.namespace!r}",
                )
            )
    return findings


# --------------------------------------------------------------------------- scheduling


def _tolerates(tolerations: list[dict[str, Any]], taint: dict[str, str]) -> bool:
    for t in tolerations:
        if t.get("effect") not in (None, "", taint["effect"]):
            continue
        if t.get("operator") == "Exists" and t.get("key") in (None, "", taint["key"]):
            return True
        if t.get("key") == taint["key"] and str(t.get("value", "")) == taint["value"]:
            return True
    return False


def _requests(template: dict[str, Any]) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in as_list(as_dict(template.get("spec")).get("containers")):
        resources = as_dict(as_dict(c).get("resources"))
        for source in ("limits", "requests"):
            for k, v in as_dict(resources.get(source)).items():
                if str(k).startswith("nvidia.com/"):
                    total[str(k)] = max(total.get(str(k), 0), int(v))
    return total


def _expression_matches(expression: dict[str, Any], labels: dict[str, str]) -> bool:
    key, operator = str(expression.get("key")), expression.get("operator")
    values = [str(v) for v in as_list(expression.get("values"))]
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    return False  # Gt/Lt compare integers; no pool label is one


def _affinity_admits(pod: dict[str, Any], labels: dict[str, str]) -> bool:
    """A pod's required node affinity (any term, every expression of it) on a node with
    `labels`; true when it has none."""
    required = as_dict(
        as_dict(as_dict(pod.get("affinity")).get("nodeAffinity")).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
    )
    terms = [as_dict(t) for t in as_list(required.get("nodeSelectorTerms"))]
    if not terms:
        return True
    return any(
        all(_expression_matches(as_dict(e), labels) for e in as_list(t.get("matchExpressions")))
        for t in terms
    )


def check_scheduling(manifests: list[Manifest], pools: list[NodePool]) -> list[Finding]:
    findings: list[Finding] = []
    all_taints = [(p, t) for p in pools for t in p.taints]
    for m in manifests:
        template = m.pod_template()
        if template is None:
            continue
        pod = as_dict(template.get("spec"))
        selector = {str(k): str(v) for k, v in as_dict(pod.get("nodeSelector")).items()}
        tolerations: list[dict[str, Any]] = list(as_list(pod.get("tolerations")))
        for t in tolerations:
            if not any(_tolerates([t], taint) for _, taint in all_taints):
                findings.append(
                    Finding(
                        "error",
                        "scheduling",
                        m.ref,
                        f"toleration {t} matches no taint of any node pool "
                        f"({', '.join(p.name for p in pools)})",
                    )
                )
        candidates = [
            p
            for p in pools
            if _matches(selector, p.labels)
            and _affinity_admits(pod, p.labels)
            and all(_tolerates(tolerations, t) for t in p.taints)
        ]
        if not candidates:
            findings.append(
                Finding(
                    "error",
                    "scheduling",
                    m.ref,
                    f"no node pool accepts it: nodeSelector {selector}, its required node "
                    "affinity and tolerations "
                    f"{[t.get('key') for t in tolerations]} (pools: "
                    + ", ".join(f"{p.name} {p.labels}" for p in pools)
                    + ")",
                )
            )
            continue
        for resource, count in sorted(_requests(template).items()):
            if not any(p.offers_per_node[resource] >= count for p in candidates):
                offered = {p.name: dict(p.offers_per_node) for p in candidates}
                findings.append(
                    Finding(
                        "error",
                        "accelerators",
                        m.ref,
                        f"requests {count} x {resource}, which no pool it can run on offers "
                        f"per node (offered: {offered})",
                    )
                )
    return findings
