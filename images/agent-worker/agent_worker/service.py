"""The worker runtime shared by HTTP and event mode: resources, turn leases, in-flight
turns, readiness and the drain on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from agent_worker import state
from agent_worker import tracing as tr
from agent_worker.agent import Agent, Emit, LeaseLostError, RetryableTurnError
from agent_worker.budget import (
    DEGRADED_MAX_STEPS,
    Decision,
    agent_used_ratio,
    decide,
    degraded_limits,
)
from agent_worker.config import Settings
from agent_worker.faults import Faults
from agent_worker.metrics import Metrics
from agent_worker.model import ModelClient
from agent_worker.retrieval import VectorStore
from agent_worker.state import JSON, TurnRequest
from agent_worker.store import Store, lease_key
from agent_worker.tools import ToolRunner

log = logging.getLogger("agent_worker.service")
CHECK_TIMEOUT_S = 2.0


class DrainingError(Exception):
    """The worker is shutting down and takes no new work."""


class SessionNotFoundError(Exception):
    pass


class TurnBusyError(Exception):
    """Another request (here or on another worker) runs this session's turn now."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"a turn of this session is in progress; retry in {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


class BudgetExceededError(Exception):
    """A token budget is used up: the turn is refused before anything runs."""

    def __init__(self, decision: Decision, retry_after_s: int | None) -> None:
        super().__init__(decision.message())
        self.decision = decision
        self.retry_after_s = retry_after_s  # None: waiting does not help (session budget)


def seconds_to_utc_midnight(now: float) -> int:
    return max(1, int(86400 - now % 86400))


@dataclass
class OpenTurn:
    session: JSON
    start: state.Start
    token: str
    turn_id: str


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.instance_id = uuid.uuid4().hex[:12]
        models = (settings.model_name, *filter(None, (settings.degraded_model_name,)))
        self.metrics = Metrics(settings.agent_name, models)
        self.faults = Faults(settings.fault)
        self.store = Store.from_url(
            settings.redis_url,
            settings.session_ttl_s,
            password_file=settings.redis_password_file,
            ca_file=settings.redis_ca_file,
            usage_maxlen=settings.usage_maxlen,
        )
        self.tracer_provider = tr.build_provider(settings.agent_name, settings.otel_endpoint)
        self.vectors = VectorStore.connect(
            path=settings.qdrant_path,
            url=settings.qdrant_url,
            api_key=settings.qdrant_api_key,
            api_key_file=settings.qdrant_api_key_file,
            ca_file=settings.qdrant_ca_file,
        )
        self.model = ModelClient(
            settings.model_base_url,
            settings.model_name,
            settings.model_health_url,
            settings.model_timeout_s,
            api_key=settings.model_api_key(),
            max_attempts=settings.model_max_attempts,
        )
        self.tools = ToolRunner(self.store, self.vectors, self.instance_id)
        self.agent = Agent(
            settings=settings,
            store=self.store,
            model=self.model,
            tools=self.tools,
            metrics=self.metrics,
            faults=self.faults,
            tracer=tr.tracer_for(self.tracer_provider),
        )
        self.draining = False
        self._tasks: dict[asyncio.Task[None], OpenTurn] = {}

    @property
    def lease_ms(self) -> int:
        return int(self.settings.lease_s * 1000)

    async def start(self) -> None:
        await self.vectors.seed()
        self.metrics.ready.labels(self.settings.agent_name).set(1)
        log.info(
            "worker %s ready: agent=%s mode=%s model=%s loop=%s",
            self.instance_id,
            self.settings.agent_name,
            self.settings.worker_mode,
            self.settings.model_name,
            type(asyncio.get_running_loop()).__module__.split(".")[0],
        )

    async def close(self) -> None:
        for closer in (self.model.close, self.store.close, self.vectors.close):
            with contextlib.suppress(Exception):
                await closer()
        if self.tracer_provider is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.tracer_provider.shutdown)  # flushes the batch

    # readiness ---------------------------------------------------------------------------
    async def readiness(self) -> dict[str, str]:
        """Failed dependencies by name (empty when ready)."""
        checks: dict[str, Callable[[], Awaitable[None]]] = {
            "model": self.model.health,
            "redis": self.store.ping,
            "vector_store": self.vectors.ping,
        }

        async def run(check: Callable[[], Awaitable[None]]) -> str | None:
            try:
                await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
            except Exception as exc:
                return f"{type(exc).__name__}: {exc}"[:200] or type(exc).__name__
            return None

        results = await asyncio.gather(*(run(c) for c in checks.values()))
        failed = {name: err for name, err in zip(checks, results, strict=True) if err}
        if self.draining:
            failed["draining"] = "worker is shutting down"
        return failed

    # sessions and turns --------------------------------------------------------------------
    async def create_session(self, user: str, agent: str) -> JSON:
        if self.draining:
            raise DrainingError()
        session = state.new_session(uuid.uuid4().hex, user, agent, time.time())
        if not await self.store.create_session(session):
            raise RuntimeError("session id collision")
        return session

    async def open_turn(
        self, sid: str, request: TurnRequest, *, create: JSON | None = None
    ) -> OpenTurn:
        """Load the session, take its turn lease and accept the turn (pure transition)."""
        if self.draining:
            raise DrainingError()
        session = await self.store.load_session(sid)
        if session is None:
            if create is None:
                raise SessionNotFoundError(sid)
            session = create
            await self.store.create_session(session)
            session = await self.store.load_session(sid) or session
        token = f"{self.instance_id}:{request.turn_id}"
        if not await self.store.acquire_lease(lease_key(sid), token, self.lease_ms):
            ttl = await self.store.lease_ttl_ms(lease_key(sid))
            raise TurnBusyError(max(ttl, 100) / 1000)
        try:
            # Re-read under the lease: the document may have moved on since the first read.
            session = await self.store.load_session(sid) or session
            session, start = state.begin_turn(session, request, time.time())
            if start == "new" and self.settings.budgets.any:
                session = await self.apply_budgets(session)
        except BaseException:
            await self.store.release_lease(lease_key(sid), token)
            raise
        return OpenTurn(session=session, start=start, token=token, turn_id=request.turn_id)

    async def apply_budgets(self, session: JSON) -> JSON:
        """Decide a new turn against the recorded spend: run, run degraded, or refuse
        (BudgetExceededError). A resumed turn was admitted already and is not decided."""
        budgets, agent = self.settings.budgets, self.settings.agent_name
        now = time.time()
        spent = await self.store.spent(session["session_id"], session["user"], agent, now)
        self.metrics.budget_used.labels(agent).set(agent_used_ratio(budgets, spent.agent))
        decision = decide(
            budgets, {"session": spent.session, "user": spent.user, "agent": spent.agent}
        )
        if decision.action == "run":
            return session
        assert decision.scope is not None
        self.metrics.budget_actions.labels(agent, decision.scope, decision.action).inc()
        if decision.action == "refused":
            retry = None if decision.scope == "session" else seconds_to_utc_midnight(now)
            raise BudgetExceededError(decision, retry)
        turn = session["current"]
        max_tokens, min_tokens = degraded_limits(
            int(turn["max_tokens"]), int(turn.get("min_tokens") or 0)
        )
        log.info(
            "session %s: turn %s runs degraded (%s budget at %.0f%%)",
            session["session_id"],
            turn["turn_id"],
            decision.scope,
            decision.ratio * 100,
        )
        return state.degrade_turn(
            session,
            scope=decision.scope,
            used_ratio=decision.ratio,
            max_steps=min(DEGRADED_MAX_STEPS, self.settings.max_steps),
            max_tokens=max_tokens,
            min_tokens=min_tokens,
            model=self.settings.degraded_model_name,
        )

    async def heartbeat(self, key: str, token: str) -> None:
        """Keep a lease alive until cancelled (or lost)."""
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            try:
                if not await self.store.refresh_lease(key, token, self.lease_ms):
                    log.warning("%s: lease lost", key)
                    return
            except RedisError as exc:
                log.warning("%s: lease refresh failed: %s", key, exc)

    async def execute(self, turn: OpenTurn, emit: Emit) -> JSON | None:
        """Run an opened turn to its end; always releases the lease. Returns the final
        session document, or None when the turn stopped early (it stays resumable)."""
        sid = turn.session["session_id"]
        agent = self.settings.agent_name
        self.metrics.touch_session(sid)
        self.metrics.inflight.labels(agent).inc()
        beat = asyncio.create_task(self.heartbeat(lease_key(sid), turn.token))
        try:
            if turn.start == "completed":
                await self.agent.replay_completed(turn.session, turn.turn_id, emit)
                return turn.session
            return await self.agent.run(turn.session, turn.start, turn.token, emit)
        except RetryableTurnError as exc:
            error: dict[str, Any] = {"message": str(exc), "retryable": True}
            if exc.retry_after_s is not None:
                error["retry_after_s"] = round(exc.retry_after_s, 3)
            await emit("error", error)
            return None
        except LeaseLostError as exc:
            self.metrics.turns.labels(agent, "conflict").inc()
            await emit("error", {"message": str(exc), "retryable": True})
            return None
        except RedisError as exc:
            await emit("error", {"message": f"session store failed: {exc}", "retryable": True})
            return None
        except asyncio.CancelledError:
            await self._interrupted(sid, turn.token)
            with contextlib.suppress(Exception):
                await emit(
                    "error",
                    {
                        "message": "worker shutting down; re-send the turn to resume it",
                        "retryable": True,
                    },
                )
            raise
        finally:
            beat.cancel()
            self.agent.latest.pop(sid, None)
            self.metrics.inflight.labels(agent).dec()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.store.release_lease(lease_key(sid), turn.token), CHECK_TIMEOUT_S
                )

    async def _interrupted(self, sid: str, token: str) -> None:
        """Shutdown cancelled the turn: checkpoint it as interrupted at its last step."""
        latest = self.agent.latest.get(sid)
        self.metrics.turns.labels(self.settings.agent_name, "interrupted").inc()
        if latest is None or latest.get("current") is None:
            return
        doc = copy.deepcopy(latest)
        doc["current"]["interrupted"] = {"by": "shutdown", "at": time.time()}
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.agent.checkpoint(doc, token, "interrupted"), CHECK_TIMEOUT_S
            )

    def spawn(self, turn: OpenTurn, emit: Emit) -> asyncio.Task[None]:
        async def body() -> None:
            await self.execute(turn, emit)

        task = asyncio.create_task(body())
        self._tasks[task] = turn
        task.add_done_callback(lambda t: self._tasks.pop(t, None))
        return task

    def track(self, task: asyncio.Task[Any], turn: OpenTurn) -> None:
        self._tasks[task] = turn
        task.add_done_callback(lambda t: self._tasks.pop(t, None))

    # shutdown ----------------------------------------------------------------------------
    def begin_drain(self) -> None:
        if not self.draining:
            self.draining = True
            self.metrics.ready.labels(self.settings.agent_name).set(0)
            log.info("draining: %d turn(s) in flight", len(self._tasks))

    async def drain(self, budget_s: float) -> None:
        """Let in-flight turns finish within `budget_s`, then interrupt the rest (each
        checkpoints itself as interrupted and releases its lease)."""
        self.begin_drain()
        pending = set(self._tasks)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=budget_s)
        if pending:
            log.warning("interrupting %d turn(s) at their last checkpoint", len(pending))
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=CHECK_TIMEOUT_S * 2)
