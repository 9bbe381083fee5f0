"""What every store declared here runs as: a StatefulSet behind a headless Service (stable
peer names) and a client Service, with a PodDisruptionBudget that allows one eviction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

Meta = Callable[[str], k8s.meta.v1.ObjectMetaArgs]


def _wire(spec: dict[str, Any]) -> Any:
    """A spec in Kubernetes wire form (camelCase keys), passed untyped as the SDK sends it."""
    return spec


def declare_stateful_store(
    name: str,
    *,
    resource: str,
    meta: Meta,
    selector: dict[str, str],
    ports: Sequence[dict[str, Any]],
    peer_ports: Sequence[dict[str, Any]] = (),
    statefulset_spec: dict[str, Any],
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
) -> k8s.apps.v1.StatefulSet:
    """Headless Service `<resource>-headless` (client and peer ports), client Service
    `<resource>` (client ports), the StatefulSet and its PDB, as children of `parent`.

    The budget allows one disruption: `maxUnavailable: 0` would block every node drain.
    """
    child = pulumi.ResourceOptions(parent=parent)
    k8s.core.v1.Service(
        f"{name}-headless",
        metadata=meta(f"{resource}-headless"),
        spec=_wire(
            {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,
                "selector": selector,
                "ports": [*ports, *peer_ports],
            }
        ),
        opts=child,
    )
    k8s.core.v1.Service(
        f"{name}-service",
        metadata=meta(resource),
        spec=_wire({"type": "ClusterIP", "selector": selector, "ports": list(ports)}),
        opts=child,
    )
    statefulset = k8s.apps.v1.StatefulSet(
        f"{name}-statefulset",
        metadata=meta(resource),
        spec=_wire(statefulset_spec),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
    )
    k8s.policy.v1.PodDisruptionBudget(
        f"{name}-pdb",
        metadata=meta(resource),
        spec=_wire({"maxUnavailable": 1, "selector": {"matchLabels": selector}}),
        opts=child,
    )
    return statefulset
