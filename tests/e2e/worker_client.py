"""A small client for the agent worker's HTTP API, for the e2e tests."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from agent_worker.sse import SSEParser
from prometheus_client.parser import text_string_to_metric_families


@dataclass
class TurnStream:
    status: int
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    body: Any = None  # JSON error body when status != 200
    broken: bool = False  # the connection ended without a `done`/`error` event

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def first(self, name: str) -> dict[str, Any]:
        return next(data for event, data in self.events if event == name)

    def all(self, name: str) -> list[dict[str, Any]]:
        return [data for event, data in self.events if event == name]


def create_session(url: str, user: str = "e2e") -> str:
    response = httpx.post(f"{url}/v1/sessions", json={"user": user}, timeout=10)
    assert response.status_code == 201, response.text
    return str(response.json()["session_id"])


def post_turn(
    url: str, sid: str, body: dict[str, Any] | bytes, timeout_s: float = 120
) -> TurnStream:
    """Send a turn and read its SSE stream to the end (or until the worker dies)."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with httpx.Client(timeout=httpx.Timeout(timeout_s, connect=5)) as client:
        try:
            with client.stream(
                "POST",
                f"{url}/v1/sessions/{sid}/turns",
                content=content,
                headers={"content-type": "application/json"},
            ) as response:
                if response.status_code != 200:
                    response.read()
                    return TurnStream(response.status_code, body=response.json())
                stream = TurnStream(200)
                parser = SSEParser()
                try:
                    for line in response.iter_lines():
                        msg = parser.feed(line)
                        if msg is not None:
                            stream.events.append((msg.event, json.loads(msg.data)))
                except (httpx.RemoteProtocolError, httpx.ReadError):
                    stream.broken = True
                if not stream.events or stream.events[-1][0] not in ("done", "error"):
                    stream.broken = True
                return stream
        except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
            return TurnStream(0, body=str(exc), broken=True)


def post_turn_retrying(
    url: str, sid: str, body: dict[str, Any], deadline_s: float = 60
) -> TurnStream:
    """Like post_turn, but waits out 409 (the turn's lease still held by a dead worker)."""
    deadline = time.monotonic() + deadline_s
    while True:
        stream = post_turn(url, sid, body)
        if stream.status != 409 or time.monotonic() > deadline:
            return stream
        time.sleep(0.25)


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 if none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def metrics_text(url: str) -> str:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    return response.text


def get_json(url: str, path: str) -> tuple[int, Any]:
    response = httpx.get(f"{url}{path}", timeout=10)
    return response.status_code, response.json()
