"""IAM roles for Kubernetes service accounts (IRSA): one role per service account, trusted
by the cluster's OIDC provider for exactly that account, with one inline policy.

Every component that gives a pod AWS access (model weights from S3, Qdrant snapshots,
the MSK topic Job) declares its role through `irsa_role`, so the trust policy and the
shape of the role are the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.compute.cluster import irsa_trust_policy

ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"


@dataclass(frozen=True)
class Irsa:
    """The cluster's OIDC provider, for IAM roles for service accounts."""

    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]  # host/path, without https://


def irsa_role(
    irsa: Irsa,
    *,
    role_name: str,
    policy_name: str,
    namespace: str,
    service_account: str,
    policy: pulumi.Input[str],
    description: str,
    tags: dict[str, str],
    parent: pulumi.Resource,
) -> aws.iam.Role:
    """A role only `namespace/service_account` may assume, with `policy` inline.

    `role_name` and `policy_name` are the Pulumi resource names (kept per component so
    existing stacks keep their URNs)."""
    trust = pulumi.Output.all(irsa.oidc_provider_arn, irsa.oidc_issuer).apply(
        lambda v: irsa_trust_policy(str(v[0]), str(v[1]), namespace, service_account)
    )
    role = aws.iam.Role(
        role_name,
        description=description,
        assume_role_policy=trust,
        tags=tags,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    aws.iam.RolePolicy(
        policy_name,
        role=role.id,
        policy=policy,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return role
