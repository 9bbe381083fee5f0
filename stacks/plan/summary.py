"""Capacity and cost of a plan: GPUs, MIG slices and $/hour at minimum and maximum scale."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from components.compute.instances import (
    EKS_CONTROL_PLANE_USD_PER_HOUR,
    INTERFACE_ENDPOINT_USD_PER_AZ_HOUR,
    NAT_GATEWAY_USD_PER_HOUR,
    PRICES_CHECKED_ON,
)
from components.compute.nodes import POOL_LABEL
from components.data.elasticache_pricing import PRICES_AS_OF as ELASTICACHE_PRICES_AS_OF
from components.data.elasticache_pricing import REDIS_USD_PER_NODE_HOUR, elasticache_hourly_usd
from components.data.msk_pricing import HOURS_PER_MONTH, MSK_BROKER_TYPES, msk_monthly_usd
from components.data.msk_pricing import PRICES_AS_OF as MSK_PRICES_AS_OF
from components.serving.model_serving import TRACK_LABEL
from stacks.plan.model import Plan, as_dict, as_list
from stacks.plan.recorder import Registration


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
    # Managed data stores (MSK, ElastiCache): resource name -> (what, $/hour); in fixed.
    data_stores: dict[str, tuple[str, float]] = field(default_factory=dict[str, tuple[str, float]])
    # GPU pools at max scale: what the model servers planned onto each need, and offer.
    pool_slices: list[PoolSlices] = field(default_factory=list["PoolSlices"])

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
            "managedDataStores": {
                name: {"what": what, "usdPerHour": round(usd, 3)}
                for name, (what, usd) in sorted(self.data_stores.items())
            },
            "poolSlicesAtMax": [
                {
                    "pool": row.pool,
                    "resource": row.resource,
                    "needed": row.needed,
                    "offered": row.offered,
                    "nodesNeeded": row.nodes_needed,
                    "maxSize": row.max_size,
                }
                for row in self.pool_slices
            ],
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
        if self.data_stores:
            lines.append(
                f"  managed data stores, included above (MSK prices of {MSK_PRICES_AS_OF}, "
                f"ElastiCache of {ELASTICACHE_PRICES_AS_OF}, both estimates):"
            )
            for name, (what, usd) in sorted(self.data_stores.items()):
                lines.append(f"    {name}: {what}: ${usd:.3f}/h")
        if self.pool_slices:
            lines.append("")
            lines.append(
                "GPU slices at max scale, by planned pool (model replicas at replicas.max):"
            )
            for row in self.pool_slices:
                label = row.resource.removeprefix("nvidia.com/")
                lines.append(
                    f"  {row.pool}: {label} {row.needed} needed / {row.offered} offered; "
                    f"{row.nodes_needed} of maxSize {row.max_size} node(s) hold them"
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
    stores = {r.name: cost for r in plan.aws if (cost := _data_store_cost(r)) is not None}
    fixed += sum(usd for _, usd in stores.values())
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
    return Summary(
        stack, counts, minimum, maximum, replicas, fixed, warnings, stores, pool_slices(plan)
    )


@dataclass(frozen=True)
class PoolSlices:
    pool: str
    resource: str
    needed: int
    offered: int
    nodes_needed: int
    max_size: int


def _planned_pool(pod: dict[str, Any]) -> str | None:
    """The pool a pod is planned onto: its nodeSelector's, or its preferred affinity's."""
    selected = as_dict(pod.get("nodeSelector")).get(POOL_LABEL)
    if selected is not None:
        return str(selected)
    affinity = as_dict(as_dict(pod.get("affinity")).get("nodeAffinity"))
    for term in as_list(affinity.get("preferredDuringSchedulingIgnoredDuringExecution")):
        for e in as_list(as_dict(as_dict(term).get("preference")).get("matchExpressions")):
            expression = as_dict(e)
            if expression.get("key") == POOL_LABEL and expression.get("operator") == "In":
                values = as_list(expression.get("values"))
                if values:
                    return str(values[0])
    return None


def pool_slices(plan: Plan) -> list[PoolSlices]:
    """Per GPU pool and accelerator: the slices the model Deployments planned onto it take
    at their maximum replicas (a canary at its replicas), against what `maxSize` nodes
    offer, and the fewest nodes that hold them."""
    needed: Counter[tuple[str, str]] = Counter()
    for m in plan.manifests:
        template = m.pod_template()
        if m.kind != "Deployment" or template is None:
            continue
        pod = as_dict(template.get("spec"))
        pool = _planned_pool(pod)
        if pool is None:
            continue
        labels = as_dict(as_dict(template.get("metadata")).get("labels"))
        annotations = as_dict(m.metadata.get("annotations"))
        replicas = int(as_dict(m.body.get("spec")).get("replicas") or 0)
        if labels.get(TRACK_LABEL) != "canary" and "swarmstack.io/replicas-max" in annotations:
            replicas = int(annotations["swarmstack.io/replicas-max"])
        requests: Counter[str] = Counter()
        for c in as_list(pod.get("containers")):
            limits = as_dict(as_dict(as_dict(c).get("resources")).get("limits"))
            for key, value in limits.items():
                if str(key).startswith("nvidia.com/"):
                    requests[str(key)] += int(value)
        for resource, count in requests.items():
            needed[(pool, resource)] += count * replicas
    rows: list[PoolSlices] = []
    for pool in plan.node_pools():
        if not pool.gpus_per_node:
            continue
        offers = {r: n for r, n in pool.offers_per_node.items() if n > 0}
        nodes = max((-(-needed[(pool.name, r)] // n) for r, n in offers.items()), default=0)
        for resource, per_node in sorted(offers.items()):
            rows.append(
                PoolSlices(
                    pool.name,
                    resource,
                    needed[(pool.name, resource)],
                    per_node * pool.max_size,
                    nodes,
                    pool.max_size,
                )
            )
    return rows


def _data_store_cost(r: Registration) -> tuple[str, float] | None:
    """What a managed data store costs per hour, from its planned inputs."""
    if r.type == "aws:msk/cluster:Cluster":
        info = as_dict(r.inputs.get("brokerNodeGroupInfo"))
        broker_type = str(info.get("instanceType", ""))
        brokers = int(r.inputs.get("numberOfBrokerNodes") or 0)
        ebs = as_dict(as_dict(info.get("storageInfo")).get("ebsStorageInfo"))
        storage = int(ebs.get("volumeSize") or 0)
        if broker_type not in MSK_BROKER_TYPES:
            return None
        monthly = msk_monthly_usd(broker_type, brokers, storage)
        return (
            f"MSK {brokers} x {broker_type}, {storage} GiB each (${monthly:,.2f}/month)",
            monthly / HOURS_PER_MONTH,
        )
    if r.type == "aws:elasticache/replicationGroup:ReplicationGroup":
        node_type = str(r.inputs.get("nodeType", ""))
        nodes = int(r.inputs.get("numCacheClusters") or 0)
        engine = str(r.inputs.get("engine", ""))
        if node_type not in REDIS_USD_PER_NODE_HOUR:
            return None
        return (
            f"ElastiCache {engine} {nodes} x {node_type}",
            elasticache_hourly_usd(node_type, nodes, engine),
        )
    return None
