"""Changes the engine cannot make in place: the resource is deleted and created again.

Kubernetes refuses updates to these fields (the API server answers `field is immutable`),
so pulumi-kubernetes replaces the object; for AWS the pulumi-aws provider marks these
inputs "forces new" (from its Terraform schema, `ForceNew: true`). `swarmstack diff` flags a
changed property at, or under, one of these paths. Paths are the plan's input paths
(camelCase, as in `aws-resources.yaml` and the manifests); `*` stands for any type.

Fields that newer provider releases update in place are deliberately not listed (EKS
`vpcConfig.subnetIds` and `securityGroupIds` are updated through UpdateClusterConfig).
"""

from __future__ import annotations

from dataclasses import dataclass

K8S_DOCS = "https://kubernetes.io/docs/reference/kubernetes-api/"
AWS_DOCS = "https://www.pulumi.com/registry/packages/aws/api-docs/"


@dataclass(frozen=True)
class ForcesReplacement:
    """A property path of a resource type whose change replaces the resource."""

    type: str  # a Pulumi type token, or "kubernetes:*" for every Kubernetes object
    path: str  # dotted input path; list items are matched at any index
    why: str
    # Paths under `path` that are updated in place after all.
    except_paths: tuple[str, ...] = ()


def _k8s(type_: str, path: str, why: str, *, but: tuple[str, ...] = ()) -> ForcesReplacement:
    return ForcesReplacement(f"kubernetes:{type_}", path, why, but)


def _aws(type_: str, *paths: str) -> list[ForcesReplacement]:
    return [
        ForcesReplacement(f"aws:{type_}", p, "pulumi-aws: forces a new resource") for p in paths
    ]


KUBERNETES: list[ForcesReplacement] = [
    _k8s("*", "metadata.name", "an object's name is its identity"),
    _k8s("*", "metadata.namespace", "an object cannot move between namespaces"),
    _k8s("apps/v1:Deployment", "spec.selector", "a Deployment's selector is immutable"),
    _k8s("apps/v1:StatefulSet", "spec.selector", "a StatefulSet's selector is immutable"),
    _k8s(
        "apps/v1:StatefulSet",
        "spec.volumeClaimTemplates",
        "a StatefulSet's volume claim templates are immutable",
    ),
    _k8s("apps/v1:StatefulSet", "spec.serviceName", "a StatefulSet's serviceName is immutable"),
    _k8s(
        "apps/v1:StatefulSet",
        "spec.podManagementPolicy",
        "a StatefulSet's podManagementPolicy is immutable",
    ),
    _k8s("apps/v1:DaemonSet", "spec.selector", "a DaemonSet's selector is immutable"),
    _k8s("core/v1:Service", "spec.clusterIP", "a Service's clusterIP is immutable"),
    _k8s("batch/v1:Job", "spec.template", "a Job's pod template is immutable"),
    _k8s("batch/v1:Job", "spec.selector", "a Job's selector is immutable"),
    _k8s(
        "core/v1:PersistentVolumeClaim",
        "spec",
        "a bound claim's spec is immutable except its storage request",
        but=("spec.resources.requests.storage",),
    ),
    _k8s("storage.k8s.io/v1:StorageClass", "provisioner", "a StorageClass is immutable"),
    _k8s("storage.k8s.io/v1:StorageClass", "parameters", "a StorageClass is immutable"),
    _k8s("storage.k8s.io/v1:StorageClass", "reclaimPolicy", "a StorageClass is immutable"),
    _k8s("storage.k8s.io/v1:StorageClass", "volumeBindingMode", "a StorageClass is immutable"),
    _k8s("scheduling.k8s.io/v1:PriorityClass", "value", "a PriorityClass's value is immutable"),
    # helm/<release>.yaml: a release is identified by its name and namespace.
    _k8s("helm.sh/v3:Release", "release", "a Helm release is reinstalled under a new name"),
    _k8s("helm.sh/v3:Release", "namespace", "a Helm release cannot move between namespaces"),
]

# The AWS types the stacks declare, with their force-new inputs (pulumi-aws 7.x; the EKS
# cluster and node group, MSK, ElastiCache, VPC endpoint and KMS key entries checked
# against the provider's resource schemas).
AWS: list[ForcesReplacement] = [
    *_aws(
        "eks/cluster:Cluster",
        "name",
        "roleArn",
        "bootstrapSelfManagedAddons",
        "accessConfig.bootstrapClusterCreatorAdminPermissions",
        "kubernetesNetworkConfig.ipFamily",
        "kubernetesNetworkConfig.serviceIpv4Cidr",
    ),
    *_aws(
        "eks/nodeGroup:NodeGroup",
        "clusterName",
        "nodeGroupName",
        "nodeGroupNamePrefix",
        "nodeRoleArn",
        "subnetIds",
        "instanceTypes",
        "amiType",
        "capacityType",
        "diskSize",
        "remoteAccess",
        "launchTemplate.id",
        "launchTemplate.name",
    ),
    *_aws("eks/addon:Addon", "clusterName", "addonName"),
    *_aws("eks/accessEntry:AccessEntry", "clusterName", "principalArn", "type"),
    *_aws(
        "eks/accessPolicyAssociation:AccessPolicyAssociation",
        "clusterName",
        "policyArn",
        "principalArn",
        "accessScope",
    ),
    *_aws("ec2/vpc:Vpc", "cidrBlock"),
    *_aws("ec2/subnet:Subnet", "vpcId", "cidrBlock", "availabilityZone", "availabilityZoneId"),
    *_aws("ec2/routeTable:RouteTable", "vpcId"),
    *_aws("ec2/route:Route", "routeTableId", "destinationCidrBlock"),
    *_aws("ec2/routeTableAssociation:RouteTableAssociation", "subnetId", "gatewayId"),
    *_aws("ec2/natGateway:NatGateway", "allocationId", "subnetId", "connectivityType"),
    *_aws("ec2/eip:Eip", "domain"),
    *_aws("ec2/securityGroup:SecurityGroup", "name", "namePrefix", "description", "vpcId"),
    *_aws("ec2/vpcEndpoint:VpcEndpoint", "vpcId", "serviceName", "vpcEndpointType"),
    *_aws("ec2/launchTemplate:LaunchTemplate", "name", "namePrefix"),
    *_aws("iam/role:Role", "name", "namePrefix", "path"),
    *_aws("iam/rolePolicy:RolePolicy", "name", "namePrefix", "role"),
    *_aws("iam/rolePolicyAttachment:RolePolicyAttachment", "role", "policyArn"),
    *_aws("iam/openIdConnectProvider:OpenIdConnectProvider", "url"),
    *_aws("kms/key:Key", "customerMasterKeySpec", "keyUsage", "multiRegion"),
    *_aws("kms/alias:Alias", "name", "namePrefix"),
    *_aws("ecr/repository:Repository", "name", "encryptionConfigurations"),
    *_aws("cloudwatch/logGroup:LogGroup", "name", "namePrefix"),
    *_aws("vpc/securityGroupIngressRule:SecurityGroupIngressRule", "securityGroupId"),
    *_aws(
        "msk/cluster:Cluster",
        "clusterName",
        "brokerNodeGroupInfo.clientSubnets",
        "brokerNodeGroupInfo.securityGroups",
        "brokerNodeGroupInfo.azDistribution",
        "encryptionInfo.encryptionAtRestKmsKeyArn",
        "encryptionInfo.encryptionInTransit.inCluster",
    ),
    *_aws(
        "elasticache/replicationGroup:ReplicationGroup",
        "replicationGroupId",
        "subnetGroupName",
        "atRestEncryptionEnabled",
    ),
]

TABLE: list[ForcesReplacement] = KUBERNETES + AWS


def _segments(path: str) -> list[str]:
    """`spec.containers[name=worker].image` -> ["spec", "containers", "image"]."""
    out: list[str] = []
    for part in path.split("."):
        head = part.split("[", 1)[0]
        if head:
            out.append(head)
    return out


def _under(path: list[str], prefix: list[str]) -> bool:
    return path[: len(prefix)] == prefix


def forced_by(type_: str, path: str) -> ForcesReplacement | None:
    """The table entry a change at `path` of a `type_` resource falls under, if any.

    A change at a parent of a listed field (the whole `spec` added) counts too."""
    segments = _segments(path)
    for entry in TABLE:
        if entry.type not in (type_, "kubernetes:*") or (
            entry.type == "kubernetes:*" and not type_.startswith("kubernetes:")
        ):
            continue
        field = _segments(entry.path)
        if _under(segments, field):
            if any(_under(segments, _segments(e)) for e in entry.except_paths):
                continue
            return entry
        if _under(field, segments):
            return entry
    return None
