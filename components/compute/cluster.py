"""The Kubernetes cluster every other component deploys onto.

Mode `eks` builds a VPC whose nodes live in private subnets, an EKS control plane
with encrypted secrets and full audit logging, IRSA, the managed add-ons, the
untainted system node group and a default encrypted `gp3` StorageClass. Mode
`existing` builds nothing on AWS and points a Kubernetes provider at a kubeconfig
context.

Either way `Cluster.provider` is the Kubernetes provider every Kubernetes
resource of the stack receives through its options.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.compute.nodes import NodeGroupSpec, aws_tags, managed_node_group
from components.compute.sandbox import (
    RUNTIME_CLASS,
    SANDBOX_LABEL,
    SANDBOX_POOL,
    SANDBOX_TAINT,
    runtime_class_body,
)
from components.compute.sandbox import user_data as sandbox_user_data
from components.specs import ClusterSpec, CostLabels, SandboxPool

TYPE_TOKEN = "swarmstack:cluster:Cluster"

# Name (and `swarmstack.io/pool` label) of the untainted node group.
SYSTEM_POOL = "system"

# The VPC is cut into eighths; this many AZs at most get a private eighth each.
MAX_ZONES = 6

CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")

# Interface endpoints that let nodes pull images, get tokens, ship logs and manage
# load balancers without going through the NAT gateway. S3 (ECR's image layers) is
# a gateway endpoint on the private route tables.
INTERFACE_ENDPOINT_SERVICES = ("ecr.api", "ecr.dkr", "sts", "logs", "ec2", "elasticloadbalancing")

CLUSTER_POLICIES = ("AmazonEKSClusterPolicy",)
NODE_POLICIES = (
    "AmazonEKSWorkerNodePolicy",
    "AmazonEC2ContainerRegistryReadOnly",
    "AmazonEKS_CNI_Policy",
    "AmazonSSMManagedInstanceCore",
)
# The VPC CNI runs its network policy agent, and so enforces NetworkPolicies, only when
# asked (a string, off by default; add-on 1.14 or later). Without it every NetworkPolicy
# the stack declares is accepted and ignored.
VPC_CNI_CONFIGURATION = {"enableNetworkPolicy": "true"}
EBS_CSI_POLICY = "service-role/AmazonEBSCSIDriverPolicy"
EBS_CSI_NAMESPACE = "kube-system"
EBS_CSI_SERVICE_ACCOUNT = "ebs-csi-controller-sa"
CLUSTER_ADMIN_ACCESS_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
STS_AUDIENCE = "sts.amazonaws.com"
DEFAULT_STORAGE_CLASS = "gp3"

# Tags on the subnets that tell the AWS load balancer controller where to put
# internet-facing and internal load balancers.
PUBLIC_ELB_TAG = "kubernetes.io/role/elb"
INTERNAL_ELB_TAG = "kubernetes.io/role/internal-elb"


# --- Pure logic ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ZoneCidrs:
    """The two subnets of one availability zone."""

    private: str
    public: str


def carve_subnets(vpc_cidr: str, zones: int) -> list[ZoneCidrs]:
    """Private and public subnet CIDRs of each AZ, in AZ order, carved from the VPC.

    The VPC is cut into eight equal blocks. Blocks 0-5 are the private subnets (nodes,
    and pods: the VPC CNI gives every pod a VPC address, so these are large), block 6
    is kept free, and block 7 is cut into eight again for the small public subnets
    that hold only NAT gateways and load balancers. A /16 gives /19 private subnets
    (8,187 usable addresses each) and /22 public ones; a /20 gives /23 and /26.
    The layout of one AZ does not depend on how many AZs there are, so adding an AZ
    later does not move existing subnets.
    """
    if not 1 <= zones <= MAX_ZONES:
        raise ValueError(f"{zones} availability zones: the VPC layout holds 1 to {MAX_ZONES}")
    vpc = ipaddress.IPv4Network(vpc_cidr)
    if vpc.prefixlen > 20:
        raise ValueError(f"{vpc_cidr} is smaller than a /20: too small for a cluster VPC")
    blocks = list(vpc.subnets(prefixlen_diff=3))
    public = list(blocks[-1].subnets(prefixlen_diff=3))
    return [ZoneCidrs(private=str(blocks[i]), public=str(public[i])) for i in range(zones)]


def managed_policy_arn(name: str) -> str:
    """ARN of an AWS managed IAM policy, e.g. `AmazonEKSClusterPolicy`."""
    return f"arn:aws:iam::aws:policy/{name}"


def service_trust_policy(service: str) -> str:
    """Role trust policy that lets an AWS service (e.g. `eks.amazonaws.com`) assume it."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": service},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )


def irsa_trust_policy(
    oidc_provider_arn: str, oidc_issuer: str, namespace: str, service_account: str
) -> str:
    """Role trust policy for one Kubernetes service account (IAM roles for service accounts).

    `oidc_issuer` is the issuer without its scheme (`oidc.eks.<region>.amazonaws.com/id/...`).
    """
    subject = f"system:serviceaccount:{namespace}:{service_account}"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": oidc_provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{oidc_issuer}:sub": subject,
                            f"{oidc_issuer}:aud": STS_AUDIENCE,
                        }
                    },
                }
            ],
        }
    )


def secrets_key_policy(key_arn: str) -> str:
    """What the control plane needs of the KMS key that envelope-encrypts Secrets."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"],
                    "Resource": key_arn,
                }
            ],
        }
    )


def kubeconfig(cluster_name: str, endpoint: str, ca_data: str, region: str) -> str:
    """A kubeconfig (JSON) that authenticates with `aws eks get-token`: no credentials inside."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": cluster_name,
                    "cluster": {"server": endpoint, "certificate-authority-data": ca_data},
                }
            ],
            "contexts": [
                {"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}
            ],
            "current-context": cluster_name,
            "users": [
                {
                    "name": cluster_name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": [
                                "eks",
                                "get-token",
                                "--cluster-name",
                                cluster_name,
                                "--region",
                                region,
                                "--output",
                                "json",
                            ],
                        }
                    },
                }
            ],
        }
    )


def ebs_volume_tag_parameters(tags: dict[str, str]) -> dict[str, str]:
    """EBS CSI StorageClass parameters that put `tags` on every volume it provisions."""
    return {f"tagSpecification_{i}": f"{k}={v}" for i, (k, v) in enumerate(sorted(tags.items()), 1)}


# --- Component -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterArgs:
    spec: ClusterSpec
    cost_labels: CostLabels
    region: str


@dataclass(frozen=True)
class ClusterNetworkAndEks:
    """What node groups, IRSA roles and the stack need of a cluster built in mode `eks`."""

    cluster_name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]  # secret
    vpc_id: pulumi.Output[str]
    node_role_arn: pulumi.Output[str]
    private_subnet_ids: list[pulumi.Output[str]]  # one per AZ, in AZ order
    # The private subnets' route tables, one per AZ in AZ order (the global stack adds its
    # routes to the other regions' VPCs here).
    private_route_table_ids: list[pulumi.Output[str]]
    availability_zones: list[str]
    # The Auto Scaling group EKS made for the system node group (a managed node group has
    # one): the regional edge attaches it to its load balancer's instance target group.
    system_autoscaling_group: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]  # host/path, without https://
    kubernetes_version: str
    # The security group EKS creates for the control plane and the managed node groups
    # (the nodes' source address for managed data stores).
    node_security_group_id: pulumi.Output[str]
    # The stack's customer-managed KMS key (Secrets envelope encryption; reused for the
    # data stores' encryption at rest).
    kms_key_arn: pulumi.Output[str]
    # What every node group must wait for: node role policies, private routes,
    # and the vpc-cni and kube-proxy add-ons.
    node_group_dependencies: list[pulumi.Resource]


def _first_autoscaling_group(resources: Sequence[aws.eks.outputs.NodeGroupResource]) -> str:
    groups = [g for r in resources for g in (r.autoscaling_groups or [])]
    return groups[0].name or "" if groups else ""


@dataclass(frozen=True)
class _Network:
    vpc: aws.ec2.Vpc
    zones: list[str]
    private_subnets: list[aws.ec2.Subnet]
    private_tables: list[aws.ec2.RouteTable]
    private_routes: list[aws.ec2.Route]


@dataclass(frozen=True)
class _Roles:
    cluster: aws.iam.Role
    cluster_policies: list[aws.iam.RolePolicyAttachment]
    node: aws.iam.Role
    node_policies: list[aws.iam.RolePolicyAttachment]


class Cluster(pulumi.ComponentResource):
    """An EKS cluster with its network (mode `eks`), or an existing cluster (mode `existing`)."""

    provider: k8s.Provider
    eks: ClusterNetworkAndEks | None

    def __init__(
        self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        self._name = name
        self._args = args
        self._tags = aws_tags(args.cost_labels.as_labels())

        outputs: dict[str, Any]
        if args.spec.mode == "existing":
            context = args.spec.kubeconfig_context
            self.eks = None
            self.provider = k8s.Provider(
                f"{name}-k8s",
                context=context,
                enable_server_side_apply=True,
                opts=self._child(),
            )
            outputs = {"kubeconfigContext": context}
        else:
            self.eks, self.provider = self._build_eks()
            outputs = {
                "clusterName": self.eks.cluster_name,
                "endpoint": self.eks.endpoint,
                "vpcId": self.eks.vpc_id,
                "oidcProviderArn": self.eks.oidc_provider_arn,
                "kubernetesVersion": self.eks.kubernetes_version,
            }
        self.register_outputs(outputs)

    # -- helpers ------------------------------------------------------------------------

    def _child(self, depends_on: Sequence[pulumi.Resource] = ()) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, depends_on=list(depends_on))

    def _tagged(self, name_tag: str | None = None, **extra: str) -> dict[str, str]:
        tags = {**self._tags, **extra}
        if name_tag is not None:
            tags["Name"] = name_tag
        return tags

    # -- mode eks -----------------------------------------------------------------------

    def _build_eks(self) -> tuple[ClusterNetworkAndEks, k8s.Provider]:
        spec, name = self._args.spec, self._name
        network = self._network()
        roles = self._roles()
        cluster, key = self._control_plane(network, roles)
        admin_access = self._admin_access(cluster)
        oidc_provider, oidc_issuer = self._oidc(cluster)

        # vpc-cni and kube-proxy are DaemonSets: they install before any node exists,
        # and a node only turns Ready once vpc-cni runs on it.
        vpc_cni = self._addon(
            cluster, "vpc-cni", spec.addons.vpc_cni, configuration=VPC_CNI_CONFIGURATION
        )
        kube_proxy = self._addon(cluster, "kube-proxy", spec.addons.kube_proxy)
        node_group_dependencies: list[pulumi.Resource] = [
            *roles.node_policies,
            *network.private_routes,
            vpc_cni,
            kube_proxy,
        ]
        private_subnet_ids = [subnet.id for subnet in network.private_subnets]
        pool = spec.system_pool
        # The instance type's Literal is built at run time, so pyright cannot see it.
        instance_type = str(pool.instance_type)  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
        _, system_group = managed_node_group(
            f"{name}-{SYSTEM_POOL}",
            NodeGroupSpec(
                name=SYSTEM_POOL,
                instance_type=instance_type,
                min_size=pool.min_size,
                max_size=pool.max_size,
                disk_size_gib=pool.disk_size_gib,
                ami_type="AL2023_x86_64_STANDARD",
                labels={},
                tags=self._tagged(f"{spec.name}-{SYSTEM_POOL}"),
            ),
            parent=self,
            cluster_name=cluster.name,
            node_role_arn=roles.node.arn,
            subnet_ids=private_subnet_ids,
            depends_on=node_group_dependencies,
        )
        if spec.sandbox_pool is not None:
            self._sandbox_pool(
                spec.sandbox_pool, cluster, roles, private_subnet_ids, node_group_dependencies
            )
        # CoreDNS and the EBS CSI controller are Deployments: they need a node to run on.
        self._addon(cluster, "coredns", spec.addons.coredns, depends_on=[system_group])
        ebs_csi = self._ebs_csi_driver(cluster, oidc_provider, oidc_issuer, system_group)

        config = pulumi.Output.secret(
            pulumi.Output.all(
                name=cluster.name,
                endpoint=cluster.endpoint,
                ca=cluster.certificate_authority.apply(lambda ca: ca.data or ""),
            ).apply(lambda v: kubeconfig(v["name"], v["endpoint"], v["ca"], self._args.region))
        )
        provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=config,
            enable_server_side_apply=True,
            # Kubernetes objects can only be applied once the admin roles have access.
            opts=self._child(depends_on=admin_access),
        )
        self._default_storage_class(provider, ebs_csi)
        if spec.sandbox_pool is not None:
            body = runtime_class_body()
            k8s.node.v1.RuntimeClass(
                f"{name}-runtime-class-{RUNTIME_CLASS}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=RUNTIME_CLASS, labels=self._args.cost_labels.as_labels()
                ),
                handler=body["handler"],
                scheduling=body["scheduling"],
                opts=pulumi.ResourceOptions(parent=self, provider=provider),
            )

        eks = ClusterNetworkAndEks(
            cluster_name=cluster.name,
            endpoint=cluster.endpoint,
            kubeconfig=config,
            vpc_id=network.vpc.id,
            node_role_arn=roles.node.arn,
            private_subnet_ids=private_subnet_ids,
            private_route_table_ids=[table.id for table in network.private_tables],
            availability_zones=network.zones,
            system_autoscaling_group=system_group.resources.apply(_first_autoscaling_group),
            oidc_provider_arn=oidc_provider.arn,
            oidc_issuer=oidc_issuer,
            kubernetes_version=spec.kubernetes_version,
            node_security_group_id=cluster.vpc_config.apply(
                lambda vpc: vpc.cluster_security_group_id or ""
            ),
            kms_key_arn=key.arn,
            node_group_dependencies=node_group_dependencies,
        )
        return eks, provider

    def _network(self) -> _Network:
        """VPC, public and private subnets per AZ, NAT, routes and the VPC endpoints."""
        spec, name, region = self._args.spec, self._name, self._args.region
        available = aws.get_availability_zones(
            state="available",
            # Regular AZs only: no Local Zones or Wavelength Zones.
            filters=[
                aws.GetAvailabilityZonesFilterArgs(
                    name="opt-in-status", values=["opt-in-not-required"]
                )
            ],
            opts=pulumi.InvokeOptions(parent=self),
        ).names
        if len(available) < spec.availability_zones:
            raise ValueError(
                f"cluster.availabilityZones: {spec.availability_zones} AZs asked for, but "
                f"the region has {len(available)} ({', '.join(available)})"
            )
        zones = list(available[: spec.availability_zones])
        cidrs = carve_subnets(spec.vpc_cidr, len(zones))

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=spec.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=self._tagged(spec.name),
            opts=self._child(),
        )
        igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags=self._tagged(spec.name), opts=self._child()
        )
        public_table = aws.ec2.RouteTable(
            f"{name}-public-rt",
            vpc_id=vpc.id,
            tags=self._tagged(f"{spec.name}-public"),
            opts=self._child(),
        )
        aws.ec2.Route(
            f"{name}-public-internet",
            route_table_id=public_table.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=self._child(),
        )

        public_subnets: list[aws.ec2.Subnet] = []
        private_subnets: list[aws.ec2.Subnet] = []
        for zone, cidr in zip(zones, cidrs, strict=True):
            public = aws.ec2.Subnet(
                f"{name}-public-{zone}",
                vpc_id=vpc.id,
                availability_zone=zone,
                cidr_block=cidr.public,
                tags=self._tagged(f"{spec.name}-public-{zone}", **{PUBLIC_ELB_TAG: "1"}),
                opts=self._child(),
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{zone}-rta",
                subnet_id=public.id,
                route_table_id=public_table.id,
                opts=self._child(),
            )
            private = aws.ec2.Subnet(
                f"{name}-private-{zone}",
                vpc_id=vpc.id,
                availability_zone=zone,
                cidr_block=cidr.private,
                tags=self._tagged(f"{spec.name}-private-{zone}", **{INTERNAL_ELB_TAG: "1"}),
                opts=self._child(),
            )
            public_subnets.append(public)
            private_subnets.append(private)

        nat_zones = zones if spec.nat_gateways == "perAz" else zones[:1]
        nats: list[aws.ec2.NatGateway] = []
        for zone, public in zip(nat_zones, public_subnets, strict=False):
            eip = aws.ec2.Eip(
                f"{name}-nat-{zone}-eip",
                domain="vpc",
                tags=self._tagged(f"{spec.name}-nat-{zone}"),
                opts=self._child(),
            )
            nats.append(
                aws.ec2.NatGateway(
                    f"{name}-nat-{zone}",
                    allocation_id=eip.allocation_id,
                    subnet_id=public.id,
                    tags=self._tagged(f"{spec.name}-nat-{zone}"),
                    opts=self._child(depends_on=[igw]),
                )
            )

        private_tables: list[aws.ec2.RouteTable] = []
        private_routes: list[aws.ec2.Route] = []
        for i, (zone, private) in enumerate(zip(zones, private_subnets, strict=True)):
            table = aws.ec2.RouteTable(
                f"{name}-private-{zone}-rt",
                vpc_id=vpc.id,
                tags=self._tagged(f"{spec.name}-private-{zone}"),
                opts=self._child(),
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{zone}-rta",
                subnet_id=private.id,
                route_table_id=table.id,
                opts=self._child(),
            )
            nat = nats[i] if spec.nat_gateways == "perAz" else nats[0]
            private_routes.append(
                aws.ec2.Route(
                    f"{name}-private-{zone}-egress",
                    route_table_id=table.id,
                    destination_cidr_block="0.0.0.0/0",
                    nat_gateway_id=nat.id,
                    opts=self._child(),
                )
            )
            private_tables.append(table)

        self._vpc_endpoints(vpc, private_subnets, private_tables, region)
        return _Network(vpc, zones, private_subnets, private_tables, private_routes)

    def _vpc_endpoints(
        self,
        vpc: aws.ec2.Vpc,
        private_subnets: list[aws.ec2.Subnet],
        private_tables: list[aws.ec2.RouteTable],
        region: str,
    ) -> None:
        spec, name = self._args.spec, self._name
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[table.id for table in private_tables],
            tags=self._tagged(f"{spec.name}-s3"),
            opts=self._child(),
        )
        endpoint_sg = aws.ec2.SecurityGroup(
            f"{name}-endpoints",
            vpc_id=vpc.id,
            description=f"HTTPS from the {spec.name} VPC to its interface endpoints",
            tags=self._tagged(f"{spec.name}-endpoints"),
            opts=self._child(),
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-endpoints-https",
            security_group_id=endpoint_sg.id,
            description="HTTPS from inside the VPC",
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            cidr_ipv4=spec.vpc_cidr,
            tags=self._tagged(),
            opts=self._child(),
        )
        for service in INTERFACE_ENDPOINT_SERVICES:
            aws.ec2.VpcEndpoint(
                f"{name}-{service.replace('.', '-')}",
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=[subnet.id for subnet in private_subnets],
                security_group_ids=[endpoint_sg.id],
                tags=self._tagged(f"{spec.name}-{service}"),
                opts=self._child(),
            )

    def _roles(self) -> _Roles:
        """The control plane's role and the nodes' role, with their managed policies."""
        spec, name = self._args.spec, self._name
        cluster_role = aws.iam.Role(
            f"{name}-cluster",
            description=f"EKS control plane of {spec.name}",
            assume_role_policy=service_trust_policy("eks.amazonaws.com"),
            tags=self._tagged(),
            opts=self._child(),
        )
        node_role = aws.iam.Role(
            f"{name}-node",
            description=f"EC2 nodes of {spec.name}",
            assume_role_policy=service_trust_policy("ec2.amazonaws.com"),
            tags=self._tagged(),
            opts=self._child(),
        )
        return _Roles(
            cluster=cluster_role,
            cluster_policies=self._attach(cluster_role, "cluster", CLUSTER_POLICIES),
            node=node_role,
            node_policies=self._attach(node_role, "node", NODE_POLICIES),
        )

    def _attach(
        self, role: aws.iam.Role, role_name: str, policies: Sequence[str]
    ) -> list[aws.iam.RolePolicyAttachment]:
        return [
            aws.iam.RolePolicyAttachment(
                f"{self._name}-{role_name}-{policy.rsplit('/', 1)[-1]}",
                role=role.name,
                policy_arn=managed_policy_arn(policy),
                opts=self._child(),
            )
            for policy in policies
        ]

    def _control_plane(
        self, network: _Network, roles: _Roles
    ) -> tuple[aws.eks.Cluster, aws.kms.Key]:
        """Secrets key, control-plane log group and the EKS cluster itself."""
        spec, name = self._args.spec, self._name
        key = aws.kms.Key(
            f"{name}-secrets",
            description=f"Envelope encryption of Kubernetes Secrets in {spec.name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=self._tagged(f"{spec.name}-secrets"),
            opts=self._child(),
        )
        aws.kms.Alias(
            f"{name}-secrets-alias",
            name=f"alias/{spec.name}-eks-secrets",
            target_key_id=key.key_id,
            opts=self._child(),
        )
        key_use = aws.iam.RolePolicy(
            f"{name}-cluster-secrets-key",
            role=roles.cluster.name,
            policy=key.arn.apply(secrets_key_policy),
            opts=self._child(),
        )
        # EKS would create this group itself, with no retention, if it did not exist first.
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-control-plane",
            name=f"/aws/eks/{spec.name}/cluster",
            retention_in_days=spec.log_retention_days,
            tags=self._tagged(),
            opts=self._child(),
        )
        endpoint = spec.endpoint
        cluster = aws.eks.Cluster(
            f"{name}-eks",
            name=spec.name,
            version=spec.kubernetes_version,
            role_arn=roles.cluster.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=[subnet.id for subnet in network.private_subnets],
                endpoint_private_access=True,
                endpoint_public_access=not endpoint.private_only,
                public_access_cidrs=None if endpoint.private_only else endpoint.public_access_cidrs,
            ),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                resources=["secrets"],
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=key.arn),
            ),
            enabled_cluster_log_types=list(CONTROL_PLANE_LOG_TYPES),
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API",
                bootstrap_cluster_creator_admin_permissions=False,
            ),
            # vpc-cni, kube-proxy and CoreDNS come as managed add-ons, pinned in config.
            bootstrap_self_managed_addons=False,
            tags=self._tagged(spec.name),
            opts=self._child(depends_on=[log_group, key_use, *roles.cluster_policies]),
        )
        return cluster, key

    def _admin_access(self, cluster: aws.eks.Cluster) -> list[pulumi.Resource]:
        """Cluster-admin access entries for the configured IAM roles."""
        name = self._name
        granted: list[pulumi.Resource] = []
        for arn in self._args.spec.admin_role_arns:
            role = arn.rsplit("/", 1)[-1]
            entry = aws.eks.AccessEntry(
                f"{name}-admin-{role}",
                cluster_name=cluster.name,
                principal_arn=arn,
                type="STANDARD",
                tags=self._tagged(),
                opts=self._child(),
            )
            granted.append(
                aws.eks.AccessPolicyAssociation(
                    f"{name}-admin-{role}-policy",
                    cluster_name=cluster.name,
                    principal_arn=entry.principal_arn,
                    policy_arn=CLUSTER_ADMIN_ACCESS_POLICY,
                    access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                    opts=self._child(),
                )
            )
        return granted

    def _oidc(
        self, cluster: aws.eks.Cluster
    ) -> tuple[aws.iam.OpenIdConnectProvider, pulumi.Output[str]]:
        """The IAM OIDC provider for IRSA, and the issuer without its scheme."""
        issuer_url = cluster.identities.apply(_issuer_url)
        provider = aws.iam.OpenIdConnectProvider(
            f"{self._name}-oidc",
            url=issuer_url,
            client_id_lists=[STS_AUDIENCE],
            tags=self._tagged(),
            opts=self._child(),
        )
        return provider, issuer_url.apply(lambda url: url.removeprefix("https://"))

    def _addon(
        self,
        cluster: aws.eks.Cluster,
        addon: str,
        version: str,
        *,
        service_account_role_arn: pulumi.Input[str] | None = None,
        configuration: Mapping[str, str] | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> aws.eks.Addon:
        return aws.eks.Addon(
            f"{self._name}-{addon}",
            cluster_name=cluster.name,
            addon_name=addon,
            addon_version=version,
            configuration_values=json.dumps(configuration, sort_keys=True)
            if configuration
            else None,
            service_account_role_arn=service_account_role_arn,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            tags=self._tagged(),
            opts=self._child(depends_on=depends_on),
        )

    def _sandbox_pool(
        self,
        pool: SandboxPool,
        cluster: aws.eks.Cluster,
        roles: _Roles,
        subnet_ids: Sequence[pulumi.Output[str]],
        depends_on: Sequence[pulumi.Resource],
    ) -> aws.eks.NodeGroup:
        """The gVisor node group: runsc installed at boot, labelled and tainted for the
        RuntimeClass that schedules sandboxed agents there."""
        instance_type = str(pool.instance_type)  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
        _, group = managed_node_group(
            f"{self._name}-{SANDBOX_POOL}",
            NodeGroupSpec(
                name=SANDBOX_POOL,
                instance_type=instance_type,
                min_size=pool.min_size,
                max_size=pool.max_size,
                disk_size_gib=pool.disk_size_gib,
                ami_type="AL2023_x86_64_STANDARD",
                labels={SANDBOX_LABEL: RUNTIME_CLASS},
                taints=[SANDBOX_TAINT],
                tags=self._tagged(f"{self._args.spec.name}-{SANDBOX_POOL}"),
                user_data=sandbox_user_data(pool.gvisor_release),
            ),
            parent=self,
            cluster_name=cluster.name,
            node_role_arn=roles.node.arn,
            subnet_ids=list(subnet_ids),
            depends_on=depends_on,
        )
        return group

    def _ebs_csi_driver(
        self,
        cluster: aws.eks.Cluster,
        oidc_provider: aws.iam.OpenIdConnectProvider,
        oidc_issuer: pulumi.Output[str],
        system_group: aws.eks.NodeGroup,
    ) -> aws.eks.Addon:
        """The EBS CSI driver add-on with its own IRSA role."""
        trust = pulumi.Output.all(arn=oidc_provider.arn, issuer=oidc_issuer).apply(
            lambda v: irsa_trust_policy(
                v["arn"], v["issuer"], EBS_CSI_NAMESPACE, EBS_CSI_SERVICE_ACCOUNT
            )
        )
        role = aws.iam.Role(
            f"{self._name}-ebs-csi",
            description=f"IRSA role of the EBS CSI controller in {self._args.spec.name}",
            assume_role_policy=trust,
            tags=self._tagged(),
            opts=self._child(),
        )
        policies = self._attach(role, "ebs-csi", [EBS_CSI_POLICY])
        return self._addon(
            cluster,
            "aws-ebs-csi-driver",
            self._args.spec.addons.ebs_csi_driver,
            service_account_role_arn=role.arn,
            depends_on=[system_group, *policies],
        )

    def _default_storage_class(self, provider: k8s.Provider, ebs_csi: aws.eks.Addon) -> None:
        """Encrypted gp3 volumes, created in the AZ of the pod that claims them, cost-tagged."""
        k8s.storage.v1.StorageClass(
            f"{self._name}-{DEFAULT_STORAGE_CLASS}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=DEFAULT_STORAGE_CLASS,
                annotations={"storageclass.kubernetes.io/is-default-class": "true"},
            ),
            provisioner="ebs.csi.aws.com",
            parameters={
                "type": "gp3",
                "encrypted": "true",
                **ebs_volume_tag_parameters(self._tags),
            },
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            reclaim_policy="Delete",
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[ebs_csi]),
        )


def _issuer_url(identities: Sequence[aws.eks.outputs.ClusterIdentity]) -> str:
    for identity in identities:
        for oidc in identity.oidcs or ():
            if oidc.issuer:
                return oidc.issuer
    raise ValueError("the EKS cluster reports no OIDC issuer")
