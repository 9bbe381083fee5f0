"""Traffic: who can reach model servers, whether it is encrypted, how routes treat generations.

Fields that are absent mean what Kubernetes and Istio do without them: a
Service's namespace is `default`; a NetworkPolicy without policyTypes governs
Ingress only (Egress too if it has egress rules); an Istio route without
`timeout` never times out; a route without `retries` is retried twice, on 503
among others; a PeerAuthentication mode UNSET inherits from the namespace or the
mesh, and with no policy at all Istio accepts plaintext (PERMISSIVE).

"Serving namespaces" are those that carry model or agent traffic: a Namespace
labelled `swarmstack.io/role` models or agents, or one in which a workload whose
pods are labelled `app.kubernetes.io/component` model-server or agent-worker
runs. Stack findings are reported against the declared Namespace, or else the
first workload found running there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    StackValidationArgs,
)

from policies.framework import (
    WORKLOAD_KINDS,
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
    string_map,
)

COMPONENT_LABEL = "app.kubernetes.io/component"
SERVING_COMPONENTS = ("model-server", "agent-worker")
ROLE_LABEL = "swarmstack.io/role"
SERVING_ROLES = ("models", "agents")
P99_ANNOTATION = "swarmstack.io/slo-e2e-p99-s"

SCHEME_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-scheme"
INTERNAL_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-internal"

ISTIO_TYPE_PREFIXES = ("kubernetes:networking.istio.io/", "kubernetes:security.istio.io/")
ISTIO_CHARTS = ("istiod", "base")

# What Istio does to a route whose `retries` is unset (its DefaultPolicy): two
# attempts, on these conditions, 503 being the retriable status code.
ISTIO_DEFAULT_RETRY_ON = (
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
)

EXEMPT_SERVICES: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string"},
    "default": [],
    "description": "Services allowed an internet-facing load balancer, as namespace/name.",
}

# --------------------------------------------------------------------------- helpers


def _workloads(
    resources: Sequence[PolicyResource], report: ReportViolation
) -> Iterator[tuple[PolicyResource, Workload]]:
    for r in resources:
        kind = k8s_kind(r.resource_type)
        if kind not in WORKLOAD_KINDS:
            continue
        pod = pod_spec(kind, r.props)
        if pod is not None:
            yield r, Workload(kind, r.props, pod, stack_reporter(r, report))


@dataclass(frozen=True)
class _ServingNamespace:
    name: str
    why: str
    report: Callable[[str], None]  # against the Namespace, else the workload that runs there


def _serving_namespaces(
    resources: Sequence[PolicyResource], report: ReportViolation
) -> dict[str, _ServingNamespace]:
    declared = {name_of(r): r for r in of_kind(resources, "Namespace")}
    found: dict[str, _ServingNamespace] = {}
    for name, r in declared.items():
        role = string_map(metadata_of(r.props).get("labels")).get(ROLE_LABEL)
        if role in SERVING_ROLES:
            found[name] = _ServingNamespace(
                name, f"labelled {ROLE_LABEL}={role}", stack_reporter(r, report)
            )
    for r, w in _workloads(resources, report):
        component = w.pod_labels.get(COMPONENT_LABEL)
        ns = namespace_of(r.props)
        if component not in SERVING_COMPONENTS or ns in found:
            continue
        why = f"runs {component} {w.kind} {w.config_name or r.name}"
        subject = declared.get(ns)
        found[ns] = _ServingNamespace(
            ns, why, stack_reporter(subject, report) if subject is not None else w.report
        )
    return found


def _ignore(_message: str, _urn: str | None = None) -> None:
    """A report for reading resources only."""


# --------------------------------------------------------------------------- load balancers


def _public_load_balancer(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if k8s_kind(args.resource_type) != "Service":
        return
    spec = as_dict(args.props.get("spec"))
    if spec.get("type") != "LoadBalancer":
        return
    meta = metadata_of(args.props)
    key = f"{namespace_of(args.props)}/{name_of(args)}"
    if key in as_list(args.get_config().get("exemptions")):
        return
    annotations = string_map(meta.get("annotations"))
    scheme = annotations.get(SCHEME_ANNOTATION)
    # The AWS Load Balancer Controller reads the scheme first; the legacy annotation
    # only counts without it. With neither, the load balancer is internet-facing.
    if scheme is not None:
        internal = scheme == "internal"
        how = f"{SCHEME_ANNOTATION}: {scheme}"
    else:
        internal = annotations.get(INTERNAL_ANNOTATION, "").lower() == "true"
        how = f"no {SCHEME_ANNOTATION} annotation"
    if not internal:
        reporter(args.resource_type, args.props, args.name, report)(
            f"is an internet-facing LoadBalancer ({how})"
        )


# --------------------------------------------------------------------------- network policy


def _denies(spec: Mapping[str, Any]) -> set[str]:
    """The directions a NetworkPolicy denies for every pod of its namespace."""
    selector = as_dict(spec.get("podSelector"))
    if as_dict(selector.get("matchLabels")) or as_list(selector.get("matchExpressions")):
        return set()
    types = [str(t) for t in as_list(spec.get("policyTypes"))]
    if not types:  # Kubernetes' default: Ingress, plus Egress when egress rules exist
        types = ["Ingress", *(["Egress"] if as_list(spec.get("egress")) else [])]
    return {t for t in types if not as_list(spec.get(t.lower()))}


def _default_deny(args: StackValidationArgs, report: ReportViolation) -> None:
    denied: dict[str, set[str]] = {}
    for r in of_kind(args.resources, "NetworkPolicy"):
        ns = namespace_of(r.props)
        denied.setdefault(ns, set()).update(_denies(as_dict(r.props.get("spec"))))
    for ns in _serving_namespaces(args.resources, report).values():
        missing = sorted({"Ingress", "Egress"} - denied.get(ns.name, set()))
        if missing:
            ns.report(
                f"namespace {ns.name} ({ns.why}) has no default-deny NetworkPolicy for "
                f"{' and '.join(missing)} (podSelector {{}}, policyTypes [Ingress, Egress], "
                "no rules)"
            )


# --------------------------------------------------------------------------- mesh


def _is_istio(r: PolicyResource) -> bool:
    if r.resource_type.startswith(ISTIO_TYPE_PREFIXES):
        return True
    if r.resource_type.startswith("kubernetes:helm.sh/"):
        chart = str(r.props.get("chart") or "")
        return chart.rstrip("/").rsplit("/", 1)[-1] in ISTIO_CHARTS
    return False


def _mesh(resources: Sequence[PolicyResource]) -> bool:
    return any(_is_istio(r) for r in resources)


def _mode(r: PolicyResource) -> str:
    return str(as_dict(as_dict(r.props.get("spec")).get("mtls")).get("mode") or "UNSET")


def _has_selector(r: PolicyResource) -> bool:
    return bool(as_dict(as_dict(as_dict(r.props.get("spec")).get("selector")).get("matchLabels")))


def _effective(policies: list[PolicyResource]) -> tuple[str, str] | None:
    """The mode a set of namespace-wide policies sets, with its source (None: inherited)."""
    decided = [(p, _mode(p)) for p in policies if _mode(p) != "UNSET"]
    if not decided:
        return None
    weak = [(p, m) for p, m in decided if m != "STRICT"]
    p, mode = (weak or decided)[0]
    return mode, describe(p.resource_type, p.props, p.name)


def _mtls_strict(args: StackValidationArgs, report: ReportViolation) -> None:
    if not _mesh(args.resources):
        return
    root = str(args.get_config().get("rootNamespace") or "istio-system")
    peer_auth = list(of_kind(args.resources, "PeerAuthentication", "kubernetes:security.istio.io/"))
    wide: dict[str, list[PolicyResource]] = {}
    for p in peer_auth:
        if not _has_selector(p):
            wide.setdefault(namespace_of(p.props), []).append(p)
    mesh = _effective(wide.get(root, [])) or ("PERMISSIVE", "Istio's default, no mesh-wide policy")
    serving = _serving_namespaces(args.resources, report)
    for ns in serving.values():
        mode, source = _effective(wide.get(ns.name, [])) or mesh
        if mode != "STRICT":
            ns.report(
                f"namespace {ns.name} ({ns.why}) accepts plaintext: mTLS mode {mode} "
                f"(from {source}); declare a PeerAuthentication with mtls.mode STRICT"
            )
    for p in peer_auth:
        if namespace_of(p.props) not in serving or not _has_selector(p):
            continue
        spec = as_dict(p.props.get("spec"))
        weak = [f"mode {_mode(p)}"] if _mode(p) in ("PERMISSIVE", "DISABLE") else []
        weak += [
            f"port {port}: {as_dict(v).get('mode')}"
            for port, v in as_dict(spec.get("portLevelMtls")).items()
            if as_dict(v).get("mode") in ("PERMISSIVE", "DISABLE")
        ]
        if weak:
            stack_reporter(p, report)(f"weakens mTLS for the pods it selects ({', '.join(weak)})")


def _mesh_present(args: StackValidationArgs, report: ReportViolation) -> None:
    # One finding for the whole stack, and only if it has model or agent traffic to carry.
    if _mesh(args.resources):
        return
    serving = sorted(_serving_namespaces(args.resources, _ignore))
    if serving:
        report(
            "the stack declares no Istio service mesh: model traffic is not encrypted in the "
            f"cluster (namespaces {', '.join(serving)})",
            None,
        )


# --------------------------------------------------------------------------- model routes

_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")


def parse_duration(value: object) -> float | None:
    """Seconds in an Istio (Go-style) duration: "90s", "1m30s", "500ms", "1.5s"; None if invalid."""
    text = str(value).strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return total if text else None


def _seconds(value: float) -> str:
    return f"{value:g}s"


@dataclass(frozen=True)
class _ModelRoute:
    report: Callable[[str], None]
    route: Mapping[str, Any]
    models: list[str]
    p99_s: float | None  # the slowest model's P99, None when no model declares one


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _model_services(resources: Sequence[PolicyResource]) -> dict[tuple[str, str], float | None]:
    """(namespace, name) of every Service selecting model-server pods -> the P99 in seconds."""
    servers: list[tuple[str, Workload]] = [
        (namespace_of(r.props), w) for r, w in _workloads(resources, _ignore) if w.is_model_server
    ]
    found: dict[tuple[str, str], float | None] = {}
    for svc in of_kind(resources, "Service"):
        ns = namespace_of(svc.props)
        # A Service selects by a plain label map, and an empty one selects no pods.
        match_labels = string_map(as_dict(svc.props.get("spec")).get("selector"))
        selector = {"matchLabels": match_labels}
        p99s: list[float] = []
        selected = False
        for server_ns, w in servers:
            if server_ns != ns or not match_labels or not selects(selector, w.pod_labels):
                continue
            selected = True
            p99 = _float(w.annotations.get(P99_ANNOTATION))
            if p99 is not None:
                p99s.append(p99)
        if selected:
            found[(ns, name_of(svc))] = max(p99s) if p99s else None
    return found


def _model_routes(args: StackValidationArgs, report: ReportViolation) -> Iterator[_ModelRoute]:
    services = _model_services(args.resources)
    for vs in of_kind(args.resources, "VirtualService", "kubernetes:networking.istio.io/"):
        vs_ns = namespace_of(vs.props)
        label = describe(vs.resource_type, vs.props, vs.name)
        for i, h in enumerate(as_list(as_dict(vs.props.get("spec")).get("http"))):
            route = as_dict(h)
            models: list[str] = []
            p99s: list[float] = []
            for d in as_list(route.get("route")):
                host = str(as_dict(as_dict(d).get("destination")).get("host") or "")
                parts = host.split(".")
                key = (parts[1] if len(parts) > 1 else vs_ns, parts[0])
                if key in services:
                    models.append(f"Service {key[0]}/{key[1]}")
                    p99 = services[key]
                    if p99 is not None:
                        p99s.append(p99)
            if not models:
                continue
            name = f"'{route['name']}'" if route.get("name") else f"#{i}"
            prefix = f"{label}: http route {name} to {', '.join(sorted(set(models)))}"
            yield _ModelRoute(
                lambda m, _p=prefix, _u=vs.urn: report(f"{_p} {m}", _u),
                route,
                models,
                max(p99s) if p99s else None,
            )


def _attempts(retries: Mapping[str, Any]) -> int:
    """retries.attempts; unset (or 0) in an explicit retries block disables retries."""
    try:
        return int(retries.get("attempts") or 0)
    except (TypeError, ValueError):
        return 0


def _route_timeout(args: StackValidationArgs, report: ReportViolation) -> None:
    for r in _model_routes(args, report):
        p99 = f"the model's P99 of {_seconds(r.p99_s)}" if r.p99_s is not None else "no P99"
        timeout = r.route.get("timeout")
        if timeout is None:
            r.report(f"sets no timeout (Istio never times it out; {p99} end to end)")
            continue
        seconds = parse_duration(timeout)
        if seconds is None:
            r.report(f"has timeout {timeout!r}, which is not a duration")
        elif seconds == 0:
            r.report(f"has timeout {timeout}, which disables the timeout ({p99} end to end)")
        elif r.p99_s is not None and seconds < r.p99_s:
            r.report(
                f"times out after {timeout} ({_seconds(seconds)}), below {p99} end to end: "
                "slow generations are cut off"
            )
        retries = as_dict(r.route.get("retries"))
        per_try = retries.get("perTryTimeout")
        if per_try is None or _attempts(retries) <= 0 or r.p99_s is None:
            continue
        per_try_s = parse_duration(per_try)
        if per_try_s is not None and 0 < per_try_s < r.p99_s:
            r.report(f"cuts every attempt after perTryTimeout {per_try}, below {p99} end to end")


def _route_retries(args: StackValidationArgs, report: ReportViolation) -> None:
    allowed = {str(c) for c in as_list(args.get_config().get("allowedRetryOn"))}
    for r in _model_routes(args, report):
        if "retries" not in r.route:
            r.report(
                "sets no retries: Istio retries twice by default, on 503 among others, so a "
                "generation the model already started can run again"
            )
            continue
        retries = as_dict(r.route.get("retries"))
        attempts = _attempts(retries)
        if attempts <= 0:
            continue
        retry_on = str(retries.get("retryOn") or "")
        conditions = [c.strip() for c in (retry_on or ISTIO_DEFAULT_RETRY_ON).split(",")]
        unsafe = [c for c in conditions if c and c not in allowed]
        if unsafe:
            source = f"retryOn {retry_on!r}" if retry_on else "retryOn unset (Istio's default)"
            r.report(
                f"retries {attempts} time(s) on {', '.join(unsafe)} ({source}): only "
                f"connection-level conditions ({', '.join(sorted(allowed))}) are safe before "
                "the model has the request"
            )


RULES: list[Rule] = [
    Rule(
        "no-public-load-balancer",
        "traffic",
        "Services of type LoadBalancer are internal (AWS load balancers are internet-facing "
        "unless annotated), outside exemptions.",
        "Annotate the Service service.beta.kubernetes.io/aws-load-balancer-scheme: internal, "
        "or exempt it as namespace/name.",
        check=_public_load_balancer,
        config={"exemptions": EXEMPT_SERVICES},
    ),
    Rule(
        "default-deny-network-policy",
        "traffic",
        "Every namespace running agents or model servers has a default-deny NetworkPolicy "
        "(empty podSelector, policyTypes Ingress and Egress, no rules).",
        "Declare a NetworkPolicy with podSelector {} and policyTypes [Ingress, Egress] in the "
        "namespace, then allow the traffic needed explicitly.",
        check_stack=_default_deny,
    ),
    Rule(
        "mesh-mtls-strict",
        "traffic",
        "When the stack runs Istio, agent and model namespaces accept only mTLS (a STRICT "
        "PeerAuthentication for the namespace or mesh-wide); Istio's default is PERMISSIVE.",
        "Declare a PeerAuthentication with mtls.mode STRICT and no selector in the namespace, "
        "or mesh-wide in the root namespace; do not weaken it per workload.",
        check_stack=_mtls_strict,
        config={
            "rootNamespace": {
                "type": "string",
                "default": "istio-system",
                "description": "Istio's root namespace, where a PeerAuthentication is mesh-wide.",
            }
        },
    ),
    Rule(
        "mesh-present",
        "traffic",
        "Model and agent traffic runs through a service mesh (Istio) that encrypts it.",
        "Install Istio (the istiod chart) and enforce STRICT mTLS in agent and model namespaces.",
        level="advisory",
        check_stack=_mesh_present,
    ),
    Rule(
        "model-route-timeout",
        "traffic",
        "Istio routes to model servers set a timeout (without one they never time out) at or "
        "above the model's P99 end-to-end time (swarmstack.io/slo-e2e-p99-s).",
        "Set the route's timeout to at least the model's slo-e2e-p99-s (and any perTryTimeout "
        "likewise).",
        check_stack=_route_timeout,
    ),
    Rule(
        "model-route-retries",
        "traffic",
        "Istio routes to model servers set retries explicitly and retry only on "
        "connection-level failures (Istio retries twice by default, on 503 included).",
        "Set retries.attempts: 0, or retryOn to connection-level conditions only "
        "(connect-failure,refused-stream,reset-before-request).",
        check_stack=_route_retries,
        config={
            "allowedRetryOn": {
                "type": "array",
                "items": {"type": "string"},
                "default": ["connect-failure", "refused-stream", "reset-before-request"],
                "description": "retryOn conditions that fire before a model receives the request.",
            }
        },
    ),
]
