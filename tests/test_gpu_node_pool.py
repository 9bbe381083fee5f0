# pyright: strict
"""GPU node pools and the GPU operator: pure functions, then components under mocks."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest
import yaml
from hypothesis import given, settings

from components.compute.gpu_node_pool import (
    ALL_DISABLED,
    MIG_CONFIG_LABEL,
    MIG_PARTED_CONFIGMAP,
    GpuNodePool,
    GpuNodePoolArgs,
    GpuOperator,
    GpuOperatorArgs,
    gpu_operator_values,
    mig_config_name,
    mig_parted_config,
    pool_node_labels,
    pool_subnet_ids,
)
from components.compute.gpu_operator_chart import CHART_VERSION
from components.compute.instances import INSTANCE_TYPES
from components.compute.mig import validate_layout
from components.compute.nodes import GPU_TAINT, POOL_LABEL
from components.observe.selection import STACK_MONITOR_LABELS
from components.specs import CostLabels, GpuOperatorSpec, GpuPoolSpec
from stacks.plan.recorder import Capture, Registration, run
from tests.mig_strategies import Strategy, valid_layouts

ZONES = ["us-east-1a", "us-east-1b"]
SUBNETS = ["subnet-0aaa", "subnet-0bbb"]
RESERVATION = "cr-0123456789abcdef0"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
RELEASE = "kubernetes:helm.sh/v3:Release"
NAMESPACE = "kubernetes:core/v1:Namespace"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"


def pool(**overrides: Any) -> GpuPoolSpec:
    """The pilot's H100 pool, with camelCase overrides."""
    data: dict[str, Any] = {
        "name": "h100-mig",
        "instanceType": "p5.4xlarge",
        "minSize": 1,
        "maxSize": 2,
        "diskSizeGib": 500,
        "mig": {"profiles": ["3g.40gb", "3g.40gb"]},
    }
    data.update(overrides)
    return GpuPoolSpec.model_validate(data)


def whole_gpu_pool() -> GpuPoolSpec:
    return GpuPoolSpec.model_validate(
        {"name": "l40s", "instanceType": "g6e.xlarge", "minSize": 0, "maxSize": 3}
    )


COST = CostLabels.model_validate(
    {"team": "agent-platform", "costCenter": "cc-1042", "environment": "pilot"}
)
OPERATOR = GpuOperatorSpec.model_validate({"chartVersion": CHART_VERSION, "migStrategy": "mixed"})


# --- pure functions -------------------------------------------------------------------


def test_mig_config_name_per_pool() -> None:
    assert mig_config_name(pool()) == "swarmstack-h100-mig"
    assert mig_config_name(whole_gpu_pool()) == ALL_DISABLED == "all-disabled"


def test_mig_config_name_must_fit_a_label_value() -> None:
    assert len(mig_config_name(pool(name="p" * 52))) == 63
    with pytest.raises(ValueError, match="longer than the 63 characters"):
        mig_config_name(pool(name="p" * 53))


def test_mig_parted_config_counts_a_mixed_layout() -> None:
    layout = ["3g.40gb", "1g.10gb", "2g.20gb", "1g.10gb"]
    validate_layout("H100-80GB", layout, "mixed")  # the fixture itself is a real layout
    mixed = pool(name="h100-mixed", mig={"profiles": layout})
    doc = mig_parted_config([pool(), mixed, whole_gpu_pool()])
    assert doc == {
        "version": "v1",
        "mig-configs": {
            "all-disabled": [{"devices": "all", "mig-enabled": False}],
            "swarmstack-h100-mig": [
                {"devices": "all", "mig-enabled": True, "mig-devices": {"3g.40gb": 2}}
            ],
            "swarmstack-h100-mixed": [
                {
                    "devices": "all",
                    "mig-enabled": True,
                    "mig-devices": {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1},
                }
            ],
        },
    }


def test_every_pool_label_names_a_config_in_the_document() -> None:
    pools = [pool(), whole_gpu_pool()]
    configs = mig_parted_config(pools)["mig-configs"]
    for p in pools:
        assert pool_node_labels(p)[MIG_CONFIG_LABEL] in configs
    # the non-MIG pool gets no configuration of its own
    assert set(configs) == {"all-disabled", "swarmstack-h100-mig"}


def test_mig_parted_config_refuses_duplicate_pools() -> None:
    with pytest.raises(ValueError, match="'h100-mig' is listed twice"):
        mig_parted_config([pool(), pool(minSize=0)])


def test_pool_node_labels() -> None:
    assert pool_node_labels(pool()) == {
        POOL_LABEL: "h100-mig",
        MIG_CONFIG_LABEL: "swarmstack-h100-mig",
    }
    assert pool_node_labels(whole_gpu_pool())[MIG_CONFIG_LABEL] == "all-disabled"


def test_pool_subnets_all_zones_or_the_pinned_one() -> None:
    assert pool_subnet_ids(pool(), SUBNETS, ZONES) == SUBNETS
    assert pool_subnet_ids(pool(availabilityZone="us-east-1b"), SUBNETS, ZONES) == ["subnet-0bbb"]
    assert pool_subnet_ids(pool(availabilityZone="us-east-1a"), SUBNETS, ZONES) == ["subnet-0aaa"]


def test_pool_subnets_unknown_zone_names_the_zone_and_the_choices() -> None:
    with pytest.raises(ValueError, match=r"'us-east-1d' .*us-east-1a, us-east-1b"):
        pool_subnet_ids(pool(availabilityZone="us-east-1d"), SUBNETS, ZONES)


def test_pool_subnets_need_one_subnet_per_zone() -> None:
    with pytest.raises(ValueError, match="1 subnets for 2 availability zones"):
        pool_subnet_ids(pool(), SUBNETS[:1], ZONES)


def tolerates(toleration: dict[str, Any], key: str, value: str, effect: str) -> bool:
    """Kubernetes' rule for whether a toleration matches a taint."""
    if toleration.get("effect") not in (None, "", effect):
        return False
    if toleration.get("key") not in (None, "", key):
        return False
    if toleration.get("operator", "Equal") == "Exists":
        return True
    return toleration.get("value") == value


def test_gpu_operator_values() -> None:
    values = gpu_operator_values(OPERATOR, COST)
    assert values["driver"] == {"enabled": False}
    assert values["toolkit"] == {"enabled": False}
    assert values["mig"] == {"strategy": "mixed"}
    assert values["migManager"]["enabled"] is True
    assert values["migManager"]["config"] == {
        "name": MIG_PARTED_CONFIGMAP,
        "default": "all-disabled",
        "create": False,
    }
    assert values["devicePlugin"]["enabled"] is True
    # The operator's own ServiceMonitor carries the label the monitoring release selects by.
    assert values["dcgmExporter"] == {
        "enabled": True,
        "serviceMonitor": {"enabled": True, "additionalLabels": STACK_MONITOR_LABELS},
    }
    assert values["cdi"] == {"enabled": False}
    assert values["daemonsets"]["labels"] == COST.as_labels()
    assert values["operator"]["labels"] == COST.as_labels()
    assert any(
        tolerates(t, GPU_TAINT.key, GPU_TAINT.value, GPU_TAINT.kubernetes_effect)
        for t in values["daemonsets"]["tolerations"]
    )
    # no key the v25.3 chart dropped
    assert "defaultRuntime" not in values.get("operator", {})


def test_gpu_operator_values_follow_the_strategy() -> None:
    single = GpuOperatorSpec.model_validate(
        {"chartVersion": CHART_VERSION, "migStrategy": "single"}
    )
    assert gpu_operator_values(single)["mig"] == {"strategy": "single"}
    assert "labels" not in gpu_operator_values(single)["daemonsets"]


# Instance types by GPU model, for the MIG GPUs.
MIG_INSTANCE_FOR: dict[str, str] = {
    str(t.gpu_model): name for name, t in sorted(INSTANCE_TYPES.items()) if t.mig_capable
}


@settings(max_examples=200, deadline=None)
@given(valid_layouts())
def test_property_mig_parted_counts_equal_layout_counts(
    case: tuple[str, list[str], Strategy],
) -> None:
    gpu, layout, strategy = case
    if strategy == "single":
        assert len(set(layout)) == 1
    assert layout, "the first candidate alone is always a valid layout"
    spec = pool(instanceType=MIG_INSTANCE_FOR[gpu], mig={"profiles": layout})
    doc = mig_parted_config([spec])
    # what the MIG manager reads is the YAML in the ConfigMap
    parsed = yaml.safe_load(yaml.safe_dump(doc, sort_keys=True))
    (entry,) = parsed["mig-configs"][mig_config_name(spec)]
    assert entry["devices"] == "all"
    assert entry["mig-enabled"] is True
    assert entry["mig-devices"] == dict(Counter(layout))
    assert sum(entry["mig-devices"].values()) == len(layout)


# --- components under the recording mock runtime -------------------------------------


def node_pool_capture(spec: GpuPoolSpec, *, with_dependency: bool = False) -> Capture:
    def program() -> None:
        depends: list[pulumi.Resource] = []
        if with_dependency:
            depends.append(
                aws.eks.Addon("vpc-cni", cluster_name="swarm-pilot", addon_name="vpc-cni")
            )
        pool_ = GpuNodePool(
            f"gpu-{spec.name}",
            GpuNodePoolArgs(
                spec=spec,
                cost_labels=COST,
                cluster_name="swarm-pilot",
                node_role_arn="arn:aws:iam::111122223333:role/swarm-pilot-nodes",
                subnet_ids=SUBNETS,
                availability_zones=ZONES,
                depends_on=depends,
            ),
        )
        pulumi.export("nodeGroupName", pool_.node_group.node_group_name)
        pulumi.export("migConfig", pool_.mig_config)

    return run(program)


def only(capture: Capture, type_: str) -> Registration:
    (registration,) = capture.of_type(type_)
    return registration


def test_node_pool_node_group() -> None:
    capture = node_pool_capture(pool())
    group = only(capture, NODE_GROUP).inputs
    assert group["amiType"] == "AL2023_x86_64_NVIDIA"
    assert group["instanceTypes"] == ["p5.4xlarge"]
    assert group["nodeGroupName"] == "h100-mig"
    assert group["clusterName"] == "swarm-pilot"
    assert group["scalingConfig"] == {"minSize": 1, "maxSize": 2, "desiredSize": 1}
    assert group["taints"] == [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}
    ]
    assert group["labels"] == {
        "swarmstack.io/pool": "h100-mig",
        "nvidia.com/mig.config": "swarmstack-h100-mig",
    }
    assert group["subnetIds"] == SUBNETS  # not pinned: every zone
    assert group["tags"] == {
        "team": "agent-platform",
        "cost-center": "cc-1042",
        "environment": "pilot",
        "managed-by": "swarmstack",
        "pool": "h100-mig",
        # What a node offers while the group is at zero (the Cluster Autoscaler reads these
        # tags of the node group through eks:DescribeNodegroup).
        "k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/mig-3g.40gb": "2",
        "k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu": "0",
    }
    # The instances, volumes and launch template carry the cost tags only.
    template = only(capture, LAUNCH_TEMPLATE).inputs
    assert not any(k.startswith("k8s.io/") for k in template["tags"])
    assert capture.outputs == {"nodeGroupName": "h100-mig", "migConfig": "swarmstack-h100-mig"}


def test_node_pool_launch_template_is_imdsv2_without_reservation() -> None:
    capture = node_pool_capture(pool())
    template = only(capture, LAUNCH_TEMPLATE)
    meta = template.inputs["metadataOptions"]
    assert meta["httpTokens"] == "required"
    assert meta["httpPutResponseHopLimit"] == 1
    assert "capacityReservationSpecification" not in template.inputs
    group = only(capture, NODE_GROUP)
    assert group.inputs["launchTemplate"]["id"] == f"{template.name}-id"
    assert template.urn in group.dependencies


def test_node_pool_pinned_to_its_reservation_zone() -> None:
    capture = node_pool_capture(
        pool(availabilityZone="us-east-1b", capacityReservationId=RESERVATION)
    )
    assert only(capture, NODE_GROUP).inputs["subnetIds"] == ["subnet-0bbb"]
    reservation = only(capture, LAUNCH_TEMPLATE).inputs["capacityReservationSpecification"]
    assert reservation == {"capacityReservationTarget": {"capacityReservationId": RESERVATION}}


def test_node_pool_unknown_zone_fails_before_registering() -> None:
    with pytest.raises(ValueError, match=r"'us-east-1c' is not a zone .*us-east-1a, us-east-1b"):
        node_pool_capture(pool(availabilityZone="us-east-1c"))


def test_node_pool_without_mig_selects_all_disabled() -> None:
    capture = node_pool_capture(whole_gpu_pool())
    group = only(capture, NODE_GROUP).inputs
    assert group["labels"][MIG_CONFIG_LABEL] == "all-disabled"
    assert group["instanceTypes"] == ["g6e.xlarge"]
    assert group["scalingConfig"] == {"minSize": 0, "maxSize": 3, "desiredSize": 0}


def test_node_pool_parentage_and_dependencies() -> None:
    capture = node_pool_capture(pool(), with_dependency=True)
    component = only(capture, "swarmstack:gpu:NodePool")
    assert component.name == "gpu-h100-mig"
    children = [r for r in capture.registrations if r.parent == component.urn]
    assert sorted(r.type for r in children) == [LAUNCH_TEMPLATE, NODE_GROUP]
    assert all(r.name.startswith(component.name) for r in children)
    addon = only(capture, "aws:eks/addon:Addon")
    assert addon.urn in only(capture, NODE_GROUP).dependencies


def operator_capture(pools: list[GpuPoolSpec]) -> Capture:
    def program() -> None:
        provider = k8s.Provider("k8s", kubeconfig="{}")
        GpuOperator(
            "gpu-operator",
            GpuOperatorArgs(spec=OPERATOR, pools=pools, cost_labels=COST),
            opts=pulumi.ResourceOptions(providers=[provider]),
        )

    return run(program)


def test_operator_children_parent_and_provider() -> None:
    capture = operator_capture([pool(), whole_gpu_pool()])
    component = only(capture, "swarmstack:gpu:Operator")
    provider = only(capture, "pulumi:providers:kubernetes")
    children = [r for r in capture.registrations if r.parent == component.urn]
    assert sorted(r.type for r in children) == sorted([NAMESPACE, CONFIG_MAP, RELEASE])
    others = [r for r in capture.registrations if r not in (component, provider)]
    assert others == children  # nothing is created outside the component
    for child in children:
        assert child.name.startswith(component.name)
        assert child.provider.startswith(f"{provider.urn}::"), child.provider


def test_operator_namespace() -> None:
    namespace = only(operator_capture([pool()]), NAMESPACE).inputs["metadata"]
    assert namespace["name"] == "gpu-operator"
    assert namespace["labels"] == {
        **COST.as_labels(),
        "pod-security.kubernetes.io/enforce": "privileged",
    }


def test_operator_mig_parted_config_map() -> None:
    pools = [pool(), whole_gpu_pool()]
    capture = operator_capture(pools)
    config_map = only(capture, CONFIG_MAP)
    assert config_map.inputs["metadata"]["name"] == MIG_PARTED_CONFIGMAP
    assert config_map.inputs["metadata"]["namespace"] == "gpu-operator"
    assert only(capture, NAMESPACE).urn in config_map.dependencies
    document = yaml.safe_load(config_map.inputs["data"]["config.yaml"])
    assert document == mig_parted_config(pools)
    assert document["mig-configs"]["swarmstack-h100-mig"][0]["mig-devices"] == {"3g.40gb": 2}


def test_operator_release() -> None:
    capture = operator_capture([pool()])
    release = only(capture, RELEASE)
    inputs = release.inputs
    assert inputs["chart"] == "gpu-operator"
    assert inputs["version"] == CHART_VERSION == "v26.7.0"
    assert inputs["repositoryOpts"] == {"repo": "https://helm.ngc.nvidia.com/nvidia"}
    assert inputs["namespace"] == "gpu-operator"
    # values reach Helm with the chart's own (camelCase) keys, untouched
    assert inputs["values"] == gpu_operator_values(OPERATOR, COST)
    assert inputs["values"]["migManager"]["config"]["name"] == MIG_PARTED_CONFIGMAP
    assert inputs["values"]["driver"]["enabled"] is False
    assert inputs["values"]["toolkit"]["enabled"] is False
    assert inputs["values"]["mig"]["strategy"] == "mixed"
    # the MIG manager must find its ConfigMap when it starts
    assert only(capture, CONFIG_MAP).urn in release.dependencies
