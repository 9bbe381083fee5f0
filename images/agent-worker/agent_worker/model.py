"""Streaming client for an OpenAI-compatible chat completions endpoint (vLLM)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from agent_worker.sse import SSEMessage, SSEStream

JSON = dict[str, Any]
OnText = Callable[[str], Awaitable[None]]


class ModelError(Exception):
    """The model endpoint failed or answered something unusable."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def rejected(self) -> bool:
        """The endpoint refused this request (4xx): sending it again will not help."""
        return self.status is not None and 400 <= self.status < 500 and self.status != 429


@dataclass
class ModelResult:
    content: str = ""
    tool_calls: list[JSON] = field(default_factory=list[JSON])
    input_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None
    chunks: int = 0
    ttft_s: float | None = None  # send -> first chunk carrying content or a tool call


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
    def __init__(self, base_url: str, model: str, health_url: str, timeout_s: float) -> None:
        self.model = model
        self.health_url = health_url
        self.timeout_s = timeout_s
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

    async def chat(self, body: JSON, on_text: OnText) -> ModelResult:
        acc = StreamAccumulator()
        stream = SSEStream()
        started = time.monotonic()

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

        # The whole call's deadline: httpx's read timeout only bounds the gap between two
        # reads, and a stream that keeps trickling would outlive every route timeout
        # outside it (components/traffic/timeouts.py).
        deadline = asyncio.timeout(self.timeout_s)
        try:
            async with deadline:
                return await self._stream(body, handle, stream, acc)
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            raise ModelError(f"model call exceeded MODEL_TIMEOUT_S ({self.timeout_s:g} s)") from exc

    async def _stream(
        self,
        body: JSON,
        handle: Callable[[list[SSEMessage]], Awaitable[bool]],
        stream: SSEStream,
        acc: StreamAccumulator,
    ) -> ModelResult:
        try:
            async with self._http.stream("POST", "chat/completions", json=body) as response:
                if response.status_code != 200:
                    detail = (await response.aread()).decode(errors="replace")[:500]
                    raise ModelError(
                        f"model answered {response.status_code}: {detail}", response.status_code
                    )
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
