"""The one restricted security context every swarmstack workload is rendered with."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from components.pod_security import restricted_container, restricted_pod
from tests.policy_support import RESTRICTED_CONTAINER, deployment, messages

SECURITY_RULES = (
    "no-privileged-containers",
    "no-privilege-escalation",
    "run-as-non-root",
    "drop-all-capabilities",
    "read-only-root-filesystem",
    "seccomp-runtime-default",
)


@pytest.mark.parametrize(
    ("restate_non_root", "state_unprivileged", "seccomp"),
    list(itertools.product([True, False], repeat=3)),
)
@pytest.mark.parametrize("run_as", [None, 10001])
def test_every_variant_passes_the_policy_packs_security_rules(
    restate_non_root: bool, state_unprivileged: bool, seccomp: bool, run_as: int | None
) -> None:
    box: dict[str, Any] = {
        **RESTRICTED_CONTAINER,
        "securityContext": restricted_container(
            restate_non_root=restate_non_root,
            state_unprivileged=state_unprivileged,
            seccomp=seccomp,
        ),
    }
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": restricted_pod(run_as, fs_group=run_as),
        "containers": [box],
    }
    for rule in SECURITY_RULES:
        assert messages(lambda: deployment(pod=pod), rule) == [], rule


def test_the_full_container_context() -> None:
    assert restricted_container() == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }


def test_a_pod_context_with_volume_ownership() -> None:
    assert restricted_pod(999, fs_group=999, fs_group_on_root_mismatch=True) == {
        "runAsNonRoot": True,
        "runAsUser": 999,
        "runAsGroup": 999,
        "fsGroup": 999,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_an_image_user_pod_sets_no_ids() -> None:
    assert restricted_pod(None) == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_a_change_policy_without_a_group_is_refused() -> None:
    with pytest.raises(ValueError, match="needs an fs_group"):
        restricted_pod(1000, fs_group_on_root_mismatch=True)


def test_each_call_returns_its_own_dict() -> None:
    first = restricted_container()
    first["capabilities"]["drop"].clear()
    assert restricted_container()["capabilities"] == {"drop": ["ALL"]}
