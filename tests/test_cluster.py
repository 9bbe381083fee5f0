"""The cluster component under the recording mock runtime, and its pure helpers."""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from typing import Any

import pulumi
import pytest
from hypothesis import given
from hypothesis import strategies as st

from components.compute.cluster import (
    INTERFACE_ENDPOINT_SERVICES,
    MAX_ZONES,
    Cluster,
    ClusterArgs,
    carve_subnets,
    ebs_volume_tag_parameters,
    irsa_trust_policy,
    kubeconfig,
)
from components.compute.nodes import POOL_LABEL
from components.specs import ClusterSpec, CostLabels
from stacks.plan.recorder import REDACTED, Capture, Registration, run

NAME = "pilot"
ADMIN = "arn:aws:iam::111122223333:role/platform-admin"
AUDITOR = "arn:aws:iam::111122223333:role/break-glass"

# The cluster of stacks/Pulumi.pilot.yaml.
PILOT: dict[str, Any] = {
    "name": "swarm-pilot",
    "kubernetesVersion": "1.33",
    "vpcCidr": "10.40.0.0/16",
    "availabilityZones": 2,
    "natGateways": "single",
    "endpoint": {"publicAccessCidrs": ["203.0.113.0/24"]},
    "adminRoleArns": [ADMIN],
    "addons": {
        "vpcCni": "v1.19.5-eksbuild.1",
        "coredns": "v1.12.1-eksbuild.2",
        "kubeProxy": "v1.33.0-eksbuild.2",
        "ebsCsiDriver": "v1.44.0-eksbuild.1",
    },
    "systemPool": {"instanceType": "m7i.xlarge", "minSize": 2, "maxSize": 3, "diskSizeGib": 100},
}
COST_LABELS = CostLabels.model_validate(
    {"team": "agent-platform", "costCenter": "cc-1042", "environment": "pilot"}
)
COST_TAGS = COST_LABELS.as_labels()

# AWS resource types that take no tags.
UNTAGGABLE = {
    "aws:ec2/route:Route",
    "aws:ec2/routeTableAssociation:RouteTableAssociation",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:kms/alias:Alias",
    "aws:eks/accessPolicyAssociation:AccessPolicyAssociation",
}

VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"
NAT = "aws:ec2/natGateway:NatGateway"
EIP = "aws:ec2/eip:Eip"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
ROUTE = "aws:ec2/route:Route"
ASSOCIATION = "aws:ec2/routeTableAssociation:RouteTableAssociation"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
EKS = "aws:eks/cluster:Cluster"
ADDON = "aws:eks/addon:Addon"
ACCESS_ENTRY = "aws:eks/accessEntry:AccessEntry"
ACCESS_POLICY = "aws:eks/accessPolicyAssociation:AccessPolicyAssociation"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
K8S_PROVIDER = "pulumi:providers:kubernetes"
COMPONENT = "swarmstack:cluster:Cluster"


def cluster_spec(**overrides: Any) -> ClusterSpec:
    return ClusterSpec.model_validate({**PILOT, **overrides})


def plan(spec: ClusterSpec) -> Capture:
    def program() -> None:
        Cluster(NAME, ClusterArgs(spec=spec, cost_labels=COST_LABELS, region="us-east-1"))

    return run(program)


def counts(capture: Capture) -> Counter[str]:
    return Counter(r.type for r in capture.registrations)


def the(capture: Capture, type_: str) -> Registration:
    (registration,) = capture.of_type(type_)
    return registration


@pytest.fixture(scope="module")
def pilot() -> Capture:
    return plan(cluster_spec())


# --- control plane ---------------------------------------------------------------------


def test_secrets_are_envelope_encrypted_with_a_rotated_key(pilot: Capture) -> None:
    eks = the(pilot, EKS).inputs
    key = pilot.named(f"{NAME}-secrets")
    assert key.type == "aws:kms/key:Key"
    assert key.inputs["enableKeyRotation"] is True
    assert key.inputs["deletionWindowInDays"] == 30
    assert eks["encryptionConfig"]["resources"] == ["secrets"]
    assert eks["encryptionConfig"]["provider"]["keyArn"].endswith(f"{NAME}-secrets-id")
    assert the(pilot, "aws:kms/alias:Alias").inputs["name"] == "alias/swarm-pilot-eks-secrets"


def test_control_plane_logs_all_five_types_to_a_group_made_first(pilot: Capture) -> None:
    eks = the(pilot, EKS)
    assert eks.inputs["enabledClusterLogTypes"] == [
        "api",
        "audit",
        "authenticator",
        "controllerManager",
        "scheduler",
    ]
    group = the(pilot, "aws:cloudwatch/logGroup:LogGroup")
    assert group.inputs["name"] == "/aws/eks/swarm-pilot/cluster"
    assert group.inputs["retentionInDays"] == 90
    assert group.urn in eks.dependencies


def test_cluster_name_version_and_access_mode(pilot: Capture) -> None:
    eks = the(pilot, EKS).inputs
    assert eks["name"] == "swarm-pilot"
    assert eks["version"] == "1.33"
    assert eks["accessConfig"] == {
        "authenticationMode": "API",
        "bootstrapClusterCreatorAdminPermissions": False,
    }


def test_public_endpoint_is_limited_to_the_allow_list(pilot: Capture) -> None:
    vpc_config = the(pilot, EKS).inputs["vpcConfig"]
    assert vpc_config["endpointPrivateAccess"] is True
    assert vpc_config["endpointPublicAccess"] is True
    assert vpc_config["publicAccessCidrs"] == ["203.0.113.0/24"]
    private_subnets = sorted(
        f"{r.name}-id" for r in pilot.of_type(SUBNET) if r.name.startswith(f"{NAME}-private-")
    )
    assert sorted(vpc_config["subnetIds"]) == private_subnets


def test_private_only_endpoint_has_no_public_access() -> None:
    capture = plan(cluster_spec(endpoint={"privateOnly": True}))
    vpc_config = the(capture, EKS).inputs["vpcConfig"]
    assert vpc_config["endpointPrivateAccess"] is True
    assert vpc_config["endpointPublicAccess"] is False
    assert "publicAccessCidrs" not in vpc_config


def test_one_cluster_admin_access_entry_per_admin_role() -> None:
    capture = plan(cluster_spec(adminRoleArns=[ADMIN, AUDITOR]))
    entries = capture.of_type(ACCESS_ENTRY)
    policies = capture.of_type(ACCESS_POLICY)
    assert sorted(e.inputs["principalArn"] for e in entries) == sorted([ADMIN, AUDITOR])
    assert sorted(p.inputs["principalArn"] for p in policies) == sorted([ADMIN, AUDITOR])
    for policy in policies:
        assert policy.inputs["policyArn"].endswith(
            ":cluster-access-policy/AmazonEKSClusterAdminPolicy"
        )
        assert policy.inputs["accessScope"] == {"type": "cluster"}
    # Kubernetes objects wait for the admins' access.
    provider = the(capture, K8S_PROVIDER)
    assert {p.urn for p in policies} <= set(provider.dependencies)


def test_no_admin_roles_means_no_access_entries() -> None:
    capture = plan(cluster_spec(adminRoleArns=[]))
    assert capture.of_type(ACCESS_ENTRY) == []
    assert capture.of_type(ACCESS_POLICY) == []


def test_iam_roles_carry_the_managed_policies(pilot: Capture) -> None:
    attached = {
        r.inputs["policyArn"].rsplit("/", 1)[-1]
        for r in pilot.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    }
    assert attached == {
        "AmazonEKSClusterPolicy",
        "AmazonEKSWorkerNodePolicy",
        "AmazonEC2ContainerRegistryReadOnly",
        "AmazonEKS_CNI_Policy",
        "AmazonSSMManagedInstanceCore",
        "AmazonEBSCSIDriverPolicy",
    }
    node_trust = json.loads(pilot.named(f"{NAME}-node").inputs["assumeRolePolicy"])
    assert node_trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    cluster_trust = json.loads(pilot.named(f"{NAME}-cluster").inputs["assumeRolePolicy"])
    assert cluster_trust["Statement"][0]["Principal"] == {"Service": "eks.amazonaws.com"}


# --- IRSA and add-ons ------------------------------------------------------------------


def test_oidc_provider_trusts_the_cluster_issuer_for_sts(pilot: Capture) -> None:
    oidc = the(pilot, "aws:iam/openIdConnectProvider:OpenIdConnectProvider").inputs
    assert oidc["url"] == "https://oidc.eks.us-east-1.amazonaws.com/id/PLAN"
    assert oidc["clientIdLists"] == ["sts.amazonaws.com"]


def test_ebs_csi_role_trusts_only_its_service_account(pilot: Capture) -> None:
    trust = json.loads(pilot.named(f"{NAME}-ebs-csi").inputs["assumeRolePolicy"])
    (statement,) = trust["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"]["Federated"].endswith(f"{NAME}-oidc-id")
    issuer = "oidc.eks.us-east-1.amazonaws.com/id/PLAN"
    assert statement["Condition"]["StringEquals"] == {
        f"{issuer}:sub": "system:serviceaccount:kube-system:ebs-csi-controller-sa",
        f"{issuer}:aud": "sts.amazonaws.com",
    }


def test_addons_are_pinned_to_the_configured_versions(pilot: Capture) -> None:
    versions = {r.inputs["addonName"]: r.inputs["addonVersion"] for r in pilot.of_type(ADDON)}
    assert versions == {
        "vpc-cni": "v1.19.5-eksbuild.1",
        "coredns": "v1.12.1-eksbuild.2",
        "kube-proxy": "v1.33.0-eksbuild.2",
        "aws-ebs-csi-driver": "v1.44.0-eksbuild.1",
    }
    ebs = pilot.named(f"{NAME}-aws-ebs-csi-driver")
    assert ebs.inputs["serviceAccountRoleArn"].endswith(f"{NAME}-ebs-csi-id")


def test_the_vpc_cni_enforces_network_policies(pilot: Capture) -> None:
    """Off by default: without the flag every NetworkPolicy of the stack is ignored."""
    cni = pilot.named(f"{NAME}-vpc-cni")
    assert json.loads(cni.inputs["configurationValues"]) == {"enableNetworkPolicy": "true"}
    others = [r for r in pilot.of_type(ADDON) if r.inputs["addonName"] != "vpc-cni"]
    assert [r.inputs.get("configurationValues") for r in others] == [None, None, None]


def test_addon_ordering_around_the_system_node_group(pilot: Capture) -> None:
    group = the(pilot, NODE_GROUP)
    for before in ("vpc-cni", "kube-proxy"):
        assert pilot.named(f"{NAME}-{before}").urn in group.dependencies
    for after in ("coredns", "aws-ebs-csi-driver"):
        assert group.urn in pilot.named(f"{NAME}-{after}").dependencies


# --- system node group -----------------------------------------------------------------


def test_system_node_group_is_untainted_and_sized_from_config(pilot: Capture) -> None:
    group = the(pilot, NODE_GROUP).inputs
    assert group["nodeGroupName"] == "system"
    assert group["amiType"] == "AL2023_x86_64_STANDARD"
    assert group["instanceTypes"] == ["m7i.xlarge"]
    assert group["scalingConfig"] == {"minSize": 2, "maxSize": 3, "desiredSize": 2}
    assert group.get("taints", []) == []
    assert group["labels"] == {POOL_LABEL: "system"}
    assert sorted(group["subnetIds"]) == sorted(f"{NAME}-private-us-east-1{z}-id" for z in "ab")


def test_system_nodes_require_imdsv2_with_hop_limit_one(pilot: Capture) -> None:
    metadata = the(pilot, LAUNCH_TEMPLATE).inputs["metadataOptions"]
    assert metadata["httpTokens"] == "required"
    assert metadata["httpPutResponseHopLimit"] == 1


def test_system_instances_and_volumes_are_cost_tagged(pilot: Capture) -> None:
    specs = the(pilot, LAUNCH_TEMPLATE).inputs["tagSpecifications"]
    tagged = {s["resourceType"]: s["tags"] for s in specs}
    assert {"instance", "volume"} <= tagged.keys()
    for tags in tagged.values():
        assert COST_TAGS.items() <= tags.items()
        assert tags["Name"] == "swarm-pilot-system"


# --- network ---------------------------------------------------------------------------


def test_vpc_has_dns_and_subnets_inside_it(pilot: Capture) -> None:
    vpc = the(pilot, VPC).inputs
    assert vpc["cidrBlock"] == "10.40.0.0/16"
    assert vpc["enableDnsHostnames"] is True
    assert vpc["enableDnsSupport"] is True
    network = ipaddress.IPv4Network(vpc["cidrBlock"])
    for subnet in pilot.of_type(SUBNET):
        assert ipaddress.IPv4Network(subnet.inputs["cidrBlock"]).subnet_of(network)


def test_subnets_are_tagged_for_load_balancers(pilot: Capture) -> None:
    for zone in ("us-east-1a", "us-east-1b"):
        public = pilot.named(f"{NAME}-public-{zone}")
        private = pilot.named(f"{NAME}-private-{zone}")
        assert public.type == private.type == SUBNET
        assert public.inputs["availabilityZone"] == private.inputs["availabilityZone"] == zone
        assert public.inputs["tags"]["kubernetes.io/role/elb"] == "1"
        assert private.inputs["tags"]["kubernetes.io/role/internal-elb"] == "1"
        assert "kubernetes.io/role/elb" not in private.inputs["tags"]


def test_private_subnets_reach_out_through_nat(pilot: Capture) -> None:
    (nat,) = pilot.of_type(NAT)
    private_routes = [r for r in pilot.of_type(ROUTE) if "natGatewayId" in r.inputs]
    assert len(private_routes) == 2
    for route in private_routes:
        assert route.inputs["natGatewayId"] == f"{nat.name}-id"
        assert route.inputs["destinationCidrBlock"] == "0.0.0.0/0"
    assert nat.inputs["subnetId"] == f"{NAME}-public-us-east-1a-id"


def test_vpc_endpoints_keep_image_pulls_and_tokens_private(pilot: Capture) -> None:
    endpoints = {r.inputs["serviceName"]: r.inputs for r in pilot.of_type(ENDPOINT)}
    s3 = endpoints.pop("com.amazonaws.us-east-1.s3")
    assert s3["vpcEndpointType"] == "Gateway"
    assert sorted(s3["routeTableIds"]) == sorted(f"{NAME}-private-us-east-1{z}-rt-id" for z in "ab")
    assert sorted(endpoints) == sorted(
        f"com.amazonaws.us-east-1.{s}" for s in INTERFACE_ENDPOINT_SERVICES
    )
    for endpoint in endpoints.values():
        assert endpoint["vpcEndpointType"] == "Interface"
        assert endpoint["privateDnsEnabled"] is True
        assert sorted(endpoint["subnetIds"]) == sorted(
            f"{NAME}-private-us-east-1{z}-id" for z in "ab"
        )
        assert endpoint["securityGroupIds"] == [f"{NAME}-endpoints-id"]
    rule = the(pilot, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule").inputs
    assert (rule["fromPort"], rule["toPort"], rule["ipProtocol"]) == (443, 443, "tcp")
    assert rule["cidrIpv4"] == "10.40.0.0/16"


NETWORK_TYPES = (SUBNET, NAT, EIP, ROUTE_TABLE, ROUTE, ASSOCIATION, ENDPOINT)


def test_counts_two_zones_single_nat(pilot: Capture) -> None:
    found = counts(pilot)
    assert {t: found[t] for t in NETWORK_TYPES} == {
        SUBNET: 4,
        NAT: 1,
        EIP: 1,
        ROUTE_TABLE: 3,  # public + one private per AZ
        ROUTE: 3,  # internet + one NAT route per AZ
        ASSOCIATION: 4,
        ENDPOINT: 7,  # S3 gateway + six interface endpoints
    }
    assert found[VPC] == found[EKS] == found[NODE_GROUP] == found[STORAGE_CLASS] == 1
    assert found[ADDON] == 4
    assert found["aws:iam/role:Role"] == 3
    assert found[K8S_PROVIDER] == 1
    assert sum(found.values()) == 53  # the component and its 52 children


def test_counts_three_zones_nat_per_zone() -> None:
    found = counts(plan(cluster_spec(availabilityZones=3, natGateways="perAz")))
    assert {t: found[t] for t in NETWORK_TYPES} == {
        SUBNET: 6,
        NAT: 3,
        EIP: 3,
        ROUTE_TABLE: 4,
        ROUTE: 4,
        ASSOCIATION: 6,
        ENDPOINT: 7,
    }


def test_per_zone_nat_keeps_each_zone_on_its_own_gateway() -> None:
    capture = plan(cluster_spec(availabilityZones=3, natGateways="perAz"))
    for zone in ("us-east-1a", "us-east-1b", "us-east-1c"):
        route = capture.named(f"{NAME}-private-{zone}-egress")
        assert route.inputs["natGatewayId"] == f"{NAME}-nat-{zone}-id"
        nat = capture.named(f"{NAME}-nat-{zone}")
        assert nat.type == NAT
        assert nat.inputs["subnetId"] == f"{NAME}-public-{zone}-id"


def test_more_zones_than_the_region_has_names_the_config_path() -> None:
    spec = cluster_spec(availabilityZones=6).model_copy(update={"availability_zones": 7})
    with pytest.raises(ValueError, match=r"cluster\.availabilityZones: 7"):
        plan(spec)


# --- Kubernetes side -------------------------------------------------------------------


def test_default_storage_class_is_encrypted_gp3(pilot: Capture) -> None:
    storage_class = the(pilot, STORAGE_CLASS)
    inputs = storage_class.inputs
    assert inputs["metadata"]["name"] == "gp3"
    assert inputs["metadata"]["annotations"] == {
        "storageclass.kubernetes.io/is-default-class": "true"
    }
    assert inputs["provisioner"] == "ebs.csi.aws.com"
    assert inputs["parameters"]["type"] == "gp3"
    assert inputs["parameters"]["encrypted"] == "true"
    assert inputs["volumeBindingMode"] == "WaitForFirstConsumer"
    assert inputs["allowVolumeExpansion"] is True
    assert inputs["reclaimPolicy"] == "Delete"
    volume_tags = set(inputs["parameters"].values())
    assert {f"{k}={v}" for k, v in COST_TAGS.items()} <= volume_tags
    assert storage_class.provider.startswith(the(pilot, K8S_PROVIDER).urn)
    assert pilot.named(f"{NAME}-aws-ebs-csi-driver").urn in storage_class.dependencies


def test_kubernetes_provider_gets_a_secret_kubeconfig(pilot: Capture) -> None:
    provider = the(pilot, K8S_PROVIDER)
    assert provider.name == f"{NAME}-k8s"
    assert provider.has_secrets
    assert provider.inputs["kubeconfig"] == REDACTED
    assert provider.inputs["enableServerSideApply"] == "true"


def test_kubeconfig_authenticates_through_aws_eks_get_token() -> None:
    config = json.loads(
        kubeconfig("swarm-pilot", "https://x.eks.amazonaws.com", "Q0E=", "eu-west-1")
    )
    assert config["current-context"] == "swarm-pilot"
    assert config["clusters"][0]["cluster"] == {
        "server": "https://x.eks.amazonaws.com",
        "certificate-authority-data": "Q0E=",
    }
    user = config["users"][0]["user"]
    assert "token" not in user
    args = user["exec"]["args"]
    assert user["exec"]["command"] == "aws"
    assert args[:2] == ["eks", "get-token"]
    assert args[args.index("--cluster-name") + 1] == "swarm-pilot"
    assert args[args.index("--region") + 1] == "eu-west-1"


# --- component contract ----------------------------------------------------------------


def test_every_child_descends_from_the_component(pilot: Capture) -> None:
    component = the(pilot, COMPONENT)
    for registration in pilot.registrations:
        if registration is component:
            continue
        assert registration.parent == component.urn, registration.name
        assert registration.name.startswith(f"{NAME}-"), registration.name


def test_child_names_are_unique(pilot: Capture) -> None:
    names = Counter(r.name for r in pilot.registrations)
    assert [n for n, count in names.items() if count > 1] == []


def test_every_taggable_aws_resource_carries_the_cost_tags(pilot: Capture) -> None:
    taggable = [
        r for r in pilot.registrations if r.type.startswith("aws:") and r.type not in UNTAGGABLE
    ]
    assert len(taggable) > 30
    for registration in taggable:
        tags: dict[str, str] = registration.inputs.get("tags", {})
        assert COST_TAGS.items() <= tags.items(), registration.name


def test_component_records_real_outputs() -> None:
    recorded: dict[str, Any] = {}

    def program() -> None:
        cluster = Cluster(NAME, ClusterArgs(cluster_spec(), COST_LABELS, "us-east-1"))
        eks = cluster.eks
        assert eks is not None
        pulumi.export("clusterName", eks.cluster_name)
        pulumi.export("issuer", eks.oidc_issuer)
        pulumi.export("subnets", pulumi.Output.all(*eks.private_subnet_ids))
        recorded["zones"] = eks.availability_zones
        recorded["version"] = eks.kubernetes_version
        recorded["dependencies"] = len(eks.node_group_dependencies)

    capture = run(program)
    assert capture.outputs["clusterName"] == "swarm-pilot"
    assert capture.outputs["issuer"] == "oidc.eks.us-east-1.amazonaws.com/id/PLAN"
    assert capture.outputs["subnets"] == [
        f"{NAME}-private-us-east-1a-id",
        f"{NAME}-private-us-east-1b-id",
    ]
    assert recorded == {
        "zones": ["us-east-1a", "us-east-1b"],
        "version": "1.33",
        "dependencies": 4 + 2 + 2,  # node policies, NAT routes, vpc-cni + kube-proxy
    }


def test_existing_mode_declares_nothing_on_aws() -> None:
    spec = ClusterSpec.model_validate(
        {**PILOT, "mode": "existing", "kubeconfigContext": "kind-swarm"}
    )
    clusters: list[Cluster] = []

    def program() -> None:
        clusters.append(Cluster(NAME, ClusterArgs(spec, COST_LABELS, "us-east-1")))

    capture = run(program)
    assert [r.type for r in capture.registrations if r.type.startswith("aws:")] == []
    assert sorted(r.type for r in capture.registrations) == [K8S_PROVIDER, COMPONENT]
    provider = the(capture, K8S_PROVIDER)
    assert provider.inputs["context"] == "kind-swarm"
    assert provider.inputs["enableServerSideApply"] == "true"
    assert provider.parent == the(capture, COMPONENT).urn
    assert clusters[0].eks is None


# --- pure helpers ----------------------------------------------------------------------


def test_pilot_subnet_layout() -> None:
    assert [(z.private, z.public) for z in carve_subnets("10.40.0.0/16", 2)] == [
        ("10.40.0.0/19", "10.40.224.0/22"),
        ("10.40.32.0/19", "10.40.228.0/22"),
    ]


def test_adding_a_zone_does_not_move_existing_subnets() -> None:
    assert carve_subnets("10.40.0.0/16", 3)[:2] == carve_subnets("10.40.0.0/16", 2)


@pytest.mark.parametrize("zones", [0, MAX_ZONES + 1])
def test_zone_count_outside_the_layout_is_refused(zones: int) -> None:
    with pytest.raises(ValueError, match=f"{zones} availability zones"):
        carve_subnets("10.40.0.0/16", zones)


vpc_cidrs: st.SearchStrategy[str] = st.builds(
    lambda address, prefix: str(ipaddress.IPv4Network((address, prefix), strict=False)),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=16, max_value=20),
)


@given(vpc_cidrs, st.integers(min_value=1, max_value=MAX_ZONES))
def test_subnets_are_inside_the_vpc_and_never_overlap(vpc_cidr: str, zones: int) -> None:
    vpc = ipaddress.IPv4Network(vpc_cidr)
    layout = carve_subnets(vpc_cidr, zones)
    assert len(layout) == zones
    subnets = [ipaddress.IPv4Network(c) for z in layout for c in (z.private, z.public)]
    assert all(s.subnet_of(vpc) for s in subnets)
    for i, a in enumerate(subnets):
        for b in subnets[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    # Private subnets hold every pod's address: at least 512 addresses even in a /20.
    assert all(ipaddress.IPv4Network(z.private).num_addresses >= 512 for z in layout)


def test_irsa_trust_policy_conditions_on_subject_and_audience() -> None:
    policy = json.loads(irsa_trust_policy("arn:oidc", "issuer.example/id/1", "ns", "sa"))
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"Federated": "arn:oidc"}
    assert statement["Condition"]["StringEquals"] == {
        "issuer.example/id/1:sub": "system:serviceaccount:ns:sa",
        "issuer.example/id/1:aud": "sts.amazonaws.com",
    }


def test_volume_tag_parameters_are_numbered_from_one() -> None:
    assert ebs_volume_tag_parameters({"team": "a", "environment": "b"}) == {
        "tagSpecification_1": "environment=b",
        "tagSpecification_2": "team=a",
    }
