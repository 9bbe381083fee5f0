"""Scaling: KEDA bounds that fit the work, no cold starts for interactive models, drainable PDBs.

Fields that are absent mean what the controllers do without them: a KEDA
ScaledObject scales between minReplicaCount 0 and maxReplicaCount 100 and
targets a Deployment unless scaleTargetRef.kind says otherwise; a Strimzi
KafkaTopic is named metadata.name unless spec.topicName is set, and without
spec.partitions gets the cluster's num.partitions (Kafka's default is 1); on MSK,
which has no topic resource, swarmstack's topic Job applies the list in a ConfigMap's
`topics.json` key (`{"topics": [{"name", "partitions", ...}]}`); a
policy/v1 PodDisruptionBudget without a selector selects no pods, and one with
an empty selector selects every pod of its namespace.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    StackValidationArgs,
)

from policies.framework import (
    Rule,
    Workload,
    as_dict,
    as_list,
    describe,
    k8s_kind,
    metadata_of,
    name_of,
    namespace_of,
    of_kind,
    pod_spec,
    reporter,
    selects,
    stack_reporter,
)

COMPONENT_LABEL = "app.kubernetes.io/component"
# Model servers and agent workers (swarmstack labels its workers `agent`; `agent-worker`
# is the conventional name elsewhere).
PROTECTED_COMPONENTS = ("model-server", "agent", "agent-worker")
TIER_ANNOTATION = "swarmstack.io/latency-tier"
ENVIRONMENT_LABEL = "environment"

KEDA_PREFIX = "kubernetes:keda.sh/"
STRIMZI_PREFIX = "kubernetes:kafka.strimzi.io/"
KAFKA_TRIGGERS = ("kafka", "apache-kafka")
KEDA_DEFAULT_MIN = 0
KEDA_DEFAULT_MAX = 100
KAFKA_DEFAULT_PARTITIONS = 1
CLUSTER_LABEL = "strimzi.io/cluster"
TOPIC_LIST_KEY = "topics.json"

# --------------------------------------------------------------------------- helpers


def _workload(r: PolicyResource, report: ReportViolation) -> Workload | None:
    kind = k8s_kind(r.resource_type)
    if kind not in ("Deployment", "StatefulSet"):
        return None
    pod = pod_spec(kind, r.props)
    return Workload(kind, r.props, pod, stack_reporter(r, report)) if pod is not None else None


def _count(value: Any, default: int) -> int:
    """An integer field, or the controller's default when it is absent (or not a number)."""
    try:
        return default if value is None else int(value)
    except (TypeError, ValueError):
        return default


def _show(value: Any) -> str:
    """A field as written (the wire form turns every number into a float)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _scaled_objects(resources: Sequence[PolicyResource]) -> Iterator[PolicyResource]:
    return of_kind(resources, "ScaledObject", KEDA_PREFIX)


# --------------------------------------------------------------------------- KEDA and Kafka


def _listed_topics(resources: Sequence[PolicyResource]) -> Iterator[tuple[str, int, str]]:
    """(topic, partitions, how it is known) per entry of a `topics.json` topic list."""
    for cm in of_kind(resources, "ConfigMap", "kubernetes:core/v1:"):
        document = as_dict(cm.props.get("data")).get(TOPIC_LIST_KEY)
        if not isinstance(document, str):
            continue
        try:
            listed = as_list(as_dict(json.loads(document)).get("topics"))
        except json.JSONDecodeError:
            continue
        label = describe(cm.resource_type, cm.props, cm.name)
        for entry in map(as_dict, listed):
            if entry.get("name"):
                count = _count(entry.get("partitions"), KAFKA_DEFAULT_PARTITIONS)
                yield str(entry["name"]), count, f"{label}, {TOPIC_LIST_KEY}"


def _partitions(
    resources: Sequence[PolicyResource],
) -> dict[str, list[tuple[str, int, str]]]:
    """Topic name -> (Strimzi cluster, partitions, how it is known) per KafkaTopic, and
    ("", partitions, how) per entry of an MSK topic list."""
    cluster_default: dict[str, int] = {}
    for k in of_kind(resources, "Kafka", STRIMZI_PREFIX):
        config = as_dict(as_dict(as_dict(k.props.get("spec")).get("kafka")).get("config"))
        if config.get("num.partitions") is not None:
            cluster_default[name_of(k)] = _count(config["num.partitions"], KAFKA_DEFAULT_PARTITIONS)
    topics: dict[str, list[tuple[str, int, str]]] = {}
    for t in of_kind(resources, "KafkaTopic", STRIMZI_PREFIX):
        spec = as_dict(t.props.get("spec"))
        cluster = str(as_dict(metadata_of(t.props).get("labels")).get(CLUSTER_LABEL) or "")
        label = describe(t.resource_type, t.props, t.name)
        if spec.get("partitions") is not None:
            count, how = _count(spec["partitions"], KAFKA_DEFAULT_PARTITIONS), label
        elif cluster in cluster_default:
            count, how = cluster_default[cluster], f"{label}, num.partitions of cluster {cluster}"
        else:
            count, how = KAFKA_DEFAULT_PARTITIONS, f"{label}, spec.partitions unset: Kafka default"
        topic = str(spec.get("topicName") or name_of(t))
        topics.setdefault(topic, []).append((cluster, count, how))
    for topic, count, how in _listed_topics(resources):
        topics.setdefault(topic, []).append(("", count, how))
    return topics


def _kafka_max_replicas(args: StackValidationArgs, report: ReportViolation) -> None:
    topics = _partitions(args.resources)
    for so in _scaled_objects(args.resources):
        spec = as_dict(so.props.get("spec"))
        maximum = _count(spec.get("maxReplicaCount"), KEDA_DEFAULT_MAX)
        shown = (
            f"maxReplicaCount {maximum}"
            if spec.get("maxReplicaCount") is not None
            else f"maxReplicaCount unset (KEDA default {KEDA_DEFAULT_MAX})"
        )
        say = stack_reporter(so, report)
        for t in as_list(spec.get("triggers")):
            trigger = as_dict(t)
            if trigger.get("type") not in KAFKA_TRIGGERS:
                continue
            meta = as_dict(trigger.get("metadata"))
            topic = str(meta.get("topic") or "")
            if not topic:
                say(
                    f"partition count unknown: the kafka trigger names no topic (KEDA then "
                    f"scales on every topic of consumer group {meta.get('consumerGroup')}); "
                    f"check {shown} against the partitions"
                )
                continue
            known = topics.get(topic, [])
            servers = str(meta.get("bootstrapServers") or "")
            same_cluster = [k for k in known if k[0] and f"{k[0]}-kafka-bootstrap" in servers]
            candidates = same_cluster or known
            if not candidates:
                say(
                    f"partition count unknown for topic {topic}: no KafkaTopic or topic list "
                    f"in the stack declares it; check {shown} against its partitions"
                )
                continue
            _, partitions, how = min(candidates, key=lambda k: k[1])
            if maximum > partitions:
                say(
                    f"{shown} exceeds the {partitions} partition(s) of topic {topic} ({how}): "
                    "replicas beyond one per partition sit idle"
                )


def _scale_to_zero(args: StackValidationArgs, report: ReportViolation) -> None:
    # Simple on purpose: the rule applies to Deployments whose pod template label
    # `environment` (the stack's cost label) equals config `environment`.
    environment = str(args.get_config().get("environment") or "production")
    deployments: dict[tuple[str, str], Workload] = {}
    for r in args.resources:
        w = _workload(r, report)
        if w is not None and w.kind == "Deployment":
            deployments[(namespace_of(r.props), name_of(r))] = w
    for so in _scaled_objects(args.resources):
        spec = as_dict(so.props.get("spec"))
        target = as_dict(spec.get("scaleTargetRef"))
        if str(target.get("kind") or "Deployment") != "Deployment":
            continue
        key = (namespace_of(so.props), str(target.get("name") or ""))
        w = deployments.get(key)
        if w is None or w.annotations.get(TIER_ANNOTATION) != "interactive":
            continue
        if w.pod_labels.get(ENVIRONMENT_LABEL) != environment:
            continue
        say = stack_reporter(so, report)
        target_name = f"interactive Deployment {key[0]}/{key[1]}"
        if spec.get("minReplicaCount") is None:
            say(
                f"scales {target_name} to zero (minReplicaCount unset: KEDA default "
                f"{KEDA_DEFAULT_MIN}); its first request waits for a model to load"
            )
        elif _count(spec.get("minReplicaCount"), KEDA_DEFAULT_MIN) < 1:
            say(
                f"scales {target_name} to zero (minReplicaCount "
                f"{_show(spec.get('minReplicaCount'))}); its first request waits for a model "
                "to load"
            )
        if spec.get("idleReplicaCount") is not None:
            say(
                f"scales {target_name} to idleReplicaCount {_show(spec.get('idleReplicaCount'))} "
                "when its triggers are idle; its first request waits for a model to load"
            )


# --------------------------------------------------------------------------- scale-down

HPA_DEFAULT_SCALE_DOWN_WINDOW_S = 300
E2E_ANNOTATION = "swarmstack.io/slo-e2e-p99-s"


def _scale_down_window(spec: Mapping[str, Any]) -> tuple[int, str]:
    behavior = as_dict(
        as_dict(as_dict(spec.get("advanced")).get("horizontalPodAutoscalerConfig")).get("behavior")
    )
    window = as_dict(behavior.get("scaleDown")).get("stabilizationWindowSeconds")
    if window is None:
        return HPA_DEFAULT_SCALE_DOWN_WINDOW_S, (
            f"scale-down stabilisation unset (the HPA default {HPA_DEFAULT_SCALE_DOWN_WINDOW_S} s)"
        )
    seconds = _count(window, HPA_DEFAULT_SCALE_DOWN_WINDOW_S)
    return seconds, f"scale-down stabilisation {seconds} s"


def _safe_scale_down(args: StackValidationArgs, report: ReportViolation) -> None:
    minimum = _count(args.get_config().get("minScaleDownWindowS"), HPA_DEFAULT_SCALE_DOWN_WINDOW_S)
    deployments: dict[tuple[str, str], Workload] = {}
    for r in args.resources:
        w = _workload(r, report)
        if w is not None and w.kind == "Deployment":
            deployments[(namespace_of(r.props), name_of(r))] = w
    for so in _scaled_objects(args.resources):
        spec = as_dict(so.props.get("spec"))
        target = as_dict(spec.get("scaleTargetRef"))
        w = deployments.get((namespace_of(so.props), str(target.get("name") or "")))
        if w is None or w.pod_labels.get(COMPONENT_LABEL) not in PROTECTED_COMPONENTS:
            continue
        seconds, shown = _scale_down_window(spec)
        say = stack_reporter(so, report)
        if seconds < minimum:
            say(
                f"{shown} is below {minimum} s: a replica removed while load dips for a moment "
                "is missed again a poll later, and a worker stopped mid-turn hands its session "
                "on to be resumed"
            )
        e2e = w.annotations.get(E2E_ANNOTATION)
        if e2e is not None and seconds <= _count(e2e, 0):
            say(f"{shown} does not outlast one request of the model it scales (e2e P99 {e2e} s)")


# --------------------------------------------------------------------------- disruption budgets

_ZERO = re.compile(r"^0+(\.0*)?%?$")


def _is_zero(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value == 0
    return isinstance(value, str) and bool(_ZERO.match(value.strip()))


def _is_all(value: object) -> bool:
    if not isinstance(value, str) or not value.strip().endswith("%"):
        return False
    try:
        return float(value.strip()[:-1]) >= 100
    except ValueError:
        return False


def _pdb_disruption(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if k8s_kind(args.resource_type) != "PodDisruptionBudget":
        return
    spec = as_dict(args.props.get("spec"))
    say = reporter(args.resource_type, args.props, args.name, report)
    hang = "blocks every eviction: node drains and upgrades hang"
    if "maxUnavailable" in spec and _is_zero(spec.get("maxUnavailable")):
        say(f"maxUnavailable {_show(spec.get('maxUnavailable'))} {hang}")
    if "minAvailable" in spec and _is_all(spec.get("minAvailable")):
        say(f"minAvailable {_show(spec.get('minAvailable'))} {hang}")


def _pdb_required(args: StackValidationArgs, report: ReportViolation) -> None:
    selectors: dict[str, list[Mapping[str, Any]]] = {}
    for p in of_kind(args.resources, "PodDisruptionBudget"):
        spec = as_dict(p.props.get("spec"))
        if spec.get("selector") is not None:  # policy/v1: no selector selects no pods
            selectors.setdefault(namespace_of(p.props), []).append(as_dict(spec.get("selector")))
    for r in args.resources:
        w = _workload(r, report)
        if w is None:
            continue
        component = w.pod_labels.get(COMPONENT_LABEL)
        if component not in PROTECTED_COMPONENTS:
            continue
        ns = namespace_of(r.props)
        if not any(selects(s, w.pod_labels) for s in selectors.get(ns, [])):
            w.report(
                f"runs {component} pods but no PodDisruptionBudget in namespace {ns} selects "
                "them: a node drain can evict every replica at once"
            )


RULES: list[Rule] = [
    Rule(
        "keda-kafka-max-replicas-within-partitions",
        "scaling",
        "A KEDA ScaledObject with a kafka trigger scales to at most the topic's partition "
        "count (maxReplicaCount defaults to 100); consumers beyond it sit idle.",
        "Set maxReplicaCount to at most the KafkaTopic's spec.partitions, or add partitions; "
        "declare the KafkaTopic in the stack so the count is known.",
        check_stack=_kafka_max_replicas,
    ),
    Rule(
        "no-scale-to-zero-interactive",
        "scaling",
        "In the configured environment, KEDA never scales an interactive model Deployment to "
        "zero (minReplicaCount defaults to 0; idleReplicaCount scales to it when idle).",
        "Set minReplicaCount: 1 or more and remove idleReplicaCount on the ScaledObject.",
        check_stack=_scale_to_zero,
        config={
            "environment": {
                "type": "string",
                "default": "production",
                "description": "The Deployments' pod label `environment` this rule applies to.",
            }
        },
    ),
    Rule(
        "keda-safe-scale-down",
        "scaling",
        "A ScaledObject of a model server or agent worker waits out a turn before it scales "
        "down: a scale-down stabilisation window of at least minScaleDownWindowS seconds, and "
        "longer than the model's e2e P99 (the HPA default is 300 s).",
        "Set spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown."
        "stabilizationWindowSeconds to the longest turn plus a margin.",
        check_stack=_safe_scale_down,
        config={
            "minScaleDownWindowS": {
                "type": "integer",
                "default": HPA_DEFAULT_SCALE_DOWN_WINDOW_S,
                "description": "The shortest scale-down stabilisation window allowed, s.",
            }
        },
    ),
    Rule(
        "pdb-allows-disruption",
        "scaling",
        "A PodDisruptionBudget allows at least one eviction (maxUnavailable 0 or minAvailable "
        "100% blocks every drain).",
        "Set maxUnavailable: 1 (or a percentage above 0).",
        check=_pdb_disruption,
    ),
    Rule(
        "pdb-required",
        "scaling",
        "Every model-server and agent worker (app.kubernetes.io/component agent or "
        "agent-worker) Deployment or StatefulSet is selected by a PodDisruptionBudget in its "
        "namespace.",
        "Declare a PodDisruptionBudget whose selector matches the workload's pod labels, with "
        "maxUnavailable: 1.",
        check_stack=_pdb_required,
    ),
]
