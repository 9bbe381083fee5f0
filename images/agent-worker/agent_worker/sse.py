"""Server-sent events: framing what the worker sends, parsing what the model sends."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

EVENT_NAMES = ("resumed", "token", "tool_call", "tool_result", "done", "error")


def format_event(event: str, data: dict[str, Any]) -> bytes:
    """One SSE frame: `event:` line, a single-line JSON `data:` line, blank line."""
    if not event or any(c in event for c in "\r\n:"):
        raise ValueError(f"invalid SSE event name {event!r}")
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event}\ndata: {payload}\n\n".encode()


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
    """Feed bytes or text as they arrive (any chunking); complete messages come out.

    Load generators read raw chunks to time each one; this splits them into lines for
    `SSEParser`, keeping a partial line until its newline arrives.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._lines = SSEParser()

    def feed(self, chunk: bytes | str) -> list[SSEMessage]:
        text = chunk.decode("utf-8", errors="replace") if isinstance(chunk, bytes) else chunk
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        return [m for m in (self._lines.feed(line) for line in lines) if m is not None]

    def close(self) -> list[SSEMessage]:
        """Dispatch what the stream ended with, even without a final blank line."""
        out = (
            [m for m in (self._lines.feed(self._buffer),) if m is not None] if self._buffer else []
        )
        self._buffer = ""
        last = self._lines.close()
        return [*out, *([last] if last is not None else [])]


def parse_events(text: str) -> list[tuple[str, Any]]:
    """Parse a whole SSE body into (event, decoded JSON data) pairs."""
    parser = SSEParser()
    out: list[tuple[str, Any]] = []
    for line in [*text.split("\n"), ""]:
        msg = parser.feed(line)
        if msg is not None:
            out.append((msg.event, json.loads(msg.data)))
    return out
