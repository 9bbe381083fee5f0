"""Scaling down never loses a turn: a tool turn in flight on worker A when A gets SIGTERM
finishes on worker B, with one answer, one turn outcome, one usage record and one run of
the tool.

The path is http mode, because that is what a scale-down of the pilot's `concierge` hits:
it is the pilot's http agent type (interactive, scaled by KEDA on active sessions per pod
between `replicas.min` and `replicas.max`) and the only one with a tool that has a side
effect (`ledger`). When KEDA lowers its replicas the Deployment deletes a pod: the kubelet
runs the preStop sleep (the pod leaves the Service's endpoints), then sends SIGTERM; the
worker drains, interrupts the turn still running at its last checkpoint, releases the
turn's lease and tells the client to re-send; the re-sent turn reaches a remaining pod
through the Service and resumes there. (An events agent's task is redelivered by Kafka
instead; tests/e2e/test_worker_events.py covers a task redelivered after a crash.)

Both workers are the pilot's `concierge` as its Deployment renders it, with the local
differences of loadtests/local_worker.py, sharing one real Redis (sessions, leases, the
tool journal and ledger, the usage stream); each has its own in-process Qdrant folder.
Worker A also has the fault hooks on (`hold_after_tool`), and a drain budget of a few
seconds: the hold never ends by itself, and the drain path is the same at any length.
The Service is the client's choice of a worker whose /readyz answers 200, as the
endpoints controller would choose.

The model is the real vLLM on CPU behind the local gateway, as the local target runs
them. The turn names its tool, so the worker forces that call and guided decoding pins
its arguments to the ledger's schema, as in
test_worker_recovery.py: the tool call is deterministic without a scripted model. The
hook holds the turn after the ledger tool ran and its `tool_done` checkpoint was written,
before the model call for the answer, so SIGTERM always lands between the two.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import redis

from loadtests import services
from loadtests.gateway import LocalGateway
from loadtests.local_worker import LocalEnv, LocalSite, RenderedWorker, start_local_worker
from loadtests.services import Service
from tests.e2e.conftest import RedisFactory
from tests.e2e.worker_client import TurnStream, create_session, post_turn

GRACE_S = 8
TURN = {
    "message": "Record in the ledger that I bought 3 apples.",
    "tool": "ledger",
    "turn_id": "turn-1",
    "max_tokens": 24,
    "min_tokens": 4,  # an answer to see, whatever the small model would rather do
}
HOLDING = "fault hook hold_after_tool: holding"
RESEND = "worker shutting down; re-send the turn to resume it"
HELD = (
    LocalEnv("SWARM_FAULT_HOOKS", "add", "1", "test: worker A's fault hooks are on"),
    LocalEnv(
        "SWARM_FAULT",
        "add",
        "hold_after_tool",
        "test: hold the turn between its tool and its answer until the drain interrupts it",
    ),
    LocalEnv(
        "GRACE_PERIOD_S",
        "set",
        str(GRACE_S),
        "test: the hold never ends by itself, so the drain always runs its whole budget; "
        "a short one keeps the test short, the drain path is the same",
    ),
)


def start(
    rendered: RenderedWorker,
    *,
    gateway: LocalGateway,
    redis_url: str,
    folder: Path,
    extra: Sequence[LocalEnv] = (),
) -> Service:
    site = LocalSite(
        port=services.free_port(),
        gateway_url=gateway.proxy.url,
        gateway_key_file=gateway.key_file,
        redis_url=redis_url,
        qdrant_path=folder / "qdrant",
    )
    worker, _ = start_local_worker(rendered, site, workdir=folder / "worker", extra=extra)
    return worker


def through_service(workers: Sequence[Service]) -> str:
    """The URL of a worker the Service would route to now (its /readyz answers 200)."""
    ready = [w.url for w in workers if services.http_ok(f"{w.url}/readyz")]
    assert ready, "no worker is ready"
    return ready[0]


def instance(worker: Service) -> str:
    return str(httpx.get(f"{worker.url}/healthz", timeout=5).json()["worker"])


def usage_records(client: redis.Redis, sid: str) -> list[dict[str, str]]:
    """The session's records in the usage stream both workers append to."""
    entries: Any = client.xrange("swarm:usage")
    return [fields for _, fields in entries if fields["session"] == sid]


def test_sigterm_in_a_tool_turn_loses_nothing_and_runs_the_tool_once(
    rendered_concierge: RenderedWorker,
    local_gateway: LocalGateway,
    redis_factory: RedisFactory,
    tmp_path: Path,
) -> None:
    store = redis_factory()
    gw, url = local_gateway, store.url
    a = start(rendered_concierge, gateway=gw, redis_url=url, folder=tmp_path / "a", extra=HELD)
    b = start(rendered_concierge, gateway=gw, redis_url=url, folder=tmp_path / "b")
    client = redis.Redis.from_url(store.url, decode_responses=True)
    try:
        a_id, b_id = instance(a), instance(b)
        sid = create_session(a.url)
        ledger_key, lease_key = f"swarm:{{{sid}}}:ledger", f"swarm:{{{sid}}}:lease"

        held: dict[str, TurnStream] = {}
        thread = threading.Thread(target=lambda: held.update(s=post_turn(a.url, sid, TURN)))
        thread.start()
        deadline = time.monotonic() + 120
        while HOLDING not in a.log_path.read_text(errors="replace"):
            assert thread.is_alive(), "the turn ended before the hook held it"
            assert time.monotonic() < deadline, a.log_tail()
            time.sleep(0.05)
        # In flight on A: the tool has run there, the answer has not been asked for.
        session = json.loads(client.get(f"swarm:{{{sid}}}:session") or "{}")
        assert (session["current"]["phase"], session["current"]["steps"]) == ("tool_done", 1)
        assert client.llen(ledger_key) == 1
        assert str(client.get(lease_key)).startswith(f"{a_id}:")

        # The scale-down: SIGTERM to A (after preStop, as the kubelet sends it).
        a.process.send_signal(signal.SIGTERM)
        assert a.process.wait(timeout=GRACE_S + 5) == 0
        thread.join(timeout=10)
        first = held["s"]
        assert first.status == 200 and not first.broken, first.events
        assert first.names() == ["tool_call", "tool_result", "error"], first.events
        assert first.first("tool_result")["replayed"] is False
        assert first.first("error") == {"message": RESEND, "retryable": True}
        assert client.exists(lease_key) == 0  # released at once: B need not wait it out

        # The client re-sends through the Service: only B is left behind it.
        url = through_service([a, b])
        assert url == b.url
        resumed = post_turn(url, sid, TURN)
        assert resumed.status == 200 and not resumed.broken, resumed.events
        assert resumed.first("resumed") == {
            "turn_id": "turn-1",
            "from_phase": "tool_done",
            "steps": 1,
        }
        [result] = resumed.all("tool_result")
        assert result["replayed"] is True and result["result"]["recorded"] is True
        answer = "".join(t["text"] for t in resumed.all("token"))
        done = resumed.first("done")
        assert answer.strip() and done["steps"] == 2 and resumed.names()[-1] == "done"

        # What the user's session holds: one finished turn with that answer, no other.
        response = httpx.get(f"{b.url}/v1/sessions/{sid}", timeout=5)
        doc = response.json()
        assert response.status_code == 200 and doc["current"] is None
        [turn] = doc["turns"]
        assert (turn["turn_id"], turn["outcome"], turn["output_text"]) == ("turn-1", "done", answer)
        assert doc["usage"]["tool_calls"] == 1

        # The tool ran once, on A: one ledger entry (its side effect) and one journal record,
        # read from the store both workers share.
        entries = [json.loads(e) for e in client.lrange(ledger_key, 0, -1)]
        assert [(e["idempotency_key"], e["worker"]) for e in entries] == [(f"{sid}:turn-1:1", a_id)]
        journal = client.hgetall(f"swarm:{{{sid}}}:journal")
        assert list(journal) == [f"{sid}:turn-1:1"]
        assert json.loads(journal[f"{sid}:turn-1:1"])["worker"] == a_id != b_id

        # One usage record for the turn, with both workers' tokens.
        records = usage_records(client, sid)
        assert len(records) == 1, records
        assert (records[0]["outcome"], records[0]["tool_calls"]) == ("done", "1")
        assert int(records[0]["input_tokens"]) == turn["input_tokens"] > 0
        assert int(records[0]["output_tokens"]) == turn["output_tokens"] > 0

        # Re-sending the finished turn (a client that missed `done`) runs nothing again.
        again = post_turn(b.url, sid, TURN)
        assert again.first("done") == done
        assert client.llen(ledger_key) == 1
        assert len(usage_records(client, sid)) == 1
    finally:
        client.close()
        b.stop()
        a.stop()
