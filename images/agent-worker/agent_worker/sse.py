"""Server-sent events: framing what the worker sends, parsing what the model sends."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

EVENT_NAMES = ("resumed", "degraded", "token", "tool_call", "tool_result", "done", "error")


# One encoder for every frame: json.dumps with non-default options builds a new encoder
# on each call, and this runs once per streamed token.
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_EVENT_PREFIX = {name: f"event: {name}\ndata: ".encode() for name in EVENT_NAMES}


def format_event(event: str, data: dict[str, Any]) -> bytes:
    """One SSE frame: `event:` line, a single-line JSON `data:` line, blank line."""
    prefix = _EVENT_PREFIX.get(event)
    if prefix is None:
        if not event or any(c in event for c in "\r\n:"):
            raise ValueError(f"invalid SSE event name {event!r}")
        prefix = f"event: {event}\ndata: ".encode()
    return prefix + _encode_json(data).encode() + b"\n\n"


def format_comment(text: str = "") -> bytes:
    """A comment frame (keeps idle streams alive through proxies)."""
    return f": {text}\n\n".encode()


@dataclass(frozen=True)
class SSEMessage:
    event: str
    data: str


class SSEParser:
    """Incremental SSE parser: feed decoded lines (without newline), get messages.

    Follows the WHATWG rules that matter here: `data` lines are joined with a newline,
    a blank line dispatches, comment lines (starting with ':') are ignored, the event
    name defaults to "message".
    """

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> SSEMessage | None:
        line = line.rstrip("\r")
        if line == "":
            if not self._data:
                self._event = ""
                return None
            msg = SSEMessage(self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return msg
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        return None

    def close(self) -> SSEMessage | None:
        """Dispatch a trailing message that lacked its blank line."""
        return self.feed("")


class SSEStream:
    """Feed bytes as they arrive (any chunking); complete messages come out.

    The worker reads the model's stream through this, and the load generators read
    the worker's and vLLM's streams through it to time each chunk. Lines are split on
    bytes (a b"\n" never occurs inside a multi-byte UTF-8 character, so a character cut
    between two chunks is decoded whole) and a partial line is kept until its newline
    arrives.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._lines = SSEParser()

    def feed(self, chunk: bytes | str) -> list[SSEMessage]:
        data = chunk.encode() if isinstance(chunk, str) else chunk
        if self._buffer:
            data = self._buffer + data
        if b"\n" not in data:
            self._buffer = data
            return []
        *lines, self._buffer = data.split(b"\n")
        out: list[SSEMessage] = []
        feed = self._lines.feed
        for line in lines:
            msg = feed(line.decode("utf-8", "replace"))
            if msg is not None:
                out.append(msg)
        return out

    def close(self) -> list[SSEMessage]:
        """Dispatch what the stream ended with, even without a final blank line."""
        out: list[SSEMessage] = []
        if self._buffer:
            msg = self._lines.feed(self._buffer.decode("utf-8", "replace"))
            if msg is not None:
                out.append(msg)
        self._buffer = b""
        last = self._lines.close()
        if last is not None:
            out.append(last)
        return out


def parse_events(text: str) -> list[tuple[str, Any]]:
    """Parse a whole SSE body into (event, decoded JSON data) pairs."""
    parser = SSEParser()
    out: list[tuple[str, Any]] = []
    for line in [*text.split("\n"), ""]:
        msg = parser.feed(line)
        if msg is not None:
            out.append((msg.event, json.loads(msg.data)))
    return out
