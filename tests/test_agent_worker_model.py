"""Chat request building and the folding of streamed chunks (as vLLM sends them)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from agent_worker.model import (
    ModelClient,
    ModelError,
    ModelResult,
    StreamAccumulator,
    build_request,
)
from agent_worker.tools import SCHEMAS, openai_tool


def test_forced_tool_request_uses_a_named_tool_choice_and_strict_schema() -> None:
    body = build_request(
        "m",
        [{"role": "user", "content": "x"}],
        tool=openai_tool("ledger"),
        force_tool=True,
        max_tokens=8,
    )
    assert body["tool_choice"] == {"type": "function", "function": {"name": "ledger"}}
    assert body["tools"][0]["function"]["parameters"] == SCHEMAS["ledger"]["parameters"]
    assert body["tools"][0]["function"]["strict"] is True
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_answer_after_a_tool_uses_tool_choice_none() -> None:
    body = build_request("m", [], tool=openai_tool("clock"), force_tool=False, max_tokens=8)
    assert body["tool_choice"] == "none"
    plain = build_request("m", [], tool=None, force_tool=False, max_tokens=8)
    assert "tools" not in plain and "tool_choice" not in plain


def test_min_tokens_is_sent_only_when_asked_for() -> None:
    plain = build_request("m", [], tool=None, force_tool=False, max_tokens=8)
    assert "min_tokens" not in plain  # a plain OpenAI request for endpoints without it
    exact = build_request("m", [], tool=None, force_tool=False, max_tokens=8, min_tokens=8)
    assert (exact["max_tokens"], exact["min_tokens"]) == (8, 8)


def test_tool_call_deltas_and_usage_fold_into_one_call() -> None:
    acc = StreamAccumulator()
    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "id": "call-1",
                                "type": "function",
                                "index": 0,
                                "function": {"name": "calculator"},
                            }
                        ]
                    },
                }
            ]
        },
        {
            "choices": [
                {"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"expr'}}]}}
            ]
        },
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [{"index": 0, "function": {"arguments": 'ession":"1"}'}}]
                    },
                    "finish_reason": "tool_calls",
                }
            ]
        },
        {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7}},
    ]
    texts = [acc.add(c) for c in chunks]
    result = acc.finish()
    assert texts == ["", "", "", "", ""]
    assert result.tool_calls == [
        {
            "id": "call-1",
            "type": "function",
            "function": {"name": "calculator", "arguments": '{"expression":"1"}'},
        }
    ]
    assert (result.input_tokens, result.output_tokens) == (11, 7)
    assert result.finish_reason == "tool_calls" and result.chunks == 5


def test_content_deltas() -> None:
    acc = StreamAccumulator()
    assert acc.add({"choices": [{"delta": {"content": "Hel"}}]}) == "Hel"
    assert acc.produced
    assert acc.add({"choices": [{"delta": {"content": "lo"}, "finish_reason": "stop"}]}) == "lo"
    assert acc.add({"choices": [], "usage": None}) == ""
    assert not acc.produced
    assert acc.finish().content == "Hello"


def _client_streaming(chunks: list[bytes]) -> tuple[ModelClient, list[dict[str, Any]]]:
    """A ModelClient whose HTTP transport answers with `chunks` as the body, read by
    read: chunk boundaries a real server cannot be made to produce on purpose."""
    bodies: list[dict[str, Any]] = []

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    client = ModelClient("http://model.test/v1", "m", "http://model.test/health", 5.0)
    client._http = httpx.AsyncClient(  # pyright: ignore[reportPrivateUsage]
        base_url="http://model.test/v1/", transport=httpx.MockTransport(handler)
    )
    return client, bodies


def _run_chat(client: ModelClient) -> tuple[ModelResult, list[str]]:
    texts: list[str] = []

    async def on_text(text: str) -> None:
        texts.append(text)

    async def go() -> ModelResult:
        try:
            return await client.chat({"model": "m", "messages": []}, on_text)
        finally:
            await client.close()

    return asyncio.run(go()), texts


def test_chat_reads_messages_across_any_read_boundaries() -> None:
    client, bodies = _client_streaming(
        [
            b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\nda',
            b'ta: {"choices":[{"index":0,"delta":{"content":"h\xc3',  # "é" cut in two
            b'\xa9"}}]}\r\n\r\ndata: {"choices":[{"index":0,"delta":{"content":" x"},'
            b'"finish_reason":"length"}]}\n\n'
            b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
            b"data: [DONE]\n\n",
            b'data: {"choices":[{"index":0,"delta":{"content":"after DONE"}}]}\n\n',
        ]
    )
    result, texts = _run_chat(client)
    assert texts == ["hé", " x"]
    assert (result.content, result.finish_reason) == ("hé x", "length")
    assert (result.input_tokens, result.output_tokens, result.chunks) == (3, 2, 4)
    assert result.ttft_s is not None
    assert bodies == [{"model": "m", "messages": []}]


def test_chat_takes_a_last_message_without_its_blank_line() -> None:
    client, _ = _client_streaming(
        [
            b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n',
            b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}',
        ]
    )
    result, texts = _run_chat(client)
    assert texts == ["a"] and result.output_tokens == 1


def test_chat_stream_errors_are_model_errors() -> None:
    client, _ = _client_streaming([b'data: {"error": {"message": "overloaded"}}\n\n'])
    with pytest.raises(ModelError, match="model stream error"):
        _run_chat(client)
    client, _ = _client_streaming([b"data: {not json\n\n"])
    with pytest.raises(ModelError, match="invalid JSON"):
        _run_chat(client)


def test_a_trickling_stream_stops_at_the_whole_calls_deadline() -> None:
    """MODEL_TIMEOUT_S bounds the whole call: a stream whose every gap is far below it
    (so httpx's read timeout never fires) still ends at the deadline, with an error that
    names the setting, so the worker gives up before the routes outside it do."""

    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(40):
            await asyncio.sleep(0.05)
            yield b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'
        yield b"data: [DONE]\n\n"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=trickle())

    client = ModelClient("http://model.test/v1", "m", "http://model.test/health", 0.5)
    client._http = httpx.AsyncClient(  # pyright: ignore[reportPrivateUsage]
        base_url="http://model.test/v1/", transport=httpx.MockTransport(handler)
    )
    with pytest.raises(ModelError, match=r"exceeded MODEL_TIMEOUT_S \(0.5 s\)") as caught:
        _run_chat(client)
    assert caught.value.status is None  # not a rejection: the agent may retry or degrade
