"""Traffic rules: internal load balancers, default-deny namespaces, mTLS, model route settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi_kubernetes as k8s
import pytest

from policies.rules.traffic import RULES, parse_duration
from stacks.plan.policy import Violation, evaluate
from stacks.plan.runner import read_program_input, run_program
from tests.policy_support import deployment, messages, only, violations

ROOT = Path(__file__).resolve().parent.parent
MODEL_SERVER = {"app.kubernetes.io/component": "model-server"}
AGENT_WORKER = {"app.kubernetes.io/component": "agent-worker"}
DEFAULT_DENY = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def istio(
    name: str, kind: str, namespace: str, spec: dict[str, Any]
) -> k8s.apiextensions.CustomResource:
    group = "security.istio.io" if kind == "PeerAuthentication" else "networking.istio.io"
    return k8s.apiextensions.CustomResource(
        name,
        api_version=f"{group}/v1",
        kind=kind,
        metadata={"name": name, "namespace": namespace},
        spec=spec,
    )


def namespace(name: str, role: str | None = None) -> k8s.core.v1.Namespace:
    labels = {"swarmstack.io/role": role} if role else {}
    return k8s.core.v1.Namespace(f"{name}-ns", metadata={"name": name, "labels": labels})


def network_policy(name: str, ns: str, spec: Any) -> k8s.networking.v1.NetworkPolicy:
    return k8s.networking.v1.NetworkPolicy(
        f"{ns}-{name}", metadata={"name": name, "namespace": ns}, spec=spec
    )


def istiod() -> k8s.helm.v3.Release:
    return k8s.helm.v3.Release(
        "istiod",
        chart="istiod",
        namespace="istio-system",
        repository_opts={"repo": "https://istio-release.storage.googleapis.com/charts"},
    )


# --------------------------------------------------------------------------- load balancers


def service(
    name: str, type_: str = "LoadBalancer", annotations: dict[str, str] | None = None
) -> Callable[[], None]:
    def program() -> None:
        k8s.core.v1.Service(
            name,
            metadata={"name": name, "namespace": "agents", "annotations": annotations or {}},
            spec={"type": type_, "selector": {"app": name}, "ports": [{"port": 443}]},
        )

    return program


@pytest.mark.parametrize(
    "program",
    [
        service(
            "gw", annotations={"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}
        ),
        service(
            "gw", annotations={"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}
        ),
        service("gw", type_="ClusterIP"),
    ],
)
def test_internal_or_cluster_services_pass(program: Callable[[], None]) -> None:
    assert messages(program, "no-public-load-balancer") == []


def test_load_balancer_without_scheme_is_internet_facing() -> None:
    v = only(service("gw"), "no-public-load-balancer")
    assert v.message == (
        "Service agents/gw (gw): is an internet-facing LoadBalancer "
        "(no service.beta.kubernetes.io/aws-load-balancer-scheme annotation)"
    )
    assert v.level == "mandatory"


def test_scheme_annotation_wins_over_the_legacy_one() -> None:
    program = service(
        "gw",
        annotations={
            "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing",
            "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
        },
    )
    assert only(program, "no-public-load-balancer").message.startswith("Service agents/gw (gw): ")


def test_public_load_balancer_can_be_exempted() -> None:
    config = {"no-public-load-balancer": {"exemptions": ["agents/gw"]}}
    assert messages(service("gw"), "no-public-load-balancer", config) == []


# --------------------------------------------------------------------------- default deny


def test_labelled_namespace_with_default_deny_passes() -> None:
    def program() -> None:
        namespace("models", "models")
        network_policy("default-deny", "models", DEFAULT_DENY)

    assert messages(program, "default-deny-network-policy") == []


def test_labelled_namespace_without_default_deny_fails() -> None:
    def program() -> None:
        namespace("models", "models")
        # Allows everything in: does not close the namespace.
        network_policy(
            "allow-all",
            "models",
            {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{}]},
        )

    v = only(program, "default-deny-network-policy")
    assert v.message.startswith("Namespace models (models-ns): namespace models ")
    assert "no default-deny NetworkPolicy for Ingress" in v.message
    assert v.resource.endswith("::models-ns")


def test_policy_without_policy_types_denies_ingress_only() -> None:
    def program() -> None:
        namespace("agents", "agents")
        network_policy("deny-in", "agents", {"podSelector": {}})

    v = only(program, "default-deny-network-policy")
    assert "no default-deny NetworkPolicy for Egress" in v.message


def test_separate_ingress_and_egress_denials_close_the_namespace() -> None:
    def program() -> None:
        namespace("agents", "agents")
        network_policy("deny-in", "agents", {"podSelector": {}, "policyTypes": ["Ingress"]})
        network_policy("deny-out", "agents", {"podSelector": {}, "policyTypes": ["Egress"]})

    assert messages(program, "default-deny-network-policy") == []


def test_namespace_of_an_agent_worker_needs_default_deny() -> None:
    def program() -> None:
        deployment("worker", namespace="swarm", labels=AGENT_WORKER)
        network_policy(
            "some-pods",
            "swarm",
            {"podSelector": {"matchLabels": {"a": "b"}}, "policyTypes": ["Ingress", "Egress"]},
        )

    v = only(program, "default-deny-network-policy")
    assert v.message.startswith(
        "Deployment swarm/worker (worker): namespace swarm (runs agent-worker"
    )
    assert v.resource.endswith("::worker")


def test_unlabelled_namespaces_without_serving_workloads_are_ignored() -> None:
    def program() -> None:
        namespace("tools")
        deployment("app", namespace="tools")

    assert messages(program, "default-deny-network-policy") == []


# --------------------------------------------------------------------------- mesh


def serving_namespaces() -> None:
    namespace("models", "models")
    namespace("agents", "agents")


def test_no_mesh_means_no_mtls_finding_and_one_advisory() -> None:
    assert messages(serving_namespaces, "mesh-mtls-strict") == []
    v = only(serving_namespaces, "mesh-present")
    assert v.level == "advisory"
    assert "model traffic is not encrypted in the cluster" in v.message
    assert "agents, models" in v.message


def test_mesh_without_peer_authentication_is_permissive() -> None:
    def program() -> None:
        serving_namespaces()
        istiod()

    found = violations(program, "mesh-mtls-strict")
    assert sorted(v.message.split(":")[0] for v in found) == [
        "Namespace agents (agents-ns)",
        "Namespace models (models-ns)",
    ]
    assert all(v.rule == "mesh-mtls-strict" for v in found)
    assert "mTLS mode PERMISSIVE (from Istio's default" in found[0].message
    assert messages(program, "mesh-present") == []


def test_mesh_wide_strict_covers_every_namespace() -> None:
    def program() -> None:
        serving_namespaces()
        istio("default", "PeerAuthentication", "istio-system", {"mtls": {"mode": "STRICT"}})

    assert messages(program, "mesh-mtls-strict") == []
    assert messages(program, "mesh-present") == []


def test_root_namespace_is_configurable() -> None:
    def program() -> None:
        serving_namespaces()
        istio("default", "PeerAuthentication", "mesh-root", {"mtls": {"mode": "STRICT"}})

    assert len(messages(program, "mesh-mtls-strict")) == 2
    config = {"mesh-mtls-strict": {"rootNamespace": "mesh-root"}}
    assert messages(program, "mesh-mtls-strict", config) == []


def test_namespace_policy_overrides_the_mesh() -> None:
    def program() -> None:
        serving_namespaces()
        istio("default", "PeerAuthentication", "istio-system", {"mtls": {"mode": "STRICT"}})
        istio("relaxed", "PeerAuthentication", "agents", {"mtls": {"mode": "PERMISSIVE"}})
        istio("inherit", "PeerAuthentication", "models", {"mtls": {"mode": "UNSET"}})

    v = only(program, "mesh-mtls-strict")
    assert v.message.startswith("Namespace agents (agents-ns): ")
    assert "PeerAuthentication agents/relaxed (relaxed)" in v.message


def test_workload_policy_that_weakens_mtls_is_reported() -> None:
    def program() -> None:
        serving_namespaces()
        istio("models-strict", "PeerAuthentication", "models", {"mtls": {"mode": "STRICT"}})
        istio("agents-strict", "PeerAuthentication", "agents", {"mtls": {"mode": "STRICT"}})
        istio(
            "metrics",
            "PeerAuthentication",
            "models",
            {
                "selector": {"matchLabels": {"app": "qwen"}},
                "portLevelMtls": {"9090": {"mode": "DISABLE"}},
            },
        )

    v = only(program, "mesh-mtls-strict")
    assert v.message == (
        "PeerAuthentication models/metrics (metrics): weakens mTLS for the pods it selects "
        "(port 9090: DISABLE)"
    )
    assert v.resource.endswith("::metrics")


# --------------------------------------------------------------------------- model routes


def model_stack(
    timeout: str | None = "90s",
    retries: dict[str, Any] | None = None,
    host: str = "qwen.models.svc.cluster.local",
    p99: str = "60",
) -> Callable[[], None]:
    """Namespace, a model-server Deployment with its SLO, its Service and a VirtualService."""

    def program() -> None:
        namespace("models", "models")
        deployment(
            "qwen",
            namespace="models",
            labels=MODEL_SERVER,
            annotations={
                "swarmstack.io/slo-e2e-p99-s": p99,
                "swarmstack.io/latency-tier": "interactive",
            },
        )
        k8s.core.v1.Service(
            "qwen-service",
            metadata={"name": "qwen", "namespace": "models"},
            spec={"selector": {"app.kubernetes.io/name": "qwen"}, "ports": [{"port": 8000}]},
        )
        route: dict[str, Any] = {
            "name": "generate",
            "route": [{"destination": {"host": host, "port": {"number": 8000}}}],
            "retries": retries if retries is not None else {"attempts": 0},
        }
        if timeout is not None:
            route["timeout"] = timeout
        istio("qwen", "VirtualService", "models", {"hosts": ["qwen"], "http": [route]})

    return program


def test_ten_second_timeout_fails_a_sixty_second_model() -> None:
    v = only(model_stack(timeout="10s"), "model-route-timeout")
    assert v.message == (
        "VirtualService models/qwen (qwen): http route 'generate' to Service models/qwen "
        "times out after 10s (10s), below the model's P99 of 60s end to end: "
        "slow generations are cut off"
    )
    assert v.resource.endswith("::qwen")
    assert v.level == "mandatory"


@pytest.mark.parametrize("timeout", ["90s", "1m", "60s", "1m30s"])
def test_timeout_at_or_above_p99_passes(timeout: str) -> None:
    assert messages(model_stack(timeout=timeout), "model-route-timeout") == []


def test_route_without_timeout_never_times_out() -> None:
    v = only(model_stack(timeout=None), "model-route-timeout")
    assert "sets no timeout (Istio never times it out; the model's P99 of 60s" in v.message


def test_zero_timeout_disables_it() -> None:
    assert "disables the timeout" in only(model_stack(timeout="0s"), "model-route-timeout").message


def test_short_host_resolves_in_the_virtual_service_namespace() -> None:
    assert len(messages(model_stack(timeout="10s", host="qwen"), "model-route-timeout")) == 1
    assert len(messages(model_stack(timeout="10s", host="qwen.models"), "model-route-timeout")) == 1


def test_routes_to_other_services_are_not_model_routes() -> None:
    program = model_stack(timeout=None, host="web.frontend.svc.cluster.local")
    assert messages(program, "model-route-timeout") == []
    assert messages(program, "model-route-retries") == []


def test_per_try_timeout_below_p99_cuts_attempts() -> None:
    retries = {"attempts": 1, "perTryTimeout": "5s", "retryOn": "connect-failure"}
    v = only(model_stack(retries=retries), "model-route-timeout")
    assert "perTryTimeout 5s, below the model's P99 of 60s" in v.message


def test_parse_duration() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("1m30s") == 90
    assert parse_duration("500ms") == 0.5
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("1h") == 3600
    assert parse_duration("0") == 0
    assert parse_duration("10") is None
    assert parse_duration("") is None
    assert parse_duration("ten seconds") is None


@pytest.mark.parametrize(
    "retries",
    [
        {"attempts": 0},
        {},  # attempts unset in an explicit block: retries disabled
        {"attempts": 2, "retryOn": "connect-failure,refused-stream"},
        {"attempts": 1, "retryOn": "reset-before-request", "perTryTimeout": "90s"},
    ],
)
def test_explicit_connection_level_retries_pass(retries: dict[str, Any]) -> None:
    assert messages(model_stack(retries=retries), "model-route-retries") == []


def test_retries_after_the_request_reached_the_model_fail() -> None:
    stack = model_stack(retries={"attempts": 3, "retryOn": "5xx,connect-failure,503"})
    v = only(stack, "model-route-retries")
    assert v.message == (
        "VirtualService models/qwen (qwen): http route 'generate' to Service models/qwen "
        "retries 3 time(s) on 5xx, 503 (retryOn '5xx,connect-failure,503'): only "
        "connection-level conditions (connect-failure, refused-stream, reset-before-request) "
        "are safe before the model has the request"
    )


def test_missing_retries_block_fails() -> None:
    def program() -> None:
        namespace("models", "models")
        deployment("qwen", namespace="models", labels=MODEL_SERVER)
        k8s.core.v1.Service(
            "qwen-service",
            metadata={"name": "qwen", "namespace": "models"},
            spec={"selector": {"app.kubernetes.io/name": "qwen"}},
        )
        istio(
            "qwen",
            "VirtualService",
            "models",
            {
                "hosts": ["qwen"],
                "http": [{"route": [{"destination": {"host": "qwen"}}], "timeout": "300s"}],
            },
        )

    v = only(program, "model-route-retries")
    assert v.message.startswith(
        "VirtualService models/qwen (qwen): http route #0 to Service models/qwen sets no retries"
    )
    # Without an SLO annotation only the explicit timeout is required.
    assert messages(program, "model-route-timeout") == []


def test_retry_on_unset_uses_istio_defaults() -> None:
    v = only(model_stack(retries={"attempts": 2}), "model-route-retries")
    assert "on unavailable, cancelled, retriable-status-codes (retryOn unset" in v.message


def test_allowed_retry_on_is_configurable() -> None:
    program = model_stack(retries={"attempts": 1, "retryOn": "gateway-error"})
    assert len(messages(program, "model-route-retries")) == 1
    config = {"model-route-retries": {"allowedRetryOn": ["gateway-error"]}}
    assert messages(program, "model-route-retries", config) == []


# --------------------------------------------------------------------------- the pilot


@pytest.fixture(scope="module")
def pilot_violations() -> list[Violation]:
    capture = run_program(read_program_input(ROOT, "pilot"))
    return evaluate(capture.registrations, {}, RULES)


def test_pilot_passes_every_mandatory_traffic_rule(pilot_violations: list[Violation]) -> None:
    assert [str(v) for v in pilot_violations if v.level == "mandatory"] == []


def test_pilot_runs_the_mesh_every_traffic_rule_reads(pilot_violations: list[Violation]) -> None:
    """mesh-present, mTLS, route timeouts and retries all pass on the pilot's real Istio
    resources (tests/test_mesh.py breaks a route and sees them fire)."""
    assert pilot_violations == []
