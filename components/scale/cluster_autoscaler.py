"""Node autoscaling: the Cluster Autoscaler as a pinned release, with its own IRSA role.

It finds every managed node group by the tags EKS puts on their Auto Scaling groups
(`k8s.io/cluster-autoscaler/enabled` and `k8s.io/cluster-autoscaler/<cluster>`), and moves
each group's desired size between the `minSize` and `maxSize` the stack config gives it,
so `replicas.max` of a model and `maxSize` of its pool are reachable: a pending replica
brings a node. A GPU pool at zero nodes is described to it by the node group's labels,
taints and `node-template/resources` tags (components/compute/gpu_node_pool.py).

The role may describe groups, instances, launch templates and node groups anywhere (the
API has no narrower resource for them) and may change the size of, or terminate
instances in, only the groups tagged as this cluster's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.compute.irsa import ROLE_ANNOTATION, Irsa, irsa_role
from components.compute.nodes import aws_tags
from components.pod_security import restricted_container, restricted_pod
from components.scale import cluster_autoscaler_chart as chart
from components.specs import CostLabels

DESCRIBE_ACTIONS = (
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeScalingActivities",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements",
    "eks:DescribeNodegroup",
)
EXPANDERS = "priority,least-waste"
SCALE_ACTIONS = (
    "autoscaling:SetDesiredCapacity",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
)


def owner_tag(cluster_name: str) -> str:
    """The tag EKS puts (value `owned`) on the Auto Scaling group of each managed node group."""
    return f"k8s.io/cluster-autoscaler/{cluster_name}"


def cluster_autoscaler_policy(cluster_name: str) -> str:
    """The IAM policy of the autoscaler's role: describe anything, scale only this
    cluster's groups."""
    statements: list[dict[str, Any]] = [
        {"Sid": "Describe", "Effect": "Allow", "Action": list(DESCRIBE_ACTIONS), "Resource": "*"},
        {
            "Sid": "ScaleOwnGroups",
            "Effect": "Allow",
            "Action": list(SCALE_ACTIONS),
            "Resource": "*",
            "Condition": {
                "StringEquals": {
                    f"aws:ResourceTag/{owner_tag(cluster_name)}": "owned",
                    "aws:ResourceTag/k8s.io/cluster-autoscaler/enabled": "true",
                }
            },
        },
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def cluster_autoscaler_values(
    *,
    cluster_name: pulumi.Input[str],
    region: str,
    kubernetes_version: str,
    role_arn: pulumi.Input[str],
    cost_labels: CostLabels,
    priorities: Mapping[int, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Helm values of the cluster-autoscaler chart at chart.CHART_VERSION.

    `priorities`: the priority expander's table (value -> Auto Scaling group name
    patterns, `components.compute.placement.expander_priorities`); unset: every group at
    one value, so least-waste alone decides."""
    table = priorities if priorities is not None else {1: [".*"]}
    tag = chart.IMAGE_TAGS.get(kubernetes_version)
    if tag is None:
        raise ValueError(
            f"no Cluster Autoscaler release is recorded for Kubernetes {kubernetes_version} "
            f"(recorded: {', '.join(sorted(chart.IMAGE_TAGS))})"
        )
    labels = cost_labels.as_labels()
    return {
        "cloudProvider": "aws",
        "awsRegion": region,
        "autoDiscovery": {"clusterName": cluster_name},
        "image": {"tag": tag},
        "rbac": {
            "serviceAccount": {
                "name": chart.SERVICE_ACCOUNT,
                "annotations": {ROLE_ANNOTATION: role_arn},
            }
        },
        # The chart renders it as the `cluster-autoscaler-priority-expander` ConfigMap in
        # the release's namespace, which the autoscaler watches.
        "expanderPriorities": {
            str(value): list(patterns) for value, patterns in sorted(table.items())
        },
        "extraArgs": {
            # Pools of one instance type each: similar groups share the load. Of the groups
            # a pending pod fits, the priority expander keeps those of the highest value
            # (the placement order of the GPU pools), and least-waste breaks a tie.
            "balance-similar-node-groups": True,
            "expander": EXPANDERS,
            # Model servers keep a cache on emptyDir: it must not pin a node forever.
            "skip-nodes-with-local-storage": False,
        },
        "additionalLabels": labels,
        "podLabels": labels,
        "securityContext": restricted_pod(65534),
        "containerSecurityContext": restricted_container(
            restate_non_root=False, state_unprivileged=False
        ),
        "resources": {
            "requests": {"cpu": "100m", "memory": "600Mi"},
            "limits": {"memory": "600Mi"},
        },
    }


@dataclass(frozen=True)
class ClusterAutoscalerArgs:
    cluster_name: pulumi.Output[str]
    region: str
    kubernetes_version: str
    chart_version: str
    irsa: Irsa
    cost_labels: CostLabels
    # The priority expander's table; unset: every group at one value (least-waste decides).
    priorities: Mapping[int, Sequence[str]] | None = None


class ClusterAutoscaler(pulumi.ComponentResource):
    """The Cluster Autoscaler release in kube-system and its IRSA role."""

    release: k8s.helm.v3.Release

    def __init__(
        self, name: str, args: ClusterAutoscalerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("swarmstack:scale:ClusterAutoscaler", name, None, opts)
        role = irsa_role(
            args.irsa,
            role_name=f"{name}-role",
            policy_name=f"{name}-policy",
            namespace=chart.NAMESPACE,
            service_account=chart.SERVICE_ACCOUNT,
            policy=args.cluster_name.apply(cluster_autoscaler_policy),
            description="Cluster Autoscaler: scale this cluster's node groups (IRSA)",
            tags=aws_tags(args.cost_labels.as_labels()),
            parent=self,
        )
        values = cluster_autoscaler_values(
            cluster_name=args.cluster_name,
            region=args.region,
            kubernetes_version=args.kubernetes_version,
            role_arn=role.arn,
            cost_labels=args.cost_labels,
            priorities=args.priorities,
        )
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            k8s.helm.v3.ReleaseArgs(
                name=chart.RELEASE,
                chart=chart.CHART,
                version=args.chart_version,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.REPOSITORY),
                namespace=chart.NAMESPACE,
                values=values,
                cleanup_on_fail=True,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"roleArn": role.arn, "chartVersion": self.release.version})
