"""The metrics contract: METRICS.md, the code and the exposition agree."""

from __future__ import annotations

from pathlib import Path

from agent_worker import metrics as m
from agent_worker.contract import contract_from_markdown

METRICS_MD = Path(__file__).resolve().parent.parent / "images" / "agent-worker" / "METRICS.md"


def exercised() -> m.Metrics:
    """A registry with a sample in every labelled family."""
    metrics = m.Metrics("agent-a")
    metrics.touch_session("s1")
    metrics.model_call("model-x", input_tokens=10, output_tokens=3)
    metrics.model_errors.labels("agent-a").inc()
    metrics.ttft.labels("agent-a", m.turn_bucket(2)).observe(0.05)
    metrics.tool_calls.labels("agent-a", "ledger", "ok").inc()
    metrics.tool_errors.labels("agent-a", "calculator").inc()
    metrics.tool_repeats.labels("agent-a", "clock").inc()
    metrics.step_latency.labels("agent-a", "model").observe(0.2)
    metrics.turns.labels("agent-a", "done").inc()
    metrics.resumes.labels("agent-a", "model_done").inc()
    metrics.checkpoints.labels("agent-a", "accepted").inc()
    metrics.tasks.labels("agent-a", "published").inc()
    metrics.budget_actions.labels("agent-a", "user", "degraded").inc()
    metrics.budget_used.labels("agent-a").set(0.5)
    metrics.rate_limited([1.5], gave_up=True)
    metrics.gateway_budget.labels("agent-a", "model-x", "degraded").inc()
    return metrics


def test_markdown_table_is_the_code_contract() -> None:
    assert contract_from_markdown(METRICS_MD.read_text()) == m.contract_from_code()


def test_names_are_unique_and_prometheus_style() -> None:
    names = [spec.name for spec in m.CONTRACT]
    assert len(names) == len(set(names))
    for spec in m.CONTRACT:
        assert spec.name.startswith("agent_")
        assert spec.name.endswith("_total") == (spec.kind == "counter")
        if spec.kind == "histogram":
            assert spec.name.endswith("_seconds")


def test_exposition_matches_the_contract() -> None:
    text = exercised().exposition().decode()
    exposed = m.families_from_exposition(text)
    for name, (kind, labels) in m.contract_from_code().items():
        assert exposed[name] == (kind, labels), name
    assert "_created" not in text


def test_no_label_names_a_session_or_user() -> None:
    """Contract version 2: series are bounded by agent type and model, not by users."""
    for spec in m.CONTRACT:
        assert not {"session", "user"} & set(spec.labels), spec.name
    text = exercised().exposition().decode()
    assert 'agent_model_input_tokens_total{agent="agent-a",model="model-x"} 10.0' in text
    assert 'agent_model_ttft_seconds_count{agent="agent-a",turn_bucket="2-3"} 1.0' in text


def test_turn_buckets() -> None:
    expected = {1: "1", 2: "2-3", 3: "2-3", 4: "4-7", 7: "4-7", 8: "8-15", 15: "8-15"}
    expected |= {16: "16+", 500: "16+"}
    assert {i: m.turn_bucket(i) for i in expected} == expected


def test_active_sessions_window() -> None:
    metrics = m.Metrics("a")
    metrics.touch_session("old", now=0.0)
    metrics.touch_session("new", now=m.ACTIVE_WINDOW_S)
    assert metrics._count_active(now=m.ACTIVE_WINDOW_S) == 2.0
    assert metrics._count_active(now=m.ACTIVE_WINDOW_S + 1) == 1.0
    assert metrics._count_active(now=3 * m.ACTIVE_WINDOW_S) == 0.0


def test_rate_limits_and_gateway_budgets_start_at_zero_and_count_waits() -> None:
    """The rate-limit and gateway-budget families exist at 0 for the agent's model and its
    cheaper one before anything happened, and a call's waits count as retries."""
    metrics = m.Metrics("agent-a", ("big", "small"))
    text = metrics.exposition().decode()
    for outcome in ("retried", "gave_up"):
        assert f'agent_model_rate_limited_total{{agent="agent-a",outcome="{outcome}"}} 0.0' in text
    assert 'agent_model_backoff_seconds_total{agent="agent-a"} 0.0' in text
    for model in ("big", "small"):
        for action in ("degraded", "refused"):
            sample = f'agent_gateway_budget_actions_total{{action="{action}",agent="agent-a",'
            assert f'{sample}model="{model}"}} 0.0' in text

    metrics.rate_limited([0.5, 1.25], gave_up=False)  # two waits, then it went through
    metrics.rate_limited([], gave_up=True)  # refused once, no time left to wait
    text = metrics.exposition().decode()
    assert 'agent_model_rate_limited_total{agent="agent-a",outcome="retried"} 2.0' in text
    assert 'agent_model_rate_limited_total{agent="agent-a",outcome="gave_up"} 1.0' in text
    assert 'agent_model_backoff_seconds_total{agent="agent-a"} 1.75' in text
