"""The observability part of the composition: the monitoring release and a monitor for
every workload the stack runs.

`stack_monitors` decides, from the config alone, what Prometheus scrapes (pure, so the
plan, the policy tests and the docs read the same list); `build_observability` declares
the release and those monitors in the namespaces Tenancy created.

What each workload exposes:

- model servers: vLLM serves /metrics on its API port, which is meshed with STRICT mTLS
  that Prometheus (outside the mesh) cannot speak; one PodMonitor scrapes Istio's merged
  metrics of every model server pod instead (port 15020, `/stats/prometheus`: vLLM's
  metrics, which the pods' prometheus.io annotations point the Istio agent at, merged with
  Envoy's; see components/traffic/mesh.py).
- Kafka (Strimzi): the brokers' and controllers' JMX exporter and the Kafka exporter listen
  on Strimzi's metrics port, named `tcp-prometheus` on every pod the operator creates for
  the cluster; one PodMonitor selects them. MSK: open monitoring is on (JMX and node
  exporters on ports 11001/11002 of each broker), but the brokers are outside the cluster
  and their host names come from the MSK API, so no monitor is declared for them yet.
- Redis/Valkey (in cluster): the redis_exporter sidecar's `metrics` port (a PodMonitor:
  the headless and the client Service select the same pods, a ServiceMonitor on them would
  scrape each pod twice). ElastiCache is not scraped (CloudWatch only).
- Qdrant: /metrics on its HTTP port needs an API key (only /, /healthz, /livez and /readyz
  are open): Prometheus sends the read-only key as a bearer token, over HTTPS with the
  store's CA when TLS is on.
- agent workers: /metrics on the worker port (`http`) of every agent pod; one PodMonitor
  selects them by component (events agents have no Service).
- GPUs: the GPU operator's own DCGM exporter ServiceMonitor, labelled through the chart
  (components/compute/gpu_node_pool.py); none is declared here.

Traces: with `observability.tracing.enabled` the OpenTelemetry Collector runs in the
monitoring namespace (components/observe/tracing.py). `otlp_endpoint` is the one place
its in-cluster URL comes from: the model servers get it as vLLM's
`--otlp-traces-endpoint`, the agent workers as `OTEL_EXPORTER_OTLP_ENDPOINT`
(`worker_tracing_env`), and `tracing_network_policies` opens exactly that path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi

from components.agents.spec import AGENT_COMPONENT
from components.data import kafka as kafka_store
from components.data import qdrant as qdrant_store
from components.data import redis as redis_store
from components.gateway import database as gateway_database
from components.gateway import proxy as gateway_proxy
from components.observe.monitoring import Monitoring, MonitoringArgs, MonitoringSecrets
from components.observe.monitors import Endpoint, MonitorTarget, SecretKey, monitor_body
from components.observe.tracing import (
    TracingArgs,
    TracingCollector,
    collector_grpc_url,
)
from components.observe.tracing import network_policies as collector_policies
from components.serving.model_serving import SERIES_TRACK_LABEL, TRACK_LABEL
from components.traffic.istio_chart import MERGED_METRICS_PATH, MERGED_METRICS_PORT
from components.traffic.tenancy import MODEL_SERVER_COMPONENT
from stacks.config import (
    GRAFANA_ADMIN_PASSWORD_KEY,
    RECEIVER_SECRET_KEYS,
    TRACING_AUTH_HEADER_KEY,
    StackConfig,
)

# The variable the agent worker reads its OTLP/gRPC endpoint from
# (images/agent-worker/agent_worker/config.py).
WORKER_OTLP_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"

STRIMZI_METRICS_PORT = "tcp-prometheus"  # Strimzi's name of the metrics port on its pods
STRIMZI_KIND_LABEL = "strimzi.io/kind"
KAFKA_CLUSTER = "events"  # EventBusArgs.cluster_name as the data plane builds it
COMPONENT_LABEL = "app.kubernetes.io/component"


def monitor_targets(config: StackConfig) -> list[MonitorTarget]:
    """What Prometheus scrapes in this stack, one target per kind of workload."""
    ns, data = config.namespaces, config.data_plane
    targets = [
        MonitorTarget(
            "PodMonitor",
            "model-servers",
            ns.models,
            {COMPONENT_LABEL: MODEL_SERVER_COMPONENT},
            (
                Endpoint(
                    port_number=MERGED_METRICS_PORT,
                    path=MERGED_METRICS_PATH,
                    pod_labels=((TRACK_LABEL, SERIES_TRACK_LABEL),),
                ),
            ),
        )
    ]
    if config.agents:
        # Every agent pod, http or events, serves /metrics on its worker port; events
        # agents have no Service, so pods are selected directly.
        targets.append(
            MonitorTarget(
                "PodMonitor",
                "agents",
                ns.agents,
                {COMPONENT_LABEL: AGENT_COMPONENT},
                (Endpoint(port_number=MERGED_METRICS_PORT, path=MERGED_METRICS_PATH),),
            )
        )
    if config.gateway is not None:
        # The gateway's /metrics (LiteLLM's Prometheus callback) reach Prometheus through
        # Istio's merged port, like the agents' and the models'.
        targets.append(
            MonitorTarget(
                "PodMonitor",
                gateway_proxy.NAME,
                ns.agents,
                gateway_proxy.selector_labels(),
                (Endpoint(port_number=MERGED_METRICS_PORT, path=MERGED_METRICS_PATH),),
            )
        )
        if config.gateway.database.mode == "inCluster":  # RDS reports to CloudWatch
            targets.append(
                MonitorTarget(
                    "PodMonitor",
                    gateway_database.NAME,
                    ns.agents,
                    gateway_database.selector_labels(),
                    (Endpoint(port_number=MERGED_METRICS_PORT, path=MERGED_METRICS_PATH),),
                )
            )
    if data.kafka is not None and data.kafka.mode == "strimzi":
        targets.append(
            MonitorTarget(
                "PodMonitor",
                "kafka",
                ns.data,
                {kafka_store.CLUSTER_LABEL: KAFKA_CLUSTER, STRIMZI_KIND_LABEL: "Kafka"},
                (Endpoint(STRIMZI_METRICS_PORT),),
            )
        )
    if data.redis is not None and data.redis.mode == "inCluster":
        targets.append(
            MonitorTarget(
                "PodMonitor",
                redis_store.NAME,
                ns.data,
                redis_store.selector_labels(),
                (Endpoint("metrics"),),
            )
        )
    if data.qdrant is not None:
        tls = data.qdrant.tls
        targets.append(
            MonitorTarget(
                "PodMonitor",
                qdrant_store.NAME,
                ns.data,
                qdrant_store.selector_labels(),
                (
                    Endpoint(
                        "http",
                        scheme="https" if tls else "http",
                        bearer_token=SecretKey(
                            qdrant_store.KEYS_SECRET, qdrant_store.READ_ONLY_KEY
                        ),
                        ca=SecretKey(f"{qdrant_store.NAME}-tls", "ca.crt") if tls else None,
                        server_name=f"{qdrant_store.NAME}.{ns.data}.svc" if tls else None,
                    ),
                ),
            )
        )
    return targets


def stack_monitors(config: StackConfig) -> list[dict[str, Any]]:
    """The ServiceMonitor and PodMonitor bodies the stack declares."""
    labels = config.cost_labels.as_labels()
    return [monitor_body(t, labels) for t in monitor_targets(config)]


def read_monitoring_secrets(config: StackConfig) -> MonitoringSecrets:
    """The monitoring release's Pulumi secrets (the program has refused a config that
    lacks one)."""
    stack_config = pulumi.Config()
    receivers = config.observability.monitoring.alertmanager.receivers
    return MonitoringSecrets(
        grafana_admin_password=stack_config.require_secret(GRAFANA_ADMIN_PASSWORD_KEY),
        receivers={
            r.type: stack_config.require_secret(RECEIVER_SECRET_KEYS[r.type]) for r in receivers
        },
    )


def build_observability(
    config: StackConfig,
    *,
    monitoring_namespace: pulumi.Input[str],
    secrets: MonitoringSecrets,
    on_cluster: pulumi.ResourceOptions,
    depends_on: Sequence[pulumi.Resource] = (),
) -> Monitoring:
    return Monitoring(
        "monitoring",
        MonitoringArgs(
            spec=config.observability.monitoring,
            namespace=monitoring_namespace,
            cost_labels=config.cost_labels,
            secrets=secrets,
            monitors=stack_monitors(config),
            depends_on=depends_on,
        ),
        opts=on_cluster,
    )


# --------------------------------------------------------------------------- traces


def otlp_endpoint(config: StackConfig) -> str | None:
    """The trace collector's OTLP/gRPC URL in the cluster, or None when the stack runs
    no collector. Model servers and agent workers export their spans here."""
    if not config.observability.tracing.enabled:
        return None
    return collector_grpc_url(config.namespaces.monitoring)


def worker_tracing_env(config: StackConfig) -> dict[str, str]:
    """The agent worker's tracing environment (empty: no collector, no tracing)."""
    endpoint = otlp_endpoint(config)
    return {} if endpoint is None else {WORKER_OTLP_VARIABLE: endpoint}


def tracing_network_policies(config: StackConfig) -> dict[str, dict[str, Any]]:
    """The models and agents namespaces to the collector's OTLP ports, and the collector
    to DNS and its backend (none when the stack runs no collector)."""
    tracing, ns = config.observability.tracing, config.namespaces
    if not tracing.enabled:
        return {}
    return collector_policies(
        tracing, monitoring=ns.monitoring, senders={"models": ns.models, "agents": ns.agents}
    )


def build_tracing(
    config: StackConfig,
    *,
    monitoring_namespace: pulumi.Input[str],
    on_cluster: pulumi.ResourceOptions,
) -> TracingCollector | None:
    tracing = config.observability.tracing
    if not tracing.enabled:
        return None
    auth = (
        pulumi.Config().require_secret(TRACING_AUTH_HEADER_KEY)
        if tracing.backend.auth_header is not None
        else None
    )
    return TracingCollector(
        "tracing",
        TracingArgs(
            spec=tracing,
            namespace=monitoring_namespace,
            namespace_name=config.namespaces.monitoring,
            cost_labels=config.cost_labels,
            auth_header=auth,
        ),
        opts=on_cluster,
    )
