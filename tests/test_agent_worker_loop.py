"""The tool loop with an in-memory store and a scripted model: events, checkpoints,
resumption from a checkpoint and journal replays, without any real service."""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from agent_worker import state
from agent_worker.agent import Agent, LeaseLostError, RetryableTurnError
from agent_worker.config import Settings, load_settings
from agent_worker.faults import Faults
from agent_worker.metrics import Metrics
from agent_worker.model import ModelClient, ModelError, ModelResult
from agent_worker.retrieval import VectorStore
from agent_worker.store import Store
from agent_worker.tools import ToolRunner

SID = "ab" * 16
ENV = {
    "MODEL_BASE_URL": "http://127.0.0.1:1/v1",
    "MODEL_NAME": "m",
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "AGENT_NAME": "test-agent",
}
SETTINGS = load_settings(ENV)


def holding(after_tokens: int) -> Settings:
    return load_settings(
        {
            **ENV,
            "SWARM_FAULT_HOOKS": "1",
            "SWARM_FAULT": "hold_mid_stream",
            "SWARM_FAULT_AFTER_TOKENS": str(after_tokens),
        }
    )


@dataclass
class FakeStore:
    """The parts of Store the loop and the tool runner use, in memory."""

    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    phases: list[str] = field(default_factory=list)
    journal: dict[str, dict[str, Any]] = field(default_factory=dict)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    lease_ok: bool = True

    async def checkpoint(self, session: dict[str, Any], lease_token: str) -> bool:
        if not self.lease_ok:
            return False
        self.documents[session["session_id"]] = copy.deepcopy(session)
        current = session["current"]
        self.phases.append(current["phase"] if current else "done")
        return True

    async def journal_get(self, sid: str, key: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.journal.get(key))

    async def journal_put(self, sid: str, key: str, record: dict[str, Any]) -> dict[str, Any]:
        return self.journal.setdefault(key, record)

    async def ledger_append(
        self, sid: str, key: str, entry: dict[str, Any], record: dict[str, Any]
    ) -> tuple[bool, dict[str, Any]]:
        if key in self.journal:
            return True, self.journal[key]
        self.ledger.append({**entry, "entry_no": len(self.ledger) + 1})
        record["result"]["entry_no"] = len(self.ledger)
        self.journal[key] = record
        return False, record


class ScriptedModel:
    """Answers a forced tool call with fixed arguments, anything else with fixed text."""

    def __init__(self, arguments: str = '{"entry":"bought 3 apples"}') -> None:
        self.arguments = arguments
        self.bodies: list[dict[str, Any]] = []

    async def chat(self, body: dict[str, Any], on_text: Any) -> ModelResult:
        self.bodies.append(body)
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            name = cast(dict[str, Any], choice)["function"]["name"]
            call = {
                "id": "",
                "type": "function",
                "function": {"name": name, "arguments": self.arguments},
            }
            return ModelResult(
                tool_calls=[call] if self.arguments else [],
                input_tokens=20,
                output_tokens=9,
                ttft_s=0.01,
            )
        for piece in ("Done", ", ", "recorded."):
            await on_text(piece)
        return ModelResult(content="Done, recorded.", input_tokens=30, output_tokens=3, ttft_s=0.01)


def make_agent(
    store: FakeStore, model: ScriptedModel, settings: Settings = SETTINGS
) -> tuple[Agent, Metrics]:
    metrics = Metrics(settings.agent_name)
    runner = ToolRunner(cast(Store, store), cast(VectorStore, None), "w1")
    agent = Agent(
        settings=settings,
        store=cast(Store, store),
        model=cast(ModelClient, model),
        tools=runner,
        metrics=metrics,
        faults=Faults(settings.fault),
    )
    return agent, metrics


def run_turn(agent: Agent, session: dict[str, Any], start: state.Start) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []

    async def emit(event: str, data: dict[str, Any]) -> None:
        events.append((event, json.loads(json.dumps(data))))

    asyncio.run(agent.run(session, start, "token", emit))
    return events


def opened(tool: str | None = "ledger") -> dict[str, Any]:
    session = state.new_session(SID, "u", "test-agent", 0.0)
    session, start = state.begin_turn(session, state.TurnRequest("t1", "Record it", tool, 16), 1.0)
    assert start == "new"
    return session


def test_tool_turn_events_and_checkpoints() -> None:
    store, model = FakeStore(), ScriptedModel()
    agent, metrics = make_agent(store, model)
    events = run_turn(agent, opened(), "new")
    names = [e for e, _ in events]
    assert names == ["tool_call", "tool_result", "token", "token", "token", "done"]
    tool_call, tool_result, done = events[0][1], events[1][1], events[-1][1]
    assert tool_call["idempotency_key"] == f"{SID}:t1:1"
    assert tool_result == {
        "name": "ledger",
        "result": {"entry": "bought 3 apples", "recorded": True, "entry_no": 1},
        "replayed": False,
    }
    assert done == {"turn_id": "t1", "output_tokens": 12, "steps": 2}
    assert store.phases == ["accepted", "model_done", "tool_done", "model_done", "done"]
    first, second = model.bodies
    assert first["tool_choice"] == {"type": "function", "function": {"name": "ledger"}}
    assert second["tool_choice"] == "none"
    assert second["messages"][-1]["role"] == "tool"
    assert len(store.ledger) == 1
    text = metrics.exposition().decode()
    assert 'agent_model_calls_total{agent="test-agent",session="' + SID + '",user="u"} 2.0' in text


def test_resume_after_tool_ran_but_before_its_checkpoint_replays_the_tool() -> None:
    store, model = FakeStore(), ScriptedModel()
    agent, _ = make_agent(store, model)
    run_turn(agent, opened(), "new")
    # Rebuild the world as a crash before the tool_done checkpoint leaves it: the document
    # at model_done, the journal and ledger already written.
    session = opened()
    session = state.record_model_call(
        session,
        step=1,
        content="",
        tool_calls=[
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "ledger", "arguments": '{"entry":"bought 3 apples"}'},
            }
        ],
        input_tokens=20,
        output_tokens=9,
        now=2.0,
    )
    session, start = state.begin_turn(
        session, state.TurnRequest("t1", "Record it", "ledger", 16), 3
    )
    assert start == "resume"
    model.bodies.clear()
    events = run_turn(agent, session, start)
    assert events[0] == ("resumed", {"turn_id": "t1", "from_phase": "model_done", "steps": 1})
    tool_results = [d for e, d in events if e == "tool_result"]
    assert [d["replayed"] for d in tool_results] == [True]
    assert len(store.ledger) == 1  # the side effect happened once
    assert len(model.bodies) == 1 and model.bodies[0]["tool_choice"] == "none"  # no step redone


def test_resume_after_tool_done_does_not_run_the_tool_or_first_step() -> None:
    store, model = FakeStore(), ScriptedModel()
    agent, _ = make_agent(store, model)
    session = opened()
    session = state.record_model_call(
        session,
        step=1,
        content="",
        tool_calls=[
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "ledger", "arguments": '{"entry":"x"}'},
            }
        ],
        input_tokens=1,
        output_tokens=1,
        now=2.0,
    )
    action = state.next_action(session["current"], 4)
    assert isinstance(action, state.RunTool)
    session, _ = state.record_tool_result(
        session, call=action, result={"recorded": True}, replayed=False, key="k", now=3.0
    )
    session, start = state.begin_turn(
        session, state.TurnRequest("t1", "Record it", "ledger", 16), 4
    )
    events = run_turn(agent, session, start)
    assert [e for e, _ in events][:3] == ["resumed", "tool_call", "tool_result"]
    assert events[2][1]["replayed"] is True  # re-sent from the checkpoint, not executed
    assert store.ledger == [] and len(model.bodies) == 1


def test_no_call_to_the_forced_tool_fails_the_turn() -> None:
    store, model = FakeStore(), ScriptedModel(arguments="")
    agent, _ = make_agent(store, model)
    events = run_turn(agent, opened(), "new")
    assert events[-1][0] == "error" and "forced tool" in events[-1][1]["message"]
    assert store.phases[-1] == "done"  # the failed turn left `current` (phase recorded)
    assert store.documents[SID]["turns"][-1]["outcome"] == "failed"


def test_tool_errors_are_results_not_crashes() -> None:
    store, model = FakeStore(), ScriptedModel(arguments='{"expression":"1/0"}')
    agent, metrics = make_agent(store, model)
    events = run_turn(agent, opened("calculator"), "new")
    result = next(d for e, d in events if e == "tool_result")
    assert result["result"] == {"error": "calculator: division by zero"}
    assert events[-1][0] == "done"
    assert 'agent_tool_errors_total{agent="test-agent",tool="calculator"} 1.0' in (
        metrics.exposition().decode()
    )


def test_lost_lease_stops_the_turn() -> None:
    store, model = FakeStore(lease_ok=False), ScriptedModel()
    agent, _ = make_agent(store, model)
    with pytest.raises(LeaseLostError):
        run_turn(agent, opened(), "new")
    assert model.bodies == []


class FailingModel(ScriptedModel):
    def __init__(self, status: int | None) -> None:
        super().__init__()
        self.status = status

    async def chat(self, body: dict[str, Any], on_text: Any) -> ModelResult:
        self.bodies.append(body)
        raise ModelError(f"model answered {self.status}", self.status)


def test_a_rejected_request_fails_the_turn() -> None:
    store = FakeStore()
    agent, _ = make_agent(store, FailingModel(400))
    events = run_turn(agent, opened(None), "new")
    assert events[-1][0] == "error" and "400" in events[-1][1]["message"]
    assert store.documents[SID]["turns"][-1]["outcome"] == "failed"


@pytest.mark.parametrize("status", [None, 429, 503])
def test_an_unavailable_model_leaves_the_turn_resumable(status: int | None) -> None:
    store = FakeStore()
    agent, _ = make_agent(store, FailingModel(status))
    with pytest.raises(RetryableTurnError):
        run_turn(agent, opened(None), "new")
    assert store.phases == ["accepted"]  # the last checkpoint stands; a re-send resumes


@pytest.mark.parametrize(("after_tokens", "tokens_sent"), [(2, 2), (5, 3)])
def test_hold_mid_stream_keeps_the_turn_in_flight_until_cancelled(
    after_tokens: int, tokens_sent: int
) -> None:
    # The scripted answer has 3 tokens: a threshold of 5 holds at its end instead.
    store, model = FakeStore(), ScriptedModel()
    agent, _ = make_agent(store, model, holding(after_tokens))

    async def scenario() -> list[str]:
        events: list[str] = []

        async def emit(event: str, data: dict[str, Any]) -> None:
            events.append(event)

        task = asyncio.create_task(agent.run(opened(None), "new", "token", emit))
        await asyncio.sleep(0.3)
        assert not task.done(), "the hold hook let the turn finish"
        assert store.phases == ["accepted"]  # held before the answer's model_done
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return events

    assert asyncio.run(scenario()) == ["token"] * tokens_sent
    assert store.phases == ["accepted"]
    # The hook fires once: the next turn on this worker runs to the end.
    assert [e for e, _ in run_turn(agent, opened(None), "new")][-1] == "done"
