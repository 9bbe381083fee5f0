"""Graceful shutdown on SIGTERM: readiness and new turns answer 503 at once, the in-flight
turn is checkpointed as interrupted (its lease released), and the process exits within the
grace period.

The turn is held in flight by the worker's `hold_mid_stream` fault hook, so SIGTERM always
arrives while it runs and the drain always has to interrupt it: the outcome does not
depend on how long the model's answer happens to be.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import httpx
import redis
from agent_worker.__main__ import drain_budget

from tests.e2e.worker_client import (
    TurnStream,
    create_session,
    get_json,
    metric_value,
    metrics_text,
    post_turn,
)

GRACE_S = 8.0
HOLD_AFTER_TOKENS = 3
TURN = {"message": "Write a short story about a robot.", "turn_id": "held", "max_tokens": 64}
HOLDING = "fault hook hold_mid_stream: holding"


def test_sigterm_interrupts_the_held_turn_at_its_checkpoint_and_exits_in_time(
    worker_factory: Any,
) -> None:
    worker = worker_factory(
        {
            "GRACE_PERIOD_S": str(GRACE_S),
            "LEASE_S": "30",
            "SWARM_FAULT_HOOKS": "1",
            "SWARM_FAULT": "hold_mid_stream",
            "SWARM_FAULT_AFTER_TOKENS": str(HOLD_AFTER_TOKENS),
        }
    )
    sid = create_session(worker.url)
    other = create_session(worker.url)
    holder: dict[str, TurnStream] = {}
    thread = threading.Thread(target=lambda: holder.update(s=post_turn(worker.url, sid, TURN)))
    thread.start()

    # Provably in flight: the hook holds the turn (and says so), the worker counts it.
    deadline = time.monotonic() + 120
    while HOLDING not in worker.log_path.read_text(errors="replace"):
        assert thread.is_alive(), "the turn ended before the hold hook held it"
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.05)
    assert metric_value(metrics_text(worker.url), "agent_inflight_turns") == 1

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
    # The drain waited its budget for the held turn, then interrupted it, all in time.
    assert drain_budget(GRACE_S) <= elapsed < GRACE_S, f"exited after {elapsed:.1f} s"
    log = worker.log_path.read_text(errors="replace")
    assert "interrupting 1 turn(s) at their last checkpoint" in log
    thread.join(timeout=10)
    stream = holder["s"]
    assert stream.status == 200 and not stream.broken
    *tokens, (last, error) = stream.events
    assert {name for name, _ in tokens} <= {"token"} and len(tokens) <= HOLD_AFTER_TOKENS
    assert last == "error" and error["retryable"] is True
    assert error["message"] == "worker shutting down; re-send the turn to resume it"

    client = redis.Redis.from_url(worker_factory.redis.url, decode_responses=True)
    try:
        assert client.exists(f"swarm:{{{sid}}}:lease") == 0  # released, despite LEASE_S=30
    finally:
        client.close()

    # The checkpoint: the turn stays current at its last step, marked interrupted.
    replacement = worker_factory({"LEASE_S": "30"})
    status, session = get_json(replacement.url, f"/v1/sessions/{sid}")
    assert status == 200
    assert session["current"]["turn_id"] == "held" and session["current"]["phase"] == "accepted"
    assert session["current"]["interrupted"]["by"] == "shutdown"

    # Another worker resumes it at once (no lease to wait for, so no 409).
    resumed = post_turn(replacement.url, sid, TURN)
    assert resumed.status == 200
    assert resumed.first("resumed")["from_phase"] == "accepted"
    assert resumed.names()[-1] == "done"


def test_sigterm_when_idle_exits_quickly(worker_factory: Any) -> None:
    worker = worker_factory({"GRACE_PERIOD_S": str(GRACE_S)})
    sent = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(timeout=GRACE_S) == 0
    assert time.monotonic() - sent < 3.0
