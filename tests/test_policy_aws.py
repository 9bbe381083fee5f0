"""AWS rules: the EKS control plane and the nodes' metadata service and volumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest

from components.compute.cluster import VPC_CNI_CONFIGURATION
from policies.rules.aws import RULES
from stacks.plan.policy import Violation, evaluate
from stacks.plan.recorder import run
from stacks.plan.runner import read_program_input, run_program
from tests.policy_support import messages, violations

ROOT = Path(__file__).resolve().parent.parent
KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/secrets"
LOGS = ["api", "audit", "authenticator", "controllerManager", "scheduler"]


def _only(found: list[Violation], rule: str) -> list[str]:
    """The messages, after checking every violation is this rule's and mandatory."""
    assert {v.rule for v in found} <= {rule}
    assert {v.level for v in found} <= {"mandatory"}
    return [v.message for v in found]


# --------------------------------------------------------------------------- EKS


def _cluster(vpc: dict[str, Any] | None = None, **changes: Any) -> aws.eks.Cluster:
    args: dict[str, Any] = {
        "role_arn": "arn:aws:iam::111122223333:role/eks",
        "vpc_config": {
            "subnet_ids": ["subnet-a", "subnet-b"],
            "endpoint_private_access": True,
            "endpoint_public_access": True,
            "public_access_cidrs": ["203.0.113.0/24"],
            **(vpc or {}),
        },
        "encryption_config": {"resources": ["secrets"], "provider": {"key_arn": KEY_ARN}},
        "enabled_cluster_log_types": LOGS,
    }
    args.update(changes)
    return aws.eks.Cluster("eks", **args)


def test_hardened_cluster_passes_every_eks_rule() -> None:
    for rule in ("eks-secrets-encryption", "eks-endpoint-restricted", "eks-control-plane-logging"):
        assert messages(_cluster, rule) == [], rule


def test_cluster_without_secrets_encryption_fails() -> None:
    for config in (None, {"resources": ["secrets"]}):
        found = violations(lambda c=config: _cluster(encryption_config=c), "eks-secrets-encryption")
        assert _only(found, "eks-secrets-encryption") == [
            "Cluster eks: does not envelope-encrypt Kubernetes secrets with a KMS key (no "
            "encryptionConfig with resources [secrets] and provider.keyArn)"
        ]
        assert found[0].resource.endswith("::eks")


def test_private_only_endpoint_passes() -> None:
    vpc = {"endpoint_public_access": False, "public_access_cidrs": None}
    assert messages(lambda: _cluster(vpc), "eks-endpoint-restricted") == []


@pytest.mark.parametrize(
    "vpc,expected",
    [
        (
            {"endpoint_private_access": None},
            ["endpointPrivateAccess is not true: nodes reach the API server over the internet"],
        ),
        (
            # AWS defaults: public endpoint, open to the world, no private endpoint.
            {"endpoint_private_access": None, "endpoint_public_access": None,
             "public_access_cidrs": None},
            ["endpointPrivateAccess is not true: nodes reach the API server over the internet",
             "the public API endpoint is open to 0.0.0.0/0 (publicAccessCidrs is unset)"],
        ),
        (
            {"public_access_cidrs": ["203.0.113.0/24", "0.0.0.0/0"]},
            ["the public API endpoint is open to 0.0.0.0/0 (publicAccessCidrs includes it)"],
        ),
    ],
    ids=["no-private", "aws-defaults", "open-cidr"],
)  # fmt: skip
def test_public_or_non_private_endpoint_fails(vpc: dict[str, Any], expected: list[str]) -> None:
    found = violations(lambda: _cluster(vpc), "eks-endpoint-restricted")
    assert _only(found, "eks-endpoint-restricted") == [f"Cluster eks: {m}" for m in expected]


def test_missing_control_plane_logs_are_listed() -> None:
    found = violations(
        lambda: _cluster(enabled_cluster_log_types=["api", "audit"]), "eks-control-plane-logging"
    )
    assert _only(found, "eks-control-plane-logging") == [
        "Cluster eks: does not log control plane authenticator, controllerManager, scheduler "
        "(enabledClusterLogTypes)"
    ]
    assert messages(
        lambda: _cluster(enabled_cluster_log_types=None), "eks-control-plane-logging"
    ) == [
        "Cluster eks: does not log control plane api, audit, authenticator, controllerManager, "
        "scheduler (enabledClusterLogTypes)"
    ]


# --------------------------------------------------------------------------- launch templates

ENCRYPTED_ROOT = {
    "device_name": "/dev/xvda",
    "ebs": {"volume_size": 100, "volume_type": "gp3", "encrypted": "true"},
}


def _launch_template(**changes: Any) -> aws.ec2.LaunchTemplate:
    args: dict[str, Any] = {
        "name_prefix": "gpu-",
        "metadata_options": {
            "http_endpoint": "enabled",
            "http_tokens": "required",
            "http_put_response_hop_limit": 1,
        },
        "block_device_mappings": [ENCRYPTED_ROOT],
    }
    args.update(changes)
    return aws.ec2.LaunchTemplate("nodes", **args)


def test_imdsv2_launch_template_passes() -> None:
    assert messages(_launch_template, "launch-template-imdsv2") == []
    # No hop limit: AWS gives the template's instances 1.
    default_hops = {"metadata_options": {"http_tokens": "required"}}
    assert messages(lambda: _launch_template(**default_hops), "launch-template-imdsv2") == []
    no_imds = {"metadata_options": {"http_endpoint": "disabled"}}
    assert messages(lambda: _launch_template(**no_imds), "launch-template-imdsv2") == []


@pytest.mark.parametrize(
    "options,expected",
    [
        (None, ["allows IMDSv1 (metadataOptions.httpTokens is unset, i.e. optional)"]),
        (
            {"http_tokens": "optional", "http_put_response_hop_limit": 2},
            ["allows IMDSv1 (metadataOptions.httpTokens is optional)",
             "metadataOptions.httpPutResponseHopLimit is 2: pods can reach the node role's "
             "credentials (use 1)"],
        ),
    ],
    ids=["unset", "optional-hop-2"],
)  # fmt: skip
def test_imdsv1_or_wide_hop_limit_fails(
    options: dict[str, Any] | None, expected: list[str]
) -> None:
    found = violations(lambda: _launch_template(metadata_options=options), "launch-template-imdsv2")
    assert _only(found, "launch-template-imdsv2") == [
        f"LaunchTemplate nodes: {m}" for m in expected
    ]
    assert found[0].resource.endswith("::nodes")


# --------------------------------------------------------------------------- ebs-encrypted


def test_encrypted_volumes_pass() -> None:
    def program() -> None:
        _launch_template()
        aws.ebs.Volume("data", availability_zone="us-east-1a", size=100, encrypted=True)
        aws.ec2.Instance(
            "bastion",
            ami="ami-0123456789abcdef0",
            instance_type="t3.micro",
            root_block_device={"encrypted": True, "volume_size": 20},
            ebs_block_devices=[{"device_name": "/dev/sdf", "encrypted": True}],
        )

    assert messages(program, "ebs-encrypted") == []


def test_unencrypted_volumes_fail() -> None:
    def program() -> None:
        _launch_template(
            block_device_mappings=[
                {**ENCRYPTED_ROOT, "ebs": {"volume_size": 100, "encrypted": "false"}},
                {"device_name": "/dev/xvdb", "ebs": {"volume_size": 500}},
                {"device_name": "/dev/sdc", "virtual_name": "ephemeral0"},
            ]
        )
        aws.ebs.Volume("data", availability_zone="us-east-1a", size=100)
        aws.ec2.Instance("bastion", ami="ami-0123456789abcdef0", instance_type="t3.micro")

    found = violations(program, "ebs-encrypted")
    assert sorted(_only(found, "ebs-encrypted")) == [
        "Instance bastion: root volume is not encrypted (rootBlockDevice.encrypted is not true)",
        "LaunchTemplate nodes: volume /dev/xvda is not encrypted (ebs.encrypted)",
        "LaunchTemplate nodes: volume /dev/xvdb is not encrypted (ebs.encrypted)",
        "Volume data: is not encrypted (encrypted is not true)",
    ]


def test_launch_template_without_block_devices_leaves_encryption_to_the_account() -> None:
    assert messages(lambda: _launch_template(block_device_mappings=None), "ebs-encrypted") == [
        "LaunchTemplate nodes: declares no blockDeviceMappings: the AMI's volumes are encrypted "
        "only if the account's EBS default encryption is on"
    ]


# --------------------------------------------------------------------------- the pilot


def test_secret_inputs_never_reach_messages() -> None:
    def program() -> None:
        secret = pulumi.Output.secret("s3cr3t-value")
        _cluster(vpc={"endpoint_private_access": False}, encryption_config=None, name=secret)
        _launch_template(metadata_options=None, user_data=secret, block_device_mappings=None)

    found = evaluate(run(program).registrations, {}, RULES)
    assert len(found) == 4
    assert all("s3cr3t-value" not in v.message for v in found)


def test_pilot_plan_violates_no_aws_rule() -> None:
    capture = run_program(read_program_input(ROOT, "pilot"))
    found = evaluate(capture.registrations, {}, RULES)
    assert [str(v) for v in found if v.level == "mandatory"] == []
    assert {r.type for r in capture.registrations} >= {
        "aws:eks/cluster:Cluster",
        "aws:ec2/launchTemplate:LaunchTemplate",
    }


# --------------------------------------------------------------------------- NetworkPolicy


def _deny_all(configuration: str | None, *, addon: bool = True) -> None:
    """A default-deny NetworkPolicy, and (optionally) the vpc-cni add-on that would enforce it."""
    k8s.networking.v1.NetworkPolicy(
        "deny",
        metadata={"name": "deny", "namespace": "agents"},
        spec=cast(Any, {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
    )
    if addon:
        aws.eks.Addon(
            "cni",
            cluster_name="c",
            addon_name="vpc-cni",
            addon_version="v1.19.5-eksbuild.1",
            configuration_values=configuration,
        )


def test_the_cluster_component_turns_enforcement_on_as_the_rule_demands() -> None:
    configuration = json.dumps(VPC_CNI_CONFIGURATION)
    assert messages(lambda: _deny_all(configuration), "network-policy-enforced") == []


@pytest.mark.parametrize(
    "configuration,problem",
    [
        (None, "has no configurationValues (enforcement is off by default)"),
        ('{"warmIpTarget": "2"}', "configurationValues does not set enableNetworkPolicy (off "
                                  "by default)"),
        ('{"enableNetworkPolicy": true}', "configurationValues sets enableNetworkPolicy to "
                                          "True, not the string \"true\""),
        ('{"enableNetworkPolicy": "false"}', "configurationValues sets enableNetworkPolicy to "
                                             "'false', not the string \"true\""),
    ],
    ids=["unset", "other-keys", "boolean", "false"],
)  # fmt: skip
def test_a_cni_that_leaves_enforcement_off_is_named(
    configuration: str | None, problem: str
) -> None:
    found = violations(lambda: _deny_all(configuration), "network-policy-enforced")
    assert _only(found, "network-policy-enforced") == [
        f"Addon cni: {problem}: the stack's 1 NetworkPolicies are not enforced"
    ]


def test_policies_without_any_cni_need_an_attested_enforcer() -> None:
    (message,) = messages(lambda: _deny_all(None, addon=False), "network-policy-enforced")
    assert message.startswith("the stack declares 1 NetworkPolicies but no CNI that enforces")
    attested = {"network-policy-enforced": {"attestedEnforcer": "cilium"}}
    program = lambda: _deny_all(None, addon=False)  # noqa: E731
    assert messages(program, "network-policy-enforced", attested) == []


def test_a_stack_without_network_policies_needs_no_enforcement() -> None:
    def cni_only() -> None:
        aws.eks.Addon("cni", cluster_name="c", addon_name="vpc-cni", addon_version="v1.19.5")

    assert messages(cni_only, "network-policy-enforced") == []
