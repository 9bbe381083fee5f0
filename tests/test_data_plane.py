"""The data plane wired into a stack: config rules, the plan's objects, cost, the contract.

Plans run the real program on the SDK's mock runtime (no Pulumi engine runs here);
`swarmstack plan` is called as a user would, on the shipped pilot or on a variant stack
file in a temporary project.
"""

from __future__ import annotations

import ast
import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent_worker.config import load_settings

from components.agents.spec import AgentSpec
from components.data import qdrant as qdrant_store
from components.data import redis as redis_store
from components.data.contract import data_plane_contract, worker_wiring
from components.data.kafka import (
    KafkaConnection,
    SecretKeyRef,
    rendered_topics,
    strimzi_connection,
)
from components.data.network import StoreAccess, data_network_policies
from stacks.cli import EXIT_CONFIG, main
from stacks.config import ConfigError, load
from stacks.data_plane import store_access
from stacks.plan.runner import PLACEHOLDER_PREFIX
from stacks.reference import (
    _stack_levels,  # pyright: ignore[reportPrivateUsage]
)

ROOT = Path(__file__).resolve().parent.parent
WORKER_CONFIG = ROOT / "images" / "agent-worker" / "agent_worker" / "config.py"
DATA_RULES = ("kafka-durable", "session-store-no-eviction", "stateful-stores-persistent")
SOURCE = "stacks/Pulumi.pilot.yaml"

Mutate = Callable[[dict[str, Any]], None]


def _project(tmp_path: Path, mutate: Mutate | None = None) -> Path:
    """A copy of the project whose pilot stack file is changed by `mutate`."""
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copy(ROOT / "stacks" / "__main__.py", root / "stacks" / "__main__.py")
    shutil.copytree(ROOT / "policies", root / "policies")
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.pilot.yaml").read_text())
    if mutate is not None:
        mutate(doc["config"])
    (root / "stacks" / "Pulumi.pilot.yaml").write_text(yaml.safe_dump(doc))
    return root


def _manifests(out: Path) -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted((out / "manifests").glob("*.yaml"))]


@pytest.fixture(scope="module")
def pilot_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plan")
    assert main(["plan", "pilot", "--root", str(ROOT), "--out", str(out)]) == 0
    return out / "pilot"


# --------------------------------------------------------------------------- the pilot


def test_pilot_plans_kraft_kafka_over_three_zones_redis_and_qdrant(pilot_out: Path) -> None:
    docs = _manifests(pilot_out)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    (kafka,) = by_kind["Kafka"]
    assert kafka["spec"]["kafka"]["rack"] == {"topologyKey": "topology.kubernetes.io/zone"}
    assert "zookeeper" not in kafka["spec"]
    pools = {p["metadata"]["name"]: p["spec"] for p in by_kind["KafkaNodePool"]}
    assert pools["broker"]["roles"] == ["broker"] and pools["broker"]["replicas"] == 3
    assert pools["controller"]["roles"] == ["controller"]
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3 and config["min.insync.replicas"] == 2
    # Three private subnets, one per zone, for three brokers (rack awareness spreads them).
    aws = yaml.safe_load((pilot_out / "aws-resources.yaml").read_text())
    subnets = [r for r in aws if r["type"] == "aws:ec2/subnet:Subnet"]
    zones = {r["inputs"]["availabilityZone"] for r in subnets}
    assert len(zones) == 3
    # The GPU pool stays in one zone: its node group uses one subnet.
    groups = [r for r in aws if r["type"] == "aws:eks/nodeGroup:NodeGroup"]
    gpu = next(g for g in groups if "h100" in g["name"])
    assert len(gpu["inputs"]["subnetIds"]) == 1
    statefulsets = {
        s["metadata"]["name"]
        for s in by_kind["StatefulSet"]
        if s["metadata"]["namespace"] == "swarmstack-data"  # the gateway's Postgres is not
    }
    assert statefulsets == {"session-store", "vector-store"}
    # KafkaUsers (so their password Secrets) are in the agents' namespace, which the
    # User Operator watches; the listener serves the stack CA's certificate.
    assert {u["metadata"]["namespace"] for u in by_kind["KafkaUser"]} == {"swarmstack-agents"}
    user_operator = kafka["spec"]["entityOperator"]["userOperator"]
    assert user_operator == {"watchedNamespace": "swarmstack-agents"}
    listener = kafka["spec"]["kafka"]["listeners"][0]
    assert listener["configuration"]["brokerCertChainAndKey"]["secretName"] == (
        "events-listener-tls"
    )
    certs = {c["metadata"]["name"]: c for c in by_kind["Certificate"]}
    assert certs["events-listener-tls"]["spec"]["privateKey"]["encoding"] == "PKCS8"
    assert certs["swarmstack-data-ca"]["metadata"]["namespace"] == "swarmstack-agents"


def test_pilot_has_no_mandatory_violation_and_the_data_rules_are_mandatory(
    pilot_out: Path,
) -> None:
    levels = _stack_levels(ROOT, "pilot")
    for rule in DATA_RULES:
        assert levels[rule] == "mandatory", rule
    findings = json.loads((pilot_out / "policy.json").read_text())
    assert [f for f in findings if f["level"] == "mandatory"] == []
    checks = json.loads((pilot_out / "checks.json").read_text())
    assert [c for c in checks if c["severity"] == "error"] == []
    # No custom resource is left unchecked: none warns that it has no schema.
    assert not [c for c in checks if c["check"] == "schema" and "no Kubernetes" in c["message"]]


def test_outputs_carry_the_contract_as_references_only(pilot_out: Path) -> None:
    text = (pilot_out / "outputs.json").read_text()
    assert PLACEHOLDER_PREFIX not in text
    contract = json.loads(text)["dataPlane"]
    assert contract["sessionStore"]["password"] == {
        "namespace": "swarmstack-agents",
        "name": "session-store-client",
        "key": "password",
    }
    assert contract["eventBus"]["agents"]["researcher"]["password"]["namespace"] == (
        "swarmstack-agents"
    )
    assert contract["vectorStore"]["readOnlyApiKey"]["key"] == "read-only-api-key"
    # Every Secret the contract names is one the plan declares or Strimzi/cert-manager
    # write, in the agents' namespace (a pod mounts only its own namespace's Secrets).
    refs: list[dict[str, str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if set(node) == {"namespace", "name", "key"}:
                refs.append(node)  # pyright: ignore[reportUnknownArgumentType]
            for v in node.values():  # pyright: ignore[reportUnknownVariableType]
                walk(v)

    walk(contract)
    assert refs and {r["namespace"] for r in refs} == {"swarmstack-agents"}
    docs = _manifests(pilot_out)
    written = {d["spec"]["secretName"] for d in docs if d["kind"] == "Certificate"} | {
        d["metadata"]["name"] for d in docs if d["kind"] in ("Secret", "KafkaUser")
    }
    assert {r["name"] for r in refs} <= written


# --------------------------------------------------------------------------- managed variant


def _managed(config: dict[str, Any]) -> None:
    data = config["swarmstack:dataPlane"]
    data["kafka"] = {
        "mode": "msk",
        "version": "4.1.x.kraft",
        "brokers": 3,
        "replicationFactor": 3,
        "minInsyncReplicas": 2,
        "storage": {"sizeGib": 200},
        "msk": {"brokerType": "kafka.m7g.large", "clientAuth": "iam"},
    }
    config["swarmstack:images"]["agentWorker"] = {
        "repository": "210987654321.dkr.ecr.us-east-1.amazonaws.com/swarmstack/agent-worker",
        "tag": "0.4.0",
    }
    data["redis"] = {
        "mode": "elasticache",
        "engine": "valkey",
        "version": "8.1",
        "elasticache": {"nodeType": "cache.r7g.large", "nodes": 2},
    }


def test_msk_and_elasticache_variant_plans_tls_kms_auth_private_subnets_and_cost(
    tmp_path: Path,
) -> None:
    root = _project(tmp_path, _managed)
    out = tmp_path / "out"
    assert main(["plan", "pilot", "--root", str(root), "--out", str(out)]) == 0
    aws = yaml.safe_load((out / "pilot" / "aws-resources.yaml").read_text())
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in aws:
        by_type.setdefault(r["type"], []).append(r)
    (msk,) = by_type["aws:msk/cluster:Cluster"]
    inputs = msk["inputs"]
    transit = inputs["encryptionInfo"]["encryptionInTransit"]
    assert transit == {"clientBroker": "TLS", "inCluster": True}
    assert "encryptionAtRestKmsKeyArn" in inputs["encryptionInfo"]
    assert inputs["clientAuthentication"]["sasl"] == {"iam": True}
    assert inputs["clientAuthentication"]["unauthenticated"] is False
    assert inputs["numberOfBrokerNodes"] == 3
    assert len(inputs["brokerNodeGroupInfo"]["clientSubnets"]) == 3
    (group,) = by_type["aws:elasticache/replicationGroup:ReplicationGroup"]
    g = group["inputs"]
    assert g["transitEncryptionEnabled"] is True and g["transitEncryptionMode"] == "required"
    assert g["atRestEncryptionEnabled"] is True and "kmsKeyId" in g
    assert g["authToken"] == "REDACTED"
    assert g["multiAzEnabled"] is True and g["automaticFailoverEnabled"] is True
    (subnet_group,) = by_type["aws:elasticache/subnetGroup:SubnetGroup"]
    assert len(subnet_group["inputs"]["subnetIds"]) == 3
    # No in-cluster Kafka or Redis when AWS runs them.
    kinds = {d["kind"] for d in _manifests(out / "pilot")}
    assert "Kafka" not in kinds
    names = {d["metadata"]["name"] for d in _manifests(out / "pilot")}
    assert "session-store-config" not in names
    summary = json.loads((out / "pilot" / "summary.json").read_text())
    stores = summary["managedDataStores"]
    msk_cost = next(v for k, v in stores.items() if k.startswith("event-bus"))
    assert msk_cost["usdPerHour"] == pytest.approx(
        (0.204 * 3 * 730 + 0.10 * 200 * 3) / 730, abs=0.001
    )
    cache = next(v for k, v in stores.items() if k.startswith("session-store"))
    assert cache["usdPerHour"] == pytest.approx(0.219 * 0.8 * 2, abs=0.001)
    text = (out / "pilot" / "summary.txt").read_text()
    assert "MSK 3 x kafka.m7g.large" in text and "ElastiCache valkey 2 x cache.r7g.large" in text
    # The meshed agents reach the managed stores through ServiceEntries the plan validated.
    entries = {
        d["metadata"]["name"]: d["spec"]["hosts"]
        for d in _manifests(out / "pilot")
        if d["kind"] == "ServiceEntry" and d["metadata"]["namespace"] == "swarmstack-agents"
    }
    assert entries == {
        "managed-elasticache": ["*.cache.amazonaws.com"],
        "managed-msk": ["*.kafka.us-east-1.amazonaws.com"],
        "managed-sts": ["sts.us-east-1.amazonaws.com"],
        "model-gateway-egress": ["api.openai.com"],  # the gateway's managed model API
    }
    # The gateway shares the session store: its Sidecar shows it ElastiCache's hosts.
    sidecars = {
        d["metadata"]["name"]: d["spec"]["egress"][0]["hosts"]
        for d in _manifests(out / "pilot")
        if d["kind"] == "Sidecar" and d["metadata"]["namespace"] == "swarmstack-agents"
    }
    assert "./*.cache.amazonaws.com" in sidecars["model-gateway"]
    checks = json.loads((out / "pilot" / "checks.json").read_text())
    assert [c for c in checks if c["severity"] == "error"] == []


def test_msk_topics_come_from_a_job_of_the_worker_image_with_its_own_iam_role(
    tmp_path: Path,
) -> None:
    root = _project(tmp_path, _managed)
    out = tmp_path / "out"
    assert main(["plan", "pilot", "--root", str(root), "--out", str(out)]) == 0
    docs = _manifests(out / "pilot")
    (configmap,) = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "events-topics"
    ]
    listed = json.loads(configmap["data"]["topics.json"])["topics"]
    raw = yaml.safe_load((root / "stacks" / "Pulumi.pilot.yaml").read_text())["config"]
    mine = {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("swarmstack:")}
    config = load(mine, "us-east-1", SOURCE)
    assert config.data_plane.kafka is not None
    rendered = rendered_topics(config.data_plane.kafka, config.agents)
    assert [t["name"] for t in listed] == [t.name for t in rendered]
    assert {t["name"] for t in listed} >= {"researcher.tasks", "researcher.results"}

    (job,) = [
        d
        for d in docs
        if d["kind"] == "Job" and not d["metadata"]["name"].startswith("model-gateway-")
    ]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == (
        "210987654321.dkr.ecr.us-east-1.amazonaws.com/swarmstack/agent-worker:0.4.0"
    )
    assert container["command"] == ["python", "-m", "agent_worker.topics", "/config/topics.json"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_SASL_MECHANISM"] == "OAUTHBEARER"
    assert env["AWS_REGION"] == "us-east-1"
    assert "KAFKA_PASSWORD_FILE" not in env and "KAFKA_USERNAME" not in env
    assert pod["volumes"] == [{"name": "topics", "configMap": {"name": "events-topics"}}]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # Its own service account, bound to an IAM role only that account may assume.
    (account,) = [
        d
        for d in docs
        if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == pod["serviceAccountName"]
    ]
    assert account["metadata"]["namespace"] == job["metadata"]["namespace"] == "swarmstack-data"
    assert "eks.amazonaws.com/role-arn" in account["metadata"]["annotations"]
    resources = yaml.safe_load((out / "pilot" / "aws-resources.yaml").read_text())
    (role,) = [
        r
        for r in resources
        if r["type"] == "aws:iam/role:Role" and r["name"] == "event-bus-topics-role"
    ]
    trust = json.loads(role["inputs"]["assumeRolePolicy"])
    condition = trust["Statement"][0]["Condition"]["StringEquals"]
    assert (
        f"system:serviceaccount:swarmstack-data:{pod['serviceAccountName']}" in condition.values()
    )
    (policy,) = [
        r
        for r in resources
        if r["type"] == "aws:iam/rolePolicy:RolePolicy" and r["name"] == "event-bus-topics-admin"
    ]
    statements = json.loads(policy["inputs"]["policy"])["Statement"]
    topic_arns = next(
        s["Resource"] for s in statements if "kafka-cluster:CreateTopic" in s["Action"]
    )
    assert sorted(a.rsplit("/", 1)[1] for a in topic_arns) == sorted(t.name for t in rendered)
    actions = {a for s in statements for a in s["Action"]}
    assert (
        not {"kafka-cluster:DeleteTopic", "kafka-cluster:WriteData", "kafka-cluster:ReadData"}
        & actions
    )


# --------------------------------------------------------------------------- bad configs


def _set(path: str, value: Any) -> Mutate:
    def mutate(config: dict[str, Any]) -> None:
        keys = path.split(".")
        node = config[f"swarmstack:{keys[0]}"]
        for k in keys[1:-1]:
            node = node[int(k)] if k.isdigit() else node[k]
        last = keys[-1]
        node[int(last) if last.isdigit() else last] = value

    return mutate


def _existing_without_network(config: dict[str, Any]) -> None:
    cluster = config["swarmstack:cluster"]
    cluster["mode"] = "existing"
    cluster["kubeconfigContext"] = "pilot"
    _managed(config)


def _msk_without_worker_image(config: dict[str, Any]) -> None:
    _managed(config)
    del config["swarmstack:images"]["agentWorker"]


def _msk_with_scram(config: dict[str, Any]) -> None:
    _managed(config)
    config["swarmstack:dataPlane"]["kafka"]["msk"]["clientAuth"] = "scram"


BAD = [
    (_set("dataPlane.kafka.replicationFactor", 4), "dataPlane.kafka.replicationFactor: 4 is above brokers (3)"),  # noqa: E501
    (_set("dataPlane.kafka.minInsyncReplicas", 3), "dataPlane.kafka.minInsyncReplicas: 3 is not below replicationFactor 3"),  # noqa: E501
    (_set("agents.0.topics.tasks.partitions", 2), "agents[0].topics.tasks.partitions: 2 partitions for up to 6 replicas"),  # noqa: E501
    (_set("dataPlane.redis.maxmemoryPolicy", "allkeys-lru"), "dataPlane.redis.maxmemoryPolicy: 'allkeys-lru' evicts keys"),  # noqa: E501
    (_set("dataPlane.redis.version", "6.2"), "dataPlane.redis.version: '6.2' is not a known valkey version"),  # noqa: E501
    (_set("dataPlane.kafka.version", "3.7.0"), "dataPlane.kafka.version: '3.7.0' is not a Kafka version of Strimzi"),  # noqa: E501
    (_existing_without_network, "dataPlane.kafka.mode: 'msk' runs in AWS next to the cluster, but cluster.mode is 'existing' and cluster.network is not set"),  # noqa: E501
    (_msk_without_worker_image, "images.agentWorker: is not set, but dataPlane.kafka.mode is 'msk'"),  # noqa: E501
    (_msk_with_scram, "dataPlane.kafka.msk.clientAuth"),
    (_set("cluster.availabilityZones", 2), "dataPlane.kafka.replicationFactor: 3 replicas need as many AZs, the cluster has 2"),  # noqa: E501
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "expected"), BAD, ids=[e.split(":")[0] for _, e in BAD])
def test_bad_data_plane_config_stops_the_plan_naming_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate: Mutate, expected: str
) -> None:
    root = _project(tmp_path, mutate)
    out = tmp_path / "out"
    (out / "pilot").mkdir(parents=True)
    (out / "pilot" / "summary.txt").write_text("previous plan\n")
    assert main(["plan", "pilot", "--root", str(root), "--out", str(out)]) == EXIT_CONFIG
    assert expected in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == ["pilot", "summary.txt"]
    assert (out / "pilot" / "summary.txt").read_text() == "previous plan\n"


def test_fewer_zones_than_replicas_is_accepted_only_when_said(pilot_raw: dict[str, Any]) -> None:
    pilot_raw["cluster"]["availabilityZones"] = 2
    with pytest.raises(ConfigError, match=r"allowFewerZonesThanReplicas: true to accept it"):
        load(pilot_raw, "us-east-1", SOURCE)
    pilot_raw["dataPlane"]["allowFewerZonesThanReplicas"] = True
    assert load(pilot_raw, "us-east-1", SOURCE).cluster.availability_zones == 2


def test_existing_cluster_network_makes_managed_stores_valid(pilot_raw: dict[str, Any]) -> None:
    strimzi = copy.deepcopy(pilot_raw["dataPlane"]["kafka"])
    config = {f"swarmstack:{k}": v for k, v in pilot_raw.items()}
    _existing_without_network(config)
    raw = {k.split(":", 1)[1]: v for k, v in config.items()}
    with pytest.raises(ConfigError, match=r"dataPlane\.redis\.mode: 'elasticache'"):
        load(raw, "us-east-1", SOURCE)
    raw["cluster"]["network"] = {
        "vpcId": "vpc-0a1b2c3d4e5f60718",
        "privateSubnetIds": ["subnet-0a1b2c3d", "subnet-1a1b2c3d", "subnet-2a1b2c3d"],
        "nodeSecurityGroupId": "sg-0a1b2c3d",
        "kmsKeyArn": "arn:aws:kms:us-east-1:210987654321:key/abcd",
    }
    # MSK's IAM auth needs IRSA, which the stack has only for a cluster it creates.
    with pytest.raises(ConfigError, match=r"dataPlane\.kafka\.mode: 'msk' authenticates"):
        load(raw, "us-east-1", SOURCE)
    raw["dataPlane"]["kafka"] = strimzi  # the pilot's Strimzi; ElastiCache stays
    assert load(raw, "us-east-1", SOURCE).cluster.network is not None
    raw["cluster"]["network"]["privateSubnetIds"] = raw["cluster"]["network"]["privateSubnetIds"][
        :2
    ]
    with pytest.raises(ConfigError, match=r"the cluster has 2"):
        load(raw, "us-east-1", SOURCE)


def test_events_agent_without_kafka_is_refused(pilot_raw: dict[str, Any]) -> None:
    del pilot_raw["dataPlane"]["kafka"]
    with pytest.raises(ConfigError, match=r"agents\[0\]\.mode: agent 'researcher' is mode events"):
        load(pilot_raw, "us-east-1", SOURCE)


# --------------------------------------------------------------------------- contract drift


def worker_variables() -> set[str]:
    """Every environment variable the worker's own config module reads: the string
    argument of each `_str`/`_required`/`_int`/`_float`/`_file`/`env.get` call."""
    tree = ast.parse(WORKER_CONFIG.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if called not in ("_str", "_required", "_int", "_float", "_file", "get"):
            continue
        for arg in node.args[1:2] if called != "get" else node.args[:1]:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
    return names


AGENTS = [
    AgentSpec.model_validate(
        {
            "name": "researcher",
            "mode": "events",
            "tier": "batch",
            "model": "llama31-8b",
            "replicas": {"min": 1, "max": 3},
            "topics": {
                "tasks": {"partitions": 3, "retentionHours": 24},
                "results": {"partitions": 3, "retentionHours": 24, "cleanupPolicy": "compact"},
                "deadLetter": {"partitions": 1, "retentionHours": 24},
            },
        }
    ),
    AgentSpec.model_validate(
        {
            "name": "concierge",
            "mode": "http",
            "replicas": {"min": 1, "max": 2},
            "tier": "interactive",
            "model": "qwen25-7b",
        }
    ),
]


def _msk_iam() -> KafkaConnection:
    base = strimzi_connection("events", "swarmstack-data", AGENTS)
    return KafkaConnection(
        bootstrap="b-1.msk:9098",
        tls=True,
        ca=None,
        auth="aws-msk-iam",
        region="eu-west-1",
        agents=tuple(
            type(a)(**{**a.__dict__, "username": None, "password": None, "iam_policy": "{}"})
            for a in base.agents
        ),
    )


KAFKA_MODES: dict[str, KafkaConnection] = {
    "strimzi": strimzi_connection(
        "events",
        "swarmstack-data",
        AGENTS,
        users_namespace="swarmstack-agents",
        ca=SecretKeyRef("swarmstack-agents", "swarmstack-data-ca", "ca.crt"),
    ),
    "msk-iam": _msk_iam(),
}
REDIS_MODES = {
    "inCluster": redis_store.SessionStoreConnection(
        mode="inCluster",
        host="session-store.swarmstack-data.svc.cluster.local",
        port=6379,
        tls=True,
        auth="password",
        password=redis_store.SecretKeyRef("session-store-client", "password"),
        ca=redis_store.SecretKeyRef("swarmstack-data-ca", "ca.crt"),
    ),
    "elasticache": redis_store.SessionStoreConnection(
        mode="elasticache",
        host="master.sessions.cache.amazonaws.com",
        port=6379,
        tls=True,
        auth="password",
        password=redis_store.SecretKeyRef("session-store-client", "password"),
        ca=None,
    ),
}
QDRANT = qdrant_store.VectorStoreConnection(
    url="https://vector-store.swarmstack-data.svc.cluster.local:6333",
    tls=True,
    auth="api-key",
    api_key=qdrant_store.SecretKeyRef("vector-store-client", "api-key"),
    read_only_api_key=qdrant_store.SecretKeyRef("vector-store-client", "read-only-api-key"),
    ca=qdrant_store.SecretKeyRef("swarmstack-data-ca", "ca.crt"),
)


@pytest.mark.parametrize("kafka_mode", sorted(KAFKA_MODES))
@pytest.mark.parametrize("redis_mode", sorted(REDIS_MODES))
@pytest.mark.parametrize("qdrant_on", [True, False])
def test_contract_names_only_variables_the_worker_reads(
    kafka_mode: str, redis_mode: str, qdrant_on: bool
) -> None:
    read = worker_variables()
    assert {"REDIS_URL", "KAFKA_BOOTSTRAP", "QDRANT_API_KEY_FILE"} <= read  # the parser works
    contract = data_plane_contract(
        agents_namespace="swarmstack-agents",
        kafka=(KAFKA_MODES[kafka_mode], "strimzi" if kafka_mode == "strimzi" else "msk"),
        redis=REDIS_MODES[redis_mode],
        qdrant=QDRANT if qdrant_on else None,
    )
    for agent in AGENTS:
        wiring = worker_wiring(contract, agent)
        unknown = sorted(set(wiring.env) - read)
        assert unknown == [], f"{agent.name}: the worker does not read {unknown}"
        # Every *_FILE variable names a file the pod mounts, from a Secret in its namespace.
        mounted = {f.path for f in wiring.files}
        files = {v for k, v in wiring.env.items() if k.endswith("_FILE")}
        assert files == mounted
        assert {f.secret.namespace for f in wiring.files} == {"swarmstack-agents"}


@pytest.mark.parametrize("kafka_mode", sorted(KAFKA_MODES))
def test_contract_runs_the_worker_settings_loader(tmp_path: Path, kafka_mode: str) -> None:
    """The worker's own loader accepts the environment the contract renders (files made
    here stand in for the mounted Secrets): SCRAM with its password file for Strimzi,
    OAUTHBEARER with the cluster's region for MSK IAM."""
    contract = data_plane_contract(
        agents_namespace="swarmstack-agents",
        kafka=(KAFKA_MODES[kafka_mode], "strimzi" if kafka_mode == "strimzi" else "msk"),
        redis=REDIS_MODES["inCluster"],
        qdrant=QDRANT,
    )
    for agent in AGENTS:
        wiring = worker_wiring(contract, agent)
        env = {k: str(v) for k, v in wiring.env.items()}
        for f in wiring.files:
            local = tmp_path / f.path.lstrip("/")
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_text("x")
            for k, v in env.items():
                if v == f.path:
                    env[k] = str(local)
        env |= {"MODEL_BASE_URL": "http://model:8000/v1", "MODEL_NAME": "m"}
        settings = load_settings(env)
        assert settings.worker_mode == agent.mode
        if agent.mode == "events":
            expected = "OAUTHBEARER" if kafka_mode == "msk-iam" else "SCRAM-SHA-512"
            assert settings.kafka.sasl_mechanism == expected
            if kafka_mode == "msk-iam":
                assert settings.kafka.aws_region == "eu-west-1"


# --------------------------------------------------------------------------- network policies


def _allows(
    policies: dict[str, dict[str, Any]], src_ns: str, dst_ns: str, pods: dict[str, str], port: int
) -> bool:
    """Does some ingress policy in dst_ns on these pods admit src_ns on port?"""
    for p in policies.values():
        spec = p["spec"]
        if p["namespace"] != dst_ns or "Ingress" not in spec["policyTypes"]:
            continue
        if spec["podSelector"].get("matchLabels") != pods:
            continue
        for rule in spec.get("ingress", []):
            ports = {x["port"] for x in rule["ports"]}
            sources = [
                s.get("namespaceSelector", {})
                .get("matchLabels", {})
                .get("kubernetes.io/metadata.name", dst_ns)
                for s in rule["from"]
            ]
            if port in ports and src_ns in sources:
                return True
    return False


def test_only_agents_monitoring_and_the_store_itself_reach_the_stores(
    pilot_raw: dict[str, Any],
) -> None:
    config = load(pilot_raw, "us-east-1", SOURCE)
    stores = store_access(config)
    policies = data_network_policies(
        data_namespace="swarmstack-data",
        agents_namespace="swarmstack-agents",
        monitoring_namespace="monitoring",
        stores=stores,
    )
    by_name: dict[str, StoreAccess] = {s.name: s for s in stores}
    assert sorted(by_name) == ["kafka", "qdrant", "redis"]
    for store in stores:
        pods = dict(store.pods)
        for port in store.client_ports:
            assert _allows(policies, "swarmstack-agents", "swarmstack-data", pods, port)
            assert not _allows(policies, "swarmstack-models", "swarmstack-data", pods, port)
        for port in store.metrics_ports:
            assert _allows(policies, "monitoring", "swarmstack-data", pods, port)
        for port in store.peer_ports:
            assert not _allows(policies, "swarmstack-agents", "swarmstack-data", pods, port)
    # Kafka's inter-broker and controller ports: its own pods and the Strimzi operator.
    kafka = policies["data-kafka-ingress"]["spec"]["ingress"][-1]
    assert {x["port"] for x in kafka["ports"]} == {9090, 9091, 9093}
    assert {"podSelector": {"matchLabels": {"strimzi.io/kind": "cluster-operator"}}} in kafka[
        "from"
    ]
    # The agents may leave their namespace for exactly the stores' client ports.
    egress = {k: v for k, v in policies.items() if v["namespace"] == "swarmstack-agents"}
    ports = {x["port"] for p in egress.values() for r in p["spec"]["egress"] for x in r["ports"]}
    assert ports == {9093, 6379, 6333, 6334}


def test_plan_declares_the_data_network_policies(pilot_out: Path) -> None:
    policies = [d for d in _manifests(pilot_out) if d["kind"] == "NetworkPolicy"]
    data = {
        p["metadata"]["name"] for p in policies if p["metadata"]["namespace"] == "swarmstack-data"
    }
    assert {"default-deny", "allow-dns", "allow-kafka-clients", "allow-redis-clients"} <= data
    assert "allow-qdrant-clients" in data
    helm = yaml.safe_load((pilot_out / "helm" / "strimzi-cluster-operator.yaml").read_text())
    env = {e["name"]: e["value"] for e in helm["values"]["extraEnvs"]}
    assert env["STRIMZI_NETWORK_POLICY_GENERATION"] == "false"
    assert helm["values"]["watchNamespaces"] == ["swarmstack-data", "swarmstack-agents"]
