"""Whether the stack's NetworkPolicies let one set of pods reach another on a port.

One evaluator for every plan check that asks it (a monitor's scrape target, a
ScaledObject's source). A connection passes two gates, as the CNI enforces them:

- egress at the source: if any NetworkPolicy of the source's namespace with the Egress
  type selects the source pods, one of their egress rules must admit the destination;
- ingress at the destination: if any NetworkPolicy of the destination's namespace with
  the Ingress type selects the destination pods, one of their ingress rules must admit
  the source.

A peer's `namespaceSelector` is matched against the namespace's labels as the plan
declares them, plus `kubernetes.io/metadata.name` (the API server sets it on every
namespace). An `ipBlock` peer never admits a pod of the cluster (pod addresses are not
known in a plan); for a destination outside the cluster (a managed service's host
name) an `ipBlock` peer on the right port is taken to be the opening meant for it, as a
plan cannot resolve the host.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from policies.framework import selects
from stacks.plan.model import Manifest, as_dict, as_list

Direction = Literal["Ingress", "Egress"]
NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Pods:
    """Pods of one namespace by their labels; `namespace` None: outside the cluster."""

    namespace: str | None
    labels: Mapping[str, str] = field(default_factory=dict[str, str])


@dataclass(frozen=True)
class Port:
    """A TCP port of the destination pods, by number and (when known) container port name."""

    number: int | None
    name: str = ""

    def describe(self) -> str:
        return f"{self.number} ({self.name})" if self.name else str(self.number)


def _labels(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in as_dict(value).items()}


def namespace_labels(manifests: Sequence[Manifest], namespace: str) -> dict[str, str]:
    """A namespace's labels as the plan declares them, with the name label the API sets."""
    for m in manifests:
        if m.kind == "Namespace" and m.name == namespace:
            return {**_labels(m.metadata.get("labels")), NAME_LABEL: namespace}
    return {NAME_LABEL: namespace}


def _peer_admits(
    peer: Mapping[str, Any], other: Pods, own_namespace: str, manifests: Sequence[Manifest]
) -> bool:
    if "ipBlock" in peer:
        return other.namespace is None
    if other.namespace is None:
        return False  # a pod or namespace selector never names an address outside
    ns_selector = peer.get("namespaceSelector")
    if ns_selector is None:
        namespace_ok = own_namespace == other.namespace
    else:
        namespace_ok = selects(as_dict(ns_selector), namespace_labels(manifests, other.namespace))
    pod_selector = peer.get("podSelector")
    pods_ok = pod_selector is None or selects(as_dict(pod_selector), other.labels)
    return namespace_ok and pods_ok


def _port_admits(rule: Mapping[str, Any], port: Port) -> bool:
    ports = as_list(rule.get("ports"))
    if not ports:
        return True
    for p in ports:
        entry = as_dict(p)
        if str(entry.get("protocol", "TCP")) != "TCP":
            continue
        value = entry.get("port")
        if value is None or (port.name and value == port.name):
            return True
        if port.number is not None and value == port.number:
            return True
        end = entry.get("endPort")
        if (
            isinstance(value, int)
            and isinstance(end, int)
            and port.number is not None
            and value <= port.number <= end
        ):
            return True
    return False


def _has_type(policy: Manifest, direction: Direction) -> bool:
    spec = as_dict(policy.body.get("spec"))
    types = [str(t) for t in as_list(spec.get("policyTypes"))]
    if not types:  # unset: Ingress, plus Egress when the policy has egress rules
        types = ["Ingress", *(["Egress"] if "egress" in spec else [])]
    return direction in types


def selecting_policies(
    manifests: Sequence[Manifest], pods: Pods, direction: Direction
) -> list[Manifest]:
    """The NetworkPolicies that isolate `pods` in `direction`."""
    return [
        p
        for p in manifests
        if p.kind == "NetworkPolicy"
        and p.namespace == pods.namespace
        and _has_type(p, direction)
        and selects(as_dict(as_dict(p.body.get("spec")).get("podSelector")), pods.labels)
    ]


def admits(
    manifests: Sequence[Manifest], pods: Pods, direction: Direction, other: Pods, port: Port
) -> bool:
    """Whether `pods`' own NetworkPolicies let traffic in `direction` to or from `other`
    on `port` (always, when no policy isolates them that way)."""
    if pods.namespace is None:
        return True  # outside the cluster: no NetworkPolicy applies
    selecting = selecting_policies(manifests, pods, direction)
    if not selecting:
        return True
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in selecting:
        for rule in as_list(as_dict(policy.body.get("spec")).get(rules_key)):
            entry = as_dict(rule)
            peers = as_list(entry.get(peers_key))
            if (
                not peers
                or any(_peer_admits(as_dict(p), other, pods.namespace, manifests) for p in peers)
            ) and _port_admits(entry, port):
                return True
    return False


def blocking_namespaces(
    manifests: Sequence[Manifest], source: Pods, destination: Pods, port: Port
) -> list[str]:
    """The namespaces whose NetworkPolicies stop `source` reaching `destination` on
    `port`: the source's (egress), the destination's (ingress), or both. Empty: reachable."""
    blocked: list[str] = []
    if source.namespace is not None and not admits(manifests, source, "Egress", destination, port):
        blocked.append(source.namespace)
    if (
        destination.namespace is not None
        and not admits(manifests, destination, "Ingress", source, port)
        and destination.namespace not in blocked
    ):
        blocked.append(destination.namespace)
    return blocked
