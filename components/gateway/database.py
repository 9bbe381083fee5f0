"""The gateway's Postgres: the keys, budgets and spend LiteLLM keeps (through Prisma).

`gateway.database.mode: inCluster` (this module) or `rds` (components/gateway/rds.py, the
production option). The pilot runs it in the cluster, next to the gateway in the agents'
namespace, as one StatefulSet of the official image on an encrypted gp3 volume (the class
components/compute/cluster.py declares). Why not RDS: the pilot keeps every store of the
agents in the cluster (Kafka, Valkey, Qdrant) so one `pulumi up` builds it without a
database subnet group, and the mesh already gives what an RDS security group would: STRICT
mTLS, and an AuthorizationPolicy that admits only the gateway's service account on the
database port (components/gateway/proxy.py), on top of the namespace's default-deny
NetworkPolicy. What is lost without RDS is managed backups and failover: the data is the
keys' spend counters and logs, and the keys themselves are re-registered by the key Job on
every deploy, so a lost volume costs the spend history, not the agents' access.

A postgres_exporter sidecar serves the server's metrics on 9187 (read through Istio's
merged metrics port, like every meshed pod), logged in as the same user with the same
password file.

The server runs restricted: the image's `postgres` user (uid 999), a read-only root
filesystem with emptyDirs for its socket directory and /tmp, the password from a mounted
Secret file (`POSTGRES_PASSWORD_FILE`), never from the environment.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from components.gateway.spec import GatewayDatabase
from components.specs import CostLabels
from components.traffic.istio_chart import merged_metrics_container_port

NAME = "model-gateway-db"
PORT = 5432
USER = "litellm"
DATABASE = "litellm"
RUN_AS = 999  # the official image's postgres user and group
DATA_DIR = "/var/lib/postgresql/data"
PGDATA = f"{DATA_DIR}/pgdata"  # a subfolder: the volume's root holds lost+found
PASSWORD_DIR = "/etc/postgres-auth"
PASSWORD_KEY = "password"
STORAGE_CLASS = "gp3"  # the encrypted class components/compute/cluster.py declares
COMPONENT = "gateway-database"
EXPORTER_PORT = 9187


_CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
}


def selector_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": COMPONENT}


def host(namespace: str) -> str:
    return f"{NAME}.{namespace}.svc.cluster.local"


def _ready_probe(period_s: int, failures: int) -> dict[str, Any]:
    return {
        "exec": {"command": ["pg_isready", "-h", "127.0.0.1", "-U", USER, "-d", DATABASE]},
        "periodSeconds": period_s,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def pod_template(
    spec: GatewayDatabase, cost_labels: CostLabels, *, password_secret: str
) -> dict[str, Any]:
    memory = f"{spec.memory_mib}Mi"
    return {
        "metadata": {
            "labels": {
                **cost_labels.as_labels(),
                **selector_labels(),
                "app.kubernetes.io/part-of": "swarmstack",
            },
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(EXPORTER_PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            "serviceAccountName": NAME,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 60,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS,
                "runAsGroup": RUN_AS,
                "fsGroup": RUN_AS,
                "fsGroupChangePolicy": "OnRootMismatch",
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "postgres",
                    "image": spec.image.reference,
                    "imagePullPolicy": "IfNotPresent",
                    "ports": [{"name": "postgres", "containerPort": PORT, "protocol": "TCP"}],
                    "env": [
                        {"name": "POSTGRES_USER", "value": USER},
                        {"name": "POSTGRES_DB", "value": DATABASE},
                        {
                            "name": "POSTGRES_PASSWORD_FILE",
                            "value": f"{PASSWORD_DIR}/{PASSWORD_KEY}",
                        },
                        {"name": "PGDATA", "value": PGDATA},
                    ],
                    "resources": {
                        "requests": {"cpu": "250m", "memory": memory},
                        "limits": {"memory": memory},
                    },
                    "startupProbe": _ready_probe(5, 60),
                    "readinessProbe": _ready_probe(10, 3),
                    "livenessProbe": _ready_probe(20, 6),
                    "securityContext": _CONTAINER_SECURITY,
                    "volumeMounts": [
                        {"name": "data", "mountPath": DATA_DIR},
                        {"name": "run", "mountPath": "/var/run/postgresql"},
                        {"name": "tmp", "mountPath": "/tmp"},
                        {"name": "auth", "mountPath": PASSWORD_DIR, "readOnly": True},
                    ],
                },
                {
                    "name": "exporter",
                    "image": spec.exporter_image.reference,
                    "imagePullPolicy": "IfNotPresent",
                    "env": [
                        {
                            "name": "DATA_SOURCE_URI",
                            "value": f"127.0.0.1:{PORT}/{DATABASE}?sslmode=disable",
                        },
                        {"name": "DATA_SOURCE_USER", "value": USER},
                        {
                            "name": "DATA_SOURCE_PASS_FILE",
                            "value": f"{PASSWORD_DIR}/{PASSWORD_KEY}",
                        },
                    ],
                    "ports": [
                        {"name": "metrics", "containerPort": EXPORTER_PORT, "protocol": "TCP"},
                        merged_metrics_container_port(),
                    ],
                    "resources": {
                        "requests": {"cpu": "20m", "memory": "32Mi"},
                        "limits": {"memory": "64Mi"},
                    },
                    "readinessProbe": {"httpGet": {"path": "/", "port": "metrics"}},
                    "livenessProbe": {"httpGet": {"path": "/", "port": "metrics"}},
                    "securityContext": _CONTAINER_SECURITY,
                    "volumeMounts": [{"name": "auth", "mountPath": PASSWORD_DIR, "readOnly": True}],
                },
            ],
            "volumes": [
                {"name": "run", "emptyDir": {"sizeLimit": "16Mi"}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                {
                    "name": "auth",
                    "secret": {
                        "secretName": password_secret,
                        "defaultMode": 0o440,
                        "items": [{"key": PASSWORD_KEY, "path": PASSWORD_KEY}],
                    },
                },
            ],
        },
    }


def statefulset_spec(
    spec: GatewayDatabase, cost_labels: CostLabels, *, password_secret: str
) -> dict[str, Any]:
    return {
        "replicas": 1,
        "serviceName": NAME,
        "selector": {"matchLabels": selector_labels()},
        "updateStrategy": {"type": "RollingUpdate"},
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
        "template": pod_template(spec, cost_labels, password_secret=password_secret),
        "volumeClaimTemplates": [
            {
                "metadata": {"name": "data", "labels": cost_labels.as_labels()},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": STORAGE_CLASS,
                    "resources": {"requests": {"storage": f"{spec.storage_gib}Gi"}},
                },
            }
        ],
    }


def service_spec() -> dict[str, Any]:
    return {
        "type": "ClusterIP",
        "selector": selector_labels(),
        "ports": [
            {
                "name": "tcp-postgres",
                "port": PORT,
                "targetPort": "postgres",
                "protocol": "TCP",
                "appProtocol": "tcp",
            }
        ],
    }


def database_url(password: str, namespace: str) -> str:
    """The URL the proxy connects with (the password URL-quoted). A secret: it lives only
    in a Kubernetes Secret's value. No TLS from Prisma: the connection runs inside the
    mesh's mTLS between the two sidecars."""
    return (
        f"postgresql://{USER}:{quote(password, safe='')}@{host(namespace)}:{PORT}/{DATABASE}"
        "?sslmode=disable"
    )
