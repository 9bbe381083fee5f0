"""The metric families the stack's queries may name, each with where it comes from.

Every PromQL expression of a dashboard or rule must select only series listed here:

- vLLM's families, captured from the `/metrics` of the vLLM release the stack deploys
  (`vllm_metrics_v<version>.json`, written by `loadtests/capture_vllm_metrics.py` from a
  running server; an e2e test re-reads a running server and fails when they differ);
- the agent worker's, read from its contract table in `images/agent-worker/METRICS.md`;
- the exporters' documented names (DCGM exporter, kube-state-metrics, Strimzi's Kafka
  exporter, redis_exporter, Prometheus itself), typed constants below;
- the stack's own cost recording rules (group `swarmstack-cost`).

A family also says what a Prometheus needs to have it: `needs` is `gpu` (NVIDIA GPUs and
the DCGM exporter), `kafka` (a Kafka cluster and its exporter) or `cluster` (Kubernetes
objects: kube-state-metrics), or None when the local target (vLLM on CPU, the worker,
Redis) produces it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from components.compute.nodes import POOL_LABEL
from components.observe.promql import query_metric_names, query_selectors

Kind = Literal["counter", "gauge", "histogram", "summary", "info", "stateset", "unknown"]
Need = Literal["gpu", "kafka", "cluster"]

VLLM_VERSION = "0.32.0"  # the release `images.vllm` and loadtests/requirements-vllm.txt pin
VLLM_METRICS_FILE = Path(__file__).resolve().parent / f"vllm_metrics_v{VLLM_VERSION}.json"
REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER_METRICS_MD = REPO_ROOT / "images" / "agent-worker" / "METRICS.md"


@dataclass(frozen=True)
class MetricFamily:
    name: str  # as written in queries; counters end in _total, histograms are the base name
    kind: Kind
    labels: frozenset[str]
    source: str
    needs: Need | None = None
    series: frozenset[str] = frozenset()  # sample names; derived from name and kind if empty

    def sample_names(self) -> frozenset[str]:
        if self.series:
            return self.series
        return frozenset(series_names(self.name, self.kind))


def series_names(name: str, kind: str) -> set[str]:
    """The sample names a family of this kind exposes in the text format."""
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    if kind == "summary":
        return {name, f"{name}_sum", f"{name}_count"}
    if kind == "counter" and not name.endswith("_total"):
        return {f"{name}_total"}
    return {name}


def _family(
    name: str, kind: Kind, labels: Iterable[str], source: str, needs: Need | None = None
) -> MetricFamily:
    return MetricFamily(name, kind, frozenset(labels), source, needs)


# --------------------------------------------------------------------------- exporters

# NVIDIA dcgm-exporter: etc/default-counters.csv and etc/dcp-metrics-included.csv (the
# GPU operator's default counters; DCGM_FI_PROF_* are its profiling fields, the only
# utilisation a MIG slice reports). Labels per docs: gpu, UUID, device, modelName,
# Hostname, pci_bus_id, DCGM_FI_DRIVER_VERSION; GPU_I_ID and GPU_I_PROFILE on MIG
# instances; namespace, pod, container of the workload on the device (Kubernetes mode).
_DCGM_LABELS = (
    "gpu",
    "UUID",
    "device",
    "modelName",
    "Hostname",
    "pci_bus_id",
    "DCGM_FI_DRIVER_VERSION",
    "GPU_I_ID",
    "GPU_I_PROFILE",
    "namespace",
    "pod",
    "container",
)
_DCGM_SOURCE = "dcgm-exporter etc/default-counters.csv, etc/dcp-metrics-included.csv"
DCGM_FI_DEV_GPU_UTIL = _family("DCGM_FI_DEV_GPU_UTIL", "gauge", _DCGM_LABELS, _DCGM_SOURCE, "gpu")
DCGM_FI_DEV_FB_USED = _family("DCGM_FI_DEV_FB_USED", "gauge", _DCGM_LABELS, _DCGM_SOURCE, "gpu")
DCGM_FI_DEV_FB_FREE = _family("DCGM_FI_DEV_FB_FREE", "gauge", _DCGM_LABELS, _DCGM_SOURCE, "gpu")
DCGM_FI_DEV_XID_ERRORS = _family(
    "DCGM_FI_DEV_XID_ERRORS", "gauge", _DCGM_LABELS, _DCGM_SOURCE, "gpu"
)  # the value of the last XID error, not a count
DCGM_FI_DEV_GPU_TEMP = _family("DCGM_FI_DEV_GPU_TEMP", "gauge", _DCGM_LABELS, _DCGM_SOURCE, "gpu")
DCGM_FI_DEV_POWER_USAGE = _family(
    "DCGM_FI_DEV_POWER_USAGE", "gauge", _DCGM_LABELS, _DCGM_SOURCE, "gpu"
)
DCGM_FI_PROF_GR_ENGINE_ACTIVE = _family(
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", _DCGM_LABELS, _DCGM_SOURCE, "gpu"
)
DCGM_FI_PROF_DRAM_ACTIVE = _family(
    "DCGM_FI_PROF_DRAM_ACTIVE", "gauge", _DCGM_LABELS, _DCGM_SOURCE, "gpu"
)
DCGM_FI_PROF_PIPE_TENSOR_ACTIVE = _family(
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", _DCGM_LABELS, _DCGM_SOURCE, "gpu"
)

# kube-state-metrics docs/metrics (node, pod, deployment metrics). kube_node_labels carries
# only the node labels allow-listed with --metric-labels-allowlist, as label_<sanitised
# name>: the monitoring release allow-lists nvidia.com/mig.config.state.
_KSM = "kube-state-metrics docs/metrics/cluster/node-metrics.md, workload docs"


def ksm_node_label(node_label: str) -> str:
    """The label kube-state-metrics gives an allow-listed node label in kube_node_labels."""
    return "label_" + re.sub(r"[^a-zA-Z0-9_]", "_", node_label)


MIG_CONFIG_STATE_LABEL = ksm_node_label("nvidia.com/mig.config.state")
POOL_NODE_LABEL = ksm_node_label(POOL_LABEL)
KUBE_NODE_LABELS = _family(
    "kube_node_labels", "gauge", ("node", MIG_CONFIG_STATE_LABEL, POOL_NODE_LABEL), _KSM, "cluster"
)
KUBE_NODE_INFO = _family(
    "kube_node_info",
    "gauge",
    ("node", "kernel_version", "os_image", "provider_id"),
    _KSM,
    "cluster",
)
KUBE_DEPLOYMENT_STATUS_REPLICAS_AVAILABLE = _family(
    "kube_deployment_status_replicas_available",
    "gauge",
    ("namespace", "deployment"),
    _KSM,
    "cluster",
)
KUBE_DEPLOYMENT_SPEC_REPLICAS = _family(
    "kube_deployment_spec_replicas", "gauge", ("namespace", "deployment"), _KSM, "cluster"
)
KUBE_POD_INFO = _family(
    "kube_pod_info",
    "gauge",
    ("namespace", "pod", "node", "created_by_kind", "created_by_name"),
    _KSM,
    "cluster",
)

# Strimzi's Kafka Exporter (danielqsj/kafka_exporter), documented in Strimzi's "Kafka
# Exporter metrics" and the exporter's README.
_KAFKA_EXPORTER = "Strimzi Kafka Exporter (kafka_exporter README, Metrics section)"
KAFKA_CONSUMERGROUP_LAG = _family(
    "kafka_consumergroup_lag",
    "gauge",
    ("consumergroup", "topic", "partition"),
    _KAFKA_EXPORTER,
    "kafka",
)
KAFKA_CONSUMERGROUP_CURRENT_OFFSET = _family(
    "kafka_consumergroup_current_offset",
    "gauge",
    ("consumergroup", "topic", "partition"),
    _KAFKA_EXPORTER,
    "kafka",
)
KAFKA_CONSUMERGROUP_MEMBERS = _family(
    "kafka_consumergroup_members", "gauge", ("consumergroup",), _KAFKA_EXPORTER, "kafka"
)
KAFKA_BROKERS = _family("kafka_brokers", "gauge", (), _KAFKA_EXPORTER, "kafka")
KAFKA_TOPIC_PARTITIONS = _family(
    "kafka_topic_partitions", "gauge", ("topic",), _KAFKA_EXPORTER, "kafka"
)
KAFKA_TOPIC_PARTITION_UNDER_REPLICATED_PARTITION = _family(
    "kafka_topic_partition_under_replicated_partition",
    "gauge",
    ("topic", "partition"),
    _KAFKA_EXPORTER,
    "kafka",
)
KAFKA_TOPIC_PARTITION_IN_SYNC_REPLICA = _family(
    "kafka_topic_partition_in_sync_replica",
    "gauge",
    ("topic", "partition"),
    _KAFKA_EXPORTER,
    "kafka",
)

# The brokers' JMX exporter rules of the stack itself (`components.data.kafka.
# jmx_exporter_config`, lowercaseOutputName): kafka.server ReplicaManager and
# kafka.controller KafkaController gauges (Apache Kafka's monitoring docs list the MBeans).
_KAFKA_JMX = "swarmstack Strimzi JMX exporter rules (components/data/kafka.py)"
_BROKER_LABELS = ("namespace", "pod", "strimzi_io_cluster")
KAFKA_UNDER_REPLICATED_PARTITIONS = _family(
    "kafka_server_replicamanager_underreplicatedpartitions",
    "gauge",
    _BROKER_LABELS,
    _KAFKA_JMX,
    "kafka",
)
KAFKA_UNDER_MIN_ISR_PARTITIONS = _family(
    "kafka_server_replicamanager_underminisrpartitioncount",
    "gauge",
    _BROKER_LABELS,
    _KAFKA_JMX,
    "kafka",
)
KAFKA_OFFLINE_REPLICAS = _family(
    "kafka_server_replicamanager_offlinereplicacount", "gauge", _BROKER_LABELS, _KAFKA_JMX, "kafka"
)
KAFKA_PARTITION_COUNT = _family(
    "kafka_server_replicamanager_partitioncount", "gauge", _BROKER_LABELS, _KAFKA_JMX, "kafka"
)
KAFKA_ACTIVE_CONTROLLERS = _family(
    "kafka_controller_kafkacontroller_activecontrollercount",
    "gauge",
    _BROKER_LABELS,
    _KAFKA_JMX,
    "kafka",
)
KAFKA_OFFLINE_PARTITIONS = _family(
    "kafka_controller_kafkacontroller_offlinepartitionscount",
    "gauge",
    _BROKER_LABELS,
    _KAFKA_JMX,
    "kafka",
)
KAFKA_MESSAGES_IN_TOTAL = _family(
    "kafka_server_brokertopicmetrics_messagesin_total",
    "counter",
    (*_BROKER_LABELS, "topic"),
    _KAFKA_JMX,
    "kafka",
)
KAFKA_LOG_SIZE_BYTES = _family(
    "kafka_log_size_bytes", "gauge", (*_BROKER_LABELS, "topic", "partition"), _KAFKA_JMX, "kafka"
)

# oliver006/redis_exporter README ("What's exported": INFO fields as redis_<field>).
_REDIS = "redis_exporter README (INFO fields exported as redis_*)"
REDIS_UP = _family("redis_up", "gauge", (), _REDIS)
REDIS_MEMORY_USED_BYTES = _family("redis_memory_used_bytes", "gauge", (), _REDIS)
REDIS_MEMORY_MAX_BYTES = _family("redis_memory_max_bytes", "gauge", (), _REDIS)
REDIS_CONNECTED_CLIENTS = _family("redis_connected_clients", "gauge", (), _REDIS)
REDIS_EVICTED_KEYS_TOTAL = _family("redis_evicted_keys_total", "counter", (), _REDIS)

# Prometheus itself: the synthetic series of every scrape (docs: "Jobs and instances").
_PROMETHEUS = "Prometheus docs, Jobs and instances (automatically generated series)"
UP = _family("up", "gauge", ("job", "instance"), _PROMETHEUS)
SCRAPE_DURATION_SECONDS = _family(
    "scrape_duration_seconds", "gauge", ("job", "instance"), _PROMETHEUS
)

# The stack's cost recording rules (group `swarmstack-cost`). Prices of pools come from
# the stack's config, node counts from kube-state-metrics, replicas and tokens from vLLM
# and the workers' counters.
_COST = "swarmstack recording rules, group swarmstack-cost"
# A pool's $/hour counts its nodes in kube_node_labels: the cluster's.
POOL_USD_PER_HOUR = _family("swarmstack:pool_usd_per_hour", "gauge", ("pool",), _COST, "cluster")
MODEL_REPLICAS = _family("swarmstack:model_replicas", "gauge", ("model",), _COST)
MODEL_USD_PER_HOUR = _family("swarmstack:model_usd_per_hour", "gauge", ("model",), _COST)
MODEL_TOKENS_PER_SECOND = _family("swarmstack:model_tokens_per_second", "gauge", ("model",), _COST)
MODEL_USD_PER_TOKEN = _family("swarmstack:model_usd_per_token", "gauge", ("model",), _COST)
AGENT_USD_PER_HOUR = _family("swarmstack:agent_usd_per_hour", "gauge", ("agent",), _COST)
AGENT_USD_PER_1K_TURNS = _family("swarmstack:agent_usd_per_1k_turns", "gauge", ("agent",), _COST)

EXPORTER_FAMILIES: tuple[MetricFamily, ...] = tuple(
    value for value in tuple(globals().values()) if isinstance(value, MetricFamily)
)


# --------------------------------------------------------------------------- vLLM


def vllm_families(path: Path = VLLM_METRICS_FILE) -> tuple[MetricFamily, ...]:
    """vLLM's families as captured from a running server of the deployed release."""
    doc: dict[str, Any] = json.loads(path.read_text())
    source = f"vLLM {doc['version']} /metrics ({path.name})"
    families: list[MetricFamily] = []
    for family in doc["families"]:
        kind: Kind = family["type"]
        name = str(family["name"])
        query_name = f"{name}_total" if kind == "counter" else name
        families.append(
            MetricFamily(
                query_name,
                kind,
                frozenset(family["labels"]),
                source,
                None,
                frozenset(family["series"]),
            )
        )
    return tuple(families)


# --------------------------------------------------------------------------- agent worker


def worker_families(path: Path = WORKER_METRICS_MD) -> tuple[MetricFamily, ...]:
    """The agent worker's families: the contract table of its METRICS.md."""
    # The worker's own parser of its table (the worker's tests check it against the code).
    from agent_worker.contract import contract_from_markdown  # noqa: PLC0415

    rows = contract_from_markdown(path.read_text())
    where = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
    source = f"agent worker contract ({where})"
    return tuple(
        MetricFamily(name, _kind(kind, name), labels, source)
        for name, (kind, labels) in rows.items()
    )


def _kind(kind: str, name: str) -> Kind:
    for known in ("counter", "gauge", "histogram", "summary"):
        if kind == known:
            return known
    raise ValueError(f"METRICS.md: family {name} has type {kind!r} (counter, gauge, histogram)")


# --------------------------------------------------------------------------- checks


@cache
def catalogue() -> Mapping[str, MetricFamily]:
    """Every sample name a query may select -> its family."""
    return index((*vllm_families(), *worker_families(), *EXPORTER_FAMILIES))


def index(families: Iterable[MetricFamily]) -> dict[str, MetricFamily]:
    """Sample name -> family; a name two sources claim is an error, not a choice."""
    by_series: dict[str, MetricFamily] = {}
    for family in families:
        for series in family.sample_names():
            if series in by_series and by_series[series].source != family.source:
                raise ValueError(
                    f"{series} is claimed by {by_series[series].source} and {family.source}"
                )
            by_series[series] = family
    return by_series


def unknown_metrics(expr: str, known: Mapping[str, MetricFamily] | None = None) -> set[str]:
    """The metric names `expr` selects that no catalogued family exposes."""
    table = catalogue() if known is None else known
    return {name for name in query_metric_names(expr) if name not in table}


# Labels every scraped series carries besides its own: `job` and `instance` from
# Prometheus, `namespace`, `pod`, `service`, `container` and `endpoint` from the
# Prometheus operator's ServiceMonitor/PodMonitor relabelling (the local target adds the
# same ones).
TARGET_LABELS = frozenset(
    {"job", "instance", "namespace", "pod", "service", "container", "endpoint"}
)


def unknown_labels(
    expr: str, known: Mapping[str, MetricFamily] | None = None
) -> dict[str, set[str]]:
    """Metric -> label names that `expr`'s matchers test but its family does not have."""
    table = catalogue() if known is None else known
    unknown: dict[str, set[str]] = {}
    for selector in query_selectors(expr):
        family = table.get(selector.name) if selector.name is not None else None
        if family is None:
            continue
        name = str(selector.name)
        own: set[str] = set()  # the bucket's edge, the quantile of a summary's value
        if family.kind == "histogram" and name.endswith("_bucket"):
            own.add("le")
        if family.kind == "summary" and not name.endswith(("_sum", "_count")):
            own.add("quantile")
        extra = selector.labels - family.labels - TARGET_LABELS - own
        if extra:
            unknown.setdefault(name, set()).update(extra)
    return unknown


def query_needs(expr: str, known: Mapping[str, MetricFamily] | None = None) -> frozenset[Need]:
    """What a Prometheus must scrape to answer `expr` (empty: the local target has it)."""
    table = catalogue() if known is None else known
    needs: set[Need] = set()
    for name in query_metric_names(expr):
        family = table.get(name)
        if family is not None and family.needs is not None:
            needs.add(family.needs)
    return frozenset(needs)
