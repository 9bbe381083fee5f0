"""What swarmstack relies on in the Kubernetes `cluster-autoscaler` Helm chart
(kubernetes/autoscaler, `cluster-autoscaler/charts/cluster-autoscaler`), at the release it
was read.

`components.scale.cluster_autoscaler.cluster_autoscaler_values` renders Helm values for one
chart version, `CHART_VERSION`. Every value key path it may set is listed in `VALUE_KEYS`
with what the chart does with it at that release (its `values.yaml` and
`templates/deployment.yaml`, `templates/serviceaccount.yaml`); a test holds every key
path the component renders to this list, and the stack config accepts no other version.

Checked at chart 9.59.0 (tag `cluster-autoscaler-chart-9.59.0`, 2026-07-21, the latest):

- Its default image is v1.35.0. The Cluster Autoscaler's minor version must match the
  cluster's Kubernetes minor, so `image.tag` is set from `cluster.kubernetesVersion`
  (`IMAGE_TAGS`: the latest patch tag of each minor the stack config accepts).
- `autoDiscovery.clusterName` with `cloudProvider: aws` renders
  `--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,
  k8s.io/cluster-autoscaler/<cluster>`; EKS puts both tags on the Auto Scaling group of
  every managed node group, so each pool is found without listing it.
- AWS provider at these releases (`cloudprovider/aws/aws_manager.go`): for a group at zero
  nodes the template node takes CPU, memory and `nvidia.com/gpu` from the instance type;
  for an EKS managed node group (the ASG's `eks:nodegroup-name` and `eks:cluster-name`
  tags) it calls `eks:DescribeNodegroup` and adds the node group's labels, taints and the
  `k8s.io/cluster-autoscaler/node-template/resources/<name>` tags of the node group
  itself, which override the instance type's figures.
- `expanderPriorities` (`templates/priority-expander-configmap.yaml`): when
  `extraArgs.expander` is a comma list containing `priority` (`_helpers.tpl`,
  `cluster-autoscaler.priorityExpanderEnabled`) and the map is not empty, the chart renders
  ConfigMap `cluster-autoscaler-priority-expander` in the release namespace with
  `data.priorities` = each key (`| int`) and its list of regexes; `role.yaml` then adds
  list/watch on config maps and get/update/watch on that one. The expander
  (`expander/priority`) matches the regexes against node group ids, which for the AWS
  provider are Auto Scaling group names; a group no regex matches is never chosen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components import chart_values
from components.chart_values import ValueKey

CHART = "cluster-autoscaler"
CHART_VERSION = "9.59.0"
REPOSITORY = "https://kubernetes.github.io/autoscaler"
RELEASE = "cluster-autoscaler"
NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "cluster-autoscaler"

# Kubernetes minor -> the Cluster Autoscaler release tag of that minor (latest patch).
IMAGE_TAGS: dict[str, str] = {
    "1.31": "v1.31.5",
    "1.32": "v1.32.7",
    "1.33": "v1.33.6",
    "1.34": "v1.34.5",
}

VALUE_KEYS: dict[str, ValueKey] = {
    "cloudProvider": ValueKey("scalar", "aws: the AWS Auto Scaling group provider"),
    "awsRegion": ValueKey("scalar", "AWS_REGION of the autoscaler container"),
    "autoDiscovery.clusterName": ValueKey(
        "scalar",
        "turns on ASG auto-discovery by the tags k8s.io/cluster-autoscaler/enabled and "
        "k8s.io/cluster-autoscaler/<clusterName>",
    ),
    "image.tag": ValueKey("scalar", "the autoscaler image tag (its minor = the cluster's)"),
    "rbac.serviceAccount.name": ValueKey("scalar", "name of the ServiceAccount it creates"),
    "rbac.serviceAccount.annotations": ValueKey(
        "map", "annotations of that ServiceAccount (the IRSA role ARN)"
    ),
    "expanderPriorities": ValueKey(
        "map",
        "the priority expander's table (value -> list of node group id regexes), rendered "
        "as ConfigMap cluster-autoscaler-priority-expander (data key `priorities`) in the "
        "release namespace when extraArgs.expander lists `priority`; the chart also grants "
        "the autoscaler list/watch on it",
    ),
    "extraArgs": ValueKey(
        "map", "more --key=value flags of the autoscaler (merged over the chart's own)"
    ),
    "additionalLabels": ValueKey("map", "labels on every object of the chart"),
    "podLabels": ValueKey("map", "extra labels on the autoscaler's pods"),
    "securityContext": ValueKey("map", "the pod's securityContext"),
    "containerSecurityContext": ValueKey("map", "the container's securityContext"),
    "resources": ValueKey("map", "the container's resource requests and limits"),
}


def unchecked_value_paths(values: Mapping[str, Any]) -> list[str]:
    """Key paths of `values` that were not checked against the chart at CHART_VERSION."""
    return chart_values.unchecked_value_paths(values, VALUE_KEYS)
