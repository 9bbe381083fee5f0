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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    StackValidationArgs,
)

from policies.framework import (
    Rule,
    Workload,
    as_dict,
    as_list,
    containers,
    for_workloads,
    k8s_kind,
    namespace_of,
    of_kind,
    pod_spec,
    reporter,
    stack_reporter,
)

SECRET_NAME = re.compile(
    r"TOKEN|PASSWORD|PASSWD|SECRET|API_KEY|APIKEY|PRIVATE_KEY|CREDENTIALS", re.IGNORECASE
)
# A variable that names where a secret is (a mounted file, a directory) holds no secret.
SECRET_REFERENCE_SUFFIXES = ("_FILE", "_PATH", "_DIR")
# The agent worker's counts of model tokens (budgets, answer length): numbers, no secret.
TOKEN_COUNTS = frozenset(
    {
        "BUDGET_SESSION_TOKENS",
        "BUDGET_USER_TOKENS_PER_DAY",
        "BUDGET_AGENT_TOKENS_PER_DAY",
        "DEFAULT_MAX_TOKENS",
    }
)

REDIS_IMAGES = ("redis", "valkey")  # last repository segment: library/redis, bitnami/redis, ...
QDRANT_API_KEY = "QDRANT__SERVICE__API_KEY"

ELASTICACHE_REPLICATION_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
ELASTICACHE_PARAMETER_GROUP = "aws:elasticache/parameterGroup:ParameterGroup"
# ElastiCache's default parameter groups evict (maxmemory-policy volatile-lru).
ELASTICACHE_DEFAULT_POLICY = "volatile-lru"
REDIS_DEFAULT_PORT = "6379"
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


def _looks_secret(name: str, allowed: Sequence[Any]) -> bool:
    if name in {str(a) for a in allowed}:
        return False
    normalized = name.replace("-", "_").replace(".", "_")
    if normalized.upper().endswith(SECRET_REFERENCE_SUFFIXES) or normalized in TOKEN_COUNTS:
        return False
    return SECRET_NAME.search(normalized) is not None


# --------------------------------------------------------------------------- redis (shared)


def _elasticache(say: Callable[[str], None], props: Mapping[str, Any]) -> None:
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


@dataclass(frozen=True)
class RedisServer:
    """One Redis/Valkey container of a workload, with its effective settings: the
    rendered redis.conf it is started with (read from the mounted ConfigMap), overridden
    by `--name value` arguments, and where its mounted Secret files are."""

    label: str
    settings: dict[str, str]
    secret_dirs: tuple[str, ...]
    configmap_files: dict[str, str]  # path -> the ConfigMap it comes from

    def from_secret(self, path: str) -> bool:
        return any(path == d or path.startswith(d.rstrip("/") + "/") for d in self.secret_dirs)


def _conf_settings(text: str) -> dict[str, str]:
    """redis.conf directives, lower-cased names, the last occurrence winning."""
    settings: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition(" ")
        settings[name.lower()] = value.strip().strip('"')
    return settings


def _mounted(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    namespace: str,
    configmaps: Mapping[tuple[str, str], Mapping[str, Any]],
) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """(ConfigMap files by path -> (ConfigMap name, content), Secret mount paths)."""
    volumes = {str(as_dict(v).get("name")): as_dict(v) for v in as_list(pod.get("volumes"))}
    files: dict[str, tuple[str, str]] = {}
    secret_dirs: list[str] = []
    for m in as_list(container.get("volumeMounts")):
        mount = as_dict(m)
        volume = volumes.get(str(mount.get("name")), {})
        path = str(mount.get("mountPath") or "").rstrip("/")
        sub_path = str(mount.get("subPath") or "")
        if as_dict(volume.get("secret")) or as_dict(volume.get("projected")):
            secret_dirs.append(path)
            continue
        source = as_dict(volume.get("configMap"))
        if not source:
            continue
        name = str(source.get("name") or "")
        data = as_dict(configmaps.get((namespace, name), {}).get("data"))
        items = {
            str(as_dict(i).get("key")): str(as_dict(i).get("path"))
            for i in as_list(source.get("items"))
        }
        for key, content in data.items():
            if items and str(key) not in items:
                continue
            file_name = items.get(str(key), str(key))
            if sub_path:
                if sub_path == file_name:
                    files[path] = (name, str(content))
            else:
                files[f"{path}/{file_name}"] = (name, str(content))
    return files, secret_dirs


def _redis_servers(
    r: PolicyResource, configmaps: Mapping[tuple[str, str], Mapping[str, Any]]
) -> list[RedisServer]:
    pod = pod_spec(k8s_kind(r.resource_type), r.props)
    if pod is None:
        return []
    namespace = namespace_of(r.props)
    servers: list[RedisServer] = []
    for label, c in containers(pod):
        argv = _argv(c)
        if _segments(c.get("image"))[-1] not in REDIS_IMAGES:
            continue
        if as_list(c.get("command")) and not any("server" in a or ".conf" in a for a in argv):
            continue  # a sidecar running a script or the CLI from the server's image
        files, secret_dirs = _mounted(pod, c, namespace, configmaps)
        settings: dict[str, str] = {}
        for arg in argv:
            if arg in files:
                settings.update(_conf_settings(files[arg][1]))
        tokens = " ".join(argv).split()
        for i, token in enumerate(tokens[:-1]):
            if token.startswith("--") and len(token) > 2:
                settings[token[2:].lower()] = tokens[i + 1].strip('"')
        servers.append(
            RedisServer(
                label,
                settings,
                tuple(secret_dirs),
                {path: name for path, (name, _) in files.items()},
            )
        )
    return servers


def _configmaps(resources: Sequence[PolicyResource]) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {
        (namespace_of(c.props), str(as_dict(c.props.get("metadata")).get("name") or c.name)): (
            c.props
        )
        for c in of_kind(resources, "ConfigMap")
    }


# --------------------------------------------------------------------------- redis-encrypted


def _redis_server_encrypted(server: RedisServer, say: Callable[[str], None]) -> None:
    settings, label = server.settings, server.label
    if "requirepass" in settings and not settings["requirepass"].startswith("$"):
        say(
            f"{label} sets requirepass literally (redis.conf or arguments): the password is "
            "in clear in a ConfigMap or the pod spec"
        )
    acl = settings.get("aclfile")
    include = settings.get("include")
    auth = (
        (acl is not None and server.from_secret(acl))
        or (include is not None and server.from_secret(include))
        or "requirepass" in settings
    )
    if acl is not None and not server.from_secret(acl):
        say(f"{label} reads its ACL file {acl} from outside a mounted Secret")
    elif not auth:
        say(
            f"{label} runs Redis without auth (no aclfile or include from a mounted Secret, "
            "no requirepass)"
        )
    tls_port = settings.get("tls-port", "0")
    if tls_port in ("", "0"):
        say(f"{label} runs Redis without TLS (no tls-port)")
    elif settings.get("port", REDIS_DEFAULT_PORT) != "0":
        port = settings.get("port", REDIS_DEFAULT_PORT)
        say(f"{label} also serves plaintext on port {port} (set port 0)")
    key = settings.get("tls-key-file")
    if key is not None and key in server.configmap_files:
        say(f"{label} reads its TLS key {key} from a ConfigMap")


def _redis_encrypted(args: StackValidationArgs, report: ReportViolation) -> None:
    configmaps = _configmaps(args.resources)
    for r in args.resources:
        say = stack_reporter(r, report)
        if r.resource_type == ELASTICACHE_REPLICATION_GROUP:
            _elasticache(say, r.props)
            continue
        for server in _redis_servers(r, configmaps):
            _redis_server_encrypted(server, say)


# ----------------------------------------------------------------- session-store-no-eviction


def _no_eviction(args: StackValidationArgs, report: ReportViolation) -> None:
    configmaps = _configmaps(args.resources)
    groups = {
        str(p.props.get("name") or p.name): p
        for p in args.resources
        if p.resource_type == ELASTICACHE_PARAMETER_GROUP
    }
    evicts = "evicts sessions when memory is full (use noeviction)"
    for r in args.resources:
        say = stack_reporter(r, report)
        if r.resource_type == ELASTICACHE_REPLICATION_GROUP:
            name = str(r.props.get("parameterGroupName") or "")
            group = groups.get(name)
            if group is None:
                shown = f"parameter group {name}" if name else "the default parameter group"
                say(
                    f"uses {shown}, not one declared in the stack: its maxmemory-policy is "
                    f"{ELASTICACHE_DEFAULT_POLICY}, which {evicts}"
                )
                continue
            policy = ELASTICACHE_DEFAULT_POLICY
            for p in as_list(group.props.get("parameters")):
                if as_dict(p).get("name") == "maxmemory-policy":
                    policy = str(as_dict(p).get("value"))
            if policy != "noeviction":
                say(f"parameter group {name} sets maxmemory-policy {policy}, which {evicts}")
            continue
        for server in _redis_servers(r, configmaps):
            # Redis's own default is noeviction.
            policy = server.settings.get("maxmemory-policy", "noeviction")
            if policy != "noeviction":
                say(f"{server.label} runs Redis with maxmemory-policy {policy}, which {evicts}")


# ---------------------------------------------------------------- stateful-stores-persistent

STATEFUL_IMAGES = ("redis", "valkey", "qdrant", "kafka", "cp-kafka")


def _persistent_workload(w: Workload, _: Mapping[str, Any]) -> None:
    stores = [
        _segments(c.get("image"))[-1]
        for _, c in containers(w.pod)
        if _segments(c.get("image"))[-1] in STATEFUL_IMAGES
    ]
    if not stores:
        return
    claims = as_list(as_dict(w.props.get("spec")).get("volumeClaimTemplates"))
    volumes = [as_dict(v) for v in as_list(w.pod.get("volumes"))]
    if claims or any(v.get("persistentVolumeClaim") for v in volumes):
        return
    w.report(
        f"runs {stores[0]} with no volumeClaimTemplates and no persistentVolumeClaim volume: "
        "its data is gone when the pod is"
    )


_persistent_workloads = for_workloads(_persistent_workload)


def _persistent(args: ResourceValidationArgs, report: ReportViolation) -> None:
    say = reporter(args.resource_type, args.props, args.name, report)
    if args.resource_type == ELASTICACHE_REPLICATION_GROUP:
        retention = args.props.get("snapshotRetentionLimit")
        if not isinstance(retention, int | float) or retention <= 0:
            say("snapshotRetentionLimit is not above 0: no snapshot to restore from")
        return
    if args.resource_type.startswith("kubernetes:kafka.strimzi.io/") and k8s_kind(
        args.resource_type
    ) in ("KafkaNodePool", "Kafka"):
        spec = as_dict(args.props.get("spec"))
        storage = as_dict(spec.get("storage") or as_dict(spec.get("kafka")).get("storage"))
        if storage.get("type") == "ephemeral":
            say("storage.type is ephemeral: the brokers' logs are gone when a pod is")
        return
    _persistent_workloads(args, report)


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
        "transit and at-rest encryption and an auth token or user groups; in-cluster Redis, "
        "read from the redis.conf it is started with and its arguments, serves TLS only "
        "(tls-port, port 0) and authenticates through an ACL file or include from a mounted "
        "Secret (no requirepass in clear).",
        "ElastiCache: set transitEncryptionEnabled, atRestEncryptionEnabled and authToken (or "
        "userGroupIds). In-cluster: in the redis.conf the server is started with (a mounted "
        "ConfigMap) or its arguments, set tls-port with port 0, and aclfile (or include) "
        "pointing into a mounted Secret; never requirepass in a ConfigMap.",
        check_stack=_redis_encrypted,
    ),
    Rule(
        "session-store-no-eviction",
        "data",
        "A session store never evicts: in-cluster Redis runs with maxmemory-policy noeviction "
        "(its rendered redis.conf or arguments; absent means noeviction), and an ElastiCache "
        "replication group uses a parameter group of the stack that sets it (the default "
        "groups use volatile-lru).",
        "Set maxmemory-policy noeviction in the redis.conf; for ElastiCache declare a "
        "ParameterGroup with maxmemory-policy noeviction and set parameterGroupName to it.",
        check_stack=_no_eviction,
    ),
    Rule(
        "stateful-stores-persistent",
        "data",
        "Redis, Valkey, Qdrant and Kafka workloads keep their data on persistent volumes "
        "(volumeClaimTemplates or a persistentVolumeClaim volume); Strimzi node pools use no "
        "ephemeral storage; ElastiCache keeps snapshots (snapshotRetentionLimit above 0).",
        "Add volumeClaimTemplates to the StatefulSet, use persistent-claim or jbod storage in "
        "the KafkaNodePool, set snapshotRetentionLimit on the replication group.",
        check=_persistent,
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
