"""The model gateway: LiteLLM's proxy in the agents' namespace, between the agents and the
models.

`ModelGateway` declares, in the agents' namespace (meshed, STRICT mTLS, default-deny):

- a ConfigMap with the proxy config `render_proxy_config` renders (no secret in it: every
  credential is an `os.environ/` reference);
- the Secrets: the master key, the salt key, the database password and URL, the
  providers' API keys, and one Secret per agent type holding its key, which the agent's
  workers mount as a file. The salt key encrypts what LiteLLM stores in Postgres: changing
  it makes every stored credential unreadable, so its Secret is created once and never
  changed or deleted by a later `pulumi up` (`protect`, `retain_on_delete` and
  `ignore_changes` on its data; the config check in stacks/program.py and the pack's
  `gateway-salt-key-pinned` rule hold the rest);
- a Deployment of at least two replicas of the pinned non-root image, spread over zones
  and nodes, a PodDisruptionBudget allowing one disruption, a Service;
- probes on LiteLLM's own liveness and readiness endpoints (`/health/liveliness`,
  `/health/readiness`: the process, and its database when one is set), never `/health`,
  which calls every model, paid APIs included;
- restricted pod security: the image's `nobody` user (65534), no privilege escalation,
  all capabilities dropped, a read-only root filesystem. The image writes, at run time,
  only to /tmp and to the npm cache under its HOME (`/app/.cache/npm`, used by the Prisma
  CLI); both are emptyDirs. The Prisma engines it reads sit under `/app/.cache/prisma-python`
  in the image, so the cache folder itself is not replaced. The admin UI, prebuilt in the
  image, is turned off (`DISABLE_ADMIN_UI`);
- Postgres for keys and budgets (components/gateway/database.py says why in the cluster),
  a migration Job that applies LiteLLM's schema before the proxy starts (the replicas run
  with `DISABLE_SCHEMA_UPDATE`, so two of them never migrate at once), and a key Job that
  registers each agent type's key, budget, limits and models through the proxy's
  `/key/*` API after each deploy that changes them (components/gateway/apply_keys.py).

The gateway's metrics (`/metrics` on its API port, LiteLLM's Prometheus callback) are
scraped like the agents' and the models': through Istio's merged metrics port, by a
PodMonitor the observability builder declares.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components.gateway import database, rds
from components.gateway.keys import derive_agent_key, key_requests
from components.gateway.proxy_config import (
    DATABASE_URL_ENV,
    LIVENESS_PATH,
    MASTER_KEY_ENV,
    METRICS_PATH,
    PORT,
    READINESS_PATH,
    REDIS_HOST_ENV,
    REDIS_PASSWORD_ENV,
    REDIS_PORT_ENV,
    REDIS_SSL_ENV,
    SALT_KEY_ENV,
)
from components.gateway.spec import GatewaySpec, Provider, provider_key_env, used_providers
from components.pod_security import restricted_container, restricted_pod
from components.specs import CostLabels, Namespaces
from components.traffic.istio_chart import MERGED_METRICS_PORT, merged_metrics_container_port
from components.traffic.tenancy import (
    MODEL_PODS,
    MODEL_PORT,
    namespace_selector,
    prometheus_peer,
)

NAME = "model-gateway"
CONTAINER = "proxy"  # the proxy pod's container
COMPONENT = "model-gateway"  # app.kubernetes.io/component of the proxy pods
KEY_JOB_ACCOUNT = f"{NAME}-keys"
KEY_JOB_COMPONENT = "gateway-keys"
PORT_NAME = "http"
RUN_AS = 65534  # the image's `nobody` user and group
CONFIG_DIR = "/etc/litellm"
CONFIG_FILE = "config.yaml"
REDIS_CA_DIR = "/etc/swarmstack/redis"
REDIS_CA_FILE = f"{REDIS_CA_DIR}/ca.crt"
AGENT_KEY_DIR = "/etc/swarmstack/gateway"
AGENT_KEY_FILE = f"{AGENT_KEY_DIR}/api-key"  # where an agent's worker reads its key
AGENT_KEY_SECRET_KEY = "api-key"
MASTER_KEY_KEY = "master-key"
SALT_KEY_KEY = "salt-key"
DATABASE_URL_KEY = "database-url"
PRESTOP_SLEEP_S = 5  # endpoint removal reaches every proxy before SIGTERM
TERMINATION_GRACE_S = 60
STARTUP_PERIOD_S = 5
STARTUP_BUDGET_S = 180  # Prisma connects and the router loads before the first answer
SALT_KEY_LABEL = "swarmstack.io/gateway-salt-key"  # marks the one Secret that never changes
GATEWAY_SECRET_LABEL = "swarmstack.io/gateway-secret"

SECRET_NAMES = {
    "master": f"{NAME}-master-key",
    "salt": f"{NAME}-salt-key",
    "database": f"{NAME}-database",
    "providers": f"{NAME}-provider-keys",
}
APPLY_KEYS_SOURCE = Path(__file__).with_name("apply_keys.py")


def selector_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": COMPONENT}


def component_pods() -> dict[str, Any]:
    """The proxy's pods and its migration Job's (both reach the database and the models)."""
    return {"matchLabels": {"app.kubernetes.io/component": COMPONENT}}


def pod_labels(cost_labels: CostLabels) -> dict[str, str]:
    return {
        **cost_labels.as_labels(),
        **selector_labels(),
        "app.kubernetes.io/part-of": "swarmstack",
    }


def service_host(namespace: str) -> str:
    return f"{NAME}.{namespace}.svc.cluster.local"


def base_url(namespace: str) -> str:
    """The gateway's OpenAI-compatible API, as the agents call it."""
    return f"http://{service_host(namespace)}:{PORT}/v1"


def readiness_url(namespace: str) -> str:
    """The gateway's own readiness (no model is called): the agents' `MODEL_HEALTH_URL`."""
    return f"http://{service_host(namespace)}:{PORT}{READINESS_PATH}"


def agent_key_secret(agent: str) -> str:
    return f"{NAME}-agent-{agent}"


@dataclass(frozen=True)
class RedisAccess:
    """How the proxy reaches the session store: host, port, TLS and the Secret keys of its
    password and CA (in the agents' namespace, from the data plane's contract)."""

    host: pulumi.Input[str]
    port: int
    password_secret: str
    password_key: str
    ca_secret: str | None = None
    ca_key: str | None = None


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def proxy_environment(
    spec: GatewaySpec, redis: RedisAccess, *, database_enabled: bool = True
) -> list[dict[str, Any]]:
    """The proxy container's environment: plain settings as values, every credential as a
    `secretKeyRef` (the names the rendered config refers to)."""
    env: list[dict[str, Any]] = [
        {"name": "DISABLE_ADMIN_UI", "value": "True"},
        {"name": "DISABLE_SCHEMA_UPDATE", "value": "true"},
        # The model cost map from the wheel, not fetched from the internet at start.
        {"name": "LITELLM_LOCAL_MODEL_COST_MAP", "value": "True"},
        {"name": REDIS_HOST_ENV, "value": redis.host},
        {"name": REDIS_PORT_ENV, "value": str(redis.port)},
        {"name": REDIS_SSL_ENV, "value": "true" if redis.ca_secret is not None else "false"},
        _secret_env(REDIS_PASSWORD_ENV, redis.password_secret, redis.password_key),
        _secret_env(MASTER_KEY_ENV, SECRET_NAMES["master"], MASTER_KEY_KEY),
        _secret_env(SALT_KEY_ENV, SECRET_NAMES["salt"], SALT_KEY_KEY),
    ]
    if redis.ca_secret is not None:
        env.append({"name": "REDIS_SSL_CA_CERTS", "value": REDIS_CA_FILE})
    if database_enabled:
        env.append(_secret_env(DATABASE_URL_ENV, SECRET_NAMES["database"], DATABASE_URL_KEY))
    for provider in used_providers(spec):
        env.append(_secret_env(provider_key_env(provider), SECRET_NAMES["providers"], provider))
    return env


_CONTAINER_SECURITY = restricted_container()
_POD_SECURITY = restricted_pod(RUN_AS, fs_group=RUN_AS)
# Where the image writes at run time (see the module docstring).
_SCRATCH_VOLUMES = [
    {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    {"name": "npm-cache", "emptyDir": {"sizeLimit": "256Mi"}},
]
_SCRATCH_MOUNTS = [
    {"name": "tmp", "mountPath": "/tmp"},
    {"name": "npm-cache", "mountPath": "/app/.cache/npm"},
]


def proxy_args(config_file: str, port: int = PORT) -> list[str]:
    """The proxy's arguments: its config file, its port, one worker process per pod (the
    replicas scale it, not processes inside one pod)."""
    return ["--config", config_file, "--port", str(port), "--num_workers", "1"]


def _config_volume(config_map: str) -> dict[str, Any]:
    return {"name": "config", "configMap": {"name": config_map}}


def _redis_ca_volume(redis: RedisAccess) -> list[dict[str, Any]]:
    if redis.ca_secret is None or redis.ca_key is None:
        return []
    return [
        {
            "name": "redis-ca",
            "secret": {
                "secretName": redis.ca_secret,
                "defaultMode": 0o440,
                "items": [{"key": redis.ca_key, "path": "ca.crt"}],
            },
        }
    ]


def pod_template(
    spec: GatewaySpec,
    *,
    redis: RedisAccess,
    config_map: str,
    config_sha256: str,
    cost_labels: CostLabels,
) -> dict[str, Any]:
    """The proxy pod (Kubernetes wire form). `config_sha256` rolls the pods when the
    rendered config changes (the proxy reads it at start only)."""
    probe = {"port": PORT_NAME}
    memory = f"{spec.resources.memory_mib}Mi"
    ca_volumes = _redis_ca_volume(redis)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image.reference,
        "imagePullPolicy": "IfNotPresent",
        "args": proxy_args(f"{CONFIG_DIR}/{CONFIG_FILE}"),
        "ports": [
            {"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"},
            merged_metrics_container_port(),
        ],
        "env": proxy_environment(spec, redis),
        "resources": {
            "requests": {"cpu": f"{spec.resources.cpu_millis}m", "memory": memory},
            "limits": {"memory": memory},
        },
        "startupProbe": {
            "httpGet": {"path": LIVENESS_PATH, **probe},
            "periodSeconds": STARTUP_PERIOD_S,
            "failureThreshold": STARTUP_BUDGET_S // STARTUP_PERIOD_S,
        },
        "readinessProbe": {
            "httpGet": {"path": READINESS_PATH, **probe},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": LIVENESS_PATH, **probe},
            "periodSeconds": 15,
            "timeoutSeconds": 5,
            "failureThreshold": 4,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_S}}},
        "securityContext": _CONTAINER_SECURITY,
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            *_SCRATCH_MOUNTS,
            *(
                [{"name": "redis-ca", "mountPath": REDIS_CA_DIR, "readOnly": True}]
                if ca_volumes
                else []
            ),
        ],
    }
    return {
        "metadata": {
            "labels": pod_labels(cost_labels),
            "annotations": {
                # The Istio agent serves these merged with Envoy's on the merged port.
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(PORT),
                "prometheus.io/path": METRICS_PATH,
                "swarmstack.io/config-sha256": config_sha256,
            },
        },
        "spec": {
            "serviceAccountName": NAME,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
            "securityContext": _POD_SECURITY,
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": key,
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": selector_labels()},
                }
                for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
            ],
            "containers": [container],
            "volumes": [_config_volume(config_map), *_SCRATCH_VOLUMES, *ca_volumes],
        },
    }


def deployment_spec(spec: GatewaySpec, template: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "replicas": spec.replicas,
        "selector": {"matchLabels": selector_labels()},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        },
        "template": dict(template),
    }


def service_spec() -> dict[str, Any]:
    return {
        "type": "ClusterIP",
        "selector": selector_labels(),
        "ports": [
            {
                "name": PORT_NAME,
                "port": PORT,
                "targetPort": PORT_NAME,
                "protocol": "TCP",
                "appProtocol": "http",
            }
        ],
    }


def pdb_spec() -> dict[str, Any]:
    # At least two replicas: one may go while the other serves. maxUnavailable 0 would
    # block every node drain.
    return {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels()}}


def migration_job_spec(
    spec: GatewaySpec, *, config_map: str, redis: RedisAccess, cost_labels: CostLabels
) -> dict[str, Any]:
    """A Job that applies LiteLLM's database schema and exits (`--skip_server_startup`);
    the proxy's replicas start after it with schema updates off."""
    pod = pod_template(
        spec, redis=redis, config_map=config_map, config_sha256="", cost_labels=cost_labels
    )
    (container,) = pod["spec"]["containers"]
    container = {
        **container,
        "name": "migrate",
        "args": ["--config", f"{CONFIG_DIR}/{CONFIG_FILE}", "--skip_server_startup"],
        "env": [e for e in container["env"] if e["name"] != "DISABLE_SCHEMA_UPDATE"],
        "ports": [],
    }
    for probe in ("startupProbe", "readinessProbe", "livenessProbe", "lifecycle"):
        container.pop(probe)
    labels = {
        **cost_labels.as_labels(),
        "app.kubernetes.io/name": f"{NAME}-migrate",
        "app.kubernetes.io/component": COMPONENT,
    }
    return {
        "backoffLimit": 4,
        "activeDeadlineSeconds": 900,
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                **pod["spec"],
                "restartPolicy": "Never",
                "topologySpreadConstraints": [],
                "containers": [container],
            },
        },
    }


def key_job_spec(
    spec: GatewaySpec,
    agents: Sequence[tuple[str, str]],
    *,
    namespace: str,
    scripts: str,
    cost_labels: CostLabels,
) -> dict[str, Any]:
    """The Job that registers the agents' keys through the proxy's API. It reads the master
    key and each agent's key from mounted Secrets, its program and the key requests from the
    `scripts` ConfigMap (which holds no key)."""
    labels = {
        **cost_labels.as_labels(),
        "app.kubernetes.io/name": KEY_JOB_ACCOUNT,
        "app.kubernetes.io/component": KEY_JOB_COMPONENT,
    }
    keys_volume = {
        "name": "agent-keys",
        "projected": {
            "defaultMode": 0o440,
            "sources": [
                {
                    "secret": {
                        "name": agent_key_secret(name),
                        "items": [{"key": AGENT_KEY_SECRET_KEY, "path": name}],
                    }
                }
                for name, _ in agents
            ],
        },
    }
    master_volume = {
        "name": "master-key",
        "secret": {
            "secretName": SECRET_NAMES["master"],
            "defaultMode": 0o440,
            "items": [{"key": MASTER_KEY_KEY, "path": MASTER_KEY_KEY}],
        },
    }
    return {
        "backoffLimit": 3,
        "activeDeadlineSeconds": 900,
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "serviceAccountName": KEY_JOB_ACCOUNT,
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "restartPolicy": "Never",
                "securityContext": _POD_SECURITY,
                "containers": [
                    {
                        "name": "apply-keys",
                        "image": spec.image.reference,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["python3", "/etc/gateway-keys/apply_keys.py"],
                        "env": [
                            {
                                "name": "GATEWAY_URL",
                                "value": f"http://{service_host(namespace)}:{PORT}",
                            },
                            {
                                "name": "MASTER_KEY_FILE",
                                "value": f"/etc/gateway-master/{MASTER_KEY_KEY}",
                            },
                            {"name": "KEYS_DIR", "value": "/etc/gateway-agent-keys"},
                            {"name": "REQUESTS_FILE", "value": "/etc/gateway-keys/requests.json"},
                        ],
                        "resources": {
                            "requests": {"cpu": "50m", "memory": "128Mi"},
                            "limits": {"memory": "128Mi"},
                        },
                        "securityContext": _CONTAINER_SECURITY,
                        "volumeMounts": [
                            {"name": "scripts", "mountPath": "/etc/gateway-keys", "readOnly": True},
                            {
                                "name": "master-key",
                                "mountPath": "/etc/gateway-master",
                                "readOnly": True,
                            },
                            {
                                "name": "agent-keys",
                                "mountPath": "/etc/gateway-agent-keys",
                                "readOnly": True,
                            },
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "scripts", "configMap": {"name": scripts}},
                    master_volume,
                    keys_volume,
                    {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                ],
            },
        },
    }


def gateway_network_policies(
    ns: Namespaces, *, external_https: bool, key_job: bool, in_cluster_database: bool = True
) -> dict[str, dict[str, Any]]:
    """The gateway's openings in the agents' namespace (default-deny): in from the agents'
    namespace on its port and from Prometheus on the merged metrics port; out to the model
    servers' port, to its database, and to 443 outside the cluster when managed models are
    served (the mesh's ServiceEntry names the hosts). The database admits only the
    gateway's pods; the key Job reaches only the gateway. With the database on RDS there is
    no database pod: the opening to the VPC's CIDR on its port is one of the managed
    stores' (stacks/agents.py `managed_store_policies`)."""
    gateway_pods = {"matchLabels": selector_labels()}
    db_pods = {"matchLabels": database.selector_labels()}
    egress: list[dict[str, Any]] = [
        {
            "to": [{**namespace_selector(ns.models), "podSelector": MODEL_PODS}],
            "ports": [{"protocol": "TCP", "port": MODEL_PORT}],
        },
    ]
    if in_cluster_database:
        egress.append(
            {
                "to": [{"podSelector": db_pods}],
                "ports": [{"protocol": "TCP", "port": database.PORT}],
            }
        )
    if external_https:
        egress.append({"ports": [{"protocol": "TCP", "port": 443}]})
    policies: dict[str, dict[str, Any]] = {
        "agents-gateway-ingress": {
            "namespace": ns.agents,
            "name": f"allow-clients-to-{NAME}",
            "spec": {
                "podSelector": gateway_pods,
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"podSelector": {}}],
                        "ports": [{"protocol": "TCP", "port": PORT}],
                    },
                    {
                        "from": [prometheus_peer(ns)],
                        "ports": [{"protocol": "TCP", "port": MERGED_METRICS_PORT}],
                    },
                ],
            },
        },
        "agents-gateway-egress": {
            "namespace": ns.agents,
            "name": f"allow-{NAME}-to-models-and-database",
            "spec": {"podSelector": component_pods(), "policyTypes": ["Egress"], "egress": egress},
        },
    }
    if in_cluster_database:
        policies["agents-gateway-database-ingress"] = {
            "namespace": ns.agents,
            "name": f"allow-{NAME}-to-{database.NAME}",
            "spec": {
                "podSelector": db_pods,
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"podSelector": component_pods()}],
                        "ports": [{"protocol": "TCP", "port": database.PORT}],
                    },
                    {
                        "from": [prometheus_peer(ns)],
                        "ports": [{"protocol": "TCP", "port": MERGED_METRICS_PORT}],
                    },
                ],
            },
        }
    if key_job:
        policies["agents-gateway-key-job"] = {
            "namespace": ns.agents,
            "name": f"allow-{KEY_JOB_ACCOUNT}-to-{NAME}",
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": KEY_JOB_COMPONENT}},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{"podSelector": gateway_pods}],
                        "ports": [{"protocol": "TCP", "port": PORT}],
                    }
                ],
            },
        }
    return policies


def content_hash(*parts: str) -> str:
    """A short hash that names a Job after what it does, so a change replaces it."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:10]


# --------------------------------------------------------------------------- the component


@dataclass(frozen=True)
class GatewaySecrets:
    """The gateway's secret inputs (Pulumi config secrets), never plain values."""

    master_key: pulumi.Input[str]
    salt_key: pulumi.Input[str]
    database_password: pulumi.Input[str]
    agent_key_seed: pulumi.Input[str]
    provider_keys: Mapping[Provider, pulumi.Input[str]]


@dataclass(frozen=True)
class ModelGatewayArgs:
    spec: GatewaySpec
    namespace: pulumi.Input[str]
    namespace_name: str
    config: Mapping[str, Any]  # render_proxy_config's output for the cluster
    agents: Sequence[tuple[str, str]]  # name and model of each agent type
    redis: RedisAccess
    secrets: GatewaySecrets
    cost_labels: CostLabels
    degraded_models: Mapping[str, str] = field(default_factory=dict[str, str])  # by agent
    # The RDS instance's address (database mode rds); None: the in-cluster StatefulSet.
    database_host: pulumi.Input[str] | None = None


def _wire(spec: Mapping[str, Any]) -> Any:
    """A wire-form (camelCase) spec, passed untyped (the SDK's dict types are snake_case)."""
    return dict(spec)


class ModelGateway(pulumi.ComponentResource):
    """LiteLLM's proxy, its Postgres, its config, Secrets and key registration."""

    deployment: k8s.apps.v1.Deployment
    service: k8s.core.v1.Service
    salt_key: k8s.core.v1.Secret
    agent_keys: dict[str, k8s.core.v1.Secret]
    key_job: k8s.batch.v1.Job | None

    def __init__(
        self, name: str, args: ModelGatewayArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("swarmstack:gateway:ModelGateway", name, None, opts)
        spec, ns, labels = args.spec, args.namespace, pod_labels(args.cost_labels)
        child = pulumi.ResourceOptions(parent=self)

        def meta(
            object_name: str, extra: Mapping[str, str] | None = None
        ) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(
                name=object_name, namespace=ns, labels={**labels, **(extra or {})}
            )

        def secret(
            suffix: str,
            object_name: str,
            data: Mapping[str, pulumi.Input[str]],
            opts: pulumi.ResourceOptions | None = None,
            extra: Mapping[str, str] | None = None,
        ) -> k8s.core.v1.Secret:
            return k8s.core.v1.Secret(
                f"{name}-{suffix}",
                metadata=meta(object_name, {GATEWAY_SECRET_LABEL: "true", **(extra or {})}),
                type="Opaque",
                string_data={k: pulumi.Output.secret(v) for k, v in data.items()},
                opts=pulumi.ResourceOptions.merge(child, opts),
            )

        s = args.secrets
        master = secret("master-key", SECRET_NAMES["master"], {MASTER_KEY_KEY: s.master_key})
        # Created once: a later `up` never rewrites it (its data is ignored), never deletes
        # it (protect, and retained if the stack is destroyed), so the stored credentials
        # stay readable.
        self.salt_key = secret(
            "salt-key",
            SECRET_NAMES["salt"],
            {SALT_KEY_KEY: s.salt_key},
            pulumi.ResourceOptions(
                protect=True,
                retain_on_delete=True,
                ignore_changes=["stringData", "data"],
            ),
            {SALT_KEY_LABEL: "true"},
        )
        namespace_name = args.namespace_name
        password = pulumi.Output.from_input(s.database_password)
        url = (
            password.apply(lambda p: database.database_url(p, namespace_name))
            if args.database_host is None
            else pulumi.Output.all(password, args.database_host).apply(
                lambda v: rds.database_url(v[0], v[1])
            )
        )
        db_secret = secret(
            "database",
            SECRET_NAMES["database"],
            {database.PASSWORD_KEY: s.database_password, DATABASE_URL_KEY: url},
        )
        owned: list[pulumi.Resource] = [master, self.salt_key, db_secret]
        providers = used_providers(spec)
        if providers:
            owned.append(
                secret(
                    "provider-keys",
                    SECRET_NAMES["providers"],
                    {p: s.provider_keys[p] for p in providers},
                )
            )
        seed = pulumi.Output.from_input(s.agent_key_seed)
        self.agent_keys = {}
        for agent, _ in args.agents:
            key = spec.key(agent)
            version = key.key_version if key is not None else 1
            self.agent_keys[agent] = secret(
                f"agent-{agent}",
                agent_key_secret(agent),
                {
                    AGENT_KEY_SECRET_KEY: seed.apply(
                        lambda v, a=agent, n=version: derive_agent_key(v, a, n)
                    )
                },
            )

        rendered = yaml.safe_dump(dict(args.config), sort_keys=False)
        config_sha = hashlib.sha256(rendered.encode()).hexdigest()
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=meta(f"{NAME}-config"),
            data={CONFIG_FILE: rendered},
            opts=child,
        )
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata=meta(NAME), automount_service_account_token=False, opts=child
        )

        # Postgres (in the cluster, unless RDS runs it), then the schema, then the proxy.
        db_ready: list[pulumi.Resource] = []
        if args.database_host is None:
            db_labels = {**args.cost_labels.as_labels(), **database.selector_labels()}
            db_meta = k8s.meta.v1.ObjectMetaArgs(name=database.NAME, namespace=ns, labels=db_labels)
            db_account = k8s.core.v1.ServiceAccount(
                f"{name}-db-sa",
                metadata=db_meta,
                automount_service_account_token=False,
                opts=child,
            )
            db_service = k8s.core.v1.Service(
                f"{name}-db-service",
                metadata=db_meta,
                spec=_wire(database.service_spec()),
                opts=child,
            )
            db = k8s.apps.v1.StatefulSet(
                f"{name}-db",
                metadata=db_meta,
                spec=_wire(
                    database.statefulset_spec(
                        spec.database, args.cost_labels, password_secret=SECRET_NAMES["database"]
                    )
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[db_account, db_secret]),
            )
            db_ready = [db, db_service]
        migrate = k8s.batch.v1.Job(
            f"{name}-migrate",
            metadata=meta(f"{NAME}-migrate-{content_hash(spec.image.reference)}"),
            spec=_wire(
                migration_job_spec(
                    spec,
                    config_map=f"{NAME}-config",
                    redis=args.redis,
                    cost_labels=args.cost_labels,
                )
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*db_ready, config_map, account, *owned],
                delete_before_replace=True,
            ),
        )
        template = pod_template(
            spec,
            redis=args.redis,
            config_map=f"{NAME}-config",
            config_sha256=config_sha,
            cost_labels=args.cost_labels,
        )
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta(NAME),
            spec=_wire(deployment_spec(spec, template)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[migrate, config_map, *owned]),
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service", metadata=meta(NAME), spec=_wire(service_spec()), opts=child
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb", metadata=meta(NAME), spec=_wire(pdb_spec()), opts=child
        )

        # The keys, once the proxy serves.
        self.key_job = None
        if args.agents:
            requests = json.dumps(
                key_requests(spec, args.agents, args.degraded_models), indent=2, sort_keys=True
            )
            program = APPLY_KEYS_SOURCE.read_text()
            scripts = k8s.core.v1.ConfigMap(
                f"{name}-key-job-config",
                metadata=meta(f"{NAME}-key-job"),
                data={"apply_keys.py": program, "requests.json": requests},
                opts=child,
            )
            job_account = k8s.core.v1.ServiceAccount(
                f"{name}-key-job-sa",
                metadata=meta(KEY_JOB_ACCOUNT),
                automount_service_account_token=False,
                opts=child,
            )
            versions = ",".join(
                f"{a}:{k.key_version}" for a, _ in args.agents if (k := spec.key(a)) is not None
            )
            self.key_job = k8s.batch.v1.Job(
                f"{name}-keys",
                metadata=meta(f"{NAME}-keys-{content_hash(requests, program, versions)}"),
                spec=_wire(
                    key_job_spec(
                        spec,
                        args.agents,
                        namespace=namespace_name,
                        scripts=f"{NAME}-key-job",
                        cost_labels=args.cost_labels,
                    )
                ),
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[
                        self.deployment,
                        self.service,
                        scripts,
                        job_account,
                        master,
                        *self.agent_keys.values(),
                    ],
                    delete_before_replace=True,
                ),
            )
        self.register_outputs(
            {
                "service": self.service.metadata.apply(lambda m: m.name),
                "baseUrl": base_url(namespace_name),
                "readinessUrl": readiness_url(namespace_name),
                "configSha256": config_sha,
            }
        )
