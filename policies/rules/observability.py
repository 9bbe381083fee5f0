"""Observability: the workloads that serve models and hold the agents' state are scraped,
and every alert the stack declares tells the person paged what to do.

A model server (pods labelled app.kubernetes.io/component=model-server) and a stateful
store (a StatefulSet, or a Deployment running a Redis, Valkey or Qdrant image) each need a
ServiceMonitor or PodMonitor of the stack that selects its pods: without one, its
saturation, errors and latency are invisible to the alerts and the autoscalers.

A PodMonitor selects a workload when its `selector` matches the pod labels in a namespace
it names (`namespaceSelector.matchNames`, `any`, or its own namespace); a ServiceMonitor
does when it selects a Service there whose own selector matches the pod labels.

A PrometheusRule's alerting rules (`spec.groups[].rules[]` with `alert`) carry a
`runbook_url` annotation pointing at the runbook in the repository,
`docs/runbooks/<alert-name-in-kebab-case>.md` (optionally behind a browse URL). Recording
rules need none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import (
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    StackValidationArgs,
)

from policies.framework import (
    Rule,
    as_dict,
    as_list,
    containers,
    k8s_kind,
    metadata_of,
    namespace_of,
    of_kind,
    pod_metadata,
    pod_spec,
    reporter,
    selects,
    stack_reporter,
    string_map,
)

MONITOR_TYPES = {
    "kubernetes:monitoring.coreos.com/v1:ServiceMonitor": "ServiceMonitor",
    "kubernetes:monitoring.coreos.com/v1:PodMonitor": "PodMonitor",
}
MODEL_SERVER = "model-server"
AGENT_WORKERS = ("agent", "agent-worker")  # swarmstack labels its agent workers `agent`
STORE_IMAGES = ("redis", "valkey", "qdrant")  # last repository segment


def _image_name(image: object) -> str:
    name = str(image or "").split("@", 1)[0]
    if name.rfind(":") > name.rfind("/"):
        name = name[: name.rfind(":")]
    return name.rsplit("/", 1)[-1].lower()


def _why_monitored(kind: str, props: Mapping[str, Any]) -> str | None:
    """Why a workload must be monitored (None: it need not be)."""
    labels = string_map(pod_metadata(kind, props).get("labels"))
    if labels.get("app.kubernetes.io/component") == MODEL_SERVER:
        return "a model server"
    if labels.get("app.kubernetes.io/component") in AGENT_WORKERS:
        return "an agent worker"
    if kind == "StatefulSet":
        return "a stateful store (StatefulSet)"
    pod = pod_spec(kind, props)
    if kind == "Deployment" and pod is not None:
        for _, c in containers(pod):
            if _image_name(c.get("image")) in STORE_IMAGES:
                return f"a stateful store ({_image_name(c.get('image'))})"
    return None


def _monitor_namespaces(monitor: PolicyResource) -> set[str] | None:
    spec = as_dict(monitor.props.get("spec"))
    ns_selector = as_dict(spec.get("namespaceSelector"))
    if ns_selector.get("any") is True:
        return None
    names = {str(n) for n in as_list(ns_selector.get("matchNames"))}
    return names or {namespace_of(monitor.props)}


def _selects_pods(
    monitor: PolicyResource,
    namespace: str,
    pod_labels: Mapping[str, str],
    services: Sequence[PolicyResource],
) -> bool:
    namespaces = _monitor_namespaces(monitor)
    if namespaces is not None and namespace not in namespaces:
        return False
    selector = as_dict(as_dict(monitor.props.get("spec")).get("selector"))
    if not selector:
        return False  # the builder never renders one; an empty one is not an answer here
    if MONITOR_TYPES[monitor.resource_type] == "PodMonitor":
        return selects(selector, pod_labels)
    for service in services:
        if namespace_of(service.props) != namespace:
            continue
        if not selects(selector, string_map(metadata_of(service.props).get("labels"))):
            continue
        backing = string_map(as_dict(service.props.get("spec")).get("selector"))
        if backing and selects({"matchLabels": backing}, pod_labels):
            return True
    return False


def _workloads_monitored(args: StackValidationArgs, report: ReportViolation) -> None:
    resources = list(args.resources)
    monitors = [r for r in resources if r.resource_type in MONITOR_TYPES]
    services = list(of_kind(resources, "Service"))
    for r in resources:
        kind = k8s_kind(r.resource_type)
        if not r.resource_type.startswith("kubernetes:") or kind not in (
            "Deployment",
            "StatefulSet",
        ):
            continue
        why = _why_monitored(kind, r.props)
        if why is None:
            continue
        namespace = namespace_of(r.props)
        pod_labels = string_map(pod_metadata(kind, r.props).get("labels"))
        if any(_selects_pods(m, namespace, pod_labels, services) for m in monitors):
            continue
        stack_reporter(r, report)(
            f"is {why}, but no ServiceMonitor or PodMonitor of the stack selects its pods "
            f"(labels {pod_labels}) in namespace {namespace!r}: its metrics are never scraped"
        )


PROMETHEUS_RULE_TYPE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"


def runbook_path(alert: str) -> str:
    """`AgentToolCallLoop` -> `docs/runbooks/agent-tool-call-loop.md`."""
    return "docs/runbooks/" + re.sub(r"(?<!^)(?=[A-Z])", "-", alert).lower() + ".md"


def _alerts_have_runbooks(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if k8s_kind(args.resource_type) != "PrometheusRule":
        return
    say = reporter(args.resource_type, args.props, args.name, report)
    for group in as_list(as_dict(args.props.get("spec")).get("groups")):
        group_name = as_dict(group).get("name", "?")
        for rule in as_list(as_dict(group).get("rules")):
            alert = as_dict(rule).get("alert")
            if alert is None:
                continue  # a recording rule
            url = str(as_dict(as_dict(rule).get("annotations")).get("runbook_url") or "")
            expected = runbook_path(str(alert))
            if not url:
                say(f"alert {alert} (group {group_name}) has no runbook_url annotation")
            elif not (url == expected or url.endswith("/" + expected)):
                say(
                    f"alert {alert} (group {group_name}): runbook_url {url!r} does not point "
                    f"at its runbook {expected}"
                )


RULES: list[Rule] = [
    Rule(
        "workloads-monitored",
        "observability",
        "Every model server (pods labelled app.kubernetes.io/component=model-server), every "
        "agent worker (component agent or agent-worker) and every stateful store (a "
        "StatefulSet, or a Deployment running Redis, Valkey or Qdrant) "
        "is selected by a ServiceMonitor or PodMonitor of the stack: directly by its pod "
        "labels, or through a Service that selects its pods.",
        "Declare a monitor for it with components/observe/monitors.py (monitor_body and "
        "declare_monitor), selecting its pods or its Service in its namespace and naming its "
        "metrics port.",
        check_stack=_workloads_monitored,
    ),
    Rule(
        "alerts-have-runbooks",
        "observability",
        "Every alert of a PrometheusRule links its runbook (annotation runbook_url -> "
        "docs/runbooks/<alert-name-in-kebab-case>.md).",
        "Add annotations.runbook_url to the alerting rule and write the runbook at "
        "docs/runbooks/<alert>.md (components/observe/alerts.py does both for the stack's "
        "rules).",
        check=_alerts_have_runbooks,
    ),
]
