"""Route 53 in front of the regional gateways of a multi-cluster deployment.

The gateways are private (internal NLBs), which Route 53's health checkers cannot reach,
so each region's health check is a CLOUDWATCH_METRIC check on the alarm the regional stack
declares over its gateway targets (components/traffic/regional_edge.py). Records live in a
private hosted zone associated with every region's VPC:

- `<record>.<zone>`: one latency record per region (alias to its gateway, with its health
  check): clients get the closest healthy region;
- `<region>.<record>.<zone>`: a failover pair per region, PRIMARY its own gateway,
  SECONDARY its partner's (`failover_partner`): clients pinned to a region follow it when
  it fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

TYPE_TOKEN = "swarmstack:traffic:GlobalRouting"


@dataclass(frozen=True)
class RegionGateway:
    """One region's gateway as the regional stack exports it."""

    name: str
    role: str  # primary | secondary
    region: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    dns_name: pulumi.Input[str]
    zone_id: pulumi.Input[str]
    alarm_name: pulumi.Input[str]
    alarm_region: pulumi.Input[str]


def failover_partner(name: str, regions: Sequence[tuple[str, str]]) -> str:
    """The region a region's failover record falls back to: the primary's is the first
    secondary, every secondary's is the primary. `regions` is (name, role) in config order."""
    primary = next(n for n, role in regions if role == "primary")
    if name != primary:
        return primary
    return next(n for n, role in regions if role == "secondary")


@dataclass(frozen=True)
class GlobalRoutingArgs:
    zone_name: str
    record: str
    insufficient_data_health_status: str
    regions: Sequence[RegionGateway]
    tags: dict[str, str]


class GlobalRouting(pulumi.ComponentResource):
    zone_id: pulumi.Output[str]
    gateway_name: str
    region_names: dict[str, str]

    def __init__(
        self, name: str, args: GlobalRoutingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        zone = aws.route53.Zone(
            f"{name}-zone",
            name=args.zone_name,
            comment="swarmstack: the regional model gateways (private, every region's VPC)",
            vpcs=[
                aws.route53.ZoneVpcArgs(vpc_id=r.vpc_id, vpc_region=r.region) for r in args.regions
            ],
            tags=args.tags,
            opts=child,
        )
        checks: dict[str, aws.route53.HealthCheck] = {}
        for region in args.regions:
            checks[region.name] = aws.route53.HealthCheck(
                f"{name}-{region.name}",
                type="CLOUDWATCH_METRIC",
                cloudwatch_alarm_name=region.alarm_name,
                cloudwatch_alarm_region=region.alarm_region,
                insufficient_data_health_status=args.insufficient_data_health_status,
                tags={**args.tags, "Name": f"gateway-{region.name}"},
                opts=child,
            )
        by_name = {r.name: r for r in args.regions}
        gateway_name = f"{args.record}.{args.zone_name}"
        for region in args.regions:
            aws.route53.Record(
                f"{name}-latency-{region.name}",
                zone_id=zone.zone_id,
                name=gateway_name,
                type="A",
                set_identifier=region.name,
                latency_routing_policies=[
                    aws.route53.RecordLatencyRoutingPolicyArgs(region=region.region)
                ],
                health_check_id=checks[region.name].id,
                aliases=[
                    aws.route53.RecordAliasArgs(
                        name=region.dns_name, zone_id=region.zone_id, evaluate_target_health=True
                    )
                ],
                opts=child,
            )
        pairs = [(r.name, r.role) for r in args.regions]
        region_names: dict[str, str] = {}
        for region in args.regions:
            record_name = f"{region.name}.{gateway_name}"
            region_names[region.name] = record_name
            partner = by_name[failover_partner(region.name, pairs)]
            for kind, target in (("PRIMARY", region), ("SECONDARY", partner)):
                aws.route53.Record(
                    f"{name}-{region.name}-{kind.lower()}",
                    zone_id=zone.zone_id,
                    name=record_name,
                    type="A",
                    set_identifier=f"{region.name}-{kind.lower()}",
                    failover_routing_policies=[
                        aws.route53.RecordFailoverRoutingPolicyArgs(type=kind)
                    ],
                    health_check_id=checks[target.name].id,
                    aliases=[
                        aws.route53.RecordAliasArgs(
                            name=target.dns_name,
                            zone_id=target.zone_id,
                            evaluate_target_health=True,
                        )
                    ],
                    opts=child,
                )
        self.zone_id = zone.zone_id
        self.gateway_name = gateway_name
        self.region_names = region_names
        self.register_outputs(
            {"zoneId": zone.zone_id, "gateway": gateway_name, "regions": region_names}
        )
