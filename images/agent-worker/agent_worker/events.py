"""Event mode: tasks from TASK_TOPIC, exactly one result per task on RESULT_TOPIC.

The broker here (Tansu 0.6) rejects InitProducerId, so neither transactions nor the
idempotent producer are available; exactly-once results rest on a result ledger in Redis
keyed by task id (see API.md, "Exactly one result per task"):

1. the task runs through the checkpointed tool loop (turn id = task id), so a redelivered
   task resumes instead of starting over and its tool calls replay from the journal;
2. before publishing, the result and a publish intent (partition, end offset) are written
   to `swarm:task:<task_id>`;
3. the result is published with key = task id to that partition (acks=all);
4. the ledger entry is marked published; then the task's offset is committed.

A redelivered task whose entry is `published` publishes nothing. One left `publishing`
(crash between 3 and 4) is settled by reading the result partition from the recorded
offset: if a record with the task's key is there, nothing is published again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context
from redis.exceptions import RedisError

from agent_worker import state
from agent_worker.config import KafkaSecurity
from agent_worker.msk_iam import MskIamTokenProvider
from agent_worker.service import BudgetExceededError, DrainingError, TurnBusyError, Worker
from agent_worker.state import JSON, TurnRequest
from agent_worker.store import task_lease_key
from agent_worker.validation import ID_RE

log = logging.getLogger("agent_worker.events")
TASK_NAMESPACE = uuid.UUID("6f1c2a52-4d0e-4d8e-9a53-0c7b1f6e2a10")
MAX_ATTEMPTS = 5
SCAN_TIMEOUT_S = 10.0


class StopRequestedError(Exception):
    """Shutdown requested: leave the task uncommitted for redelivery."""


class RetryableTaskError(Exception):
    pass


@dataclass(frozen=True)
class Task:
    task_id: str
    session_id: str
    message: str
    tool: str | None
    user: str


def parse_task(
    raw: bytes | None, tools: tuple[str, ...] = state.TOOL_NAMES
) -> tuple[Task | None, str | None, str | None]:
    """(task, task_id, error): a task, or the id (if any) and why it is invalid."""
    try:
        body: Any = json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError):
        return None, None, "task is not valid JSON"
    if not isinstance(body, dict):
        return None, None, "task must be a JSON object"
    task_id = body.get("task_id")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    if not isinstance(task_id, str) or not ID_RE.match(task_id):
        return None, None, "task_id must be 1-128 of letters, digits, '._:-'"
    message = body.get("message")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    if not isinstance(message, str) or not message.strip():
        return None, task_id, "message must be a non-empty string"
    tool = body.get("tool")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    if tool is not None and tool not in state.TOOL_NAMES:
        return None, task_id, f"unknown tool {tool!r}"
    if tool is not None and tool not in tools:
        return None, task_id, f"tool {tool!r} is not enabled for this agent (AGENT_TOOLS)"
    sid = body.get("session_id")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    if sid is None:
        sid = uuid.uuid5(TASK_NAMESPACE, task_id).hex
    elif (
        not isinstance(sid, str)
        or not sid
        or len(sid) != 32
        or not all(c in "0123456789abcdef" for c in sid)
    ):
        return None, task_id, "session_id must be 32 lower-case hex digits"
    user = body.get("user") or "events"  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    return Task(task_id, str(sid), str(message), tool, str(user)[:64]), task_id, None  # pyright: ignore[reportUnknownArgumentType]


def partition_for(task_id: str, partitions: int) -> int:
    """Result partition chosen by the worker, so the publish intent can name it."""
    return zlib.crc32(task_id.encode()) % partitions


def result_document(task: Task, session: JSON, worker_id: str) -> JSON:
    turn = state.find_turn(session, f"task-{task.task_id}") or {}
    ok = turn.get("outcome") == "done"
    return {
        "task_id": task.task_id,
        "session_id": task.session_id,
        "status": "ok" if ok else "error",
        "output": turn.get("output_text", ""),
        "error": None if ok else (turn.get("error") or "turn did not complete"),
        "tool_calls": [
            {k: r[k] for k in ("name", "arguments", "idempotency_key", "result")}
            for r in turn.get("tool_results", [])
        ],
        "output_tokens": turn.get("output_tokens", 0),
        "steps": turn.get("steps", 0),
        "degraded": turn.get("degraded"),
        "worker": worker_id,
    }


def error_document(task_id: str, session_id: str | None, message: str, worker_id: str) -> JSON:
    return {
        "task_id": task_id,
        "session_id": session_id,
        "status": "error",
        "output": "",
        "error": message,
        "tool_calls": [],
        "output_tokens": 0,
        "steps": 0,
        "degraded": None,
        "worker": worker_id,
    }


def client_options(security: KafkaSecurity) -> dict[str, Any]:
    """aiokafka connection options for every client of the worker (consumer, producer,
    scanner): TLS against the given CA; SASL/SCRAM with the password read from its file, or
    SASL/OAUTHBEARER with tokens signed for MSK IAM."""
    options: dict[str, Any] = {"security_protocol": security.security_protocol}
    if security.security_protocol in ("SSL", "SASL_SSL"):
        # Without a CA file the system trust store verifies the brokers (MSK's certificates).
        options["ssl_context"] = create_ssl_context(cafile=security.ca_file)
    if security.security_protocol == "SASL_SSL" and security.sasl_mechanism == "OAUTHBEARER":
        assert security.aws_region is not None  # checked by load_settings
        options["sasl_mechanism"] = "OAUTHBEARER"
        options["sasl_oauth_token_provider"] = MskIamTokenProvider(security.aws_region)
    elif security.security_protocol == "SASL_SSL":
        assert security.password_file is not None  # checked by load_settings
        with open(security.password_file, encoding="utf-8") as handle:
            password = handle.read().strip()
        options["sasl_mechanism"] = security.sasl_mechanism
        options["sasl_plain_username"] = security.username
        options["sasl_plain_password"] = password
    return options


DEAD_LETTER_REASON = "x-dead-letter-reason"
DEAD_LETTER_SOURCE = "x-dead-letter-source"


def dead_letter_headers(tp: TopicPartition, offset: int, reason: str) -> list[tuple[str, bytes]]:
    """Why a record was not used and where it came from, as record headers (the record's
    own key and value are published unchanged)."""
    return [
        (DEAD_LETTER_REASON, reason.encode()),
        (DEAD_LETTER_SOURCE, f"{tp.topic}-{tp.partition}@{offset}".encode()),
    ]


class EventLoop:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        s = worker.settings
        assert s.kafka_bootstrap and s.task_topic and s.result_topic and s.consumer_group
        self.bootstrap = s.kafka_bootstrap
        self.task_topic = s.task_topic
        self.result_topic = s.result_topic
        self.group = s.consumer_group
        self.dead_letter_topic = s.dead_letter_topic
        self.agent = s.agent_name
        self._stop = asyncio.Event()
        client = f"agent-worker-{worker.instance_id}"
        security = client_options(s.kafka)
        self.consumer = AIOKafkaConsumer(
            self.task_topic,
            **security,
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            client_id=client,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=s.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(300, s.kafka_session_timeout_ms // 4),
            max_poll_interval_ms=600_000,
        )
        # KAFKA_ENABLE_IDEMPOTENCE is true on the cluster; the local broker (Tansu 0.6)
        # rejects InitProducerId, so it runs without (the result ledger still holds).
        self.producer = AIOKafkaProducer(
            **security,
            bootstrap_servers=self.bootstrap,
            client_id=client,
            acks="all",
            linger_ms=0,
            enable_idempotence=s.kafka.enable_idempotence,
        )
        self.scanner = AIOKafkaConsumer(
            **security,
            bootstrap_servers=self.bootstrap,
            client_id=client + "-scan",
            group_id=None,
            enable_auto_commit=False,
        )

    def request_stop(self) -> None:
        self._stop.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        if self._stop.is_set():
            raise StopRequestedError()

    async def run(self) -> None:
        try:
            await self.producer.start()
            await self.scanner.start()
            await self.consumer.start()
            log.info("consuming %s as group %s", self.task_topic, self.group)
            while not self._stop.is_set():
                batch = await self.consumer.getmany(timeout_ms=500, max_records=1)
                for tp, records in batch.items():
                    for record in records:
                        await self.handle(tp, record)
        except StopRequestedError:
            log.info("consumer stopping; uncommitted tasks will be redelivered")
        finally:
            for client in (self.consumer, self.scanner, self.producer):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.stop(), 5.0)

    async def handle(self, tp: TopicPartition, record: ConsumerRecord[Any, Any]) -> None:
        task, task_id, problem = parse_task(record.value, self.worker.settings.tools)
        if task is None:
            if task_id is None:
                await self.dead_letter(tp, record, problem or "unusable task")
                self.worker.metrics.tasks.labels(self.agent, "invalid").inc()
            else:
                await self.settle(
                    task_id,
                    lambda: self._constant(
                        error_document(
                            task_id, None, problem or "invalid task", self.worker.instance_id
                        )
                    ),
                )
        else:
            await self.settle(task.task_id, lambda: self.run_task(task))
        await self.consumer.commit({tp: record.offset + 1})

    async def dead_letter(
        self, tp: TopicPartition, record: ConsumerRecord[Any, Any], reason: str
    ) -> None:
        """Publish a record no result can answer (no usable task id) to the dead-letter
        topic, unchanged, with the reason and its origin in headers; then it is committed.
        Retried until the broker takes it: a record is never dropped silently."""
        if self.dead_letter_topic is None:
            log.warning(
                "skipping a task without usable task_id at %s@%d: %s (no DEAD_LETTER_TOPIC)",
                tp,
                record.offset,
                reason,
            )
            return
        attempt = 0
        while True:
            try:
                await self.producer.send_and_wait(
                    self.dead_letter_topic,
                    record.value,
                    key=record.key,
                    headers=dead_letter_headers(tp, record.offset, reason),
                )
                break
            except (KafkaError, OSError) as exc:
                attempt += 1
                delay = min(30.0, 2.0 ** (attempt - 1))
                log.warning("dead letter of %s@%d failed (%s); retry", tp, record.offset, exc)
                await self._sleep(delay)
        log.warning(
            "task at %s@%d sent to %s: %s", tp, record.offset, self.dead_letter_topic, reason
        )

    @staticmethod
    async def _constant(doc: JSON) -> JSON:
        return doc

    async def settle(self, task_id: str, produce: Callable[[], Awaitable[JSON]]) -> None:
        """Publish the task's one result unless the ledger shows it was published.

        The task lease makes one worker at a time settle a task (a consumer that lost its
        partition in a rebalance but still runs waits for, then sees, the other's result).
        """
        store = self.worker.store
        key, token = task_lease_key(task_id), f"{self.worker.instance_id}:{task_id}"
        attempt = 0
        while True:
            if self._stop.is_set():
                raise StopRequestedError()
            try:
                if not await store.acquire_lease(key, token, self.worker.lease_ms):
                    await self._sleep(max(100, await store.lease_ttl_ms(key)) / 1000)
                    continue
                beat = asyncio.create_task(self.worker.heartbeat(key, token))
                try:
                    await self._settle_leased(task_id, token, produce)
                    return
                finally:
                    beat.cancel()
                    with contextlib.suppress(Exception):
                        await store.release_lease(key, token)
            except (RetryableTaskError, KafkaError, RedisError, OSError) as exc:
                attempt += 1
                if attempt >= MAX_ATTEMPTS and isinstance(exc, RetryableTaskError):
                    doc = error_document(task_id, None, f"gave up: {exc}", self.worker.instance_id)
                    produce = functools.partial(self._constant, doc)
                delay = min(30.0, 2.0 ** (attempt - 1))
                log.warning(
                    "task %s attempt %d failed (%s); retry in %.0f s", task_id, attempt, exc, delay
                )
                await self._sleep(delay)

    async def _settle_leased(
        self, task_id: str, token: str, produce: Callable[[], Awaitable[JSON]]
    ) -> None:
        store = self.worker.store
        record = await store.task_get(task_id)
        if record is not None and record["state"] == "published":
            self.worker.metrics.tasks.labels(self.agent, "duplicate").inc()
            log.info("task %s: already published, nothing to do", task_id)
            return
        if record is not None and record["state"] == "publishing":
            if await self.find_published(task_id, record["partition"], record["from_offset"]):
                record["state"] = "published"
                await store.task_put(task_id, record)
                self.worker.metrics.tasks.labels(self.agent, "recovered").inc()
                log.info("task %s: result found on the topic, not publishing again", task_id)
                return
            result = record["result"]
        else:
            result = await produce()
        await self.publish(task_id, result, token)
        self.worker.metrics.tasks.labels(self.agent, "published").inc()

    async def run_task(self, task: Task) -> JSON:
        worker = self.worker
        request = TurnRequest(
            turn_id=f"task-{task.task_id}",
            message=task.message,
            tool=task.tool,
            max_tokens=worker.settings.default_max_tokens,
        )
        create = state.new_session(task.session_id, task.user, self.agent, time.time())
        while True:
            try:
                turn = await worker.open_turn(task.session_id, request, create=create)
                break
            except DrainingError:
                raise StopRequestedError() from None
            except TurnBusyError as exc:
                await self._sleep(exc.retry_after_s)
            except state.TurnConflictError as exc:
                return error_document(task.task_id, task.session_id, str(exc), worker.instance_id)
            except BudgetExceededError as exc:  # an answer, not a retry: the result says why
                doc = error_document(task.task_id, task.session_id, str(exc), worker.instance_id)
                doc["budget"] = {
                    "scope": exc.decision.scope,
                    "limit_tokens": exc.decision.limit_tokens,
                    "used_tokens": exc.decision.used_tokens,
                }
                return doc

        async def emit(event: str, data: dict[str, Any]) -> None:
            if event == "error":
                log.warning("task %s: %s", task.task_id, data.get("message"))

        run = worker.spawn(turn, emit)
        try:
            await run
        except asyncio.CancelledError:
            raise StopRequestedError() from None
        final = await worker.store.load_session(task.session_id)
        if final is None or state.find_turn(final, request.turn_id) is None:
            raise RetryableTaskError("turn did not finish")
        return result_document(task, final, worker.instance_id)

    async def publish(self, task_id: str, result: JSON, token: str) -> None:
        partitions = await self.producer.partitions_for(self.result_topic)
        if not partitions:
            raise RetryableTaskError(f"result topic {self.result_topic} has no partitions")
        partition = partition_for(task_id, len(partitions))
        tp = TopicPartition(self.result_topic, partition)
        end = (await self.scanner.end_offsets([tp]))[tp]
        record: JSON = {
            "state": "publishing",
            "result": result,
            "partition": partition,
            "from_offset": end,
            "at": time.time(),
        }
        await self.worker.store.task_put(task_id, record)
        value = json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode()
        # Last check before the one step that cannot be fenced: still the task's settler?
        if not await self.worker.store.refresh_lease(
            task_lease_key(task_id), token, self.worker.lease_ms
        ):
            raise RetryableTaskError("task lease lost before publishing")
        meta = await self.producer.send_and_wait(
            self.result_topic, value, key=task_id.encode(), partition=partition
        )
        self.worker.faults.hit("crash_after_publish")
        record["state"] = "published"
        record["offset"] = meta.offset
        await self.worker.store.task_put(task_id, record)
        log.info(
            "task %s: result published at %s-%d@%d",
            task_id,
            self.result_topic,
            partition,
            meta.offset,
        )

    async def find_published(self, task_id: str, partition: int, from_offset: int) -> bool:
        """Is a result with this task's key on the partition at or after `from_offset`?"""
        tp = TopicPartition(self.result_topic, partition)
        key = task_id.encode()
        self.scanner.assign([tp])
        end = (await self.scanner.end_offsets([tp]))[tp]
        if end <= from_offset:
            return False
        self.scanner.seek(tp, from_offset)
        deadline = time.monotonic() + SCAN_TIMEOUT_S
        while time.monotonic() < deadline:
            batch = await self.scanner.getmany(tp, timeout_ms=500)
            for rec in batch.get(tp, []):
                if rec.key == key:
                    return True
                if rec.offset + 1 >= end:
                    return False
            if await self.scanner.position(tp) >= end:
                return False
        raise RetryableTaskError(f"could not read {tp} up to offset {end}")
