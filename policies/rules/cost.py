"""Cost attribution: who pays for every pod, namespace and billable AWS resource.

Kubernetes cost tools (Kubecost, OpenCost, the EKS split cost allocation) read
labels of pods, so the label has to be on the pod template, not only on the
Deployment; a namespace label is the fallback they use. On AWS, Cost Explorer
reads resource tags: the provider's `defaultTags` count (they are merged into
every resource's tags), but they do not reach what an EKS node group launches.
Instances and their volumes are tagged only through the launch template's
`tagSpecifications`. A label or tag with an empty value attributes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import PolicyProviderResource, ReportViolation, ResourceValidationArgs

from policies.framework import (
    Rule,
    Workload,
    as_dict,
    as_list,
    for_workloads,
    k8s_kind,
    metadata_of,
    reporter,
)

COST_KEYS = ["team", "cost-center", "environment"]
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
BILLABLE_AWS_TYPES = {
    "aws:eks/cluster:Cluster",
    "aws:eks/nodeGroup:NodeGroup",
    LAUNCH_TEMPLATE,
    "aws:ec2/natGateway:NatGateway",
    "aws:ec2/eip:Eip",
    "aws:ec2/vpcEndpoint:VpcEndpoint",
    "aws:ec2/instance:Instance",
    "aws:ebs/volume:Volume",
    "aws:kms/key:Key",
    "aws:cloudwatch/logGroup:LogGroup",
    "aws:elasticache/replicationGroup:ReplicationGroup",
    "aws:msk/cluster:Cluster",
    "aws:s3/bucket:Bucket",
    "aws:s3/bucketV2:BucketV2",
}


def _missing(values: Mapping[str, Any], required: Sequence[Any]) -> list[str]:
    return [str(k) for k in required if not str(values.get(str(k)) or "").strip()]


def _workload_labels(w: Workload, config: Mapping[str, Any]) -> None:
    missing = _missing(w.pod_labels, as_list(config.get("requiredLabels")))
    if missing:
        w.report(f"pod template lacks cost labels {', '.join(missing)}")


def _namespace_labels(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if k8s_kind(args.resource_type) != "Namespace":
        return
    labels = as_dict(metadata_of(args.props).get("labels"))
    missing = _missing(labels, as_list(args.get_config().get("requiredLabels")))
    if missing:
        reporter(args.resource_type, args.props, args.name, report)(
            f"lacks cost labels {', '.join(missing)}"
        )


def _default_tags(provider: PolicyProviderResource | None) -> Mapping[str, Any]:
    """The AWS provider's defaultTags.tags (provider inputs may arrive JSON-encoded)."""
    if provider is None:
        return {}
    default_tags: Any = as_dict(provider.props).get("defaultTags")
    if isinstance(default_tags, str):
        try:
            default_tags = json.loads(default_tags)
        except ValueError:
            return {}
    return as_dict(as_dict(default_tags).get("tags"))


def _aws_tags(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in BILLABLE_AWS_TYPES:
        return
    config = args.get_config()
    required = as_list(config.get("requiredTags"))
    say = reporter(args.resource_type, args.props, args.name, report)
    tags = {**_default_tags(args.provider), **as_dict(args.props.get("tags"))}
    missing = _missing(tags, required)
    if missing:
        say(f"lacks cost tags {', '.join(missing)}")
    if args.resource_type != LAUNCH_TEMPLATE:
        return
    # The provider's defaultTags do not reach tagSpecifications: read them alone.
    specs = [as_dict(s) for s in as_list(args.props.get("tagSpecifications"))]
    for kind in as_list(config.get("tagSpecificationResourceTypes")):
        tagged = [as_dict(s.get("tags")) for s in specs if s.get("resourceType") == kind]
        if not tagged:
            say(f"has no tagSpecifications for resourceType {kind}, so its {kind}s are untagged")
            continue
        missing = _missing({k: v for t in tagged for k, v in t.items()}, required)
        if missing:
            say(f"tagSpecifications for resourceType {kind} lack cost tags {', '.join(missing)}")


def _key_list(default: list[str], description: str) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"type": "string"},
        "default": default,
        "description": description,
    }


RULES = [
    Rule(
        "cost-labels-on-workloads",
        "cost",
        "Pod templates carry the cost labels (team, cost-center, environment): cost tools read "
        "pods, not their controllers.",
        "Add the labels to spec.template.metadata.labels (the stack's costLabels do this).",
        check=for_workloads(_workload_labels),
        config={"requiredLabels": _key_list(COST_KEYS, "Labels every pod template carries.")},
    ),
    Rule(
        "cost-labels-on-namespaces",
        "cost",
        "Namespaces carry the cost labels (team, cost-center, environment).",
        "Add the labels to the Namespace's metadata.labels.",
        check=_namespace_labels,
        config={"requiredLabels": _key_list(COST_KEYS, "Labels every Namespace carries.")},
    ),
    Rule(
        "cost-tags-on-aws",
        "cost",
        "AWS resources that cost money carry the cost tags (team, cost-center, environment); "
        "launch templates also tag the instances and volumes they launch.",
        "Set tags (or the provider's defaultTags); on launch templates add tagSpecifications "
        "for instance and volume with the same tags.",
        check=_aws_tags,
        config={
            "requiredTags": _key_list(COST_KEYS, "Tags every billable AWS resource carries."),
            "tagSpecificationResourceTypes": _key_list(
                ["instance", "volume"],
                "Resource types a launch template must tag through tagSpecifications.",
            ),
        },
    ),
]
