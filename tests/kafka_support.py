"""Shared event-bus fixtures: a pilot-shaped Kafka spec and agent list."""

from __future__ import annotations

from typing import Any

from components.agents.spec import AgentSpec
from components.data.kafka import KafkaSpec
from components.specs import CostLabels

COST_LABELS = CostLabels(team="agents", cost_center="cc-1", environment="test")
NAMESPACE = "swarmstack-data"


def agents_raw() -> list[dict[str, Any]]:
    return [
        {
            "name": "researcher",
            "mode": "events",
            "replicas": {"min": 1, "max": 6},
            "topics": {
                "tasks": {"partitions": 6, "retentionHours": 168},
                "results": {"partitions": 6, "retentionHours": 168, "cleanupPolicy": "compact"},
                "deadLetter": {"partitions": 1, "retentionHours": 336},
            },
        },
        {"name": "concierge", "mode": "http", "replicas": {"min": 2, "max": 4}},
    ]


def agents(raw: list[dict[str, Any]] | None = None) -> list[AgentSpec]:
    return [AgentSpec.model_validate(a) for a in (raw if raw is not None else agents_raw())]


def kafka(**changes: Any) -> KafkaSpec:
    raw: dict[str, Any] = {
        "mode": "strimzi",
        "version": "4.3.1",
        "brokers": 3,
        "replicationFactor": 3,
        "minInsyncReplicas": 2,
        "storage": {"sizeGib": 100},
    }
    raw.update(changes)
    return KafkaSpec.model_validate(raw)


def msk(**changes: Any) -> KafkaSpec:
    raw: dict[str, Any] = {
        "mode": "msk",
        "version": "4.0.x.kraft",
        "msk": {"brokerType": "kafka.m7g.large"},
    }
    raw.update(changes)
    return kafka(**raw)
