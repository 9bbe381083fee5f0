# pyright: strict
"""workloads-monitored: model servers and stateful stores are selected by a monitor."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pulumi
import pulumi_kubernetes as k8s

from components.observe.monitors import (
    Endpoint,
    MonitorTarget,
    declare_monitor,
    monitor_body,
)
from policies.pack import rules_by_name
from stacks.plan.policy import evaluate
from stacks.plan.runner import read_program_input, run_program
from tests.policy_support import container, deployment, messages, restricted_pod

ROOT = Path(__file__).resolve().parent.parent
RULE = "workloads-monitored"
MODEL = {"app.kubernetes.io/component": "model-server"}


def _model_server() -> k8s.apps.v1.Deployment:
    return deployment("llm", namespace="models", labels=MODEL)


def _service(name: str, namespace: str, labels: dict[str, str], selector: dict[str, str]) -> None:
    k8s.core.v1.Service(
        name,
        metadata={"name": name, "namespace": namespace, "labels": labels},
        spec=cast(Any, {"selector": selector, "ports": [{"name": "http", "port": 8000}]}),
    )


def _monitor(kind: str, namespace: str, selector: dict[str, str], port: str = "http") -> None:
    body = monitor_body(
        MonitorTarget(
            "ServiceMonitor" if kind == "ServiceMonitor" else "PodMonitor",
            "m",
            namespace,
            selector,
            (Endpoint(port),),
        )
    )
    declare_monitor(f"{kind}-m", body, pulumi.ResourceOptions())


def test_a_model_server_without_a_monitor_is_reported() -> None:
    [message] = messages(_model_server, RULE)
    assert message.startswith("Deployment models/llm (llm): is a model server, but no ")
    assert "ServiceMonitor or PodMonitor of the stack selects its pods" in message


def test_an_agent_worker_needs_a_monitor_and_a_pod_monitor_on_its_pods_satisfies_it() -> None:
    agent = {"app.kubernetes.io/component": "agent", "swarmstack.io/agent": "researcher"}

    def unmonitored() -> None:
        deployment("agent-researcher", namespace="agents", labels=agent)

    def monitored() -> None:
        unmonitored()
        _monitor("PodMonitor", "agents", {"app.kubernetes.io/component": "agent"})

    [message] = messages(unmonitored, RULE)
    assert message.startswith(
        "Deployment agents/agent-researcher (agent-researcher): is an agent worker, but no "
    )
    assert messages(monitored, RULE) == []


def test_a_pod_monitor_selecting_its_pods_satisfies_it() -> None:
    def program() -> None:
        _model_server()
        _monitor("PodMonitor", "models", MODEL)

    assert messages(program, RULE) == []


def test_a_pod_monitor_in_another_namespace_does_not() -> None:
    def program() -> None:
        _model_server()
        _monitor("PodMonitor", "agents", MODEL)

    assert len(messages(program, RULE)) == 1


def test_a_service_monitor_counts_through_a_service_selecting_the_pods() -> None:
    def through(service_selector: dict[str, str]) -> list[str]:
        def program() -> None:
            _model_server()
            _service("llm", "models", {"tier": "serving"}, service_selector)
            _monitor("ServiceMonitor", "models", {"tier": "serving"})

        return messages(program, RULE)

    assert through({"app.kubernetes.io/name": "llm"}) == []
    # A Service with the monitor's label that selects other pods does not help.
    assert len(through({"app.kubernetes.io/name": "other"})) == 1


def test_stores_need_monitors_and_stateless_apps_do_not() -> None:
    def program() -> None:
        deployment("web", namespace="agents")
        deployment(
            "cache",
            namespace="data",
            pod=restricted_pod(containers=[container(image="docker.io/valkey/valkey:8.1.1")]),
        )

    [message] = messages(program, RULE)
    assert "Deployment data/cache (cache): is a stateful store (valkey)" in message


def test_the_pilot_plan_monitors_every_model_server_agent_and_store() -> None:
    capture = run_program(read_program_input(ROOT, "pilot"))

    found = evaluate(capture.registrations, {}, [rules_by_name()[RULE]])
    assert found == []
    # and the rule does look at them: without the monitors it reports each workload
    kept = [r for r in capture.registrations if not r.type.endswith("Monitor")]
    reported = evaluate(kept, {}, [rules_by_name()[RULE]])
    # two model servers, two agent types, the Redis and Qdrant StatefulSets, the gateway's
    # Postgres (the gateway itself holds no state)
    assert len(reported) == 2 + 2 + 2 + 1
