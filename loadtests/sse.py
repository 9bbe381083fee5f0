"""Incremental Server-Sent Events parsing (the worker's turns and OpenAI streams)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    event: str  # "message" when the stream names none (OpenAI chunks)
    data: str


class SseParser:
    """Feed bytes as they arrive; complete events come out, partial ones wait for more."""

    def __init__(self) -> None:
        self._buffer = ""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes | str) -> list[Event]:
        text = chunk.decode("utf-8", errors="replace") if isinstance(chunk, bytes) else chunk
        self._buffer += text.replace("\r\n", "\n").replace("\r", "\n")
        events: list[Event] = []
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            if not line:
                if self._data or self._event:
                    events.append(Event(self._event or "message", "\n".join(self._data)))
                self._event, self._data = "", []
                continue
            if line.startswith(":"):
                continue  # comment / keep-alive
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                self._event = value
            elif name == "data":
                self._data.append(value)
        return events

    def close(self) -> list[Event]:
        """Flush an event the stream ended without a blank line after."""
        events = self.feed("\n\n") if self._buffer or self._data else []
        return events
