"""The multi-cluster phase: two regional stacks and a global one, planned in dependency
order, the global plan fed from the regional plans' outputs through StackReferences."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components.data.kafka_replication import Flow, replication_flows, topic_patterns
from components.observe.alerts import cost_group
from components.observe.dashboards import DashboardInputs, cost
from components.specs import Namespaces
from components.traffic.global_routing import failover_partner
from components.traffic.region_peering import (
    OverlappingRegionsError,
    RegionNetwork,
    RegionPeering,
    RegionPeeringArgs,
    peering_pairs,
)
from components.traffic.regional_ingress import network_policies as ingress_network_policies
from stacks.ci import changed_stacks, stacks
from stacks.cli import main
from stacks.config import ConfigError, load_file
from stacks.global_config import load_global
from stacks.plan.recorder import REDACTED, PlannedOutputs, UnplannedReferenceError, run
from stacks.stack_refs import StackReferenceError, plan_order

ROOT = Path(__file__).resolve().parent.parent
STACKS = ROOT / "stacks"
REGIONS = ("scale-east", "scale-west")


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run of `swarmstack plan scale-global`: it plans both regions first."""
    out = tmp_path_factory.mktemp("multi")
    assert main(["plan", "scale-global", "--root", str(ROOT), "--out", str(out)]) == 0
    return out


def _aws(out: Path, stack: str) -> list[dict[str, Any]]:
    return yaml.safe_load((out / stack / "aws-resources.yaml").read_text())


def _of_type(out: Path, stack: str, type_: str) -> list[dict[str, Any]]:
    return [r for r in _aws(out, stack) if r["type"] == type_]


def _outputs(out: Path, stack: str) -> dict[str, Any]:
    return json.loads((out / stack / "outputs.json").read_text())


# --------------------------------------------------------------------------- order


def test_global_stack_plans_after_the_stacks_it_references() -> None:
    assert plan_order(STACKS, "scale-global") == ["scale-east", "scale-west", "scale-global"]
    assert plan_order(STACKS, "scale-east") == ["scale-east"]


def test_plan_of_the_global_stack_writes_every_stack_with_no_mandatory_violation(
    planned: Path,
) -> None:
    for stack in (*REGIONS, "scale-global"):
        violations = json.loads((planned / stack / "policy.json").read_text())
        assert [v for v in violations if v["level"] == "mandatory"] == [], stack
        assert _outputs(planned, stack)["phase"] == "production"


def test_each_region_scales_its_events_agents_on_its_own_msk_cluster(planned: Path) -> None:
    """KEDA reads each region's MSK consumer lag with IAM tokens signed for that region,
    as that cluster's operator role, which may describe only that cluster's tasks topics
    and groups; no region is left at replicas.min."""
    for stack, region in (("scale-east", "us-east-1"), ("scale-west", "us-west-2")):
        manifests = planned / stack / "manifests"
        [so_file] = manifests.glob("*-scaledobject-agent-researcher.yaml")
        [trigger] = yaml.safe_load(so_file.read_text())["spec"]["triggers"]
        assert trigger["metadata"]["saslTokenProvider"] == "aws_msk_iam", stack
        assert trigger["metadata"]["awsRegion"] == region, stack
        [auth_file] = manifests.glob("*-triggerauthentication-keda-lag-reader.yaml")
        assert yaml.safe_load(auth_file.read_text())["spec"] == {
            "podIdentity": {"provider": "aws", "identityOwner": "keda"}
        }
        [policy] = [
            r
            for r in _of_type(planned, stack, "aws:iam/rolePolicy:RolePolicy")
            if r["name"] == "keda-operator-policy"
        ]
        resources = [
            res
            for st in json.loads(policy["inputs"]["policy"])["Statement"]
            for res in ([st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"])
        ]
        assert all(f":{region}:" in res for res in resources), (stack, resources)
        summary = (planned / stack / "summary.txt").read_text()
        assert "no ScaledObject" not in summary, stack


# --------------------------------------------------------------------------- the feed


def test_global_records_name_the_gateways_the_regional_plans_output(planned: Path) -> None:
    regional = {s: _outputs(planned, s)["regional"] for s in REGIONS}
    east, west = regional["scale-east"], regional["scale-west"]
    assert east["region"] == "us-east-1" and west["region"] == "us-west-2"
    records = {
        r["name"]: r["inputs"]
        for r in _of_type(planned, "scale-global", "aws:route53/record:Record")
    }
    latency = {k: v for k, v in records.items() if "latencyRoutingPolicies" in v}
    assert {v["setIdentifier"]: v["aliases"][0]["name"] for v in latency.values()} == {
        "east": east["gateway"]["dnsName"],
        "west": west["gateway"]["dnsName"],
    }
    assert {v["latencyRoutingPolicies"][0]["region"] for v in latency.values()} == {
        "us-east-1",
        "us-west-2",
    }
    assert {v["aliases"][0]["zoneId"] for v in latency.values()} == {
        east["gateway"]["zoneId"],
        west["gateway"]["zoneId"],
    }
    assert {v["name"] for v in latency.values()} == {"gateway.agents.swarm.internal"}
    # Failover pairs: each region's own name answers with it, then with its partner.
    east_pair = {
        v["failoverRoutingPolicies"][0]["type"]: v["aliases"][0]["name"]
        for v in records.values()
        if v["name"] == "east.gateway.agents.swarm.internal"
    }
    assert east_pair == {
        "PRIMARY": east["gateway"]["dnsName"],
        "SECONDARY": west["gateway"]["dnsName"],
    }


def test_health_checks_read_the_regional_alarms(planned: Path) -> None:
    checks = _of_type(planned, "scale-global", "aws:route53/healthCheck:HealthCheck")
    wanted = {
        (
            _outputs(planned, s)["regional"]["health"]["alarmName"],
            _outputs(planned, s)["regional"]["region"],
        )
        for s in REGIONS
    }
    assert {
        (c["inputs"]["cloudwatchAlarmName"], c["inputs"]["cloudwatchAlarmRegion"]) for c in checks
    } == wanted
    assert {c["inputs"]["type"] for c in checks} == {"CLOUDWATCH_METRIC"}
    alarms = {
        a["inputs"]["name"]: a["inputs"]
        for s in REGIONS
        for a in _of_type(planned, s, "aws:cloudwatch/metricAlarm:MetricAlarm")
    }
    for name, _ in wanted:
        assert alarms[name]["metricName"] == "HealthyHostCount"
        assert alarms[name]["treatMissingData"] == "breaching"


def test_regional_gateway_is_private(planned: Path) -> None:
    for stack in REGIONS:
        (lb,) = _of_type(planned, stack, "aws:lb/loadBalancer:LoadBalancer")
        assert lb["inputs"]["internal"] is True
        assert lb["inputs"]["loadBalancerType"] == "network"
    (zone,) = _of_type(planned, "scale-global", "aws:route53/zone:Zone")
    assert {v["vpcRegion"] for v in zone["inputs"]["vpcs"]} == {"us-east-1", "us-west-2"}


def _manifests(out: Path, stack: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path in sorted((out / stack / "manifests").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        meta = doc["metadata"]
        found[(doc["kind"], meta.get("namespace", ""), meta["name"])] = doc
    return found


def test_the_nlb_enters_the_mesh_at_an_ingress_gateway(planned: Path) -> None:
    """The NLB's plain TCP reaches an Istio ingress gateway, which forwards to the model
    gateway over mTLS; the model gateway admits the ingress gateway's identity."""
    for stack in REGIONS:
        docs = _manifests(planned, stack)
        ns = docs[("Namespace", "", "gateway-ingress")]["metadata"]["labels"]
        assert ns["istio-injection"] == "enabled"  # the webhooks skip `disabled`
        assert ns["pod-security.kubernetes.io/enforce"] == "restricted"
        deployment = docs[("Deployment", "gateway-ingress", "gateway-ingress")]["spec"]
        assert deployment["replicas"] == 2
        pod = deployment["template"]
        assert pod["metadata"]["annotations"] == {
            "sidecar.istio.io/inject": "true",
            "inject.istio.io/templates": "gateway",
        }
        (proxy,) = pod["spec"]["containers"]
        assert proxy["name"] == "istio-proxy"
        region = _outputs(planned, stack)["regional"]["region"]
        assert proxy["image"].startswith(
            f"111122223333.dkr.ecr.{region}.amazonaws.com/swarm-scale/mirror/docker.io/istio/"
            "proxyv2:1.30.3@sha256:"
        )
        assert pod["spec"]["serviceAccountName"] == "gateway-ingress"
        service = docs[("Service", "gateway-ingress", "gateway-ingress")]["spec"]
        assert service["type"] == "NodePort"
        assert service["ports"] == [
            {"name": "http", "port": 4000, "targetPort": 8080, "nodePort": 30400, "protocol": "TCP"}
        ]
        assert service["selector"].items() <= pod["metadata"]["labels"].items()
        gateway = docs[("Gateway", "gateway-ingress", "gateway-ingress")]["spec"]
        assert gateway["selector"].items() <= pod["metadata"]["labels"].items()
        assert gateway["servers"] == [
            {"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
        ]
        route = docs[("VirtualService", "gateway-ingress", "gateway-ingress")]["spec"]
        assert route["gateways"] == ["gateway-ingress"]
        assert route["http"][0]["route"] == [
            {
                "destination": {
                    "host": "model-gateway.swarmstack-agents.svc.cluster.local",
                    "port": {"number": 4000},
                }
            }
        ]
        assert route["http"][0]["retries"] == {"attempts": 0}
        rule = docs[("DestinationRule", "gateway-ingress", "gateway-ingress")]["spec"]
        assert rule["trafficPolicy"]["tls"] == {"mode": "ISTIO_MUTUAL"}
        callers = docs[("AuthorizationPolicy", "swarmstack-agents", "model-gateway-callers")]
        principals = callers["spec"]["rules"][0]["from"][0]["source"]["principals"]
        assert "cluster.local/ns/gateway-ingress/sa/gateway-ingress" in principals
        # The agents' namespace stays STRICT: the ingress speaks mTLS to the model gateway.
        strict = docs[("PeerAuthentication", "swarmstack-agents", "default")]["spec"]
        assert strict == {"mtls": {"mode": "STRICT"}}
        # Closed by default; open to the clients' CIDRs on the listener only.
        assert docs[("NetworkPolicy", "gateway-ingress", "default-deny")]["spec"] == {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
        }
        clients = docs[("NetworkPolicy", "gateway-ingress", "allow-clients-to-gateway-ingress")]
        (opening,) = clients["spec"]["ingress"]
        cidrs = {b["ipBlock"]["cidr"] for b in opening["from"]}
        assert cidrs == {"10.50.0.0/16", "10.60.0.0/16"}
        assert opening["ports"] == [{"protocol": "TCP", "port": 8080}]
        into_agents = docs[
            ("NetworkPolicy", "swarmstack-agents", "allow-gateway-ingress-to-model-gateway")
        ]["spec"]["ingress"][0]
        assert into_agents["from"][0]["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": "gateway-ingress"}
        }
        assert into_agents["ports"] == [{"protocol": "TCP", "port": 4000}]


def test_the_ingress_admits_its_own_vpc_even_when_clients_are_elsewhere() -> None:
    """The NLB's health checks and kube-proxy's hop between nodes come from this VPC."""
    policies = ingress_network_policies(Namespaces(), ["10.60.0.0/16"], "10.50.0.0/16")
    (opening,) = policies["ingress-clients"]["spec"]["ingress"]
    assert [b["ipBlock"]["cidr"] for b in opening["from"]] == ["10.60.0.0/16", "10.50.0.0/16"]
    again = ingress_network_policies(Namespaces(), ["10.50.0.0/16"], "10.50.0.0/16")
    assert len(again["ingress-clients"]["spec"]["ingress"][0]["from"]) == 1


def test_the_system_nodes_are_the_nlb_targets_on_the_ingress_node_port(planned: Path) -> None:
    for stack in REGIONS:
        (group,) = _of_type(planned, stack, "aws:lb/targetGroup:TargetGroup")
        tg = group["inputs"]
        assert (tg["targetType"], tg["port"], tg["protocol"]) == ("instance", 30400, "TCP")
        # Health through the ingress to the model gateway's liveness path.
        assert tg["healthCheck"]["port"] == "traffic-port"
        assert tg["healthCheck"]["path"] == "/health/liveliness"
        (attachment,) = _of_type(planned, stack, "aws:autoscaling/attachment:Attachment")
        (nodes,) = [
            n
            for n in _of_type(planned, stack, "aws:eks/nodeGroup:NodeGroup")
            if n["inputs"]["nodeGroupName"] == "system"
        ]
        assert attachment["inputs"]["autoscalingGroupName"] == "eks-system-planned"
        assert nodes["name"] == "cluster-system"
        assert attachment["inputs"]["lbTargetGroupArn"].endswith("/regional-edge-gateway-id")
        rules = {
            r["name"]: r["inputs"]
            for r in _of_type(
                planned, stack, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
            )
        }
        node_rule = rules["regional-edge-nodes"]
        assert (node_rule["fromPort"], node_rule["toPort"]) == (30400, 30400)
        assert node_rule["referencedSecurityGroupId"] == "regional-edge-lb-id"
        (lb_group,) = [
            g
            for g in _of_type(planned, stack, "aws:ec2/securityGroup:SecurityGroup")
            if g["name"] == "regional-edge-lb"
        ]
        assert [(e["fromPort"], e["toPort"]) for e in lb_group["inputs"]["egress"]] == [
            (30400, 30400)
        ]


def test_peering_routes_each_region_to_the_other_from_the_regional_outputs(
    planned: Path,
) -> None:
    east, west = (_outputs(planned, s)["regional"] for s in REGIONS)
    (connection,) = _of_type(
        planned, "scale-global", "aws:ec2/vpcPeeringConnection:VpcPeeringConnection"
    )
    inputs = connection["inputs"]
    assert (inputs["region"], inputs["vpcId"]) == ("us-east-1", east["vpcId"])
    assert (inputs["peerRegion"], inputs["peerVpcId"]) == ("us-west-2", west["vpcId"])
    assert inputs["autoAccept"] is False  # across regions only the accepter can accept
    (accepter,) = _of_type(
        planned, "scale-global", "aws:ec2/vpcPeeringConnectionAccepter:VpcPeeringConnectionAccepter"
    )
    assert accepter["inputs"]["region"] == "us-west-2"
    assert accepter["inputs"]["autoAccept"] is True
    peering_id = accepter["inputs"]["vpcPeeringConnectionId"]
    assert _outputs(planned, "scale-global")["peeringConnections"] == {"east-west": peering_id}
    routes = {
        (r["inputs"]["region"], r["inputs"]["routeTableId"]): r["inputs"]
        for r in _of_type(planned, "scale-global", "aws:ec2/route:Route")
    }
    wanted: dict[tuple[str, str], str] = {}
    for here, there in ((east, west), (west, east)):
        assert len(here["privateRouteTableIds"]) == 3  # one per AZ
        for table in here["privateRouteTableIds"]:
            wanted[(here["region"], table)] = there["vpcCidr"]
    assert {k: v["destinationCidrBlock"] for k, v in routes.items()} == wanted
    assert {v["vpcPeeringConnectionId"] for v in routes.values()} == {peering_id}
    assert {east["vpcCidr"], west["vpcCidr"]} == {"10.50.0.0/16", "10.60.0.0/16"}
    # Each region admits the other's VPC at its gateway's load balancer.
    for stack, other in (("scale-east", west), ("scale-west", east)):
        groups = _of_type(planned, stack, "aws:ec2/securityGroup:SecurityGroup")
        (lb,) = [g for g in groups if g["name"] == "regional-edge-lb"]
        assert other["vpcCidr"] in lb["inputs"]["ingress"][0]["cidrBlocks"]


def test_replicators_copy_results_both_ways_and_only_the_primary_tasks(planned: Path) -> None:
    arns = {
        _outputs(planned, s)["regional"]["alias"]: _outputs(planned, s)["regional"]["kafka"][
            "clusterArn"
        ]
        for s in REGIONS
    }
    replicators = {
        r["inputs"]["replicatorName"]: r["inputs"]
        for r in _of_type(planned, "scale-global", "aws:msk/replicator:Replicator")
    }
    assert sorted(replicators) == ["scale-global-east-to-west", "scale-global-west-to-east"]
    to_west = replicators["scale-global-east-to-west"]
    to_east = replicators["scale-global-west-to-east"]
    assert to_west["region"] == "us-west-2" and to_east["region"] == "us-east-1"
    info = to_west["replicationInfoList"]
    assert info["sourceKafkaClusterArn"] == arns["east"]
    assert info["targetKafkaClusterArn"] == arns["west"]
    assert info["topicReplications"][0]["topicsToReplicates"] == [
        r"^researcher\.tasks$",
        r"^researcher\.results$",
    ]
    assert info["topicReplications"][0]["topicNameConfiguration"] == {
        "type": "PREFIXED_WITH_SOURCE_CLUSTER_ALIAS"
    }
    assert info["consumerGroupReplications"][0]["synchroniseConsumerGroupOffsets"] is True
    back = to_east["replicationInfoList"]
    assert back["topicReplications"][0]["topicsToReplicates"] == [r"^researcher\.results$"]
    assert back["consumerGroupReplications"][0]["synchroniseConsumerGroupOffsets"] is False
    clusters = [c["amazonMskCluster"]["mskClusterArn"] for c in to_west["kafkaClusters"]]
    assert clusters == [arns["east"], arns["west"]]


def test_images_replicate_from_the_primary_registry(planned: Path) -> None:
    (config,) = _of_type(
        planned, "scale-global", "aws:ecr/replicationConfiguration:ReplicationConfiguration"
    )
    assert config["inputs"]["region"] == "us-east-1"
    (rule,) = config["inputs"]["replicationConfiguration"]["rules"]
    assert [d["region"] for d in rule["destinations"]] == ["us-west-2"]
    assert rule["repositoryFilters"] == [
        {"filter": r, "filterType": "PREFIX_MATCH"}
        for r in _outputs(planned, "scale-east")["regional"]["imageRepositories"]
    ]
    # Every image scale-west runs is its region's copy of a replicated repository.
    replicated = {f["filter"] for f in rule["repositoryFilters"]}
    west_images = {
        c["image"]
        for p in sorted((planned / "scale-west" / "manifests").glob("*.yaml"))
        for c in _containers(yaml.safe_load(p.read_text()))
    }
    assert west_images
    for image in west_images:
        host, _, rest = image.partition("/")
        assert host == "111122223333.dkr.ecr.us-west-2.amazonaws.com", image
        assert "@sha256:" in rest, image
        assert rest.split(":", 1)[0] in replicated, image


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec") or {}
    if doc.get("kind") == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    pod = (spec.get("template") or {}).get("spec") or {}
    return [*pod.get("containers", []), *pod.get("initContainers", [])]


# --------------------------------------------------------------------------- errors


def _project(tmp_path: Path, files: dict[str, dict[str, Any]]) -> Path:
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copy(STACKS / "__main__.py", root / "stacks" / "__main__.py")
    shutil.copytree(ROOT / "policies", root / "policies")
    for name, config in files.items():
        (root / "stacks" / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": config}))
    return root


def _global(regions: list[dict[str, str]], **kafka: str) -> dict[str, Any]:
    doc = yaml.safe_load((STACKS / "Pulumi.scale-global.yaml").read_text())["config"]
    doc["swarmstack:global"]["regions"] = regions
    doc["swarmstack:global"]["kafka"].update(kafka)
    return doc


def test_reference_to_a_stack_without_a_stack_file_names_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _project(
        tmp_path,
        {
            "g": _global(
                [
                    {"name": "east", "stack": "acme/swarmstack/scale-nowhere", "role": "primary"},
                    {"name": "west", "stack": "scale-west", "role": "secondary"},
                ]
            )
        },
    )
    assert main(["plan", "g", "--root", str(root), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "stack g references stack 'acme/swarmstack/scale-nowhere'" in err
    assert "global.regions[0].stack" in err
    assert "no stack file stacks/Pulumi.scale-nowhere.yaml" in err
    assert not (tmp_path / "out").exists()


def test_reference_cycle_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _project(
        tmp_path,
        {
            "a": _global(
                [
                    {"name": "east", "stack": "b", "role": "primary"},
                    {"name": "west", "stack": "c", "role": "secondary"},
                ]
            ),
            "b": _global(
                [
                    {"name": "east", "stack": "a", "role": "primary"},
                    {"name": "west", "stack": "c", "role": "secondary"},
                ]
            ),
            "c": {"swarmstack:phase": "pilot"},
        },
    )
    assert main(["plan", "a", "--root", str(root), "--out", str(tmp_path / "out")]) == 2
    assert "stack references form a cycle: a -> b -> a" in capsys.readouterr().err
    with pytest.raises(StackReferenceError, match="b -> a -> b"):
        plan_order(root / "stacks", "b")


def test_active_active_task_replication_is_refused_before_anything_is_planned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _project(
        tmp_path,
        {
            "g": _global(
                [
                    {"name": "east", "stack": "scale-east", "role": "primary"},
                    {"name": "west", "stack": "scale-west", "role": "secondary"},
                ],
                tasks="activeActive",
            ),
            "scale-east": {},
            "scale-west": {},
        },
    )
    assert main(["plan", "g", "--root", str(root), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "global.kafka.tasks: 'activeActive' is refused" in err
    assert "would run twice" in err
    assert not (tmp_path / "out").exists()  # the regions were not planned either


def test_overlapping_region_vpcs_are_refused_before_anything_is_planned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    west = yaml.safe_load((STACKS / "Pulumi.scale-west.yaml").read_text())["config"]
    west["swarmstack:cluster"]["vpcCidr"] = "10.50.128.0/17"  # inside scale-east's 10.50/16
    east = yaml.safe_load((STACKS / "Pulumi.scale-east.yaml").read_text())["config"]
    root = _project(
        tmp_path,
        {
            "g": _global(
                [
                    {"name": "east", "stack": "scale-east", "role": "primary"},
                    {"name": "west", "stack": "acme/swarmstack/scale-west", "role": "secondary"},
                ]
            ),
            "scale-east": east,
            "scale-west": west,
        },
    )
    assert main(["plan", "g", "--root", str(root), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert (
        "stack g (stacks/Pulumi.g.yaml): global.regions[0].stack 'scale-east' (cluster.vpcCidr "
        "10.50.0.0/16 in stacks/Pulumi.scale-east.yaml) overlaps global.regions[1].stack "
        "'acme/swarmstack/scale-west' (cluster.vpcCidr 10.50.128.0/17 in "
        "stacks/Pulumi.scale-west.yaml): the global stack peers the regions' VPCs, which "
        "needs disjoint CIDRs"
    ) in err
    assert not (tmp_path / "out").exists()  # the regions were not planned either


def test_overlap_in_the_referenced_outputs_names_both_stacks() -> None:
    """A deployed region read through its StackReference is checked again: its output may
    predate a config change the pre-plan check saw."""

    def program() -> None:
        RegionPeering(
            "peering",
            RegionPeeringArgs(
                deployment="g",
                regions=[
                    RegionNetwork(n, f"org/swarmstack/{n}", r, f"vpc-{n}", cidr, [f"rt-{n}"])
                    for n, r, cidr in (
                        ("east", "us-east-1", "10.50.0.0/16"),
                        ("west", "us-west-2", "10.60.0.0/16"),
                        ("eu", "eu-west-1", "10.60.64.0/18"),
                    )
                ],
                tags={},
            ),
        )

    with pytest.raises(OverlappingRegionsError) as err:
        run(program, stack="g", references={})
    assert str(err.value) == (
        "stack g: stack org/swarmstack/west (regional.vpcCidr 10.60.0.0/16) overlaps stack "
        "org/swarmstack/eu (regional.vpcCidr 10.60.64.0/18): peered VPCs need disjoint "
        "CIDRs (set cluster.vpcCidr apart)"
    )
    assert peering_pairs(["east", "west", "eu"]) == [
        ("east", "west"),
        ("east", "eu"),
        ("west", "eu"),
    ]


def test_global_config_errors_name_their_paths() -> None:
    raw = {
        "phase": "production",
        "costLabels": {"team": "t", "costCenter": "c", "environment": "e"},
        "global": {
            "regions": [
                {"name": "east", "stack": "scale-east", "role": "secondary"},
                {"name": "east", "stack": "scale-west", "role": "secondary"},
            ],
            "routing": {"zoneName": "agents.swarm.internal"},
        },
        "cluster": {"name": "x"},
    }
    with pytest.raises(ConfigError) as err:
        load_global(raw, "stacks/Pulumi.g.yaml")
    assert "cluster: unknown key (valid keys here: costLabels, global, phase)" in str(err.value)
    del raw["cluster"]
    with pytest.raises(ConfigError) as err:
        load_global(raw, "stacks/Pulumi.g.yaml")
    text = str(err.value)
    assert "global.regions: 0 regions with role primary" in text
    assert "global.regions[].name: 'east' is listed more than once" in text


def test_a_reference_the_plan_did_not_plan_names_both_stacks() -> None:
    def program() -> None:
        ref = pulumi.StackReference("other", stack_name="org/swarmstack/elsewhere")
        pulumi.export("x", ref.require_output("regional"))

    with pytest.raises(UnplannedReferenceError) as err:
        run(program, stack="reader", references={})
    assert "stack reader references stack org/swarmstack/elsewhere" in str(err.value)
    assert "not planned" in str(err.value)


def test_referenced_secrets_stay_secret() -> None:
    """A secret output of the referenced plan is a secret in the reading stack: exported
    again, it is redacted and listed as secret; a plain one passes through."""

    def program() -> None:
        ref = pulumi.StackReference("region", stack_name="east")
        for name in ("kubeconfig", "phase"):
            pulumi.export(name, ref.get_output(name))

    capture = run(
        program,
        stack="reader",
        references={
            "east": PlannedOutputs({"kubeconfig": REDACTED, "phase": "production"}, ["kubeconfig"])
        },
    )
    assert capture.outputs == {"kubeconfig": REDACTED, "phase": "production"}
    assert capture.secret_outputs == ["kubeconfig"]


def test_regional_needs_production_msk_and_its_own_region(tmp_path: Path) -> None:
    doc = yaml.safe_load((STACKS / "Pulumi.scale-east.yaml").read_text())
    config = doc["config"]
    config["swarmstack:phase"] = "pilot"
    config["swarmstack:regional"]["region"] = "us-west-2"
    config["swarmstack:dataPlane"]["kafka"] = yaml.safe_load(
        (STACKS / "Pulumi.pilot.yaml").read_text()
    )["config"]["swarmstack:dataPlane"]["kafka"]
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as err:
        load_file(path)
    text = str(err.value)
    assert "regional.region: 'us-west-2' is not the stack's region aws:region 'us-east-1'" in text
    assert "phase: 'pilot': a regional stack" in text
    assert "dataPlane.kafka.mode: 'strimzi': a regional stack's tasks and results" in text


# --------------------------------------------------------------------------- pure parts


def test_flows_replicate_tasks_only_from_the_primary() -> None:
    flows = replication_flows([("east", "primary"), ("west", "secondary"), ("eu", "secondary")])
    assert {f.name: f.tasks for f in flows} == {
        "east-to-west": True,
        "east-to-eu": True,
        "west-to-east": False,
        "west-to-eu": False,
        "eu-to-east": False,
        "eu-to-west": False,
    }
    assert Flow("a", "b", tasks=False).name == "a-to-b"
    assert topic_patterns(["r.tasks"]) == [r"^r\.tasks$"]


def test_failover_partners() -> None:
    regions = [("east", "primary"), ("west", "secondary"), ("eu", "secondary")]
    assert {n: failover_partner(n, regions) for n, _ in regions} == {
        "east": "west",
        "west": "east",
        "eu": "east",
    }


def test_regional_cost_rules_and_dashboard_carry_the_region() -> None:
    east = load_file(STACKS / "Pulumi.scale-east.yaml")
    group = cost_group(east)
    assert group.rules and all(dict(r.labels).get("region") == "us-east-1" for r in group.rules)
    board = cost(DashboardInputs.from_config(east)).build()
    assert board.title == "swarmstack / Cost (us-east-1)"
    pilot = load_file(STACKS / "Pulumi.pilot.yaml")
    assert all("region" not in dict(r.labels) for r in cost_group(pilot).rules)


def test_multi_cluster_demand_is_50_agents_and_1000_users(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configs = [load_file(STACKS / f"Pulumi.{s}.yaml") for s in REGIONS]
    assert sum(c.demand.users for c in configs if c.demand) >= 1000
    assert sum(a.replicas.max for c in configs for a in c.agents) >= 50
    for stack in REGIONS:  # each region carries its share of the peak
        assert main(["capacity", stack, "--root", str(ROOT)]) == 0, capsys.readouterr().out


# --------------------------------------------------------------------------- CI


def test_a_change_to_a_region_replans_the_global_stack() -> None:
    available = stacks(ROOT)
    assert changed_stacks(["stacks/Pulumi.scale-east.yaml"], available, ROOT) == [
        "scale-east",
        "scale-global",
    ]
    assert changed_stacks(["policies/config/scale-west.json"], available, ROOT) == [
        "scale-global",
        "scale-west",
    ]
    assert changed_stacks(["stacks/Pulumi.scale-global.yaml"], available, ROOT) == ["scale-global"]
    assert changed_stacks(["stacks/Pulumi.pilot.yaml"], available, ROOT) == ["pilot"]


def test_without_pyyaml_every_referencing_stack_is_replanned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stacks import ci  # noqa: PLC0415

    def no_yaml(*_: object) -> set[str]:
        raise ImportError("No module named 'yaml'")

    monkeypatch.setattr(ci, "dependents", no_yaml)
    available = stacks(ROOT)
    assert ci.changed_stacks(["stacks/Pulumi.scale-west.yaml"], available, ROOT) == [
        "scale-global",
        "scale-west",
    ]
