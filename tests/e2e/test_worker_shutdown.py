"""Graceful shutdown on SIGTERM: readiness and new turns answer 503 at once, the in-flight
turn is checkpointed (its lease released), and the process exits within the grace period."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import httpx
import redis

from tests.e2e.worker_client import TurnStream, create_session, post_turn, post_turn_retrying

GRACE_S = 8.0
LONG_TURN = {"message": "Write a long story about a robot.", "turn_id": "long", "max_tokens": 1500}


def test_sigterm_drains_checkpoints_and_exits_in_time(worker_factory: Any) -> None:
    worker = worker_factory({"GRACE_PERIOD_S": str(GRACE_S), "LEASE_S": "30"})
    sid = create_session(worker.url)
    other = create_session(worker.url)
    holder: dict[str, TurnStream] = {}
    thread = threading.Thread(target=lambda: holder.update(s=post_turn(worker.url, sid, LONG_TURN)))
    thread.start()
    deadline = time.monotonic() + 60
    while not httpx.get(f"{worker.url}/metrics", timeout=5).text.count(
        'agent_checkpoints_total{agent="agent",phase="accepted"} 1.0'
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)  # well into the answer's stream

    sent = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    ready = httpx.get(f"{worker.url}/readyz", timeout=5)
    assert ready.status_code == 503 and "draining" in ready.json()["failed"]
    refused = post_turn(worker.url, other, {"message": "hi", "max_tokens": 4})
    assert refused.status == 503 and refused.body["error"]["code"] == "draining"
    assert httpx.post(f"{worker.url}/v1/sessions", json={}, timeout=5).status_code == 503

    code = worker.process.wait(timeout=GRACE_S + 5)
    elapsed = time.monotonic() - sent
    assert code == 0
    assert elapsed < GRACE_S, f"exited after {elapsed:.1f} s"
    thread.join(timeout=10)
    stream = holder["s"]
    assert stream.status == 200 and stream.events[-1][0] in ("done", "error")

    client = redis.Redis.from_url(worker_factory.redis.url, decode_responses=True)
    try:
        assert client.exists(f"swarm:{{{sid}}}:lease") == 0  # released, despite LEASE_S=30
    finally:
        client.close()

    # Another worker picks the interrupted turn up at once (no lease to wait for).
    replacement = worker_factory({"LEASE_S": "30"})
    started = time.monotonic()
    resumed = post_turn_retrying(
        replacement.url, sid, {**LONG_TURN, "max_tokens": 1500}, deadline_s=5
    )
    assert resumed.status == 200
    if stream.events[-1][0] == "error":  # interrupted mid-turn: resumed from the checkpoint
        assert resumed.first("resumed")["from_phase"] == "accepted"
    assert resumed.names()[-1] == "done"
    assert time.monotonic() - started < 120


def test_sigterm_when_idle_exits_quickly(worker_factory: Any) -> None:
    worker = worker_factory({"GRACE_PERIOD_S": str(GRACE_S)})
    sent = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(timeout=GRACE_S) == 0
    assert time.monotonic() - sent < 3.0
