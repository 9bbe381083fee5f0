"""The Strimzi 1.2.0 CRD model: every rendered CR passes, a CR the model refuses stops the
event bus before anything is declared."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.agents.spec import kafka_names
from components.data import kafka as kafka_module
from components.data.kafka import (
    EventBus,
    EventBusArgs,
    EventBusError,
    agent_acls,
    kafka_resource,
    kafka_topic_resource,
    kafka_user_resource,
    node_pool_resources,
    rendered_topics,
)
from components.data.strimzi_schema import (
    StrimziResourceError,
    check_strimzi_resource,
    strimzi_problems,
)
from stacks.plan.recorder import run
from tests.kafka_support import COST_LABELS, NAMESPACE, agents, kafka

LABELS = COST_LABELS.as_labels()


def _rendered() -> list[dict[str, Any]]:
    spec, team = kafka(), agents()
    return [
        kafka_resource(spec, "events", NAMESPACE, LABELS),
        *node_pool_resources(spec, "events", NAMESPACE, LABELS),
        *[
            kafka_topic_resource(t, "events", NAMESPACE, LABELS)
            for t in rendered_topics(spec, team)
        ],
        kafka_user_resource(
            kafka_names(team[0]).user, agent_acls(team[0]), "events", NAMESPACE, LABELS
        ),
    ]


def test_every_rendered_resource_matches_the_crd_model() -> None:
    bodies = _rendered()
    assert {b["kind"] for b in bodies} == {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"}
    assert all(b["apiVersion"] == "kafka.strimzi.io/v1" for b in bodies)
    assert [strimzi_problems(b) for b in bodies] == [[] for _ in bodies]


def _mutate(index: int, path: list[str | int], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(_rendered()[index])
    node: Any = body
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("index", "path", "value", "fragment"),
    [
        (0, ["apiVersion"], "kafka.strimzi.io/v1beta2", "apiVersion: Input should be"),
        (0, ["spec", "kafka", "listeners", 0, "type"], "internel", "listeners.0.type"),
        (0, ["spec", "kafka", "listeners", 0, "port"], 9000, "listeners.0.port"),
        (0, ["spec", "kafka", "listeners", 0, "authentication", "type"], "scram-sha-256",
         "authentication.type"),
        (0, ["spec", "kafka", "rack", "topologykey"], "zone", "rack.topologykey: Extra inputs"),
        (0, ["spec", "kafka", "metricsConfig"], {"type": "jmxPrometheusExporter"},
         "valueFrom property is required"),
        (0, ["spec", "kafka", "resources"], {"requests": {"cpu": "1"}},
         "kafka.resources: Extra inputs"),
        (1, ["spec", "roles"], ["broker", "zookeeper"], "roles.1"),
        (1, ["spec", "storage", "volumes", 0, "type"], "jbod", "volumes.0.type"),
        (3, ["spec", "partitions"], 0, "spec.partitions"),
        (6, ["spec", "authorization", "acls", 0, "operations"], ["Consume"], "operations.0"),
        (6, ["spec", "authentication", "type"], "scram-sha-256", "authentication.type"),
    ],
)  # fmt: skip
def test_the_model_refuses_what_the_crd_refuses(
    index: int, path: list[str | int], value: Any, fragment: str
) -> None:
    body = _mutate(index, path, value)
    problems = strimzi_problems(body)
    assert any(fragment in p for p in problems), problems
    with pytest.raises(StrimziResourceError, match=r"does not match the Strimzi 1\.2\.0 CRD"):
        check_strimzi_resource(body)


def test_event_bus_refuses_a_cr_the_model_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    good = kafka_module.kafka_resource

    def typo(*args: Any, **kwargs: Any) -> dict[str, Any]:
        body = good(*args, **kwargs)
        body["spec"]["kafka"]["listeners"][0]["tls"] = "yes"
        return body

    monkeypatch.setattr(kafka_module, "kafka_resource", typo)
    declared: list[str] = []

    def program() -> None:
        try:
            EventBus("bus", EventBusArgs(kafka(), agents(), NAMESPACE, COST_LABELS))
        except EventBusError as exc:
            declared.append(str(exc))

    capture = run(program)
    assert "Kafka swarmstack-data/events does not match" in declared[0]
    assert "listeners.0.tls" in declared[0]
    assert capture.registrations == [] or all(
        r.type == "swarmstack:data:EventBus" for r in capture.registrations
    )


def test_unknown_kind_is_refused() -> None:
    assert strimzi_problems({"kind": "KafkaConnect"})[0].startswith("kind 'KafkaConnect'")
