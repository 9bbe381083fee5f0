"""The metrics contract: METRICS.md, the code and the exposition agree."""

from __future__ import annotations

from pathlib import Path

from agent_worker import metrics as m

METRICS_MD = Path(__file__).resolve().parent.parent / "images" / "agent-worker" / "METRICS.md"


def exercised() -> m.Metrics:
    """A registry with a sample in every labelled family."""
    metrics = m.Metrics("agent-a")
    metrics.touch_session("s1", "u1")
    metrics.model_call("s1", "u1", input_tokens=10, output_tokens=3)
    metrics.model_errors.labels("agent-a").inc()
    metrics.ttft.labels("agent-a").observe(0.05)
    metrics.tool_calls.labels("agent-a", "ledger", "ok").inc()
    metrics.tool_errors.labels("agent-a", "calculator").inc()
    metrics.tool_repeats.labels("agent-a", "clock").inc()
    metrics.step_latency.labels("agent-a", "model").observe(0.2)
    metrics.turns.labels("agent-a", "done").inc()
    metrics.resumes.labels("agent-a", "model_done").inc()
    metrics.checkpoints.labels("agent-a", "accepted").inc()
    metrics.tasks.labels("agent-a", "published").inc()
    return metrics


def test_markdown_table_is_the_code_contract() -> None:
    assert m.contract_from_markdown(METRICS_MD.read_text()) == m.contract_from_code()


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


def test_active_sessions_window_and_series_pruning() -> None:
    metrics = m.Metrics("a")
    metrics.touch_session("old", "u", now=0.0)
    metrics.touch_session("new", "u", now=m.SERIES_IDLE_S)
    metrics.model_call("old", "u", 1, 1)
    assert metrics._count_active(now=m.SERIES_IDLE_S) == 1.0
    exposed = metrics.exposition().decode()
    assert 'session="old"' in exposed  # idle, but not yet past the series limit
    metrics._count_active(now=m.SERIES_IDLE_S + 1)
    assert 'session="old"' not in metrics.exposition().decode()
