"""The agents' vector store: Qdrant as a StatefulSet declared here, in cluster mode.

Every setting is in the plan: the rendered `config.yaml` (a ConfigMap, no secret in it),
the API key and the read-only key as env from a Secret (`QDRANT__SERVICE__API_KEY`,
`QDRANT__SERVICE__READ_ONLY_API_KEY`: Qdrant merges `QDRANT__` variables over its config
files), a PersistentVolumeClaim per replica on the encrypted gp3 class, the p2p port 6335
for the Raft consensus between peers, TLS from a cert-manager Certificate on the HTTP,
gRPC and p2p ports, a PodDisruptionBudget and a restricted pod (the image's
`-unprivileged` variant runs as uid 1000).

Renewed certificates: Qdrant re-reads its HTTPS certificate every `tls.cert_ttl` seconds
by itself; gRPC and p2p keep theirs until the pod restarts (a rolling restart, one pod at
a time under the PDB, picks it up; the 90-day certificate is renewed 30 days early).

Snapshots: Qdrant's own S3 storage takes static keys only, so a CronJob asks every peer
for a snapshot of each collection (POST /collections/<c>/snapshots), downloads it,
uploads it with the AWS CLI through an IRSA role that may only PutObject under the
configured prefix, and deletes it from the peer.

Collections: `collection_body` renders the body of Qdrant's create-collection call
(`PUT /collections/<name>`) from the spec's shards and replication factor.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
import yaml
from pydantic import Field

from components.compute.irsa import ROLE_ANNOTATION, Irsa, irsa_role
from components.compute.nodes import aws_tags
from components.data.certs import (
    CA_BUNDLE_KEY,
    CA_BUNDLE_SECRET,
    IssuerRef,
    store_certificate,
)
from components.data.redis import DEFAULT_STORAGE_CLASS, SecretFile, SecretKeyRef
from components.data.stateful import declare_stateful_store
from components.specs import CostLabels, ImageRef, Spec

QDRANT_VERSION = "v1.19.0"
IMAGE_REPOSITORY = "docker.io/qdrant/qdrant"
AWS_CLI_REPOSITORY = "docker.io/amazon/aws-cli"
AWS_CLI_TAG = "2.37.5"
NAME = "vector-store"
HEADLESS = f"{NAME}-headless"
HTTP_PORT = 6333
GRPC_PORT = 6334
P2P_PORT = 6335
RUN_AS = 1000  # the -unprivileged image's user
STORAGE_DIR = "/qdrant/storage"
SNAPSHOTS_DIR = "/qdrant/snapshots"
CONFIG_DIR = "/qdrant/config-rendered"
CONFIG_FILE = "config.yaml"
TLS_DIR = "/qdrant/tls"
KEYS_SECRET = f"{NAME}-api-keys"
API_KEY = "api-key"
READ_ONLY_KEY = "read-only-api-key"
CLIENT_SECRET = f"{NAME}-client"
SNAPSHOT_ACCOUNT = f"{NAME}-snapshots"
CERT_TTL_S = 3600

# The agent worker's collection (images/agent-worker/agent_worker/retrieval.py) and the
# size of its embeddings (agent_worker/embedder.py).
WORKER_COLLECTION = "swarm-docs"
WORKER_VECTOR_SIZE = 512

CLIENT_KEY_PATH = "/etc/swarmstack/qdrant/api-key"
CLIENT_CA_PATH = "/etc/swarmstack/qdrant/ca.crt"


class SnapshotSpec(Spec):
    """Collection snapshots uploaded to S3 by a CronJob (through IRSA)."""

    bucket: str = Field(
        pattern=r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$", description="S3 bucket name."
    )
    image: ImageRef = Field(
        default_factory=lambda: ImageRef(repository=AWS_CLI_REPOSITORY, tag=AWS_CLI_TAG),
        description="The snapshot job's image (the AWS CLI, which uploads to S3).",
    )
    prefix: str = Field(
        default="qdrant",
        pattern=r"^[A-Za-z0-9!_.*'()\-]+(/[A-Za-z0-9!_.*'()\-]+)*$",
        description="Key prefix under which snapshots are written (no leading or trailing /).",
    )
    schedule: str = Field(
        default="0 3 * * *",
        pattern=r"^(\S+\s+){4}\S+$",
        description="Cron schedule of the snapshot job (UTC).",
    )


class CollectionSpec(Spec):
    """One collection the agents use, created with these settings."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,255}$", description="Collection name.")
    vector_size: int = Field(ge=1, le=65536, description="Dimensions of its vectors.")
    distance: Literal["Cosine", "Dot", "Euclid", "Manhattan"] = Field(
        default="Cosine", description="Similarity measure."
    )


class QdrantSpec(Spec):
    """The vector store the agents retrieve from."""

    image: ImageRef = Field(
        default_factory=lambda: ImageRef(
            repository=IMAGE_REPOSITORY, tag=f"{QDRANT_VERSION}-unprivileged"
        ),
        description=f"The Qdrant image: the non-root build of {QDRANT_VERSION}, the release "
        "the rendered config was written for.",
    )
    replicas: int = Field(default=3, ge=1, le=9, description="Qdrant peers (cluster mode).")
    shards: int = Field(default=3, ge=1, le=64, description="Shards per collection.")
    replication_factor: int = Field(
        default=2, ge=1, le=9, description="Copies of each shard (at most the replicas)."
    )
    write_consistency_factor: int = Field(
        default=1, ge=1, le=9, description="Replicas that must confirm a write."
    )
    storage_gib: int = Field(default=50, ge=1, le=16000, description="Volume per peer, GiB.")
    memory_gib: int = Field(default=4, ge=1, le=512, description="Memory per peer, GiB.")
    cpu: str = Field(default="1", pattern=r"^[0-9]+(m)?$", description="CPU request per peer.")
    tls: bool = Field(default=True, description="TLS on HTTP, gRPC and p2p.")
    collections: list[CollectionSpec] = Field(
        default_factory=lambda: [
            CollectionSpec(name=WORKER_COLLECTION, vector_size=WORKER_VECTOR_SIZE)
        ],
        description="Collections the agents use (default: the worker's swarm-docs).",
    )
    snapshots: SnapshotSpec | None = Field(
        default=None, description="Snapshots to S3; unset: no snapshot job."
    )


def qdrant_problems(spec: QdrantSpec) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if spec.replication_factor > spec.replicas:
        problems.append(
            (
                "qdrant.replicationFactor",
                f"{spec.replication_factor} is above replicas ({spec.replicas}): a peer can "
                "hold only one copy of a shard; use at most the replicas",
            )
        )
    if spec.write_consistency_factor > spec.replication_factor:
        problems.append(
            (
                "qdrant.writeConsistencyFactor",
                f"{spec.write_consistency_factor} is above replicationFactor "
                f"({spec.replication_factor}): no write could ever be confirmed",
            )
        )
    names = [c.name for c in spec.collections]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(("qdrant.collections", f"collection {dup!r} is listed twice"))
    return problems


# --------------------------------------------------------------------------- rendering


def render_config(spec: QdrantSpec) -> dict[str, Any]:
    """Qdrant's config.yaml (keys as in Qdrant's config/config.yaml); no secret in it."""
    config: dict[str, Any] = {
        "log_level": "INFO",
        "telemetry_disabled": True,
        "storage": {
            "storage_path": STORAGE_DIR,
            "snapshots_path": SNAPSHOTS_DIR,
            "on_disk_payload": True,
        },
        "service": {
            "host": "0.0.0.0",
            "http_port": HTTP_PORT,
            "grpc_port": GRPC_PORT,
            "enable_tls": spec.tls,
            "enable_cors": False,
        },
        # Cluster mode even with one peer, so adding peers later needs no migration.
        "cluster": {"enabled": True, "p2p": {"port": P2P_PORT, "enable_tls": spec.tls}},
    }
    if spec.tls:
        config["tls"] = {
            "cert": f"{TLS_DIR}/tls.crt",
            "key": f"{TLS_DIR}/tls.key",
            "ca_cert": f"{TLS_DIR}/ca.crt",
            "cert_ttl": CERT_TTL_S,
        }
    return config


def collection_body(spec: QdrantSpec, collection: CollectionSpec) -> dict[str, Any]:
    """The body of `PUT /collections/<name>` for one collection."""
    return {
        "vectors": {"size": collection.vector_size, "distance": collection.distance},
        "shard_number": spec.shards,
        "replication_factor": spec.replication_factor,
        "write_consistency_factor": spec.write_consistency_factor,
        "on_disk_payload": True,
    }


def peer_uri(ordinal: int, namespace: str, tls: bool) -> str:
    scheme = "https" if tls else "http"
    return f"{scheme}://{NAME}-{ordinal}.{HEADLESS}.{namespace}.svc.cluster.local:{P2P_PORT}"


def start_script(namespace: str, tls: bool) -> str:
    """Peer 0 starts the cluster; every other peer bootstraps from peer 0."""
    uri = peer_uri(0, namespace, tls).replace(f"{NAME}-0.", f"{NAME}-$ordinal.")
    return (
        "set -eu\n"
        'ordinal="${HOSTNAME##*-}"\n'
        f'args="--config-path {CONFIG_DIR}/{CONFIG_FILE} --uri {uri}"\n'
        'if [ "$ordinal" != 0 ]; then\n'
        f'  args="$args --bootstrap {peer_uri(0, namespace, tls)}"\n'
        "fi\n"
        "exec ./entrypoint.sh $args\n"
    )


def snapshot_script(spec: QdrantSpec, namespace: str) -> str:
    """The snapshot job: every peer, every collection -> S3 (POSIX sh, curl, aws)."""
    assert spec.snapshots is not None
    snap = spec.snapshots
    scheme = "https" if spec.tls else "http"
    ca = f"--cacert {TLS_DIR}/ca.crt " if spec.tls else ""
    peers = " ".join(
        f"{NAME}-{i}.{HEADLESS}.{namespace}.svc.cluster.local" for i in range(spec.replicas)
    )
    collections = " ".join(c.name for c in spec.collections)
    return f"""set -eu
KEY="$(cat /etc/qdrant-keys/{API_KEY})"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
q() {{ curl -fsS {ca}-H "api-key: $KEY" "$@"; }}
for peer in {peers}; do
  for c in {collections}; do
    base="{scheme}://$peer:{HTTP_PORT}/collections/$c/snapshots"
    name="$(q -X POST "$base?wait=true" | sed -n 's/.*"name":"\\([^"]*\\)".*/\\1/p')"
    [ -n "$name" ] || {{ echo "no snapshot name from $peer for $c" >&2; exit 1; }}
    q -o "/tmp/$name" "$base/$name"
    aws s3 cp --only-show-errors "/tmp/$name" \\
      "s3://{snap.bucket}/{snap.prefix}/$STAMP/${{peer%%.*}}/$c/$name"
    rm -f "/tmp/$name"
    q -X DELETE "$base/$name" >/dev/null
  done
done
"""


def snapshot_put_policy(snap: SnapshotSpec) -> str:
    """The snapshot role's only permission: PutObject under the configured prefix."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["s3:PutObject"],
                    "Resource": f"arn:aws:s3:::{snap.bucket}/{snap.prefix}/*",
                }
            ],
        },
        sort_keys=True,
    )


def selector_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": NAME}


def labels(cost_labels: CostLabels) -> dict[str, str]:
    return {
        **selector_labels(),
        **cost_labels.as_labels(),
        "app.kubernetes.io/component": "vector-store",
        "app.kubernetes.io/part-of": "swarmstack",
    }


_CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
}
_POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS,
    "runAsGroup": RUN_AS,
    "fsGroup": RUN_AS,
    "fsGroupChangePolicy": "OnRootMismatch",
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _key_env(name: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": KEYS_SECRET, "key": key}}}


def statefulset_spec(spec: QdrantSpec, namespace: str, cost_labels: CostLabels) -> dict[str, Any]:
    config_text = yaml.safe_dump(render_config(spec), sort_keys=True)
    scheme = "HTTPS" if spec.tls else "HTTP"
    mounts: list[dict[str, Any]] = [
        {"name": "storage", "mountPath": STORAGE_DIR},
        {"name": "snapshots", "mountPath": SNAPSHOTS_DIR},
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": f"{NAME}-config"}},
        {"name": "snapshots", "emptyDir": {"sizeLimit": f"{spec.storage_gib}Gi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    if spec.tls:
        mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
        volumes.append({"name": "tls", "secret": {"secretName": f"{NAME}-tls"}})

    def probe(path: str, period_s: int, failures: int) -> dict[str, Any]:
        # /readyz and /livez answer without an API key.
        return {
            "httpGet": {"path": path, "port": "http", "scheme": scheme},
            "periodSeconds": period_s,
            "timeoutSeconds": 5,
            "failureThreshold": failures,
        }

    container: dict[str, Any] = {
        "name": "qdrant",
        "image": spec.image.reference,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", start_script(namespace, spec.tls)],
        "env": [
            # The image's entrypoint marks a finished start in this file; the root
            # filesystem is read-only, so it lives on the volume.
            {"name": "QDRANT_INIT_FILE_PATH", "value": f"{STORAGE_DIR}/.qdrant-initialized"},
            _key_env("QDRANT__SERVICE__API_KEY", API_KEY),
            _key_env("QDRANT__SERVICE__READ_ONLY_API_KEY", READ_ONLY_KEY),
        ],
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "p2p", "containerPort": P2P_PORT, "protocol": "TCP"},
        ],
        "resources": {
            "requests": {"cpu": spec.cpu, "memory": f"{spec.memory_gib}Gi"},
            "limits": {"memory": f"{spec.memory_gib}Gi"},
        },
        "startupProbe": probe("/readyz", 5, 120),
        "readinessProbe": probe("/readyz", 10, 3),
        "livenessProbe": probe("/livez", 15, 4),
        "securityContext": _CONTAINER_SECURITY,
        "volumeMounts": mounts,
    }
    return {
        "replicas": spec.replicas,
        "serviceName": HEADLESS,
        "selector": {"matchLabels": selector_labels()},
        # Peers join through peer 0's p2p port; they may start together once it exists.
        "podManagementPolicy": "Parallel",
        "updateStrategy": {"type": "RollingUpdate"},
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
        "template": {
            "metadata": {
                "labels": labels(cost_labels),
                "annotations": {
                    "swarmstack.io/config-sha256": hashlib.sha256(config_text.encode()).hexdigest()
                },
            },
            "spec": {
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "terminationGracePeriodSeconds": 60,
                "securityContext": _POD_SECURITY,
                "affinity": {
                    "podAntiAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {
                                "weight": 100,
                                "podAffinityTerm": {
                                    "topologyKey": "topology.kubernetes.io/zone",
                                    "labelSelector": {"matchLabels": selector_labels()},
                                },
                            }
                        ]
                    }
                },
                "containers": [container],
                "volumes": volumes,
            },
        },
        "volumeClaimTemplates": [
            {
                "metadata": {"name": "storage", "labels": cost_labels.as_labels()},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": DEFAULT_STORAGE_CLASS,
                    "resources": {"requests": {"storage": f"{spec.storage_gib}Gi"}},
                },
            }
        ],
    }


def snapshot_cronjob_spec(
    spec: QdrantSpec, namespace: str, cost_labels: CostLabels
) -> dict[str, Any]:
    assert spec.snapshots is not None
    mounts: list[dict[str, Any]] = [
        {"name": "keys", "mountPath": "/etc/qdrant-keys", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[dict[str, Any]] = [
        {
            "name": "keys",
            "secret": {"secretName": KEYS_SECRET, "items": [{"key": API_KEY, "path": API_KEY}]},
        },
        {"name": "tmp", "emptyDir": {"sizeLimit": f"{spec.storage_gib}Gi"}},
    ]
    if spec.tls:
        mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
        volumes.append(
            {
                "name": "tls",
                "secret": {
                    "secretName": f"{NAME}-tls",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                },
            }
        )
    pod_labels = {**cost_labels.as_labels(), "app.kubernetes.io/name": SNAPSHOT_ACCOUNT}
    return {
        "schedule": spec.snapshots.schedule,
        "timeZone": "Etc/UTC",
        "concurrencyPolicy": "Forbid",
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {
            "spec": {
                "backoffLimit": 2,
                "activeDeadlineSeconds": 3600,
                "template": {
                    "metadata": {"labels": pod_labels},
                    "spec": {
                        "serviceAccountName": SNAPSHOT_ACCOUNT,
                        # IRSA's web identity token is its own projected volume.
                        "automountServiceAccountToken": False,
                        "restartPolicy": "Never",
                        "securityContext": _POD_SECURITY,
                        "containers": [
                            {
                                "name": "snapshot",
                                "image": spec.snapshots.image.reference,
                                "imagePullPolicy": "IfNotPresent",
                                "command": ["sh", "-c", snapshot_script(spec, namespace)],
                                "env": [{"name": "HOME", "value": "/tmp"}],
                                "resources": {
                                    "requests": {"cpu": "100m", "memory": "256Mi"},
                                    "limits": {"memory": "512Mi"},
                                },
                                "securityContext": _CONTAINER_SECURITY,
                                "volumeMounts": mounts,
                            }
                        ],
                        "volumes": volumes,
                    },
                },
            }
        },
    }


# --------------------------------------------------------------------------- contract


@dataclass(frozen=True)
class VectorStoreConnection:
    url: str
    tls: bool
    auth: Literal["api-key"]
    api_key: SecretKeyRef
    read_only_api_key: SecretKeyRef
    ca: SecretKeyRef | None


def vector_store_files(conn: VectorStoreConnection, *, read_only: bool) -> list[SecretFile]:
    key = conn.read_only_api_key if read_only else conn.api_key
    files = [SecretFile(key, CLIENT_KEY_PATH)]
    if conn.ca is not None:
        files.append(SecretFile(conn.ca, CLIENT_CA_PATH))
    return files


def vector_store_env(conn: VectorStoreConnection) -> dict[str, str]:
    """The agent worker's variables. A worker given the read-only key cannot seed the
    collection: agents that only retrieve must find it created already."""
    env = {"QDRANT_URL": conn.url, "QDRANT_API_KEY_FILE": CLIENT_KEY_PATH}
    if conn.ca is not None:
        env["QDRANT_CA_FILE"] = CLIENT_CA_PATH
    return env


# --------------------------------------------------------------------------- component


@dataclass(frozen=True)
class VectorStoreArgs:
    spec: QdrantSpec
    namespace_name: str
    client_namespace: str
    cost_labels: CostLabels
    api_key: pulumi.Input[str]  # Pulumi secret (config key qdrantApiKey)
    read_only_api_key: pulumi.Input[str]  # Pulumi secret (config key qdrantReadOnlyApiKey)
    issuer: IssuerRef | None = None
    irsa: Irsa | None = None  # needed for snapshots


class VectorStore(pulumi.ComponentResource):
    connection: VectorStoreConnection
    snapshot_role_arn: pulumi.Output[str] | None

    def __init__(
        self, name: str, args: VectorStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        spec, ns = args.spec, args.namespace_name
        problems = qdrant_problems(spec)
        if problems:
            raise ValueError("; ".join(f"{path}: {message}" for path, message in problems))
        if spec.tls and args.issuer is None:
            raise ValueError("qdrant.tls: the vector store needs a cert-manager issuer")
        super().__init__("swarmstack:data:VectorStore", name, None, opts)
        tags = labels(args.cost_labels)
        child = pulumi.ResourceOptions(parent=self)

        def meta(resource: str, namespace: str = ns, **extra: Any) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(
                name=resource, namespace=namespace, labels=tags, **extra
            )

        api_key = pulumi.Output.secret(args.api_key)
        read_only = pulumi.Output.secret(args.read_only_api_key)
        keys = pulumi.Output.all(api_key, read_only).apply(
            lambda k: {API_KEY: str(k[0]), READ_ONLY_KEY: str(k[1])}
        )
        secret = k8s.core.v1.Secret(
            f"{name}-api-keys", metadata=meta(KEYS_SECRET), type="Opaque", string_data=keys,
            opts=child,
        )  # fmt: skip
        k8s.core.v1.Secret(
            f"{name}-client",
            metadata=meta(CLIENT_SECRET, args.client_namespace),
            type="Opaque",
            string_data=keys,
            opts=child,
        )
        config = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=meta(f"{NAME}-config"),
            data={
                CONFIG_FILE: yaml.safe_dump(render_config(spec), sort_keys=True),
                **{
                    f"collection-{c.name}.json": json.dumps(
                        collection_body(spec, c), sort_keys=True
                    )
                    for c in spec.collections
                },
            },
            opts=child,
        )
        depends: list[pulumi.Resource] = [secret, config]
        if spec.tls:
            assert args.issuer is not None
            depends.append(
                store_certificate(
                    f"{name}-certificate",
                    name=NAME,
                    headless=HEADLESS,
                    namespace=ns,
                    issuer=args.issuer,
                    secret_labels=args.cost_labels.as_labels(),
                    labels=tags,
                    opts=child,
                )
            )
        ports = [
            {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
            {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP"},
        ]
        declare_stateful_store(
            name,
            resource=NAME,
            meta=meta,
            selector=selector_labels(),
            ports=ports,
            peer_ports=[{"name": "p2p", "port": P2P_PORT, "targetPort": "p2p", "protocol": "TCP"}],
            statefulset_spec=statefulset_spec(spec, ns, args.cost_labels),
            parent=self,
            depends_on=depends,
        )
        self.snapshot_role_arn = None
        if spec.snapshots is not None:
            if args.irsa is None:
                pulumi.log.warn(
                    "qdrant.snapshots: no IRSA (OIDC provider) on this cluster, so the "
                    "snapshot job that uploads to S3 is not declared",
                    self,
                )
            else:
                self.snapshot_role_arn = self._snapshots(name, args, args.irsa, meta, depends)
        scheme = "https" if spec.tls else "http"
        self.connection = VectorStoreConnection(
            url=f"{scheme}://{NAME}.{ns}.svc.cluster.local:{HTTP_PORT}",
            tls=spec.tls,
            auth="api-key",
            api_key=SecretKeyRef(CLIENT_SECRET, API_KEY),
            read_only_api_key=SecretKeyRef(CLIENT_SECRET, READ_ONLY_KEY),
            ca=SecretKeyRef(CA_BUNDLE_SECRET, CA_BUNDLE_KEY) if spec.tls else None,
        )
        self.register_outputs(
            {
                "url": self.connection.url,
                "apiKeySecret": f"{args.client_namespace}/{CLIENT_SECRET}",
                "snapshotRoleArn": self.snapshot_role_arn,
            }
        )

    def _snapshots(
        self,
        name: str,
        args: VectorStoreArgs,
        irsa: Irsa,
        meta: Any,
        depends: list[pulumi.Resource],
    ) -> pulumi.Output[str]:
        spec, ns = args.spec, args.namespace_name
        assert spec.snapshots is not None
        role = irsa_role(
            irsa,
            role_name=f"{name}-snapshots-role",
            policy_name=f"{name}-snapshots-put",
            namespace=ns,
            service_account=SNAPSHOT_ACCOUNT,
            policy=snapshot_put_policy(spec.snapshots),
            description=f"Qdrant snapshots to s3://{spec.snapshots.bucket}/{spec.snapshots.prefix}",
            tags=aws_tags(args.cost_labels.as_labels(), component="vector-store"),
            parent=self,
        )
        account = k8s.core.v1.ServiceAccount(
            f"{name}-snapshots-sa",
            metadata=meta(SNAPSHOT_ACCOUNT, annotations={ROLE_ANNOTATION: role.arn}),
            opts=pulumi.ResourceOptions(parent=self),
        )
        k8s.batch.v1.CronJob(
            f"{name}-snapshots",
            metadata=meta(SNAPSHOT_ACCOUNT),
            spec=_wire(snapshot_cronjob_spec(spec, ns, args.cost_labels)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account, *depends]),
        )
        return role.arn


def _wire(spec: dict[str, Any]) -> Any:
    return spec
