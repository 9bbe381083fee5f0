"""Data service rules: Redis, Kafka and Qdrant encrypt and authenticate; no plaintext secrets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest

from components.data import redis as redis_module
from components.data.certs import IssuerRef
from components.data.qdrant import QdrantSpec, VectorStore, VectorStoreArgs
from components.data.redis import RedisSpec, SessionStore, SessionStoreArgs
from components.specs import CostLabels
from policies.rules.data import RULES
from stacks.plan.policy import evaluate
from stacks.plan.recorder import run
from stacks.plan.runner import read_program_input, run_program
from tests.policy_support import container, deployment, messages, restricted_pod, violations

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cr3t-value"
LABEL = "Deployment agents/app (app)"


def _only(found: list[Any], rule: str) -> list[str]:
    """The messages, after checking every violation is this rule's and mandatory."""
    assert {v.rule for v in found} <= {rule}
    assert {v.level for v in found} <= {"mandatory"}
    return [v.message for v in found]


def _pod(**changes: Any) -> dict[str, Any]:
    return restricted_pod(containers=[container(**changes)])


def _secret_env(name: str, secret: str = "creds", key: str = "value") -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


# --------------------------------------------------------------------------- redis-encrypted

REDIS_ARGS = ["--tls-port", "6380", "--port", "0", "--tls-cert-file", "/tls/tls.crt"]


def _replication_group(**changes: Any) -> aws.elasticache.ReplicationGroup:
    args: dict[str, Any] = {
        "description": "agent memory",
        "engine": "valkey",
        "node_type": "cache.r7g.large",
        "num_cache_clusters": 2,
        "transit_encryption_enabled": True,
        "at_rest_encryption_enabled": True,
        "auth_token": pulumi.Output.secret(SECRET),
    }
    args.update(changes)
    return aws.elasticache.ReplicationGroup("memory", **args)


def test_encrypted_elasticache_with_auth_passes() -> None:
    assert messages(_replication_group, "redis-encrypted") == []
    with_users = {"auth_token": None, "user_group_ids": ["agents"]}
    assert messages(lambda: _replication_group(**with_users), "redis-encrypted") == []


def test_plaintext_unauthenticated_elasticache_reports_each_missing_piece() -> None:
    found = violations(
        lambda: _replication_group(
            transit_encryption_enabled=False, at_rest_encryption_enabled=None, auth_token=None
        ),
        "redis-encrypted",
    )
    assert _only(found, "redis-encrypted") == [
        "ReplicationGroup memory: transitEncryptionEnabled is not true: clients talk to Redis "
        "in plaintext",
        "ReplicationGroup memory: atRestEncryptionEnabled is not true: snapshots and swap are "
        "stored unencrypted",
        "ReplicationGroup memory: requires no auth (neither authToken nor userGroupIds is set)",
    ]
    assert found[0].resource.endswith("::memory")


def test_elasticache_preferred_transit_mode_still_accepts_plaintext() -> None:
    assert messages(
        lambda: _replication_group(transit_encryption_mode="preferred"), "redis-encrypted"
    ) == [
        "ReplicationGroup memory: transitEncryptionMode is preferred: plaintext connections "
        "are still accepted"
    ]


ACL_MOUNT = {
    "volumeMounts": [{"name": "acl", "mountPath": "/acl", "readOnly": True}],
}
ACL_VOLUME = [{"name": "acl", "secret": {"secretName": "redis-acl"}}]


@pytest.mark.parametrize(
    ("changes", "volumes"),
    [
        ({"args": [*REDIS_ARGS, "--requirepass", "$(REDIS_PASSWORD)"]}, []),
        ({"args": [*REDIS_ARGS, "--aclfile", "/acl/users.acl"], **ACL_MOUNT}, ACL_VOLUME),
        (
            {
                "command": [
                    "sh",
                    "-c",
                    'exec redis-server --port 0 --tls-port 6380 --requirepass "$P"',
                ],
            },
            [],
        ),
    ],
    ids=["requirepass", "aclfile-from-secret", "shell-line"],
)
def test_in_cluster_redis_with_tls_and_auth_passes(
    changes: dict[str, Any], volumes: list[dict[str, Any]]
) -> None:
    pod = restricted_pod(
        containers=[container(image="docker.io/library/redis:7.4@sha256:" + "a" * 64, **changes)],
        volumes=volumes,
    )
    assert messages(lambda: deployment(pod=pod), "redis-encrypted") == []


NO_AUTH = "runs Redis without auth (no aclfile or include from a mounted Secret, no requirepass)"


@pytest.mark.parametrize("image", ["redis:7.4", "docker.io/bitnami/redis:7.4", "valkey/valkey:8"])
def test_in_cluster_redis_without_tls_or_auth_fails(image: str) -> None:
    found = violations(lambda: deployment(pod=_pod(image=image)), "redis-encrypted")
    assert _only(found, "redis-encrypted") == [
        f"{LABEL}: container app {NO_AUTH}",
        f"{LABEL}: container app runs Redis without TLS (no tls-port)",
    ]


def test_bitnami_env_vars_are_not_auth_or_tls() -> None:
    pod = _pod(
        image="bitnami/redis:7.4",
        env=[_secret_env("REDIS_PASSWORD"), {"name": "REDIS_TLS_ENABLED", "value": "yes"}],
    )
    assert messages(lambda: deployment(pod=pod), "redis-encrypted") == [
        f"{LABEL}: container app {NO_AUTH}",
        f"{LABEL}: container app runs Redis without TLS (no tls-port)",
    ]


def test_acl_file_outside_a_secret_and_plaintext_port_fail() -> None:
    pod = _pod(image="redis:7.4", args=["--tls-port", "6380", "--aclfile", "/data/users.acl"])
    assert messages(lambda: deployment(pod=pod), "redis-encrypted") == [
        f"{LABEL}: container app reads its ACL file /data/users.acl from outside a mounted Secret",
        f"{LABEL}: container app also serves plaintext on port 6379 (set port 0)",
    ]


def test_images_merely_named_like_redis_are_not_redis() -> None:
    for image in ("registry.example.com/redis-exporter:1", "registry.example.com/team/app:1"):
        assert messages(lambda i=image: deployment(pod=_pod(image=i)), "redis-encrypted") == []


# --------------------------------------------------------------------------- kafka-encrypted


def _msk(**changes: Any) -> aws.msk.Cluster:
    args: dict[str, Any] = {
        "kafka_version": "3.8.x",
        "number_of_broker_nodes": 3,
        "broker_node_group_info": {
            "instance_type": "kafka.m7g.large",
            "client_subnets": ["subnet-a", "subnet-b", "subnet-c"],
            "security_groups": ["sg-kafka"],
        },
        "client_authentication": {"sasl": {"iam": True}},
    }
    args.update(changes)
    return aws.msk.Cluster("events", **args)


def test_msk_with_default_tls_and_iam_auth_passes() -> None:
    assert messages(_msk, "kafka-encrypted") == []
    explicit = {
        "encryption_info": {
            "encryption_in_transit": {"client_broker": "TLS", "in_cluster": True},
        },
        "client_authentication": {"tls": {"certificate_authority_arns": ["arn:aws:acm-pca:ca"]}},
    }
    assert messages(lambda: _msk(**explicit), "kafka-encrypted") == []


def test_msk_plaintext_and_unauthenticated_fails() -> None:
    found = violations(
        lambda: _msk(
            encryption_info={
                "encryption_in_transit": {"client_broker": "TLS_PLAINTEXT", "in_cluster": False}
            },
            client_authentication={"unauthenticated": True},
        ),
        "kafka-encrypted",
    )
    assert _only(found, "kafka-encrypted") == [
        "Cluster events: encryptionInTransit.clientBroker is TLS_PLAINTEXT: clients may use "
        "plaintext",
        "Cluster events: encryptionInTransit.inCluster is false: brokers replicate in plaintext",
        "Cluster events: clientAuthentication.unauthenticated is true: any client may connect",
        "Cluster events: authenticates no clients (clientAuthentication sets no sasl.iam, "
        "sasl.scram or tls)",
    ]


def test_msk_without_client_authentication_fails() -> None:
    assert messages(lambda: _msk(client_authentication=None), "kafka-encrypted") == [
        "Cluster events: authenticates no clients (clientAuthentication sets no sasl.iam, "
        "sasl.scram or tls)"
    ]


def _strimzi(listeners: list[dict[str, Any]]) -> k8s.apiextensions.CustomResource:
    return k8s.apiextensions.CustomResource(
        "events",
        api_version="kafka.strimzi.io/v1beta2",
        kind="Kafka",
        metadata={"name": "events", "namespace": "data"},
        spec={
            "kafka": {
                "version": "3.9.0",
                "listeners": listeners,
                "config": {"offsets.topic.replication.factor": 3},
            },
            "entityOperator": {"topicOperator": {}, "userOperator": {}},
        },
    )


def test_strimzi_listeners_with_tls_and_authentication_pass() -> None:
    listeners = [
        {"name": "tls", "port": 9093, "type": "internal", "tls": True,
         "authentication": {"type": "scram-sha-512"}},
        {"name": "mtls", "port": 9094, "type": "internal", "tls": True,
         "authentication": {"type": "tls"}},
    ]  # fmt: skip
    assert messages(lambda: _strimzi(listeners), "kafka-encrypted") == []


def test_strimzi_plain_listener_fails() -> None:
    listeners = [
        {"name": "plain", "port": 9092, "type": "internal", "tls": False},
        {"name": "tls", "port": 9093, "type": "internal", "tls": True,
         "authentication": {"type": "tls"}},
    ]  # fmt: skip
    found = violations(lambda: _strimzi(listeners), "kafka-encrypted")
    assert _only(found, "kafka-encrypted") == [
        "Kafka data/events (events): listener plain (port 9092) does not use TLS (tls is not true)",
        "Kafka data/events (events): listener plain (port 9092) authenticates no clients (no "
        "authentication block)",
    ]


# --------------------------------------------------------------------------- qdrant-api-key

QDRANT_IMAGE = "docker.io/qdrant/qdrant:v1.15.4"


def test_qdrant_with_api_key_from_secret_passes() -> None:
    pod = _pod(image=QDRANT_IMAGE, env=[_secret_env("QDRANT__SERVICE__API_KEY", "qdrant")])
    assert messages(lambda: deployment(pod=pod), "qdrant-api-key") == []


def test_qdrant_without_api_key_fails() -> None:
    found = violations(lambda: deployment(pod=_pod(image=QDRANT_IMAGE)), "qdrant-api-key")
    assert _only(found, "qdrant-api-key") == [
        f"{LABEL}: container app has no QDRANT__SERVICE__API_KEY from a secretKeyRef: the Qdrant "
        "API accepts any client"
    ]


def test_qdrant_api_key_as_literal_fails_this_rule_and_plaintext_secrets() -> None:
    env = [{"name": "QDRANT__SERVICE__API_KEY", "value": SECRET}]
    pod = _pod(image=QDRANT_IMAGE, env=env)
    assert messages(lambda: deployment(pod=pod), "qdrant-api-key") == [
        f"{LABEL}: container app sets QDRANT__SERVICE__API_KEY as a literal value; read it from "
        "a Secret"
    ]
    assert messages(lambda: deployment(pod=pod), "no-plaintext-secrets") == [
        f"{LABEL}: container app sets QDRANT__SERVICE__API_KEY as a literal value; read it from "
        "a Secret (valueFrom.secretKeyRef)"
    ]


def _qdrant_release(values: dict[str, Any], chart: str = "qdrant") -> k8s.helm.v3.Release:
    return k8s.helm.v3.Release(
        "vectors",
        chart=chart,
        version="1.15.4",
        namespace="data",
        repository_opts={"repo": "https://qdrant.github.io/qdrant-helm"},
        values=values,
    )


# Outputs must be made inside the program (on the mock runtime's event loop).
API_KEY_VALUES: list[Callable[[], dict[str, Any]]] = [
    lambda: {"apiKey": pulumi.Output.secret(SECRET)},
    lambda: {"apiKey": True},
    lambda: {"config": {"service": {"api_key": pulumi.Output.secret(SECRET)}}},
]


@pytest.mark.parametrize("values", API_KEY_VALUES, ids=["apiKey", "generated", "config"])
def test_qdrant_release_with_api_key_passes(values: Callable[[], dict[str, Any]]) -> None:
    assert messages(lambda: _qdrant_release(values()), "qdrant-api-key") == []


def test_qdrant_release_without_api_key_fails() -> None:
    found = violations(lambda: _qdrant_release({"replicaCount": 3}), "qdrant-api-key")
    assert _only(found, "qdrant-api-key") == [
        "Release data/vectors (vectors): chart qdrant sets neither values.apiKey nor "
        "values.config.service.api_key: the Qdrant API accepts any client"
    ]


def test_other_charts_are_not_qdrant() -> None:
    assert messages(lambda: _qdrant_release({}, chart="redis"), "qdrant-api-key") == []


# --------------------------------------------------------------------------- no-plaintext-secrets


def test_secret_from_secret_key_ref_and_harmless_literals_pass() -> None:
    env = [
        _secret_env("HF_TOKEN", "huggingface-token", "token"),
        {"name": "HF_HOME", "value": "/cache/huggingface"},
        {"name": "DB_PASSWORD_FILE", "value": "/run/secrets/db"},
        # Secrets as files: the variable names the mounted file, the model pods' convention.
        {"name": "HF_TOKEN_PATH", "value": "/var/run/secrets/huggingface/token"},
    ]
    assert messages(lambda: deployment(pod=_pod(env=env)), "no-plaintext-secrets") == []


def test_literal_secret_env_fails_naming_container_and_variable() -> None:
    env = [
        {"name": "OPENAI_API_KEY", "value": "sk-literal"},
        {"name": "db_password", "value": "hunter2"},
    ]
    pod = restricted_pod(
        initContainers=[container(name="migrate", env=[{"name": "TOKEN", "value": "t0k"}])],
        containers=[container(env=env)],
    )
    found = violations(lambda: deployment(pod=pod), "no-plaintext-secrets")
    assert _only(found, "no-plaintext-secrets") == [
        f"{LABEL}: init container migrate sets TOKEN as a literal value; read it from a Secret "
        "(valueFrom.secretKeyRef)",
        f"{LABEL}: container app sets OPENAI_API_KEY as a literal value; read it from a Secret "
        "(valueFrom.secretKeyRef)",
        f"{LABEL}: container app sets db_password as a literal value; read it from a Secret "
        "(valueFrom.secretKeyRef)",
    ]
    assert found[0].resource.endswith("::app")


def test_worker_token_counts_are_not_secrets_but_a_token_still_is() -> None:
    counts = [
        {"name": "BUDGET_SESSION_TOKENS", "value": "200000"},
        {"name": "BUDGET_USER_TOKENS_PER_DAY", "value": "1000000"},
        {"name": "BUDGET_AGENT_TOKENS_PER_DAY", "value": "20000000"},
    ]
    assert messages(lambda: deployment(pod=_pod(env=counts)), "no-plaintext-secrets") == []
    token = [{"name": "BUDGET_TOKEN", "value": "t0k"}]
    assert messages(lambda: deployment(pod=_pod(env=token)), "no-plaintext-secrets") == [
        f"{LABEL}: container app sets BUDGET_TOKEN as a literal value; read it from a Secret "
        "(valueFrom.secretKeyRef)"
    ]


def test_allowed_names_exempt_a_variable() -> None:
    env = [{"name": "TOKEN_AUDIENCE", "value": "sts.amazonaws.com"}]
    assert messages(lambda: deployment(pod=_pod(env=env)), "no-plaintext-secrets") != []
    config = {"no-plaintext-secrets": {"allowedNames": ["TOKEN_AUDIENCE"]}}
    assert messages(lambda: deployment(pod=_pod(env=env)), "no-plaintext-secrets", config) == []


def _config_map(data: dict[str, str]) -> k8s.core.v1.ConfigMap:
    return k8s.core.v1.ConfigMap(
        "settings", metadata={"name": "settings", "namespace": "agents"}, data=data
    )


def test_config_map_without_secret_keys_passes() -> None:
    data = {"config.yaml": "log_level: info\n", "MODEL_URL": "http://qwen:8000"}
    assert messages(lambda: _config_map(data), "no-plaintext-secrets") == []


def test_config_map_with_secret_key_fails() -> None:
    data = {"config.yaml": "log_level: info\n", "api-key": "sk-literal"}
    found = violations(lambda: _config_map(data), "no-plaintext-secrets")
    assert _only(found, "no-plaintext-secrets") == [
        "ConfigMap agents/settings (settings): data key api-key looks like a secret; ConfigMaps "
        "are not secret"
    ]


# --------------------------------------------------------------------------- secrets stay secret


def test_no_secret_value_appears_in_any_message() -> None:
    def program() -> None:
        secret = pulumi.Output.secret(SECRET)
        deployment(
            "redis",
            pod=_pod(
                image="redis:7.4",
                args=["--requirepass", secret],
                env=[
                    {"name": "REDIS_PASSWORD", "value": secret},
                    {"name": "QDRANT__SERVICE__API_KEY", "value": secret},
                ],
            ),
        )
        deployment(
            "qdrant",
            pod=_pod(
                image=QDRANT_IMAGE, env=[{"name": "QDRANT__SERVICE__API_KEY", "value": secret}]
            ),
        )
        aws.elasticache.ReplicationGroup(
            "memory",
            description="agent memory",
            auth_token=secret,
            transit_encryption_enabled=False,
        )
        _config_map({"password": SECRET})
        _qdrant_release({"config": {"service": {"read_only_api_key": secret}}})

    found = evaluate(run(program).registrations, {}, RULES)
    assert {v.rule for v in found} == {r.name for r in RULES} - {"kafka-encrypted"}
    assert len(found) == 14
    # The rules did see the unwrapped secrets: the secret authToken and --requirepass count.
    assert not any("without auth" in v.message or "no auth" in v.message for v in found)
    for v in found:
        assert SECRET not in v.message
        assert SECRET not in v.remediation


# --------------------------------------------------------------------------- the pilot


def test_pilot_plan_violates_no_data_rule() -> None:
    capture = run_program(read_program_input(ROOT, "pilot"))
    found = evaluate(capture.registrations, {}, RULES)
    assert [str(v) for v in found if v.level == "mandatory"] == []


# --------------------------------------------------------------------------- the stores


def _stores_program(redis_spec: Any = None, **qdrant_changes: Any) -> Callable[[], None]:
    cost = CostLabels(team="agents", cost_center="cc-1", environment="test")

    def program() -> None:
        SessionStore(
            "session",
            SessionStoreArgs(
                spec=redis_spec or RedisSpec(),
                namespace_name="swarmstack-data",
                client_namespace="swarmstack-agents",
                cost_labels=cost,
                password=pulumi.Output.secret(SECRET),
                issuer=IssuerRef("ca"),
            ),
        )
        VectorStore(
            "vectors",
            VectorStoreArgs(
                spec=QdrantSpec(**qdrant_changes),
                namespace_name="swarmstack-data",
                client_namespace="swarmstack-agents",
                cost_labels=cost,
                api_key=pulumi.Output.secret(SECRET),
                read_only_api_key=pulumi.Output.secret(SECRET + "-ro"),
                issuer=IssuerRef("ca"),
            ),
        )

    return program


STORE_RULES = ("redis-encrypted", "session-store-no-eviction", "stateful-stores-persistent")


def test_the_stacks_own_stores_pass_every_data_rule() -> None:
    found = evaluate(run(_stores_program()).registrations, {}, RULES)
    assert [v.message for v in found] == []


def _session_store_with_conf(conf: str) -> Callable[[], None]:
    """The session store as declared, its ConfigMap's redis.conf replaced by `conf`."""

    def program() -> None:
        original = redis_module.render_redis_conf
        redis_module.render_redis_conf = lambda spec, layout: conf  # pyright: ignore[reportAttributeAccessIssue]
        try:
            _stores_program()()
        finally:
            redis_module.render_redis_conf = original

    return program


STS = "StatefulSet swarmstack-data/session-store (session-statefulset): container server"


def test_rendered_conf_with_plaintext_port_clear_password_and_eviction_fails() -> None:
    conf = (
        "port 6379\ntls-port 6380\nrequirepass hunter22\nmaxmemory-policy allkeys-lru\n"
        "tls-key-file /etc/redis/conf/tls.key\n"
    )
    program = _session_store_with_conf(conf)
    assert messages(program, "redis-encrypted") == [
        f"{STS} sets requirepass literally (redis.conf or arguments): the password is in clear "
        "in a ConfigMap or the pod spec",
        f"{STS} also serves plaintext on port 6379 (set port 0)",
    ]
    assert messages(program, "session-store-no-eviction") == [
        f"{STS} runs Redis with maxmemory-policy allkeys-lru, which evicts sessions when memory "
        "is full (use noeviction)"
    ]


def test_conf_without_tls_or_acl_fails_redis_encrypted() -> None:
    assert messages(_session_store_with_conf("port 6379\n"), "redis-encrypted") == [
        f"{STS} {NO_AUTH}",
        f"{STS} runs Redis without TLS (no tls-port)",
    ]


def test_elasticache_default_parameter_group_evicts() -> None:
    assert messages(_replication_group, "session-store-no-eviction") == [
        "ReplicationGroup memory: uses the default parameter group, not one declared in the "
        "stack: its maxmemory-policy is volatile-lru, which evicts sessions when memory is full "
        "(use noeviction)"
    ]

    def with_group(policy: str) -> Callable[[], None]:
        def program() -> None:
            aws.elasticache.ParameterGroup(
                "params",
                name="sessions",
                family="valkey8",
                parameters=[{"name": "maxmemory-policy", "value": policy}],
            )
            _replication_group(parameter_group_name="sessions", snapshot_retention_limit=7)

        return program

    assert messages(with_group("noeviction"), "session-store-no-eviction") == []
    assert messages(with_group("allkeys-lfu"), "session-store-no-eviction") == [
        "ReplicationGroup memory: parameter group sessions sets maxmemory-policy allkeys-lfu, "
        "which evicts sessions when memory is full (use noeviction)"
    ]


def test_stores_without_persistent_volumes_or_snapshots_fail() -> None:
    assert messages(
        lambda: deployment(pod=_pod(image="valkey/valkey:8.1.10")), "stateful-stores-persistent"
    ) == [
        f"{LABEL}: runs valkey with no volumeClaimTemplates and no persistentVolumeClaim "
        "volume: its data is gone when the pod is"
    ]
    with_claim = restricted_pod(
        containers=[container(image="qdrant/qdrant:v1.19.0")],
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "qdrant"}}],
    )
    assert messages(lambda: deployment(pod=with_claim), "stateful-stores-persistent") == []
    assert messages(_replication_group, "stateful-stores-persistent") == [
        "ReplicationGroup memory: snapshotRetentionLimit is not above 0: no snapshot to "
        "restore from"
    ]

    def node_pool() -> None:
        k8s.apiextensions.CustomResource(
            "brokers",
            api_version="kafka.strimzi.io/v1",
            kind="KafkaNodePool",
            metadata={"name": "brokers", "namespace": "data"},
            spec={"replicas": 3, "roles": ["broker"], "storage": {"type": "ephemeral"}},
        )

    assert messages(node_pool, "stateful-stores-persistent") == [
        "KafkaNodePool data/brokers (brokers): storage.type is ephemeral: the brokers' logs "
        "are gone when a pod is"
    ]
