"""The regions' VPCs routed to each other: one VPC peering connection for every pair of
regions, and in each region's private route tables a route to the other's VPC CIDR.

Clients of a region's gateway may sit in another region (the latency and failover records
of components/traffic/global_routing.py answer with the other region's internal NLB), and
each regional stack admits the other VPCs in `regional.clientCidrs`: these routes are what
carry that traffic. A peering connection is chosen over a Transit Gateway: a handful of
regions give a handful of pairs, peering has no hourly charge and no per-GB processing
charge (only the inter-region transfer both would pay), and it needs no attachment or
route-table propagation of its own (README "Multi-cluster").

Peered VPCs must not overlap: the global stack checks the regions' CIDRs before it plans
(`overlapping_regions`) and again on the outputs it reads (`check_disjoint`).
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import pulumi
import pulumi_aws as aws

TYPE_TOKEN = "swarmstack:traffic:RegionPeering"


class OverlappingRegionsError(pulumi.RunError):
    """Two regions' VPCs overlap: they cannot be peered."""


@dataclass(frozen=True)
class RegionNetwork:
    """One region's VPC as the regional stack exports it (`regional.vpcId`, `vpcCidr`,
    `privateRouteTableIds`)."""

    name: str
    stack: str
    region: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    vpc_cidr: pulumi.Input[str]
    route_table_ids: pulumi.Input[Sequence[str]]


def overlapping_regions(cidrs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Every pair of (label, CIDR) whose CIDRs overlap, in input order, as label pairs."""
    networks = [(label, ipaddress.ip_network(cidr, strict=False)) for label, cidr in cidrs]
    return [
        (a, b)
        for (a, net_a), (b, net_b) in itertools.combinations(networks, 2)
        if net_a.overlaps(net_b)
    ]


def peering_pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """(requester, accepter) of every pair of regions, in config order."""
    return list(itertools.combinations(names, 2))


def check_disjoint(this_stack: str, regions: Sequence[RegionNetwork]) -> pulumi.Output[list[str]]:
    """The regions' CIDRs, once they are known not to overlap (raises naming both stacks)."""
    stacks = [r.stack for r in regions]

    def check(cidrs: list[Any]) -> list[str]:
        labelled = [
            (f"stack {s} (regional.vpcCidr {c})", str(c))
            for s, c in zip(stacks, cidrs, strict=True)
        ]
        clashes = overlapping_regions(labelled)
        if clashes:
            raise OverlappingRegionsError(
                f"stack {this_stack}: "
                + "; ".join(f"{a} overlaps {b}" for a, b in clashes)
                + ": peered VPCs need disjoint CIDRs (set cluster.vpcCidr apart)"
            )
        return [str(c) for c in cidrs]

    return pulumi.Output.all(*[r.vpc_cidr for r in regions]).apply(check)


@dataclass(frozen=True)
class RegionPeeringArgs:
    deployment: str
    regions: Sequence[RegionNetwork]
    tags: dict[str, str]


class RegionPeering(pulumi.ComponentResource):
    """A peering connection per pair of regions (requested from the first, accepted in the
    second) and the routes both ways on every private route table."""

    connections: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: RegionPeeringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cidrs = check_disjoint(args.deployment, args.regions)
        by_name = {r.name: r for r in args.regions}
        index = {r.name: i for i, r in enumerate(args.regions)}
        self.connections = {}
        for left_name, right_name in peering_pairs([r.name for r in args.regions]):
            left, right = by_name[left_name], by_name[right_name]
            pair = f"{left.name}-{right.name}"
            tags = {**args.tags, "Name": f"{args.deployment}-{pair}"}
            connection = aws.ec2.VpcPeeringConnection(
                f"{name}-{pair}",
                region=left.region,
                vpc_id=left.vpc_id,
                peer_vpc_id=right.vpc_id,
                peer_region=right.region,
                # Across regions the requester cannot accept: the accepter below does.
                auto_accept=False,
                tags=tags,
                opts=child,
            )
            accepter = aws.ec2.VpcPeeringConnectionAccepter(
                f"{name}-{pair}-accept",
                region=right.region,
                vpc_peering_connection_id=connection.id,
                auto_accept=True,
                tags=tags,
                opts=child,
            )
            self.connections[pair] = connection.id
            for side, other in ((left, right), (right, left)):
                destination = cidrs.apply(lambda c, i=index[other.name]: c[i])
                tables = pulumi.Output.from_input(side.route_table_ids)
                _routes(
                    f"{name}-{side.name}-to-{other.name}",
                    side,
                    tables,
                    destination,
                    via=connection.id,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[accepter]),
                )
        self.register_outputs({"connections": self.connections})


def _routes(
    name: str,
    side: RegionNetwork,
    tables: pulumi.Output[Sequence[str]],
    destination: pulumi.Output[str],
    *,
    via: pulumi.Output[str],
    opts: pulumi.ResourceOptions,
) -> None:
    """One route per private route table of `side`. The tables are a regional output, so
    their number is known only once it resolves: the routes are declared inside the apply.
    A StackReference's outputs are known in a preview too (read from the regional stack's
    state), and the offline plan feeds the regional plans' outputs, so both list them."""

    def declare(ids: Sequence[Any]) -> int:
        for i, table in enumerate(cast(Sequence[str], ids)):
            aws.ec2.Route(
                f"{name}-{i}",
                region=side.region,
                route_table_id=table,
                destination_cidr_block=destination,
                vpc_peering_connection_id=via,
                opts=opts,
            )
        return len(ids)

    tables.apply(declare)
