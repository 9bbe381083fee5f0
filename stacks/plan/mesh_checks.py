"""Plan checks of the mesh objects: their CRD schemas, and that every route leads to a
Service of the stack.

Schemas: VirtualServices, DestinationRules, ServiceEntries, Sidecars, PeerAuthentications
and AuthorizationPolicies are validated by the validators that the npm package
`@kubernetes-models/istio` generates from Istio's CRDs (`make setup` installs it; Node runs
`schema_validate.mjs`). The CRDs prune unknown fields rather than refuse them, so the schemas
catch types, enumerations and required fields, not misspelt keys; the policy pack reads the
timeouts and retries themselves.

Hosts: a VirtualService or DestinationRule whose host is no Service of the stack routes
nothing (Istio accepts it silently), so every host, written short (`name`, resolved in the
object's namespace), as `name.namespace`, `name.namespace.svc` or in full
(`name.namespace.svc.cluster.local`), must name a Service the plan declares, or a host of a
ServiceEntry of the stack. A VirtualService bound only to Gateways (`gateways` without
`mesh`) matches its `hosts` against the requests' Host header at the gateway, not against
Services: only its route destinations are held to the stack's Services.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from stacks.plan.model import Finding, Manifest, as_dict, as_list
from stacks.plan.monitoring_checks import ROOT, run_validator, schema_findings

SCHEMA_PACKAGE = "@kubernetes-models/istio"
MODULES = {
    "networking.istio.io/v1": f"{SCHEMA_PACKAGE}/networking.istio.io/v1",
    "security.istio.io/v1": f"{SCHEMA_PACKAGE}/security.istio.io/v1",
}
ISTIO_API_VERSIONS = frozenset(MODULES)
ISTIO_GROUPS = frozenset(v.partition("/")[0] for v in ISTIO_API_VERSIONS)
CLUSTER_DOMAIN = "cluster.local"


def is_istio_object(body: Mapping[str, Any]) -> bool:
    return str(body.get("apiVersion", "")).rpartition("/")[0] in ISTIO_GROUPS


def istio_problems(bodies: Sequence[Mapping[str, Any]], root: Path = ROOT) -> list[list[str]]:
    """For each body, what the Istio CRD schemas refuse in it."""
    return run_validator(SCHEMA_PACKAGE, MODULES, bodies, root)


def check_istio_schemas(manifests: Iterable[Manifest]) -> list[Finding]:
    objects = [m for m in manifests if is_istio_object(m.body)]
    if not objects:
        return []
    unknown = [m for m in objects if m.body.get("apiVersion") not in ISTIO_API_VERSIONS]
    findings = [
        Finding(
            "error",
            "custom-resource",
            m.ref,
            f"apiVersion {m.body.get('apiVersion')}: declare Istio objects at "
            f"{' or '.join(sorted(ISTIO_API_VERSIONS))}",
        )
        for m in unknown
    ]
    known = [m for m in objects if m not in unknown]
    return findings + schema_findings(known, SCHEMA_PACKAGE, MODULES)


def canonical_host(host: str, namespace: str) -> str:
    """A Kubernetes service host in full: `name` and `name.ns[.svc]` completed."""
    parts = host.split(".")
    if len(parts) == 1:
        return f"{host}.{namespace}.svc.{CLUSTER_DOMAIN}"
    if len(parts) == 2:
        return f"{host}.svc.{CLUSTER_DOMAIN}"
    if len(parts) == 3 and parts[2] == "svc":
        return f"{host}.{CLUSTER_DOMAIN}"
    return host


def _hosts(m: Manifest) -> list[str]:
    spec = as_dict(m.body.get("spec"))
    if m.kind == "DestinationRule":
        return [str(spec.get("host") or "")]
    gateways = [str(g) for g in as_list(spec.get("gateways"))]
    at_gateways_only = bool(gateways) and "mesh" not in gateways
    hosts = [] if at_gateways_only else [str(h) for h in as_list(spec.get("hosts"))]
    for route in as_list(spec.get("http")):
        for d in as_list(as_dict(route).get("route")):
            host = as_dict(as_dict(d).get("destination")).get("host")
            if host:
                hosts.append(str(host))
    return hosts


def check_mesh_hosts(manifests: Sequence[Manifest]) -> list[Finding]:
    """Every VirtualService and DestinationRule host (and route destination) is a Service of
    the stack or a ServiceEntry host."""
    services = {
        f"{m.name}.{m.namespace}.svc.{CLUSTER_DOMAIN}"
        for m in manifests
        if m.kind == "Service" and m.namespace
    }
    entries = {
        str(h)
        for m in manifests
        if m.kind == "ServiceEntry" and is_istio_object(m.body)
        for h in as_list(as_dict(m.body.get("spec")).get("hosts"))
    }
    findings: list[Finding] = []
    for m in manifests:
        if m.kind not in ("VirtualService", "DestinationRule") or not is_istio_object(m.body):
            continue
        for host in _hosts(m):
            full = canonical_host(host, m.namespace)
            if full in services or host in entries:
                continue
            findings.append(
                Finding(
                    "error",
                    "mesh-host",
                    m.ref,
                    f"host {host!r} ({full}) is no Service of the stack nor a ServiceEntry "
                    "host: the mesh would route nothing with it",
                )
            )
    return findings
