"""Helpers for policy tests: declare real SDK resources, capture them, run one rule."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast

import pulumi_kubernetes as k8s

from policies.pack import rules_by_name
from stacks.plan.policy import Violation, evaluate
from stacks.plan.recorder import run

RESTRICTED_CONTAINER: dict[str, Any] = {
    "name": "app",
    "image": "registry.example.com/team/app:1.4.2",
    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "128Mi"}},
    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
    "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    },
}

RESTRICTED_POD: dict[str, Any] = {
    "automountServiceAccountToken": False,
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "containers": [RESTRICTED_CONTAINER],
}

COST_LABELS = {"team": "agents", "cost-center": "cc-1", "environment": "test"}


def restricted_pod(**changes: Any) -> dict[str, Any]:
    pod = copy.deepcopy(RESTRICTED_POD)
    pod.update(changes)
    return pod


def container(**changes: Any) -> dict[str, Any]:
    c = copy.deepcopy(RESTRICTED_CONTAINER)
    c.update(changes)
    return c


def deployment(
    name: str = "app",
    namespace: str | None = "agents",
    pod: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> k8s.apps.v1.Deployment:
    """A real Deployment resource; selectors match its pod labels."""
    pod_labels = {"app.kubernetes.io/name": name, **COST_LABELS, **(labels or {})}
    return k8s.apps.v1.Deployment(
        name,
        metadata={"name": name, "namespace": namespace, "annotations": annotations or {}},
        spec=cast(
            Any,
            {  # wire form (camelCase), which the SDK sends as written
                "replicas": 1,
                "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "template": {
                    "metadata": {"labels": pod_labels, "annotations": annotations or {}},
                    "spec": pod if pod is not None else restricted_pod(),
                },
            },
        ),
    )


def violations(
    program: Callable[[], object], rule: str, config: dict[str, Any] | None = None
) -> list[Violation]:
    """What one rule reports about the resources `program` declares."""
    capture = run(program)
    return evaluate(capture.registrations, config or {}, [rules_by_name()[rule]])


def messages(
    program: Callable[[], object], rule: str, config: dict[str, Any] | None = None
) -> list[str]:
    return [v.message for v in violations(program, rule, config)]


def only(
    program: Callable[[], object], rule: str, config: dict[str, Any] | None = None
) -> Violation:
    """The one violation of `rule` the program's resources cause (fails on none or several)."""
    found = violations(program, rule, config)
    assert len(found) == 1, [v.message for v in found]
    assert found[0].rule == rule
    return found[0]
