"""Kafka across the regions of a multi-cluster deployment, with MSK Replicator.

Direction (`replication_flows`): every region consumes only its own tasks topics. Each
region's results topics are replicated to every other region (one writer, read-only
copies elsewhere: active-passive per topic). The primary's tasks topics are replicated to
every secondary, with the agents' consumer-group offsets, so a secondary can take over the
primary's backlog on failover; a secondary's tasks are never replicated. Replicated topics
are prefixed with the source cluster's alias (PREFIXED_WITH_SOURCE_CLUSTER_ALIAS), so a
region's own consumers, which subscribe to their unprefixed topics, never read them.

A replicator runs in its target region and reads the source cluster across regions; both
clusters use IAM auth (MSK Replicator supports no other auth between MSK clusters).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

TYPE_TOKEN = "swarmstack:data:KafkaReplication"


@dataclass(frozen=True)
class Flow:
    """One replicator: what it copies from `source` to `target`."""

    source: str
    target: str
    tasks: bool  # the source's tasks topics too (primary -> secondary only)

    @property
    def name(self) -> str:
        return f"{self.source}-to-{self.target}"


def replication_flows(regions: Sequence[tuple[str, str]]) -> list[Flow]:
    """Every ordered pair of regions ((name, role) in config order): results both ways,
    tasks only from the primary to each secondary."""
    return [
        Flow(source=src, target=dst, tasks=src_role == "primary")
        for src, src_role in regions
        for dst, _ in regions
        if src != dst
    ]


def topic_patterns(topics: Sequence[str]) -> list[str]:
    """MSK Replicator takes regular expressions: each topic matched exactly."""
    return [f"^{re.escape(t)}$" for t in topics]


def replicator_policy(cluster_arns: Sequence[str]) -> str:
    """The replicators' role: connect to every cluster, read and write their topics, copy
    topic configs and consumer groups (MSK Replicator's documented actions)."""
    topics = [re.sub(r":cluster/", ":topic/", a, count=1) + "/*" for a in cluster_arns]
    groups = [re.sub(r":cluster/", ":group/", a, count=1) + "/*" for a in cluster_arns]
    statements: list[dict[str, Any]] = [
        {
            "Sid": "Clusters",
            "Effect": "Allow",
            "Action": [
                "kafka-cluster:Connect",
                "kafka-cluster:DescribeCluster",
                "kafka-cluster:AlterCluster",
            ],
            "Resource": sorted(cluster_arns),
        },
        {
            "Sid": "Topics",
            "Effect": "Allow",
            "Action": [
                "kafka-cluster:DescribeTopic",
                "kafka-cluster:CreateTopic",
                "kafka-cluster:AlterTopic",
                "kafka-cluster:WriteData",
                "kafka-cluster:ReadData",
                "kafka-cluster:DescribeTopicDynamicConfiguration",
                "kafka-cluster:AlterTopicDynamicConfiguration",
            ],
            "Resource": sorted(topics),
        },
        {
            "Sid": "Groups",
            "Effect": "Allow",
            "Action": ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"],
            "Resource": sorted(groups),
        },
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


@dataclass(frozen=True)
class RegionKafka:
    """One region's MSK cluster as the regional stack exports it."""

    name: str
    role: str
    region: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    vpc_cidr: pulumi.Input[str]
    cluster_arn: pulumi.Output[str]
    brokers_security_group_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[str]]
    port: pulumi.Output[int]
    tasks_topics: pulumi.Output[list[str]]
    results_topics: pulumi.Output[list[str]]
    groups: pulumi.Output[list[str]]


@dataclass(frozen=True)
class KafkaReplicationArgs:
    deployment: str  # names the role and replicators
    regions: Sequence[RegionKafka]
    compression: str
    starting_position: str
    tags: dict[str, str]


class KafkaReplication(pulumi.ComponentResource):
    replicators: dict[str, aws.msk.Replicator]

    def __init__(
        self, name: str, args: KafkaReplicationArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-role",
            name=f"{args.deployment}-msk-replicator",
            description="MSK Replicator between the regions' agent event buses",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "kafka.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
            tags=args.tags,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-access",
            role=role.id,
            policy=pulumi.Output.all(*[r.cluster_arn for r in args.regions]).apply(
                lambda arns: replicator_policy([str(a) for a in arns])
            ),
            opts=child,
        )
        # The replicators' network interfaces in each region, admitted by its brokers.
        groups: dict[str, aws.ec2.SecurityGroup] = {}
        for region in args.regions:
            group = aws.ec2.SecurityGroup(
                f"{name}-{region.name}",
                region=region.region,
                description="MSK Replicator network interfaces: Kafka (IAM) to the brokers",
                vpc_id=region.vpc_id,
                egress=[
                    aws.ec2.SecurityGroupEgressArgs(
                        description="Kafka brokers (IAM auth, TLS) in this VPC",
                        protocol="tcp",
                        from_port=region.port,
                        to_port=region.port,
                        cidr_blocks=[region.vpc_cidr],
                    )
                ],
                tags=args.tags,
                opts=child,
            )
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-{region.name}-brokers",
                region=region.region,
                description="MSK Replicator to the brokers",
                security_group_id=region.brokers_security_group_id,
                referenced_security_group_id=group.id,
                ip_protocol="tcp",
                from_port=region.port,
                to_port=region.port,
                tags=args.tags,
                opts=child,
            )
            groups[region.name] = group
        by_name = {r.name: r for r in args.regions}
        self.replicators = {}
        for flow in replication_flows([(r.name, r.role) for r in args.regions]):
            source, target = by_name[flow.source], by_name[flow.target]
            topics = (
                pulumi.Output.all(source.tasks_topics, source.results_topics).apply(
                    lambda t: topic_patterns([*t[0], *t[1]])
                )
                if flow.tasks
                else source.results_topics.apply(topic_patterns)
            )
            self.replicators[flow.name] = aws.msk.Replicator(
                f"{name}-{flow.name}",
                replicator_name=f"{args.deployment}-{flow.name}",
                region=target.region,  # a replicator runs in its target region
                description=(
                    f"{flow.source} -> {flow.target}: "
                    + ("tasks (failover copy) and results" if flow.tasks else "results")
                ),
                service_execution_role_arn=role.arn,
                kafka_clusters=[
                    aws.msk.ReplicatorKafkaClusterArgs(
                        amazon_msk_cluster=aws.msk.ReplicatorKafkaClusterAmazonMskClusterArgs(
                            msk_cluster_arn=end.cluster_arn
                        ),
                        vpc_config=aws.msk.ReplicatorKafkaClusterVpcConfigArgs(
                            subnet_ids=end.subnet_ids,
                            security_groups_ids=[groups[end.name].id],
                        ),
                    )
                    for end in (source, target)
                ],
                replication_info_list=aws.msk.ReplicatorReplicationInfoListArgs(
                    source_kafka_cluster_arn=source.cluster_arn,
                    target_kafka_cluster_arn=target.cluster_arn,
                    target_compression_type=args.compression,
                    topic_replications=[
                        aws.msk.ReplicatorReplicationInfoListTopicReplicationArgs(
                            topics_to_replicates=topics,
                            copy_topic_configurations=True,
                            copy_access_control_lists_for_topics=False,
                            detect_and_copy_new_topics=False,
                            starting_position=aws.msk.ReplicatorReplicationInfoListTopicReplicationStartingPositionArgs(
                                type=args.starting_position
                            ),
                            topic_name_configuration=aws.msk.ReplicatorReplicationInfoListTopicReplicationTopicNameConfigurationArgs(
                                type="PREFIXED_WITH_SOURCE_CLUSTER_ALIAS"
                            ),
                        )
                    ],
                    consumer_group_replications=[
                        aws.msk.ReplicatorReplicationInfoListConsumerGroupReplicationArgs(
                            consumer_groups_to_replicates=source.groups.apply(topic_patterns),
                            detect_and_copy_new_consumer_groups=False,
                            # Offsets matter where a region may resume another's tasks.
                            synchronise_consumer_group_offsets=flow.tasks,
                        )
                    ],
                ),
                tags=args.tags,
                opts=child,
            )
        self.register_outputs(
            {"roleArn": role.arn, "replicators": {k: v.arn for k, v in self.replicators.items()}}
        )
