"""Capacity and cost of a plan: GPUs, MIG slices and $/hour at minimum and maximum scale."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from components.instances import (
    EKS_CONTROL_PLANE_USD_PER_HOUR,
    INTERFACE_ENDPOINT_USD_PER_AZ_HOUR,
    NAT_GATEWAY_USD_PER_HOUR,
    PRICES_CHECKED_ON,
)
from stacks.plan.model import Plan, as_dict


@dataclass
class Scale:
    nodes: int = 0
    gpus: int = 0
    accelerators: Counter[str] = field(default_factory=Counter[str])
    usd_per_hour: float = 0.0


@dataclass
class Summary:
    stack: str
    resources_by_type: Counter[str]
    minimum: Scale
    maximum: Scale
    model_replicas: dict[str, tuple[int, int]]
    fixed_usd_per_hour: float
    warnings: list[str]

    def as_dict(self) -> dict[str, Any]:
        def scale(s: Scale) -> dict[str, Any]:
            return {
                "nodes": s.nodes,
                "gpus": s.gpus,
                "accelerators": dict(sorted(s.accelerators.items())),
                "usdPerHour": round(s.usd_per_hour, 2),
            }

        return {
            "stack": self.stack,
            "resourcesByType": dict(sorted(self.resources_by_type.items())),
            "min": scale(self.minimum),
            "max": scale(self.maximum),
            "modelReplicas": {
                k: {"min": v[0], "max": v[1]} for k, v in self.model_replicas.items()
            },
            "fixedUsdPerHour": round(self.fixed_usd_per_hour, 3),
            "pricesCheckedOn": PRICES_CHECKED_ON,
            "warnings": self.warnings,
        }

    def render(self) -> str:
        lines = [f"swarmstack plan: stack {self.stack} (offline plan, nothing was deployed)", ""]
        lines.append("Resources by type:")
        width = max((len(t) for t in self.resources_by_type), default=0)
        for type_, count in sorted(self.resources_by_type.items()):
            lines.append(f"  {type_:<{width}}  {count}")
        lines.append("")
        lines.append(f"{'':<22}{'min scale':>14}{'max scale':>14}")
        lines.append(f"{'nodes':<22}{self.minimum.nodes:>14}{self.maximum.nodes:>14}")
        lines.append(f"{'GPUs':<22}{self.minimum.gpus:>14}{self.maximum.gpus:>14}")
        for key in sorted(set(self.minimum.accelerators) | set(self.maximum.accelerators)):
            label = key.removeprefix("nvidia.com/")
            low, high = self.minimum.accelerators[key], self.maximum.accelerators[key]
            lines.append(f"  {label:<20}{low:>14}{high:>14}")
        low_usd, high_usd = self.minimum.usd_per_hour, self.maximum.usd_per_hour
        lines.append(f"{'cost $/hour':<22}{low_usd:>14.2f}{high_usd:>14.2f}")
        lines.append(
            f"  (on-demand us-east-1 list prices of {PRICES_CHECKED_ON}; includes "
            f"${self.fixed_usd_per_hour:.2f}/h for the EKS control plane, NAT gateways and VPC "
            "endpoints; data transfer and storage not included)"
        )
        if self.model_replicas:
            lines.append("")
            lines.append("Model replicas (min-max):")
            for name, (lo, hi) in sorted(self.model_replicas.items()):
                lines.append(f"  {name}: {lo}-{hi}")
        lines.append("")
        lines.append(f"Warnings ({len(self.warnings)}):" if self.warnings else "Warnings: none")
        lines += [f"  - {w}" for w in self.warnings]
        return "\n".join(lines) + "\n"


def summarize(plan: Plan, stack: str, warnings: list[str]) -> Summary:
    counts: Counter[str] = Counter(r.type for r in plan.capture.registrations)
    minimum, maximum = Scale(), Scale()
    for pool in plan.node_pools():
        for scale, nodes in ((minimum, pool.min_size), (maximum, pool.max_size)):
            scale.nodes += nodes
            scale.gpus += pool.gpus_per_node * nodes
            for resource, per_node in pool.offers_per_node.items():
                scale.accelerators[resource] += per_node * nodes
            scale.usd_per_hour += pool.usd_per_node_hour * nodes
    fixed = 0.0
    if counts["aws:eks/cluster:Cluster"]:
        fixed += EKS_CONTROL_PLANE_USD_PER_HOUR * counts["aws:eks/cluster:Cluster"]
    fixed += NAT_GATEWAY_USD_PER_HOUR * counts["aws:ec2/natGateway:NatGateway"]
    for r in plan.aws:
        if (
            r.type == "aws:ec2/vpcEndpoint:VpcEndpoint"
            and r.inputs.get("vpcEndpointType") == "Interface"
        ):
            fixed += INTERFACE_ENDPOINT_USD_PER_AZ_HOUR * len(r.inputs.get("subnetIds") or [])
    minimum.usd_per_hour += fixed
    maximum.usd_per_hour += fixed
    replicas: dict[str, tuple[int, int]] = {}
    for m in plan.manifests:
        annotations = as_dict(m.metadata.get("annotations"))
        if m.kind == "Deployment" and "swarmstack.io/replicas-max" in annotations:
            replicas[m.name] = (
                int(annotations["swarmstack.io/replicas-min"]),
                int(annotations["swarmstack.io/replicas-max"]),
            )
    return Summary(stack, counts, minimum, maximum, replicas, fixed, warnings)
