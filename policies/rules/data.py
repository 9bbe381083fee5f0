"""Data services: Redis, Kafka and Qdrant encrypt in transit and authenticate clients, and no
secret sits in plain text in a pod spec or a ConfigMap.

A field that is absent means what the service does without it: ElastiCache
without transitEncryptionEnabled speaks plaintext, MSK without
encryptionInTransit uses TLS between clients and brokers but accepts
unauthenticated clients when no clientAuthentication is set, and Redis or
Qdrant started without a password or API key accept any client.

Props arrive with secrets unwrapped: messages name a key or a variable, never
its value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs

from policies.framework import (
    Rule,
    Workload,
    as_dict,
    as_list,
    containers,
    for_workloads,
    k8s_kind,
    reporter,
)

SECRET_NAME = re.compile(
    r"TOKEN|PASSWORD|PASSWD|SECRET|API_KEY|APIKEY|PRIVATE_KEY|CREDENTIALS", re.IGNORECASE
)
# A variable that names where a secret is (a mounted file, a directory) holds no secret.
SECRET_REFERENCE_SUFFIXES = ("_FILE", "_PATH", "_DIR")

REDIS_IMAGES = ("redis", "valkey")  # last repository segment: library/redis, bitnami/redis, ...
REDIS_PASSWORD_VARS = ("REDIS_PASSWORD", "VALKEY_PASSWORD")
REDIS_TLS_VARS = ("REDIS_TLS_ENABLED", "VALKEY_TLS_ENABLED")  # bitnami images
QDRANT_API_KEY = "QDRANT__SERVICE__API_KEY"

ELASTICACHE_REPLICATION_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
MSK_CLUSTER = "aws:msk/cluster:Cluster"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"


# --------------------------------------------------------------------------- helpers


def _repository(image: object) -> str:
    """`docker.io/bitnami/redis:7.4@sha256:...` -> `docker.io/bitnami/redis`."""
    name = str(image or "").split("@", 1)[0]
    if name.rfind(":") > name.rfind("/"):
        name = name[: name.rfind(":")]
    return name.lower()


def _segments(image: object) -> list[str]:
    return _repository(image).split("/")


def _env(container: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """A container's env entries by name (the last one wins, as in Kubernetes)."""
    return {str(as_dict(e).get("name")): as_dict(e) for e in as_list(container.get("env"))}


def _from_secret(entry: Mapping[str, Any]) -> bool:
    return bool(as_dict(as_dict(entry.get("valueFrom")).get("secretKeyRef")))


def _has_literal(entry: Mapping[str, Any]) -> bool:
    # Only whether a value is there is read, never the value itself into a message.
    return entry.get("value") not in (None, "")


def _argv(container: Mapping[str, Any]) -> list[str]:
    return [str(a) for key in ("command", "args") for a in as_list(container.get(key))]


def _mentions(argv: Sequence[str], flag: str) -> bool:
    """A flag given as its own argument or inside a shell line (`sh -c "redis-server ..."`)."""
    return any(flag in a for a in argv)


def _looks_secret(name: str, allowed: Sequence[Any]) -> bool:
    if name in {str(a) for a in allowed}:
        return False
    normalized = name.replace("-", "_").replace(".", "_")
    if normalized.upper().endswith(SECRET_REFERENCE_SUFFIXES):
        return False
    return SECRET_NAME.search(normalized) is not None


# --------------------------------------------------------------------------- redis-encrypted


def _elasticache(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props = args.props
    say = reporter(args.resource_type, props, args.name, report)
    if props.get("transitEncryptionEnabled") is not True:
        say("transitEncryptionEnabled is not true: clients talk to Redis in plaintext")
    elif props.get("transitEncryptionMode") == "preferred":
        say("transitEncryptionMode is preferred: plaintext connections are still accepted")
    if props.get("atRestEncryptionEnabled") is not True:
        say("atRestEncryptionEnabled is not true: snapshots and swap are stored unencrypted")
    # authToken is a secret: whether it is set is all that is read.
    has_token = bool(props.get("authToken")) or bool(props.get("authTokenWo"))
    if not has_token and not as_list(props.get("userGroupIds")):
        say("requires no auth (neither authToken nor userGroupIds is set)")


def _redis_workload(w: Workload, _: Mapping[str, Any]) -> None:
    for label, c in containers(w.pod):
        if _segments(c.get("image"))[-1] not in REDIS_IMAGES:
            continue
        argv, env = _argv(c), _env(c)
        auth = (
            _mentions(argv, "--requirepass")
            or _mentions(argv, "--aclfile")
            or any(_from_secret(env.get(v, {})) for v in REDIS_PASSWORD_VARS)
        )
        if not auth:
            w.report(
                f"{label} runs Redis without auth (no --requirepass, no --aclfile, no "
                "REDIS_PASSWORD/VALKEY_PASSWORD from a secretKeyRef)"
            )
        tls = _mentions(argv, "--tls-port") or any(
            str(env.get(v, {}).get("value", "")).lower() in ("yes", "true", "1")
            for v in REDIS_TLS_VARS
        )
        if not tls:
            w.report(f"{label} runs Redis without TLS (no --tls-port)")


_redis_workloads = for_workloads(_redis_workload)


def _redis(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == ELASTICACHE_REPLICATION_GROUP:
        _elasticache(args, report)
    else:
        _redis_workloads(args, report)


# --------------------------------------------------------------------------- kafka-encrypted


def _msk(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props = args.props
    say = reporter(args.resource_type, props, args.name, report)
    # MSK always encrypts at rest (an AWS managed key when no KMS key is named), so only
    # transit and client authentication are checked. Absent clientBroker means TLS.
    transit = as_dict(as_dict(props.get("encryptionInfo")).get("encryptionInTransit"))
    client_broker = transit.get("clientBroker") or "TLS"
    if client_broker != "TLS":
        say(f"encryptionInTransit.clientBroker is {client_broker}: clients may use plaintext")
    if transit.get("inCluster") is False:
        say("encryptionInTransit.inCluster is false: brokers replicate in plaintext")
    auth = as_dict(props.get("clientAuthentication"))
    sasl = as_dict(auth.get("sasl"))
    if auth.get("unauthenticated") is True:
        say("clientAuthentication.unauthenticated is true: any client may connect")
    if sasl.get("iam") is not True and sasl.get("scram") is not True and auth.get("tls") is None:
        say("authenticates no clients (clientAuthentication sets no sasl.iam, sasl.scram or tls)")


def _strimzi(args: ResourceValidationArgs, report: ReportViolation) -> None:
    say = reporter(args.resource_type, args.props, args.name, report)
    kafka = as_dict(as_dict(args.props.get("spec")).get("kafka"))
    for item in as_list(kafka.get("listeners")):
        listener = as_dict(item)
        port = listener.get("port")
        # Numbers arrive as floats from the wire: 9092.0 is port 9092.
        where = int(port) if isinstance(port, int | float) else "?"
        label = f"listener {listener.get('name', '?')} (port {where})"
        if listener.get("tls") is not True:
            say(f"{label} does not use TLS (tls is not true)")
        if not as_dict(listener.get("authentication")).get("type"):
            say(f"{label} authenticates no clients (no authentication block)")


def _is_strimzi_kafka(resource_type: str) -> bool:
    return resource_type.startswith("kubernetes:kafka.strimzi.io/") and k8s_kind(resource_type) == (
        "Kafka"
    )


def _kafka(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == MSK_CLUSTER:
        _msk(args, report)
    elif _is_strimzi_kafka(args.resource_type):
        _strimzi(args, report)


# --------------------------------------------------------------------------- qdrant-api-key


def _qdrant_workload(w: Workload, _: Mapping[str, Any]) -> None:
    for label, c in containers(w.pod):
        if _segments(c.get("image"))[-2:] != ["qdrant", "qdrant"]:
            continue
        entry = _env(c).get(QDRANT_API_KEY, {})
        if _has_literal(entry):
            w.report(f"{label} sets {QDRANT_API_KEY} as a literal value; read it from a Secret")
        elif not _from_secret(entry):
            w.report(
                f"{label} has no {QDRANT_API_KEY} from a secretKeyRef: the Qdrant API accepts "
                "any client"
            )


_qdrant_workloads = for_workloads(_qdrant_workload)


def _qdrant(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != HELM_RELEASE:
        _qdrant_workloads(args, report)
        return
    # `qdrant`, `qdrant/qdrant` (repo/chart) and `oci://registry/charts/qdrant` all name it.
    if str(args.props.get("chart") or "").rstrip("/").rsplit("/", 1)[-1] != "qdrant":
        return
    values = as_dict(args.props.get("values"))
    service = as_dict(as_dict(values.get("config")).get("service"))
    if not values.get("apiKey") and not service.get("api_key"):
        reporter(args.resource_type, args.props, args.name, report)(
            "chart qdrant sets neither values.apiKey nor values.config.service.api_key: the "
            "Qdrant API accepts any client"
        )


# --------------------------------------------------------------------------- no-plaintext-secrets


def _env_secrets(w: Workload, config: Mapping[str, Any]) -> None:
    allowed = as_list(config.get("allowedNames"))
    for label, c in containers(w.pod):
        for name, entry in _env(c).items():
            if _looks_secret(name, allowed) and _has_literal(entry):
                w.report(
                    f"{label} sets {name} as a literal value; read it from a Secret "
                    "(valueFrom.secretKeyRef)"
                )


_env_secret_workloads = for_workloads(_env_secrets)


def _plaintext_secrets(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if k8s_kind(args.resource_type) != "ConfigMap":
        _env_secret_workloads(args, report)
        return
    allowed = as_list(args.get_config().get("allowedNames"))
    say = reporter(args.resource_type, args.props, args.name, report)
    for field in ("data", "binaryData"):
        for key in as_dict(args.props.get(field)):
            if _looks_secret(str(key), allowed):
                say(f"{field} key {key} looks like a secret; ConfigMaps are not secret")


ALLOWED_NAMES: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string"},
    "default": [],
    "description": "Variable and ConfigMap key names that look secret but hold none.",
}


RULES: list[Rule] = [
    Rule(
        "redis-encrypted",
        "data",
        "Redis encrypts in transit and requires auth: ElastiCache replication groups enable "
        "transit and at-rest encryption and an auth token or user groups; in-cluster Redis "
        "serves TLS and requires a password.",
        "ElastiCache: set transitEncryptionEnabled, atRestEncryptionEnabled and authToken (or "
        "userGroupIds). In-cluster: pass --tls-port with certificates and --requirepass (or "
        "REDIS_PASSWORD from a secretKeyRef, or --aclfile).",
        check=_redis,
    ),
    Rule(
        "kafka-encrypted",
        "data",
        "Kafka encrypts client and broker traffic and authenticates clients: MSK with TLS in "
        "transit and SASL or mTLS client auth; every Strimzi listener with tls and "
        "authentication.",
        "MSK: keep clientBroker TLS and inCluster true, set clientAuthentication.sasl.iam (or "
        "scram, or tls) and leave unauthenticated off. Strimzi: set tls: true and an "
        "authentication block (scram-sha-512, tls) on every listener.",
        check=_kafka,
    ),
    Rule(
        "qdrant-api-key",
        "data",
        "Qdrant requires an API key read from a Secret (unset, the API accepts any client).",
        "Set env QDRANT__SERVICE__API_KEY from a secretKeyRef; for the Helm chart set "
        "values.apiKey (or values.config.service.api_key).",
        check=_qdrant,
    ),
    Rule(
        "no-plaintext-secrets",
        "data",
        "No container env var that looks secret (token, password, secret, API key, private key, "
        "credentials) has a literal value, and no ConfigMap key looks secret.",
        "Move the value into a Secret and read it with valueFrom.secretKeyRef (or mount it); "
        "allow a name that holds no secret with the allowedNames config.",
        check=_plaintext_secrets,
        config={"allowedNames": ALLOWED_NAMES},
    ),
]
