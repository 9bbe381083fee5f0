"""Session store, vector store and cert-manager under Pulumi mocks, and their pure parts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate  # pyright: ignore[reportMissingTypeStubs]
import pulumi
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from components.compute.irsa import Irsa
from components.data import qdrant, redis
from components.data.certs import (
    CHART_VERSION,
    CertManager,
    CertManagerArgs,
    IssuerRef,
    cert_manager_values,
)
from components.data.network import ManagedNetwork
from components.data.qdrant import QdrantSpec, VectorStore, VectorStoreArgs
from components.data.redis import (
    RedisSpec,
    SessionStore,
    SessionStoreArgs,
    redis_problems,
    render_redis_conf,
)
from components.specs import CostLabels
from stacks.plan.recorder import REDACTED, Capture, Registration, run

ROOT = Path(__file__).resolve().parent.parent
COST = CostLabels(team="agents", cost_center="cc-1", environment="test")
ISSUER = IssuerRef("swarmstack-test-ca")
DATA_NS, AGENTS_NS = "swarmstack-data", "swarmstack-agents"
SECRET = "not-a-real-password-123456"
NETWORK = ManagedNetwork(
    vpc_id="vpc-0abc",
    private_subnet_ids=["subnet-a", "subnet-b", "subnet-c"],
    node_security_group_id="sg-nodes",
    kms_key_arn="arn:aws:kms:us-east-1:111122223333:key/k",
)


def _session_store(spec: RedisSpec) -> Capture:
    def program() -> None:
        SessionStore(
            "session",
            SessionStoreArgs(
                spec=spec,
                namespace_name=DATA_NS,
                client_namespace=AGENTS_NS,
                cost_labels=COST,
                password=pulumi.Output.secret(SECRET),
                issuer=ISSUER,
                network=NETWORK,
            ),
        )

    return run(program)


def _manifest(r: Registration, api_version: str, kind: str) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, **r.inputs}


CORE = {
    "kubernetes:apps/v1:StatefulSet": ("apps/v1", "StatefulSet"),
    "kubernetes:core/v1:Service": ("v1", "Service"),
    "kubernetes:core/v1:ConfigMap": ("v1", "ConfigMap"),
    "kubernetes:policy/v1:PodDisruptionBudget": ("policy/v1", "PodDisruptionBudget"),
    "kubernetes:batch/v1:CronJob": ("batch/v1", "CronJob"),
    "kubernetes:core/v1:ServiceAccount": ("v1", "ServiceAccount"),
}


def _validate_core(capture: Capture) -> int:
    count = 0
    for r in capture.registrations:
        if r.type in CORE:
            kubernetes_validate.validate(_manifest(r, *CORE[r.type]), "1.33", strict=True)
            count += 1
    return count


def _all_children_parented(capture: Capture, token: str) -> None:
    component = capture.of_type(token)[0]
    assert all(r.parent == component.urn for r in capture.registrations if r is not component)


# --------------------------------------------------------------------------- session store


def test_in_cluster_session_store_declares_its_objects() -> None:
    capture = _session_store(RedisSpec())
    types = sorted(r.type for r in capture.registrations)
    assert types.count("kubernetes:core/v1:Secret") == 2  # server auth + client copy
    assert types.count("kubernetes:core/v1:Service") == 2  # headless + client
    for t in (
        "kubernetes:apps/v1:StatefulSet",
        "kubernetes:cert-manager.io/v1:Certificate",
        "kubernetes:core/v1:ConfigMap",
        "kubernetes:policy/v1:PodDisruptionBudget",
    ):
        assert types.count(t) == 1, t
    assert len(types) == 9
    _all_children_parented(capture, "swarmstack:data:SessionStore")
    assert _validate_core(capture) == 5

    sts = capture.of_type("kubernetes:apps/v1:StatefulSet")[0].inputs["spec"]
    pod = sts["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["server", "tls-reloader", "exporter"]
    server = pod["containers"][0]
    assert server["image"] == "docker.io/valkey/valkey:8.1.10"
    assert server["command"] == ["valkey-server", "/etc/redis/conf/redis.conf"]
    exporter = pod["containers"][2]
    assert exporter["image"] == "docker.io/oliver006/redis_exporter:v1.88.0"
    # The exporter reads the password from the mounted auth Secret, not from its environment.
    assert "env" not in exporter
    assert exporter["args"] == [
        "--redis.addr=unix:///run/redis/redis.sock",
        "--redis.password-file=/etc/redis/auth/exporter-passwords.json",
    ]
    assert {"name": "auth", "mountPath": "/etc/redis/auth", "readOnly": True} in exporter[
        "volumeMounts"
    ]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for c in pod["containers"]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    claim = sts["volumeClaimTemplates"][0]["spec"]
    assert claim["storageClassName"] == "gp3"
    assert claim["resources"]["requests"]["storage"] == "20Gi"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["auth"]["secret"]["secretName"] == "session-store-auth"
    assert volumes["tls"]["secret"]["secretName"] == "session-store-tls"

    conf = capture.of_type("kubernetes:core/v1:ConfigMap")[0].inputs["data"]["redis.conf"]
    assert SECRET not in json.dumps([r.inputs for r in capture.registrations])
    for line in ("port 0", "tls-port 6379", "appendonly yes", "appendfsync everysec"):
        assert line in conf.splitlines()
    assert "maxmemory-policy noeviction" in conf.splitlines()
    assert "aclfile /etc/redis/auth/users.acl" in conf.splitlines()
    secrets = capture.of_type("kubernetes:core/v1:Secret")
    assert {s.inputs["metadata"]["namespace"] for s in secrets} == {DATA_NS, AGENTS_NS}
    # Each Secret keeps its keys; every value is redacted.
    for s in secrets:
        assert s.inputs["stringData"], s.name
        assert set(s.inputs["stringData"].values()) == {REDACTED}, s.name

    cert = capture.of_type("kubernetes:cert-manager.io/v1:Certificate")[0].inputs["spec"]
    assert cert["secretName"] == "session-store-tls"
    assert cert["issuerRef"] == ISSUER.wire()
    assert "session-store.swarmstack-data.svc.cluster.local" in cert["dnsNames"]
    pdb = capture.of_type("kubernetes:policy/v1:PodDisruptionBudget")[0].inputs["spec"]
    assert pdb["maxUnavailable"] == 1


def test_elasticache_session_store_is_encrypted_multi_az_and_never_evicts() -> None:
    capture = _session_store(RedisSpec(mode="elasticache", version="8.1"))
    group = capture.of_type("aws:elasticache/replicationGroup:ReplicationGroup")[0].inputs
    assert group["engine"] == "valkey" and group["engineVersion"] == "8.1"
    assert group["clusterMode"] == "disabled"
    assert group["multiAzEnabled"] is True and group["automaticFailoverEnabled"] is True
    assert group["transitEncryptionEnabled"] is True
    assert group["transitEncryptionMode"] == "required"
    assert group["atRestEncryptionEnabled"] is True
    assert group["kmsKeyId"] == NETWORK.kms_key_arn
    assert group["authToken"] == REDACTED
    assert group["snapshotRetentionLimit"] == 7
    assert group["numCacheClusters"] == 2
    params = capture.of_type("aws:elasticache/parameterGroup:ParameterGroup")[0].inputs
    assert params["family"] == "valkey8"
    assert params["parameters"] == [{"name": "maxmemory-policy", "value": "noeviction"}]
    subnets = capture.of_type("aws:elasticache/subnetGroup:SubnetGroup")[0].inputs
    assert subnets["subnetIds"] == ["subnet-a", "subnet-b", "subnet-c"]
    rule = capture.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")[0]
    assert rule.inputs["referencedSecurityGroupId"] == "sg-nodes"
    assert (rule.inputs["fromPort"], rule.inputs["toPort"]) == (6379, 6379)
    assert not capture.of_type("kubernetes:apps/v1:StatefulSet")
    _all_children_parented(capture, "swarmstack:data:SessionStore")


@pytest.mark.parametrize(
    ("changes", "path", "fragment"),
    [
        ({"maxmemory_policy": "allkeys-lru"}, "redis.maxmemoryPolicy", "'allkeys-lru' evicts"),
        ({"version": "7.0"}, "redis.version", "'7.0' is not a known valkey version"),
        ({"engine": "redis", "version": "8.1"}, "redis.version", "one of 7.4, 8.2, 8.10"),
        ({"appendonly": False}, "redis.appendonly", "a restart loses every session"),
        ({"storage_gib": 5}, "redis.storageGib", "use at least 8"),
        ({"mode": "elasticache", "version": "9.1"}, "redis.version", "mode elasticache"),
        ({"mode": "elasticache", "tls": False}, "redis.tls", "requires transit encryption"),
    ],
)
def test_bad_session_store_settings_name_the_path_and_what_is_valid(
    changes: dict[str, Any], path: str, fragment: str
) -> None:
    problems = redis_problems(RedisSpec(**changes))
    assert [p for p, _ in problems] == [path]
    assert fragment in problems[0][1]
    with pytest.raises(ValueError, match=re.escape(path)):
        _session_store(RedisSpec(**changes))


def test_defaults_have_no_problems() -> None:
    assert redis_problems(RedisSpec()) == []
    assert qdrant.qdrant_problems(QdrantSpec()) == []


@given(
    memory=st.integers(min_value=1, max_value=256),
    fsync=st.sampled_from(["always", "everysec", "no"]),
    tls=st.booleans(),
)
def test_rendered_conf_carries_every_setting_once(memory: int, fsync: str, tls: bool) -> None:
    spec = RedisSpec(memory_gib=memory, storage_gib=2 * memory, appendfsync=fsync, tls=tls)  # pyright: ignore[reportArgumentType]
    lines = render_redis_conf(spec, redis.cluster_layout(spec)).splitlines()
    directives = [line.split()[0] for line in lines if line and not line.startswith("#")]
    assert len(directives) == len(set(directives))
    assert f"appendfsync {fsync}" in lines
    assert f"maxmemory {int(memory * 1024**3 * 0.75)}" in lines
    assert ("port 0" in lines) == tls
    assert not any("pass" in d for d in directives)  # no requirepass/masterauth


def test_acl_holds_the_password_hash_only() -> None:
    acl = redis.render_acl(SECRET)
    assert SECRET not in acl
    assert re.fullmatch(r"user default on #[0-9a-f]{64} ~\* &\* \+@all\n", acl)


# --------------------------------------------------------------------------- connection


WORKER_CONFIG = ROOT / "images" / "agent-worker" / "agent_worker" / "config.py"


def _worker_variables() -> set[str]:
    return set(re.findall(r'env, "([A-Z0-9_]+)"', WORKER_CONFIG.read_text()))


def test_connection_env_names_are_those_the_worker_reads() -> None:
    conn_redis = redis.SessionStoreConnection(
        mode="inCluster",
        host="session-store.swarmstack-data.svc.cluster.local",
        port=6379,
        tls=True,
        auth="password",
        password=redis.SecretKeyRef("session-store-client", "password"),
        ca=redis.SecretKeyRef("swarmstack-data-ca", "ca.crt"),
    )
    conn_qdrant = qdrant.VectorStoreConnection(
        url="https://vector-store.swarmstack-data.svc.cluster.local:6333",
        tls=True,
        auth="api-key",
        api_key=redis.SecretKeyRef("vector-store-client", "api-key"),
        read_only_api_key=redis.SecretKeyRef("vector-store-client", "read-only-api-key"),
        ca=redis.SecretKeyRef("swarmstack-data-ca", "ca.crt"),
    )
    names = set(redis.session_store_env(conn_redis)) | set(qdrant.vector_store_env(conn_qdrant))
    assert names <= _worker_variables(), names - _worker_variables()
    files = redis.session_store_files(conn_redis)
    assert [f.path for f in files] == [redis.CLIENT_PASSWORD_PATH, redis.CLIENT_CA_PATH]
    read_only = qdrant.vector_store_files(conn_qdrant, read_only=True)
    assert read_only[0].ref.key == "read-only-api-key"


# --------------------------------------------------------------------------- vector store


IRSA = Irsa("arn:aws:iam::111122223333:oidc-provider/oidc.example/id/X", "oidc.example/id/X")


def _vector_store(spec: QdrantSpec, irsa: Irsa | None = IRSA) -> Capture:
    def program() -> None:
        VectorStore(
            "vectors",
            VectorStoreArgs(
                spec=spec,
                namespace_name=DATA_NS,
                client_namespace=AGENTS_NS,
                cost_labels=COST,
                api_key=pulumi.Output.secret("write-key"),
                read_only_api_key=pulumi.Output.secret("read-key"),
                issuer=ISSUER,
                irsa=irsa,
            ),
        )

    return run(program)


SNAPSHOTS = {"bucket": "swarm-backups", "prefix": "pilot/qdrant"}


def test_vector_store_declares_cluster_mode_statefulset_and_snapshot_job() -> None:
    capture = _vector_store(QdrantSpec.model_validate({"snapshots": SNAPSHOTS}))
    _all_children_parented(capture, "swarmstack:data:VectorStore")
    assert _validate_core(capture) == 7  # sts, 2 services, configmap, pdb, cronjob, sa
    sts = capture.of_type("kubernetes:apps/v1:StatefulSet")[0].inputs["spec"]
    assert sts["replicas"] == 3
    container = sts["template"]["spec"]["containers"][0]
    assert container["image"] == "docker.io/qdrant/qdrant:v1.19.0-unprivileged"
    env = {e["name"]: e for e in container["env"]}
    assert env["QDRANT__SERVICE__API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "vector-store-api-keys",
        "key": "api-key",
    }
    assert "QDRANT__SERVICE__READ_ONLY_API_KEY" in env
    assert {p["containerPort"] for p in container["ports"]} == {6333, 6334, 6335}
    assert "--bootstrap https://vector-store-0.vector-store-headless" in container["command"][2]
    assert sts["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "50Gi"

    data = capture.of_type("kubernetes:core/v1:ConfigMap")[0].inputs["data"]
    config = yaml.safe_load(data["config.yaml"])
    assert config["cluster"] == {"enabled": True, "p2p": {"port": 6335, "enable_tls": True}}
    assert config["service"]["enable_tls"] is True
    assert "api_key" not in config["service"]
    body = json.loads(data["collection-swarm-docs.json"])
    assert (body["shard_number"], body["replication_factor"]) == (3, 2)

    policy = json.loads(capture.of_type("aws:iam/rolePolicy:RolePolicy")[0].inputs["policy"])
    assert policy["Statement"] == [
        {
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": "arn:aws:s3:::swarm-backups/pilot/qdrant/*",
        }
    ]
    trust = json.loads(capture.of_type("aws:iam/role:Role")[0].inputs["assumeRolePolicy"])
    subject = trust["Statement"][0]["Condition"]["StringEquals"]["oidc.example/id/X:sub"]
    assert subject == "system:serviceaccount:swarmstack-data:vector-store-snapshots"
    job = capture.of_type("kubernetes:batch/v1:CronJob")[0].inputs["spec"]
    script = job["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"][2]
    for peer in range(3):
        assert f"vector-store-{peer}.vector-store-headless.swarmstack-data" in script
    assert "/collections/$c/snapshots" in script
    assert "s3://swarm-backups/pilot/qdrant/" in script
    assert "write-key" not in json.dumps([r.inputs for r in capture.registrations])


def test_vector_store_without_irsa_declares_no_snapshot_job() -> None:
    capture = _vector_store(QdrantSpec.model_validate({"snapshots": SNAPSHOTS}), irsa=None)
    assert not capture.of_type("kubernetes:batch/v1:CronJob")
    assert any("no IRSA" in w for w in capture.warnings)


def test_replication_above_replicas_is_refused_with_the_path() -> None:
    spec = QdrantSpec(replicas=2, replication_factor=3)
    assert [p for p, _ in qdrant.qdrant_problems(spec)] == ["qdrant.replicationFactor"]
    with pytest.raises(ValueError, match=r"qdrant\.replicationFactor: 3 is above replicas"):
        _vector_store(spec)


# --------------------------------------------------------------------------- cert-manager


def test_cert_manager_release_is_pinned_and_bootstraps_a_ca_issuer() -> None:
    def program() -> None:
        CertManager("certs", CertManagerArgs("pilot", COST, client_namespaces=[AGENTS_NS]))

    capture = run(program)
    _all_children_parented(capture, "swarmstack:data:CertManager")
    release = capture.of_type("kubernetes:helm.sh/v3:Release")[0].inputs
    assert (release["chart"], release["version"]) == ("cert-manager", CHART_VERSION)
    assert release["values"]["crds"] == {"enabled": True, "keep": True}
    assert release["values"] == cert_manager_values()
    issuers = capture.of_type("kubernetes:cert-manager.io/v1:ClusterIssuer")
    specs = {i.inputs["metadata"]["name"]: i.inputs["spec"] for i in issuers}
    assert specs["swarmstack-pilot-ca"] == {"ca": {"secretName": "swarmstack-pilot-ca"}}
    certs = capture.of_type("kubernetes:cert-manager.io/v1:Certificate")
    bundle = [c for c in certs if c.inputs["metadata"]["namespace"] == AGENTS_NS]
    assert bundle[0].inputs["spec"]["secretName"] == "swarmstack-data-ca"
    assert bundle[0].inputs["spec"]["issuerRef"]["name"] == "swarmstack-pilot-ca"


def test_exporter_password_file_maps_the_socket_it_dials_to_the_password() -> None:
    doc = json.loads(redis.exporter_passwords(SECRET))
    assert doc == {redis.EXPORTER_ADDR: SECRET}
    assert f"unix://{redis.SOCKET}" == redis.EXPORTER_ADDR
