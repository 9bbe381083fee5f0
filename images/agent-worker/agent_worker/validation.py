"""Request validation for the HTTP API (pure): bad input is rejected before any write."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from agent_worker.state import TOOL_NAMES, TurnRequest

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MAX_TOKENS_LIMIT = 4096
BODY_OVERHEAD = 4096  # JSON framing and the small fields beside the message


@dataclass(frozen=True)
class ApiError(Exception):
    status: int
    code: str
    message: str

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def max_body_bytes(max_message_bytes: int) -> int:
    """A body can hold the message escaped (\\uXXXX is 6 bytes per byte at worst)."""
    return max_message_bytes * 6 + BODY_OVERHEAD


def decode_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_body", "request body must be a JSON object")
    return value  # pyright: ignore[reportUnknownVariableType]


def _check_fields(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ApiError(400, "unknown_field", f"unknown field(s): {', '.join(unknown)}")


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, "invalid_field", f"'{name}' must be a string")
    return value


def parse_session_request(raw: bytes, served_agent: str) -> tuple[str, str]:
    """POST /v1/sessions body -> (user, agent)."""
    body = decode_object(raw) if raw.strip() else {}
    _check_fields(body, ("user", "agent"))
    user = _optional_str(body, "user") or "anonymous"
    agent = _optional_str(body, "agent") or served_agent
    if not LABEL_RE.match(user):
        raise ApiError(400, "invalid_field", "'user' must be 1-64 letters, digits or '._@-'")
    if agent != served_agent:
        raise ApiError(
            400, "unknown_agent", f"this worker serves agent {served_agent!r}, not {agent!r}"
        )
    return user, agent


def valid_session_id(sid: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-f]{32}", sid))


def parse_turn_request(
    raw: bytes,
    *,
    max_message_bytes: int,
    default_max_tokens: int,
    tools: tuple[str, ...] = TOOL_NAMES,
) -> TurnRequest:
    """POST /v1/sessions/{id}/turns body -> TurnRequest, or ApiError (400/413)."""
    if len(raw) > max_body_bytes(max_message_bytes):
        raise ApiError(
            413,
            "message_too_large",
            f"request body larger than allowed for a message of {max_message_bytes} bytes",
        )
    body = decode_object(raw)
    _check_fields(body, ("message", "tool", "turn_id", "max_tokens", "min_tokens"))
    message = body.get("message")
    if not isinstance(message, str):
        raise ApiError(400, "invalid_field", "'message' is required and must be a string")
    if not message.strip():
        raise ApiError(400, "invalid_field", "'message' must not be empty")
    size = len(message.encode())
    if size > max_message_bytes:
        raise ApiError(
            413,
            "message_too_large",
            f"'message' is {size} bytes; the limit is {max_message_bytes} (MAX_MESSAGE_BYTES)",
        )
    tool = body.get("tool")
    if tool is not None and not isinstance(tool, str):
        raise ApiError(400, "invalid_field", "'tool' must be null or a tool name")
    if tool is not None and tool not in TOOL_NAMES:
        raise ApiError(
            400, "unknown_tool", f"unknown tool {tool!r}; known: {', '.join(TOOL_NAMES)}"
        )
    if tool is not None and tool not in tools:
        raise ApiError(
            400,
            "tool_not_enabled",
            f"tool {tool!r} is not enabled for this agent (AGENT_TOOLS: "
            f"{', '.join(tools) or 'none'})",
        )
    turn_id = _optional_str(body, "turn_id") or uuid.uuid4().hex
    if not ID_RE.match(turn_id):
        raise ApiError(400, "invalid_field", "'turn_id' must be 1-128 of letters, digits, '._:-'")
    max_tokens = body.get("max_tokens", default_max_tokens)
    if max_tokens is None:
        max_tokens = default_max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise ApiError(400, "invalid_field", "'max_tokens' must be an integer")
    if not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise ApiError(400, "invalid_field", f"'max_tokens' must be 1-{MAX_TOKENS_LIMIT}")
    min_tokens = body.get("min_tokens", 0)
    if min_tokens is None:
        min_tokens = 0
    if isinstance(min_tokens, bool) or not isinstance(min_tokens, int):
        raise ApiError(400, "invalid_field", "'min_tokens' must be an integer")
    if not 0 <= min_tokens <= max_tokens:
        raise ApiError(
            400,
            "invalid_field",
            f"'min_tokens' must be 0-{max_tokens} (at most max_tokens), not {min_tokens}",
        )
    return TurnRequest(
        turn_id=turn_id,
        message=message,
        tool=tool,
        max_tokens=max_tokens,
        min_tokens=min_tokens,
    )
