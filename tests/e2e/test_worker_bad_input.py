"""Bad input gets a clear 4xx JSON error and changes nothing: no Redis key, no metric."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import redis

from tests.e2e.worker_client import create_session, post_turn

LIMIT = 256
UNKNOWN = "0" * 32


def redis_snapshot(url: str) -> dict[Any, Any]:
    client = redis.Redis.from_url(url)
    try:
        return {key: client.dump(key) for key in sorted(client.keys("*"))}
    finally:
        client.close()


def agent_samples(url: str) -> list[str]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sorted(line for line in text.splitlines() if line.startswith("agent_"))


@pytest.fixture
def worker(worker_factory: Any) -> Any:
    return worker_factory({"MAX_MESSAGE_BYTES": str(LIMIT)})


def test_bad_requests_are_rejected_and_change_nothing(worker: Any, worker_factory: Any) -> None:
    sid = create_session(worker.url)
    cases: list[tuple[str, str, bytes, int, str]] = [
        ("POST", f"/v1/sessions/{sid}/turns", b'{"message": "hi",', 400, "invalid_json"),
        ("POST", f"/v1/sessions/{sid}/turns", b'["hi"]', 400, "invalid_body"),
        ("POST", f"/v1/sessions/{sid}/turns", b'{"message": 42}', 400, "invalid_field"),
        ("POST", f"/v1/sessions/{sid}/turns", b'{"tool": "ledger"}', 400, "invalid_field"),
        (
            "POST",
            f"/v1/sessions/{sid}/turns",
            b'{"message": "hi", "tool": "shell"}',
            400,
            "unknown_tool",
        ),
        (
            "POST",
            f"/v1/sessions/{sid}/turns",
            b'{"message": "hi", "max_tokens": "many"}',
            400,
            "invalid_field",
        ),
        (
            "POST",
            f"/v1/sessions/{sid}/turns",
            json.dumps({"message": "x" * (LIMIT + 1)}).encode(),
            413,
            "message_too_large",
        ),
        ("POST", f"/v1/sessions/{sid}/turns", b"x" * (LIMIT * 8 + 8192), 413, "message_too_large"),
        ("POST", f"/v1/sessions/{UNKNOWN}/turns", b'{"message": "hi"}', 404, "session_not_found"),
        ("POST", "/v1/sessions/../../turns", b'{"message": "hi"}', 404, "not_found"),
        ("GET", f"/v1/sessions/{UNKNOWN}", b"", 404, "session_not_found"),
        ("GET", f"/v1/sessions/{UNKNOWN}/ledger", b"", 404, "session_not_found"),
        ("POST", "/v1/sessions", b'{"user": 7}', 400, "invalid_field"),
        ("POST", "/v1/sessions", b'{"agent": "someone-else"}', 400, "unknown_agent"),
        ("DELETE", f"/v1/sessions/{sid}", b"", 405, "method_not_allowed"),
    ]
    before_store = redis_snapshot(worker_factory.redis.url)
    before_metrics = agent_samples(worker.url)
    for method, path, body, status, code in cases:
        response = httpx.request(
            method,
            f"{worker.url}{path}",
            content=body or None,
            headers={"content-type": "application/json"},
            timeout=10,
        )
        assert response.status_code == status, (path, body[:60], response.text)
        error = response.json()["error"]
        assert error["code"] == code and error["message"], error
        assert redis_snapshot(worker_factory.redis.url) == before_store, (path, body[:60])
        assert agent_samples(worker.url) == before_metrics, (path, body[:60])

    # The session is still usable after all that.
    ok = post_turn(worker.url, sid, {"message": "Hello!", "max_tokens": 4})
    assert ok.status == 200 and ok.names()[-1] == "done"
