"""Session recovery: a worker killed at each fault hook (os._exit(137), as kill -9) is
replaced, the client re-sends the turn, and the new worker resumes from the last
checkpoint: completed steps are not run again and the ledger shows one tool execution."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from tests.e2e.worker_client import (
    create_session,
    get_json,
    metric_value,
    metrics_text,
    post_turn,
    post_turn_retrying,
)

TURN = {
    "message": "Record in the ledger that I bought 3 apples.",
    "tool": "ledger",
    "turn_id": "turn-1",
    "max_tokens": 24,
    # The answer after the tool result has at least this many tokens, so crash_mid_stream
    # (after SWARM_FAULT_AFTER_TOKENS=2 of them) always dies mid-answer: a model free to
    # stop at once would leave no token to die after.
    "min_tokens": 4,
}
LEASE = {"LEASE_S": "2"}

# fault -> (phase and steps of the checkpoint left behind, ledger entries left behind,
#           whether the resumed turn's tool result is a replay)
CASES = {
    "crash_after_model_call": ("model_done", 1, 0, False),
    "crash_before_checkpoint": ("model_done", 1, 1, True),
    "crash_mid_stream": ("tool_done", 1, 1, True),
}


def stored_session(redis_url: str, sid: str) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        raw = client.get(f"swarm:{{{sid}}}:session")
        assert isinstance(raw, str)
        return json.loads(raw)
    finally:
        client.close()


@pytest.mark.parametrize("fault", list(CASES))
def test_resume_after_crash(fault: str, worker_factory: Any) -> None:
    phase, steps, ledger_left, replayed = CASES[fault]
    crashing = worker_factory(
        {"SWARM_FAULT_HOOKS": "1", "SWARM_FAULT": fault, "SWARM_FAULT_AFTER_TOKENS": "2", **LEASE}
    )
    sid = create_session(crashing.url)
    first = post_turn(crashing.url, sid, TURN)
    assert first.status == 200 and first.broken, first.events
    assert "done" not in first.names()
    assert crashing.process.wait(timeout=30) == 137

    # What the dead worker left: its last checkpoint, and the ledger as far as it got.
    left = stored_session(worker_factory.redis.url, sid)
    assert (left["current"]["phase"], left["current"]["steps"]) == (phase, steps)
    client = redis.Redis.from_url(worker_factory.redis.url, decode_responses=True)
    assert client.llen(f"swarm:{{{sid}}}:ledger") == ledger_left
    client.close()
    if fault == "crash_mid_stream":
        assert len(first.all("token")) >= 1  # it died while streaming the answer

    replacement = worker_factory(LEASE)
    resumed = post_turn_retrying(replacement.url, sid, TURN)
    assert resumed.status == 200, resumed.body
    assert not resumed.broken, resumed.events
    assert resumed.first("resumed") == {"turn_id": "turn-1", "from_phase": phase, "steps": steps}
    [tool_result] = resumed.all("tool_result")
    assert tool_result["replayed"] is replayed
    assert tool_result["result"].get("recorded") is True, tool_result
    done = resumed.first("done")
    assert done["turn_id"] == "turn-1" and done["steps"] == 2
    assert resumed.all("token"), "the answer was streamed"

    # One execution of the ledger tool, under the turn's idempotency key.
    status, ledger = get_json(replacement.url, f"/v1/sessions/{sid}/ledger")
    assert status == 200
    assert [e["idempotency_key"] for e in ledger["entries"]] == [f"{sid}:turn-1:1"]

    # The replacement made only the model calls that were not checkpointed: the answer
    # (it serves this one session, so its agent-wide counter is the session's).
    text = metrics_text(replacement.url)
    assert metric_value(text, "agent_model_calls_total") == 1
    assert metric_value(text, "agent_turn_resumes_total", from_phase=phase) == 1
    expected_tool = "replayed" if replayed else "ok"
    assert metric_value(text, "agent_tool_calls_total", tool="ledger", outcome=expected_tool) == (
        0 if fault == "crash_mid_stream" else 1
    )

    # Re-sending the finished turn answers from the record and runs nothing.
    again = post_turn(replacement.url, sid, TURN)
    assert again.first("done") == done
    assert metric_value(metrics_text(replacement.url), "agent_model_calls_total") == 1
    status, ledger = get_json(replacement.url, f"/v1/sessions/{sid}/ledger")
    assert len(ledger["entries"]) == 1

    status, session = get_json(replacement.url, f"/v1/sessions/{sid}")
    assert status == 200 and session["current"] is None
    assert [t["outcome"] for t in session["turns"]] == ["done"]
    assert session["usage"]["tool_calls"] == 1

    # One usage record for the crashed-and-resumed turn (re-sent once more after it
    # finished), carrying the tokens of both workers' model calls.
    records = usage_records(worker_factory.redis.url, sid)
    [turn] = session["turns"]
    assert len(records) == 1, records
    assert records[0]["outcome"] == "done" and records[0]["tool_calls"] == "1"
    assert int(records[0]["input_tokens"]) == turn["input_tokens"] > 0
    assert int(records[0]["output_tokens"]) == turn["output_tokens"] > 0


def usage_records(redis_url: str, sid: str) -> list[dict[str, str]]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        entries: Any = client.xrange("swarm:usage")
        return [fields for _, fields in entries if fields["session"] == sid]
    finally:
        client.close()
