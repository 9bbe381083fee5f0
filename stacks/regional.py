"""What a regional stack of a multi-cluster deployment adds (config `regional`): the
ingress gateway that carries the NLB's traffic into the mesh, the private edge of its
gateway, the alarm its global health check reads, and the stack
output `regional` the global stack reads through a StackReference.

Validation (stacks/config.py, `regional_problems`) has made sure the stack has an EKS
cluster, a gateway and MSK before any of this runs."""

from __future__ import annotations

import re

import pulumi

from components.agents.spec import events_agents, kafka_names
from components.compute.cluster import ClusterNetworkAndEks
from components.data.kafka import EventBus
from components.gateway import proxy as gateway_proxy
from components.traffic import regional_ingress as ingress
from components.traffic.regional_edge import (
    RegionalEdge,
    RegionalEdgeArgs,
    RegionalKafka,
    regional_output,
)
from components.traffic.regional_ingress import RegionalIngress, RegionalIngressArgs
from stacks.config import StackConfig
from stacks.gateway import gateway_timeouts_of
from stacks.images import image_slots

REGIONAL_OUTPUT = "regional"
# An ECR image reference: <account>.dkr.ecr.<region>.amazonaws.com/<repository>.
ECR_IMAGE = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/(.+)$")


def ecr_repositories(config: StackConfig) -> list[str]:
    """The ECR repositories (without the registry) the stack's images run from: with
    `images.mirror` (which production requires) every image's mirror and the worker's own
    repository. The global stack replicates them from the primary's registry to the other
    regions, whose mirrors are these copies."""
    found: set[str] = set()
    for slot in image_slots(config):
        match = ECR_IMAGE.match(slot.image.repository)
        if match:
            found.add(match.group(3))
    return sorted(found)


def build_regional(
    config: StackConfig,
    region: str,
    eks: ClusterNetworkAndEks,
    bus: EventBus,
    on_cluster: pulumi.ResourceOptions,
) -> None:
    """`on_cluster`: the cluster's provider, after istiod (the ingress pods need their
    proxy injected) and the namespaces."""
    spec = config.regional
    assert spec is not None and bus.msk_cluster is not None and bus.msk_security_group is not None
    RegionalIngress(
        "regional-ingress",
        RegionalIngressArgs(
            image=spec.ingress_image,
            namespaces=config.namespaces,
            client_cidrs=spec.client_cidrs,
            vpc_cidr=config.cluster.vpc_cidr,
            route_timeout_s=gateway_timeouts_of(config).route_s,
            cost_labels=config.cost_labels,
        ),
        opts=on_cluster,
    )
    edge = RegionalEdge(
        "regional-edge",
        RegionalEdgeArgs(
            spec=spec,
            cluster_name=config.cluster.name,
            region=region,
            vpc_id=eks.vpc_id,
            private_subnet_ids=eks.private_subnet_ids,
            gateway_port=gateway_proxy.PORT,
            node_port=ingress.NODE_PORT,
            node_security_group_id=eks.node_security_group_id,
            autoscaling_group_name=eks.system_autoscaling_group,
            cost_labels=config.cost_labels,
        ),
    )
    agents = events_agents(config.agents)
    kafka = RegionalKafka(
        cluster_arn=bus.msk_cluster.arn,
        brokers_security_group_id=bus.msk_security_group.id,
        subnet_ids=eks.private_subnet_ids,
        port=config.data_plane.kafka.cluster_port if config.data_plane.kafka else 0,
        tasks_topics=[kafka_names(a).tasks for a in agents],
        results_topics=[kafka_names(a).results for a in agents],
        groups=[kafka_names(a).group for a in agents],
    )
    pulumi.export(
        REGIONAL_OUTPUT,
        regional_output(
            spec,
            region=region,
            vpc_id=eks.vpc_id,
            vpc_cidr=config.cluster.vpc_cidr,
            private_route_table_ids=eks.private_route_table_ids,
            edge=edge,
            kafka=kafka,
            image_repositories=ecr_repositories(config),
        ),
    )
