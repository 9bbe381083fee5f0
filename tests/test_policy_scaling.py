"""Scaling rules: KEDA bounds against Kafka partitions, no cold starts, drainable PDBs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi_kubernetes as k8s
import pytest

from policies.rules.scaling import RULES
from stacks.plan.policy import evaluate
from stacks.plan.runner import read_program_input, run_program
from tests.policy_support import deployment, messages, only, restricted_pod

ROOT = Path(__file__).resolve().parent.parent
MODEL_SERVER = {"app.kubernetes.io/component": "model-server"}
AGENT_WORKER = {"app.kubernetes.io/component": "agent-worker"}
INTERACTIVE = {"swarmstack.io/latency-tier": "interactive", "swarmstack.io/slo-e2e-p99-s": "60"}


def scaled_object(
    name: str = "worker",
    namespace: str = "agents",
    target: str = "worker",
    triggers: list[dict[str, Any]] | None = None,
    **counts: int,
) -> k8s.apiextensions.CustomResource:
    return k8s.apiextensions.CustomResource(
        f"{name}-scaler",
        api_version="keda.sh/v1alpha1",
        kind="ScaledObject",
        metadata={"name": name, "namespace": namespace},
        spec={
            "scaleTargetRef": {"name": target},
            "triggers": triggers
            if triggers is not None
            else [{"type": "cpu", "metadata": {"value": "70"}}],
            **counts,
        },
    )


def kafka_trigger(
    topic: str | None = "requests", servers: str = "swarm-kafka-bootstrap.kafka:9092"
) -> dict[str, Any]:
    metadata = {"bootstrapServers": servers, "consumerGroup": "workers", "lagThreshold": "50"}
    if topic is not None:
        metadata["topic"] = topic
    return {"type": "kafka", "metadata": metadata}


def kafka_topic(
    name: str = "requests",
    partitions: int | None = 12,
    cluster: str = "swarm",
    topic_name: str | None = None,
) -> k8s.apiextensions.CustomResource:
    spec: dict[str, Any] = {"replicas": 3}
    if partitions is not None:
        spec["partitions"] = partitions
    if topic_name is not None:
        spec["topicName"] = topic_name
    return k8s.apiextensions.CustomResource(
        f"{name}-topic",
        api_version="kafka.strimzi.io/v1beta2",
        kind="KafkaTopic",
        metadata={"name": name, "namespace": "kafka", "labels": {"strimzi.io/cluster": cluster}},
        spec=spec,
    )


# --------------------------------------------------------------------------- KEDA and Kafka

RULE_KAFKA = "keda-kafka-max-replicas-within-partitions"


def test_max_replicas_within_partitions_passes() -> None:
    def program() -> None:
        kafka_topic(partitions=12)
        scaled_object(triggers=[kafka_trigger()], maxReplicaCount=12)

    assert messages(program, RULE_KAFKA) == []


def test_default_max_replicas_exceeds_partitions() -> None:
    def program() -> None:
        kafka_topic(partitions=12)
        scaled_object(triggers=[kafka_trigger()])

    v = only(program, RULE_KAFKA)
    assert v.message == (
        "ScaledObject agents/worker (worker-scaler): maxReplicaCount unset (KEDA default 100) "
        "exceeds the 12 partition(s) of topic requests (KafkaTopic kafka/requests "
        "(requests-topic)): replicas beyond one per partition sit idle"
    )
    assert v.resource.endswith("::worker-scaler")
    assert v.level == "mandatory"


def test_topic_name_comes_from_spec_topic_name() -> None:
    def program() -> None:
        kafka_topic(name="requests-v2", topic_name="requests", partitions=4)
        scaled_object(triggers=[kafka_trigger()], maxReplicaCount=8)

    assert "exceeds the 4 partition(s) of topic requests" in only(program, RULE_KAFKA).message


def test_unknown_topic_is_reported_as_unknown() -> None:
    def program() -> None:
        kafka_topic(name="other")
        scaled_object(triggers=[kafka_trigger()], maxReplicaCount=2)

    v = only(program, RULE_KAFKA)
    assert v.message.startswith(
        "ScaledObject agents/worker (worker-scaler): partition count unknown"
    )
    assert "no KafkaTopic or topic list in the stack declares it" in v.message


def topic_list(partitions: int) -> k8s.core.v1.ConfigMap:
    """The topic list swarmstack's MSK topic Job applies (MSK has no topic resource)."""
    document = json.dumps(
        {"topics": [{"name": "requests", "partitions": partitions, "replicationFactor": 3}]}
    )
    return k8s.core.v1.ConfigMap(
        "events-topics",
        metadata={"name": "events-topics", "namespace": "data"},
        data={"topics.json": document},
    )


def test_msk_topics_take_their_partitions_from_the_topic_list() -> None:
    msk = kafka_trigger(servers="b-1.events.kafka.us-east-1.amazonaws.com:9098")

    def within() -> None:
        topic_list(partitions=6)
        scaled_object(triggers=[msk], maxReplicaCount=6)

    def beyond() -> None:
        topic_list(partitions=6)
        scaled_object(triggers=[msk], maxReplicaCount=8)

    assert messages(within, RULE_KAFKA) == []
    assert only(beyond, RULE_KAFKA).message == (
        "ScaledObject agents/worker (worker-scaler): maxReplicaCount 8 exceeds the 6 "
        "partition(s) of topic requests (ConfigMap data/events-topics (events-topics), "
        "topics.json): replicas beyond one per partition sit idle"
    )


def test_trigger_without_topic_is_unknown() -> None:
    def program() -> None:
        scaled_object(triggers=[kafka_trigger(topic=None)], maxReplicaCount=2)

    assert "partition count unknown" in only(program, RULE_KAFKA).message


def test_partitions_unset_take_the_cluster_default() -> None:
    def program() -> None:
        kafka_topic(partitions=None)
        scaled_object(triggers=[kafka_trigger()], maxReplicaCount=3)

    assert "exceeds the 1 partition(s)" in only(program, RULE_KAFKA).message

    def with_cluster() -> None:
        k8s.apiextensions.CustomResource(
            "swarm-kafka",
            api_version="kafka.strimzi.io/v1beta2",
            kind="Kafka",
            metadata={"name": "swarm", "namespace": "kafka"},
            spec={"kafka": {"replicas": 3, "config": {"num.partitions": 6}}},
        )
        program()

    assert messages(with_cluster, RULE_KAFKA) == []

    def with_small_cluster_default() -> None:
        k8s.apiextensions.CustomResource(
            "swarm-kafka",
            api_version="kafka.strimzi.io/v1beta2",
            kind="Kafka",
            metadata={"name": "swarm", "namespace": "kafka"},
            spec={"kafka": {"replicas": 3, "config": {"num.partitions": 2}}},
        )
        program()

    assert (
        "exceeds the 2 partition(s) of topic requests (KafkaTopic kafka/requests "
        "(requests-topic), num.partitions of cluster swarm)"
    ) in only(with_small_cluster_default, RULE_KAFKA).message


def test_topic_of_the_trigger_cluster_is_used() -> None:
    def program() -> None:
        kafka_topic(name="requests", partitions=2, cluster="legacy")
        k8s.apiextensions.CustomResource(
            "requests-swarm",
            api_version="kafka.strimzi.io/v1beta2",
            kind="KafkaTopic",
            metadata={
                "name": "requests-swarm",
                "namespace": "kafka",
                "labels": {"strimzi.io/cluster": "swarm"},
            },
            spec={"topicName": "requests", "partitions": 24},
        )
        scaled_object(triggers=[kafka_trigger()], maxReplicaCount=24)

    assert messages(program, RULE_KAFKA) == []


def test_scaled_objects_without_kafka_triggers_are_ignored() -> None:
    assert messages(lambda: scaled_object(maxReplicaCount=500), RULE_KAFKA) == []


# --------------------------------------------------------------------------- scale to zero

RULE_ZERO = "no-scale-to-zero-interactive"


def interactive_model(
    environment: str = "production", annotations: dict[str, str] | None = None, **counts: int
) -> Callable[[], None]:
    def program() -> None:
        deployment(
            "qwen",
            namespace="models",
            labels={**MODEL_SERVER, "environment": environment},
            annotations=annotations if annotations is not None else INTERACTIVE,
        )
        scaled_object("qwen", "models", "qwen", triggers=None, **counts)

    return program


def test_interactive_model_with_a_floor_passes() -> None:
    assert messages(interactive_model(minReplicaCount=1, maxReplicaCount=4), RULE_ZERO) == []


def test_interactive_model_scaled_to_zero_by_default_fails() -> None:
    v = only(interactive_model(), RULE_ZERO)
    assert v.message == (
        "ScaledObject models/qwen (qwen-scaler): scales interactive Deployment models/qwen to "
        "zero (minReplicaCount unset: KEDA default 0); its first request waits for a model to load"
    )
    assert v.resource.endswith("::qwen-scaler")


def test_explicit_zero_and_idle_replicas_fail() -> None:
    assert "(minReplicaCount 0)" in only(interactive_model(minReplicaCount=0), RULE_ZERO).message
    v = only(interactive_model(minReplicaCount=1, idleReplicaCount=0), RULE_ZERO)
    assert "to idleReplicaCount 0 when its triggers are idle" in v.message


def test_batch_models_may_scale_to_zero() -> None:
    batch = {"swarmstack.io/latency-tier": "batch"}
    assert messages(interactive_model(annotations=batch), RULE_ZERO) == []


def test_rule_applies_to_the_configured_environment_only() -> None:
    program = interactive_model(environment="staging")
    assert messages(program, RULE_ZERO) == []
    assert len(messages(program, RULE_ZERO, {RULE_ZERO: {"environment": "staging"}})) == 1


def test_scaled_object_in_another_namespace_targets_another_deployment() -> None:
    def program() -> None:
        deployment(
            "qwen",
            namespace="models",
            labels={"environment": "production"},
            annotations=INTERACTIVE,
        )
        scaled_object("qwen", "agents", "qwen")

    assert messages(program, RULE_ZERO) == []


# --------------------------------------------------------------------------- disruption budgets


def pdb(
    name: str = "qwen",
    namespace: str = "models",
    selector: dict[str, Any] | None = None,
    **budget: Any,
) -> Callable[[], None]:
    default = {"matchLabels": {"app.kubernetes.io/name": name}}
    spec: Any = {"selector": selector if selector is not None else default, **budget}

    def program() -> None:
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata={"name": name, "namespace": namespace},
            spec=spec,
        )

    return program


@pytest.mark.parametrize(
    "budget",
    [
        {"maxUnavailable": 1},
        {"maxUnavailable": "25%"},
        {"minAvailable": 1},
        {"minAvailable": "50%"},
    ],
)
def test_budgets_that_allow_an_eviction_pass(budget: dict[str, Any]) -> None:
    assert messages(pdb(**budget), "pdb-allows-disruption") == []


@pytest.mark.parametrize(
    ("budget", "text"),
    [
        ({"maxUnavailable": 0}, "maxUnavailable 0 blocks every eviction"),
        ({"maxUnavailable": "0%"}, "maxUnavailable 0% blocks every eviction"),
        ({"minAvailable": "100%"}, "minAvailable 100% blocks every eviction"),
    ],
)
def test_budgets_that_block_every_drain_fail(budget: dict[str, Any], text: str) -> None:
    v = only(pdb(**budget), "pdb-allows-disruption")
    assert (
        v.message
        == f"PodDisruptionBudget models/qwen (qwen-pdb): {text}: node drains and upgrades hang"
    )


def model(name: str = "qwen", namespace: str = "models") -> None:
    deployment(name, namespace=namespace, labels=MODEL_SERVER, annotations=INTERACTIVE)


def test_model_server_selected_by_a_budget_passes() -> None:
    def program() -> None:
        model()
        pdb(maxUnavailable=1)()

    assert messages(program, "pdb-required") == []


def test_match_expressions_and_empty_selectors_select() -> None:
    def expressions() -> None:
        model()
        pdb(
            selector={
                "matchExpressions": [
                    {
                        "key": "app.kubernetes.io/component",
                        "operator": "In",
                        "values": ["model-server"],
                    }
                ]
            },
            maxUnavailable=1,
        )()

    def everything() -> None:
        model()
        pdb(selector={}, maxUnavailable=1)()

    assert messages(expressions, "pdb-required") == []
    assert messages(everything, "pdb-required") == []


def test_model_server_without_a_budget_fails() -> None:
    def program() -> None:
        model()
        pdb(namespace="agents", maxUnavailable=1)()  # wrong namespace
        pdb(name="other", maxUnavailable=1)()  # selects other pods

    v = only(program, "pdb-required")
    assert v.message == (
        "Deployment models/qwen (qwen): runs model-server pods but no PodDisruptionBudget in "
        "namespace models selects them: a node drain can evict every replica at once"
    )
    assert v.resource.endswith("::qwen")


def test_agent_worker_stateful_set_needs_a_budget() -> None:
    def program() -> None:
        deployment("web", namespace="agents")  # not a model server or agent worker
        spec: Any = {
            "serviceName": "planner",
            "selector": {"matchLabels": {"app.kubernetes.io/name": "planner"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "planner", **AGENT_WORKER}},
                "spec": restricted_pod(),
            },
        }
        k8s.apps.v1.StatefulSet(
            "planner",
            metadata={"name": "planner", "namespace": "agents"},
            spec=spec,
        )

    v = only(program, "pdb-required")
    assert v.message.startswith("StatefulSet agents/planner (planner): runs agent-worker pods")


def test_agent_deployment_needs_a_budget_and_one_selecting_it_passes() -> None:
    agent = {"app.kubernetes.io/component": "agent", "swarmstack.io/agent": "concierge"}

    def unprotected() -> None:
        deployment("agent-concierge", namespace="agents", labels=agent)

    def protected() -> None:
        unprotected()
        pdb(
            name="agent-concierge",
            namespace="agents",
            selector={"matchLabels": {"swarmstack.io/agent": "concierge"}},
            maxUnavailable=1,
        )()

    v = only(unprotected, "pdb-required")
    assert v.message == (
        "Deployment agents/agent-concierge (agent-concierge): runs agent pods but no "
        "PodDisruptionBudget in namespace agents selects them: a node drain can evict every "
        "replica at once"
    )
    assert messages(protected, "pdb-required") == []


# --------------------------------------------------------------------------- scale-down

RULE_SCALE_DOWN = "keda-safe-scale-down"


def _window(seconds: int) -> dict[str, Any]:
    return {
        "horizontalPodAutoscalerConfig": {
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": seconds}}
        }
    }


def test_scale_down_window_long_enough_passes() -> None:
    def program() -> None:
        deployment("worker", labels=AGENT_WORKER)
        scaled_object(advanced=_window(420))  # pyright: ignore[reportArgumentType]

    assert messages(program, RULE_SCALE_DOWN) == []


def test_short_scale_down_window_is_reported() -> None:
    def program() -> None:
        deployment("worker", labels=AGENT_WORKER)
        scaled_object(advanced=_window(60))  # pyright: ignore[reportArgumentType]

    v = only(program, RULE_SCALE_DOWN)
    assert v.message.startswith(
        "ScaledObject agents/worker (worker-scaler): scale-down stabilisation 60 s is below 300 s"
    )


def test_unset_window_is_the_hpa_default_and_the_minimum_is_configurable() -> None:
    def program() -> None:
        deployment("worker", labels=AGENT_WORKER)
        scaled_object()

    assert messages(program, RULE_SCALE_DOWN) == []
    [message] = messages(program, RULE_SCALE_DOWN, {RULE_SCALE_DOWN: {"minScaleDownWindowS": 600}})
    assert "scale-down stabilisation unset (the HPA default 300 s) is below 600 s" in message


def test_window_shorter_than_one_model_request_is_reported() -> None:
    def program() -> None:
        deployment(
            "qwen",
            namespace="models",
            labels=MODEL_SERVER,
            annotations={"swarmstack.io/slo-e2e-p99-s": "900"},
        )
        scaled_object(
            "qwen",
            namespace="models",
            target="qwen",
            advanced=_window(600),  # pyright: ignore[reportArgumentType]
        )

    v = only(program, RULE_SCALE_DOWN)
    assert v.message.endswith(
        "scale-down stabilisation 600 s does not outlast one request of the model it scales "
        "(e2e P99 900 s)"
    )


def test_workloads_other_than_models_and_agents_are_not_judged() -> None:
    def program() -> None:
        deployment("worker")
        scaled_object(advanced=_window(10))  # pyright: ignore[reportArgumentType]

    assert messages(program, RULE_SCALE_DOWN) == []


# --------------------------------------------------------------------------- the pilot


def test_pilot_passes_every_scaling_rule() -> None:
    capture = run_program(read_program_input(ROOT, "pilot"))
    assert [str(v) for v in evaluate(capture.registrations, {}, RULES)] == []


def test_production_passes_every_scaling_rule_and_judges_its_msk_agent() -> None:
    capture = run_program(read_program_input(ROOT, "production"))
    assert [str(v) for v in evaluate(capture.registrations, {}, RULES)] == []
    found = evaluate(capture.registrations, {RULE_SCALE_DOWN: {"minScaleDownWindowS": 3600}}, RULES)
    assert "ScaledObject swarmstack-agents/agent-researcher (keda-agent-researcher)" in [
        v.message.split(":")[0] for v in found if v.rule == RULE_SCALE_DOWN
    ]


def test_the_scaling_rules_see_the_pilots_scaled_objects() -> None:
    capture = run_program(read_program_input(ROOT, "pilot"))
    # With a minimum above the pilot's windows, the rule fires on each ScaledObject:
    # the rules read the real resources, not an empty list.
    found = evaluate(capture.registrations, {RULE_SCALE_DOWN: {"minScaleDownWindowS": 3600}}, RULES)
    assert sorted(v.message.split(":")[0] for v in found if v.rule == RULE_SCALE_DOWN) == [
        "ScaledObject swarmstack-agents/agent-concierge (keda-agent-concierge)",
        "ScaledObject swarmstack-agents/agent-researcher (keda-agent-researcher)",
        "ScaledObject swarmstack-models/llama31-8b (keda-model-llama31-8b)",
        "ScaledObject swarmstack-models/qwen25-7b (keda-model-qwen25-7b)",
    ]
