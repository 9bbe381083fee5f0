"""The metrics contract against a running worker: METRICS.md's families, types and labels
are what /metrics exposes after real turns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent_worker.contract import contract_from_markdown
from agent_worker.metrics import families_from_exposition
from agent_worker.state import tool_signature

from loadtests import services
from tests.e2e.worker_client import create_session, metric_value, metrics_text, post_turn

METRICS_MD = Path(__file__).resolve().parents[2] / "images" / "agent-worker" / "METRICS.md"


def test_metrics_match_the_contract(worker_factory: Any) -> None:
    worker = worker_factory({"AGENT_NAME": "contract-agent"})
    sid = create_session(worker.url, user="alice")
    calc = {"message": "What is 6*7?", "tool": "calculator", "max_tokens": 8}
    arguments: list[str] = []
    for turn_id in ("a", "b"):  # the same question twice: likely the same call, a repeat
        stream = post_turn(worker.url, sid, {**calc, "turn_id": turn_id})
        assert stream.names()[-1] == "done"
        arguments.append(stream.first("tool_call")["arguments"])
    post_turn(worker.url, sid, {**calc, "turn_id": "a"})  # a finished turn re-sent

    text = metrics_text(worker.url)
    contract = contract_from_markdown(METRICS_MD.read_text())
    exposed = families_from_exposition(text)
    for name, (kind, labels) in contract.items():
        assert name in exposed, f"{name} missing from /metrics"
        exposed_kind, exposed_labels = exposed[name]
        assert exposed_kind == kind, name
        assert exposed_labels in (labels, frozenset()), (
            name,
            exposed_labels,
        )  # empty: no sample yet

    with_samples = {name for name, (_, labels) in exposed.items() if labels}
    assert {
        "agent_model_input_tokens_total",
        "agent_model_output_tokens_total",
        "agent_model_calls_total",
        "agent_model_ttft_seconds",
        "agent_tool_calls_total",
        "agent_step_latency_seconds",
        "agent_active_sessions",
        "agent_inflight_turns",
        "agent_turns_total",
        "agent_checkpoints_total",
        "agent_ready",
    } <= with_samples

    # Contract version 2: tokens and calls by agent and model; no session or user label.
    who = {"agent": "contract-agent", "model": services.MODEL_NAME}
    assert "session=" not in text and "user=" not in text
    assert metric_value(text, "agent_model_calls_total", **who) == 4
    assert metric_value(text, "agent_model_input_tokens_total", **who) > 0
    assert metric_value(text, "agent_model_output_tokens_total", **who) > 0
    assert metric_value(text, "agent_active_sessions", agent="contract-agent") == 1
    assert metric_value(text, "agent_turns_total", outcome="done") == 2
    assert metric_value(text, "agent_turns_total", outcome="replayed") == 1
    assert metric_value(text, "agent_step_latency_seconds_count", kind="model") == 4
    # Both turns' model calls: turn 1 in bucket "1", turn 2 in "2-3".
    assert metric_value(text, "agent_model_ttft_seconds_count", turn_bucket="1") == 2
    assert metric_value(text, "agent_model_ttft_seconds_count", turn_bucket="2-3") == 2
    assert metric_value(text, "agent_budget_used_ratio", agent="contract-agent") == 0
    assert metric_value(text, "agent_tool_calls_total", tool="calculator") == 2
    # loop detection counts the second call iff it repeated the first (same canonical JSON)
    same = tool_signature("calculator", arguments[0]) == tool_signature("calculator", arguments[1])
    assert metric_value(text, "agent_tool_call_repeats_total", tool="calculator") == int(same)
