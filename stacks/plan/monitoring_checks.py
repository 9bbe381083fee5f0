"""Plan checks of the monitoring objects: their CRD schemas, what each monitor selects, and
whether the stack's NetworkPolicies let Prometheus reach it.

Schemas: ServiceMonitors, PodMonitors and PrometheusRules are validated by the validators
that the npm package `@kubernetes-models/prometheus-operator` generates from the
prometheus-operator CRDs (`make setup` installs it into node_modules/; Node runs
`schema_validate.mjs`). The CRDs leave unknown fields open, so the schemas
catch types, enumerations, patterns and required fields, not misspelt keys.

Selection: a ServiceMonitor must select at least one Service of the stack in the
namespaces it names, and each endpoint port must be a port name of a selected Service; a
PodMonitor must select pod templates of the stack (or the pods a Strimzi Kafka cluster of
the stack runs, whose metrics port Strimzi names `tcp-prometheus`), and each endpoint port
must be a container port name there. Reachability: the stack's NetworkPolicies must let
the Prometheus pods of the monitoring release's namespace reach those pods on that port,
egress at Prometheus and ingress at the target (stacks/plan/reachability.py, the one
evaluator every plan check uses).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.observe.monitoring_chart import CHART
from components.observe.selection import PROMETHEUS_POD_LABELS
from components.traffic.istio_chart import INJECTION_LABEL, MERGED_METRICS_PORT
from policies.framework import selects
from stacks.plan.model import Finding, Manifest, Plan, as_dict, as_list
from stacks.plan.reachability import Pods, Port, blocking_namespaces

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PACKAGE = "@kubernetes-models/prometheus-operator"
# The one Node validator of every schema package: given apiVersion -> package module.
VALIDATOR = Path(__file__).with_name("schema_validate.mjs")
MODULES = {"monitoring.coreos.com/v1": f"{SCHEMA_PACKAGE}/monitoring.coreos.com/v1"}
MONITORING_GROUP = "monitoring.coreos.com"
STRIMZI_CLUSTER_LABEL = "strimzi.io/cluster"
STRIMZI_METRICS_PORT = "tcp-prometheus"


class SchemasUnavailableError(RuntimeError):
    """Node or the schema package is not installed."""


def schema_package_version(root: Path = ROOT, package: str = SCHEMA_PACKAGE) -> str:
    manifest = root / "node_modules" / package / "package.json"
    if not manifest.is_file():
        raise SchemasUnavailableError(
            f"{package} is not installed in {root / 'node_modules'}: run `make setup`"
        )
    return str(json.loads(manifest.read_text()).get("version", "?"))


def prometheus_operator_problems(
    bodies: Sequence[Mapping[str, Any]], root: Path = ROOT
) -> list[list[str]]:
    """For each body, what the prometheus-operator CRD schemas refuse in it."""
    return run_validator(SCHEMA_PACKAGE, MODULES, bodies, root)


def run_validator(
    package: str,
    modules: Mapping[str, str],
    bodies: Sequence[Mapping[str, Any]],
    root: Path = ROOT,
) -> list[list[str]]:
    """Validate `bodies` with `package`'s models (`modules`: apiVersion -> the package
    module of its kinds) in Node: per body, its problems."""
    schema_package_version(root, package)
    node = shutil.which("node")
    if node is None:
        raise SchemasUnavailableError("node is not installed: run `make setup`")
    if not bodies:
        return []
    done = subprocess.run(
        [node, str(VALIDATOR), json.dumps(dict(modules))],
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


def schema_findings(
    objects: Sequence[Manifest], package: str, modules: Mapping[str, str]
) -> list[Finding]:
    """What `package`'s CRD schemas refuse in `objects`, each problem an error naming the
    schema; without Node or the package, a warning per object that it was not validated."""
    if not objects:
        return []
    try:
        version = schema_package_version(ROOT, package)
        problems = run_validator(package, modules, [m.body for m in objects])
    except SchemasUnavailableError as exc:
        return [
            Finding("warning", "custom-resource", m.ref, f"not validated: {exc}") for m in objects
        ]
    return [
        Finding("error", "custom-resource", m.ref, f"{problem} (schema: {package} {version})")
        for m, found in zip(objects, problems, strict=True)
        for problem in found
    ]


def is_monitoring_object(body: Mapping[str, Any]) -> bool:
    return str(body.get("apiVersion", "")).rpartition("/")[0] == MONITORING_GROUP


def check_monitoring_schemas(manifests: Iterable[Manifest]) -> list[Finding]:
    objects = [m for m in manifests if is_monitoring_object(m.body)]
    return schema_findings(objects, SCHEMA_PACKAGE, MODULES)


# --------------------------------------------------------------------------- selection


def _labels(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in as_dict(value).items()}


def _template_labels(m: Manifest) -> dict[str, str]:
    return _labels(as_dict(as_dict(m.pod_template()).get("metadata")).get("labels"))


def _container_ports(m: Manifest) -> list[dict[str, Any]]:
    spec = as_dict(as_dict(m.pod_template()).get("spec"))
    return [
        as_dict(p)
        for c in as_list(spec.get("containers"))
        for p in as_list(as_dict(c).get("ports"))
    ]


def _monitor_namespaces(monitor: Manifest) -> list[str] | None:
    """The namespaces a monitor selects in (None: every namespace)."""
    ns_selector = as_dict(as_dict(monitor.body.get("spec")).get("namespaceSelector"))
    if ns_selector.get("any") is True:
        return None
    names = [str(n) for n in as_list(ns_selector.get("matchNames"))]
    return names or [monitor.namespace]


@dataclass(frozen=True)
class ScrapedPort:
    """One endpoint of a monitor resolved to the pods and port Prometheus will dial."""

    workload: Manifest
    number: int | None
    name: str


def _in_namespaces(m: Manifest, namespaces: list[str] | None) -> bool:
    return namespaces is None or m.namespace in namespaces


def _service_targets(
    monitor: Manifest, port: str, manifests: Sequence[Manifest], workloads: Sequence[Manifest]
) -> tuple[list[Manifest], list[ScrapedPort]]:
    spec = as_dict(monitor.body.get("spec"))
    namespaces = _monitor_namespaces(monitor)
    services = [
        s
        for s in manifests
        if s.kind == "Service"
        and _in_namespaces(s, namespaces)
        and selects(as_dict(spec.get("selector")), _labels(s.metadata.get("labels")))
    ]
    scraped: list[ScrapedPort] = []
    for s in services:
        sspec = as_dict(s.body.get("spec"))
        for p in as_list(sspec.get("ports")):
            sp = as_dict(p)
            if sp.get("name") != port:
                continue
            target = sp.get("targetPort", sp.get("port"))
            pods = _labels(sspec.get("selector"))
            for w in workloads:
                if (
                    w.namespace != s.namespace
                    or not pods
                    or not selects({"matchLabels": pods}, _template_labels(w))
                ):
                    continue
                for cp in _container_ports(w):
                    if cp.get("name") == target or cp.get("containerPort") == target:
                        scraped.append(
                            ScrapedPort(w, int(cp["containerPort"]), str(cp.get("name", "")))
                        )
    return services, scraped


def _strimzi_cluster(
    monitor: Manifest, manifests: Sequence[Manifest], namespaces: list[str] | None
) -> Manifest | None:
    """The Strimzi Kafka cluster of the stack whose pods the PodMonitor selects."""
    selector = as_dict(as_dict(monitor.body.get("spec")).get("selector"))
    cluster = as_dict(selector.get("matchLabels")).get(STRIMZI_CLUSTER_LABEL)
    for m in manifests:
        if (
            m.kind == "Kafka"
            and str(m.body.get("apiVersion", "")).startswith("kafka.strimzi.io/")
            and m.name == cluster
            and _in_namespaces(m, namespaces)
            and as_dict(as_dict(as_dict(m.body.get("spec")).get("kafka")).get("metricsConfig"))
        ):
            return m
    return None


# Prometheus's pods, as the reachability evaluator sees a source.
PrometheusSource = Pods


def prometheus_source(plan: Plan) -> PrometheusSource | None:
    for r in plan.releases:
        doc = r.document()
        if doc["chart"] == CHART and isinstance(doc["namespace"], str) and doc["namespace"]:
            return Pods(doc["namespace"], PROMETHEUS_POD_LABELS)
    return None


def reachable(port: ScrapedPort, manifests: Sequence[Manifest], source: PrometheusSource) -> bool:
    """Whether the stack's NetworkPolicies let Prometheus reach this pod port."""
    return not _blocking(port, manifests, source)


def _blocking(
    port: ScrapedPort, manifests: Sequence[Manifest], source: PrometheusSource
) -> list[str]:
    destination = Pods(port.workload.namespace, _template_labels(port.workload))
    return blocking_namespaces(manifests, source, destination, Port(port.number, port.name))


def meshed_namespaces(plan: Plan) -> set[str]:
    """Namespaces of the stack whose pods Istio's injector gives a sidecar."""
    return {
        m.name
        for m in plan.manifests
        if m.kind == "Namespace"
        and _labels(m.metadata.get("labels")).get(INJECTION_LABEL) == "enabled"
    }


def _numbered_port(
    endpoint: Mapping[str, Any], selected: Sequence[Manifest], meshed: set[str]
) -> tuple[list[ScrapedPort], str | None]:
    """A PodMonitor endpoint by port number: a container port of the selected pods (the
    Prometheus operator keeps a `portNumber` target only where a container declares that
    port). On a meshed pod the merged metrics port must also be pointed at the app's own
    metrics by its prometheus.io/port annotation."""
    number = endpoint.get("portNumber")
    found: list[ScrapedPort] = []
    problems: list[str] = []
    for w in selected:
        ports = [cp for cp in _container_ports(w) if cp.get("containerPort") == number]
        declared = bool(ports)
        merged = number == MERGED_METRICS_PORT and w.namespace in meshed
        if merged:
            annotations = _labels(
                as_dict(as_dict(w.pod_template()).get("metadata")).get("annotations")
            )
            if "prometheus.io/port" not in annotations:
                problems.append(
                    f"{w.ref}: its pods name no prometheus.io/port annotation, so Istio's "
                    "merged metrics on port 15020 would hold Envoy's metrics only"
                )
        if declared:
            found.append(ScrapedPort(w, int(str(number)), str(ports[0].get("name") or number)))
        else:
            where = "meshed" if w.namespace in meshed else "not meshed"
            hint = (
                ": the injected proxy declares only 15090, so a container must declare 15020"
                if merged
                else ""
            )
            problems.append(
                f"endpoint portNumber {number} is not a container port of {w.ref} "
                f"(namespace {w.namespace} is {where}){hint}"
            )
    return found, "; ".join(problems) or None


def check_monitors(plan: Plan) -> list[Finding]:
    """Every monitor selects workloads of the stack on a port they have, and Prometheus
    may reach that port."""
    manifests = plan.manifests
    workloads = [m for m in manifests if m.pod_template() is not None]
    source = prometheus_source(plan)
    findings: list[Finding] = []

    def error(m: Manifest, check: str, message: str) -> None:
        findings.append(Finding("error", check, m.ref, message))

    for monitor in manifests:
        if not is_monitoring_object(monitor.body) or monitor.kind not in (
            "ServiceMonitor",
            "PodMonitor",
        ):
            continue
        spec = as_dict(monitor.body.get("spec"))
        namespaces = _monitor_namespaces(monitor)
        where = "every namespace" if namespaces is None else f"namespace(s) {namespaces}"
        selector = as_dict(spec.get("selector"))
        scraped: list[ScrapedPort] = []
        if monitor.kind == "ServiceMonitor":
            ports = [str(as_dict(e).get("port", "")) for e in as_list(spec.get("endpoints"))]
            any_service = False
            for port in ports:
                services, found = _service_targets(monitor, port, manifests, workloads)
                any_service = any_service or bool(services)
                if services and not found:
                    names = sorted(
                        str(as_dict(p).get("name"))
                        for s in services
                        for p in as_list(as_dict(s.body.get("spec")).get("ports"))
                    )
                    error(
                        monitor,
                        "monitor-selection",
                        f"endpoint port {port!r} is not a port of the Services it selects "
                        f"(ports: {', '.join(names)}) backed by a container port of their pods",
                    )
                scraped += found
            if not any_service:
                error(
                    monitor,
                    "monitor-selection",
                    f"selector {dict(selector)} matches no Service of the stack in {where}",
                )
        else:
            ports = [
                str(as_dict(e).get("port", "")) for e in as_list(spec.get("podMetricsEndpoints"))
            ]
            selected = [
                w
                for w in workloads
                if _in_namespaces(w, namespaces) and selects(selector, _template_labels(w))
            ]
            if not selected:
                if _strimzi_cluster(monitor, manifests, namespaces) is not None:
                    bad = [p for p in ports if p != STRIMZI_METRICS_PORT]
                    if bad:
                        error(
                            monitor,
                            "monitor-selection",
                            f"endpoint port(s) {bad}: Strimzi names its pods' metrics port "
                            f"{STRIMZI_METRICS_PORT!r}",
                        )
                    continue  # the operator creates these pods; they are not in the plan
                error(
                    monitor,
                    "monitor-selection",
                    f"selector {dict(selector)} matches no pod template of the stack in {where}",
                )
                continue
            for entry in as_list(spec.get("podMetricsEndpoints")):
                endpoint = as_dict(entry)
                if "portNumber" in endpoint:
                    found, problem = _numbered_port(endpoint, selected, meshed_namespaces(plan))
                    if problem:
                        error(monitor, "monitor-selection", problem)
                    scraped += found
                    continue
                port = str(endpoint.get("port", ""))
                found = [
                    ScrapedPort(w, int(cp["containerPort"]), port)
                    for w in selected
                    for cp in _container_ports(w)
                    if cp.get("name") == port
                ]
                if not found:
                    error(
                        monitor,
                        "monitor-selection",
                        f"endpoint port {port!r} is not a named container port of "
                        + ", ".join(w.ref for w in selected),
                    )
                scraped += found
        if source is None:
            continue
        for port in scraped:
            blocked = _blocking(port, manifests, source)
            if blocked:
                error(
                    monitor,
                    "monitor-reachable",
                    f"the NetworkPolicies of namespace {' and '.join(map(repr, blocked))} "
                    "do not let "
                    f"Prometheus (pods {dict(source.labels)} of namespace "
                    f"{source.namespace!r}) reach {port.workload.ref} on port "
                    f"{port.number} ({port.name})",
                )
    return findings
