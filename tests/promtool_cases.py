"""promtool unit tests of the pilot's rules: for every alert a case where it fires and one
where it stays silent, and the cost rules' $ figures from the catalogue's prices.

The cases are data here; `promtool_files` writes them in promtool's test format (one file
per evaluation interval) against the rule file `render_rule_file` wrote. Input series are
written the way the exporters expose them (vLLM's `model_name`, prometheus_client's
`le="1.0"`, kube-state-metrics' `label_*`), with the target labels the Prometheus
operator adds where a rule reads them (namespace, pod).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.observe.alerts import le_value

QWEN = "Qwen/Qwen2.5-7B-Instruct"
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
QWEN_NAME = "qwen25-7b"  # its `models[].name`, the name the gateway serves it under
WORKER_TTFT_EDGES = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10)


def series(name: str, labels: Mapping[str, str], values: str) -> dict[str, str]:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def histogram(
    name: str,
    labels: Mapping[str, str],
    edges: Sequence[float],
    observed_at_s: float,
    *,
    per_step: int,
    steps: int,
    good_per_step: int | None = None,
) -> list[dict[str, str]]:
    """A classic histogram's bucket and count series: `per_step` observations per step, all
    at `observed_at_s`, or with `good_per_step`: that many under every edge, the rest above."""
    out: list[dict[str, str]] = []
    for edge in [*edges, float("inf")]:
        under = (
            (per_step if edge >= observed_at_s else 0)
            if good_per_step is None
            else (per_step if edge == float("inf") else good_per_step)
        )
        le = "+Inf" if edge == float("inf") else le_value(edge)
        out.append(series(f"{name}_bucket", {**labels, "le": le}, f"0+{under}x{steps}"))
    out.append(series(f"{name}_count", labels, f"0+{per_step}x{steps}"))
    return out


def slo_histogram(
    family: str,
    model: str,
    edge_s: float,
    *,
    per_step: int,
    good: int,
    steps: int,
    track: str = "stable",
) -> list[dict[str, str]]:
    """vLLM's histogram for one engine: `good` of every `per_step` requests under the edge,
    on pods of version `track` (the label the model servers' PodMonitor adds)."""
    labels = {
        "model_name": model,
        "engine": "0",
        "namespace": "swarmstack-models",
        "pod": f"{track}-0",
        "track": track,
    }
    return histogram(
        family, labels, [edge_s], 0, per_step=per_step, steps=steps, good_per_step=good
    )


@dataclass(frozen=True)
class Case:
    alert: str
    fires: bool
    why: str
    input: list[dict[str, str]]
    eval_time: str
    labels: Mapping[str, str] = field(default_factory=dict[str, str])
    interval: str = "1m"


@dataclass(frozen=True)
class ExprCase:
    why: str
    input: list[dict[str, str]]
    eval_time: str
    expr: str
    samples: list[tuple[Mapping[str, str], float]]
    interval: str = "1m"


R = {"agent": "researcher", "namespace": "swarmstack-agents", "pod": "researcher-0"}
NODE = "ip-10-40-1-17.ec2.internal"


def _pool_node(node: str, state: str | None = None) -> dict[str, str]:
    labels = {"node": node, "label_swarmstack_io_pool": "h100-mig"}
    if state is not None:
        labels["label_nvidia_com_mig_config_state"] = state
    return labels


def _tool_series(tool: str, errors: int, ok: int) -> list[dict[str, str]]:
    tool_labels = {**R, "tool": tool}
    return [
        series("agent_tool_errors_total", tool_labels, f"0+{errors}x30"),
        series("agent_tool_calls_total", {**tool_labels, "outcome": "error"}, f"0+{errors}x30"),
        series("agent_tool_calls_total", {**tool_labels, "outcome": "ok"}, f"0+{ok}x30"),
    ]


def _ttft(turn_bucket: str, at_s: float) -> list[dict[str, str]]:
    labels = {**R, "agent": "concierge", "turn_bucket": turn_bucket}
    return histogram(
        "agent_model_ttft_seconds", labels, WORKER_TTFT_EDGES, at_s, per_step=10, steps=45
    )


def _tokens(
    spikes_at_min: Sequence[int], minutes: int = 1560, step: int = 10
) -> list[dict[str, str]]:
    """researcher's input tokens, a sample every `step` minutes: 100/s, and 1,000/s during
    the hour after each spike start."""
    values: list[str] = []
    total = 0
    for minute in range(0, minutes + 1, step):
        values.append(str(total))
        spiking = any(s <= minute < s + 60 for s in spikes_at_min)
        total += (1_000 if spiking else 100) * 60 * step
    labels = {**R, "model": QWEN}
    return [
        series("agent_model_input_tokens_total", labels, " ".join(values)),
        series("agent_model_output_tokens_total", labels, f"0x{minutes // step}"),
    ]


def _lag(first: int, second: int) -> list[dict[str, str]]:
    labels = {"consumergroup": "researcher", "topic": "researcher.tasks"}
    return [
        series("kafka_consumergroup_lag", {**labels, "partition": "0"}, f"{first}x20"),
        series("kafka_consumergroup_lag", {**labels, "partition": "1"}, f"{second}x20"),
    ]


def _redis(used: float, limit: float) -> list[dict[str, str]]:
    labels = {"namespace": "swarmstack-data", "pod": "session-store-0"}
    return [
        series("redis_memory_used_bytes", labels, f"{used:.0f}x20"),
        series("redis_memory_max_bytes", labels, f"{limit:.0f}x20"),
    ]


TTFT = "vllm:time_to_first_token_seconds"
ITL = "vllm:inter_token_latency_seconds"
DCGM = {"Hostname": NODE, "gpu": "0", "UUID": "GPU-5a1c", "modelName": "NVIDIA H100 80GB HBM3"}
BROKER = {"namespace": "swarmstack-data", "pod": "events-broker-0"}
QWEN_POD = {"model_name": QWEN, "engine": "0", "namespace": "swarmstack-models"}

CASES: list[Case] = [
    # --- agents
    Case(
        "AgentToolCallLoop",
        True,
        "one repeated call a minute: 10 in 10 min",
        [series("agent_tool_call_repeats_total", {**R, "tool": "retrieve"}, "0+1x20")],
        "15m",
        {"agent": "researcher", "tool": "retrieve"},
    ),
    Case(
        "AgentToolCallLoop",
        False,
        "a single repeat is not a loop",
        [series("agent_tool_call_repeats_total", {**R, "tool": "retrieve"}, "0x10 1x10")],
        "15m",
    ),
    Case(
        "AgentToolErrorCascade",
        True,
        "two tools failing half their calls",
        [*_tool_series("retrieve", 5, 5), *_tool_series("ledger", 5, 5)],
        "20m",
        {"agent": "researcher"},
    ),
    Case(
        "AgentToolErrorCascade",
        False,
        "one tool failing alone is no cascade",
        [*_tool_series("retrieve", 5, 5), *_tool_series("ledger", 0, 10)],
        "20m",
    ),
    Case(
        "AgentLatencyDegradation",
        True,
        "turns 8-15 answer at ~1 s, first turns at ~0.1 s",
        [*_ttft("1", 0.09), *_ttft("8-15", 0.9)],
        "45m",
        {"agent": "concierge", "turn_bucket": "8-15"},
    ),
    Case(
        "AgentLatencyDegradation",
        False,
        "later turns as fast as first turns",
        [*_ttft("1", 0.09), *_ttft("8-15", 0.09)],
        "45m",
    ),
    Case(
        "AgentTokenRateAnomaly",
        True,
        "10x the tokens of the same hour yesterday",
        _tokens([1500]),
        "26h",
        {"agent": "researcher"},
        interval="10m",
    ),
    Case(
        "AgentTokenRateAnomaly",
        False,
        "the same spike as yesterday is the baseline",
        _tokens([60, 1500]),
        "26h",
        interval="10m",
    ),
    Case(
        "AgentBudgetBurnHigh",
        True,
        "85% of the daily budget spent",
        [series("agent_budget_used_ratio", R, "0.85x10")],
        "10m",
        {"agent": "researcher"},
    ),
    Case(
        "AgentBudgetBurnHigh",
        False,
        "at 100% only AgentBudgetExhausted fires",
        [series("agent_budget_used_ratio", R, "1.2x10")],
        "10m",
    ),
    Case(
        "AgentBudgetExhausted",
        True,
        "the whole budget spent",
        [series("agent_budget_used_ratio", R, "1x5")],
        "5m",
        {"agent": "researcher"},
    ),
    Case(
        "AgentBudgetExhausted",
        False,
        "99% is not exhausted",
        [series("agent_budget_used_ratio", R, "0.99x5")],
        "5m",
    ),
    # --- models: qwen's ITL objective is 50 ms, llama's 100 ms (per-model edges)
    Case(
        "ModelSloFastBurn",
        True,
        "20% of llama's token gaps above 100 ms for an hour",
        slo_histogram(ITL, LLAMA, 0.1, per_step=100, good=80, steps=70),
        "65m",
        {"model": LLAMA, "slo": "itl", "track": "stable"},
    ),
    # A canary taking 50 of every 1050 requests, a fifth of them slow: 1% of all requests,
    # which a model-wide ratio would never alert on; the canary's own ratio is 20%.
    Case(
        "ModelSloFastBurn",
        True,
        "20% of the canary's token gaps above 100 ms, the stable version clean",
        [
            *slo_histogram(ITL, LLAMA, 0.1, per_step=1000, good=1000, steps=70),
            *slo_histogram(ITL, LLAMA, 0.1, per_step=50, good=40, steps=70, track="canary"),
        ],
        "65m",
        {"model": LLAMA, "slo": "itl", "track": "canary"},
    ),
    Case(
        "ModelSloFastBurn",
        False,
        "5% of qwen's first tokens above 500 ms: under 6x",
        slo_histogram(TTFT, QWEN, 0.5, per_step=100, good=95, steps=70),
        "65m",
    ),
    Case(
        "ModelSloFastBurn",
        False,
        "every llama token gap under 100 ms but over 50 ms",
        slo_histogram(ITL, LLAMA, 0.1, per_step=100, good=100, steps=70),
        "65m",
    ),
    Case(
        "ModelSloSlowBurn",
        True,
        "4% of qwen's first tokens above 500 ms for a day",
        slo_histogram(TTFT, QWEN, 0.5, per_step=1000, good=960, steps=160),
        "26h",
        {"model": QWEN, "slo": "ttft", "track": "stable"},
        interval="10m",
    ),
    Case(
        "ModelSloSlowBurn",
        False,
        "0.5% above the objective: within budget",
        slo_histogram(TTFT, QWEN, 0.5, per_step=1000, good=995, steps=160),
        "26h",
        interval="10m",
    ),
    Case(
        "VllmQueueSaturated",
        True,
        "13 requests waiting over two replicas",
        [
            series("vllm:num_requests_waiting", {**QWEN_POD, "pod": "qwen-a"}, "8x10"),
            series("vllm:num_requests_waiting", {**QWEN_POD, "pod": "qwen-b"}, "5x10"),
        ],
        "10m",
        {"model": QWEN},
    ),
    Case(
        "VllmQueueSaturated",
        False,
        "9 waiting",
        [series("vllm:num_requests_waiting", {**QWEN_POD, "pod": "qwen-a"}, "9x10")],
        "10m",
    ),
    Case(
        "VllmKvCacheSaturated",
        True,
        "95% of the KV cache in use for 15 min",
        [series("vllm:kv_cache_usage_perc", {**QWEN_POD, "pod": "qwen-a"}, "0.95x20")],
        "15m",
        {"model": QWEN, "namespace": "swarmstack-models", "pod": "qwen-a"},
    ),
    Case(
        "VllmKvCacheSaturated",
        False,
        "85% in use",
        [series("vllm:kv_cache_usage_perc", {**QWEN_POD, "pod": "qwen-a"}, "0.85x20")],
        "15m",
    ),
    # --- GPUs
    Case(
        "GpuMigConfigFailed",
        True,
        "the MIG manager set state failed",
        [series("kube_node_labels", _pool_node(NODE, "failed"), "1x5")],
        "5m",
        {"node": NODE},
    ),
    Case(
        "GpuMigConfigFailed",
        False,
        "state success",
        [series("kube_node_labels", _pool_node(NODE, "success"), "1x5")],
        "5m",
    ),
    Case(
        "GpuMigConfigPending",
        True,
        "pending for 25 min",
        [series("kube_node_labels", _pool_node(NODE, "pending"), "1x30")],
        "25m",
        {"node": NODE},
    ),
    Case(
        "GpuMigConfigPending",
        False,
        "pending for 5 min, then applied",
        [
            series("kube_node_labels", _pool_node(NODE, "pending"), "1x5"),
            series("kube_node_labels", _pool_node(NODE, "success"), "_x5 1x25"),
        ],
        "25m",
    ),
    Case(
        "GpuXidErrors",
        True,
        "XID 79 (GPU fell off the bus)",
        [series("DCGM_FI_DEV_XID_ERRORS", DCGM, "0 0 79x5")],
        "5m",
        {"Hostname": NODE, "gpu": "0", "UUID": "GPU-5a1c"},
    ),
    Case(
        "GpuXidErrors",
        False,
        "no XID",
        [series("DCGM_FI_DEV_XID_ERRORS", DCGM, "0x5")],
        "5m",
    ),
    Case(
        "GpuPoolAtMaxNodes",
        True,
        "both of the pool's maxSize 2 nodes up for 35 min",
        [
            series("kube_node_labels", _pool_node(NODE, "success"), "1x40"),
            series("kube_node_labels", _pool_node("ip-10-40-1-18.ec2.internal", "success"), "1x40"),
        ],
        "35m",
        {"pool": "h100-mig", "max_size": "2"},
    ),
    Case(
        "GpuPoolAtMaxNodes",
        False,
        "one node of two",
        [series("kube_node_labels", _pool_node(NODE, "success"), "1x40")],
        "35m",
    ),
    # --- data plane
    Case(
        "KafkaConsumerLagHigh",
        True,
        "1,200 messages behind over two partitions",
        _lag(800, 400),
        "15m",
        {"consumergroup": "researcher", "topic": "researcher.tasks"},
    ),
    Case("KafkaConsumerLagHigh", False, "700 behind", _lag(300, 400), "15m"),
    Case(
        "KafkaUnderReplicatedPartitions",
        True,
        "3 partitions under-replicated",
        [series("kafka_server_replicamanager_underreplicatedpartitions", BROKER, "3x10")],
        "10m",
        BROKER,
    ),
    Case(
        "KafkaUnderReplicatedPartitions",
        False,
        "all in sync",
        [series("kafka_server_replicamanager_underreplicatedpartitions", BROKER, "0x10")],
        "10m",
    ),
    Case(
        "RedisMemoryNearLimit",
        True,
        "3.9 of 4 GB in use",
        _redis(3.9e9, 4e9),
        "15m",
        {"namespace": "swarmstack-data", "pod": "session-store-0"},
    ),
    Case("RedisMemoryNearLimit", False, "half the limit", _redis(2e9, 4e9), "15m"),
    Case("RedisMemoryNearLimit", False, "no maxmemory set (0)", _redis(3.9e9, 0), "15m"),
]

# --- cost: prices of the pilot from the catalogue (p5.4xlarge: 1 x H100 at $6.88/h, MIG
# layout 3g.40gb + 3g.40gb: each slice half the GPU). Two qwen replicas and one llama.
P5_4XLARGE_USD_PER_HOUR = 6.88
SLICE_SHARE = 3 / (3 + 3)
QWEN_USD_PER_HOUR = 2 * P5_4XLARGE_USD_PER_HOUR * SLICE_SHARE  # 6.88
LLAMA_USD_PER_HOUR = 1 * P5_4XLARGE_USD_PER_HOUR * SLICE_SHARE  # 3.44
QWEN_TOKENS_PER_S = 60 + 40  # generation + prompt
QWEN_USD_PER_TOKEN = QWEN_USD_PER_HOUR / 3600 / QWEN_TOKENS_PER_S
RESEARCHER_TOKENS_PER_S = 30 + 20  # input + output, all on qwen
RESEARCHER_USD_PER_HOUR = RESEARCHER_TOKENS_PER_S * QWEN_USD_PER_TOKEN * 3600  # 3.44
RESEARCHER_TURNS_PER_HOUR = 0.5 * 3600  # done turns; replayed ones do not count
RESEARCHER_USD_PER_1K_TURNS = RESEARCHER_USD_PER_HOUR / RESEARCHER_TURNS_PER_HOUR * 1000


def _running(model: str, pod: str) -> dict[str, str]:
    return series(
        "vllm:num_requests_running",
        {"model_name": model, "engine": "0", "namespace": "swarmstack-models", "pod": pod},
        "1x10",
    )


COST_INPUT = [
    series("kube_node_labels", _pool_node(NODE, "success"), "1x10"),
    _running(QWEN, "qwen-a"),
    _running(QWEN, "qwen-b"),
    _running(LLAMA, "llama-a"),
    series("vllm:generation_tokens_total", {**QWEN_POD, "pod": "qwen-a"}, "0+3600x10"),
    series("vllm:prompt_tokens_total", {**QWEN_POD, "pod": "qwen-a"}, "0+2400x10"),
    # The pilot's workers call the gateway, so they name the model by its gateway name.
    series("agent_model_input_tokens_total", {**R, "model": QWEN_NAME}, "0+1800x10"),
    series("agent_model_output_tokens_total", {**R, "model": QWEN_NAME}, "0+1200x10"),
    series("agent_turns_total", {**R, "outcome": "done"}, "0+30x10"),
    series("agent_turns_total", {**R, "outcome": "replayed"}, "0+30x10"),
]


def _micro(record: str, labels: Mapping[str, str], usd: float) -> ExprCase:
    """The figure in micro-dollars, rounded (promtool compares values exactly)."""
    return ExprCase(
        f"{record}{dict(labels)}",
        COST_INPUT,
        "10m",
        f"round({record} * 1e6)",
        [(labels, round(usd * 1e6))],
    )


EXPR_CASES: list[ExprCase] = [
    _micro("swarmstack:pool_usd_per_hour", {"pool": "h100-mig"}, P5_4XLARGE_USD_PER_HOUR),
    ExprCase(
        "replicas", COST_INPUT, "10m", "round(swarmstack:model_replicas)",
        [({"model": LLAMA}, 1), ({"model": QWEN}, 2)],
    ),
    ExprCase(
        "model $/h", COST_INPUT, "10m", "round(swarmstack:model_usd_per_hour * 1e6)",
        [({"model": LLAMA}, round(LLAMA_USD_PER_HOUR * 1e6)),
         ({"model": QWEN}, round(QWEN_USD_PER_HOUR * 1e6))],
    ),
    ExprCase(
        "tokens/s", COST_INPUT, "10m", "round(swarmstack:model_tokens_per_second)",
        [({"model": QWEN}, QWEN_TOKENS_PER_S)],
    ),
    ExprCase(
        "$ per million tokens (llama served none: no figure)", COST_INPUT, "10m",
        "round(swarmstack:model_usd_per_token * 1e12)",
        [({"model": QWEN}, round(QWEN_USD_PER_TOKEN * 1e12)),
         ({"model": QWEN_NAME}, round(QWEN_USD_PER_TOKEN * 1e12))],
    ),
    _micro("swarmstack:agent_usd_per_hour", {"agent": "researcher"}, RESEARCHER_USD_PER_HOUR),
    _micro(
        "swarmstack:agent_usd_per_1k_turns", {"agent": "researcher"}, RESEARCHER_USD_PER_1K_TURNS
    ),
]  # fmt: skip


# --------------------------------------------------------------------------- rendering


def expand(template: str, labels: Mapping[str, str]) -> str:
    """Prometheus' expansion of `{{ $labels.x }}` in an annotation (all the rules use)."""
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)


def _alert_test(case: Case, rules: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    rule = rules[case.alert]
    expected: list[dict[str, Any]] = []
    if case.fires:
        labels = {**rule["labels"], **case.labels}
        expected.append(
            {
                "exp_labels": labels,
                "exp_annotations": {k: expand(v, labels) for k, v in rule["annotations"].items()},
            }
        )
    return {
        "interval": case.interval,
        "name": f"{case.alert} {'fires' if case.fires else 'silent'}: {case.why}",
        "input_series": case.input,
        "alert_rule_test": [
            {"eval_time": case.eval_time, "alertname": case.alert, "exp_alerts": expected}
        ],
    }


def _expr_test(case: ExprCase) -> dict[str, Any]:
    return {
        "interval": case.interval,
        "name": f"cost: {case.why}",
        "input_series": case.input,
        "promql_expr_test": [
            {
                "expr": case.expr,
                "eval_time": case.eval_time,
                "exp_samples": [{"labels": _selector(m), "value": v} for m, v in case.samples],
            }
        ],
    }


def _selector(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def promtool_files(
    rule_file: Path,
    groups: Sequence[Mapping[str, Any]],
    folder: Path,
    cases: Sequence[Case] = CASES,
    expr_cases: Sequence[ExprCase] = EXPR_CASES,
) -> list[Path]:
    """promtool test files for `cases`, one per evaluation interval (a file-wide setting)."""
    rules = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
    tests: dict[str, list[dict[str, Any]]] = {}
    for case in cases:
        tests.setdefault(case.interval, []).append(_alert_test(case, rules))
    for expr_case in expr_cases:
        tests.setdefault(expr_case.interval, []).append(_expr_test(expr_case))
    paths: list[Path] = []
    for interval, body in tests.items():
        path = folder / f"rules-test-{interval}.yaml"
        doc = {
            "rule_files": [str(rule_file)],
            "evaluation_interval": interval,
            # promtool evaluates groups in random order unless told; with a 10m interval an
            # alert evaluated before the recordings it reads finds them older than the 5m
            # lookback and never fires. Prometheus runs groups apart on a 30 s interval,
            # where a one-evaluation lag is harmless; the file's own order is the dependency
            # order (recordings first).
            "group_eval_order": [g["name"] for g in groups],
            "tests": body,
        }
        path.write_text(yaml.safe_dump(doc, sort_keys=False, width=200))
        paths.append(path)
    return paths
