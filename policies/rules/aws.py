"""AWS infrastructure: the EKS control plane and the nodes' instances and volumes.

A field that is absent means what AWS does without it: an EKS cluster without
endpointPublicAccess has a public endpoint open to 0.0.0.0/0 and no private
one, without enabledClusterLogTypes it logs nothing, a launch template without
metadataOptions.httpTokens allows IMDSv1, and a volume without `encrypted` is
encrypted only if the account's EBS-encryption-by-default happens to be on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs, StackValidationArgs

from policies.framework import Rule, as_dict, as_list, of_kind, reporter, stack_reporter

EKS_CLUSTER = "aws:eks/cluster:Cluster"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
EBS_VOLUME = "aws:ebs/volume:Volume"
EC2_INSTANCE = "aws:ec2/instance:Instance"
EKS_ADDON = "aws:eks/addon:Addon"
VPC_CNI = "vpc-cni"

CONTROL_PLANE_LOGS = ("api", "audit", "authenticator", "controllerManager", "scheduler")
OPEN_CIDRS = ("0.0.0.0/0", "::/0")


def _is_true(value: object) -> bool:
    """The provider carries some booleans as the strings "true"/"false"."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _encryption_configs(props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    # pulumi-aws 6+ has a single encryptionConfig block; 5.x had a list of them.
    config = props.get("encryptionConfig")
    listed = as_list(config)
    return [as_dict(c) for c in listed] if listed else [as_dict(config)]


# --------------------------------------------------------------------------- EKS


def _secrets_encryption(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != EKS_CLUSTER:
        return
    for config in _encryption_configs(args.props):
        resources = [str(r) for r in as_list(config.get("resources"))]
        if "secrets" in resources and as_dict(config.get("provider")).get("keyArn"):
            return
    reporter(args.resource_type, args.props, args.name, report)(
        "does not envelope-encrypt Kubernetes secrets with a KMS key (no encryptionConfig with "
        "resources [secrets] and provider.keyArn)"
    )


def _endpoint(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != EKS_CLUSTER:
        return
    say = reporter(args.resource_type, args.props, args.name, report)
    vpc = as_dict(args.props.get("vpcConfig"))
    if vpc.get("endpointPrivateAccess") is not True:
        say("endpointPrivateAccess is not true: nodes reach the API server over the internet")
    # EKS makes the endpoint public when endpointPublicAccess is absent, and open to
    # 0.0.0.0/0 when publicAccessCidrs is absent.
    if vpc.get("endpointPublicAccess") is False:
        return
    cidrs = [str(c) for c in as_list(vpc.get("publicAccessCidrs"))]
    if not cidrs:
        say("the public API endpoint is open to 0.0.0.0/0 (publicAccessCidrs is unset)")
    elif any(c in OPEN_CIDRS for c in cidrs):
        say("the public API endpoint is open to 0.0.0.0/0 (publicAccessCidrs includes it)")


def _logging(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != EKS_CLUSTER:
        return
    enabled = {str(t) for t in as_list(args.props.get("enabledClusterLogTypes"))}
    missing = [t for t in CONTROL_PLANE_LOGS if t not in enabled]
    if missing:
        reporter(args.resource_type, args.props, args.name, report)(
            f"does not log control plane {', '.join(missing)} (enabledClusterLogTypes)"
        )


# --------------------------------------------------------------------------- EC2


def _imdsv2(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != LAUNCH_TEMPLATE:
        return
    say = reporter(args.resource_type, args.props, args.name, report)
    options = as_dict(args.props.get("metadataOptions"))
    if options.get("httpEndpoint") == "disabled":
        return  # no instance metadata service at all: nothing to steal credentials from
    tokens = options.get("httpTokens")
    if tokens != "required":
        say(f"allows IMDSv1 (metadataOptions.httpTokens is {tokens or 'unset, i.e. optional'})")
    # Without httpPutResponseHopLimit a launch template's instances get AWS's default of 1,
    # so absent is as good as 1: a pod's extra network hop cannot reach the node's token.
    hops = options.get("httpPutResponseHopLimit")
    if hops is not None and int(hops) != 1:
        say(
            f"metadataOptions.httpPutResponseHopLimit is {int(hops)}: pods can reach the node "
            "role's credentials (use 1)"
        )


def _ebs(args: ResourceValidationArgs, report: ReportViolation) -> None:
    say = reporter(args.resource_type, args.props, args.name, report)
    if args.resource_type == LAUNCH_TEMPLATE:
        mappings = [as_dict(m) for m in as_list(args.props.get("blockDeviceMappings"))]
        if not mappings:
            say(
                "declares no blockDeviceMappings: the AMI's volumes are encrypted only if the "
                "account's EBS default encryption is on"
            )
        for mapping in mappings:
            if "ebs" not in mapping:
                continue  # an instance-store (virtualName) or suppressed (noDevice) mapping
            if not _is_true(as_dict(mapping.get("ebs")).get("encrypted")):
                say(f"volume {mapping.get('deviceName', '?')} is not encrypted (ebs.encrypted)")
    elif args.resource_type == EBS_VOLUME:
        if args.props.get("encrypted") is not True:
            say("is not encrypted (encrypted is not true)")
    elif args.resource_type == EC2_INSTANCE:
        if as_dict(args.props.get("rootBlockDevice")).get("encrypted") is not True:
            say("root volume is not encrypted (rootBlockDevice.encrypted is not true)")
        for item in as_list(args.props.get("ebsBlockDevices")):
            device = as_dict(item)
            if device.get("encrypted") is not True:
                say(f"volume {device.get('deviceName', '?')} is not encrypted (ebsBlockDevices)")


# --------------------------------------------------------------------------- NetworkPolicy


def _cni_enforcement(configuration: object) -> str | None:
    """Why a vpc-cni add-on's configurationValues leave NetworkPolicies unenforced; None
    when they turn the network policy agent on (`enableNetworkPolicy` is the string
    "true": the add-on's schema takes a string, and leaves enforcement off by default)."""
    if not configuration:
        return "has no configurationValues (enforcement is off by default)"
    try:
        values = json.loads(str(configuration))
    except ValueError:
        return f"configurationValues is not JSON ({str(configuration)[:60]!r})"
    flag = as_dict(values).get("enableNetworkPolicy")
    if flag == "true":
        return None
    if flag is None:
        return "configurationValues does not set enableNetworkPolicy (off by default)"
    return f'configurationValues sets enableNetworkPolicy to {flag!r}, not the string "true"'


def _network_policy_enforced(args: StackValidationArgs, report: ReportViolation) -> None:
    count = sum(1 for _ in of_kind(args.resources, "NetworkPolicy"))
    if count == 0:
        return
    addons = [
        r
        for r in args.resources
        if r.resource_type == EKS_ADDON and r.props.get("addonName") == VPC_CNI
    ]
    problems = [(r, _cni_enforcement(r.props.get("configurationValues"))) for r in addons]
    if any(problem is None for _, problem in problems):
        return
    for r, problem in problems:
        stack_reporter(r, report)(
            f"{problem}: the stack's {count} NetworkPolicies are not enforced"
        )
    if not addons and not args.get_config().get("attestedEnforcer"):
        report(
            f"the stack declares {count} NetworkPolicies but no CNI that enforces them (no "
            f"{VPC_CNI} add-on with enableNetworkPolicy): on a cluster this stack does not "
            "build, name the CNI that enforces them in this rule's attestedEnforcer",
            None,
        )


RULES: list[Rule] = [
    Rule(
        "network-policy-enforced",
        "aws",
        "A stack that declares NetworkPolicies runs a CNI that enforces them: the EKS vpc-cni "
        'add-on only with configurationValues {"enableNetworkPolicy": "true"} (version 1.14 or '
        "later); without it every policy is accepted and ignored.",
        'Set the vpc-cni add-on\'s configurationValues to {"enableNetworkPolicy": "true"}; on '
        "a cluster the stack does not build, set this rule's attestedEnforcer to the CNI that "
        "enforces them.",
        check_stack=_network_policy_enforced,
        config={
            "attestedEnforcer": {
                "type": "string",
                "default": "",
                "description": "The CNI that enforces NetworkPolicies on a cluster this stack "
                "does not build (e.g. calico, cilium); empty: the stack must declare it.",
            }
        },
    ),
    Rule(
        "eks-secrets-encryption",
        "aws",
        "EKS envelope-encrypts Kubernetes secrets with a customer KMS key.",
        "Set encryptionConfig: {resources: [secrets], provider: {keyArn: <KMS key ARN>}}.",
        check=_secrets_encryption,
    ),
    Rule(
        "eks-endpoint-restricted",
        "aws",
        "The EKS API endpoint is private, and if also public (the default) only to listed "
        "CIDRs, never 0.0.0.0/0 (the default when none are listed).",
        "Set vpcConfig.endpointPrivateAccess: true, and either endpointPublicAccess: false or "
        "publicAccessCidrs listing the operators' networks.",
        check=_endpoint,
    ),
    Rule(
        "eks-control-plane-logging",
        "aws",
        "EKS sends every control plane log type to CloudWatch: api, audit, authenticator, "
        "controllerManager, scheduler.",
        "Set enabledClusterLogTypes to all five and create the /aws/eks/<cluster>/cluster log "
        "group with a retention.",
        check=_logging,
    ),
    Rule(
        "launch-template-imdsv2",
        "aws",
        "Launch templates require IMDSv2 tokens with a hop limit of 1, so pods cannot take the "
        "node role's credentials.",
        "Set metadataOptions: {httpTokens: required, httpPutResponseHopLimit: 1}.",
        check=_imdsv2,
    ),
    Rule(
        "ebs-encrypted",
        "aws",
        "Every EBS volume is encrypted explicitly: launch template block devices, volumes and "
        "instance root volumes (the account default is not a guarantee).",
        'Set ebs.encrypted: "true" on every launch template block device mapping, encrypted: '
        "true on volumes and rootBlockDevice.encrypted: true on instances.",
        check=_ebs,
    ),
]
