"""The stack's Grafana dashboards, built with grafana-foundation-sdk and shipped as ConfigMaps.

Five dashboards, each built from the stack's typed config by a pure function:

- model serving: per model, TTFT/ITL/E2E percentiles with the model's SLO objectives as
  threshold lines, the queue (waiting and running requests), KV cache usage, tokens/s;
- agents: active sessions, turns by outcome, tool calls and errors, the loop counter
  (identical repeated tool calls), TTFT by turn index bucket, tokens, budgets;
- GPU and MIG: utilisation and memory per GPU and MIG slice, XID errors, each node's MIG
  configuration state (`nvidia.com/mig.config.state` through kube-state-metrics);
- data plane: Kafka consumer lag and partition health, Redis memory against its limit;
- cost: $/hour by pool and by model, $ per token, $ per agent and per 1,000 turns, from
  the stack's cost recording rules.

Every query names only metrics of `components.observe.catalogue` (a test checks each one)
and reads the Prometheus data source that the monitoring release provisions in Grafana.
`Dashboards` declares one ConfigMap per dashboard, labelled for Grafana's dashboard
sidecar, in the monitoring namespace. `dashboard_queries` lists every query with its
dashboard and panel, and what a Prometheus needs to answer it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import pulumi
import pulumi_kubernetes as k8s
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    Threshold,
    ThresholdsMode,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from components.compute.instances import INSTANCE_TYPES
from components.data.kafka import KafkaSpec
from components.data.redis import RedisSpec
from components.observe.catalogue import POOL_NODE_LABEL
from components.observe.selection import DASHBOARD_LABEL, MONITORING_NAMESPACE
from components.specs import CostLabels, GpuPoolSpec, ModelSpec, Namespaces

if TYPE_CHECKING:
    from stacks.config import StackConfig

# kube-prometheus-stack's Grafana provisions its Prometheus as the default data source
# with this uid (grafana.sidecar.datasources.uid).
PROMETHEUS_DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")
UID_PREFIX = "swarmstack-"
RATE_WINDOW = "5m"
PERCENTILES = (0.5, 0.95, 0.99)
GIB = 2**30


@dataclass(frozen=True)
class DashboardInputs:
    """What the dashboards are built from: the parts of a stack's config they read."""

    models: tuple[ModelSpec, ...]
    gpu_pools: tuple[GpuPoolSpec, ...]
    namespaces: Namespaces
    cost_labels: CostLabels
    kafka: KafkaSpec | None = None
    redis: RedisSpec | None = None
    # A region of a multi-cluster deployment (config `regional.region`): the cost board
    # says which, and shows $/hour by the `region` label its cost rules carry.
    region: str | None = None

    @staticmethod
    def from_config(config: StackConfig) -> DashboardInputs:
        return DashboardInputs(
            models=tuple(config.models),
            gpu_pools=tuple(config.gpu_pools),
            namespaces=config.namespaces,
            cost_labels=config.cost_labels,
            kafka=config.data_plane.kafka,
            redis=config.data_plane.redis,
            region=config.regional.region if config.regional is not None else None,
        )


@dataclass(frozen=True)
class Dashboard:
    slug: str  # names the ConfigMap and the uid
    title: str
    model: dict[str, Any]  # the dashboard JSON model

    @property
    def uid(self) -> str:
        return f"{UID_PREFIX}{self.slug}"

    def to_json(self) -> str:
        return json.dumps(self.model, indent=2, sort_keys=True) + "\n"


class DashboardQuery(NamedTuple):
    """One PromQL expression of a dashboard panel."""

    dashboard: str
    panel: str
    promql: str

    @property
    def needs(self) -> frozenset[str]:
        """`gpu`, `kafka`, `cluster`: what a Prometheus must scrape to answer it (empty:
        the local target's vLLM, worker and Redis produce every series it reads)."""
        from components.observe.catalogue import query_needs  # noqa: PLC0415

        return frozenset(query_needs(self.promql))


# --------------------------------------------------------------------------- panel helpers


def _query(expr: str, legend: str, ref: str) -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .expr(expr)
        .legend_format(legend)
        .ref_id(ref)
        .datasource(PROMETHEUS_DATASOURCE)
    )


def _refs() -> Iterator[str]:
    return iter("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _thresholds(lines: tuple[float, ...]) -> dash.ThresholdsConfig:
    steps = [Threshold(value=None, color="green")]
    steps += [
        Threshold(value=v, color="red" if i == len(lines) - 1 else "orange")
        for i, v in enumerate(lines)
    ]
    return dash.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps)


def graph(
    title: str,
    queries: list[tuple[str, str]],
    unit: str,
    *,
    description: str = "",
    lines: tuple[float, ...] = (),
    span: int = 12,
) -> timeseries.Panel:
    """A time series panel; `lines` are drawn as threshold lines (objectives, limits)."""
    refs = _refs()
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .span(span)
        .height(8)
        .datasource(PROMETHEUS_DATASOURCE)
        .legend(
            common_builders.VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .calcs(["lastNotNull", "max"])
        )
    )
    for expr, legend in queries:
        panel = panel.with_target(_query(expr, legend, next(refs)))
    if lines:
        panel = panel.thresholds(_thresholds(lines)).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.LINE)
        )
    return panel


def single(
    title: str,
    expr: str,
    unit: str,
    *,
    description: str = "",
    lines: tuple[float, ...] = (),
    span: int = 6,
) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .span(span)
        .height(4)
        .datasource(PROMETHEUS_DATASOURCE)
        .with_target(_query(expr, "", "A"))
    )
    if lines:
        panel = panel.thresholds(_thresholds(lines))
    return panel


def listing(title: str, expr: str, *, description: str = "", span: int = 12) -> table.Panel:
    query = _query(expr, "", "A").instant().format(PromQueryFormat.TABLE)
    return (
        table.Panel()
        .title(title)
        .description(description)
        .span(span)
        .height(8)
        .datasource(PROMETHEUS_DATASOURCE)
        .with_target(query)
    )


def _board(slug: str, title: str, description: str) -> dash.Dashboard:
    return (
        dash.Dashboard(title)
        .uid(f"{UID_PREFIX}{slug}")
        .description(description)
        .tags(["swarmstack", slug])
        .editable()
        .refresh("30s")
        .time("now-3h", "now")
        .timezone(common.TimeZoneUtc)
    )


def _percentile_queries(metric: str, selector: str) -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by (le) "
            f"(rate({metric}_bucket{{{selector}}}[{RATE_WINDOW}])))",
            f"p{round(q * 100)}",
        )
        for q in PERCENTILES
    ]


# --------------------------------------------------------------------------- the dashboards


def model_serving(inputs: DashboardInputs) -> dash.Dashboard:
    board = _board(
        "model-serving",
        "swarmstack / Model serving",
        "vLLM per model: latency percentiles against the model's SLO (threshold lines), "
        "queue, KV cache and tokens per second.",
    )
    for model in inputs.models:
        sel = f'model_name="{model.model}"'
        slo = model.slo
        board = board.with_row(dash.Row(f"{model.name} ({model.model}, {slo.tier})"))
        board = (
            board.with_panel(
                graph(
                    "Time to first token",
                    _percentile_queries("vllm:time_to_first_token_seconds", sel),
                    "s",
                    description=f"Objective: p99 under {slo.ttft_p99_ms} ms (the line).",
                    lines=(slo.ttft_p99_ms / 1000,),
                    span=8,
                )
            )
            .with_panel(
                graph(
                    "Inter-token latency",
                    _percentile_queries("vllm:inter_token_latency_seconds", sel),
                    "s",
                    description=f"Objective: p99 under {slo.itl_p99_ms} ms (the line).",
                    lines=(slo.itl_p99_ms / 1000,),
                    span=8,
                )
            )
            .with_panel(
                graph(
                    "End-to-end request latency",
                    _percentile_queries("vllm:e2e_request_latency_seconds", sel),
                    "s",
                    description=f"Objective: p99 under {slo.e2e_p99_s} s (the line).",
                    lines=(float(slo.e2e_p99_s),),
                    span=8,
                )
            )
            .with_panel(
                graph(
                    "Queue",
                    [
                        (f"sum(vllm:num_requests_waiting{{{sel}}})", "waiting"),
                        (f"sum(vllm:num_requests_running{{{sel}}})", "running"),
                    ],
                    "short",
                    description=f"Requests waiting for and holding a batch slot; each replica "
                    f"runs at most {model.vllm.max_num_seqs} (maxNumSeqs).",
                    span=8,
                )
            )
            .with_panel(
                graph(
                    "KV cache usage",
                    [(f"max by (pod) (vllm:kv_cache_usage_perc{{{sel}}})", "{{pod}}")],
                    "percentunit",
                    description="Share of the KV cache blocks in use, per replica; near 1 "
                    "requests are preempted.",
                    lines=(0.9,),
                    span=8,
                )
            )
            .with_panel(
                graph(
                    "Tokens per second",
                    [
                        (f"sum(rate(vllm:prompt_tokens_total{{{sel}}}[{RATE_WINDOW}]))", "prompt"),
                        (
                            f"sum(rate(vllm:generation_tokens_total{{{sel}}}[{RATE_WINDOW}]))",
                            "generation",
                        ),
                    ],
                    "short",
                    span=8,
                )
            )
        )
    return board


def agents(inputs: DashboardInputs) -> dash.Dashboard:
    del inputs  # every agent type shows up by its `agent` label
    w = RATE_WINDOW
    return (
        _board(
            "agents",
            "swarmstack / Agents",
            "Agent workers: sessions, turns, tool calls and errors, loops, latency by turn "
            "index, tokens and budgets, by agent type.",
        )
        .with_row(dash.Row("Work"))
        .with_panel(
            graph(
                "Active sessions",
                [("sum by (agent) (agent_active_sessions)", "{{agent}}")],
                "short",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Turns in flight",
                [("sum by (agent) (agent_inflight_turns)", "{{agent}}")],
                "short",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Turns by outcome",
                [
                    (
                        f"sum by (agent, outcome) (rate(agent_turns_total[{w}]))",
                        "{{agent}} {{outcome}}",
                    )
                ],
                "ops",
                span=8,
            )
        )
        .with_row(dash.Row("Tools"))
        .with_panel(
            graph(
                "Tool calls by outcome",
                [
                    (
                        f"sum by (agent, tool, outcome) (rate(agent_tool_calls_total[{w}]))",
                        "{{agent}} {{tool}} {{outcome}}",
                    )
                ],
                "ops",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Tool error ratio",
                [
                    (
                        f"sum by (agent, tool) (rate(agent_tool_errors_total[{w}])) / "
                        "sum by (agent, tool) "
                        f'(rate(agent_tool_calls_total{{outcome!="replayed"}}[{w}]))',
                        "{{agent}} {{tool}}",
                    )
                ],
                "percentunit",
                description="Executed tool calls that returned an error; several tools "
                "failing at once is a cascade.",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Repeated identical tool calls (loops)",
                [
                    (
                        "sum by (agent, tool) (increase(agent_tool_call_repeats_total[10m]))",
                        "{{agent}} {{tool}}",
                    )
                ],
                "short",
                description="Calls identical to an earlier call of the same session, over 10 "
                "minutes: an agent stuck in a loop.",
                span=8,
            )
        )
        .with_row(dash.Row("Model calls"))
        .with_panel(
            graph(
                "TTFT p95 by turn index",
                [
                    (
                        "histogram_quantile(0.95, sum by (turn_bucket, le) "
                        f"(rate(agent_model_ttft_seconds_bucket[{w}])))",
                        "turn {{turn_bucket}}",
                    )
                ],
                "s",
                description="Time to first token as the worker sees it, by the turn's index in "
                "its session: rising with the index means the context grows too large.",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Tokens per second",
                [
                    (
                        f"sum by (agent, model) (rate(agent_model_input_tokens_total[{w}]))",
                        "{{agent}} {{model}} input",
                    ),
                    (
                        f"sum by (agent, model) (rate(agent_model_output_tokens_total[{w}]))",
                        "{{agent}} {{model}} output",
                    ),
                ],
                "short",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Model call errors",
                [(f"sum by (agent) (rate(agent_model_errors_total[{w}]))", "{{agent}}")],
                "ops",
                span=8,
            )
        )
        .with_row(dash.Row("Budgets"))
        .with_panel(
            graph(
                "Daily token budget used",
                [("max by (agent) (agent_budget_used_ratio)", "{{agent}}")],
                "percentunit",
                description="Each agent type's tokens today over its daily budget (0 when it "
                "has none); at 1 the worker refuses its turns.",
                lines=(1.0,),
            )
        )
        .with_panel(
            graph(
                "Budget actions",
                [
                    (
                        "sum by (agent, scope, action) (increase(agent_budget_actions_total[1h]))",
                        "{{agent}} {{scope}} {{action}}",
                    )
                ],
                "short",
                description="Turns degraded (cheaper model, fewer steps) or refused, by the "
                "budget that was reached, over the last hour.",
            )
        )
    )


def pool_layout(pool: GpuPoolSpec) -> str:
    itype = INSTANCE_TYPES[pool.instance_type]
    slices = f"MIG {' + '.join(pool.mig.profiles)} per GPU" if pool.mig else "whole GPUs"
    return f"{pool.name}: {itype.gpus} x {itype.gpu_model} per node, {slices}"


def gpu_mig(inputs: DashboardInputs) -> dash.Dashboard:
    layouts = "; ".join(pool_layout(p) for p in inputs.gpu_pools)
    slice_by = "Hostname, gpu, GPU_I_PROFILE, GPU_I_ID"
    slice_legend = "{{Hostname}} gpu {{gpu}} {{GPU_I_PROFILE}} {{GPU_I_ID}}"
    models_ns = inputs.namespaces.models
    board = (
        _board(
            "gpu-mig",
            "swarmstack / GPUs and MIG",
            "DCGM exporter per GPU and MIG slice, and the MIG manager's state per node. "
            f"Pools: {layouts}.",
        )
        .with_row(dash.Row("Utilisation and memory"))
        .with_panel(
            graph(
                "Graphics engine active per GPU / slice",
                [(f"avg by ({slice_by}) (DCGM_FI_PROF_GR_ENGINE_ACTIVE)", slice_legend)],
                "percentunit",
                description="DCGM_FI_PROF_GR_ENGINE_ACTIVE: the utilisation a MIG slice reports "
                "(DCGM_FI_DEV_GPU_UTIL is not available per slice).",
            )
        )
        .with_panel(
            graph(
                "Frame buffer used per GPU / slice",
                [
                    (
                        f"sum by ({slice_by}) (DCGM_FI_DEV_FB_USED) / "
                        f"sum by ({slice_by}) (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE)",
                        slice_legend,
                    )
                ],
                "percentunit",
                lines=(0.95,),
            )
        )
        .with_panel(
            graph(
                "Model servers' slices",
                [
                    (
                        "avg by (pod, GPU_I_PROFILE) "
                        f'(DCGM_FI_PROF_GR_ENGINE_ACTIVE{{namespace="{models_ns}"}})',
                        "{{pod}} {{GPU_I_PROFILE}}",
                    )
                ],
                "percentunit",
                description=f"Engine activity of the devices the pods of {models_ns} hold.",
            )
        )
        .with_panel(
            graph(
                "Power draw",
                [("sum by (Hostname, gpu) (DCGM_FI_DEV_POWER_USAGE)", "{{Hostname}} gpu {{gpu}}")],
                "watt",
            )
        )
        .with_row(dash.Row("Errors and MIG configuration"))
        .with_panel(
            listing(
                "Last XID error per GPU",
                "max by (Hostname, gpu) (DCGM_FI_DEV_XID_ERRORS) > 0",
                description="DCGM_FI_DEV_XID_ERRORS holds the last XID error's code; any row "
                "here is a GPU that reported one (see NVIDIA's XID catalogue).",
            )
        )
        .with_panel(
            listing(
                "MIG configuration state per node",
                "count by (node, label_nvidia_com_mig_config_state) "
                '(kube_node_labels{label_nvidia_com_mig_config_state!=""})',
                description="The MIG manager's nvidia.com/mig.config.state node label: "
                "success, pending, rebooting or failed.",
            )
        )
        .with_panel(
            single(
                "Nodes whose MIG configuration failed",
                'count(kube_node_labels{label_nvidia_com_mig_config_state="failed"}) or vector(0)',
                "short",
                lines=(1.0,),
            )
        )
    )
    board = board.with_row(dash.Row("GPU pools"))
    for pool in inputs.gpu_pools:
        board = board.with_panel(
            single(
                f"{pool.name}: nodes (max {pool.max_size})",
                f'count(kube_node_labels{{{POOL_NODE_LABEL}="{pool.name}"}}) or vector(0)',
                "short",
                description=f"Nodes of pool {pool.name} ({pool.instance_type}); at "
                f"maxSize {pool.max_size} the pool cannot grow.",
                lines=(float(pool.max_size),),
            )
        )
    return board


def data_plane(inputs: DashboardInputs) -> dash.Dashboard:
    board = _board(
        "data-plane",
        "swarmstack / Data plane",
        "The agents' event bus and session store: consumer lag, partition health, Redis memory.",
    )
    if inputs.kafka is not None:
        kafka = inputs.kafka
        board = (
            board.with_row(dash.Row(f"Kafka ({kafka.mode})"))
            .with_panel(
                graph(
                    "Consumer lag by group and topic",
                    [
                        (
                            "sum by (consumergroup, topic) (kafka_consumergroup_lag >= 0)",
                            "{{consumergroup}} {{topic}}",
                        )
                    ],
                    "short",
                    description="Messages not yet committed by each consumer group (-1, no "
                    "committed offset yet, is left out).",
                )
            )
            .with_panel(
                graph(
                    "Under-replicated partitions",
                    [
                        (
                            "sum by (topic) (kafka_topic_partition_under_replicated_partition)",
                            "{{topic}}",
                        )
                    ],
                    "short",
                    lines=(1.0,),
                    span=6,
                )
            )
            .with_panel(
                single(
                    "Brokers",
                    "max(kafka_brokers)",
                    "short",
                    description=f"The stack runs {kafka.brokers} brokers.",
                    span=6,
                )
            )
        )
    if inputs.redis is not None:
        redis = inputs.redis
        board = (
            board.with_row(dash.Row(f"Session store ({redis.engine}, {redis.mode})"))
            .with_panel(
                graph(
                    "Memory used against maxmemory",
                    [
                        (
                            "max by (pod) (redis_memory_used_bytes) "
                            "/ max by (pod) (redis_memory_max_bytes > 0)",
                            "{{pod}}",
                        )
                    ],
                    "percentunit",
                    description=f"At 1 the store applies its maxmemory policy "
                    f"({redis.maxmemory_policy}).",
                    lines=(0.9,),
                )
            )
            .with_panel(
                graph(
                    "Memory used",
                    [("max by (pod) (redis_memory_used_bytes)", "{{pod}}")],
                    "bytes",
                    description=f"The store's pods have {redis.memory_gib} GiB (the line).",
                    lines=(float(redis.memory_gib * GIB),),
                )
            )
        )
    return board


def cost(inputs: DashboardInputs) -> dash.Dashboard:
    title, about = "swarmstack / Cost", ""
    if inputs.region is not None:
        title = f"swarmstack / Cost ({inputs.region})"
        about = (
            f" Region {inputs.region}: every cost series carries the label region="
            f"{inputs.region}, so a view over several regions' Prometheus splits by it."
        )
    board = _board(
        "cost",
        title,
        "GPU pools' $/hour from the stack's prices, turned into $ per token per model and "
        f"$ per agent by the swarmstack-cost recording rules.{about}",
    )
    if inputs.region is not None:
        board = board.with_row(dash.Row("Regions")).with_panel(
            graph(
                "$/hour by region",
                [("sum by (region) (swarmstack:pool_usd_per_hour)", "{{region}}")],
                "currencyUSD",
            )
        )
    return (
        board.with_row(dash.Row("Infrastructure"))
        .with_panel(
            single("Total $/hour", "sum(swarmstack:pool_usd_per_hour)", "currencyUSD", span=6)
        )
        .with_panel(
            graph(
                "$/hour by pool",
                [("sum by (pool) (swarmstack:pool_usd_per_hour)", "{{pool}}")],
                "currencyUSD",
                span=18,
            )
        )
        .with_row(dash.Row("Models"))
        .with_panel(
            graph(
                "$/hour by model",
                [("sum by (model) (swarmstack:model_usd_per_hour)", "{{model}}")],
                "currencyUSD",
                description="Each model's share of its pool: whole GPUs, or MIG slices by their "
                "fraction of the GPU.",
                span=8,
            )
        )
        .with_panel(
            graph(
                "$ per 1M tokens by model",
                [("sum by (model) (swarmstack:model_usd_per_token) * 1e6", "{{model}}")],
                "currencyUSD",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Tokens per second by model",
                [("sum by (model) (swarmstack:model_tokens_per_second)", "{{model}}")],
                "short",
                span=8,
            )
        )
        .with_row(dash.Row("Agents"))
        .with_panel(
            graph(
                "$/hour by agent",
                [("sum by (agent) (swarmstack:agent_usd_per_hour)", "{{agent}}")],
                "currencyUSD",
            )
        )
        .with_panel(
            graph(
                "$ per 1,000 turns by agent",
                [("sum by (agent) (swarmstack:agent_usd_per_1k_turns)", "{{agent}}")],
                "currencyUSD",
            )
        )
    )


BUILDERS: tuple[tuple[str, Callable[[DashboardInputs], dash.Dashboard]], ...] = (
    ("model-serving", model_serving),
    ("agents", agents),
    ("gpu-mig", gpu_mig),
    ("data-plane", data_plane),
    ("cost", cost),
)


def encode(model: object) -> dict[str, Any]:
    """A built SDK object as its Grafana JSON (the SDK's own encoder)."""
    decoded: dict[str, Any] = json.loads(JSONEncoder(sort_keys=True).encode(model))
    return decoded


def build_dashboards(inputs: DashboardInputs) -> tuple[Dashboard, ...]:
    """The five dashboards' JSON models."""
    boards: list[Dashboard] = []
    for slug, build in BUILDERS:
        model = encode(build(inputs).build())
        for number, panel in enumerate(model["panels"], start=1):
            panel["id"] = number  # the SDK leaves every id 0; Grafana links panels by id
        boards.append(Dashboard(slug, str(model["title"]), model))
    return tuple(boards)


def panel_queries(board: Dashboard) -> Iterator[DashboardQuery]:
    for panel in board.model.get("panels", []):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if expr:
                yield DashboardQuery(board.slug, str(panel.get("title", "")), str(expr))


def dashboard_queries(config: StackConfig) -> list[DashboardQuery]:
    """Every (dashboard, panel, PromQL) of the stack's dashboards; `.needs` on each says
    whether it needs GPU, Kafka or cluster metrics that a local Prometheus cannot have."""
    inputs = DashboardInputs.from_config(config)
    return [q for board in build_dashboards(inputs) for q in panel_queries(board)]


# --------------------------------------------------------------------------- component


@dataclass(frozen=True)
class DashboardsArgs:
    inputs: DashboardInputs
    namespace: str = MONITORING_NAMESPACE


def config_map_name(slug: str) -> str:
    return f"{UID_PREFIX}dashboard-{slug}"


class Dashboards(pulumi.ComponentResource):
    """One ConfigMap per dashboard in the monitoring namespace, for Grafana's sidecar."""

    config_maps: dict[str, k8s.core.v1.ConfigMap]

    def __init__(
        self, name: str, args: DashboardsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("swarmstack:observe:Dashboards", name, None, opts)
        key, value = DASHBOARD_LABEL
        labels = {**args.inputs.cost_labels.as_labels(), key: value}
        self.config_maps = {}
        for board in build_dashboards(args.inputs):
            self.config_maps[board.slug] = k8s.core.v1.ConfigMap(
                f"{name}-{board.slug}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=config_map_name(board.slug), namespace=args.namespace, labels=labels
                ),
                data={f"{board.uid}.json": board.to_json()},
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs(
            {
                "configMaps": {
                    slug: cm.metadata.apply(lambda m: m.name)
                    for slug, cm in self.config_maps.items()
                }
            }
        )
