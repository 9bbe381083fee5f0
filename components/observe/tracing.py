"""The trace pipeline: an OpenTelemetry Collector that receives OTLP from the agent workers
and the model servers and exports it to the backend the stack's config names.

The collector is a workload of the platform's own (it carries every span), so it is
declared here as Kubernetes objects, not as a chart: a ConfigMap holding the collector
config `collector_config` renders from the typed `TracingSpec`, a Deployment, a Service
(OTLP/gRPC 4317, OTLP/HTTP 4318) and a PodDisruptionBudget when it runs more than one
replica. The backend's auth header is a Pulumi secret: it reaches the pod through a
Kubernetes Secret mounted read-only as the file `BACKEND_AUTH_FILE` (like every secret of
the stack, a file and never an environment value), and the config names it as
`${file:...}`, so neither the ConfigMap nor the plan holds its value.

Facts of the pinned release (OpenTelemetry Collector core distribution `otelcol`, image
`otel/opentelemetry-collector`, tag 0.159.0; read from its release manifest
`distributions/otelcol/manifest.yaml` at v0.159.0 and the components' `metadata.yaml`
and `config.schema.yaml` at that tag):

- It carries the `otlp` receiver, the `memory_limiter` and `batch` processors, the
  `otlp_grpc`, `otlp_http`, `debug` and `nop` exporters and the contrib `health_check`
  extension. Since this release the OTLP exporters are named `otlp_grpc` and
  `otlp_http`; `otlp` and `otlphttp` remain as deprecated aliases, so the config here
  uses the new names.
- The image runs `/otelcol --config /etc/otelcol/config.yaml` as user 10001 from a
  scratch image (no shell), exposing 4317, 4318 and 55679.
- Servers default to `localhost` endpoints: every listener binds to the pod IP (from
  the downward API) so the kubelet's probes and the Service reach it and nothing else
  in the pod's network namespace is needed.
- `health_check` answers on `endpoint` at `path` (default `/`) with 200 once the
  collector runs; the probes read it on port 13133.
- `${env:NAME}` and `${file:/path}` in the config are expanded by the `env` and `file`
  providers (both in the distribution) when the collector loads it; the value read is
  parsed as YAML, so a header value such as `Bearer <token>` stays one string.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import pulumi
import pulumi_kubernetes as k8s
import yaml
from pydantic import Field, model_validator

from components.pod_security import restricted_container, restricted_pod
from components.specs import CostLabels, ImageRef, Spec

COLLECTOR_RELEASE = "0.159.0"
COLLECTOR_IMAGE = "docker.io/otel/opentelemetry-collector"
NAME = "otel-collector"
COMPONENT = "trace-collector"
OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
HEALTH_PORT = 13133
CONFIG_DIR = "/etc/otelcol"
CONFIG_FILE = "config.yaml"
RUN_AS_USER = 10001  # the image's own user
POD_IP_VARIABLE = "POD_IP"
BACKEND_SECRET = "otel-collector-backend"
BACKEND_SECRET_KEY = "auth-header"
SECRETS_DIR = "/var/run/secrets/otel-backend"  # beside, not inside, the config volume
BACKEND_AUTH_FILE = f"{SECRETS_DIR}/{BACKEND_SECRET_KEY}"
SECRET_FILE_MODE = 0o440  # owner root and the collector's group (fsGroup) read

BackendType = Literal["none", "debug", "otlp", "otlphttp"]
# The exporter each backend type renders, by its name at COLLECTOR_RELEASE.
EXPORTER_OF: dict[BackendType, str] = {
    "none": "nop",
    "debug": "debug",
    "otlp": "otlp_grpc",
    "otlphttp": "otlp_http",
}
ENDPOINT_TYPES: frozenset[BackendType] = frozenset({"otlp", "otlphttp"})


class TracingBackend(Spec):
    """Where the collector sends spans."""

    type: BackendType = Field(
        default="debug",
        description="`otlp` (OTLP/gRPC to `endpoint`), `otlphttp` (OTLP/HTTP to `endpoint`; "
        "`/v1/traces` is appended), `debug` (spans are counted in the collector's log and "
        "kept nowhere) or `none` (spans are received and dropped).",
    )
    endpoint: str | None = Field(
        default=None,
        description="Backend URL, `https://host[:port]` (otlphttp: a base path may follow). "
        "Required for otlp and otlphttp, refused for debug and none.",
    )
    insecure: bool = Field(
        default=False,
        description="Accept an `http://` endpoint: spans (agent, session and user ids "
        "included) then travel unencrypted. Default false: only https endpoints.",
    )
    auth_header: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9-]{0,63}$",
        description="Header (lower case, e.g. `authorization` or `x-api-key`) the collector "
        "sends to the backend; its value is the secret config key "
        "`tracingBackendAuthHeader` (e.g. `Bearer <token>`). Unset: no auth header.",
    )

    @model_validator(mode="after")
    def _endpoint(self) -> TracingBackend:
        if self.type not in ENDPOINT_TYPES:
            for key, value in (("endpoint", self.endpoint), ("authHeader", self.auth_header)):
                if value is not None:
                    raise ValueError(
                        f"{key} is for otlp and otlphttp backends, not {self.type!r}: "
                        f"remove it or set type otlp or otlphttp"
                    )
            if self.insecure:
                raise ValueError(f"insecure is for otlp and otlphttp backends, not {self.type!r}")
            return self
        if self.endpoint is None:
            raise ValueError(
                f"a {self.type} backend needs endpoint (e.g. https://otlp.example.com:4317)"
            )
        problem = endpoint_problem(self.endpoint, self.type)
        if problem is not None:
            raise ValueError(f"endpoint {self.endpoint!r} {problem}")
        plaintext = urlsplit(self.endpoint).scheme == "http"
        if plaintext and not self.insecure:
            raise ValueError(
                f"endpoint {self.endpoint!r} is plaintext: use https, or set insecure: true "
                "to send spans unencrypted"
            )
        if not plaintext and self.insecure:
            raise ValueError(f"insecure: true with the https endpoint {self.endpoint!r}")
        if plaintext and self.auth_header is not None:
            raise ValueError(
                f"authHeader over the plaintext endpoint {self.endpoint!r} would send the "
                "secret in clear: use https"
            )
        return self


def endpoint_problem(endpoint: str, backend: BackendType) -> str | None:
    """Why `endpoint` is not a backend URL for `backend`, or None."""
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not a URL: give scheme and host, e.g. https://otlp.example.com:4317"
    if parts.username or parts.password:
        return "carries credentials: put them in authHeader (a secret), not in the URL"
    if parts.query or parts.fragment:
        return "has a query or fragment, which an OTLP endpoint does not take"
    if backend == "otlp" and parts.path not in ("", "/"):
        return "has a path, which an OTLP/gRPC endpoint does not take (host and port only)"
    if port == 0:
        return "has port 0"
    return None


def backend_port(backend: TracingBackend) -> int | None:
    """The TCP port the collector connects to, or None (no backend to reach)."""
    if backend.endpoint is None:
        return None
    parts = urlsplit(backend.endpoint)
    return parts.port or (443 if parts.scheme == "https" else 80)


class CollectorResources(Spec):
    cpu: str = Field(default="200m", pattern=r"^[0-9]+(m)?$", description="CPU request.")
    memory_mib: int = Field(
        default=512,
        ge=128,
        le=16384,
        description="Memory request and limit, MiB. The memory_limiter refuses data at 80% "
        "of it and the Go runtime's soft limit (GOMEMLIMIT) sits at 80% too.",
    )


class TracingSpec(Spec):
    """The OpenTelemetry Collector every stack runs for traces."""

    enabled: bool = Field(
        default=True,
        description="Run the collector and point the workers and model servers at it. "
        "false: no collector, and nothing exports spans.",
    )
    image: ImageRef = Field(
        default_factory=lambda: ImageRef(repository=COLLECTOR_IMAGE, tag=COLLECTOR_RELEASE),
        description=f"Collector image: the core distribution, tag {COLLECTOR_RELEASE} (its "
        "components were checked at that release). A mirror of the same tag may be named.",
    )
    replicas: int = Field(
        default=2,
        ge=1,
        le=20,
        description="Collector replicas. Two keep spans flowing while a node drains (a "
        "PodDisruptionBudget lets one go at a time); one saves a pod where losing spans "
        "for a restart is acceptable.",
    )
    resources: CollectorResources = Field(
        default_factory=CollectorResources, description="Requests and limits of a replica."
    )
    batch_timeout_ms: int = Field(
        default=1000, ge=10, le=60_000, description="Longest a span waits in a batch, ms."
    )
    batch_size: int = Field(
        default=1024, ge=1, le=100_000, description="Spans per batch sent to the backend."
    )
    backend: TracingBackend = Field(
        default_factory=TracingBackend, description="Where spans go (default: debug)."
    )

    @model_validator(mode="after")
    def _checked_release(self) -> TracingSpec:
        if self.image.tag != COLLECTOR_RELEASE:
            raise ValueError(
                f"image.tag {self.image.tag!r} is not the collector release whose components "
                f"and config keys swarmstack checked ({COLLECTOR_RELEASE}); another release "
                "needs components/observe/tracing.py read against its manifest first"
            )
        return self


# --------------------------------------------------------------------------- pure rendering


def collector_host(namespace: str) -> str:
    return f"{NAME}.{namespace}.svc.cluster.local"


def collector_grpc_url(namespace: str) -> str:
    """The collector's OTLP/gRPC URL in the cluster: what the workers' and vLLM's
    exporters (gRPC by default in both) are given."""
    return f"http://{collector_host(namespace)}:{OTLP_GRPC_PORT}"


def selector_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": NAME}


def workload_labels(cost_labels: CostLabels) -> dict[str, str]:
    return {
        **selector_labels(),
        **cost_labels.as_labels(),
        "app.kubernetes.io/component": COMPONENT,
        "app.kubernetes.io/part-of": "swarmstack",
        "app.kubernetes.io/version": COLLECTOR_RELEASE,
    }


def _exporter(backend: TracingBackend) -> dict[str, Any]:
    if backend.type == "none":
        return {}
    if backend.type == "debug":
        return {"verbosity": "basic"}
    entry: dict[str, Any] = {"endpoint": backend.endpoint}
    if backend.type == "otlp" and backend.insecure:
        entry["tls"] = {"insecure": True}
    if backend.auth_header is not None:
        entry["headers"] = {backend.auth_header: f"${{file:{BACKEND_AUTH_FILE}}}"}
    entry["sending_queue"] = {"enabled": True, "queue_size": 1000}
    entry["retry_on_failure"] = {"enabled": True, "max_elapsed_time": "300s"}
    return entry


def collector_config(spec: TracingSpec) -> dict[str, Any]:
    """The collector's config file: OTLP in, memory_limiter then batch, the backend out."""
    pod_ip = f"${{env:{POD_IP_VARIABLE}}}"
    exporter = EXPORTER_OF[spec.backend.type]
    return {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"{pod_ip}:{OTLP_GRPC_PORT}"},
                    "http": {"endpoint": f"{pod_ip}:{OTLP_HTTP_PORT}"},
                }
            }
        },
        "processors": {
            "memory_limiter": {
                "check_interval": "1s",
                "limit_percentage": 80,
                "spike_limit_percentage": 20,
            },
            "batch": {
                "timeout": f"{spec.batch_timeout_ms}ms",
                "send_batch_size": spec.batch_size,
                "send_batch_max_size": spec.batch_size * 2,
            },
        },
        "exporters": {exporter: _exporter(spec.backend)},
        "extensions": {"health_check": {"endpoint": f"{pod_ip}:{HEALTH_PORT}", "path": "/"}},
        "service": {
            "extensions": ["health_check"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["memory_limiter", "batch"],
                    "exporters": [exporter],
                }
            },
        },
    }


def render_collector_config(spec: TracingSpec) -> str:
    return yaml.safe_dump(collector_config(spec), sort_keys=False)


def config_hash(spec: TracingSpec) -> str:
    """A digest of the rendered config: a pod annotation, so a new config rolls the pods."""
    return hashlib.sha256(render_collector_config(spec).encode()).hexdigest()[:16]


def pod_template(spec: TracingSpec, cost_labels: CostLabels) -> dict[str, Any]:
    """The collector's pod template (Kubernetes wire form)."""
    memory = spec.resources.memory_mib
    env: list[dict[str, Any]] = [
        {"name": POD_IP_VARIABLE, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "GOMEMLIMIT", "value": f"{memory * 4 // 5}MiB"},
    ]
    volumes: list[dict[str, Any]] = [
        {
            "name": "config",
            "configMap": {"name": NAME, "items": [{"key": CONFIG_FILE, "path": CONFIG_FILE}]},
        }
    ]
    mounts: list[dict[str, Any]] = [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}]
    if spec.backend.auth_header is not None:
        volumes.append(
            {
                "name": "backend-auth",
                "secret": {
                    "secretName": BACKEND_SECRET,
                    "items": [{"key": BACKEND_SECRET_KEY, "path": BACKEND_SECRET_KEY}],
                    "defaultMode": SECRET_FILE_MODE,
                },
            }
        )
        mounts.append({"name": "backend-auth", "mountPath": SECRETS_DIR, "readOnly": True})
    health = {"httpGet": {"path": "/", "port": "health"}}
    container: dict[str, Any] = {
        "name": "otel-collector",
        "image": spec.image.reference,
        "imagePullPolicy": "IfNotPresent",
        "args": ["--config", f"{CONFIG_DIR}/{CONFIG_FILE}"],
        "ports": [
            {"name": "otlp-grpc", "containerPort": OTLP_GRPC_PORT, "protocol": "TCP"},
            {"name": "otlp-http", "containerPort": OTLP_HTTP_PORT, "protocol": "TCP"},
            {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
        ],
        "env": env,
        "resources": {
            "requests": {"cpu": spec.resources.cpu, "memory": f"{memory}Mi"},
            "limits": {"memory": f"{memory}Mi"},
        },
        "readinessProbe": {**health, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {
            **health,
            "initialDelaySeconds": 5,
            "periodSeconds": 15,
            "timeoutSeconds": 5,
            "failureThreshold": 4,
        },
        "securityContext": restricted_container(),
        "volumeMounts": mounts,
    }
    return {
        "metadata": {
            "labels": workload_labels(cost_labels),
            "annotations": {"swarmstack.io/config-hash": config_hash(spec)},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 30,
            "securityContext": restricted_pod(RUN_AS_USER, fs_group=RUN_AS_USER),
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "kubernetes.io/hostname",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": selector_labels()},
                }
            ],
            "containers": [container],
            "volumes": volumes,
        },
    }


def service_spec() -> dict[str, Any]:
    return {
        "type": "ClusterIP",
        "selector": selector_labels(),
        "ports": [
            {
                "name": "otlp-grpc",
                "port": OTLP_GRPC_PORT,
                "targetPort": "otlp-grpc",
                "protocol": "TCP",
                "appProtocol": "grpc",
            },
            {
                "name": "otlp-http",
                "port": OTLP_HTTP_PORT,
                "targetPort": "otlp-http",
                "protocol": "TCP",
                "appProtocol": "http",
            },
        ],
    }


def _namespace_selector(namespace: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}


def collector_peer(monitoring_namespace: str) -> dict[str, Any]:
    """The collector's pods, as a NetworkPolicy peer."""
    return {
        **_namespace_selector(monitoring_namespace),
        "podSelector": {"matchLabels": selector_labels()},
    }


def network_policies(
    spec: TracingSpec, *, monitoring: str, senders: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """NetworkPolicies (suffix -> namespace, name, spec): each sender namespace (role ->
    namespace) may reach the collector's OTLP ports; the collector admits those
    namespaces there and its probes on the health port, and reaches DNS and the
    backend's port only."""
    otlp_ports = [
        {"protocol": "TCP", "port": OTLP_GRPC_PORT},
        {"protocol": "TCP", "port": OTLP_HTTP_PORT},
    ]
    policies: dict[str, dict[str, Any]] = {}
    for role, namespace in senders.items():
        policies[f"{role}-allow-trace-export"] = {
            "namespace": namespace,
            "name": "allow-trace-export",
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [{"to": [collector_peer(monitoring)], "ports": otlp_ports}],
            },
        }
    dns = {
        "to": [
            {
                **_namespace_selector("kube-system"),
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    egress: list[dict[str, Any]] = [dns]
    port = backend_port(spec.backend)
    if port is not None:
        # The backend is outside the cluster or behind a name: no peer narrows it further.
        egress.append({"ports": [{"protocol": "TCP", "port": port}]})
    policies["monitoring-trace-collector"] = {
        "namespace": monitoring,
        "name": NAME,
        "spec": {
            "podSelector": {"matchLabels": selector_labels()},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [_namespace_selector(ns) for ns in senders.values()],
                    "ports": otlp_ports,
                },
                # The kubelet's probes come from the node.
                {"ports": [{"protocol": "TCP", "port": HEALTH_PORT}]},
            ],
            "egress": egress,
        },
    }
    return policies


# --------------------------------------------------------------------------- component


def _wire_form(spec: dict[str, Any]) -> Any:
    """A spec in Kubernetes wire form (camelCase), passed untyped: the SDK's typed
    `*ArgsDict`s spell their keys in snake_case."""
    return spec


@dataclass(frozen=True)
class TracingArgs:
    spec: TracingSpec
    namespace: pulumi.Input[str]  # the monitoring namespace (created by Tenancy)
    namespace_name: str
    cost_labels: CostLabels
    # The backend's auth header value (a Pulumi secret), when `backend.authHeader` is set.
    auth_header: pulumi.Output[str] | None = None


class TracingCollector(pulumi.ComponentResource):
    """The OpenTelemetry Collector: ConfigMap, Deployment, Service, PDB and its Secret."""

    deployment: k8s.apps.v1.Deployment
    service: k8s.core.v1.Service
    endpoint: str

    def __init__(
        self, name: str, args: TracingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("swarmstack:observe:TracingCollector", name, None, opts)
        spec = args.spec
        labels = workload_labels(args.cost_labels)
        metadata = k8s.meta.v1.ObjectMetaArgs(name=NAME, namespace=args.namespace, labels=labels)
        child = pulumi.ResourceOptions(parent=self)
        config = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=metadata,
            data={CONFIG_FILE: render_collector_config(spec)},
            opts=child,
        )
        depends: list[pulumi.Resource] = [config]
        if spec.backend.auth_header is not None:
            if args.auth_header is None:
                raise ValueError("backend.authHeader is set but no secret value was given")
            depends.append(
                k8s.core.v1.Secret(
                    f"{name}-backend",
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        name=BACKEND_SECRET, namespace=args.namespace, labels=labels
                    ),
                    type="Opaque",
                    string_data={BACKEND_SECRET_KEY: args.auth_header},
                    opts=child,
                )
            )
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=metadata,
            spec=_wire_form(
                {
                    "replicas": spec.replicas,
                    "selector": {"matchLabels": selector_labels()},
                    "strategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
                    },
                    "template": pod_template(spec, args.cost_labels),
                }
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends),
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service", metadata=metadata, spec=_wire_form(service_spec()), opts=child
        )
        if spec.replicas > 1:
            # One replica may go at a time: maxUnavailable 0 would block node drains.
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-pdb",
                metadata=metadata,
                spec=_wire_form(
                    {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels()}}
                ),
                opts=child,
            )
        self.endpoint = collector_grpc_url(args.namespace_name)
        self.register_outputs(
            {
                "endpoint": self.endpoint,
                "release": COLLECTOR_RELEASE,
                "backend": spec.backend.type,
            }
        )
