"""Kubernetes workload security rules: each passes a restricted pod and names what fails."""

from __future__ import annotations

from typing import Any, cast

import pulumi_kubernetes as k8s
import pytest

from tests.policy_support import container, deployment, messages, restricted_pod, violations

LABEL = "Deployment agents/app (app)"


def test_restricted_pod_passes_every_workload_rule() -> None:
    for rule in (
        "container-resources",
        "no-privileged-containers",
        "no-privilege-escalation",
        "run-as-non-root",
        "drop-all-capabilities",
        "read-only-root-filesystem",
        "no-host-namespaces",
        "no-host-path-volumes",
        "seccomp-runtime-default",
        "probes-configured",
        "no-service-account-token-automount",
        "no-default-namespace",
        "no-bare-pods",
    ):
        assert messages(deployment, rule) == [], rule


BARE_CONTAINER: dict[str, Any] = {"name": "app", "image": "registry.example.com/app:1"}

FAILURES = [
    ("container-resources", {"containers": [container(resources={"requests": {"cpu": "1"}})]},
     "container app sets no requests.memory, limits.memory"),
    ("no-privileged-containers",
     {"containers": [container(securityContext={"privileged": True})]},
     "container app runs privileged"),
    ("no-privilege-escalation", {"containers": [BARE_CONTAINER]},
     "container app does not set allowPrivilegeEscalation: false"),
    ("run-as-non-root", {"securityContext": {}, "containers": [BARE_CONTAINER]},
     "container app may run as root (runAsNonRoot is not true)"),
    ("drop-all-capabilities",
     {"containers": [container(securityContext={"capabilities": {"drop": ["NET_RAW"]}})]},
     "container app does not drop ALL capabilities"),
    ("read-only-root-filesystem", {"containers": [BARE_CONTAINER]},
     "container app has a writable root filesystem"),
    ("no-host-namespaces", {"hostNetwork": True}, "pod sets hostNetwork: true"),
    ("no-host-path-volumes", {"volumes": [{"name": "dev", "hostPath": {"path": "/dev"}}]},
     "volume dev mounts host path /dev"),
    ("seccomp-runtime-default", {"securityContext": {"runAsNonRoot": True}},
     "container app runs with seccomp profile Unconfined (unset)"),
    ("probes-configured", {"containers": [BARE_CONTAINER]},
     "container app has no readinessProbe, livenessProbe"),
    ("no-service-account-token-automount", {"automountServiceAccountToken": True},
     "mounts a service account token (automountServiceAccountToken is not false)"),
]  # fmt: skip


@pytest.mark.parametrize("rule,change,expected", FAILURES, ids=[f[0] for f in FAILURES])
def test_each_rule_names_the_resource_and_the_problem(
    rule: str, change: dict[str, Any], expected: str
) -> None:
    pod = restricted_pod(**change)
    found = violations(lambda: deployment(pod=pod), rule)
    assert [v.rule for v in found] == [rule]
    assert found[0].message == f"{LABEL}: {expected}"
    assert found[0].resource.endswith("::app")


def test_init_containers_are_checked_too() -> None:
    pod = restricted_pod(initContainers=[BARE_CONTAINER | {"name": "fetch"}])
    assert messages(lambda: deployment(pod=pod), "read-only-root-filesystem") == [
        f"{LABEL}: init container fetch has a writable root filesystem"
    ]


def test_model_servers_need_a_startup_probe() -> None:
    labels = {"app.kubernetes.io/component": "model-server"}
    found = messages(lambda: deployment(labels=labels), "probes-configured")
    assert found == [
        f"{LABEL}: container app has no startupProbe (a model server needs time to load weights)"
    ]


def test_exemptions_come_from_policy_config() -> None:
    pod = restricted_pod(hostNetwork=True)
    config = {"no-host-namespaces": {"exemptions": ["agents/app"]}}
    assert messages(lambda: deployment(pod=pod), "no-host-namespaces", config) == []


def test_default_namespace_when_unset_or_named() -> None:
    assert messages(lambda: deployment(namespace=None), "no-default-namespace") == [
        "Deployment default/app (app): lands in the default namespace (metadata.namespace is unset)"
    ]
    assert len(messages(lambda: deployment(namespace="default"), "no-default-namespace")) == 1


def test_bare_pod_is_refused() -> None:
    def program() -> None:
        k8s.core.v1.Pod(
            "p", metadata={"name": "p", "namespace": "agents"}, spec=cast(Any, restricted_pod())
        )

    assert messages(program, "no-bare-pods") == [
        "Pod agents/p (p): is a bare Pod: nothing restarts it on node loss; use a Deployment or Job"
    ]


def _namespace(name: str, enforce: str | None) -> Any:
    labels = {"pod-security.kubernetes.io/enforce": enforce} if enforce else {}
    return lambda: k8s.core.v1.Namespace(
        name, metadata=k8s.meta.v1.ObjectMetaArgs(name=name, labels=labels)
    )


def test_namespaces_enforce_restricted_pod_security() -> None:
    assert messages(_namespace("agents", "restricted"), "namespace-pod-security") == []
    assert messages(_namespace("agents", "baseline"), "namespace-pod-security") == [
        "Namespace agents (agents): Pod Security enforces 'baseline', not 'restricted' "
        "(pod-security.kubernetes.io/enforce)"
    ]
    assert messages(_namespace("agents", None), "namespace-pod-security") == [
        "Namespace agents (agents): Pod Security enforces no level (every pod is admitted), "
        "not 'restricted' (pod-security.kubernetes.io/enforce)"
    ]


def test_the_documented_privileged_namespaces_are_exempt_and_only_they() -> None:
    """The Istio CNI node agent's namespace is privileged by design; a stack's own policy
    config replaces the list (and so can take an exemption back)."""
    for name in ("istio-cni", "gpu-operator", "swarmstack-monitoring"):
        assert messages(_namespace(name, "privileged"), "namespace-pod-security") == []
    assert len(messages(_namespace("istio-system", "privileged"), "namespace-pod-security")) == 1
    config = {"namespace-pod-security": {"exemptions": ["gpu-operator"]}}
    assert (
        len(messages(_namespace("istio-cni", "privileged"), "namespace-pod-security", config)) == 1
    )
