"""Data service rules: Redis, Kafka and Qdrant encrypt and authenticate; no plaintext secrets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest

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


@pytest.mark.parametrize(
    "changes",
    [
        {"args": [*REDIS_ARGS, "--requirepass", "$(REDIS_PASSWORD)"]},
        {"args": [*REDIS_ARGS, "--aclfile", "/acl/users.acl"]},
        {"args": REDIS_ARGS, "env": [_secret_env("REDIS_PASSWORD")]},
        {
            "command": ["sh", "-c", 'exec redis-server --tls-port 6380 --requirepass "$P"'],
        },
    ],
    ids=["requirepass", "aclfile", "env-secret", "shell-line"],
)
def test_in_cluster_redis_with_tls_and_auth_passes(changes: dict[str, Any]) -> None:
    pod = _pod(image="docker.io/library/redis:7.4@sha256:" + "a" * 64, **changes)
    assert messages(lambda: deployment(pod=pod), "redis-encrypted") == []


@pytest.mark.parametrize("image", ["redis:7.4", "docker.io/bitnami/redis:7.4", "valkey/valkey:8"])
def test_in_cluster_redis_without_tls_or_auth_fails(image: str) -> None:
    found = violations(lambda: deployment(pod=_pod(image=image)), "redis-encrypted")
    assert _only(found, "redis-encrypted") == [
        f"{LABEL}: container app runs Redis without auth (no --requirepass, no --aclfile, no "
        "REDIS_PASSWORD/VALKEY_PASSWORD from a secretKeyRef)",
        f"{LABEL}: container app runs Redis without TLS (no --tls-port)",
    ]


def test_redis_password_as_literal_is_not_auth() -> None:
    pod = _pod(
        image="redis:7.4", args=REDIS_ARGS, env=[{"name": "REDIS_PASSWORD", "value": SECRET}]
    )
    assert messages(lambda: deployment(pod=pod), "redis-encrypted") == [
        f"{LABEL}: container app runs Redis without auth (no --requirepass, no --aclfile, no "
        "REDIS_PASSWORD/VALKEY_PASSWORD from a secretKeyRef)"
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
    assert len(found) == 9
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
