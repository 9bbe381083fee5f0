"""Shared pieces of every node group: hardened launch template + EKS managed node group.

Used by the cluster's system pool and by every GPU pool, so that IMDSv2, disk
encryption and cost tags on instances and volumes are the same everywhere.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_aws as aws

POOL_LABEL = "swarmstack.io/pool"
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_TAINT_VALUE = "present"

AmiType = Literal["AL2023_x86_64_STANDARD", "AL2023_x86_64_NVIDIA"]


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: Literal["NO_SCHEDULE", "NO_EXECUTE", "PREFER_NO_SCHEDULE"]

    @property
    def kubernetes_effect(self) -> str:
        return {
            "NO_SCHEDULE": "NoSchedule",
            "NO_EXECUTE": "NoExecute",
            "PREFER_NO_SCHEDULE": "PreferNoSchedule",
        }[self.effect]


GPU_TAINT = Taint(GPU_TAINT_KEY, GPU_TAINT_VALUE, "NO_SCHEDULE")


def aws_tags(cost_labels: Mapping[str, str], **extra: str) -> dict[str, str]:
    """AWS tags carrying the cost-attribution labels, plus any extras."""
    return {**cost_labels, "managed-by": "swarmstack", **extra}


@dataclass(frozen=True)
class NodeGroupSpec:
    """What a managed node group is made of; the same shape for system and GPU pools."""

    name: str
    instance_type: str
    min_size: int
    max_size: int
    disk_size_gib: int
    ami_type: AmiType
    labels: Mapping[str, str]
    taints: Sequence[Taint] = ()
    capacity_reservation_id: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict[str, str])
    # Tags of the node group alone (not of its instances, volumes or launch template): the
    # Cluster Autoscaler's node-template tags.
    group_tags: Mapping[str, str] = field(default_factory=dict[str, str])
    # A MIME multi-part document EKS merges with its own NodeConfig (AL2023 nodeadm).
    user_data: str | None = None


def managed_node_group(
    resource_name: str,
    spec: NodeGroupSpec,
    *,
    parent: pulumi.Resource,
    cluster_name: pulumi.Input[str],
    node_role_arn: pulumi.Input[str],
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]],
    depends_on: Sequence[pulumi.Resource] = (),
) -> tuple[aws.ec2.LaunchTemplate, aws.eks.NodeGroup]:
    """A launch template (IMDSv2 only, hop limit 1, encrypted gp3) and its node group."""
    opts = pulumi.ResourceOptions(parent=parent)
    tags = dict(spec.tags)
    reservation = (
        aws.ec2.LaunchTemplateCapacityReservationSpecificationArgs(
            capacity_reservation_target=aws.ec2.LaunchTemplateCapacityReservationSpecificationCapacityReservationTargetArgs(
                capacity_reservation_id=spec.capacity_reservation_id
            )
        )
        if spec.capacity_reservation_id
        else None
    )
    template = aws.ec2.LaunchTemplate(
        f"{resource_name}-lt",
        name_prefix=f"{spec.name}-",
        description=f"swarmstack node group {spec.name}: IMDSv2, encrypted gp3 root volume",
        update_default_version=True,
        metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
            http_endpoint="enabled",
            http_tokens="required",
            http_put_response_hop_limit=1,
            instance_metadata_tags="disabled",
        ),
        block_device_mappings=[
            aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name="/dev/xvda",
                ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=spec.disk_size_gib,
                    volume_type="gp3",
                    encrypted="true",
                    delete_on_termination="true",
                ),
            )
        ],
        capacity_reservation_specification=reservation,
        user_data=base64.b64encode(spec.user_data.encode()).decode() if spec.user_data else None,
        tag_specifications=[
            aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=tags)
            for kind in ("instance", "volume", "network-interface")
        ],
        tags=tags,
        opts=opts,
    )
    group = aws.eks.NodeGroup(
        resource_name,
        cluster_name=cluster_name,
        node_group_name=spec.name,
        node_role_arn=node_role_arn,
        subnet_ids=subnet_ids,
        ami_type=spec.ami_type,
        capacity_type="ON_DEMAND",
        instance_types=[spec.instance_type],
        scaling_config=aws.eks.NodeGroupScalingConfigArgs(
            min_size=spec.min_size, max_size=spec.max_size, desired_size=spec.min_size
        ),
        update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
        launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
            id=template.id, version=template.latest_version.apply(str)
        ),
        labels={**spec.labels, POOL_LABEL: spec.name},
        taints=[
            aws.eks.NodeGroupTaintArgs(key=t.key, value=t.value, effect=t.effect)
            for t in spec.taints
        ],
        tags={**tags, **spec.group_tags},
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=list(depends_on),
            ignore_changes=["scalingConfig.desiredSize"],
        ),
    )
    return template, group
