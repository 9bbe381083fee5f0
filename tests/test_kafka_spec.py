"""Event bus config rules, rendering and the worker environment it maps to."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from components.agents.spec import AgentSpec, agent_problems, kafka_names
from components.data.kafka import (
    MSK_KAFKA_VERSIONS,
    STRIMZI_KAFKA_VERSIONS,
    broker_config,
    brokers_per_zone,
    kafka_problems,
    local_connection,
    msk_agent_policy,
    rendered_topics,
    server_properties,
    strimzi_connection,
    topics_document,
    worker_environment,
    zone_spread_problems,
)
from components.data.msk_pricing import msk_monthly_usd
from tests.kafka_support import NAMESPACE, agents, agents_raw, kafka, msk

ROOT = Path(__file__).resolve().parent.parent
WORKER_CONFIG = ROOT / "images" / "agent-worker" / "agent_worker" / "config.py"


def test_pilot_shape_has_no_problems() -> None:
    assert kafka_problems(kafka(), agents()) == []
    assert kafka_problems(msk(), agents()) == []


@pytest.mark.parametrize(
    ("changes", "path", "fragment"),
    [
        ({"replicationFactor": 4}, "kafka.replicationFactor", "4 is above brokers (3)"),
        ({"minInsyncReplicas": 3}, "kafka.minInsyncReplicas", "3 is not below replicationFactor 3"),
        ({"minInsyncReplicas": 1}, "kafka.minInsyncReplicas", "use at least 2"),
        ({"version": "4.1.0"}, "kafka.version", "not a Kafka version of Strimzi 1.2.0"),
        ({"msk": {"brokerType": "kafka.m7g.large"}}, "kafka.msk", "only used with mode msk"),
    ],
)
def test_each_kafka_rule_names_path_and_value(
    changes: dict[str, object], path: str, fragment: str
) -> None:
    problems = kafka_problems(kafka(**changes), agents())
    assert [p for p, _ in problems] == [path], problems
    assert fragment in problems[0][1]


def test_msk_rules() -> None:
    assert kafka_problems(msk(version="4.3.1"), agents()) == [
        (
            "kafka.version",
            f"'4.3.1' is not an MSK KRaft version (one of {', '.join(MSK_KAFKA_VERSIONS)})",
        )
    ]
    bad = kafka(mode="msk", version="4.0.x.kraft", msk={"brokerType": "kafka.x9.huge"})
    assert [p for p, _ in kafka_problems(bad, agents())] == ["kafka.msk.brokerType"]
    missing = kafka(mode="msk", version="4.0.x.kraft")
    assert [p for p, _ in kafka_problems(missing, agents())] == ["kafka.msk"]


def test_tasks_partitions_must_cover_max_replicas() -> None:
    raw = agents_raw()
    raw[0]["topics"]["tasks"]["partitions"] = 4
    problems = kafka_problems(kafka(), agents(raw))
    assert problems == [
        (
            "agents[0].topics.tasks.partitions",
            "4 partitions for up to 6 replicas of researcher: consumers past 4 would sit idle "
            "(KEDA never scales past the partitions); use at least 6",
        )
    ]


def test_agent_mode_and_topics_must_agree() -> None:
    raw = agents_raw()
    del raw[0]["topics"]
    with pytest.raises(ValidationError, match="mode events: give its topics"):
        agents(raw)
    raw = agents_raw()
    raw[1]["topics"] = raw[0]["topics"]
    with pytest.raises(ValidationError, match="mode http: it has no topics"):
        agents(raw)
    twice = agents([agents_raw()[0], agents_raw()[0]])
    assert agent_problems(twice) == [
        (
            "agents[1].name",
            "'researcher' is already the name of agents[0]: agent names must be unique",
        )
    ]


@given(st.integers(min_value=0, max_value=60), st.integers(min_value=1, max_value=6))
def test_brokers_spread_evenly(brokers: int, zones: int) -> None:
    spread = brokers_per_zone(brokers, zones)
    assert sum(spread) == brokers and len(spread) == zones
    assert max(spread) - min(spread) <= 1


def test_zone_rules() -> None:
    assert zone_spread_problems(kafka(), 3) == []
    assert [p for p, _ in zone_spread_problems(kafka(), 2)] == ["kafka.replicationFactor"]
    assert zone_spread_problems(msk(brokers=4), 3)[0] == (
        "kafka.brokers",
        "4 brokers over 3 AZs: MSK needs a multiple of 3",
    )


def test_broker_settings_render_the_same_for_strimzi_and_msk() -> None:
    config = broker_config(kafka())
    assert config["min.insync.replicas"] == 2 and config["default.replication.factor"] == 3
    assert config["unclean.leader.election.enable"] is False
    assert config["auto.create.topics.enable"] is False
    lines = server_properties(msk()).splitlines()
    assert "auto.create.topics.enable=false" in lines
    assert "min.insync.replicas=2" in lines
    assert len(lines) == len(config)


def test_topics_render_names_partitions_and_config() -> None:
    topics = rendered_topics(kafka(), agents())
    assert [(t.name, t.partitions, t.replicas) for t in topics] == [
        ("researcher.tasks", 6, 3),
        ("researcher.results", 6, 3),
        ("researcher.dead-letter", 1, 3),
    ]
    assert topics[1].config == {
        "cleanup.policy": "compact",
        "min.insync.replicas": "2",
        "retention.ms": str(168 * 3_600_000),
        "unclean.leader.election.enable": "false",
    }
    doc = json.loads(topics_document(topics))
    assert doc["topics"][2]["replicationFactor"] == 3


def test_msk_agent_policy_names_only_its_topics_and_group() -> None:
    arn = "arn:aws:kafka:us-east-1:111122223333:cluster/events/abc-1"
    policy = json.loads(msk_agent_policy(arn, agents()[0]))
    resources = [
        r
        for s in policy["Statement"]
        for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    ]
    assert sorted(set(resources)) == [
        arn,
        "arn:aws:kafka:us-east-1:111122223333:group/events/abc-1/researcher.workers",
        "arn:aws:kafka:us-east-1:111122223333:topic/events/abc-1/researcher.dead-letter",
        "arn:aws:kafka:us-east-1:111122223333:topic/events/abc-1/researcher.results",
        "arn:aws:kafka:us-east-1:111122223333:topic/events/abc-1/researcher.tasks",
    ]
    write = next(s for s in policy["Statement"] if s["Sid"] == "ProduceResults")
    assert all("tasks" not in r for r in write["Resource"])


def test_msk_cost_is_broker_hours_plus_storage() -> None:
    assert msk_monthly_usd("kafka.m7g.large", 3, 100) == round(0.204 * 3 * 730 + 0.1 * 300, 2)


def _names_the_worker_reads() -> set[str]:
    return set(re.findall(r'"([A-Z][A-Z0-9_]+)"', WORKER_CONFIG.read_text()))


def test_worker_environment_names_are_those_the_worker_reads() -> None:
    read = _names_the_worker_reads()
    strimzi = worker_environment(strimzi_connection("events", NAMESPACE, agents()), "researcher")
    local = worker_environment(local_connection("127.0.0.1:9092", agents()), "researcher")
    assert set(strimzi) - read == set() and set(local) - read == set()
    assert strimzi["KAFKA_BOOTSTRAP"] == f"events-kafka-bootstrap.{NAMESPACE}.svc:9093"
    assert strimzi["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert strimzi["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert strimzi["KAFKA_USERNAME"] == kafka_names(agents()[0]).user
    assert strimzi["KAFKA_PASSWORD_FILE"].startswith("/var/run/secrets/")
    assert strimzi["KAFKA_ENABLE_IDEMPOTENCE"] == "true"
    assert local["KAFKA_ENABLE_IDEMPOTENCE"] == "false"
    assert "KAFKA_PASSWORD" not in strimzi  # a path, never a value


def test_only_events_agents_have_access() -> None:
    connection = strimzi_connection("events", NAMESPACE, agents())
    with pytest.raises(KeyError, match="concierge"):
        connection.access("concierge")
    assert list(STRIMZI_KAFKA_VERSIONS) == ["4.2.0", "4.2.1", "4.3.0", "4.3.1"]


def test_spec_rejects_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        kafka(replicas=3)
    with pytest.raises(ValidationError):
        AgentSpec.model_validate(
            {
                "name": "Bad_Name",
                "mode": "http",
                "replicas": {"min": 1, "max": 1},
                "tier": "interactive",
                "model": "qwen25-7b",
            }
        )
