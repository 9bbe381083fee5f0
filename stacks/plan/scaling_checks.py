"""Plan checks of the KEDA objects: their CRD schemas, what each ScaledObject scales, and
what it reads.

Schemas: ScaledObjects and TriggerAuthentications are validated by the validators that the
npm package `@kubernetes-models/keda` generates from KEDA's CRDs (`make setup` installs it
into node_modules/; Node runs `schema_validate.mjs`).

Targets and sources: a ScaledObject must scale a Deployment the stack declares in its own
namespace; a prometheus trigger's query may select only metric families of the metrics
contracts (components/observe/catalogue.py: the vLLM release's own `/metrics`, the
worker's METRICS.md, the exporters) and only labels those families carry; a kafka trigger
must name a topic of the stack (a KafkaTopic, or an entry of the topic list the MSK topic
Job applies, the `topics.json` ConfigMap); an `authenticationRef` must name a
TriggerAuthentication of the stack in the ScaledObject's namespace.

Sources reachable: KEDA's operator runs the scalers (the metrics API server only asks it
over gRPC), so its pods, in the namespace and with the labels the KEDA release gives them,
must be let through by the stack's NetworkPolicies (stacks/plan/reachability.py) to each
trigger's source: a prometheus trigger's `serverAddress`, every broker of a kafka
trigger's `bootstrapServers`. An in-cluster name resolves to a Service of the stack, the
monitoring release's Prometheus or a Strimzi cluster's bootstrap Service; any other
in-cluster name is an error, a name outside the cluster is a managed service (only the
operator's own egress applies). An MSK trigger's bootstrap is known only after `up` (the
plan holds it unknown): its source is the brokers' SASL/IAM port outside the cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from components.data.kafka import CLUSTER_LABEL, MSK_IAM_PORT, TOPICS_CONFIG_KEY
from components.observe.catalogue import unknown_labels, unknown_metrics
from components.scale import keda_chart
from components.scale.keda import PROMETHEUS_PORT, prometheus_url
from stacks.plan.model import Finding, Manifest, Plan, as_dict, as_list
from stacks.plan.monitoring_checks import ROOT, prometheus_source, run_validator, schema_findings
from stacks.plan.reachability import Pods, Port, blocking_namespaces

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
            problems.append(
                f"kafka trigger topic {topic!r} is not a KafkaTopic or MSK topic of the stack"
            )
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


def stack_topics(manifests: Iterable[Manifest]) -> set[str]:
    """The topics the stack declares: its KafkaTopics, and the entries of each topic list
    ConfigMap (`topics.json`) the MSK topic Job applies."""
    topics: set[str] = set()
    for m in manifests:
        if m.kind == "KafkaTopic":
            topics.add(str(as_dict(m.body.get("spec")).get("topicName") or m.name))
        document = as_dict(m.body.get("data")).get(TOPICS_CONFIG_KEY)
        if m.kind == "ConfigMap" and isinstance(document, str):
            try:
                listed = as_list(as_dict(json.loads(document)).get("topics"))
            except json.JSONDecodeError:
                continue
            topics.update(str(as_dict(t).get("name")) for t in listed if as_dict(t).get("name"))
    return topics


def check_scaled_objects(plan: Plan) -> list[Finding]:
    """Every ScaledObject scales a Deployment of the stack and reads signals that exist."""
    manifests = plan.manifests
    deployments = {(m.namespace, m.name) for m in manifests if m.kind == "Deployment"}
    topics = stack_topics(manifests)
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


# --------------------------------------------------------------------------- sources

# The Prometheus operator names the server container's port 9090 `web`.
PROMETHEUS_PORT_NAME = "web"
# What Strimzi's bootstrap Service `<cluster>-kafka-bootstrap` selects: the brokers.
STRIMZI_BROKER_LABELS = {"strimzi.io/kind": "Kafka", "strimzi.io/broker-role": "true"}


@dataclass(frozen=True)
class Source:
    """Where a trigger's scaler connects: `pods` None when the name resolves to nothing."""

    address: str  # host:port as the trigger names it
    pods: Pods | None
    port: Port


def keda_operator(plan: Plan) -> Pods | None:
    """The KEDA operator's pods: the release's namespace, the chart's labels plus the
    `podLabels.keda` the release sets."""
    for r in plan.releases:
        doc = r.document()
        if doc["chart"] == keda_chart.CHART and isinstance(doc["namespace"], str):
            extra = as_dict(as_dict(as_dict(doc["values"]).get("podLabels")).get("keda"))
            labels = {str(k): str(v) for k, v in extra.items()}
            return Pods(doc["namespace"], {**labels, **keda_chart.OPERATOR_POD_LABELS})
    return None


def _split_address(address: str, default_port: int) -> tuple[str, int]:
    text = address.strip()
    if "://" in text:
        parts = urlsplit(text)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return parts.hostname or "", port
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        return text, default_port
    return host, int(port)


def _in_cluster(host: str) -> tuple[str, str] | None:
    """(Service, namespace) of an in-cluster name, None for a name outside the cluster."""
    labels = host.split(".")
    if len(labels) == 2 or (
        len(labels) >= 3 and labels[2] == "svc" and labels[3:] in ([], ["cluster", "local"])
    ):
        return labels[0], labels[1]
    return None


def _workload_ports(
    manifests: Sequence[Manifest], namespace: str, pods: Mapping[str, str]
) -> Iterator[dict[str, Any]]:
    for m in manifests:
        template = m.pod_template()
        if template is None or m.namespace != namespace:
            continue
        labels = as_dict(as_dict(template.get("metadata")).get("labels"))
        if not all(labels.get(k) == v for k, v in pods.items()):
            continue
        for c in as_list(as_dict(template.get("spec")).get("containers")):
            for p in as_list(as_dict(c).get("ports")):
                yield as_dict(p)


def _service_source(
    manifests: Sequence[Manifest], service: Manifest, port: int, address: str
) -> Source:
    spec = as_dict(service.body.get("spec"))
    pods = {str(k): str(v) for k, v in as_dict(spec.get("selector")).items()}
    for p in as_list(spec.get("ports")):
        entry = as_dict(p)
        if entry.get("port") != port:
            continue
        target = entry.get("targetPort", port)
        for cp in _workload_ports(manifests, service.namespace, pods):
            if target in (cp.get("name"), cp.get("containerPort")):
                return Source(
                    address,
                    Pods(service.namespace, pods),
                    Port(int(cp["containerPort"]), str(cp.get("name") or "")),
                )
        if isinstance(target, int):
            return Source(address, Pods(service.namespace, pods), Port(target))
    return Source(address, None, Port(port))


def resolve_source(plan: Plan, address: str, default_port: int) -> Source:
    """The pods and port behind a trigger's address."""
    host, port = _split_address(address, default_port)
    named = _in_cluster(host)
    where = f"{host}:{port}"
    if named is None:
        return Source(where, Pods(None), Port(port))
    service, namespace = named
    for m in plan.manifests:
        if m.kind == "Service" and m.name == service and m.namespace == namespace:
            return _service_source(plan.manifests, m, port, where)
    prometheus = prometheus_source(plan)
    if prometheus is not None and prometheus.namespace == namespace:
        prometheus_host = urlsplit(prometheus_url(namespace)).hostname or ""
        if host.split(".")[0] == prometheus_host.split(".")[0] and port == PROMETHEUS_PORT:
            return Source(where, prometheus, Port(port, PROMETHEUS_PORT_NAME))
    for m in plan.manifests:
        if (
            m.kind == "Kafka"
            and str(m.body.get("apiVersion", "")).startswith("kafka.strimzi.io/")
            and m.namespace == namespace
            and service == f"{m.name}-kafka-bootstrap"
        ):
            listeners = as_list(as_dict(as_dict(m.body.get("spec")).get("kafka")).get("listeners"))
            if any(as_dict(li).get("port") == port for li in listeners):
                pods = {CLUSTER_LABEL: m.name, **STRIMZI_BROKER_LABELS}
                return Source(where, Pods(namespace, pods), Port(port))
    return Source(where, None, Port(port))


def target_env(plan: Plan, scaled_object: Manifest, variable: str) -> tuple[bool, Any]:
    """(found, value) of `variable` in the container KEDA reads the environment of: the
    scale target's `envSourceContainerName`, else its first container. A value the plan
    holds unknown (known only after `up`) is None."""
    target = as_dict(as_dict(scaled_object.body.get("spec")).get("scaleTargetRef"))
    for m in plan.manifests:
        if not (
            m.kind == "Deployment"
            and m.namespace == scaled_object.namespace
            and m.name == target.get("name")
        ):
            continue
        template = m.pod_template() or {}
        containers = [as_dict(c) for c in as_list(as_dict(template.get("spec")).get("containers"))]
        wanted = target.get("envSourceContainerName")
        chosen = [c for c in containers if c.get("name") == wanted] if wanted else containers[:1]
        for c in chosen:
            for e in map(as_dict, as_list(c.get("env"))):
                if e.get("name") == variable:
                    return True, e.get("value")
    return False, None


def trigger_sources(
    plan: Plan, trigger: Mapping[str, Any], scaled_object: Manifest | None = None
) -> list[Source]:
    """Every address a trigger's scaler dials (none for a type the checks do not know,
    which `check_scaled_objects` already refuses). A kafka trigger's bootstrap is its
    `bootstrapServers`, or the scale target's variable `bootstrapServersFromEnv` names; an
    MSK (IAM) bootstrap the plan holds unknown is the brokers' IAM port outside the cluster."""
    kind = str(trigger.get("type", ""))
    meta = as_dict(trigger.get("metadata"))
    if kind == "prometheus":
        return [resolve_source(plan, str(meta.get("serverAddress", "")), 80)]
    if kind in ("kafka", "apache-kafka"):
        bootstrap = meta.get("bootstrapServers")
        variable = meta.get("bootstrapServersFromEnv")
        if bootstrap is None and variable is not None and scaled_object is not None:
            found, bootstrap = target_env(plan, scaled_object, str(variable))
            if not found:
                return [Source(f"${{{variable}}} (not in the scale target's env)", None, Port(0))]
        if bootstrap is None and meta.get("saslTokenProvider") == "aws_msk_iam":
            return [Source(f"MSK brokers:{MSK_IAM_PORT}", Pods(None), Port(MSK_IAM_PORT))]
        servers = [s for s in str(bootstrap or "").split(",") if s.strip()]
        return [resolve_source(plan, s, 9092) for s in servers]
    return []


def check_scaled_object_sources(plan: Plan) -> list[Finding]:
    """Every trigger's source resolves, and the NetworkPolicies let KEDA's operator in."""
    operator = keda_operator(plan)
    findings: list[Finding] = []
    for so in plan.manifests:
        if not (is_keda_object(so.body) and so.kind == "ScaledObject"):
            continue
        for t in as_list(as_dict(so.body.get("spec")).get("triggers")):
            trigger = as_dict(t)
            label = f"{trigger.get('type')} trigger {trigger.get('name') or ''}".rstrip()
            for source in trigger_sources(plan, trigger, so):
                if source.pods is None:
                    findings.append(
                        Finding(
                            "error",
                            "scaling-source",
                            so.ref,
                            f"{label}: source {source.address} is not a Service, Prometheus "
                            "or Kafka cluster of the stack",
                        )
                    )
                    continue
                if operator is None:
                    continue
                blocked = blocking_namespaces(plan.manifests, operator, source.pods, source.port)
                if blocked:
                    where = (
                        f"pods {dict(source.pods.labels)} of namespace {source.pods.namespace!r}"
                        if source.pods.namespace is not None
                        else "outside the cluster"
                    )
                    findings.append(
                        Finding(
                            "error",
                            "scaling-source-reachable",
                            so.ref,
                            f"{label}: the NetworkPolicies of namespace "
                            f"{' and '.join(map(repr, blocked))} do not let KEDA's operator "
                            f"(pods {dict(operator.labels)} of namespace "
                            f"{operator.namespace!r}) reach its source {source.address} "
                            f"({where}) on port {source.port.describe()}",
                        )
                    )
    return findings
