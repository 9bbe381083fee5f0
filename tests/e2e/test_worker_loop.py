"""The tool loop on the worker's own Store over a real redis-server, with a scripted model:
events, checkpoints, resumption from a checkpoint, journal replays, lost leases.

Real Redis, not an in-memory stand-in: the checkpoint's lease fencing, the ledger append
(a Lua script encoding JSON with cjson) and the journal are what run in production, and a
stand-in would test its own copy of them. Each test starts its own redis-server
(`loadtests.services.start_redis`, through the e2e `redis_factory`), which is why these
tests live in tests/e2e and are left out of `make test-fast`.

The model is scripted, not vLLM: the loop's branches need exact tool-call arguments and
model failures (400, 429, 503, no answer) on demand, which a 135M model on CPU does not
give. The other tests in tests/e2e drive the same loop through the real vLLM.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar, cast

import pytest
from agent_worker import state
from agent_worker.agent import Agent, LeaseLostError, RetryableTurnError
from agent_worker.config import Settings, load_settings
from agent_worker.faults import Faults
from agent_worker.metrics import Metrics
from agent_worker.model import ModelClient, ModelError, ModelResult
from agent_worker.retrieval import VectorStore
from agent_worker.store import USAGE_STREAM, Store, lease_key
from agent_worker.tools import ToolRunner
from opentelemetry import trace

T = TypeVar("T")
SID = "ab" * 16
TOKEN = "w1:t1"  # the turn lease token this worker holds
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


class RecordingStore(Store):
    """The real Store; it also notes the phase of every checkpoint Redis accepted, in
    order (Redis keeps only the latest document)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phases: list[str] = []

    async def checkpoint(self, session: dict[str, Any], lease_token: str) -> bool:
        ok = await super().checkpoint(session, lease_token)
        if ok:
            current = session["current"]
            self.phases.append(current["phase"] if current else "done")
        return ok

    def sync(self, work: Awaitable[T]) -> T:
        """Run `work` on a fresh event loop, then drop the connections bound to it."""

        async def run() -> T:
            try:
                return await work
            finally:
                await self.redis.connection_pool.disconnect()

        return asyncio.run(run())


@pytest.fixture
def store(redis_factory: Any) -> Iterator[RecordingStore]:
    service = redis_factory(appendonly=False)
    store = cast(RecordingStore, RecordingStore.from_url(service.url, 3600))
    try:
        yield store
    finally:
        asyncio.run(store.close())


class ScriptedModel:
    """Answers a forced tool call with fixed arguments, anything else with fixed text."""

    def __init__(self, arguments: str = '{"entry":"bought 3 apples"}') -> None:
        self.arguments = arguments
        self.bodies: list[dict[str, Any]] = []

    async def chat(
        self, body: dict[str, Any], on_text: Any, *, session_id: str | None = None
    ) -> ModelResult:
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
    store: Store,
    model: ScriptedModel,
    settings: Settings = SETTINGS,
    tracer: trace.Tracer | None = None,
) -> tuple[Agent, Metrics]:
    metrics = Metrics(settings.agent_name)
    # The ledger and calculator tools used here never reach the vector store.
    runner = ToolRunner(store, cast(VectorStore, None), "w1")
    agent = Agent(
        settings=settings,
        store=store,
        model=cast(ModelClient, model),
        tools=runner,
        metrics=metrics,
        faults=Faults(settings.fault),
        tracer=tracer,
    )
    return agent, metrics


def run_turn(
    store: RecordingStore, agent: Agent, session: dict[str, Any], start: state.Start
) -> list[tuple[str, Any]]:
    """Run one turn the way the worker does: under the session's turn lease."""
    events: list[tuple[str, Any]] = []

    async def emit(event: str, data: dict[str, Any]) -> None:
        events.append((event, json.loads(json.dumps(data))))

    async def turn() -> None:
        assert await store.acquire_lease(lease_key(SID), TOKEN, 60_000)
        try:
            await agent.run(session, start, TOKEN, emit)
        finally:
            await store.release_lease(lease_key(SID), TOKEN)

    store.sync(turn())
    return events


def opened(store: RecordingStore, tool: str | None = "ledger") -> dict[str, Any]:
    """A session stored in Redis (as POST /v1/sessions leaves it; kept if it exists) with a
    new turn begun in memory."""
    session = state.new_session(SID, "u", "test-agent", 0.0)
    store.sync(store.create_session(session))
    session, start = state.begin_turn(session, state.TurnRequest("t1", "Record it", tool, 16), 1.0)
    assert start == "new"
    return session


def usage_records(store: RecordingStore) -> list[tuple[str, dict[str, str]]]:
    return cast(list[tuple[str, dict[str, str]]], store.sync(store.redis.xrange(USAGE_STREAM)))


def stored(store: RecordingStore) -> dict[str, Any]:
    document = store.sync(store.load_session(SID))
    assert document is not None
    return document


def test_tool_turn_events_and_checkpoints(store: RecordingStore) -> None:
    model = ScriptedModel()
    agent, metrics = make_agent(store, model)
    events = run_turn(store, agent, opened(store), "new")
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
    document = stored(store)
    assert document["checkpoints"] == 5 and document["current"] is None
    assert document["turns"][-1]["outcome"] == "done"
    first, second = model.bodies
    assert first["tool_choice"] == {"type": "function", "function": {"name": "ledger"}}
    assert second["tool_choice"] == "none"
    assert second["messages"][-1]["role"] == "tool"
    assert [e["entry"] for e in store.sync(store.ledger_entries(SID))] == ["bought 3 apples"]
    text = metrics.exposition().decode()
    assert 'agent_model_calls_total{agent="test-agent",model="m"} 2.0' in text
    assert 'agent_model_input_tokens_total{agent="test-agent",model="m"} 50.0' in text
    assert 'agent_model_ttft_seconds_count{agent="test-agent",turn_bucket="1"} 2.0' in text
    [(_, record)] = usage_records(store)
    assert record == {
        "ts": record["ts"],
        "agent": "test-agent",
        "session": SID,
        "user": "u",
        "team": "unassigned",
        "model": "m",
        "input_tokens": "50",
        "output_tokens": "12",
        "tool_calls": "1",
        "duration_s": record["duration_s"],
        "outcome": "done",
    }


def test_resume_after_tool_ran_but_before_its_checkpoint_replays_the_tool(
    store: RecordingStore,
) -> None:
    model = ScriptedModel()
    agent, _ = make_agent(store, model)
    run_turn(store, agent, opened(store), "new")
    # Rebuild the world as a crash before the tool_done checkpoint leaves it: the document
    # at model_done, the journal and ledger already written.
    session = opened(store)  # in memory; Redis keeps the finished document until resumed
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
    events = run_turn(store, agent, session, start)
    assert events[0] == ("resumed", {"turn_id": "t1", "from_phase": "model_done", "steps": 1})
    tool_results = [d for e, d in events if e == "tool_result"]
    assert [d["replayed"] for d in tool_results] == [True]
    assert tool_results[0]["result"]["entry_no"] == 1  # the journalled result, from Redis
    assert len(store.sync(store.ledger_entries(SID))) == 1  # the side effect happened once
    assert len(model.bodies) == 1 and model.bodies[0]["tool_choice"] == "none"  # no step redone
    # The turn finished twice (as a crash between the usage record and the `done`
    # checkpoint leaves it): one usage record.
    assert len(usage_records(store)) == 1


def test_resume_after_tool_done_does_not_run_the_tool_or_first_step(
    store: RecordingStore,
) -> None:
    model = ScriptedModel()
    agent, _ = make_agent(store, model)
    session = opened(store)
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
    events = run_turn(store, agent, session, start)
    assert [e for e, _ in events][:3] == ["resumed", "tool_call", "tool_result"]
    assert events[2][1]["replayed"] is True  # re-sent from the checkpoint, not executed
    assert store.sync(store.ledger_entries(SID)) == [] and len(model.bodies) == 1


def test_no_call_to_the_forced_tool_fails_the_turn(store: RecordingStore) -> None:
    agent, _ = make_agent(store, ScriptedModel(arguments=""))
    events = run_turn(store, agent, opened(store), "new")
    assert events[-1][0] == "error" and "forced tool" in events[-1][1]["message"]
    assert store.phases[-1] == "done"  # the failed turn left `current` (phase recorded)
    assert stored(store)["turns"][-1]["outcome"] == "failed"


def test_tool_errors_are_results_not_crashes(store: RecordingStore) -> None:
    agent, metrics = make_agent(store, ScriptedModel(arguments='{"expression":"1/0"}'))
    events = run_turn(store, agent, opened(store, "calculator"), "new")
    result = next(d for e, d in events if e == "tool_result")
    assert result["result"] == {"error": "calculator: division by zero"}
    assert events[-1][0] == "done"
    assert 'agent_tool_errors_total{agent="test-agent",tool="calculator"} 1.0' in (
        metrics.exposition().decode()
    )


def test_lost_lease_stops_the_turn(store: RecordingStore) -> None:
    model = ScriptedModel()
    agent, _ = make_agent(store, model)
    session = opened(store)
    # Another worker took the session's turn lease: this one's checkpoints are fenced off.
    assert store.sync(store.acquire_lease(lease_key(SID), "w2:t1", 60_000))

    async def emit(event: str, data: dict[str, Any]) -> None:
        raise AssertionError(f"emitted {event} without the lease")

    with pytest.raises(LeaseLostError):
        store.sync(agent.run(session, "new", TOKEN, emit))
    assert model.bodies == [] and store.phases == []
    assert stored(store)["current"] is None  # Redis still holds the document as it was


class FailingModel(ScriptedModel):
    def __init__(self, status: int | None) -> None:
        super().__init__()
        self.status = status

    async def chat(
        self, body: dict[str, Any], on_text: Any, *, session_id: str | None = None
    ) -> ModelResult:
        self.bodies.append(body)
        raise ModelError(f"model answered {self.status}", self.status)


def test_a_rejected_request_fails_the_turn(store: RecordingStore) -> None:
    agent, _ = make_agent(store, FailingModel(400))
    events = run_turn(store, agent, opened(store, None), "new")
    assert events[-1][0] == "error" and "400" in events[-1][1]["message"]
    assert stored(store)["turns"][-1]["outcome"] == "failed"


@pytest.mark.parametrize("status", [None, 429, 503])
def test_an_unavailable_model_leaves_the_turn_resumable(
    store: RecordingStore, status: int | None
) -> None:
    agent, _ = make_agent(store, FailingModel(status))
    with pytest.raises(RetryableTurnError):
        run_turn(store, agent, opened(store, None), "new")
    assert store.phases == ["accepted"]  # the last checkpoint stands; a re-send resumes
    assert stored(store)["current"]["phase"] == "accepted"


@pytest.mark.parametrize(("after_tokens", "tokens_sent"), [(2, 2), (5, 3)])
def test_hold_mid_stream_keeps_the_turn_in_flight_until_cancelled(
    store: RecordingStore, after_tokens: int, tokens_sent: int
) -> None:
    # The scripted answer has 3 tokens: a threshold of 5 holds at its end instead.
    agent, _ = make_agent(store, ScriptedModel(), holding(after_tokens))
    session = opened(store, None)

    async def scenario() -> list[str]:
        events: list[str] = []

        async def emit(event: str, data: dict[str, Any]) -> None:
            events.append(event)

        assert await store.acquire_lease(lease_key(SID), TOKEN, 60_000)
        task = asyncio.create_task(agent.run(session, "new", TOKEN, emit))
        await asyncio.sleep(0.3)
        assert not task.done(), "the hold hook let the turn finish"
        assert store.phases == ["accepted"]  # held before the answer's model_done
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.release_lease(lease_key(SID), TOKEN)
        return events

    assert store.sync(scenario()) == ["token"] * tokens_sent
    assert stored(store)["current"]["phase"] == "accepted"
    # The hook fires once: the next turn on this worker runs to the end.
    assert [e for e, _ in run_turn(store, agent, opened(store, None), "new")][-1] == "done"


def test_min_tokens_reaches_the_answer_call_not_the_forced_tool_call(
    store: RecordingStore,
) -> None:
    model = ScriptedModel()
    agent, _ = make_agent(store, model)
    session = state.new_session(SID, "u", "test-agent", 0.0)
    store.sync(store.create_session(session))
    request = state.TurnRequest("t1", "Record it", "ledger", 16, min_tokens=16)
    session, start = state.begin_turn(session, request, 1.0)
    assert session["current"]["min_tokens"] == 16  # checkpointed: a resume keeps it
    run_turn(store, agent, session, start)
    tool_call, answer = model.bodies
    assert "min_tokens" not in tool_call
    assert (answer["max_tokens"], answer["min_tokens"]) == (16, 16)


def test_a_checkpoint_without_min_tokens_resumes_as_before(store: RecordingStore) -> None:
    model = ScriptedModel()
    agent, _ = make_agent(store, model)
    session = state.new_session(SID, "u", "test-agent", 0.0)
    store.sync(store.create_session(session))
    session, start = state.begin_turn(session, state.TurnRequest("t1", "Hi", None, 16), 1.0)
    del session["current"]["min_tokens"]  # a document written before the field existed
    run_turn(store, agent, session, start)
    (answer,) = model.bodies
    assert "min_tokens" not in answer
