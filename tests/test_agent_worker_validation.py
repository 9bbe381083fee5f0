"""HTTP input validation: every bad request is a clear 4xx before anything is written."""

from __future__ import annotations

import json

import pytest
from agent_worker.state import TurnRequest
from agent_worker.validation import (
    ApiError,
    max_body_bytes,
    parse_session_request,
    parse_turn_request,
    valid_session_id,
)

LIMIT = 64


def turn(body: object) -> TurnRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_turn_request(raw, max_message_bytes=LIMIT, default_max_tokens=16)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"\xff\xfe", 400, "invalid_json"),
        ([1, 2], 400, "invalid_body"),
        ({}, 400, "invalid_field"),
        ({"message": 5}, 400, "invalid_field"),
        ({"message": "  "}, 400, "invalid_field"),
        ({"message": "hi", "tool": "shell"}, 400, "unknown_tool"),
        ({"message": "hi", "tool": 3}, 400, "invalid_field"),
        ({"message": "hi", "turn_id": "a b"}, 400, "invalid_field"),
        ({"message": "hi", "turn_id": 7}, 400, "invalid_field"),
        ({"message": "hi", "max_tokens": "10"}, 400, "invalid_field"),
        ({"message": "hi", "max_tokens": True}, 400, "invalid_field"),
        ({"message": "hi", "max_tokens": 0}, 400, "invalid_field"),
        ({"message": "hi", "extra": 1}, 400, "unknown_field"),
        ({"message": "hi", "min_tokens": "4"}, 400, "invalid_field"),
        ({"message": "hi", "min_tokens": False}, 400, "invalid_field"),
        ({"message": "hi", "min_tokens": -1}, 400, "invalid_field"),
        ({"message": "hi", "max_tokens": 8, "min_tokens": 9}, 400, "invalid_field"),
        ({"message": "x" * (LIMIT + 1)}, 413, "message_too_large"),
        ({"message": "é" * (LIMIT // 2 + 1)}, 413, "message_too_large"),  # bytes, not chars
    ],
)
def test_bad_turns(body: object, status: int, code: str) -> None:
    with pytest.raises(ApiError) as info:
        turn(body)
    assert (info.value.status, info.value.code) == (status, code)
    assert info.value.body()["error"]["message"]


def test_oversize_body_is_refused_before_parsing() -> None:
    with pytest.raises(ApiError) as info:
        turn(b"x" * (max_body_bytes(LIMIT) + 1))
    assert info.value.status == 413


def test_good_turn_and_defaults() -> None:
    request = turn({"message": "x" * LIMIT, "tool": "ledger", "turn_id": "t-1:a"})
    assert (request.tool, request.turn_id, request.max_tokens) == ("ledger", "t-1:a", 16)
    generated = turn({"message": "hi", "tool": None, "max_tokens": None})
    assert len(generated.turn_id) == 32 and generated.tool is None
    assert request.min_tokens == 0 and generated.min_tokens == 0


def test_min_tokens_up_to_max_tokens() -> None:
    exact = turn({"message": "hi", "max_tokens": 8, "min_tokens": 8})
    assert (exact.max_tokens, exact.min_tokens) == (8, 8)
    assert turn({"message": "hi", "min_tokens": None}).min_tokens == 0
    with pytest.raises(ApiError, match=r"'min_tokens' must be 0-16 \(at most max_tokens\), not 17"):
        turn({"message": "hi", "min_tokens": 17})  # max_tokens defaults to 16 here


def test_session_requests() -> None:
    assert parse_session_request(b"", "agent") == ("anonymous", "agent")
    assert parse_session_request(b'{"user": "u@x", "agent": "agent"}', "agent") == ("u@x", "agent")
    for raw, code in [
        (b'{"user": 1}', "invalid_field"),
        (b'{"user": "has space"}', "invalid_field"),
        (b'{"agent": "other"}', "unknown_agent"),
        (b'{"who": "x"}', "unknown_field"),
        (b"[]", "invalid_body"),
    ]:
        with pytest.raises(ApiError) as info:
            parse_session_request(raw, "agent")
        assert info.value.code == code


def test_session_ids() -> None:
    assert valid_session_id("0123456789abcdef" * 2)
    assert not valid_session_id("../../etc")
    assert not valid_session_id("0123456789ABCDEF" * 2)


def test_a_tool_outside_agent_tools_is_refused_and_one_inside_is_kept() -> None:
    raw = json.dumps({"message": "hi", "tool": "ledger"}).encode()
    with pytest.raises(ApiError) as info:
        parse_turn_request(
            raw, max_message_bytes=LIMIT, default_max_tokens=16, tools=("calculator",)
        )
    assert (info.value.status, info.value.code) == (400, "tool_not_enabled")
    assert info.value.body()["error"]["message"] == (
        "tool 'ledger' is not enabled for this agent (AGENT_TOOLS: calculator)"
    )
    kept = parse_turn_request(
        raw, max_message_bytes=LIMIT, default_max_tokens=16, tools=("calculator", "ledger")
    )
    assert kept.tool == "ledger"
    plain = parse_turn_request(
        json.dumps({"message": "hi"}).encode(),
        max_message_bytes=LIMIT,
        default_max_tokens=16,
        tools=(),
    )
    assert plain.tool is None  # a turn without a tool needs none enabled
