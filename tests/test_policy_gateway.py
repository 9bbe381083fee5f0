"""Gateway rules: agents reach models only through the gateway, the gateway's credentials
come only from Secrets, its salt key Secret is never rewritten. Each rule passes on the
pilot's own resources and fails on one mistake."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pulumi
import pulumi_kubernetes as k8s
import pytest

from policies.pack import rules_by_name
from stacks.plan.policy import evaluate
from stacks.plan.recorder import Capture
from stacks.plan.runner import read_program_input, run_program
from tests.policy_support import container, deployment, messages, only, restricted_pod

ROOT = Path(__file__).resolve().parent.parent
GATEWAY_RULES = ("agents-through-gateway", "gateway-keys-from-secrets", "gateway-salt-key-pinned")
MODEL = {"app.kubernetes.io/component": "model-server"}
AGENT = {"app.kubernetes.io/component": "agent"}
GATEWAY = {"app.kubernetes.io/component": "model-gateway"}
MODEL_URL = "http://qwen.models.svc.cluster.local:8000/v1"
GATEWAY_URL = "http://model-gateway.agents.svc.cluster.local:4000/v1"


@pytest.fixture(scope="module")
def pilot_capture() -> Capture:
    return run_program(read_program_input(ROOT, "pilot"))


@pytest.mark.parametrize("rule", GATEWAY_RULES)
def test_the_pilot_passes_every_gateway_rule(pilot_capture: Capture, rule: str) -> None:
    found = evaluate(pilot_capture.registrations, {}, [rules_by_name()[rule]])
    assert [v.message for v in found] == []
    # ... and the rules did see the gateway's objects.
    names = {r.name for r in pilot_capture.registrations}
    assert {"gateway-deployment", "gateway-config", "gateway-salt-key"} <= names


def test_the_pilot_salt_key_is_recorded_protected_and_ignoring_its_data(
    pilot_capture: Capture,
) -> None:
    salt = pilot_capture.named("gateway-salt-key")
    assert salt.protect and salt.retain_on_delete
    assert {"stringData", "data"} <= set(salt.ignore_changes)


# ---------------------------------------------------------------------- agents-through-gateway


def model_server() -> None:
    deployment("qwen", namespace="models", labels=MODEL)
    k8s.core.v1.Service(
        "qwen-svc",
        metadata={"name": "qwen", "namespace": "models"},
        spec={"selector": {"app.kubernetes.io/name": "qwen"}, "ports": [{"port": 8000}]},
    )


def gateway_pod() -> None:
    deployment("model-gateway", namespace="agents", labels=GATEWAY)


def agent(url: str) -> None:
    pod = restricted_pod(
        serviceAccountName="agent-helper",
        containers=[container(env=[{"name": "MODEL_BASE_URL", "value": url}])],
    )
    deployment("agent-helper", namespace="agents", pod=pod, labels=AGENT)


def model_policy(principals: list[str] | None = None, namespaces: list[str] | None = None) -> None:
    source: dict[str, Any] = {}
    if principals is not None:
        source["principals"] = principals
    if namespaces is not None:
        source["namespaces"] = namespaces
    k8s.apiextensions.CustomResource(
        "model-callers",
        api_version="security.istio.io/v1",
        kind="AuthorizationPolicy",
        metadata={"name": "model-callers", "namespace": "models"},
        spec={
            "selector": {"matchLabels": MODEL},
            "action": "ALLOW",
            "rules": [{"from": [{"source": source}], "to": [{"operation": {"ports": ["8000"]}}]}],
        },
    )


def stack(*parts: Callable[[], None]) -> Callable[[], None]:
    def program() -> None:
        for part in parts:
            part()

    return program


def test_agents_calling_the_gateway_pass() -> None:
    program = stack(
        model_server,
        gateway_pod,
        lambda: agent(GATEWAY_URL),
        lambda: model_policy(["cluster.local/ns/agents/sa/model-gateway"]),
    )
    assert messages(program, "agents-through-gateway") == []


def test_an_agent_pointed_at_a_model_service_fails() -> None:
    v = only(stack(model_server, gateway_pod, lambda: agent(MODEL_URL)), "agents-through-gateway")
    assert v.message == (
        "Deployment agents/agent-helper (agent-helper): container app env MODEL_BASE_URL points "
        "at model Service models/qwen directly, but the stack has a model gateway: agents call "
        "models through it"
    )
    assert v.level == "mandatory"


def test_without_a_gateway_an_agent_may_call_its_model() -> None:
    assert messages(stack(model_server, lambda: agent(MODEL_URL)), "agents-through-gateway") == []


@pytest.mark.parametrize(
    ("policy", "admitted"),
    [
        (lambda: model_policy(["cluster.local/ns/agents/sa/agent-helper"]), "agent-helper"),
        (lambda: model_policy(namespaces=["agents"]), "namespace agents"),
        (lambda: model_policy(["*"]), "*"),
    ],
)
def test_a_model_policy_admitting_agents_fails(policy: Callable[[], None], admitted: str) -> None:
    program = stack(model_server, gateway_pod, lambda: agent(GATEWAY_URL), policy)
    v = only(program, "agents-through-gateway")
    assert v.message.startswith(
        "AuthorizationPolicy models/model-callers (model-callers): lets agents call model "
        "servers directly ("
    )
    assert admitted in v.message


# ------------------------------------------------------------------- gateway-keys-from-secrets


def gateway_config(text: str) -> Callable[[], None]:
    def program() -> None:
        k8s.core.v1.ConfigMap(
            "gw-config",
            metadata={"name": "model-gateway-config", "namespace": "agents", "labels": GATEWAY},
            data={"config.yaml": text},
        )

    return program


def test_a_config_of_references_passes() -> None:
    text = "general_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n"
    assert messages(gateway_config(text), "gateway-keys-from-secrets") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "model_list:\n- litellm_params:\n    api_key: not-a-reference\n",
            "data config.yaml line 3: api_key is set in clear",
        ),
        (
            "general_settings:\n  master_key: sk-1234567890abcdef1234\n",
            "data config.yaml holds a credential in clear",
        ),
        (
            "general_settings:\n  database_url: postgresql://u:hunter2@db:5432/x\n",
            "data config.yaml holds a credential in clear",
        ),
    ],
)
def test_a_credential_in_the_gateway_config_fails(text: str, expected: str) -> None:
    found = messages(gateway_config(text), "gateway-keys-from-secrets")
    assert any(expected in m for m in found), found


def test_other_config_maps_are_not_read() -> None:
    def program() -> None:
        k8s.core.v1.ConfigMap(
            "other",
            metadata={"name": "other", "namespace": "agents"},
            data={"config.yaml": "api_key: plain\n"},
        )

    assert messages(program, "gateway-keys-from-secrets") == []


def gateway_with_env(env: list[dict[str, Any]]) -> Callable[[], None]:
    def program() -> None:
        pod = restricted_pod(containers=[container(name="proxy", env=env)])
        deployment("model-gateway", namespace="agents", pod=pod, labels=GATEWAY)

    return program


def test_keys_from_secret_key_refs_and_files_pass() -> None:
    env = [
        {
            "name": "LITELLM_MASTER_KEY",
            "valueFrom": {"secretKeyRef": {"name": "model-gateway-master-key", "key": "k"}},
        },
        {"name": "MASTER_KEY_FILE", "value": "/etc/gateway-master/master-key"},
        {"name": "REDIS_HOST", "value": "session-store.data.svc"},
    ]
    assert messages(gateway_with_env(env), "gateway-keys-from-secrets") == []


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"name": "LITELLM_MASTER_KEY", "value": "changeme"},
            "container proxy env LITELLM_MASTER_KEY is a plain value",
        ),
        (
            {"name": "EXTRA", "value": "sk-abcdefghijklmnop1234"},
            "container proxy env EXTRA holds a credential in clear",
        ),
    ],
)
def test_a_key_as_a_plain_env_value_fails(env: dict[str, Any], expected: str) -> None:
    v = only(gateway_with_env([env]), "gateway-keys-from-secrets")
    assert v.message == f"Deployment agents/model-gateway (model-gateway): {expected}" + (
        ": take it from a Secret (valueFrom.secretKeyRef) or a mounted Secret file"
        if "plain value" in expected
        else ""
    )


# --------------------------------------------------------------------- gateway-salt-key-pinned


def salt_secret(**options: Any) -> Callable[[], None]:
    def program() -> None:
        k8s.core.v1.Secret(
            "salt",
            metadata={
                "name": "model-gateway-salt-key",
                "namespace": "agents",
                "labels": {"swarmstack.io/gateway-salt-key": "true"},
            },
            string_data={"salt-key": pulumi.Output.secret("sk-" + "ab" * 32)},
            opts=pulumi.ResourceOptions(**options),
        )

    return program


def test_a_protected_salt_key_ignoring_its_data_passes() -> None:
    program = salt_secret(protect=True, ignore_changes=["stringData", "data"])
    assert messages(program, "gateway-salt-key-pinned") == []


def test_an_unprotected_salt_key_fails() -> None:
    v = only(salt_secret(ignore_changes=["stringData", "data"]), "gateway-salt-key-pinned")
    assert "is not protected" in v.message


def test_a_salt_key_that_follows_its_config_fails() -> None:
    v = only(salt_secret(protect=True), "gateway-salt-key-pinned")
    assert "does not ignore changes to stringData and data" in v.message


def test_other_secrets_are_not_pinned() -> None:
    def program() -> None:
        k8s.core.v1.Secret(
            "other",
            metadata={"name": "other", "namespace": "agents"},
            string_data={"k": pulumi.Output.secret("v")},
        )

    assert messages(cast(Callable[[], None], program), "gateway-salt-key-pinned") == []
