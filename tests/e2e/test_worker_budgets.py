"""Token budgets on a real redis-server: a session over its budget's degrade ratio runs
degraded, then is refused with 429; a user's daily budget holds across sessions and
replicas; event-mode tasks get a degraded or an error result.

The worker (`Worker`, its HTTP app through httpx's ASGI transport, its event loop's
`run_task`) is the real one on a real Redis; the model is the scripted one of
test_worker_loop (30 prompt + 3 completion tokens a plain answer), so the spend after each
turn is known exactly: 33, 66, 99, ... tokens.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any, cast

import httpx
from agent_worker.config import load_settings
from agent_worker.events import EventLoop, Task
from agent_worker.http_app import build_app
from agent_worker.model import GatewayBudgetError, ModelClient, ModelResult
from agent_worker.service import Worker
from agent_worker.sse import parse_events
from agent_worker.store import USAGE_STREAM

from tests.e2e.test_worker_loop import ScriptedModel
from tests.e2e.worker_client import metric_value

TURN_TOKENS = 33  # one plain turn of the scripted model


def worker(redis_url: str, **env: str) -> tuple[Worker, ScriptedModel]:
    settings = load_settings(
        {
            "MODEL_BASE_URL": "http://127.0.0.1:1/v1",
            "MODEL_NAME": "m",
            "REDIS_URL": redis_url,
            "AGENT_NAME": "test-agent",
            "QDRANT_PATH": ":memory:",
            **env,
        }
    )
    w = Worker(settings)
    model = ScriptedModel()
    w.agent.model = cast(ModelClient, model)
    return w, model


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


async def turn(client: httpx.AsyncClient, sid: str, turn_id: str) -> httpx.Response:
    body = {"message": "Hello", "turn_id": turn_id, "max_tokens": 16}
    return await client.post(f"/v1/sessions/{sid}/turns", json=body)


def events(response: httpx.Response) -> list[tuple[str, Any]]:
    assert response.status_code == 200, response.text
    return parse_events(response.text)


def test_a_session_over_budget_degrades_then_is_refused(redis_factory: Any) -> None:
    redis = redis_factory(appendonly=False)
    w, model = worker(redis.url, BUDGET_SESSION_TOKENS="100", BUDGET_DEGRADE_AT="0.5")

    async def scenario() -> None:
        app = build_app(w)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://worker"
        ) as client:
            created = await client.post("/v1/sessions", json={"user": "alice"})
            sid = created.json()["session_id"]

            # 0 and 33 of 100 tokens spent: below 0.5, the turns run as asked.
            for turn_id in ("t1", "t2"):
                got = events(await turn(client, sid, turn_id))
                assert [e for e, _ in got] == ["token", "token", "token", "done"]
            assert [b["max_tokens"] for b in model.bodies] == [16, 16]

            # 66, then 99 of 100: degraded (half the answer length, at most 2 steps).
            for turn_id, ratio in (("t3", 0.66), ("t4", 0.99)):
                got = events(await turn(client, sid, turn_id))
                assert got[0] == (
                    "degraded",
                    {"scope": "session", "used_ratio": ratio, "max_steps": 2, "max_tokens": 8},
                )
                assert got[-1][0] == "done"
            assert [b["max_tokens"] for b in model.bodies] == [16, 16, 8, 8]

            # 132 of 100: refused before anything runs or is written.
            refused = await turn(client, sid, "t5")
            assert refused.status_code == 429
            assert refused.json() == {
                "error": {
                    "code": "budget_exhausted",
                    "message": "session token budget exhausted: 132 of 100 tokens used",
                    "scope": "session",
                    "limit_tokens": 100,
                    "used_tokens": 132,
                }
            }
            assert "retry-after" not in refused.headers  # waiting does not refill a session
            assert len(model.bodies) == 4
            document = (await client.get(f"/v1/sessions/{sid}")).json()
            assert [t["turn_id"] for t in document["turns"]] == ["t1", "t2", "t3", "t4"]
            assert document["turns"][2]["degraded"] == {"scope": "session", "used_ratio": 0.66}
            records = cast(
                list[tuple[str, dict[str, str]]], await w.store.redis.xrange(USAGE_STREAM)
            )
            assert [int(f["input_tokens"]) + int(f["output_tokens"]) for _, f in records] == [
                TURN_TOKENS
            ] * 4

            # The budget is the session's: a new session of the same user runs.
            other = (await client.post("/v1/sessions", json={"user": "alice"})).json()
            got = events(await turn(client, other["session_id"], "t1"))
            assert [e for e, _ in got][-1] == "done" and got[0][0] != "degraded"

            text = (await client.get("/metrics")).text
        await w.close()
        assert metric_value(text, "agent_budget_actions_total", scope="session") == 3
        assert metric_value(text, "agent_budget_actions_total", action="degraded") == 2
        assert metric_value(text, "agent_budget_actions_total", action="refused") == 1
        assert metric_value(text, "agent_budget_used_ratio") == 0  # no agent budget set

    run(scenario)


def test_a_users_daily_budget_holds_across_sessions_and_replicas(redis_factory: Any) -> None:
    redis = redis_factory(appendonly=False)
    budgets = {"BUDGET_USER_TOKENS_PER_DAY": "60", "BUDGET_AGENT_TOKENS_PER_DAY": "1000"}
    a, _ = worker(redis.url, **budgets)
    b, _ = worker(redis.url, **budgets)  # a second replica on the same session store

    async def scenario() -> None:
        clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(w)), base_url="http://w")
            for w in (a, b)
        ]
        on_a, on_b = clients

        async def session(client: httpx.AsyncClient, user: str) -> str:
            return (await client.post("/v1/sessions", json={"user": user})).json()["session_id"]

        assert events(await turn(on_a, await session(on_a, "alice"), "t1"))[-1][0] == "done"
        # 33 of alice's 60 (0.55, below 0.8) on the other replica: runs.
        assert events(await turn(on_b, await session(on_b, "alice"), "t1"))[-1][0] == "done"
        # 66 of 60, seen by replica a from the shared counters: refused, until tomorrow.
        refused = await turn(on_a, await session(on_a, "alice"), "t1")
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert (error["scope"], error["limit_tokens"], error["used_tokens"]) == ("user", 60, 66)
        assert 0 < int(refused.headers["retry-after"]) <= 86400
        # Another user is not alice.
        assert events(await turn(on_b, await session(on_b, "bob"), "t1"))[-1][0] == "done"
        text = (await on_b.get("/metrics")).text
        for client in clients:
            await client.aclose()
        for w in (a, b):
            await w.close()
        # The agent type's spend today over its daily budget: 3 turns of 33 tokens.
        assert metric_value(text, "agent_budget_used_ratio") == 99 / 1000

    run(scenario)


def test_event_mode_tasks_run_degraded_then_get_an_error_result(redis_factory: Any) -> None:
    redis = redis_factory(appendonly=False)
    w, _ = worker(
        redis.url,
        WORKER_MODE="events",
        KAFKA_BOOTSTRAP="127.0.0.1:1",  # run_task never reaches Kafka: publishing does
        TASK_TOPIC="a.tasks",
        RESULT_TOPIC="a.results",
        CONSUMER_GROUP="a.workers",
        BUDGET_USER_TOKENS_PER_DAY="40",
    )

    async def scenario() -> None:
        loop = EventLoop(w)
        docs = [
            await loop.run_task(Task(f"task-{n}", f"{n:032x}", "Hello", None, "carol"))
            for n in (1, 2, 3)
        ]
        await w.close()
        first, second, third = docs
        assert (first["status"], first["degraded"]) == ("ok", None)
        assert second["status"] == "ok"
        assert second["degraded"] == {"scope": "user", "used_ratio": 0.825}  # 33 of 40
        assert third["status"] == "error"
        assert third["error"] == "user's daily token budget exhausted: 66 of 40 tokens used"
        assert third["budget"] == {"scope": "user", "limit_tokens": 40, "used_tokens": 66}
        json.dumps(third)  # the result is what gets published: plain JSON

    run(scenario)


class GatewayModel(ScriptedModel):
    """The scripted model behind a gateway whose budget for the models in `spent` is
    used up: a call to one of them gets the gateway's refusal (LiteLLM's error text)."""

    def __init__(self) -> None:
        super().__init__()
        self.spent: set[str] = set()

    async def chat(
        self, body: dict[str, Any], on_text: Any, *, session_id: str | None = None
    ) -> ModelResult:
        if body["model"] in self.spent:
            self.bodies.append(body)
            raise GatewayBudgetError(
                "model gateway refused the call: budget exhausted (429)",
                429,
                f"No deployments available - crossed budget: deployment {body['model']}",
            )
        return await super().chat(body, on_text)


def test_a_spent_gateway_budget_degrades_to_the_cheaper_model_then_fails_clearly(
    redis_factory: Any,
) -> None:
    redis = redis_factory(appendonly=False)
    settings = load_settings(
        {
            "MODEL_BASE_URL": "http://127.0.0.1:1/v1",
            "MODEL_NAME": "big",
            "MODEL_DEGRADED_NAME": "small",
            "REDIS_URL": redis.url,
            "AGENT_NAME": "test-agent",
            "QDRANT_PATH": ":memory:",
        }
    )
    w = Worker(settings)
    model = GatewayModel()
    w.agent.model = cast(ModelClient, model)

    async def scenario() -> None:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=build_app(w)), base_url="http://worker"
        ) as client:
            sid = (await client.post("/v1/sessions", json={"user": "dana"})).json()["session_id"]
            assert events(await turn(client, sid, "t1"))[-1][0] == "done"

            # The big model's budget is spent at the gateway: the same step goes again on
            # the small model, degraded (half the answer), and the turn finishes.
            model.spent.add("big")
            body = {"message": "Note it", "tool": "ledger", "turn_id": "t2", "max_tokens": 16}
            got = events(await client.post(f"/v1/sessions/{sid}/turns", json=body))
            assert got[0] == (
                "degraded",
                {
                    "scope": "gateway",
                    "used_ratio": 1.0,
                    "model": "small",
                    "max_steps": 2,
                    "max_tokens": 8,
                },
            )
            assert [e for e, _ in got[1:]] == ["tool_call", "tool_result"] + ["token"] * 3 + [
                "done"
            ]
            assert [b["model"] for b in model.bodies] == ["big", "big", "small", "small"]
            assert model.bodies[-1]["max_tokens"] == 8

            # Both budgets spent: no cheaper model is left, the turn fails and says why.
            model.spent.add("small")
            got = events(await turn(client, sid, "t3"))
            assert got[0][0] == "degraded" and got[-1][0] == "error"
            message = got[-1][1]["message"]
            assert message.startswith(
                "model budget exhausted at the gateway for 'big' and the cheaper 'small'"
            )
            assert "crossed budget" in message and "retryable" not in got[-1][1]
            document = (await client.get(f"/v1/sessions/{sid}")).json()
            assert [t["outcome"] for t in document["turns"]] == ["done", "done", "failed"]
            assert document["turns"][1]["degraded"]["model"] == "small"
            records = cast(
                list[tuple[str, dict[str, str]]], await w.store.redis.xrange(USAGE_STREAM)
            )
            assert [f["model"] for _, f in records] == ["big", "small", "small"]
            text = (await client.get("/metrics")).text
        await w.close()
        gateway = "agent_gateway_budget_actions_total"
        assert metric_value(text, gateway, model="big", action="degraded") == 2
        assert metric_value(text, gateway, model="small", action="refused") == 1
        assert metric_value(text, gateway, model="big", action="refused") == 0
        assert metric_value(text, "agent_model_calls_total", model="small") == 2

    run(scenario)


def test_a_worker_budget_degrades_to_the_cheaper_model_too(redis_factory: Any) -> None:
    redis = redis_factory(appendonly=False)
    w, model = worker(
        redis.url,
        MODEL_DEGRADED_NAME="small",
        BUDGET_SESSION_TOKENS="100",
        BUDGET_DEGRADE_AT="0.3",
    )

    async def scenario() -> None:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=build_app(w)), base_url="http://worker"
        ) as client:
            sid = (await client.post("/v1/sessions", json={"user": "erin"})).json()["session_id"]
            assert events(await turn(client, sid, "t1"))[-1][0] == "done"
            got = events(await turn(client, sid, "t2"))  # 33 of 100: above 0.3
            assert got[0] == (
                "degraded",
                {
                    "scope": "session",
                    "used_ratio": 0.33,
                    "model": "small",
                    "max_steps": 2,
                    "max_tokens": 8,
                },
            )
        await w.close()
        assert [b["model"] for b in model.bodies] == ["m", "small"]

    run(scenario)
