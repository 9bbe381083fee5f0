"""Redis persistence: kill -9 Redis at least 1 s after an acknowledged checkpoint (append-only
file, fsync every second), start it again on its data: the session is intact."""

from __future__ import annotations

import time
from typing import Any

from tests.e2e.worker_client import create_session, get_json, post_turn

TURN = {"message": "What is 2+2?", "tool": "calculator", "turn_id": "t1", "max_tokens": 12}


def test_session_survives_redis_kill9(worker_factory: Any, redis_factory: Any) -> None:
    worker = worker_factory({"LEASE_S": "2"})
    redis_service = worker_factory.redis
    sid = create_session(worker.url)
    stream = post_turn(worker.url, sid, TURN)
    assert stream.names()[-1] == "done"  # the `done` checkpoint was acknowledged by Redis
    acknowledged = time.monotonic()
    status, before = get_json(worker.url, f"/v1/sessions/{sid}")
    assert status == 200 and before["turns"][0]["outcome"] == "done"
    status, ledger_before = get_json(worker.url, f"/v1/sessions/{sid}/ledger")

    time.sleep(max(0.0, 1.5 - (time.monotonic() - acknowledged)))
    redis_service.kill9()
    assert not redis_service.running
    status, _ = get_json(worker.url, "/readyz")
    assert status == 503  # the worker notices that its store is gone

    restarted = redis_factory(workdir=redis_service.log_path.parent, port=redis_service.port)
    assert restarted.port == redis_service.port
    deadline = time.monotonic() + 30
    while True:
        status, after = get_json(worker.url, f"/v1/sessions/{sid}")
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 200, after
    assert after == before
    assert get_json(worker.url, f"/v1/sessions/{sid}/ledger") == (200, ledger_before)

    # and the session goes on: the next turn sees the history
    follow = post_turn(worker.url, sid, {"message": "Thanks!", "turn_id": "t2", "max_tokens": 8})
    assert follow.names()[-1] == "done", follow.events
    status, later = get_json(worker.url, f"/v1/sessions/{sid}")
    assert [t["turn_id"] for t in later["turns"]] == ["t1", "t2"]
