"""GPU node pools and the NVIDIA GPU operator that partitions them with MIG.

Two components and the pure functions behind them:

- `GpuNodePool`: one EKS managed node group per pool on the `AL2023_x86_64_NVIDIA`
  AMI (it carries the NVIDIA driver and container toolkit), tainted so that only
  pods asking for GPUs land there, and labelled with the name of the mig-parted
  configuration the MIG manager applies to its GPUs (`nvidia.com/mig.config`).
- `GpuOperator`: the operator's namespace, the mig-parted ConfigMap holding one
  named configuration per pool, and the `gpu-operator` Helm release pointed at it.

The mig-parted document and the Helm values are plain functions so that they can
be tested (and shown in a plan) without a Pulumi runtime.

Helm values are those of the `gpu-operator` chart at the version the stack config
accepts (`components.compute.gpu_operator_chart.CHART_VERSION`); what each key means there is
recorded in that module, and a test holds the rendered values to it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import yaml

from components.compute.instances import INSTANCE_TYPES
from components.compute.mig import mig_resource_name
from components.compute.nodes import (
    GPU_TAINT,
    POOL_LABEL,
    NodeGroupSpec,
    aws_tags,
    managed_node_group,
)
from components.observe.selection import STACK_MONITOR_LABELS
from components.specs import CostLabels, GpuOperatorSpec, GpuPoolSpec

MIG_CONFIG_LABEL = "nvidia.com/mig.config"
MIG_PARTED_CONFIGMAP = "swarmstack-mig-parted"
# Key of the ConfigMap the MIG manager reads (it mounts the map and reads this file).
MIG_PARTED_CONFIG_KEY = "config.yaml"
# The mig-parted configuration that turns MIG off; the MIG manager's default.
ALL_DISABLED = "all-disabled"
MIG_CONFIG_PREFIX = "swarmstack-"
GPU_AMI_TYPE = "AL2023_x86_64_NVIDIA"
GPU_OPERATOR_CHART = "gpu-operator"
GPU_OPERATOR_RELEASE = "gpu-operator"
POD_SECURITY_ENFORCE = "pod-security.kubernetes.io/enforce"
# Kubernetes label values are at most 63 characters.
_LABEL_VALUE_MAX = 63


def mig_config_name(pool: GpuPoolSpec) -> str:
    """The mig-parted configuration a pool's nodes select through `nvidia.com/mig.config`.

    MIG pools get a configuration of their own, `swarmstack-<pool>`; pools of whole
    GPUs select `all-disabled`, so that a MIG-capable GPU left partitioned by an
    earlier layout is returned to one whole device.
    """
    if pool.mig is None:
        return ALL_DISABLED
    name = f"{MIG_CONFIG_PREFIX}{pool.name}"
    if len(name) > _LABEL_VALUE_MAX:
        room = _LABEL_VALUE_MAX - len(MIG_CONFIG_PREFIX)
        raise ValueError(
            f"gpu pool {pool.name!r}: its MIG configuration name {name!r} is longer than the "
            f"{_LABEL_VALUE_MAX} characters a label value may have; use a pool name of at most "
            f"{room} characters"
        )
    return name


def mig_parted_config(pools: Sequence[GpuPoolSpec]) -> dict[str, Any]:
    """The mig-parted document: `all-disabled` plus one configuration per MIG pool.

    Every GPU of a pool's node gets the pool's layout (`devices: all`), written as
    instance counts per profile. The layouts themselves are checked against the GPU
    when the stack config is loaded (`components.compute.mig.validate_layout`).
    """
    seen: set[str] = set()
    configs: dict[str, list[dict[str, Any]]] = {
        ALL_DISABLED: [{"devices": "all", "mig-enabled": False}],
    }
    for pool in pools:
        if pool.name in seen:
            raise ValueError(f"gpu pool {pool.name!r} is listed twice: pool names must be unique")
        seen.add(pool.name)
        if pool.mig is None:
            continue
        counts = Counter(pool.mig.profiles)
        configs[mig_config_name(pool)] = [
            {
                "devices": "all",
                "mig-enabled": True,
                "mig-devices": {profile: counts[profile] for profile in sorted(counts)},
            }
        ]
    return {"version": "v1", "mig-configs": configs}


def pool_node_labels(pool: GpuPoolSpec) -> dict[str, str]:
    """Kubernetes labels of a pool's nodes: its pool name and the MIG configuration to apply."""
    return {POOL_LABEL: pool.name, MIG_CONFIG_LABEL: mig_config_name(pool)}


NODE_TEMPLATE_RESOURCES = "k8s.io/cluster-autoscaler/node-template/resources/"


def node_template_tags(pool: GpuPoolSpec, strategy: Literal["single", "mixed"]) -> dict[str, str]:
    """Node group tags that tell the Cluster Autoscaler what a node of this pool offers
    while the pool has no node to look at.

    The autoscaler reads a managed node group's labels and taints itself
    (`eks:DescribeNodegroup`) and takes `nvidia.com/gpu` from the instance type, which is
    right for whole GPUs only: a MIG node offers its slices instead, and under the `mixed`
    strategy no `nvidia.com/gpu` at all. So a MIG pool's group carries one
    `node-template/resources/<resource>` tag per slice resource, with the count one node
    offers, and (mixed) `nvidia.com/gpu: 0`; a pool of whole GPUs needs none.
    """
    if pool.mig is None:
        return {}
    gpus = INSTANCE_TYPES[str(pool.instance_type)].gpus  # pyright: ignore[reportUnknownArgumentType]
    per_node = Counter(mig_resource_name(p, strategy) for p in pool.mig.profiles)
    tags = {f"{NODE_TEMPLATE_RESOURCES}{r}": str(n * gpus) for r, n in sorted(per_node.items())}
    if strategy == "mixed":
        tags[f"{NODE_TEMPLATE_RESOURCES}nvidia.com/gpu"] = "0"
    return tags


def gpu_toleration() -> dict[str, str]:
    """A toleration of exactly the taint GPU nodes carry: `nvidia.com/gpu=present:NoSchedule`."""
    return {
        "key": GPU_TAINT.key,
        "operator": "Equal",
        "value": GPU_TAINT.value,
        "effect": GPU_TAINT.kubernetes_effect,
    }


def gpu_operator_values(
    spec: GpuOperatorSpec, cost_labels: CostLabels | None = None
) -> dict[str, Any]:
    """Helm values of the `gpu-operator` chart for EKS nodes on the AL2023 NVIDIA AMI.

    With `cost_labels`, the operator's pods and every operand daemonset carry them.
    """
    labels = cost_labels.as_labels() if cost_labels is not None else {}
    daemonsets: dict[str, Any] = {
        # Helm replaces lists rather than merging them: this is the whole list, and it
        # must tolerate the taint GPU nodes carry or no operand runs where it is needed.
        "tolerations": [gpu_toleration()],
    }
    operator: dict[str, Any] = {}
    if labels:
        daemonsets["labels"] = labels
        operator["labels"] = labels
    values: dict[str, Any] = {
        # The AL2023 NVIDIA AMI ships the driver and the container toolkit.
        "driver": {"enabled": False},
        "toolkit": {"enabled": False},
        # The AMI's nvidia runtime injects devices from NVIDIA_VISIBLE_DEVICES; CDI (the
        # chart's default) would make the device plugin rely on a containerd CDI setup that
        # swarmstack neither configures nor can check.
        "cdi": {"enabled": False},
        "mig": {"strategy": spec.mig_strategy},
        "migManager": {
            "enabled": True,
            # The ConfigMap is declared by GpuOperator, not by the chart.
            "config": {"name": MIG_PARTED_CONFIGMAP, "default": ALL_DISABLED, "create": False},
        },
        "devicePlugin": {"enabled": True},
        # The chart's default since v26.7, set so that observability can rely on it: the
        # operator creates the ServiceMonitor once the cluster serves its CRD.
        # Its labels are the monitoring release's selector: Prometheus loads this monitor
        # (the stack declares no second one for the exporter).
        "dcgmExporter": {
            "enabled": True,
            "serviceMonitor": {"enabled": True, "additionalLabels": dict(STACK_MONITOR_LABELS)},
        },
        # GPU health is already exported as metrics by the DCGM exporter.
        "nodeStatusExporter": {"enabled": False},
        # GpuOperator labels the namespace itself; with psa enabled the operator would
        # patch those labels too, and the two would fight over them.
        "psa": {"enabled": False},
        "daemonsets": daemonsets,
    }
    if operator:
        values["operator"] = operator
    return values


def pool_subnet_ids(
    pool: GpuPoolSpec,
    subnet_ids: Sequence[pulumi.Input[str]],
    availability_zones: Sequence[str],
) -> list[pulumi.Input[str]]:
    """The subnets a pool launches into: all of them, or only its pinned zone's."""
    if not availability_zones:
        raise ValueError(f"gpu pool {pool.name!r}: no availability zones were given")
    if len(subnet_ids) != len(availability_zones):
        raise ValueError(
            f"gpu pool {pool.name!r}: {len(subnet_ids)} subnets for "
            f"{len(availability_zones)} availability zones ({', '.join(availability_zones)}); "
            "give one subnet per zone, in the order of the zones"
        )
    zone = pool.availability_zone
    if zone is None:
        return list(subnet_ids)
    if zone not in availability_zones:
        raise ValueError(
            f"gpu pool {pool.name!r}: availabilityZone {zone!r} is not a zone of the cluster "
            f"(one of {', '.join(availability_zones)})"
        )
    return [subnet_ids[list(availability_zones).index(zone)]]


@dataclass(frozen=True)
class GpuNodePoolArgs:
    """What a GPU node pool is built from."""

    spec: GpuPoolSpec
    cost_labels: CostLabels
    cluster_name: pulumi.Input[str]
    node_role_arn: pulumi.Input[str]
    # Private subnets, one per availability zone, in the order of `availability_zones`.
    subnet_ids: Sequence[pulumi.Input[str]]
    availability_zones: Sequence[str]
    # Resources the node group must wait for (e.g. the CNI add-on, access entries).
    depends_on: Sequence[pulumi.Resource] = ()
    # How the device plugin advertises MIG slices (gpuOperator.migStrategy): the node
    # template tags name the resources it advertises.
    mig_strategy: Literal["single", "mixed"] = "mixed"


class GpuNodePool(pulumi.ComponentResource):
    """One EKS managed node group of GPU instances, tainted and labelled for MIG."""

    launch_template: aws.ec2.LaunchTemplate
    node_group: aws.eks.NodeGroup
    mig_config: str

    def __init__(
        self, name: str, args: GpuNodePoolArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        spec = args.spec
        # Fail before anything is registered.
        subnets = pool_subnet_ids(spec, args.subnet_ids, args.availability_zones)
        labels = pool_node_labels(spec)
        super().__init__("swarmstack:gpu:NodePool", name, None, opts)
        self.mig_config = labels[MIG_CONFIG_LABEL]
        # GpuInstanceType is a Literal built from a tuple at run time: opaque to pyright.
        instance_type = str(spec.instance_type)  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
        group_spec = NodeGroupSpec(
            name=spec.name,
            instance_type=instance_type,
            min_size=spec.min_size,
            max_size=spec.max_size,
            disk_size_gib=spec.disk_size_gib,
            ami_type=GPU_AMI_TYPE,
            labels=labels,
            taints=(GPU_TAINT,),
            capacity_reservation_id=spec.capacity_reservation_id,
            tags=aws_tags(args.cost_labels.as_labels(), pool=spec.name),
            group_tags=node_template_tags(spec, args.mig_strategy),
        )
        self.launch_template, self.node_group = managed_node_group(
            name,
            group_spec,
            parent=self,
            cluster_name=args.cluster_name,
            node_role_arn=args.node_role_arn,
            subnet_ids=subnets,
            depends_on=args.depends_on,
        )
        self.register_outputs(
            {
                "launchTemplateId": self.launch_template.id,
                "nodeGroupName": self.node_group.node_group_name,
                "nodeGroupArn": self.node_group.arn,
                "migConfig": self.mig_config,
            }
        )


@dataclass(frozen=True)
class GpuOperatorArgs:
    """What the GPU operator release is built from."""

    spec: GpuOperatorSpec
    # Every GPU pool of the cluster: each MIG pool gets its mig-parted configuration.
    pools: Sequence[GpuPoolSpec]
    cost_labels: CostLabels


class GpuOperator(pulumi.ComponentResource):
    """The NVIDIA GPU operator: namespace, mig-parted ConfigMap and Helm release.

    The Kubernetes provider comes in through `opts` (`providers=[...]`).
    """

    namespace: k8s.core.v1.Namespace
    mig_config: k8s.core.v1.ConfigMap
    release: k8s.helm.v3.Release

    def __init__(
        self, name: str, args: GpuOperatorArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        spec = args.spec
        document = mig_parted_config(args.pools)
        values = gpu_operator_values(spec, args.cost_labels)
        super().__init__("swarmstack:gpu:Operator", name, None, opts)
        labels = args.cost_labels.as_labels()
        child = pulumi.ResourceOptions(parent=self)
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=spec.namespace,
                labels={
                    **labels,
                    # The operands (driver validator, device plugin, MIG manager, DCGM
                    # exporter) run privileged with host paths and host PID: the
                    # `baseline` and `restricted` levels would refuse their pods. Nothing
                    # else runs in this namespace.
                    POD_SECURITY_ENFORCE: "privileged",
                },
            ),
            opts=child,
        )
        namespace_name = self.namespace.metadata.apply(lambda m: m.name or spec.namespace)
        self.mig_config = k8s.core.v1.ConfigMap(
            f"{name}-mig-parted",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=MIG_PARTED_CONFIGMAP, namespace=namespace_name, labels=labels
            ),
            data={MIG_PARTED_CONFIG_KEY: yaml.safe_dump(document, sort_keys=True)},
            opts=child,
        )
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            k8s.helm.v3.ReleaseArgs(
                name=GPU_OPERATOR_RELEASE,
                chart=GPU_OPERATOR_CHART,
                version=spec.chart_version,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=spec.repository),
                namespace=namespace_name,
                values=values,
                cleanup_on_fail=True,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.mig_config]),
        )
        self.register_outputs(
            {
                "namespace": namespace_name,
                "migConfigMap": self.mig_config.metadata.apply(lambda m: m.name),
                "releaseName": self.release.name,
                "chartVersion": self.release.version,
            }
        )
