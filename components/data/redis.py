"""The agents' session store: Redis or Valkey in the cluster, or ElastiCache.

inCluster declares everything itself (no Bitnami chart): a one-replica StatefulSet (the
worker takes one REDIS_URL; replicas without Sentinel add no availability, ElastiCache
is the HA mode), a headless and a client Service, a PersistentVolumeClaim on the
encrypted gp3 class, a ConfigMap with the rendered `redis.conf` (no secret in it), a
Secret with the password and an ACL file holding only its SHA-256, a cert-manager
Certificate, a PodDisruptionBudget, a redis_exporter sidecar and a TLS reloader sidecar.

Renewed certificates: cert-manager rewrites the Secret, the kubelet updates the mounted
files, and Redis keeps serving the old certificate until told otherwise. The reloader
sidecar checks the files every `TLS_RELOAD_INTERVAL_S` and, when they changed, runs
`CONFIG SET tls-cert-file ... tls-key-file ... tls-ca-cert-file ...` with the same paths
over the pod's unix socket: the tls-* settings are volatile, so setting them to their
current value still re-reads the files (Redis >= 7 and Valkey). New connections get the
new certificate; open ones keep theirs. tests/test_redis_server.py proves it on a real
redis-server.

`render_redis_conf` is the one rendering of the server's settings: the StatefulSet's
ConfigMap and the local target (loadtests/services.start_redis) both call it, with
different paths (`RedisLayout`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pydantic import Field

from components.compute.nodes import aws_tags
from components.data.certs import (
    CA_BUNDLE_KEY,
    CA_BUNDLE_SECRET,
    IssuerRef,
    store_certificate,
)
from components.data.network import ManagedNetwork
from components.data.stateful import declare_stateful_store
from components.specs import CostLabels, ImageRef, Spec

Engine = Literal["redis", "valkey"]
MaxmemoryPolicy = Literal[
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
]

# Minor version -> the official image tag pinned for it (docker.io/library/redis from
# docker-library/official-images `library/redis`; docker.io/valkey/valkey releases).
ENGINE_VERSIONS: dict[str, dict[str, str]] = {
    "valkey": {"8.1": "8.1.10", "9.1": "9.1.1"},
    "redis": {"7.4": "7.4.11", "8.2": "8.2.9", "8.10": "8.10.1"},
}
IMAGES: dict[str, str] = {"valkey": "docker.io/valkey/valkey", "redis": "docker.io/library/redis"}
BINARIES: dict[str, tuple[str, str]] = {
    "valkey": ("valkey-server", "valkey-cli"),
    "redis": ("redis-server", "redis-cli"),
}
# ElastiCache engine versions and their parameter group families.
ELASTICACHE_VERSIONS: dict[str, dict[str, str]] = {
    "valkey": {"7.2": "valkey7", "8.0": "valkey8", "8.1": "valkey8"},
    "redis": {"7.1": "redis7"},
}
ElastiCacheNodeType = Literal[
    "cache.t4g.medium",
    "cache.m7g.large",
    "cache.m7g.xlarge",
    "cache.r7g.large",
    "cache.r7g.xlarge",
    "cache.r7g.2xlarge",
]
EXPORTER_REPOSITORY = "docker.io/oliver006/redis_exporter"
EXPORTER_TAG = "v1.88.0"

NAME = "session-store"
PORT = 6379
EXPORTER_PORT = 9121
RUN_AS = 999  # the redis and valkey images' own user
MAXMEMORY_SHARE = 0.75  # of the container limit: the rest is AOF rewrite, buffers, forks
TLS_RELOAD_INTERVAL_S = 60
DEFAULT_STORAGE_CLASS = "gp3"  # the encrypted class components/compute/cluster.py declares

CONF_DIR = "/etc/redis/conf"
CONF_FILE = "redis.conf"
RELOADER_FILE = "tls-reloader.sh"
AUTH_DIR = "/etc/redis/auth"
PASSWORD_KEY = "password"
ACL_KEY = "users.acl"
# redis_exporter's --redis.password-file: JSON mapping the address it dials to the password
# (it looks the address up as written, here the server's socket URI).
EXPORTER_PASSWORDS_KEY = "exporter-passwords.json"
TLS_DIR = "/etc/redis/tls"
DATA_DIR = "/data"
SOCKET = "/run/redis/redis.sock"
EXPORTER_ADDR = f"unix://{SOCKET}"

# Where a client pod mounts what the connection names (the worker's *_FILE variables).
CLIENT_PASSWORD_PATH = "/etc/swarmstack/redis/password"
CLIENT_CA_PATH = "/etc/swarmstack/redis/ca.crt"


class ElastiCacheSpec(Spec):
    """The managed replication group (mode: elasticache)."""

    node_type: ElastiCacheNodeType = Field(
        default="cache.r7g.large", description="ElastiCache node type."
    )
    nodes: int = Field(
        default=2,
        ge=2,
        le=6,
        description="Nodes: one primary and its replicas, spread over the AZs (Multi-AZ "
        "with automatic failover needs at least 2).",
    )
    snapshot_retention_days: int = Field(
        default=7, ge=1, le=35, description="Daily snapshots kept, days."
    )
    snapshot_window: str = Field(
        default="03:00-04:00",
        pattern=r"^[0-2][0-9]:[0-5][0-9]-[0-2][0-9]:[0-5][0-9]$",
        description="Daily snapshot window, UTC (hh:mm-hh:mm).",
    )
    maintenance_window: str = Field(
        default="sun:05:00-sun:06:00",
        pattern=r"^(mon|tue|wed|thu|fri|sat|sun):[0-2][0-9]:[0-5][0-9]-"
        r"(mon|tue|wed|thu|fri|sat|sun):[0-2][0-9]:[0-5][0-9]$",
        description="Weekly maintenance window, UTC (ddd:hh:mm-ddd:hh:mm).",
    )


class RedisSpec(Spec):
    """The session store: where agents checkpoint sessions, leases and tool journals."""

    mode: Literal["inCluster", "elasticache"] = Field(
        default="inCluster",
        description="`inCluster`: a StatefulSet declared by the stack; `elasticache`: an "
        "ElastiCache replication group in the stack's VPC.",
    )
    engine: Engine = Field(default="valkey", description="Server engine: redis or valkey.")
    version: str = Field(
        default="8.1",
        description="Engine minor version (inCluster: valkey 8.1, 9.1; redis 7.4, 8.2, "
        "8.10. ElastiCache: valkey 7.2, 8.0, 8.1; redis 7.1).",
    )
    memory_gib: int = Field(
        default=4,
        ge=1,
        le=256,
        description="Memory limit of the server container, GiB; maxmemory is 75% of it.",
    )
    cpu: str = Field(default="1", pattern=r"^[0-9]+(m)?$", description="CPU request.")
    storage_gib: int = Field(
        default=20,
        ge=1,
        le=4096,
        description="Persistent volume for the append-only file, GiB (at least twice the "
        "memory limit, so an AOF rewrite fits).",
    )
    appendonly: bool = Field(
        default=True, description="Append-only file persistence (sessions survive restarts)."
    )
    appendfsync: Literal["always", "everysec", "no"] = Field(
        default="everysec",
        description="AOF fsync policy: `everysec` loses at most about one second of writes.",
    )
    maxmemory_policy: MaxmemoryPolicy = Field(
        default="noeviction",
        description="What happens when memory is full. A session store must not evict: "
        "`noeviction` refuses writes instead of dropping sessions.",
    )
    tls: bool = Field(default=True, description="Serve TLS only (no plaintext port).")
    image: ImageRef | None = Field(
        default=None,
        description="The server image (mode inCluster); unset: the engine's official image "
        "at the pinned patch release of `version` (valkey 8.1 -> docker.io/valkey/valkey:8.1.10).",
    )
    exporter_image: ImageRef = Field(
        default_factory=lambda: ImageRef(repository=EXPORTER_REPOSITORY, tag=EXPORTER_TAG),
        description="The redis_exporter sidecar's image (mode inCluster).",
    )
    elasticache: ElastiCacheSpec = Field(
        default_factory=ElastiCacheSpec, description="ElastiCache settings (mode: elasticache)."
    )


def redis_problems(spec: RedisSpec) -> list[tuple[str, str]]:
    """Rules inside the session store: (path below the store's key, message)."""
    problems: list[tuple[str, str]] = []
    table = ENGINE_VERSIONS if spec.mode == "inCluster" else ELASTICACHE_VERSIONS
    known = table[spec.engine]
    if spec.version not in known:
        problems.append(
            (
                "redis.version",
                f"{spec.version!r} is not a known {spec.engine} version for mode {spec.mode} "
                f"(one of {', '.join(known)})",
            )
        )
    if spec.maxmemory_policy != "noeviction":
        problems.append(
            (
                "redis.maxmemoryPolicy",
                f"{spec.maxmemory_policy!r} evicts keys when memory is full and a session "
                "store must not lose sessions: use noeviction",
            )
        )
    if spec.mode == "inCluster":
        if not spec.appendonly:
            problems.append(
                (
                    "redis.appendonly",
                    "false keeps sessions in memory only: a restart loses every session; "
                    "set appendonly: true",
                )
            )
        if spec.storage_gib < 2 * spec.memory_gib:
            problems.append(
                (
                    "redis.storageGib",
                    f"{spec.storage_gib} GiB is less than twice memoryGib "
                    f"({spec.memory_gib} GiB): an AOF rewrite may not fit; use at least "
                    f"{2 * spec.memory_gib}",
                )
            )
    elif not spec.tls:
        problems.append(("redis.tls", "false: ElastiCache here always requires transit encryption"))
    return problems


def server_image(spec: RedisSpec) -> ImageRef:
    """`image`, or the engine's official image at the pinned patch of `version`."""
    if spec.image is not None:
        return spec.image
    return ImageRef(repository=IMAGES[spec.engine], tag=ENGINE_VERSIONS[spec.engine][spec.version])


def image(spec: RedisSpec) -> str:
    return server_image(spec).reference


def maxmemory_bytes(spec: RedisSpec) -> int:
    return int(spec.memory_gib * 1024**3 * MAXMEMORY_SHARE)


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class TlsFiles:
    cert: str
    key: str
    ca: str


@dataclass(frozen=True)
class RedisLayout:
    """Where one target keeps what the server reads: the only part that differs between
    the cluster and the local target."""

    bind: str
    port: int  # the TLS port when `tls` is set (plaintext is then off), else plaintext
    data_dir: str
    acl_file: str | None
    tls: TlsFiles | None
    unix_socket: str | None


def cluster_layout(spec: RedisSpec) -> RedisLayout:
    tls = (
        TlsFiles(f"{TLS_DIR}/tls.crt", f"{TLS_DIR}/tls.key", f"{TLS_DIR}/ca.crt")
        if spec.tls
        else None
    )
    return RedisLayout(
        bind="0.0.0.0",
        port=PORT,
        data_dir=DATA_DIR,
        acl_file=f"{AUTH_DIR}/{ACL_KEY}",
        tls=tls,
        unix_socket=SOCKET,
    )


def render_redis_conf(spec: RedisSpec, layout: RedisLayout) -> str:
    """redis.conf for the spec (works for Redis >= 7.0 and Valkey). Holds no secret: the
    password is in the ACL file, which only holds its SHA-256."""
    lines = [
        "# Rendered by swarmstack from the session store spec. No secret here: the ACL",
        "# file (a mounted Secret) holds the password's SHA-256 only.",
        f"bind {layout.bind}",
        "protected-mode yes",
    ]
    if layout.tls is not None:
        lines += [
            "port 0",
            f"tls-port {layout.port}",
            f"tls-cert-file {layout.tls.cert}",
            f"tls-key-file {layout.tls.key}",
            f"tls-ca-cert-file {layout.tls.ca}",
            # Clients authenticate with the password, not with certificates.
            "tls-auth-clients no",
            'tls-protocols "TLSv1.2 TLSv1.3"',
        ]
    else:
        lines.append(f"port {layout.port}")
    if layout.unix_socket is not None:
        lines += [f"unixsocket {layout.unix_socket}", "unixsocketperm 770"]
    if layout.acl_file is not None:
        lines.append(f"aclfile {layout.acl_file}")
    lines += [
        f"dir {layout.data_dir}",
        f"appendonly {'yes' if spec.appendonly else 'no'}",
        f"appendfsync {spec.appendfsync}",
        "aof-use-rdb-preamble yes",
        # AOF is the persistence; no RDB snapshots besides the AOF rewrite's preamble.
        'save ""',
        f"maxmemory {maxmemory_bytes(spec)}",
        f"maxmemory-policy {spec.maxmemory_policy}",
        "tcp-keepalive 60",
        "timeout 0",
        "daemonize no",
        'logfile ""',
        "loglevel notice",
    ]
    return "\n".join(lines) + "\n"


def render_acl(password: str) -> str:
    """The ACL file: the default user, enabled, known by its password's SHA-256 only."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    return f"user default on #{digest} ~* &* +@all\n"


def render_tls_reloader(
    layout: RedisLayout, *, cli: str, password_file: str, interval_s: int
) -> str:
    """The reloader sidecar's script (POSIX sh). `sh script now` applies once and exits."""
    if layout.tls is None or layout.unix_socket is None:
        raise ValueError("the TLS reloader needs TLS files and a unix socket")
    tls = layout.tls
    return f"""#!/bin/sh
# Rendered by swarmstack: re-applies renewed TLS files to the running server (setting a
# tls-*-file to its current value re-reads the files).
set -u
CERT={tls.cert}
KEY={tls.key}
CA={tls.ca}
apply() {{
  out="$(REDISCLI_AUTH="$(cat {password_file})" {cli} -s {layout.unix_socket} \\
    CONFIG SET tls-cert-file "$CERT" tls-key-file "$KEY" tls-ca-cert-file "$CA")"
  echo "tls reload: $out"
  [ "$out" = OK ]
}}
if [ "${{1:-}}" = now ]; then apply; exit $?; fi
last="$(cat "$CERT" "$KEY" "$CA" | cksum)"
while :; do
  sleep {interval_s}
  current="$(cat "$CERT" "$KEY" "$CA" | cksum)"
  if [ "$current" != "$last" ] && apply; then last="$current"; fi
done
"""


# --------------------------------------------------------------------------- pods


def selector_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": NAME}


def labels(spec: RedisSpec, cost_labels: CostLabels) -> dict[str, str]:
    return {
        **selector_labels(),
        **cost_labels.as_labels(),
        "app.kubernetes.io/component": "session-store",
        "app.kubernetes.io/part-of": "swarmstack",
        "swarmstack.io/engine": spec.engine,
    }


_CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
}


def _ping_probe(cli: str, period_s: int, failures: int) -> dict[str, Any]:
    ping = f'REDISCLI_AUTH="$(cat {AUTH_DIR}/{PASSWORD_KEY})" {cli} -s {SOCKET} ping'
    return {
        "exec": {"command": ["sh", "-c", f"{ping} | grep -qx PONG"]},
        "periodSeconds": period_s,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def exporter_passwords(password: str) -> str:
    """redis_exporter's password file: the socket URI it dials -> the password."""
    return json.dumps({EXPORTER_ADDR: password})


def pod_template(
    spec: RedisSpec, cost_labels: CostLabels, *, auth_secret: str, tls_secret: str | None
) -> dict[str, Any]:
    """The session store's pod (wire form): server, TLS reloader, exporter."""
    layout = cluster_layout(spec)
    server_bin, cli = BINARIES[spec.engine]
    conf = render_redis_conf(spec, layout)
    mounts = [
        {"name": "data", "mountPath": DATA_DIR},
        {"name": "config", "mountPath": CONF_DIR, "readOnly": True},
        {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True},
        {"name": "run", "mountPath": "/run/redis"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": f"{NAME}-config"}},
        {"name": "auth", "secret": {"secretName": auth_secret, "defaultMode": 0o440}},
        {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
    ]
    annotations = {"swarmstack.io/config-sha256": hashlib.sha256(conf.encode()).hexdigest()}
    containers: list[dict[str, Any]] = []
    server: dict[str, Any] = {
        "name": "server",
        "image": image(spec),
        "imagePullPolicy": "IfNotPresent",
        "command": [server_bin, f"{CONF_DIR}/{CONF_FILE}"],
        "ports": [{"name": "redis", "containerPort": PORT, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": spec.cpu, "memory": f"{spec.memory_gib}Gi"},
            "limits": {"memory": f"{spec.memory_gib}Gi"},
        },
        # Loading a large AOF takes a while: PING answers LOADING until it is done.
        "startupProbe": _ping_probe(cli, 5, 120),
        "readinessProbe": _ping_probe(cli, 10, 3),
        "livenessProbe": {
            "tcpSocket": {"port": "redis"},
            "periodSeconds": 15,
            "timeoutSeconds": 5,
            "failureThreshold": 4,
        },
        "securityContext": _CONTAINER_SECURITY,
        "volumeMounts": list(mounts),
    }
    containers.append(server)
    if tls_secret is not None:
        volumes.append({"name": "tls", "secret": {"secretName": tls_secret, "defaultMode": 0o440}})
        server["volumeMounts"].append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
        reloader = render_tls_reloader(
            layout,
            cli=cli,
            password_file=f"{AUTH_DIR}/{PASSWORD_KEY}",
            interval_s=TLS_RELOAD_INTERVAL_S,
        )
        annotations["swarmstack.io/reloader-sha256"] = hashlib.sha256(reloader.encode()).hexdigest()
        containers.append(
            {
                "name": "tls-reloader",
                "image": image(spec),
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", f"{CONF_DIR}/{RELOADER_FILE}"],
                # The reloader is useful while it can reach the server over the socket.
                "readinessProbe": _ping_probe(cli, 30, 3),
                "livenessProbe": _ping_probe(cli, 30, 4),
                "resources": {
                    "requests": {"cpu": "10m", "memory": "16Mi"},
                    "limits": {"memory": "32Mi"},
                },
                "securityContext": _CONTAINER_SECURITY,
                "volumeMounts": [
                    {"name": "config", "mountPath": CONF_DIR, "readOnly": True},
                    {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True},
                    {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
                    {"name": "run", "mountPath": "/run/redis"},
                ],
            }
        )
    containers.append(
        {
            "name": "exporter",
            "image": spec.exporter_image.reference,
            "imagePullPolicy": "IfNotPresent",
            # The password is a file of the mounted auth Secret, never an environment value.
            "args": [
                f"--redis.addr={EXPORTER_ADDR}",
                f"--redis.password-file={AUTH_DIR}/{EXPORTER_PASSWORDS_KEY}",
            ],
            "ports": [{"name": "metrics", "containerPort": EXPORTER_PORT, "protocol": "TCP"}],
            "resources": {
                "requests": {"cpu": "20m", "memory": "32Mi"},
                "limits": {"memory": "64Mi"},
            },
            "readinessProbe": {"httpGet": {"path": "/health", "port": "metrics"}},
            "livenessProbe": {"httpGet": {"path": "/health", "port": "metrics"}},
            "securityContext": _CONTAINER_SECURITY,
            "volumeMounts": [
                {"name": "run", "mountPath": "/run/redis"},
                {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True},
            ],
        }
    )
    return {
        "metadata": {"labels": labels(spec, cost_labels), "annotations": annotations},
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 30,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS,
                "runAsGroup": RUN_AS,
                "fsGroup": RUN_AS,
                "fsGroupChangePolicy": "OnRootMismatch",
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": containers,
            "volumes": volumes,
        },
    }


def statefulset_spec(
    spec: RedisSpec, cost_labels: CostLabels, *, auth_secret: str, tls_secret: str | None
) -> dict[str, Any]:
    return {
        "replicas": 1,
        "serviceName": f"{NAME}-headless",
        "selector": {"matchLabels": selector_labels()},
        "podManagementPolicy": "OrderedReady",
        "updateStrategy": {"type": "RollingUpdate"},
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
        "template": pod_template(spec, cost_labels, auth_secret=auth_secret, tls_secret=tls_secret),
        "volumeClaimTemplates": [
            {
                "metadata": {"name": "data", "labels": cost_labels.as_labels()},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": DEFAULT_STORAGE_CLASS,
                    "resources": {"requests": {"storage": f"{spec.storage_gib}Gi"}},
                },
            }
        ],
    }


# --------------------------------------------------------------------------- contract


@dataclass(frozen=True)
class SecretKeyRef:
    """A key of a Kubernetes Secret in the client's namespace (never its value)."""

    secret: str
    key: str


@dataclass(frozen=True)
class SecretFile:
    """A Secret key a client pod mounts as a file at `path`."""

    ref: SecretKeyRef
    path: str


@dataclass(frozen=True)
class SessionStoreConnection:
    """What a client needs to reach the session store, whatever the mode."""

    mode: Literal["inCluster", "elasticache"]
    host: pulumi.Input[str]
    port: int
    tls: bool
    auth: Literal["password"]
    password: SecretKeyRef
    # None: the server's certificate chains to a public CA (ElastiCache), or no TLS.
    ca: SecretKeyRef | None


def session_store_files(conn: SessionStoreConnection) -> list[SecretFile]:
    files = [SecretFile(conn.password, CLIENT_PASSWORD_PATH)]
    if conn.ca is not None:
        files.append(SecretFile(conn.ca, CLIENT_CA_PATH))
    return files


def session_store_env(conn: SessionStoreConnection) -> dict[str, pulumi.Input[str]]:
    """The agent worker's variables (images/agent-worker/agent_worker/config.py)."""
    scheme = "rediss" if conn.tls else "redis"
    url: pulumi.Input[str] = (
        f"{scheme}://{conn.host}:{conn.port}/0"
        if isinstance(conn.host, str)
        else pulumi.Output.concat(f"{scheme}://", conn.host, f":{conn.port}/0")
    )
    env: dict[str, pulumi.Input[str]] = {
        "REDIS_URL": url,
        "REDIS_PASSWORD_FILE": CLIENT_PASSWORD_PATH,
    }
    if conn.ca is not None:
        env["REDIS_CA_FILE"] = CLIENT_CA_PATH
    return env


# --------------------------------------------------------------------------- component


@dataclass(frozen=True)
class SessionStoreArgs:
    spec: RedisSpec
    namespace_name: str  # where the store runs (swarmstack-data)
    client_namespace: str  # where agents run: gets the client Secret
    cost_labels: CostLabels
    # A Pulumi secret (config key redisPassword); ElastiCache takes it as its auth token
    # (16-128 printable characters, no spaces, quotes, @ or /).
    password: pulumi.Input[str]
    issuer: IssuerRef | None = None  # cert-manager issuer (inCluster with tls)
    network: ManagedNetwork | None = None  # elasticache only


CLIENT_SECRET = f"{NAME}-client"


class SessionStore(pulumi.ComponentResource):
    """The session store: in-cluster StatefulSet or ElastiCache, and its connection."""

    connection: SessionStoreConnection
    endpoint: pulumi.Output[str]

    def __init__(
        self, name: str, args: SessionStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        spec = args.spec
        problems = redis_problems(spec)
        if problems:
            raise ValueError("; ".join(f"{path}: {message}" for path, message in problems))
        if spec.mode == "inCluster" and spec.tls and args.issuer is None:
            raise ValueError("redis.tls: the in-cluster session store needs a cert-manager issuer")
        if spec.mode == "elasticache" and args.network is None:
            raise ValueError("redis.mode: elasticache needs the VPC facts (network)")
        super().__init__("swarmstack:data:SessionStore", name, None, opts)
        self._name = name
        self._args = args
        secret_password = pulumi.Output.secret(args.password)
        k8s.core.v1.Secret(
            f"{name}-client",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=CLIENT_SECRET,
                namespace=args.client_namespace,
                labels=labels(spec, args.cost_labels),
            ),
            type="Opaque",
            string_data={PASSWORD_KEY: secret_password},
            opts=pulumi.ResourceOptions(parent=self),
        )
        if spec.mode == "inCluster":
            host: pulumi.Input[str] = f"{NAME}.{args.namespace_name}.svc.cluster.local"
            self._in_cluster(secret_password)
            ca = SecretKeyRef(CA_BUNDLE_SECRET, CA_BUNDLE_KEY) if spec.tls else None
        else:
            assert args.network is not None
            host = self._elasticache(args.network, secret_password)
            ca = None
        self.connection = SessionStoreConnection(
            mode=spec.mode,
            host=host,
            port=PORT,
            tls=spec.tls,
            auth="password",
            password=SecretKeyRef(CLIENT_SECRET, PASSWORD_KEY),
            ca=ca,
        )
        self.endpoint = pulumi.Output.concat(
            "rediss://" if spec.tls else "redis://", host, f":{PORT}/0"
        )
        self.register_outputs(
            {
                "endpoint": self.endpoint,
                "mode": spec.mode,
                "passwordSecret": f"{args.client_namespace}/{CLIENT_SECRET}",
            }
        )

    def _in_cluster(self, password: pulumi.Output[str]) -> None:
        args, spec, name = self._args, self._args.spec, self._name
        ns = args.namespace_name
        tags = labels(spec, args.cost_labels)
        child = pulumi.ResourceOptions(parent=self)

        def meta(resource: str) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=resource, namespace=ns, labels=tags)

        layout = cluster_layout(spec)
        _, cli = BINARIES[spec.engine]
        data = {CONF_FILE: render_redis_conf(spec, layout)}
        if layout.tls is not None:
            data[RELOADER_FILE] = render_tls_reloader(
                layout,
                cli=cli,
                password_file=f"{AUTH_DIR}/{PASSWORD_KEY}",
                interval_s=TLS_RELOAD_INTERVAL_S,
            )
        config = k8s.core.v1.ConfigMap(
            f"{name}-config", metadata=meta(f"{NAME}-config"), data=data, opts=child
        )
        auth_secret = f"{NAME}-auth"
        auth = k8s.core.v1.Secret(
            f"{name}-auth",
            metadata=meta(auth_secret),
            type="Opaque",
            string_data=password.apply(
                lambda p: {
                    PASSWORD_KEY: p,
                    ACL_KEY: render_acl(p),
                    EXPORTER_PASSWORDS_KEY: exporter_passwords(p),
                }
            ),
            opts=child,
        )
        depends: list[pulumi.Resource] = [config, auth]
        tls_secret: str | None = None
        if spec.tls:
            assert args.issuer is not None
            tls_secret = f"{NAME}-tls"
            depends.append(
                store_certificate(
                    f"{name}-certificate",
                    name=NAME,
                    headless=f"{NAME}-headless",
                    namespace=ns,
                    issuer=args.issuer,
                    secret_labels=args.cost_labels.as_labels(),
                    labels=tags,
                    opts=child,
                )
            )
        ports = [
            {"name": "redis", "port": PORT, "targetPort": "redis", "protocol": "TCP"},
            {"name": "metrics", "port": EXPORTER_PORT, "targetPort": "metrics", "protocol": "TCP"},
        ]
        declare_stateful_store(
            name,
            resource=NAME,
            meta=meta,
            selector=selector_labels(),
            ports=ports,
            statefulset_spec=statefulset_spec(
                spec, args.cost_labels, auth_secret=auth_secret, tls_secret=tls_secret
            ),
            parent=self,
            depends_on=depends,
        )

    def _elasticache(
        self, network: ManagedNetwork, password: pulumi.Output[str]
    ) -> pulumi.Output[str]:
        args, spec, name = self._args, self._args.spec, self._name
        ec = spec.elasticache
        tags = aws_tags(args.cost_labels.as_labels(), component="session-store")
        child = pulumi.ResourceOptions(parent=self)
        subnets = aws.elasticache.SubnetGroup(
            f"{name}-subnets",
            description="Private subnets of the session store",
            subnet_ids=network.private_subnet_ids,
            tags=tags,
            opts=child,
        )
        group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=network.vpc_id,
            description="Session store: Redis protocol from the cluster's nodes only",
            tags=tags,
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-from-nodes",
            security_group_id=group.id,
            description="Redis (TLS) from the EKS nodes",
            ip_protocol="tcp",
            from_port=PORT,
            to_port=PORT,
            referenced_security_group_id=network.node_security_group_id,
            tags=tags,
            opts=child,
        )
        parameters = aws.elasticache.ParameterGroup(
            f"{name}-params",
            # Named, so the replication group (and the policy pack) can refer to it.
            name=f"{name}-params",
            family=ELASTICACHE_VERSIONS[spec.engine][spec.version],
            description="Session store: never evict sessions",
            parameters=[
                aws.elasticache.ParameterGroupParameterArgs(
                    name="maxmemory-policy", value=spec.maxmemory_policy
                )
            ],
            tags=tags,
            opts=child,
        )
        replication = aws.elasticache.ReplicationGroup(
            f"{name}-replication-group",
            description="Agent session store",
            engine=spec.engine,
            engine_version=spec.version,
            node_type=ec.node_type,
            num_cache_clusters=ec.nodes,
            cluster_mode="disabled",
            automatic_failover_enabled=True,
            multi_az_enabled=True,
            port=PORT,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            at_rest_encryption_enabled=True,
            kms_key_id=network.kms_key_arn,
            auth_token=password,
            parameter_group_name=parameters.name,
            subnet_group_name=subnets.name,
            security_group_ids=[group.id],
            snapshot_retention_limit=ec.snapshot_retention_days,
            snapshot_window=ec.snapshot_window,
            maintenance_window=ec.maintenance_window,
            auto_minor_version_upgrade=True,
            apply_immediately=False,
            tags=tags,
            opts=child,
        )
        # Known once AWS created the group (absent in a plan).
        return replication.primary_endpoint_address.apply(lambda address: address or "")
