"""The HTTP API (Starlette): sessions, streamed turns (SSE), probes, metrics."""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from agent_worker.relay import FrameRelay
from agent_worker.service import (
    BudgetExceededError,
    DrainingError,
    SessionNotFoundError,
    TurnBusyError,
    Worker,
)
from agent_worker.sse import format_comment, format_event
from agent_worker.state import TurnConflictError
from agent_worker.validation import (
    ApiError,
    max_body_bytes,
    parse_session_request,
    parse_turn_request,
    valid_session_id,
)

log = logging.getLogger("agent_worker.http")
KEEPALIVE_S = 15.0
KEEPALIVE_FRAME = format_comment("keep-alive")


def error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def budget_refusal(exc: BudgetExceededError) -> JSONResponse:
    """429 naming the budget's scope, its limit and the tokens used against it."""
    d = exc.decision
    body = {
        "error": {
            "code": "budget_exhausted",
            "message": str(exc),
            "scope": d.scope,
            "limit_tokens": d.limit_tokens,
            "used_tokens": d.used_tokens,
        }
    }
    headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None
    return JSONResponse(body, 429, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) more than `limit` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "message_too_large", f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "message_too_large", f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(worker: Worker) -> Starlette:
    settings = worker.settings
    body_limit = max_body_bytes(settings.max_message_bytes)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "alive", "worker": worker.instance_id})

    async def readyz(_: Request) -> Response:
        failed = await worker.readiness()
        if failed:
            return JSONResponse({"ready": False, "failed": failed}, 503)
        return JSONResponse({"ready": True})

    async def metrics(_: Request) -> Response:
        return Response(worker.metrics.exposition(), media_type="text/plain; version=0.0.4")

    async def create_session(request: Request) -> Response:
        try:
            user, agent = parse_session_request(await read_body(request, 4096), settings.agent_name)
            session = await worker.create_session(user, agent)
        except ApiError as exc:
            return JSONResponse(exc.body(), exc.status)
        except DrainingError:
            return error(503, "draining", "worker is shutting down", {"Retry-After": "1"})
        except RedisError as exc:
            return error(503, "store_unavailable", f"session store failed: {exc}")
        return JSONResponse(
            {"session_id": session["session_id"], "user": user, "agent": agent}, 201
        )

    async def get_session(request: Request) -> Response:
        sid = request.path_params["sid"]
        try:
            session = await worker.store.load_session(sid) if valid_session_id(sid) else None
        except RedisError as exc:
            return error(503, "store_unavailable", f"session store failed: {exc}")
        if session is None:
            return error(404, "session_not_found", f"no session {sid!r}")
        return JSONResponse(session)

    async def get_ledger(request: Request) -> Response:
        sid = request.path_params["sid"]
        try:
            found = valid_session_id(sid) and await worker.store.load_session(sid) is not None
            entries = await worker.store.ledger_entries(sid) if found else []
        except RedisError as exc:
            return error(503, "store_unavailable", f"session store failed: {exc}")
        if not found:
            return error(404, "session_not_found", f"no session {sid!r}")
        return JSONResponse({"session_id": sid, "entries": entries})

    async def post_turn(request: Request) -> Response:
        sid = request.path_params["sid"]
        try:
            raw = await read_body(request, body_limit)
            turn_request = parse_turn_request(
                raw,
                max_message_bytes=settings.max_message_bytes,
                default_max_tokens=settings.default_max_tokens,
                tools=settings.tools,
            )
            if not valid_session_id(sid):
                raise SessionNotFoundError(sid)
            turn = await worker.open_turn(sid, turn_request)
        except ApiError as exc:
            return JSONResponse(exc.body(), exc.status)
        except SessionNotFoundError:
            return error(404, "session_not_found", f"no session {sid!r}")
        except DrainingError:
            return error(503, "draining", "worker is shutting down", {"Retry-After": "1"})
        except TurnBusyError as exc:
            worker.metrics.turns.labels(settings.agent_name, "conflict").inc()
            return error(
                409,
                "turn_in_progress",
                str(exc),
                {"Retry-After": str(max(1, round(exc.retry_after_s)))},
            )
        except TurnConflictError as exc:
            return error(409, "turn_id_reused", str(exc))
        except BudgetExceededError as exc:
            return budget_refusal(exc)
        except RedisError as exc:
            return error(503, "store_unavailable", f"session store failed: {exc}")

        # The turn runs in its own task: a client that goes away does not stop it, and a
        # re-send with the same turn_id gets the recorded outcome.
        relay = FrameRelay(KEEPALIVE_S, KEEPALIVE_FRAME)

        async def emit(event: str, data: dict[str, Any]) -> None:
            relay.put(format_event(event, data))

        async def emit_written(event: str, data: dict[str, Any]) -> None:
            relay.put(format_event(event, data))
            await relay.written()  # a fault hook after this event fires once it is sent

        # Only a worker with a fault armed waits per frame; production never does.
        task = worker.spawn(turn, emit_written if settings.fault else emit)
        task.add_done_callback(lambda _: relay.close())

        return StreamingResponse(
            relay.frames(),
            media_type="text/event-stream",
            headers={
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                "X-Session-Id": sid,
                "X-Turn-Id": turn.turn_id,
            },
        )

    async def not_allowed_in_events(_: Request) -> Response:
        return error(404, "not_served", "this worker runs in event mode; turns come from Kafka")

    turn_endpoint = post_turn if settings.worker_mode == "http" else not_allowed_in_events
    session_endpoint = create_session if settings.worker_mode == "http" else not_allowed_in_events
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/sessions", session_endpoint, methods=["POST"]),
        Route("/v1/sessions/{sid}", get_session, methods=["GET"]),
        Route("/v1/sessions/{sid}/ledger", get_ledger, methods=["GET"]),
        Route("/v1/sessions/{sid}/turns", turn_endpoint, methods=["POST"]),
    ]

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error(exc.status_code, code, str(exc.detail))

    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})
