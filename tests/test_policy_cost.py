"""Cost rules: cost labels on pod templates and namespaces, cost tags on billable AWS resources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from policies.pack import rules_by_name
from policies.rules.cost import RULES
from stacks.plan.policy import evaluate
from stacks.plan.runner import read_program_input, run_program
from tests.policy_support import COST_LABELS, deployment, messages, restricted_pod, violations

ROOT = Path(__file__).resolve().parent.parent
TAGS = {"team": "agents", "cost-center": "cc-1", "environment": "test"}


def unlabelled_deployment(labels: dict[str, str]) -> k8s.apps.v1.Deployment:
    """A Deployment whose controller carries the cost labels but whose pod template has `labels`."""
    spec: Any = {
        "selector": {"matchLabels": {"app": "worker"}},
        "template": {"metadata": {"labels": {"app": "worker", **labels}}, "spec": restricted_pod()},
    }
    return k8s.apps.v1.Deployment(
        "worker",
        metadata={"name": "worker", "namespace": "agents", "labels": COST_LABELS},
        spec=spec,
    )


# ------------------------------------------------------------------------- cost-labels-on-workloads


def test_pod_templates_with_cost_labels_pass() -> None:
    def program() -> None:
        deployment()
        template = {
            "metadata": {"labels": COST_LABELS},
            "spec": restricted_pod(restartPolicy="Never"),
        }
        spec: Any = {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": template}}}
        k8s.batch.v1.CronJob(
            "nightly", metadata={"name": "nightly", "namespace": "agents"}, spec=spec
        )

    assert violations(program, "cost-labels-on-workloads") == []


def test_pod_templates_without_cost_labels_fail() -> None:
    found = violations(
        lambda: unlabelled_deployment({"team": "agents", "environment": " "}),
        "cost-labels-on-workloads",
    )
    assert [(v.rule, v.level) for v in found] == [("cost-labels-on-workloads", "mandatory")]
    # Labels on the Deployment itself do not count; a blank value attributes nothing.
    assert found[0].message == (
        "Deployment agents/worker (worker): pod template lacks cost labels cost-center, environment"
    )


def test_required_labels_come_from_config() -> None:
    config = {"cost-labels-on-workloads": {"requiredLabels": ["team", "owner"]}}
    assert messages(deployment, "cost-labels-on-workloads", config) == [
        "Deployment agents/app (app): pod template lacks cost labels owner"
    ]
    assert (
        violations(
            lambda: unlabelled_deployment({"team": "x"}),
            "cost-labels-on-workloads",
            {"cost-labels-on-workloads": {"requiredLabels": ["team"]}},
        )
        == []
    )


# ------------------------------------------------------------------------ cost-labels-on-namespaces


def namespace(name: str, labels: dict[str, str]) -> k8s.core.v1.Namespace:
    return k8s.core.v1.Namespace(f"{name}-ns", metadata={"name": name, "labels": labels})


def test_namespaces_with_cost_labels_pass() -> None:
    assert violations(lambda: namespace("agents", COST_LABELS), "cost-labels-on-namespaces") == []


def test_namespaces_without_cost_labels_fail() -> None:
    def program() -> None:
        namespace("agents", {"team": "agents"})
        deployment(pod=restricted_pod())  # not a namespace: not this rule's business

    found = violations(program, "cost-labels-on-namespaces")
    assert [(v.rule, v.level) for v in found] == [("cost-labels-on-namespaces", "mandatory")]
    assert (
        found[0].message
        == "Namespace agents (agents-ns): lacks cost labels cost-center, environment"
    )
    config = {"cost-labels-on-namespaces": {"requiredLabels": ["team"]}}
    assert violations(program, "cost-labels-on-namespaces", config) == []


# --------------------------------------------------------------------------------- cost-tags-on-aws


def node_group(tags: dict[str, str] | None) -> aws.eks.NodeGroup:
    return aws.eks.NodeGroup(
        "gpu",
        cluster_name="swarm-test",
        node_role_arn="arn:aws:iam::111122223333:role/node",
        subnet_ids=["subnet-a"],
        instance_types=["p5.4xlarge"],
        scaling_config=aws.eks.NodeGroupScalingConfigArgs(min_size=0, max_size=1, desired_size=0),
        tags=tags,
    )


def launch_template(
    tags: dict[str, str], specs: dict[str, dict[str, str]]
) -> aws.ec2.LaunchTemplate:
    return aws.ec2.LaunchTemplate(
        "gpu-lt",
        name_prefix="gpu-",
        tags=tags,
        tag_specifications=[
            aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=kind_tags)
            for kind, kind_tags in specs.items()
        ],
    )


def test_tagged_billable_resources_pass() -> None:
    def program() -> None:
        node_group(TAGS)
        launch_template(TAGS, {"instance": TAGS, "volume": {**TAGS, "Name": "gpu"}})
        aws.s3.Bucket("weights", tags=TAGS)
        aws.kms.Key("secrets", tags=TAGS)
        aws.cloudwatch.LogGroup("logs", tags=TAGS)
        # Not billable by itself: needs no tags.
        aws.ec2.SecurityGroup("endpoints", vpc_id="vpc-1")

    assert violations(program, "cost-tags-on-aws") == []


def test_untagged_billable_resources_fail() -> None:
    def program() -> None:
        node_group(None)
        aws.s3.Bucket("weights", tags={**TAGS, "cost-center": ""})
        aws.ec2.Eip("nat", domain="vpc", tags={"team": "agents"})

    found = violations(program, "cost-tags-on-aws")
    assert [(v.rule, v.level) for v in found] == [("cost-tags-on-aws", "mandatory")] * 3
    assert sorted(v.message for v in found) == sorted(
        [
            "NodeGroup gpu: lacks cost tags team, cost-center, environment",
            "Bucket weights: lacks cost tags cost-center",
            "Eip nat: lacks cost tags cost-center, environment",
        ]
    )


def test_launch_templates_tag_instances_and_volumes() -> None:
    def program() -> None:
        launch_template(TAGS, {"instance": TAGS, "network-interface": TAGS})
        aws.ec2.LaunchTemplate(
            "cpu-lt",
            tags=TAGS,
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(
                    resource_type="instance", tags={"team": "a"}
                ),
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type="volume", tags=TAGS),
            ],
        )

    found = violations(program, "cost-tags-on-aws")
    assert [v.rule for v in found] == ["cost-tags-on-aws"] * 2
    assert sorted(v.message for v in found) == sorted(
        [
            "LaunchTemplate gpu-lt: has no tagSpecifications for resourceType volume, so its "
            "volumes are untagged",
            "LaunchTemplate cpu-lt: tagSpecifications for resourceType instance lack cost tags "
            "cost-center, environment",
        ]
    )


def test_required_tags_come_from_config() -> None:
    config = {"cost-tags-on-aws": {"requiredTags": ["team", "owner"]}}
    assert messages(lambda: node_group(TAGS), "cost-tags-on-aws", config) == [
        "NodeGroup gpu: lacks cost tags owner"
    ]


def test_the_providers_default_tags_count_except_in_tag_specifications() -> None:
    """The offline plan has no provider; the Pulumi CLI passes it, defaultTags JSON-encoded."""
    policy = rules_by_name()["cost-tags-on-aws"].policy()
    assert isinstance(policy, ResourceValidationPolicy)
    provider = PolicyProviderResource(
        "pulumi:providers:aws",
        {
            "region": "us-east-1",
            "defaultTags": '{"tags": {"team": "a", "cost-center": "c", "environment": "e"}}',
        },
        "urn:pulumi:test::swarmstack::pulumi:providers:aws::default",
        "default",
    )
    options = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
    found: list[str] = []

    def check(type_: str, name: str, props: dict[str, Any]) -> None:
        args = ResourceValidationArgs(type_, props, f"urn:{name}", name, options, provider, {}, {})
        policy.validate(args, lambda message, _urn=None: found.append(message))

    check("aws:kms/key:Key", "secrets", {"description": "no tags of its own"})
    assert found == []
    check(
        "aws:ec2/launchTemplate:LaunchTemplate",
        "lt",
        {"tagSpecifications": [{"resourceType": "instance", "tags": {}}]},
    )
    assert found == [
        "LaunchTemplate lt: tagSpecifications for resourceType instance lack cost tags team, "
        "cost-center, environment",
        "LaunchTemplate lt: has no tagSpecifications for resourceType volume, so its volumes are "
        "untagged",
    ]


# --------------------------------------------------------------------------- the pilot stack


def test_pilot_plan_breaks_no_cost_rule() -> None:
    capture = run_program(read_program_input(ROOT, "pilot"))
    assert [str(v) for v in evaluate(capture.registrations, {}, RULES)] == []
