"""Shared event-bus fixtures: a pilot-shaped Kafka spec and agent list."""

from __future__ import annotations

from typing import Any

from components.agents.spec import AgentSpec
from components.compute.irsa import Irsa
from components.data.kafka import KafkaSpec
from components.data.network import ManagedNetwork
from components.specs import CostLabels, ImageRef

COST_LABELS = CostLabels(team="agents", cost_center="cc-1", environment="test")
NAMESPACE = "swarmstack-data"
NETWORK = ManagedNetwork(
    vpc_id="vpc-1",
    private_subnet_ids=["subnet-a", "subnet-b", "subnet-c"],
    node_security_group_id="sg-nodes",
    kms_key_arn="arn:aws:kms:us-east-1:111122223333:key/k",
)
WORKER_IMAGE = ImageRef(repository="registry.example.com/swarmstack/agent-worker", tag="0.3.0")
ISSUER = "oidc.eks.us-east-1.amazonaws.com/id/X"
IRSA = Irsa(
    oidc_provider_arn=f"arn:aws:iam::210987654321:oidc-provider/{ISSUER}",
    oidc_issuer=ISSUER,
)
# What an EventBus in mode msk is given beside its spec.
MSK: dict[str, Any] = {
    "network": NETWORK,
    "region": "us-east-1",
    "topic_job_image": WORKER_IMAGE,
    "irsa": IRSA,
}


def agents_raw() -> list[dict[str, Any]]:
    return [
        {
            "name": "researcher",
            "mode": "events",
            "tier": "batch",
            "model": "llama31-8b",
            "replicas": {"min": 1, "max": 6},
            "topics": {
                "tasks": {"partitions": 6, "retentionHours": 168},
                "results": {"partitions": 6, "retentionHours": 168, "cleanupPolicy": "compact"},
                "deadLetter": {"partitions": 1, "retentionHours": 336},
            },
        },
        {
            "name": "concierge",
            "mode": "http",
            "replicas": {"min": 2, "max": 4},
            "tier": "interactive",
            "model": "qwen25-7b",
        },
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
