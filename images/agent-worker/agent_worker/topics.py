"""Create the stack's topics from the rendered topic list, then read their settings back.

Where no operator manages topics (Amazon MSK has no topic resource; the local target has
no operator) the stack renders its topics as one JSON document and this module applies
it through the Kafka admin API: `python -m agent_worker.topics /config/topics.json`, with
the broker and credentials from the same variables the worker reads (KAFKA_BOOTSTRAP,
KAFKA_SECURITY_PROTOCOL, ...). A topic that exists is left as it is and checked: a
partition count or setting that differs from the document is reported and fails the run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from agent_worker.config import ConfigError, KafkaSecurity, kafka_security

log = logging.getLogger("agent_worker.topics")
TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class TopicRequest:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


def parse_document(text: str) -> list[TopicRequest]:
    """The rendered topic list (see components/data/kafka.py topics_document)."""
    body: Any = json.loads(text)
    return [
        TopicRequest(
            name=str(t["name"]),
            partitions=int(t["partitions"]),
            replication_factor=int(t["replicationFactor"]),
            config={str(k): str(v) for k, v in dict(t["config"]).items()},
        )
        for t in body["topics"]
    ]


@dataclass(frozen=True)
class TopicState:
    name: str
    created: bool
    partitions: int
    config: dict[str, str]
    problems: tuple[str, ...]


def _admin_options(security: KafkaSecurity) -> dict[str, Any]:
    from agent_worker.events import client_options  # noqa: PLC0415 - only the admin needs it

    return client_options(security)


async def apply_topics(
    bootstrap: str, topics: list[TopicRequest], security: KafkaSecurity | None = None
) -> list[TopicState]:
    """Create missing topics with their settings; read back partitions and settings."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, **_admin_options(security or KafkaSecurity())
    )
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(t.name, t.partitions, t.replication_factor, topic_configs=t.config)
                for t in topics
            ]
        )
        created: set[str] = set()
        errors: Any = getattr(response, "topic_errors")  # noqa: B009 - untyped response
        for name, code, message in errors:
            if code == 0:
                created.add(str(name))
            elif code != TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"creating topic {name}: error {code} {message}")
        described = await admin.describe_topics([t.name for t in topics])
        partitions = {str(d["topic"]): len(d["partitions"]) for d in described}
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t.name) for t in topics]
        )
        actual: dict[str, dict[str, str]] = {}
        for part in configs:
            resources: Any = getattr(part, "resources")  # noqa: B009 - untyped response
            # (error_code, error_message, resource_type, resource_name, config_entries)
            for resource in resources:
                actual[str(resource[3])] = {str(e[0]): str(e[1]) for e in resource[4]}
    finally:
        await admin.close()
    states: list[TopicState] = []
    for t in topics:
        have = actual.get(t.name, {})
        problems: list[str] = []
        if partitions.get(t.name) != t.partitions:
            problems.append(f"{partitions.get(t.name)} partitions, the list says {t.partitions}")
        for key, want in sorted(t.config.items()):
            if have.get(key) != want:
                problems.append(f"{key} is {have.get(key)!r}, the list says {want!r}")
        states.append(
            TopicState(t.name, t.name in created, partitions.get(t.name, 0), have, tuple(problems))
        )
    return states


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    if len(argv) != 1:
        print("usage: python -m agent_worker.topics TOPICS.json", file=sys.stderr)
        return 2
    try:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "")
        if not bootstrap:
            raise ConfigError("KAFKA_BOOTSTRAP is required")
        security = kafka_security(os.environ)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as handle:
        topics = parse_document(handle.read())
    states = asyncio.run(apply_topics(bootstrap, topics, security))
    failed = False
    for s in states:
        verb = "created" if s.created else "exists"
        log.info("topic %s %s with %d partitions", s.name, verb, s.partitions)
        for problem in s.problems:
            failed = True
            log.error("topic %s: %s", s.name, problem)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
