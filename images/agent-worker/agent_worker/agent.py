"""The tool loop: runs one turn from its last checkpoint to `done`, checkpointing each step.

Events go to an `emit` callback (SSE for HTTP, collected for event mode). Every step
ends with a checkpoint before anything else happens, so a crash at any point resumes at
the last completed step: model calls already checkpointed are not repeated and tool calls
are answered from the journal (replayed=true) instead of running again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from agent_worker import state
from agent_worker import tracing as tr
from agent_worker.budget import DEGRADED_MAX_STEPS, agent_used_ratio, degraded_limits
from agent_worker.config import Settings
from agent_worker.faults import Faults
from agent_worker.metrics import Metrics, turn_bucket
from agent_worker.model import (
    GatewayBudgetError,
    ModelClient,
    ModelError,
    RateLimitedError,
    build_request,
)
from agent_worker.state import JSON, CallModel, Fail, Finish, RunTool
from agent_worker.store import Store
from agent_worker.tools import ToolRunner, openai_tool

log = logging.getLogger("agent_worker.agent")
Emit = Callable[[str, dict[str, Any]], Awaitable[None]]
TOOL_STEP_MAX_TOKENS = 96  # room for the tool-call envelope and schema-bounded arguments


class LeaseLostError(Exception):
    """Another worker holds the session's turn lease; this one must stop writing."""


class RetryableTurnError(Exception):
    """The turn cannot continue now (model or store failure); it stays resumable."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s  # when the endpoint said when to come back


class GatewayBudgetSpentError(Exception):
    """The gateway refused a model step because the budget of `model` is spent."""

    def __init__(self, model: str, error: GatewayBudgetError) -> None:
        super().__init__(str(error))
        self.model = model
        self.error = error


class StepFailedError(Exception):
    """The step produced something unusable; the turn is failed, not retried."""


def system_prompt(agent: str) -> str:
    return (
        f"You are {agent}, a concise assistant on the swarmstack platform. "
        "When a tool result is given, answer the user's question using it."
    )


class Agent:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        model: ModelClient,
        tools: ToolRunner,
        metrics: Metrics,
        faults: Faults,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.settings = settings
        self.tracer = tracer or trace.NoOpTracer()
        self.store = store
        self.model = model
        self.tools = tools
        self.metrics = metrics
        self.faults = faults
        self._first_model_done = True
        self._first_tool_done = True
        self.latest: dict[str, JSON] = {}  # last checkpointed document per running session

    @property
    def agent(self) -> str:
        return self.settings.agent_name

    async def checkpoint(self, session: JSON, token: str, phase: str) -> None:
        if not await self.store.checkpoint(session, token):
            raise LeaseLostError(f"session {session['session_id']} is held by another worker")
        self.latest[session["session_id"]] = session
        self.metrics.checkpoints.labels(self.agent, phase).inc()

    async def replay_completed(self, session: JSON, turn_id: str, emit: Emit) -> None:
        """A turn that already finished: send its recorded outcome, run nothing."""
        turn = state.find_turn(session, turn_id)
        if turn is None:  # current turn reported finished (not reachable with finish_turn)
            turn = session["current"]
        assert turn is not None
        await self._emit_recorded_tools(turn["tool_results"], emit)
        if turn.get("outcome") == "done":
            if turn["output_text"]:
                await emit("token", {"text": turn["output_text"]})
            await emit(
                "done",
                {
                    "turn_id": turn_id,
                    "output_tokens": turn["output_tokens"],
                    "steps": turn["steps"],
                },
            )
        else:
            await emit("error", {"message": turn.get("error") or f"turn {turn['outcome']}"})
        self.metrics.turns.labels(self.agent, "replayed").inc()

    async def _emit_recorded_tools(self, results: list[JSON], emit: Emit) -> None:
        for item in results:
            await emit(
                "tool_call",
                {
                    "name": item["name"],
                    "arguments": item["arguments"],
                    "idempotency_key": item["idempotency_key"],
                },
            )
            await emit(
                "tool_result", {"name": item["name"], "result": item["result"], "replayed": True}
            )

    async def run(self, session: JSON, start: state.Start, token: str, emit: Emit) -> JSON:
        """Drive the current turn to `done`/`failed`; returns the last checkpointed session."""
        attributes = {
            tr.OPERATION: "invoke_agent",
            tr.REQUEST_MODEL: self.settings.model_name,
            **tr.who(self.agent, session["session_id"], session["user"]),
        }
        with self.tracer.start_as_current_span(
            f"invoke_agent {self.agent}", kind=SpanKind.INTERNAL, attributes=attributes
        ) as span:
            final = await self._run(session, start, token, emit)
            turn = final["turns"][-1] if final["turns"] else {}
            span.set_attribute(tr.INPUT_TOKENS, int(turn.get("input_tokens", 0)))
            span.set_attribute(tr.OUTPUT_TOKENS, int(turn.get("output_tokens", 0)))
            if turn.get("outcome") == "failed":
                span.set_status(Status(StatusCode.ERROR, str(turn.get("error"))))
            return final

    async def record_usage(self, session: JSON, outcome: str, now: float) -> None:
        """The turn's usage record, written before its final checkpoint: a crash between
        the two resumes to the same end, and the record's turn marker keeps it single."""
        turn = session["current"]
        record: dict[str, str | int | float] = {
            "ts": round(now, 3),
            "agent": self.agent,
            "session": session["session_id"],
            "user": session["user"],
            "team": self.settings.agent_team,
            "model": state.turn_model(turn, self.settings.model_name),
            "input_tokens": int(turn["input_tokens"]),
            "output_tokens": int(turn["output_tokens"]),
            "tool_calls": len(turn["tool_results"]),
            "duration_s": round(max(0.0, now - float(turn["started_at"])), 3),
            "outcome": outcome,
        }
        _, spent = await self.store.record_usage(turn["turn_id"], record)
        ratio = agent_used_ratio(self.settings.budgets, spent.agent)
        self.metrics.budget_used.labels(self.agent).set(ratio)

    async def _run(self, session: JSON, start: state.Start, token: str, emit: Emit) -> JSON:
        sid = session["session_id"]
        turn = session["current"]
        if start == "new":
            await self.checkpoint(session, token, "accepted")
        else:
            from_phase = turn["phase"]
            self.metrics.resumes.labels(self.agent, from_phase).inc()
            await self.checkpoint(session, token, from_phase)
            await emit(
                "resumed",
                {"turn_id": turn["turn_id"], "from_phase": from_phase, "steps": turn["steps"]},
            )
            await self._emit_recorded_tools(turn["tool_results"], emit)
        if turn.get("degraded"):
            await emit(
                "degraded",
                {
                    **turn["degraded"],
                    "max_steps": turn["max_steps"],
                    "max_tokens": turn["max_tokens"],
                },
            )

        while True:
            turn = session["current"]
            action = state.next_action(turn, state.turn_max_steps(turn, self.settings.max_steps))
            now = time.time()
            if isinstance(action, CallModel):
                try:
                    session = await self._model_step(session, action, token, emit)
                except StepFailedError as exc:
                    action = Fail(str(exc))
                except GatewayBudgetSpentError as exc:
                    degraded = await self._gateway_budget(session, exc, token, emit)
                    if isinstance(degraded, Fail):
                        action = degraded
                    else:
                        session = degraded  # the same step again, on the cheaper model
                        continue
                else:
                    continue
            if isinstance(action, RunTool):
                session = await self._tool_step(session, action, token, emit)
            elif isinstance(action, Finish):
                done = {
                    "turn_id": turn["turn_id"],
                    "output_tokens": turn["output_tokens"],
                    "steps": turn["steps"],
                }
                await self.record_usage(session, "done", now)
                session = state.finish_turn(session, now)
                await self.checkpoint(session, token, "done")
                self.metrics.turns.labels(self.agent, "done").inc()
                await emit("done", done)
                return session
            else:
                assert isinstance(action, Fail)
                await self.record_usage(session, "failed", now)
                session = state.fail_turn(session, action.reason, now)
                await self.checkpoint(session, token, "failed")
                self.metrics.turns.labels(self.agent, "failed").inc()
                await emit("error", {"message": action.reason})
                log.warning("session %s turn failed: %s", sid, action.reason)
                return session

    async def _gateway_budget(
        self, session: JSON, spent: GatewayBudgetSpentError, token: str, emit: Emit
    ) -> JSON | Fail:
        """The gateway's budget for the turn's model is spent: the turn goes on degraded
        on the agent's cheaper model (MODEL_DEGRADED_NAME) if it has one and is not on it
        yet, else it fails with the gateway's reason."""
        cheaper = self.settings.degraded_model_name
        turn = session["current"]
        already = (turn.get("degraded") or {}).get("scope") == "gateway"
        if cheaper is None or spent.model == cheaper or already:
            self.metrics.gateway_budget.labels(self.agent, spent.model, "refused").inc()
            tried = (
                f"{self.settings.model_name!r} and the cheaper {cheaper!r}"
                if cheaper is not None
                else f"{spent.model!r} (no cheaper model configured)"
            )
            return Fail(
                f"model budget exhausted at the gateway for {tried}; the turn cannot "
                f"continue until the budget is raised or resets. Gateway: {spent.error.detail}"
            )
        self.metrics.gateway_budget.labels(self.agent, spent.model, "degraded").inc()
        max_tokens, min_tokens = int(turn["max_tokens"]), int(turn.get("min_tokens") or 0)
        if not turn.get("degraded"):  # a turn degraded by the worker's budget is short already
            max_tokens, min_tokens = degraded_limits(max_tokens, min_tokens)
        session = state.degrade_turn(
            session,
            scope="gateway",
            used_ratio=1.0,
            max_steps=min(DEGRADED_MAX_STEPS, state.turn_max_steps(turn, self.settings.max_steps)),
            max_tokens=max_tokens,
            min_tokens=min_tokens,
            model=cheaper,
        )
        log.info(
            "session %s: gateway budget for %s spent, turn %s goes on with %s",
            session["session_id"],
            spent.model,
            turn["turn_id"],
            cheaper,
        )
        turn = session["current"]
        await self.checkpoint(session, token, turn["phase"])
        await emit(
            "degraded",
            {**turn["degraded"], "max_steps": turn["max_steps"], "max_tokens": turn["max_tokens"]},
        )
        return session

    async def _model_step(self, session: JSON, action: CallModel, token: str, emit: Emit) -> JSON:
        turn = session["current"]
        forced = action.tool_choice
        tool_name = forced or turn["tool"]
        model = state.turn_model(turn, self.settings.model_name)
        messages = state.model_messages(session, system_prompt(session["agent"]))
        body = build_request(
            model,
            messages,
            tool=openai_tool(tool_name) if tool_name else None,
            force_tool=forced is not None,
            max_tokens=TOOL_STEP_MAX_TOKENS if forced else int(turn["max_tokens"]),
            min_tokens=0 if forced else int(turn.get("min_tokens") or 0),
        )
        if forced:
            body["temperature"] = 0.0  # tool arguments: greedy, within the schema
        started = time.monotonic()
        sent = 0
        crash_mid = self.faults.armed("crash_mid_stream") and not forced
        hold_mid = self.faults.armed("hold_mid_stream") and not forced

        async def on_text(text: str) -> None:
            nonlocal sent
            if forced:
                return  # text beside a forced tool call is not part of the answer
            await emit("token", {"text": text})
            sent += 1
            if crash_mid and sent >= self.settings.fault_after_tokens:
                self.faults.hit("crash_mid_stream")
            if hold_mid and sent >= self.settings.fault_after_tokens:
                await self.faults.hold("hold_mid_stream")

        attributes = {
            tr.OPERATION: "chat",
            tr.REQUEST_MODEL: model,
            tr.REQUEST_MAX_TOKENS: int(body["max_tokens"]),
            **tr.who(self.agent, session["session_id"], session["user"]),
        }
        with self.tracer.start_as_current_span(
            f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            try:
                result = await self.model.chat(body, on_text, session_id=session["session_id"])
            except ModelError as exc:
                self.metrics.model_errors.labels(self.agent).inc()
                span.set_attribute(tr.ERROR_TYPE, type(exc).__name__)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                if isinstance(exc, GatewayBudgetError):
                    raise GatewayBudgetSpentError(model, exc) from exc
                if isinstance(exc, RateLimitedError):
                    self.metrics.rate_limited(exc.waits, gave_up=True)
                    raise RetryableTurnError(str(exc), exc.retry_after_s) from exc
                if exc.rejected:
                    raise StepFailedError(str(exc)) from exc
                raise RetryableTurnError(str(exc)) from exc
            self.metrics.rate_limited(result.rate_limit_waits, gave_up=False)
            span.set_attribute(tr.INPUT_TOKENS, result.input_tokens)
            span.set_attribute(tr.OUTPUT_TOKENS, result.output_tokens)
        if crash_mid:
            self.faults.hit("crash_mid_stream")  # the answer was shorter than the threshold
        if hold_mid:
            await self.faults.hold("hold_mid_stream")  # the same, before model_done
        elapsed = time.monotonic() - started
        self.metrics.step_latency.labels(self.agent, "model").observe(elapsed)
        if result.ttft_s is not None:
            bucket = turn_bucket(len(session["turns"]) + 1)
            self.metrics.ttft.labels(self.agent, bucket).observe(result.ttft_s)
        self.metrics.model_call(model, result.input_tokens, result.output_tokens)

        calls = result.tool_calls
        if forced:
            calls = [c for c in calls if c["function"]["name"] == forced][:1]
            if not calls:
                self.metrics.model_errors.labels(self.agent).inc()
                raise StepFailedError(f"model returned no call to the forced tool {forced!r}")
            for i, call in enumerate(calls):
                call["id"] = call["id"] or f"call_{turn['turn_id']}_{action.step}_{i}"
        else:
            calls = []  # tool_choice none: any tool-call text is ignored, not executed
        session = state.record_model_call(
            session,
            step=action.step,
            content="" if forced else result.content,
            tool_calls=calls,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            now=time.time(),
        )
        if not turn["tool"] and self._first_model_done:
            self.faults.hit("crash_before_checkpoint")
        await self.checkpoint(session, token, "model_done")
        if self._first_model_done:
            self._first_model_done = False
            self.faults.hit("crash_after_model_call")
        return session

    async def _tool_step(self, session: JSON, action: RunTool, token: str, emit: Emit) -> JSON:
        sid = session["session_id"]
        key = state.idempotency_key(sid, session["current"]["turn_id"], action.step)
        await emit(
            "tool_call",
            {"name": action.name, "arguments": action.arguments, "idempotency_key": key},
        )
        started = time.monotonic()
        attributes = {
            tr.OPERATION: "execute_tool",
            tr.TOOL_NAME: action.name,
            tr.TOOL_CALL_ID: action.call_id,
            **tr.who(self.agent, sid, session["user"]),
        }
        with self.tracer.start_as_current_span(
            f"execute_tool {action.name}", kind=SpanKind.INTERNAL, attributes=attributes
        ) as span:
            result, replayed, is_error = await self.tools.run(
                sid, key, action.name, action.arguments
            )
            span.set_attribute("swarmstack.tool.replayed", replayed)
            if is_error:
                span.set_attribute(tr.ERROR_TYPE, "tool_error")
                span.set_status(Status(StatusCode.ERROR, str(result.get("error"))))
        self.metrics.step_latency.labels(self.agent, "tool").observe(time.monotonic() - started)
        outcome = "replayed" if replayed else ("error" if is_error else "ok")
        self.metrics.tool_calls.labels(self.agent, action.name, outcome).inc()
        if is_error and not replayed:
            self.metrics.tool_errors.labels(self.agent, action.name).inc()
        session, repeated = state.record_tool_result(
            session, call=action, result=result, replayed=replayed, key=key, now=time.time()
        )
        if repeated:
            self.metrics.tool_repeats.labels(self.agent, action.name).inc()
        if self._first_tool_done:
            self._first_tool_done = False
            self.faults.hit("crash_before_checkpoint")
        await self.checkpoint(session, token, "tool_done")
        await emit("tool_result", {"name": action.name, "result": result, "replayed": replayed})
        await self.faults.hold("hold_after_tool")
        return session
