"""One region of a multi-cluster deployment: the private edge in front of its gateway and
the alarm that says whether it is healthy.

The internal NLB forwards TCP to an `instance` target group on the ingress gateway's
NodePort (components/traffic/regional_ingress.py); the system node group's Auto Scaling
group is attached to the target group (`aws.autoscaling.Attachment`), so EC2 Auto Scaling
registers and deregisters the nodes as they come and go. The health check goes through the
same port and the ingress gateway to the model gateway's liveness path: a target is healthy
only when the whole path to a model gateway pod answers.

The regional gateway is private (an internal Network Load Balancer in the cluster's
private subnets), so Route 53 cannot probe it: the global stack's health check reads a
CloudWatch alarm instead (type CLOUDWATCH_METRIC), the alarm declared here on the target
group's `HealthyHostCount`. What the global stack reads from this region is the stack
output `regional` (`regional_output`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
from pydantic import Field

from components.compute.nodes import aws_tags
from components.specs import CostLabels, ImageRef, Spec
from components.traffic.istio_chart import CHART_VERSION

TYPE_TOKEN = "swarmstack:traffic:RegionalEdge"
# The NLB's health check path on the gateway (LiteLLM's liveness endpoint, no key needed).
HEALTH_PATH = "/health/liveliness"


class RegionalSpec(Spec):
    """This stack is one region of a multi-cluster deployment (README "Multi-cluster")."""

    alias: str = Field(
        pattern=r"^[a-z][a-z0-9]{1,14}$",
        description="Short name of the region (e.g. `east`): the global stack's "
        "`global.regions[].name`, the prefix of the topics replicated from this region "
        "and of its own gateway record.",
    )
    region: str = Field(
        pattern=r"^[a-z]{2}(-[a-z]+)+-\d$",
        description="The stack's AWS region, the same as `aws:region`: the cost rules and "
        "the cost dashboard carry it as the label `region`, so a view across regions can "
        "tell them apart.",
    )
    client_cidrs: list[str] = Field(
        min_length=1,
        description="CIDRs allowed to reach the gateway's internal load balancer: this VPC "
        "and the other regions' VPCs (the global stack peers the regions' VPCs and routes "
        "their private subnets to each other).",
    )
    ingress_image: ImageRef = Field(
        default_factory=lambda: ImageRef(repository="docker.io/istio/proxyv2", tag=CHART_VERSION),
        description="The ingress gateway's Envoy (Istio's proxyv2 at the mesh's release, "
        "which istiod's injector expects): the NLB's traffic enters the mesh there and "
        "reaches the gateway over mTLS. With `images.mirror` it runs from the mirror.",
    )
    unhealthy_after_minutes: int = Field(
        default=2,
        ge=1,
        le=10,
        description="Minutes with no healthy gateway target before the health alarm fires "
        "and Route 53 fails the region over (one-minute periods).",
    )


@dataclass(frozen=True)
class RegionalEdgeArgs:
    spec: RegionalSpec
    cluster_name: str
    region: str
    vpc_id: pulumi.Input[str]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    gateway_port: int
    # The ingress gateway's NodePort on every node, and the nodes' security group.
    node_port: int
    node_security_group_id: pulumi.Input[str]
    # The system node group's Auto Scaling group: its instances are the NLB's targets.
    autoscaling_group_name: pulumi.Input[str]
    cost_labels: CostLabels


def alarm_name(cluster_name: str) -> str:
    return f"{cluster_name}-gateway-healthy"


class RegionalEdge(pulumi.ComponentResource):
    """An internal NLB for the regional gateway, its target group (instance targets on the
    ingress gateway's NodePort, the system node group's Auto Scaling group attached) and the
    CloudWatch alarm the global health check reads."""

    dns_name: pulumi.Output[str]
    zone_id: pulumi.Output[str]
    alarm_name: pulumi.Output[str]
    target_group_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: RegionalEdgeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = aws_tags(args.cost_labels.as_labels(), component="regional-edge")
        port = args.gateway_port
        group = aws.ec2.SecurityGroup(
            f"{name}-lb",
            description=f"Gateway load balancer of {args.cluster_name}: clients of the regions",
            vpc_id=args.vpc_id,
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    description="Model gateway clients (this and the other regions' VPCs)",
                    protocol="tcp",
                    from_port=port,
                    to_port=port,
                    cidr_blocks=list(args.spec.client_cidrs),
                )
            ],
            egress=[
                aws.ec2.SecurityGroupEgressArgs(
                    description="To the ingress gateway's NodePort on the nodes",
                    protocol="tcp",
                    from_port=args.node_port,
                    to_port=args.node_port,
                    security_groups=[args.node_security_group_id],
                )
            ],
            tags=tags,
            opts=child,
        )
        balancer = aws.lb.LoadBalancer(
            f"{name}-lb",
            name=f"{args.cluster_name}-gw"[:32],
            internal=True,
            load_balancer_type="network",
            subnets=list(args.private_subnet_ids),
            security_groups=[group.id],
            enable_cross_zone_load_balancing=True,
            tags=tags,
            opts=child,
        )
        target_group = aws.lb.TargetGroup(
            f"{name}-gateway",
            name=f"{args.cluster_name}-gw"[:32],
            port=args.node_port,
            protocol="TCP",
            target_type="instance",
            vpc_id=args.vpc_id,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                protocol="HTTP",
                path=HEALTH_PATH,
                port="traffic-port",
                interval=10,
                healthy_threshold=2,
                unhealthy_threshold=2,
            ),
            tags=tags,
            opts=child,
        )
        # The nodes admit the load balancer on the NodePort (client traffic and health
        # checks); nothing else reaches it from outside the cluster.
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-nodes",
            security_group_id=args.node_security_group_id,
            referenced_security_group_id=group.id,
            ip_protocol="tcp",
            from_port=args.node_port,
            to_port=args.node_port,
            description=f"Gateway load balancer of {args.cluster_name} to the ingress NodePort",
            tags=tags,
            opts=child,
        )
        aws.autoscaling.Attachment(
            f"{name}-targets",
            autoscaling_group_name=args.autoscaling_group_name,
            lb_target_group_arn=target_group.arn,
            opts=child,
        )
        aws.lb.Listener(
            f"{name}-gateway",
            load_balancer_arn=balancer.arn,
            port=port,
            protocol="TCP",
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=target_group.arn)
            ],
            tags=tags,
            opts=child,
        )
        alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-healthy",
            name=alarm_name(args.cluster_name),
            alarm_description=f"No healthy model gateway target in {args.region}: the global "
            "stack's Route 53 health check reads this alarm and fails the region over",
            namespace="AWS/NetworkELB",
            metric_name="HealthyHostCount",
            dimensions={
                "LoadBalancer": balancer.arn_suffix,
                "TargetGroup": target_group.arn_suffix,
            },
            statistic="Minimum",
            period=60,
            evaluation_periods=args.spec.unhealthy_after_minutes,
            threshold=1,
            comparison_operator="LessThanThreshold",
            # No data means no healthy target reported: fail over rather than hope.
            treat_missing_data="breaching",
            tags=tags,
            opts=child,
        )
        self.dns_name = balancer.dns_name
        self.zone_id = balancer.zone_id
        self.alarm_name = alarm.name
        self.target_group_arn = target_group.arn
        self.register_outputs(
            {
                "dnsName": balancer.dns_name,
                "zoneId": balancer.zone_id,
                "alarmName": alarm.name,
                "targetGroupArn": target_group.arn,
            }
        )


@dataclass(frozen=True)
class RegionalKafka:
    """What the global stack's MSK Replicators need of this region's cluster."""

    cluster_arn: pulumi.Input[str]
    brokers_security_group_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    port: int
    tasks_topics: Sequence[str]
    results_topics: Sequence[str]
    groups: Sequence[str]


def regional_output(
    spec: RegionalSpec,
    *,
    region: str,
    vpc_id: pulumi.Input[str],
    vpc_cidr: str,
    private_route_table_ids: Sequence[pulumi.Input[str]],
    edge: RegionalEdge,
    kafka: RegionalKafka,
    image_repositories: Sequence[str],
) -> dict[str, Any]:
    """The stack output `regional`, the contract the global stack reads through a
    StackReference (stacks/global_composition.py)."""
    return {
        "alias": spec.alias,
        "region": region,
        "vpcId": vpc_id,
        "vpcCidr": vpc_cidr,
        "privateRouteTableIds": list(private_route_table_ids),
        "gateway": {"dnsName": edge.dns_name, "zoneId": edge.zone_id},
        "health": {"alarmName": edge.alarm_name, "alarmRegion": region},
        "kafka": {
            "clusterArn": kafka.cluster_arn,
            "brokersSecurityGroupId": kafka.brokers_security_group_id,
            "subnetIds": list(kafka.subnet_ids),
            "port": kafka.port,
            "tasksTopics": list(kafka.tasks_topics),
            "resultsTopics": list(kafka.results_topics),
            "groups": list(kafka.groups),
        },
        "imageRepositories": list(image_repositories),
    }
