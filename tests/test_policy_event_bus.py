"""kafka-durable on the event bus the stack renders, and on resources that break it."""

from __future__ import annotations

from typing import Any

import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.data.kafka import EventBus, EventBusArgs
from tests.kafka_support import COST_LABELS, MSK, NAMESPACE, agents, kafka, msk
from tests.policy_support import messages, violations

RULE = "kafka-durable"


def test_rendered_strimzi_and_msk_buses_pass() -> None:
    assert (
        messages(
            lambda: EventBus("bus", EventBusArgs(kafka(), agents(), NAMESPACE, COST_LABELS)), RULE
        )
        == []
    )
    args = EventBusArgs(msk(), agents(), NAMESPACE, COST_LABELS, **MSK)
    assert messages(lambda: EventBus("bus", args), RULE) == []


def _kafka(config: dict[str, Any]) -> k8s.apiextensions.CustomResource:
    return k8s.apiextensions.CustomResource(
        "events",
        api_version="kafka.strimzi.io/v1",
        kind="Kafka",
        metadata={"name": "events", "namespace": "data"},
        spec={"kafka": {"listeners": [], "config": config}},
    )


def test_strimzi_broker_defaults_are_not_durable() -> None:
    found = violations(lambda: _kafka({}), RULE)
    assert {v.rule for v in found} == {RULE} and {v.level for v in found} == {"mandatory"}
    assert [v.message for v in found] == [
        "Kafka data/events (events): default.replication.factor is 1: fewer than 3 copies of "
        "every write",
        "Kafka data/events (events): min.insync.replicas is 1: acks=all succeeds with fewer "
        "than 2 replicas holding the write",
        "Kafka data/events (events): auto.create.topics.enable is true: a typo in a topic name "
        "creates a topic with broker defaults",
    ]


def test_unclean_election_and_weak_offsets_fail() -> None:
    config = {
        "default.replication.factor": 3,
        "offsets.topic.replication.factor": 1,
        "min.insync.replicas": 2,
        "unclean.leader.election.enable": True,
        "auto.create.topics.enable": False,
    }
    assert messages(lambda: _kafka(config), RULE) == [
        "Kafka data/events (events): offsets.topic.replication.factor is 1: fewer than 3 "
        "copies of every write",
        "Kafka data/events (events): unclean.leader.election.enable is not false: an "
        "out-of-sync replica may lead",
    ]


def _topic(spec: dict[str, Any]) -> k8s.apiextensions.CustomResource:
    return k8s.apiextensions.CustomResource(
        "t",
        api_version="kafka.strimzi.io/v1",
        kind="KafkaTopic",
        metadata={"name": "researcher.tasks", "namespace": "data"},
        spec=spec,
    )


def test_topic_overrides_fail() -> None:
    spec = {"partitions": 3, "replicas": 2, "config": {"min.insync.replicas": "1"}}
    assert messages(lambda: _topic(spec), RULE) == [
        "KafkaTopic data/researcher.tasks (t): replicas is 2: fewer than 3 copies of every write",
        "KafkaTopic data/researcher.tasks (t): config min.insync.replicas is 1: acks=all "
        "succeeds with fewer than 2 replicas holding the write",
    ]
    assert messages(lambda: _topic({"partitions": 3}), RULE) == []  # broker defaults apply


def test_msk_configuration_and_broker_count() -> None:
    def program() -> None:
        aws.msk.Configuration(
            "cfg",
            kafka_versions=["4.0.x.kraft"],
            server_properties="# weak\nmin.insync.replicas=1\nauto.create.topics.enable=true\n",
        )
        aws.msk.Cluster(
            "small",
            kafka_version="4.0.x.kraft",
            number_of_broker_nodes=2,
            broker_node_group_info={
                "instance_type": "kafka.m7g.large",
                "client_subnets": ["a", "b"],
                "security_groups": ["sg"],
            },
        )

    assert sorted(messages(program, RULE)) == [
        "Cluster small: numberOfBrokerNodes is 2: 3 replicas need 3 brokers",
        "Configuration cfg: auto.create.topics.enable is true: a typo in a topic name creates a "
        "topic with broker defaults",
        "Configuration cfg: min.insync.replicas is 1: acks=all succeeds with fewer than 2 "
        "replicas holding the write",
    ]
