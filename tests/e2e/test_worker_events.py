"""Event mode against a real Kafka-protocol broker (Tansu): every task yields exactly one
result on the result topic, also when the worker dies between publishing a result and
recording/committing it (crash_after_publish), and when a task is delivered twice."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import redis
from agent_worker.topics import apply_topics, parse_document
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from components.agents.spec import AgentSpec, kafka_names
from components.data.kafka import (
    KafkaSpec,
    local_connection,
    local_topics,
    rendered_topics,
    topics_document,
    worker_environment,
)
from tests.e2e.worker_client import metric_value, metrics_text

# The bus as a stack declares it; the test runs its local rendering (LOCAL_BROKER_GAPS).
AGENT = AgentSpec.model_validate(
    {
        "name": "agent",
        "mode": "events",
        "tier": "batch",
        "model": "local",
        "replicas": {"min": 1, "max": 2},
        "topics": {
            "tasks": {"partitions": 2, "retentionHours": 24},
            "results": {"partitions": 2, "retentionHours": 24, "cleanupPolicy": "compact"},
            "deadLetter": {"partitions": 1, "retentionHours": 24},
        },
    }
)
BUS = KafkaSpec.model_validate({"version": "4.3.1", "brokers": 3})
NAMES = kafka_names(AGENT)

TASKS = [
    {
        "task_id": "task-1",
        "message": "Record in the ledger that I bought 3 apples.",
        "tool": "ledger",
    },
    {"task_id": "task-2", "message": "What is 12*7+3?", "tool": "calculator"},
    {"task_id": "task-3", "message": "Say hello to the platform team."},
    {"task_id": "task-4", "message": "Record in the ledger that I sold 2 pears.", "tool": "ledger"},
]


def events_env(bootstrap: str) -> dict[str, str]:
    return {
        **worker_environment(local_connection(bootstrap, [AGENT]), AGENT.name),
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "DEFAULT_MAX_TOKENS": "16",
        "LEASE_S": "2",
    }


async def create_topics(bootstrap: str) -> None:
    """The rendered topic list, applied as the MSK topic Job applies it."""
    document = topics_document(local_topics(rendered_topics(BUS, [AGENT])))
    states = await apply_topics(bootstrap, parse_document(document))
    assert all(s.created and not s.problems for s in states), states


async def produce(bootstrap: str, tasks: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for task in tasks:
            await producer.send_and_wait(
                NAMES.tasks, json.dumps(task).encode(), key=task["task_id"].encode()
            )
    finally:
        await producer.stop()


async def read_results(
    bootstrap: str, expect: set[str], settle_s: float, timeout_s: float
) -> list[dict[str, Any]]:
    """Every record on the result topic: until all `expect`ed task ids arrived, and then
    `settle_s` more seconds so that a duplicate would be seen too."""
    consumer = AIOKafkaConsumer(
        NAMES.results, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    results: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout_s
        settled_at: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    assert record.value is not None
                    doc = json.loads(record.value)
                    assert record.key == doc["task_id"].encode()
                    results.append(doc)
            if settled_at is None and expect <= {r["task_id"] for r in results}:
                settled_at = time.monotonic() + settle_s
            if settled_at is not None and time.monotonic() > settled_at:
                break
    finally:
        await consumer.stop()
    return results


def test_exactly_one_result_per_task_across_a_crash_after_publish(
    tansu: Any, worker_factory: Any
) -> None:
    asyncio.run(create_topics(tansu.url))
    crashing = worker_factory(
        {**events_env(tansu.url), "SWARM_FAULT_HOOKS": "1", "SWARM_FAULT": "crash_after_publish"}
    )
    asyncio.run(produce(tansu.url, TASKS))
    # The first task's result reaches the broker, then the worker dies before it records
    # the publish and commits the task's offset.
    assert crashing.process.wait(timeout=120) == 137
    first = asyncio.run(read_results(tansu.url, set(), settle_s=0, timeout_s=3))
    assert len(first) == 1

    replacement = worker_factory(events_env(tansu.url))
    ids = {t["task_id"] for t in TASKS}
    results = asyncio.run(read_results(tansu.url, ids, settle_s=4, timeout_s=180))
    counts = Counter(r["task_id"] for r in results)
    assert counts == dict.fromkeys(ids, 1), counts
    by_id = {r["task_id"]: r for r in results}
    assert all(r["status"] == "ok" for r in results), results
    assert by_id["task-3"]["tool_calls"] == []
    assert [c["name"] for c in by_id["task-2"]["tool_calls"]] == ["calculator"]

    # The redelivered task was settled from the result topic, not run or published again.
    text = metrics_text(replacement.url)
    assert metric_value(text, "agent_tasks_total", outcome="recovered") == 1
    assert metric_value(text, "agent_tasks_total", outcome="published") == len(TASKS) - 1

    # A task delivered twice (a producer retry, say) publishes nothing new.
    asyncio.run(produce(tansu.url, [TASKS[3]]))
    deadline = time.monotonic() + 60
    while metric_value(metrics_text(replacement.url), "agent_tasks_total", outcome="duplicate") < 1:
        assert time.monotonic() < deadline, "the duplicate task was not consumed"
        time.sleep(0.2)
    again = asyncio.run(read_results(tansu.url, ids, settle_s=2, timeout_s=30))
    assert Counter(r["task_id"] for r in again) == dict.fromkeys(ids, 1)

    # The ledger tool ran once per ledger task, keyed by the task's turn.
    client = redis.Redis.from_url(worker_factory.redis.url, decode_responses=True)
    try:
        for task_id in ("task-1", "task-4"):
            sid = by_id[task_id]["session_id"]
            entries = [json.loads(e) for e in client.lrange(f"swarm:{{{sid}}}:ledger", 0, -1)]
            assert [e["idempotency_key"] for e in entries] == [f"{sid}:task-{task_id}:1"]
    finally:
        client.close()
