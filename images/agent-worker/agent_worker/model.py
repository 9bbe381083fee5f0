"""Streaming client for an OpenAI-compatible chat completions endpoint (vLLM, or the
stack's model gateway in front of it).

Two refusals of a gateway are told apart (`classify_refusal`):

- a **budget** is spent (LiteLLM's `budget_exceeded` error type, or its router's
  `crossed budget`): sending again does not help, the caller degrades or gives up
  (`GatewayBudgetError`);
- a **rate limit** (429 without a budget marker): the call waits as long as the endpoint's
  `Retry-After` says, plus a little jitter, and is sent again, at most
  `max_attempts` times in all and only while the wait ends before the call's deadline
  (`MODEL_TIMEOUT_S`); otherwise it gives up at once (`RateLimitedError`). A refusal
  always comes before the first token, so a retry never repeats streamed text.

Every chat call names its session in `SESSION_HEADER`: the mesh hashes the model servers'
load balancing on it, so a session's calls reach the vLLM replica that holds its prefix
cache, and the gateway forwards it to the model (LiteLLM forwards client headers that
start with `x-`). The deployment renders the same name (components/traffic/mesh.py; a test
holds the two equal).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from agent_worker.sse import SSEMessage, SSEStream

JSON = dict[str, Any]
OnText = Callable[[str], Awaitable[None]]


# Markers of a spent budget in a gateway's error: LiteLLM's `budget_exceeded` error type
# (keys, users, teams, the proxy's own budget: HTTP 422 by default in LiteLLM 1.110, 400
# or 429 in other versions and settings) and its router's deployment or provider budget
# (`No deployments available - crossed budget`, HTTP 429).
BUDGET_MARKERS = ("budget_exceeded", "crossed budget")
BUDGET_STATUSES = (400, 422, 429)
RATE_LIMIT_MAX_ATTEMPTS = 3  # sends of one call in all while rate limited
BACKOFF_BASE_S = 0.5  # first wait when a 429 says nothing about when to come back
BACKOFF_CAP_S = 8.0
JITTER_S = 0.25  # at most this much (or 10% of the wait, if less) added to every wait

Refusal = Literal["budget", "rate_limit"]
SESSION_HEADER = "x-swarmstack-session-id"  # components/traffic/mesh.py SESSION_HEADER


class ModelError(Exception):
    """The model endpoint failed or answered something unusable."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def rejected(self) -> bool:
        """The endpoint refused this request (4xx): sending it again will not help."""
        return self.status is not None and 400 <= self.status < 500 and self.status != 429


class GatewayBudgetError(ModelError):
    """The gateway refused the call because a budget is spent: waiting will not help."""

    def __init__(self, message: str, status: int, detail: str) -> None:
        super().__init__(message, status)
        self.detail = detail  # the gateway's own error message


class RateLimitedError(ModelError):
    """Rate limited (429) and not sent again: attempts used up, or the endpoint's
    Retry-After ends after the call's deadline. `retry_after_s` is what it asked for."""

    def __init__(self, message: str, retry_after_s: float | None, waits: list[float]) -> None:
        super().__init__(message, 429)
        self.retry_after_s = retry_after_s
        self.waits = waits  # the waits before the sends that were rate limited again

    @property
    def rejected(self) -> bool:
        return False  # the turn stays resumable: re-sent later, it may pass


@dataclass
class ModelResult:
    content: str = ""
    tool_calls: list[JSON] = field(default_factory=list[JSON])
    input_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None
    chunks: int = 0
    ttft_s: float | None = None  # first send -> first chunk carrying content or a tool call
    rate_limit_waits: list[float] = field(default_factory=list[float])  # backoffs before it


def error_detail(body: str) -> tuple[str, str]:
    """(type, message) of an OpenAI-style error body `{"error": {"type", "message"}}`;
    a body that is not one gives ('', the body)."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return "", body
    error: Any = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        kind: Any = error.get("type")  # pyright: ignore[reportUnknownMemberType]
        message: Any = error.get("message")  # pyright: ignore[reportUnknownMemberType]
        return (kind if isinstance(kind, str) else ""), (
            message if isinstance(message, str) else body
        )
    return "", body


def classify_refusal(status: int, body: str) -> Refusal | None:
    """A spent budget (a budget marker in the error's type or message, on 400, 422 or
    429), a rate limit (any other 429), or neither."""
    kind, message = error_detail(body)
    text = f"{kind} {message}".lower()
    if status in BUDGET_STATUSES and any(marker in text for marker in BUDGET_MARKERS):
        return "budget"
    if status == 429:
        return "rate_limit"
    return None


def _seconds(value: str | None, now: float) -> float | None:
    """A Retry-After value: delay seconds, or an HTTP date."""
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def retry_after_s(headers: Mapping[str, str], now: float) -> float | None:
    """How long a 429 asks the client to wait: `Retry-After` (seconds or an HTTP date),
    `retry-after-ms`, or LiteLLM's copy of the upstream's header
    (`llm_provider-retry-after`, which its deployment rate limits send instead of
    `Retry-After`); None when it says nothing."""
    lower = {k.lower(): v for k, v in headers.items()}
    for name in ("retry-after", "llm_provider-retry-after"):
        seconds = _seconds(lower.get(name), now)
        if seconds is not None:
            return seconds
    millis = _seconds(lower.get("retry-after-ms"), now)
    return None if millis is None else millis / 1000


def backoff_s(attempt: int, retry_after: float | None, rng: random.Random) -> float:
    """The wait after the `attempt`-th rate-limited send (1-based): the endpoint's
    Retry-After plus jitter (never less than it asked), else an exponential backoff with
    jitter over its upper half, so many callers refused together do not come back
    together."""
    if retry_after is not None:
        return retry_after + rng.uniform(0.0, min(JITTER_S, 0.1 * retry_after + 0.01))
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
    return rng.uniform(ceiling / 2, ceiling)


class _RateLimitedError(Exception):
    """One 429 without a budget marker (internal: the retry loop catches it)."""

    def __init__(self, detail: str, retry_after: float | None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


def build_request(
    model: str,
    messages: list[JSON],
    *,
    tool: JSON | None,
    force_tool: bool,
    max_tokens: int,
    min_tokens: int = 0,
) -> JSON:
    """A streaming chat request; a forced tool uses a named tool_choice.

    `min_tokens` > 0 is sent as vLLM's sampling extension of that name (no end of
    sequence before that many tokens); 0 leaves it out, so other endpoints see a plain
    OpenAI request.
    """
    body: JSON = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
    }
    if min_tokens > 0:
        body["min_tokens"] = min_tokens
    if tool is not None:
        body["tools"] = [tool]
        body["tool_choice"] = (
            {"type": "function", "function": {"name": tool["function"]["name"]}}
            if force_tool
            else "none"
        )
    return body


class StreamAccumulator:
    """Folds streamed chat chunks into one result (content, tool calls, usage)."""

    def __init__(self) -> None:
        self.result = ModelResult()
        self.produced = False  # did the last chunk carry output (text or a tool call)?
        self._calls: dict[int, JSON] = {}

    def add(self, chunk: JSON) -> str:
        """Fold one chunk in; returns the content text it carried ('' if none)."""
        self.result.chunks += 1
        self.produced = False
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.result.input_tokens = int(usage.get("prompt_tokens") or 0)  # pyright: ignore[reportUnknownArgumentType]
            self.result.output_tokens = int(usage.get("completion_tokens") or 0)  # pyright: ignore[reportUnknownArgumentType]
        text = ""
        for choice in chunk.get("choices") or []:
            delta: JSON = choice.get("delta") or {}
            piece = delta.get("content")
            if isinstance(piece, str) and piece:
                text += piece
                self.produced = True
            for call in delta.get("tool_calls") or []:
                self.produced = True
                slot = self._calls.setdefault(
                    int(call.get("index", 0)),
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                if call.get("id"):
                    slot["id"] = call["id"]
                fn = call.get("function") or {}
                if fn.get("name"):
                    slot["function"]["name"] = fn["name"]
                if fn.get("arguments"):
                    slot["function"]["arguments"] += fn["arguments"]
            if choice.get("finish_reason"):
                self.result.finish_reason = choice["finish_reason"]
        self.result.content += text
        return text

    def finish(self) -> ModelResult:
        self.result.tool_calls = [self._calls[i] for i in sorted(self._calls)]
        return self.result


class ModelClient:
    def __init__(
        self,
        base_url: str,
        model: str,
        health_url: str,
        timeout_s: float,
        *,
        api_key: str | None = None,
        max_attempts: int = RATE_LIMIT_MAX_ATTEMPTS,
        rng: random.Random | None = None,
    ) -> None:
        self.model = model
        self.health_url = health_url
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self._rng = rng or random.Random()
        # Sent with chat calls only, never to the health URL (which may be another host).
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=base_url + "/",
            timeout=httpx.Timeout(timeout_s, connect=5.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def health(self) -> None:
        response = await self._http.get(self.health_url, timeout=3.0)
        if response.status_code != 200:
            raise ModelError(f"model health answered {response.status_code}")

    async def chat(
        self, body: JSON, on_text: OnText, *, session_id: str | None = None
    ) -> ModelResult:
        """One streamed chat call; `session_id` goes out in `SESSION_HEADER`."""
        started = time.monotonic()
        headers = {**self._auth, SESSION_HEADER: session_id} if session_id else self._auth
        # The whole call's deadline, backoffs included: httpx's read timeout only bounds
        # the gap between two reads, and a stream that keeps trickling would outlive
        # every route timeout outside it (components/traffic/timeouts.py).
        deadline = asyncio.timeout(self.timeout_s)
        waits: list[float] = []
        try:
            async with deadline:
                for attempt in range(1, self.max_attempts + 1):
                    try:
                        result = await self._attempt(body, on_text, started, headers)
                    except _RateLimitedError as limited:
                        wait = backoff_s(attempt, limited.retry_after, self._rng)
                        left = self.timeout_s - (time.monotonic() - started)
                        if attempt == self.max_attempts or wait >= left:
                            raise self._give_up(limited, attempt, wait, left, waits) from None
                        waits.append(wait)
                        await asyncio.sleep(wait)
                        continue
                    result.rate_limit_waits = waits
                    return result
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            raise ModelError(f"model call exceeded MODEL_TIMEOUT_S ({self.timeout_s:g} s)") from exc
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _give_up(
        self, limited: _RateLimitedError, attempt: int, wait: float, left: float, waits: list[float]
    ) -> RateLimitedError:
        after = limited.retry_after
        asked = f"; it asks to retry after {after:g} s" if after is not None else ""
        if attempt == self.max_attempts:
            why = f"after {attempt} attempts"
        else:
            why = (
                f"waiting {wait:.1f} s would pass the call's deadline "
                f"(MODEL_TIMEOUT_S {self.timeout_s:g} s, {max(left, 0.0):.1f} s left)"
            )
        return RateLimitedError(
            f"model endpoint rate limited the call (429), not sent again {why}{asked}: "
            f"{limited.detail[:300]}",
            after,
            waits,
        )

    async def _attempt(
        self, body: JSON, on_text: OnText, started: float, headers: Mapping[str, str]
    ) -> ModelResult:
        acc = StreamAccumulator()
        stream = SSEStream()

        async def handle(messages: list[SSEMessage]) -> bool:
            """Fold a read's messages in; False once the stream said [DONE]."""
            for msg in messages:
                if msg.data.strip() == "[DONE]":
                    return False
                chunk = json.loads(msg.data)
                if "error" in chunk:
                    raise ModelError(f"model stream error: {chunk['error']}")
                text = acc.add(chunk)
                if acc.produced and acc.result.ttft_s is None:
                    acc.result.ttft_s = time.monotonic() - started
                if text:
                    await on_text(text)
            return True

        return await self._stream(body, headers, handle, stream, acc)

    async def _stream(
        self,
        body: JSON,
        headers: Mapping[str, str],
        handle: Callable[[list[SSEMessage]], Awaitable[bool]],
        stream: SSEStream,
        acc: StreamAccumulator,
    ) -> ModelResult:
        try:
            async with self._http.stream(
                "POST", "chat/completions", json=body, headers=dict(headers)
            ) as response:
                if response.status_code != 200:
                    detail = (await response.aread()).decode("utf-8", "replace")
                    raise self._refusal(response, detail)
                # Bytes as they arrive, split into SSE messages here: one pass per read
                # instead of httpx's text and line layers per line.
                async for data in response.aiter_bytes():
                    messages = stream.feed(data)
                    if messages and not await handle(messages):
                        break
                else:
                    await handle(stream.close())
        except httpx.HTTPError as exc:
            raise ModelError(f"model request failed: {type(exc).__name__}: {exc}") from exc
        except ValueError as exc:
            raise ModelError(f"model sent invalid JSON: {exc}") from exc
        return acc.finish()

    @staticmethod
    def _refusal(response: httpx.Response, body: str) -> Exception:
        status = response.status_code
        refusal = classify_refusal(status, body)
        _, message = error_detail(body)
        if refusal == "budget":
            return GatewayBudgetError(
                f"model gateway refused the call: budget exhausted ({status}): {message[:300]}",
                status,
                message[:500],
            )
        if refusal == "rate_limit":
            return _RateLimitedError(message[:500], retry_after_s(response.headers, time.time()))
        return ModelError(f"model answered {status}: {body[:500]}", status)
