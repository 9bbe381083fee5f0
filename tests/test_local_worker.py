"""The local worker: the pilot agent's rendered container with the local differences, and
the refusals that keep the two from drifting apart (a stale entry, a Secret file or a
downward-API field left unresolved)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from components.agents.spec import WORKER_COMMAND, AgentSpec
from components.agents.workload import (
    ModelTarget,
    WorkerEnv,
    pod_template,
    worker_container,
)
from components.data.contract import MountedFile, SecretRef, WorkerWiring
from components.specs import CostLabels, ImageRef
from loadtests.local_worker import (
    LocalEnv,
    LocalSite,
    LocalWorkerError,
    RenderedWorker,
    apply_local_env,
    local_env,
    local_worker,
    rendered_worker,
    worker_from_deployment,
)
from loadtests.stand_in import STAND_IN_AGENT

SITE = LocalSite(
    port=18080,
    gateway_url="http://127.0.0.1:14000",
    gateway_key_file=Path("/tmp/local-gateway/agent-key"),
    redis_url="redis://127.0.0.1:16379/0",
    qdrant_path=Path("/tmp/qdrant-local"),
)
LABELS = CostLabels(team="agents", cost_center="cc-1", environment="test")


@pytest.fixture(scope="module")
def concierge() -> RenderedWorker:
    """The pilot's stand-in agent as its plan Deployment declares it."""
    return rendered_worker(STAND_IN_AGENT)


def _without(rendered: RenderedWorker, name: str) -> RenderedWorker:
    return dataclasses.replace(rendered, env=tuple(e for e in rendered.env if e.name != name))


def _with(rendered: RenderedWorker, extra: WorkerEnv) -> RenderedWorker:
    return dataclasses.replace(rendered, env=(*rendered.env, extra))


def test_the_read_back_container_is_what_worker_container_renders() -> None:
    agent = AgentSpec.model_validate(
        {
            "name": "helper",
            "mode": "http",
            "replicas": {"min": 1, "max": 2},
            "tier": "interactive",
            "model": "m",
            "team": "research",
        }
    )
    wiring = WorkerWiring(
        env={"REDIS_URL": "rediss://s:6379/0", "REDIS_PASSWORD_FILE": "/etc/s/redis/password"},
        files=(
            MountedFile(SecretRef("agents", "redis-client", "password"), "/etc/s/redis/password"),
        ),
    )
    worker = worker_container(
        agent, model=ModelTarget("http://m:8000/v1", "org/m", 90), wiring=wiring
    )
    template = pod_template(
        agent, image=ImageRef(repository="r.example.com/w", tag="1"), worker=worker,
        cost_labels=LABELS,
    )  # fmt: skip
    back = worker_from_deployment("helper", {"spec": {"template": template}})
    assert back.command == WORKER_COMMAND == worker.command
    assert [(e.name, e.value, e.field_path) for e in back.env] == [
        (e.name, e.value, e.field_path) for e in worker.env
    ]
    secrets = {e.name: e.secret for e in back.env if e.secret is not None}
    assert {k: (s.name, s.key) for k, s in secrets.items()} == {
        "REDIS_PASSWORD_FILE": ("redis-client", "password")
    }
    assert back.pod_labels["team"] == "research"


def test_the_local_environment_is_the_rendering_with_each_listed_difference(
    concierge: RenderedWorker,
) -> None:
    launch = local_worker(concierge, SITE)
    differences = {d.name: d for d in launch.differences}
    assert all(d.reason.strip() for d in launch.differences)
    for item in concierge.env:
        if item.name in differences:
            d = differences[item.name]
            assert d.action in ("set", "drop"), d
            assert launch.env.get(item.name) == d.value
        else:
            assert launch.env[item.name] == item.value, item.name
    added = {d.name for d in launch.differences if d.action == "add"}
    assert (
        set(launch.env)
        == {e.name for e in concierge.env}
        - {d.name for d in launch.differences if d.action == "drop"}
        | added
    )
    # What differs on this machine, and nothing the agent type itself decides.
    assert launch.env["AGENT_NAME"] == STAND_IN_AGENT
    assert launch.env["AGENT_TEAM"] == concierge.pod_labels["team"] == "agent-platform"
    for kept in ("AGENT_TOOLS", "GRACE_PERIOD_S", "MODEL_TIMEOUT_S", "BUDGET_SESSION_TOKENS"):
        assert kept not in differences
    # The only Secret file left is the gateway key; the others are dropped.
    assert [k for k in launch.env if k.endswith("_FILE")] == ["MODEL_API_KEY_FILE"]
    assert launch.command[1:] == list(WORKER_COMMAND[1:])


def test_a_stale_override_is_refused_with_the_variable_named(concierge: RenderedWorker) -> None:
    gone = _without(concierge, "OTEL_EXPORTER_OTLP_ENDPOINT")
    with pytest.raises(
        LocalWorkerError, match=r"stale local override: OTEL_EXPORTER_OTLP_ENDPOINT"
    ):
        apply_local_env(gone, local_env(SITE, gone))
    rendered_now = _with(concierge, WorkerEnv("QDRANT_PATH", "/data/qdrant"))
    with pytest.raises(LocalWorkerError, match=r"QDRANT_PATH is rendered already"):
        apply_local_env(rendered_now, local_env(SITE, rendered_now))
    with pytest.raises(LocalWorkerError, match=r"WORKER_PORT is listed twice"):
        local_worker(concierge, SITE, [LocalEnv("WORKER_PORT", "set", "1", "twice")])


def test_a_new_secret_file_or_downward_api_field_must_be_resolved(
    concierge: RenderedWorker,
) -> None:
    secret = WorkerEnv(
        "KAFKA_PASSWORD_FILE",
        "/etc/swarmstack/kafka/password",
        secret=SecretRef("agents", "agent-concierge", "password"),
    )
    with_secret = _with(concierge, secret)
    with pytest.raises(
        LocalWorkerError,
        match=r"KAFKA_PASSWORD_FILE is the path of a mounted Secret key "
        r"\(agent-concierge/password at /etc/swarmstack/kafka/password\)",
    ):
        apply_local_env(with_secret, local_env(SITE, with_secret))
    field = _with(concierge, WorkerEnv("POD_NAME", field_path="metadata.name"))
    with pytest.raises(LocalWorkerError, match=r"POD_NAME is from the downward API"):
        apply_local_env(field, local_env(SITE, field))
    # Resolved explicitly, each passes.
    assert (
        "KAFKA_PASSWORD_FILE"
        not in local_worker(
            with_secret, SITE, [LocalEnv("KAFKA_PASSWORD_FILE", "drop", None, "no Kafka here")]
        ).env
    )
    assert (
        local_worker(field, SITE, [LocalEnv("POD_NAME", "set", "local-0", "no pod")]).env[
            "POD_NAME"
        ]
        == "local-0"
    )


def test_agent_team_is_resolved_from_the_rendered_pod_label(concierge: RenderedWorker) -> None:
    relabelled = dataclasses.replace(concierge, pod_labels={**concierge.pod_labels, "team": "x"})
    assert local_worker(relabelled, SITE).env["AGENT_TEAM"] == "x"
    unlabelled = dataclasses.replace(
        concierge, pod_labels={k: v for k, v in concierge.pod_labels.items() if k != "team"}
    )
    with pytest.raises(LocalWorkerError, match=r"label 'team', which the pod lacks"):
        local_worker(unlabelled, SITE)


def test_a_changed_rendered_command_is_refused(concierge: RenderedWorker) -> None:
    other = dataclasses.replace(concierge, command=("python", "-m", "other_worker"))
    with pytest.raises(LocalWorkerError, match=r"revisit local_command"):
        local_worker(other, SITE)


def test_the_worker_reaches_its_model_through_the_local_gateway_as_rendered(
    concierge: RenderedWorker,
) -> None:
    """Behind the gateway, only the host and port of the model endpoint and readiness
    differ; the model name is the rendered gateway name; the key is a file."""
    launch = local_worker(concierge, SITE)
    differences = {d.name: d for d in launch.differences}
    assert concierge.literal("MODEL_BASE_URL") == (
        "http://model-gateway.swarmstack-agents.svc.cluster.local:4000/v1"
    )
    assert launch.env["MODEL_BASE_URL"] == "http://127.0.0.1:14000/v1"
    assert launch.env["MODEL_HEALTH_URL"] == "http://127.0.0.1:14000/health/readiness"
    assert concierge.literal("MODEL_HEALTH_URL").endswith("/health/readiness")
    # The model is asked for by the gateway name the Deployment renders.
    assert "MODEL_NAME" not in differences
    assert launch.env["MODEL_NAME"] == concierge.literal("MODEL_NAME") == "qwen25-7b"
    # The key reaches the worker as a file, and the reason says whose key it is.
    key = differences["MODEL_API_KEY_FILE"]
    assert key.action == "set" and launch.env["MODEL_API_KEY_FILE"] == str(SITE.gateway_key_file)
    assert "master key" in key.reason and "Postgres" in key.reason
    with pytest.raises(LocalWorkerError, match=r"'http://127.0.0.1:14000/v1' is not scheme"):
        local_worker(concierge, dataclasses.replace(SITE, gateway_url="http://127.0.0.1:14000/v1"))


def test_a_rendered_gateway_key_without_a_local_entry_is_refused_by_name(
    concierge: RenderedWorker,
) -> None:
    entries = [e for e in local_env(SITE, concierge) if e.name != "MODEL_API_KEY_FILE"]
    with pytest.raises(
        LocalWorkerError,
        match=r"MODEL_API_KEY_FILE is the path of a mounted Secret key "
        r"\(model-gateway-agent-concierge/api-key at /etc/swarmstack/gateway/api-key\)",
    ):
        apply_local_env(concierge, entries)
