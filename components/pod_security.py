"""The restricted Pod Security Standard, written once for every workload swarmstack renders.

Each pod runs as a fixed non-root user under the runtime's default seccomp profile; each
container drops every capability, cannot escalate privileges and has a read-only root
filesystem (a workload that writes mounts an emptyDir where it does). The policy pack's
kubernetes-security rules check the same fields on whatever the stack declares; these two
functions are where swarmstack's own workloads get them.

Some callers restate at container level what the pod already says (`runAsNonRoot`, the
default `privileged: false`) and Strimzi's pod templates also carry the seccomp profile on
the container; the keywords keep each rendered manifest as it is.
"""

from __future__ import annotations

from typing import Literal, Required, TypedDict


class SeccompProfile(TypedDict):
    type: Literal["RuntimeDefault"]


class Capabilities(TypedDict):
    drop: list[Literal["ALL"]]


class ContainerSecurityContext(TypedDict, total=False):
    """The fields of a core/v1 SecurityContext this module sets."""

    allowPrivilegeEscalation: Required[bool]
    readOnlyRootFilesystem: Required[bool]
    runAsNonRoot: bool
    privileged: bool
    capabilities: Required[Capabilities]
    seccompProfile: SeccompProfile


class PodSecurityContext(TypedDict, total=False):
    """The fields of a core/v1 PodSecurityContext this module sets."""

    runAsNonRoot: Required[bool]
    runAsUser: int
    runAsGroup: int
    fsGroup: int
    fsGroupChangePolicy: Literal["OnRootMismatch"]
    seccompProfile: Required[SeccompProfile]


def runtime_default_seccomp() -> SeccompProfile:
    return {"type": "RuntimeDefault"}


def restricted_container(
    *, restate_non_root: bool = True, state_unprivileged: bool = True, seccomp: bool = False
) -> ContainerSecurityContext:
    """A container's securityContext under the restricted profile.

    restate_non_root: also set `runAsNonRoot` on the container (the pod sets it anyway).
    state_unprivileged: write the default `privileged: false` out.
    seccomp: also set the RuntimeDefault seccomp profile on the container.
    """
    context: ContainerSecurityContext = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    if restate_non_root:
        context["runAsNonRoot"] = True
    if state_unprivileged:
        context["privileged"] = False
    if seccomp:
        context["seccompProfile"] = runtime_default_seccomp()
    return context


def restricted_pod(
    run_as: int | None,
    *,
    fs_group: int | None = None,
    fs_group_on_root_mismatch: bool = False,
) -> PodSecurityContext:
    """A pod's securityContext under the restricted profile.

    run_as: the user and group id every container runs as; None leaves both to the image
      (whose user must then be non-root, or the kubelet refuses to start it).
    fs_group: the group that owns mounted volumes; None sets none.
    fs_group_on_root_mismatch: change volume ownership only when the volume's root does
      not match already (a large volume is not walked on every start).
    """
    context: PodSecurityContext = {
        "runAsNonRoot": True,
        "seccompProfile": runtime_default_seccomp(),
    }
    if run_as is not None:
        context["runAsUser"] = run_as
        context["runAsGroup"] = run_as
    if fs_group is not None:
        context["fsGroup"] = fs_group
        if fs_group_on_root_mismatch:
            context["fsGroupChangePolicy"] = "OnRootMismatch"
    elif fs_group_on_root_mismatch:
        raise ValueError("fs_group_on_root_mismatch needs an fs_group")
    return context
