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
