"""The checkpoint state machine: what a turn does next depends on its last checkpoint only."""

from __future__ import annotations

import json

import pytest
from agent_worker import state
from agent_worker.state import CallModel, Fail, Finish, RunTool, TurnRequest

SID = "0" * 32


def fresh(tool: str | None = "ledger", turn_id: str = "t1") -> dict:
    s = state.new_session(SID, "u", "agent", now=1.0)
    s, start = state.begin_turn(s, TurnRequest(turn_id, "hello", tool, 32), now=2.0)
    assert start == "new"
    return s


def call(step: int = 1, name: str = "ledger", args: str = '{"entry":"x"}') -> dict:
    return {"id": f"c{step}", "type": "function", "function": {"name": name, "arguments": args}}


def test_tool_turn_walks_the_phases() -> None:
    s = fresh()
    assert state.next_action(s["current"], 4) == CallModel(step=1, tool_choice="ledger")
    s = state.record_model_call(
        s, step=1, content="", tool_calls=[call()], input_tokens=10, output_tokens=5, now=3.0
    )
    assert s["current"]["phase"] == "model_done"
    action = state.next_action(s["current"], 4)
    assert action == RunTool(step=1, call_id="c1", name="ledger", arguments='{"entry":"x"}')
    assert isinstance(action, RunTool)
    s, repeated = state.record_tool_result(
        s, call=action, result={"ok": 1}, replayed=False, key="k", now=4.0
    )
    assert not repeated and s["current"]["phase"] == "tool_done"
    assert state.next_action(s["current"], 4) == CallModel(step=2, tool_choice=None)
    s = state.record_model_call(
        s, step=2, content="answer", tool_calls=[], input_tokens=20, output_tokens=7, now=5.0
    )
    assert state.next_action(s["current"], 4) == Finish()
    s = state.finish_turn(s, now=6.0)
    assert s["current"] is None
    [summary] = s["turns"]
    assert (summary["outcome"], summary["output_text"], summary["steps"]) == ("done", "answer", 2)
    assert summary["output_tokens"] == 12 and summary["input_tokens"] == 30
    assert [m["role"] for m in s["history"]] == ["user", "assistant", "tool", "assistant"]
    assert s["usage"] == {
        "input_tokens": 30,
        "output_tokens": 12,
        "model_calls": 2,
        "tool_calls": 1,
    }


def test_plain_turn_finishes_after_one_call() -> None:
    s = fresh(tool=None)
    assert state.next_action(s["current"], 4) == CallModel(step=1, tool_choice=None)
    s = state.record_model_call(
        s, step=1, content="hi", tool_calls=[], input_tokens=1, output_tokens=1, now=3.0
    )
    assert state.next_action(s["current"], 4) == Finish()


def test_step_limit() -> None:
    s = fresh()
    s = state.record_model_call(
        s, step=1, content="", tool_calls=[call()], input_tokens=1, output_tokens=1, now=3.0
    )
    action = state.next_action(s["current"], 4)
    assert isinstance(action, RunTool)
    s, _ = state.record_tool_result(s, call=action, result={}, replayed=False, key="k", now=4.0)
    assert state.next_action(s["current"], 1) == Fail("step limit of 1 model calls reached")
    s = state.fail_turn(s, "step limit", now=5.0)
    assert s["turns"][-1]["outcome"] == "failed" and s["history"] == []


def test_model_steps_must_follow_each_other() -> None:
    s = fresh()
    with pytest.raises(ValueError, match="does not follow"):
        state.record_model_call(
            s, step=2, content="", tool_calls=[], input_tokens=0, output_tokens=0, now=3.0
        )


def test_same_turn_id_resumes_and_finished_turn_is_completed() -> None:
    s = fresh()
    s = state.record_model_call(
        s, step=1, content="", tool_calls=[call()], input_tokens=1, output_tokens=1, now=3.0
    )
    resumed, start = state.begin_turn(s, TurnRequest("t1", "hello", "ledger", 32), now=4.0)
    assert start == "resume" and resumed["current"]["resumes"] == 1
    assert resumed["current"]["steps"] == 1  # nothing redone, nothing lost
    with pytest.raises(state.TurnConflictError):
        state.begin_turn(s, TurnRequest("t1", "another message", "ledger", 32), now=4.0)
    plain = fresh(tool=None)
    plain = state.record_model_call(
        plain, step=1, content="x", tool_calls=[], input_tokens=1, output_tokens=1, now=3.0
    )
    plain = state.finish_turn(plain, now=4.0)
    again, start = state.begin_turn(plain, TurnRequest("t1", "hello", None, 32), now=5.0)
    assert start == "completed" and again == plain


def test_new_turn_abandons_an_unfinished_one() -> None:
    s = fresh(turn_id="old")
    s, start = state.begin_turn(s, TurnRequest("new", "next", None, 32), now=3.0)
    assert start == "new"
    assert s["turns"][-1]["turn_id"] == "old" and s["turns"][-1]["outcome"] == "abandoned"
    assert s["history"] == []  # abandoned messages never reach the model again


def test_repeated_identical_tool_calls_are_detected() -> None:
    s = fresh()
    first = RunTool(step=1, call_id="a", name="calculator", arguments='{"expression": "1+1"}')
    same = RunTool(step=3, call_id="b", name="calculator", arguments='{ "expression":"1+1" }')
    other = RunTool(step=5, call_id="c", name="calculator", arguments='{"expression": "2+2"}')
    s, r1 = state.record_tool_result(s, call=first, result={}, replayed=False, key="k1", now=1)
    s, r2 = state.record_tool_result(s, call=same, result={}, replayed=False, key="k2", now=1)
    s, r3 = state.record_tool_result(s, call=other, result={}, replayed=False, key="k3", now=1)
    assert (r1, r2, r3) == (False, True, False)


def test_model_messages_window_never_starts_inside_a_tool_exchange() -> None:
    s = fresh()
    s["history"] = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": None, "tool_calls": [call()]},
        {"role": "tool", "tool_call_id": "c1", "content": "{}"},
        {"role": "assistant", "content": "b"},
    ] * 3
    messages = state.model_messages(s, "sys")
    assert messages[0] == {"role": "system", "content": "sys"}
    assert messages[1]["role"] == "user"
    assert messages[-1] == {"role": "user", "content": "hello"}
    assert len(messages) <= 2 + state.HISTORY_MESSAGES


def test_idempotency_key_and_documents_are_json() -> None:
    assert state.idempotency_key(SID, "t1", 1) == f"{SID}:t1:1"
    s = fresh()
    assert json.loads(json.dumps(s)) == s
