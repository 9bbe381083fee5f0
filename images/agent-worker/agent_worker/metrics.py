"""Prometheus metrics: the contract in METRICS.md, defined in one place.

`CONTRACT` lists every metric family this worker exposes (name as it appears in the
exposition, type, labels); a test checks it against METRICS.md and against /metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from agent_worker.state import TOOL_NAMES

prometheus_client.disable_created_metrics()

ACTIVE_WINDOW_S = 300.0  # a session is active if it had a turn on this worker this recently
STEP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

TOKEN_LABELS = ("agent", "model")
# The turn's index in its session (1 = first turn), bucketed for agent_model_ttft_seconds.
TURN_BUCKETS: tuple[tuple[int, str], ...] = ((1, "1"), (3, "2-3"), (7, "4-7"), (15, "8-15"))
TURN_BUCKET_LAST = "16+"
BUDGET_SCOPES = ("session", "user", "agent")
BUDGET_ACTIONS = ("degraded", "refused")
RATE_LIMIT_OUTCOMES = ("retried", "gave_up")


def turn_bucket(index: int) -> str:
    """`agent_model_ttft_seconds`'s turn_bucket for the turn `index` (1-based) of a session."""
    for upper, name in TURN_BUCKETS:
        if index <= upper:
            return name
    return TURN_BUCKET_LAST


@dataclass(frozen=True)
class MetricSpec:
    name: str  # family name in the exposition (counters end in _total)
    kind: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    help: str


CONTRACT: tuple[MetricSpec, ...] = (
    MetricSpec(
        "agent_model_input_tokens_total",
        "counter",
        TOKEN_LABELS,
        "Prompt tokens sent to the model (usage reported by the endpoint).",
    ),
    MetricSpec(
        "agent_model_output_tokens_total",
        "counter",
        TOKEN_LABELS,
        "Completion tokens received from the model.",
    ),
    MetricSpec(
        "agent_model_calls_total",
        "counter",
        TOKEN_LABELS,
        "Completed model calls (one per step).",
    ),
    MetricSpec(
        "agent_model_errors_total",
        "counter",
        ("agent",),
        "Model calls that failed (HTTP error, bad stream, timeout).",
    ),
    MetricSpec(
        "agent_model_ttft_seconds",
        "histogram",
        ("agent", "turn_bucket"),
        "Time from sending a model call to its first streamed chunk, by the turn's index in "
        "its session (1, 2-3, 4-7, 8-15, 16+).",
    ),
    MetricSpec(
        "agent_tool_calls_total",
        "counter",
        ("agent", "tool", "outcome"),
        "Tool calls by outcome: ok, error, replayed (answered from the journal).",
    ),
    MetricSpec(
        "agent_tool_errors_total",
        "counter",
        ("agent", "tool"),
        "Tool calls that returned an error (bad arguments, failed evaluation).",
    ),
    MetricSpec(
        "agent_tool_call_repeats_total",
        "counter",
        ("agent", "tool"),
        "Tool calls identical (same tool, same arguments) to an earlier call of the "
        "same session: loop detection.",
    ),
    MetricSpec(
        "agent_step_latency_seconds",
        "histogram",
        ("agent", "kind"),
        "Duration of one step of the tool loop; kind is model or tool.",
    ),
    MetricSpec(
        "agent_active_sessions",
        "gauge",
        ("agent",),
        "Sessions with a turn on this worker in the last 300 s.",
    ),
    MetricSpec(
        "agent_inflight_turns", "gauge", ("agent",), "Turns and tasks running on this worker now."
    ),
    MetricSpec(
        "agent_turns_total",
        "counter",
        ("agent", "outcome"),
        "Finished turns: done, failed, interrupted (shutdown), replayed "
        "(a finished turn re-sent), conflict (turn held by another worker).",
    ),
    MetricSpec(
        "agent_turn_resumes_total",
        "counter",
        ("agent", "from_phase"),
        "Turns resumed from a checkpoint, by the phase they resumed from.",
    ),
    MetricSpec(
        "agent_checkpoints_total",
        "counter",
        ("agent", "phase"),
        "Session checkpoints written, by phase.",
    ),
    MetricSpec(
        "agent_tasks_total",
        "counter",
        ("agent", "outcome"),
        "Event-mode tasks: published, duplicate (redelivered, nothing new "
        "published), recovered (publish found on the topic), invalid.",
    ),
    MetricSpec(
        "agent_budget_actions_total",
        "counter",
        ("agent", "scope", "action"),
        "Turns run degraded or refused by a token budget; scope is session, user or agent.",
    ),
    MetricSpec(
        "agent_budget_used_ratio",
        "gauge",
        ("agent",),
        "The agent type's tokens today over its daily budget (0 without one).",
    ),
    MetricSpec(
        "agent_model_rate_limited_total",
        "counter",
        ("agent", "outcome"),
        "Model calls rate limited (429 without a budget marker): retried (waited for "
        "Retry-After or a backoff, then sent again) or gave_up (attempts used up or the "
        "wait would pass MODEL_TIMEOUT_S).",
    ),
    MetricSpec(
        "agent_model_backoff_seconds_total",
        "counter",
        ("agent",),
        "Seconds model calls waited on rate limits before being sent again.",
    ),
    MetricSpec(
        "agent_gateway_budget_actions_total",
        "counter",
        ("agent", "model", "action"),
        "Model steps the gateway refused for a spent budget of `model`: degraded (the turn "
        "went on with the agent's cheaper model) or refused (the turn failed).",
    ),
    MetricSpec(
        "agent_ready",
        "gauge",
        ("agent",),
        "1 while the worker takes work, 0 while draining for shutdown.",
    ),
)


def _base(spec: MetricSpec) -> str:
    return spec.name.removesuffix("_total") if spec.kind == "counter" else spec.name


class Metrics:
    """All metric objects, on a private registry (one per worker process)."""

    def __init__(self, agent: str, models: tuple[str, ...] = ()) -> None:
        self.agent = agent
        self.registry = CollectorRegistry()
        prometheus_client.ProcessCollector(registry=self.registry)
        specs = {s.name: s for s in CONTRACT}

        def counter(name: str) -> Counter:
            s = specs[name]
            return Counter(_base(s), s.help, s.labels, registry=self.registry)

        def gauge(name: str) -> Gauge:
            s = specs[name]
            return Gauge(_base(s), s.help, s.labels, registry=self.registry)

        def histogram(name: str, buckets: tuple[float, ...]) -> Histogram:
            s = specs[name]
            return Histogram(_base(s), s.help, s.labels, buckets=buckets, registry=self.registry)

        self.input_tokens = counter("agent_model_input_tokens_total")
        self.output_tokens = counter("agent_model_output_tokens_total")
        self.model_calls = counter("agent_model_calls_total")
        self.model_errors = counter("agent_model_errors_total")
        self.ttft = histogram("agent_model_ttft_seconds", TTFT_BUCKETS)
        self.tool_calls = counter("agent_tool_calls_total")
        self.tool_errors = counter("agent_tool_errors_total")
        self.tool_repeats = counter("agent_tool_call_repeats_total")
        self.step_latency = histogram("agent_step_latency_seconds", STEP_BUCKETS)
        self.active_sessions = gauge("agent_active_sessions")
        self.inflight = gauge("agent_inflight_turns")
        self.turns = counter("agent_turns_total")
        self.resumes = counter("agent_turn_resumes_total")
        self.checkpoints = counter("agent_checkpoints_total")
        self.tasks = counter("agent_tasks_total")
        self.budget_actions = counter("agent_budget_actions_total")
        self.budget_used = gauge("agent_budget_used_ratio")
        self.rate_limits = counter("agent_model_rate_limited_total")
        self.backoff = counter("agent_model_backoff_seconds_total")
        self.gateway_budget = counter("agent_gateway_budget_actions_total")
        self.ready = gauge("agent_ready")

        self._seen: dict[str, float] = {}
        self.active_sessions.labels(agent).set_function(self._count_active)
        self.inflight.labels(agent).set(0)
        self.budget_used.labels(agent).set(0)
        self.ready.labels(agent).set(0)
        # Counters of rare events exist from the start at 0 for every label value the
        # worker knows: rate() over a series never written returns nothing, so a panel
        # would show "No data" (and an error ratio no answer) where the truth is 0.
        self.model_errors.labels(agent)
        for tool in TOOL_NAMES:
            self.tool_errors.labels(agent, tool)
            self.tool_repeats.labels(agent, tool)
        for scope in BUDGET_SCOPES:
            for action in BUDGET_ACTIONS:
                self.budget_actions.labels(agent, scope, action)
        for outcome in RATE_LIMIT_OUTCOMES:
            self.rate_limits.labels(agent, outcome)
        self.backoff.labels(agent)
        for model in models:  # the agent's model and its cheaper one, if any
            for action in BUDGET_ACTIONS:
                self.gateway_budget.labels(agent, model, action)

    # active sessions (a count, never a label) ----------------------------------------------
    def touch_session(self, session: str, now: float | None = None) -> None:
        self._seen[session] = time.monotonic() if now is None else now

    def _count_active(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        for key, seen in list(self._seen.items()):
            if now - seen > ACTIVE_WINDOW_S:
                del self._seen[key]
        return float(len(self._seen))

    def model_call(self, model: str, input_tokens: int, output_tokens: int) -> None:
        """One finished model call. Per-session and per-user accounting is in the usage
        records (`swarm:usage`), not in labels."""
        labels = (self.agent, model)
        self.model_calls.labels(*labels).inc()
        self.input_tokens.labels(*labels).inc(input_tokens)
        self.output_tokens.labels(*labels).inc(output_tokens)

    def rate_limited(self, waits: list[float], *, gave_up: bool) -> None:
        """One model call's rate-limit history: each wait was followed by another send;
        `gave_up` when the call ended rate limited."""
        if waits:
            self.rate_limits.labels(self.agent, "retried").inc(len(waits))
            self.backoff.labels(self.agent).inc(sum(waits))
        if gave_up:
            self.rate_limits.labels(self.agent, "gave_up").inc()

    def exposition(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


# contract checks (used by the tests against METRICS.md and a live /metrics) -------------
def contract_from_code() -> dict[str, tuple[str, frozenset[str]]]:
    return {s.name: (s.kind, frozenset(s.labels)) for s in CONTRACT}


def families_from_exposition(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """Families in a /metrics body: contract name -> (type, label names seen on samples)."""
    out: dict[str, tuple[str, frozenset[str]]] = {}
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        labels: set[str] = set()
        for sample in family.samples:
            labels |= set(sample.labels) - {"le"}
        out[name] = (family.type, frozenset(labels))
    return out
