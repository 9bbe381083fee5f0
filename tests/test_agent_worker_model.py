"""Chat request building and the folding of streamed chunks (as vLLM sends them)."""

from __future__ import annotations

from agent_worker.model import StreamAccumulator, build_request
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
