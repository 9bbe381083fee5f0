"""The stack's Prometheus rules as typed data: alerts (agents, models, GPUs, data plane) and
the cost recording rules, rendered once for two targets.

`rule_groups(config)` builds every group from the stack's config (thresholds from
`observability.alerts`, objectives from `models[].slo`, prices from the instance
catalogue); `rule_groups_wire` turns them into the `groups:` of a Prometheus rule file,
which is both the spec of the PrometheusRules the cluster gets and, through
`render_rule_file`, the file the local target's Prometheus loads.

Metric names come from their sources: vLLM 0.32's own `/metrics` (`vllm:` families, label
`model_name`; histogram edges below are vLLM's defaults, `vllm/v1/metrics/buckets.py`),
the agent worker's contract (`images/agent-worker/METRICS.md`), kube-state-metrics
(`kube_node_labels` with `label_<sanitised node label>` for allow-listed labels), the GPU
operator's DCGM exporter, Strimzi's Kafka exporter and the brokers' JMX exporter rules
(`components/data/kafka.py`), and redis_exporter.

A latency objective is a P99: at most 1% of requests slower than it. Prometheus counts the
requests under an objective only at a bucket edge of the histogram, so every objective must
be one (`slo_problems` says which edges are near when it is not).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import Field

from components.compute.instances import INSTANCE_TYPES
from components.compute.nodes import POOL_LABEL
from components.compute.placement import plan_placements
from components.specs import ModelSpec, Spec

if TYPE_CHECKING:
    from stacks.config import StackConfig

RUNBOOK_DIR = "docs/runbooks"
MIG_CONFIG_STATE_LABEL = "nvidia.com/mig.config.state"
# Node labels the rules read through kube-state-metrics' kube_node_labels: the monitoring
# release must allow-list them (--metric-labels-allowlist=nodes=[...]).
KSM_NODE_LABELS = (POOL_LABEL, MIG_CONFIG_STATE_LABEL)

# vLLM 0.32's default bucket upper bounds (seconds), vllm/v1/metrics/buckets.py.
VLLM_RELEASE = "0.32.0"
TTFT_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS_S: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)  # fmt: skip
E2E_BUCKETS_S: tuple[float, ...] = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip

SloKind = Literal["ttft", "itl", "e2e"]


@dataclass(frozen=True)
class Objective:
    """How one latency objective of `models[].slo` maps onto a vLLM histogram."""

    kind: SloKind
    key: str  # the config key under models[].slo
    family: str  # the vLLM histogram
    edges_s: tuple[float, ...]
    unit: Literal["ms", "s"]

    def seconds(self, model: ModelSpec) -> float:
        value = {
            "ttft": model.slo.ttft_p99_ms,
            "itl": model.slo.itl_p99_ms,
            "e2e": model.slo.e2e_p99_s,
        }[self.kind]
        return value / 1000 if self.unit == "ms" else float(value)

    def in_unit(self, seconds: float) -> float:
        return round(seconds * 1000, 6) if self.unit == "ms" else seconds


OBJECTIVES: tuple[Objective, ...] = (
    Objective("ttft", "ttftP99Ms", "vllm:time_to_first_token_seconds", TTFT_BUCKETS_S, "ms"),
    Objective("itl", "itlP99Ms", "vllm:inter_token_latency_seconds", ITL_BUCKETS_S, "ms"),
    Objective("e2e", "e2eP99S", "vllm:e2e_request_latency_seconds", E2E_BUCKETS_S, "s"),
)
SLO_TARGET = 0.99  # a P99 objective: 1% of requests may be slower
# Multi-window, multi-burn-rate alerts (Google SRE workbook, "Alerting on SLOs"): a burn
# rate of 1 spends the 30-day budget in 30 days; each pair is (long window, short window).
FAST_BURN: tuple[tuple[float, str, str], ...] = ((14.4, "1h", "5m"), (6.0, "6h", "30m"))
SLOW_BURN: tuple[tuple[float, str, str], ...] = ((3.0, "1d", "2h"), (1.0, "3d", "6h"))
SLO_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


class AlertThresholds(Spec):
    """Thresholds of the stack's alert rules (`observability.alerts`)."""

    runbook_base_url: str | None = Field(
        default=None,
        pattern=r"^https://\S+/$",
        description="Where the repository's files are browsed, ending in `/` (e.g. "
        "https://github.com/acme/swarmstack/blob/main/): each alert's `runbook_url` is this "
        "plus `docs/runbooks/<alert>.md`. Unset: the repository path alone.",
    )
    loop_repeats: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="Identical tool calls (same tool, same arguments, same session) an agent "
        "may repeat within 10 minutes before AgentToolCallLoop fires.",
    )
    tool_error_ratio: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="Share of a tool's calls failing (5 min) that counts it as failing.",
    )
    tool_error_cascade_tools: int = Field(
        default=2,
        ge=1,
        le=50,
        description="How many of one agent's tools failing at once fire AgentToolErrorCascade.",
    )
    ttft_degradation_ratio: float = Field(
        default=2.0,
        gt=1,
        le=100,
        description="AgentLatencyDegradation fires when a later turn bucket's P90 time to "
        "first token (30 min) is this many times the first turn's.",
    )
    token_rate_anomaly_factor: float = Field(
        default=3.0,
        gt=1,
        le=1000,
        description="AgentTokenRateAnomaly fires when an agent's token rate (1 h) is this many "
        "times both the same hour yesterday and its 7-day mean.",
    )
    token_rate_anomaly_min_tokens_per_s: float = Field(
        default=50.0,
        ge=0,
        description="Token rates (input + output, tokens/s) below this never count as an anomaly.",
    )
    budget_warn_ratio: float = Field(
        default=0.8,
        gt=0,
        lt=1,
        description="Share of an agent type's daily token budget spent that fires "
        "AgentBudgetBurnHigh (AgentBudgetExhausted fires at 1).",
    )
    vllm_queue_waiting: int = Field(
        default=10,
        ge=1,
        le=100_000,
        description="Requests waiting in one model's vLLM queues (all replicas) for 5 minutes "
        "that fire VllmQueueSaturated.",
    )
    kv_cache_usage_ratio: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="KV-cache usage of a vLLM replica (1 = full) held for 10 minutes that "
        "fires VllmKvCacheSaturated.",
    )
    mig_pending_minutes: int = Field(
        default=15,
        ge=1,
        le=1440,
        description="Minutes a node's MIG configuration may stay pending or rebooting.",
    )
    pool_at_max_minutes: int = Field(
        default=30,
        ge=1,
        le=1440,
        description="Minutes a GPU pool may run at its maxSize before GpuPoolAtMaxNodes fires.",
    )
    kafka_consumer_lag_messages: int = Field(
        default=1000,
        ge=1,
        description="Messages a consumer group may lag on a topic for 10 minutes.",
    )
    redis_memory_ratio: float = Field(
        default=0.9,
        gt=0,
        lt=1,
        description="Share of the session store's maxmemory in use that fires "
        "RedisMemoryNearLimit.",
    )


# --------------------------------------------------------------------------- rule data


Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True)
class Alert:
    """One alerting rule. `summary` and `description` may use `{{ $labels.<name> }}`."""

    name: str
    expr: str
    for_: str
    severity: Severity
    summary: str
    description: str
    labels: Mapping[str, str] = field(default_factory=dict[str, str])

    @property
    def runbook(self) -> str:
        """The runbook's path in the repository."""
        return f"{RUNBOOK_DIR}/{kebab(self.name)}.md"


@dataclass(frozen=True)
class Recording:
    record: str
    expr: str
    labels: Mapping[str, str] = field(default_factory=dict[str, str])


Rule = Alert | Recording


@dataclass(frozen=True)
class RuleGroup:
    name: str
    rules: tuple[Rule, ...]
    interval: str | None = None

    @property
    def alerts(self) -> list[Alert]:
        return [r for r in self.rules if isinstance(r, Alert)]


def kebab(name: str) -> str:
    """`AgentToolCallLoop` -> `agent-tool-call-loop`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def ksm_label(node_label: str) -> str:
    """The label kube-state-metrics gives an allow-listed node label in kube_node_labels."""
    return "label_" + re.sub(r"[^a-zA-Z0-9_]", "_", node_label)


def le_value(edge_s: float) -> str:
    """A bucket edge as vLLM's exporter (prometheus_client) writes its `le` label; also the
    form Prometheus 3 normalises classic-histogram `le` labels to."""
    return repr(float(edge_s))


def _q(value: str) -> str:
    """A PromQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _num(value: float) -> str:
    return f"{value:g}" if value == int(value) else repr(value)


# --------------------------------------------------------------------------- validation


def nearest_edges(objective: Objective, seconds: float) -> list[float]:
    """The bucket edges just below and above `seconds`, in the objective's unit, keeping
    only those the config's integer field can hold."""
    usable = [e for e in objective.edges_s if float(objective.in_unit(e)).is_integer() and e > 0]
    i = bisect.bisect_left(usable, seconds)
    around = usable[max(i - 1, 0) : i + 1]
    return [objective.in_unit(e) for e in around]


def slo_problems(models: Sequence[ModelSpec]) -> list[tuple[str, str]]:
    """(config path, message) for every latency objective off its histogram's bucket edges."""
    problems: list[tuple[str, str]] = []
    for i, model in enumerate(models):
        for objective in OBJECTIVES:
            seconds = objective.seconds(model)
            if any(abs(seconds - e) < 1e-9 for e in objective.edges_s):
                continue
            value = objective.in_unit(seconds)
            near = " or ".join(f"{e:g}" for e in nearest_edges(objective, seconds))
            problems.append(
                (
                    f"models[{i}].slo.{objective.key}",
                    f"{value:g} {objective.unit} is not a bucket edge of {objective.family} "
                    f"(vLLM {VLLM_RELEASE}), so Prometheus cannot count the requests slower "
                    f"than it; use {near} (the nearest edges)",
                )
            )
    return problems


# --------------------------------------------------------------------------- pricing


def replica_usd_per_hour(model: ModelSpec, config: StackConfig) -> float:
    """What one replica of `model` costs per hour at its pool's on-demand price: its whole
    GPUs, or its MIG slice's share of the GPU (by compute slices of the pool's layout, so
    the slices of a GPU add up to the GPU's price)."""
    placed = plan_placements(config.models, config.gpu_pools, config.gpu_operator.mig_strategy)
    return placed[model.name].usd_per_replica_hour


def pool_usd_per_node_hour(pool_name: str, config: StackConfig) -> float:
    return INSTANCE_TYPES[config.pool(pool_name).instance_type].on_demand_usd_per_hour


# --------------------------------------------------------------------------- groups


def _runbook_url(alert: Alert, thresholds: AlertThresholds) -> str:
    return (thresholds.runbook_base_url or "") + alert.runbook


def agent_group(t: AlertThresholds) -> RuleGroup:
    tokens = "swarmstack:agent_tokens_per_second:rate1h"
    later = 'agent_model_ttft_seconds_bucket{turn_bucket!="1"}'
    first = 'agent_model_ttft_seconds_bucket{turn_bucket="1"}'
    return RuleGroup(
        "swarmstack-agents",
        (
            Recording(
                tokens,
                "sum by (agent) (rate(agent_model_input_tokens_total[1h]))\n"
                "+ sum by (agent) (rate(agent_model_output_tokens_total[1h]))",
            ),
            Alert(
                "AgentToolCallLoop",
                "sum by (agent, tool) (increase(agent_tool_call_repeats_total[10m]))"
                f" > {t.loop_repeats}",
                "2m",
                "warning",
                "{{ $labels.agent }} repeats identical {{ $labels.tool }} calls",
                f"More than {t.loop_repeats} tool calls in 10 minutes repeated an earlier "
                "call of their session (same tool, same arguments): an agent stuck in a loop.",
            ),
            Alert(
                "AgentToolErrorCascade",
                "count by (agent) (\n"
                "  sum by (agent, tool) (rate(agent_tool_errors_total[5m]))\n"
                '  / sum by (agent, tool) (rate(agent_tool_calls_total{outcome!="replayed"}[5m]))'
                f"\n  > {_num(t.tool_error_ratio)}\n) >= {t.tool_error_cascade_tools}",
                "5m",
                "critical",
                "{{ $labels.agent }}: several tools failing at once",
                f"At least {t.tool_error_cascade_tools} tools of the agent fail more than "
                f"{t.tool_error_ratio:.0%} of their calls: a shared dependency is down.",
            ),
            Alert(
                "AgentLatencyDegradation",
                "histogram_quantile(0.9, sum by (agent, turn_bucket, le) "
                f"(rate({later}[30m])))\n"
                "> on (agent) group_left\n"
                f"{_num(t.ttft_degradation_ratio)} * "
                f"histogram_quantile(0.9, sum by (agent, le) (rate({first}[30m])))",
                "15m",
                "warning",
                "{{ $labels.agent }}: time to first token grows with the session "
                "(turns {{ $labels.turn_bucket }})",
                f"The P90 time to first token of turns {{{{ $labels.turn_bucket }}}} is over "
                f"{_num(t.ttft_degradation_ratio)} times that of first turns: the context "
                "grows with every turn.",
            ),
            Alert(
                "AgentTokenRateAnomaly",
                f"{tokens} > {_num(t.token_rate_anomaly_min_tokens_per_s)}\n"
                f"and {tokens} > {_num(t.token_rate_anomaly_factor)} * ({tokens} offset 1d)\n"
                f"and {tokens} > {_num(t.token_rate_anomaly_factor)} * "
                f"avg_over_time({tokens}[7d])",
                "15m",
                "warning",
                "{{ $labels.agent }} spends tokens far above its own baseline",
                f"The agent's token rate over the last hour is more than "
                f"{_num(t.token_rate_anomaly_factor)} times both the same hour yesterday and "
                "its 7-day mean.",
            ),
            Alert(
                "AgentBudgetBurnHigh",
                f"max by (agent) (agent_budget_used_ratio) >= {_num(t.budget_warn_ratio)} < 1",
                "5m",
                "warning",
                "{{ $labels.agent }} spent over "
                f"{t.budget_warn_ratio:.0%} of its daily token budget",
                "The worker degrades this agent's sessions (cheaper model, fewer steps) from "
                "the budget's degradeAt ratio and refuses new work at 100%.",
            ),
            Alert(
                "AgentBudgetExhausted",
                "max by (agent) (agent_budget_used_ratio) >= 1",
                "0m",
                "critical",
                "{{ $labels.agent }} exhausted its daily token budget",
                "The worker refuses this agent's new turns until the budget's day rolls over "
                "or the budget is raised.",
            ),
        ),
    )


# The model servers' version label (`stable` | `canary`), copied from the pods by their
# PodMonitor (components/serving/model_serving.py TRACK_LABEL).
TRACK = "track"


def _slo_errors(model: ModelSpec, objective: Objective, window: str) -> str:
    """The share of a model's requests above its objective, per version: a canary is
    judged on its own requests, not averaged into the stable version's volume."""
    edge = objective.seconds(model)
    match = f"model_name={_q(model.model)}"
    edge_match = f"{match}, le={_q(le_value(edge))}"
    return (
        f"1 - (\n  sum by ({TRACK}) (rate({objective.family}_bucket{{{edge_match}}}[{window}]))\n"
        f"  / sum by ({TRACK}) (rate({objective.family}_count{{{match}}}[{window}]))\n)"
    )


def _burn(pairs: Sequence[tuple[float, str, str]]) -> str:
    budget = round(1 - SLO_TARGET, 6)
    parts = [
        f"(\n  swarmstack:model_slo_errors:ratio_rate{long} > {_num(round(rate * budget, 6))}\n"
        f"  and swarmstack:model_slo_errors:ratio_rate{short} > {_num(round(rate * budget, 6))}\n)"
        for rate, long, short in pairs
    ]
    return "\nor\n".join(parts)


def model_groups(config: StackConfig, t: AlertThresholds) -> list[RuleGroup]:
    recordings = tuple(
        Recording(
            f"swarmstack:model_slo_errors:ratio_rate{window}",
            _slo_errors(model, objective, window),
            {"model": model.model, "slo": objective.kind},
        )
        for model in config.models
        for objective in OBJECTIVES
        for window in SLO_WINDOWS
    )
    slo_text = (
        "{{ $labels.model }} ({{ $labels.track }}): {{ $labels.slo }} P99 objective is "
        "burning its error budget"
    )
    alerts = (
        Alert(
            "ModelSloFastBurn",
            _burn(FAST_BURN),
            "2m",
            "critical",
            slo_text + " fast",
            "More than 14.4x the error budget over 1 h (and 5 min), or 6x over 6 h (and "
            "30 min): at this rate a month's budget is gone in 2-5 days.",
        ),
        Alert(
            "ModelSloSlowBurn",
            _burn(SLOW_BURN),
            "15m",
            "warning",
            slo_text,
            "More than 3x the error budget over 1 d (and 2 h), or 1x over 3 d (and 6 h).",
        ),
        Alert(
            "VllmQueueSaturated",
            f"sum by (model) ({_as_model('vllm:num_requests_waiting')}) > {t.vllm_queue_waiting}",
            "5m",
            "warning",
            "{{ $labels.model }}: requests queue in vLLM",
            f"More than {t.vllm_queue_waiting} requests wait for a slot in the model's vLLM "
            "replicas: the running batches are full.",
        ),
        Alert(
            "VllmKvCacheSaturated",
            f"max by (model, namespace, pod) ({_as_model('vllm:kv_cache_usage_perc')})"
            f" > {_num(t.kv_cache_usage_ratio)}",
            "10m",
            "warning",
            "{{ $labels.model }}: KV cache of {{ $labels.pod }} is nearly full",
            f"KV-cache usage above {t.kv_cache_usage_ratio:.0%}: vLLM preempts running "
            "requests and queues new ones.",
        ),
    )
    return [
        RuleGroup("swarmstack-model-slo-windows", recordings),
        RuleGroup("swarmstack-models", alerts),
    ]


def _as_model(vector: str) -> str:
    """vLLM's `model_name` label copied to `model`, the label every stack rule uses."""
    return f'label_replace({vector}, "model", "$1", "model_name", "(.+)")'


def _pool_nodes(pool: str) -> str:
    label = ksm_label(POOL_LABEL)
    return (
        f"count by (pool) (label_replace(kube_node_labels{{{label}={_q(pool)}}}, "
        f'"pool", "$1", "{label}", "(.+)"))'
    )


def gpu_group(config: StackConfig, t: AlertThresholds) -> RuleGroup:
    state = ksm_label(MIG_CONFIG_STATE_LABEL)
    rules: list[Rule] = []
    if any(p.mig is not None for p in config.gpu_pools):
        rules += [
            Alert(
                "GpuMigConfigFailed",
                f'max by (node) (kube_node_labels{{{state}="failed"}})',
                "0m",
                "critical",
                "MIG configuration failed on {{ $labels.node }}",
                "The GPU operator's MIG manager could not apply the node's mig-parted "
                "configuration: its MIG slices are not advertised and models cannot start.",
            ),
            Alert(
                "GpuMigConfigPending",
                f'max by (node) (kube_node_labels{{{state}=~"pending|rebooting"}})',
                f"{t.mig_pending_minutes}m",
                "warning",
                "MIG configuration of {{ $labels.node }} is still being applied",
                f"The MIG manager has been applying the node's configuration for over "
                f"{t.mig_pending_minutes} minutes.",
            ),
        ]
    rules.append(
        Alert(
            "GpuXidErrors",
            "max by (Hostname, gpu, UUID) (DCGM_FI_DEV_XID_ERRORS) > 0",
            "0m",
            "critical",
            "GPU {{ $labels.gpu }} of {{ $labels.Hostname }} reported an XID error",
            "DCGM reports the last XID error the driver logged for this GPU (the value is the "
            "XID code); many XIDs need the GPU reset or the node replaced.",
        )
    )
    rules += [
        Alert(
            "GpuPoolAtMaxNodes",
            f"{_pool_nodes(pool.name)} >= {pool.max_size}",
            f"{t.pool_at_max_minutes}m",
            "warning",
            "GPU pool {{ $labels.pool }} runs at its maximum node count",
            f"The pool has run at maxSize for {t.pool_at_max_minutes} minutes: the autoscaler "
            "cannot add capacity, so more replicas stay pending.",
            {"max_size": str(pool.max_size)},
        )
        for pool in config.gpu_pools
    ]
    return RuleGroup("swarmstack-gpus", tuple(rules))


def data_group(config: StackConfig, t: AlertThresholds) -> RuleGroup | None:
    data = config.data_plane
    rules: list[Rule] = []
    if data.kafka is not None and data.kafka.mode == "strimzi":
        rules += [
            Alert(
                "KafkaConsumerLagHigh",
                "sum by (consumergroup, topic) (kafka_consumergroup_lag)"
                f" > {t.kafka_consumer_lag_messages}",
                "10m",
                "warning",
                "Consumer group {{ $labels.consumergroup }} lags on {{ $labels.topic }}",
                f"More than {t.kafka_consumer_lag_messages} messages wait for the group: its "
                "agents consume slower than tasks arrive, or are down.",
            ),
            Alert(
                "KafkaUnderReplicatedPartitions",
                "sum by (namespace, pod) "
                "(kafka_server_replicamanager_underreplicatedpartitions) > 0",
                "5m",
                "critical",
                "Broker {{ $labels.pod }} leads under-replicated partitions",
                "Some partitions this broker leads have fewer in-sync replicas than their "
                "replication factor: a broker is down or cannot keep up.",
            ),
        ]
    if data.redis is not None and data.redis.mode == "inCluster":
        rules.append(
            Alert(
                "RedisMemoryNearLimit",
                "max by (namespace, pod) (redis_memory_used_bytes)\n"
                "/ max by (namespace, pod) (redis_memory_max_bytes > 0)"
                f" > {_num(t.redis_memory_ratio)}",
                "10m",
                "warning",
                "Session store {{ $labels.pod }} is near its maxmemory",
                f"Over {t.redis_memory_ratio:.0%} of maxmemory in use; with noeviction the "
                "store refuses writes when full, and sessions cannot checkpoint.",
            )
        )
    return RuleGroup("swarmstack-data-plane", tuple(rules)) if rules else None


def cost_group(config: StackConfig) -> RuleGroup:
    """Prices in $ from the stack's own catalogue, tokens from vLLM and the workers."""
    rules: list[Rule] = [
        Recording(
            "swarmstack:pool_usd_per_hour",
            f"{_pool_nodes(pool.name)} * {_num(pool_usd_per_node_hour(pool.name, config))}",
            {"pool": pool.name},
        )
        for pool in config.gpu_pools
    ]
    rules.append(
        Recording(
            "swarmstack:model_replicas",
            "count by (model) "
            f"({_as_model('count by (model_name, namespace, pod) (vllm:num_requests_running)')})",
        )
    )
    rules += [
        Recording(
            "swarmstack:model_usd_per_hour",
            f"swarmstack:model_replicas{{model={_q(model.model)}}}"
            f" * {_num(replica_usd_per_hour(model, config))}",
            {"model": model.model},
        )
        for model in config.models
    ]
    rules += [
        Recording(
            "swarmstack:model_tokens_per_second",
            f"sum by (model) ({_as_model('rate(vllm:generation_tokens_total[5m])')})\n"
            f"+ sum by (model) ({_as_model('rate(vllm:prompt_tokens_total[5m])')})",
        ),
        Recording(
            "swarmstack:model_usd_per_token",
            "swarmstack:model_usd_per_hour / 3600 / (swarmstack:model_tokens_per_second > 0)",
        ),
    ]
    if config.gateway is not None:
        # Behind the gateway a worker names its model by the gateway's name (`models[].name`),
        # not vLLM's served id: the same price under that name, so agents' tokens find it.
        rules += [
            Recording(
                "swarmstack:model_usd_per_token",
                f"swarmstack:model_usd_per_token{{model={_q(model.model)}}}",
                {"model": model.name},
            )
            for model in config.models
            if model.name != model.model
        ]
    if config.agents:
        rules += [
            Recording(
                "swarmstack:agent_usd_per_hour",
                "sum by (agent) (\n"
                "  (\n"
                "    sum by (agent, model) (rate(agent_model_input_tokens_total[5m]))\n"
                "    + sum by (agent, model) (rate(agent_model_output_tokens_total[5m]))\n"
                "  )\n"
                "  * on (model) group_left swarmstack:model_usd_per_token\n"
                ") * 3600",
            ),
            Recording(
                "swarmstack:agent_usd_per_1k_turns",
                "swarmstack:agent_usd_per_hour\n"
                "/ (sum by (agent) "
                '(rate(agent_turns_total{outcome=~"done|failed"}[5m])) * 3600 > 0)\n'
                "* 1000",
            ),
        ]
    if config.regional is not None:
        # A region of a multi-cluster deployment: every cost series carries its region.
        where = {"region": config.regional.region}
        rules = [
            replace(r, labels={**r.labels, **where}) if isinstance(r, Recording) else r
            for r in rules
        ]
    return RuleGroup("swarmstack-cost", tuple(rules))


def thresholds_of(config: StackConfig) -> AlertThresholds:
    return config.observability.alerts


def rule_groups(config: StackConfig) -> list[RuleGroup]:
    """Every rule group of the stack, in the order Prometheus evaluates them."""
    t = thresholds_of(config)
    groups: list[RuleGroup] = [cost_group(config)]
    if config.agents:
        groups.append(agent_group(t))
    groups += model_groups(config, t)
    groups.append(gpu_group(config, t))
    data = data_group(config, t)
    if data is not None:
        groups.append(data)
    return groups


# --------------------------------------------------------------------------- rendering


def _wire_rule(rule: Rule, t: AlertThresholds) -> dict[str, Any]:
    if isinstance(rule, Recording):
        out: dict[str, Any] = {"record": rule.record, "expr": rule.expr}
        if rule.labels:
            out["labels"] = dict(rule.labels)
        return out
    return {
        "alert": rule.name,
        "expr": rule.expr,
        "for": rule.for_,
        "labels": {"severity": rule.severity, **rule.labels},
        "annotations": {
            "summary": rule.summary,
            "description": rule.description,
            "runbook_url": _runbook_url(rule, t),
        },
    }


def group_wire(group: RuleGroup, t: AlertThresholds) -> dict[str, Any]:
    out: dict[str, Any] = {"name": group.name}
    if group.interval is not None:
        out["interval"] = group.interval
    out["rules"] = [_wire_rule(r, t) for r in group.rules]
    return out


def rule_groups_wire(config: StackConfig) -> list[dict[str, Any]]:
    """The `groups:` of a Prometheus rule file (and of the PrometheusRules' specs)."""
    t = thresholds_of(config)
    return [group_wire(g, t) for g in rule_groups(config)]


class _Literal(str):
    """A multi-line string YAML writes as a literal block."""


def _literal(dumper: yaml.SafeDumper, value: _Literal) -> yaml.ScalarNode:
    node = dumper.represent_scalar(  # pyright: ignore[reportUnknownMemberType] (PyYAML stub)
        "tag:yaml.org,2002:str", str(value), style="|"
    )
    return node


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, _literal)


def _blocks(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _blocks(v) for k, v in value.items()}  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, list):
        return [_blocks(v) for v in value]  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, str) and "\n" in value:
        return _Literal(value)
    return value


def render_rule_file(config: StackConfig) -> str:
    """The stack's rules as a Prometheus rule file: what the local target's Prometheus loads
    and `promtool check rules` reads."""
    body = _blocks({"groups": rule_groups_wire(config)})
    return yaml.dump(body, Dumper=_Dumper, sort_keys=False, width=100)
