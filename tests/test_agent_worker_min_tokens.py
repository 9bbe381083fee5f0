"""`min_tokens` on a turn: checkpointed with the turn and sent with the answer's model call
only (a forced tool call keeps its own bounded length)."""

from __future__ import annotations

from agent_worker import state

from tests.test_agent_worker_loop import SID, FakeStore, ScriptedModel, make_agent, run_turn


def test_min_tokens_reaches_the_answer_call_not_the_forced_tool_call() -> None:
    store, model = FakeStore(), ScriptedModel()
    agent, _ = make_agent(store, model)
    session = state.new_session(SID, "u", "test-agent", 0.0)
    request = state.TurnRequest("t1", "Record it", "ledger", 16, min_tokens=16)
    session, start = state.begin_turn(session, request, 1.0)
    assert session["current"]["min_tokens"] == 16  # checkpointed: a resume keeps it
    run_turn(agent, session, start)
    tool_call, answer = model.bodies
    assert "min_tokens" not in tool_call
    assert (answer["max_tokens"], answer["min_tokens"]) == (16, 16)


def test_a_checkpoint_without_min_tokens_resumes_as_before() -> None:
    store, model = FakeStore(), ScriptedModel()
    agent, _ = make_agent(store, model)
    session = state.new_session(SID, "u", "test-agent", 0.0)
    session, start = state.begin_turn(session, state.TurnRequest("t1", "Hi", None, 16), 1.0)
    del session["current"]["min_tokens"]  # a document written before the field existed
    run_turn(agent, session, start)
    (answer,) = model.bodies
    assert "min_tokens" not in answer
