"""The global composition of a multi-cluster deployment (config `global`).

It reads every region through a `pulumi.StackReference` (stack names from
`global.regions[].stack`) and its `regional` output (stacks/regional.py), and declares
what spans the regions:

- VPC peering: every pair of regions' VPCs, routed both ways on their private route
  tables (components/traffic/region_peering.py), so a region's clients reach the other
  regions' gateways;
- Route 53: latency records and failover pairs to the regional gateways, health from
  each region's CloudWatch alarm (components/traffic/global_routing.py);
- Kafka: MSK Replicators, results every way, the primary's tasks to the secondaries
  (components/data/kafka_replication.py);
- images: ECR replication of the primary's repositories to the other regions.

There is no cross-cluster mesh: each region runs its own Istio, and traffic between regions
goes only through the global records to the other region's ingress gateway (README
"Multi-cluster")."""

from __future__ import annotations

from typing import Any, cast

import pulumi
import pulumi_aws as aws

from components.compute.nodes import aws_tags
from components.data.kafka_replication import KafkaReplication, KafkaReplicationArgs, RegionKafka
from components.traffic.global_routing import GlobalRouting, GlobalRoutingArgs, RegionGateway
from components.traffic.region_peering import RegionNetwork, RegionPeering, RegionPeeringArgs
from stacks.global_config import GlobalRegion, GlobalStackConfig
from stacks.regional import REGIONAL_OUTPUT


class RegionalOutputError(pulumi.RunError):
    """A referenced stack's `regional` output does not fit the global config."""


def _dig(value: Any, path: tuple[str, ...], stack: str) -> Any:
    node = value
    for key in path:
        if not isinstance(node, dict) or key not in node:
            shown = ".".join((REGIONAL_OUTPUT, *path))
            raise RegionalOutputError(
                f"stack {stack} has no output {shown}: is it a regional stack (config "
                "`regional`) planned or deployed with this version?"
            )
        node = cast(dict[str, Any], node)[key]
    return node


class RegionView:
    """One region as its stack's `regional` output describes it."""

    def __init__(self, spec: GlobalRegion, this_stack: str) -> None:
        self.spec = spec
        ref = pulumi.StackReference(f"region-{spec.name}", stack_name=spec.stack)
        regional: pulumi.Output[Any] = ref.require_output(REGIONAL_OUTPUT)

        def alias_matches(out: Any) -> Any:
            alias = _dig(out, ("alias",), spec.stack)
            if alias != spec.name:
                raise RegionalOutputError(
                    f"stack {this_stack}: global.regions[].name {spec.name!r} reads stack "
                    f"{spec.stack}, whose regional.alias is {alias!r}: set them equal"
                )
            return out

        self._out = regional.apply(alias_matches)

    def get(self, *path: str) -> pulumi.Output[Any]:
        stack = self.spec.stack
        return self._out.apply(lambda out: _dig(out, path, stack))


def build_global(config: GlobalStackConfig) -> None:
    spec = config.global_
    stack = pulumi.get_stack()
    tags = aws_tags(config.cost_labels.as_labels(), component="global")
    views = [RegionView(r, stack) for r in spec.regions]
    routing = GlobalRouting(
        "global-routing",
        GlobalRoutingArgs(
            zone_name=spec.routing.zone_name,
            record=spec.routing.record,
            insufficient_data_health_status=spec.routing.insufficient_data_health_status,
            regions=[
                RegionGateway(
                    name=v.spec.name,
                    role=v.spec.role,
                    region=v.get("region"),
                    vpc_id=v.get("vpcId"),
                    dns_name=v.get("gateway", "dnsName"),
                    zone_id=v.get("gateway", "zoneId"),
                    alarm_name=v.get("health", "alarmName"),
                    alarm_region=v.get("health", "alarmRegion"),
                )
                for v in views
            ],
            tags=tags,
        ),
    )
    peering = RegionPeering(
        "region-peering",
        RegionPeeringArgs(
            deployment=stack,
            regions=[
                RegionNetwork(
                    name=v.spec.name,
                    stack=v.spec.stack,
                    region=v.get("region"),
                    vpc_id=v.get("vpcId"),
                    vpc_cidr=v.get("vpcCidr"),
                    route_table_ids=v.get("privateRouteTableIds"),
                )
                for v in views
            ],
            tags=tags,
        ),
    )
    replication = KafkaReplication(
        "kafka-replication",
        KafkaReplicationArgs(
            deployment=stack,
            regions=[
                RegionKafka(
                    name=v.spec.name,
                    role=v.spec.role,
                    region=v.get("region"),
                    vpc_id=v.get("vpcId"),
                    vpc_cidr=v.get("vpcCidr"),
                    cluster_arn=v.get("kafka", "clusterArn"),
                    brokers_security_group_id=v.get("kafka", "brokersSecurityGroupId"),
                    subnet_ids=v.get("kafka", "subnetIds"),
                    port=v.get("kafka", "port"),
                    tasks_topics=v.get("kafka", "tasksTopics"),
                    results_topics=v.get("kafka", "resultsTopics"),
                    groups=v.get("kafka", "groups"),
                )
                for v in views
            ],
            compression=spec.kafka.compression,
            starting_position=spec.kafka.starting_position,
            tags=tags,
        ),
    )
    primary = next(v for v in views if v.spec.role == "primary")
    secondaries = [v for v in views if v.spec.role == "secondary"]
    account = aws.get_caller_identity_output().account_id
    # A registry has one replication configuration per region: this stack owns the
    # primary's. Every repository the primary's images come from is copied to the others.
    aws.ecr.ReplicationConfiguration(
        "image-replication",
        region=primary.get("region"),
        replication_configuration=aws.ecr.ReplicationConfigurationReplicationConfigurationArgs(
            rules=[
                aws.ecr.ReplicationConfigurationReplicationConfigurationRuleArgs(
                    destinations=[
                        aws.ecr.ReplicationConfigurationReplicationConfigurationRuleDestinationArgs(
                            region=v.get("region"), registry_id=account
                        )
                        for v in secondaries
                    ],
                    repository_filters=primary.get("imageRepositories").apply(
                        lambda repos: [
                            aws.ecr.ReplicationConfigurationReplicationConfigurationRuleRepositoryFilterArgs(
                                filter=str(r), filter_type="PREFIX_MATCH"
                            )
                            for r in cast(list[Any], repos)
                        ]
                    ),
                )
            ]
        ),
    )
    pulumi.export("phase", config.phase)
    pulumi.export("gateway", routing.gateway_name)
    pulumi.export("regionGateways", routing.region_names)
    pulumi.export("zoneId", routing.zone_id)
    pulumi.export("peeringConnections", peering.connections)
    pulumi.export("replicators", sorted(replication.replicators))
    pulumi.export("regions", {v.spec.name: v.get("region") for v in views})
