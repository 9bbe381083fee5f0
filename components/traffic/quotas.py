"""ResourceQuotas and LimitRanges: what a namespace may request, GPUs and MIG slices included.

A quota counts what the scheduler counts: a pod's effective request is the larger of its
largest init container and the sum of its app containers, with native sidecars (init
containers that restart, `restartPolicy: Always`) added to both sides as they run beside
the others, plus the RuntimeClass overhead. Proxies injected at admission (the mesh's
sidecar) are not in the rendered pod, so a namespace's demand adds them per pod.

A namespace's demand is every workload at its maximum replicas plus the pods a rolling
update adds (`maxSurge`): a quota below it stops a scale-up or a rollout with a quota
error long after `pulumi up` succeeded, which is why the config refuses one
(stacks/quotas.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import Field, field_validator

from components.specs import DnsLabel, Spec

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)$")
_SUFFIX = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
}
GIB = Decimal(2**30)
GPU = "nvidia.com/gpu"
MIG_PREFIX = "nvidia.com/mig-"


def parse_quantity(value: str | int | float) -> Decimal:
    """A Kubernetes quantity ("500m", "4", "32Gi") as a number of base units."""
    match = _QUANTITY.match(str(value).strip())
    if match is None or match.group(2) not in _SUFFIX:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 4, 32Gi)")
    return Decimal(match.group(1)) * _SUFFIX[match.group(2)]


Requests = dict[str, Decimal]


def _add(into: Requests, more: Mapping[str, Decimal]) -> None:
    for name, amount in more.items():
        into[name] = into.get(name, Decimal(0)) + amount


def _container_requests(container: Mapping[str, Any]) -> Requests:
    resources: Mapping[str, Any] = container.get("resources") or {}
    requests: Mapping[str, Any] = resources.get("requests") or {}
    limits: Mapping[str, Any] = resources.get("limits") or {}
    # A limit without a request makes the request equal to the limit.
    merged = {**limits, **requests}
    return {name: parse_quantity(v) for name, v in merged.items()}


def pod_requests(pod: Mapping[str, Any], injected: Mapping[str, Decimal] | None = None) -> Requests:
    """A pod's effective requests, as the scheduler and the quota count them."""
    total: Requests = {}
    for container in pod.get("containers") or ():
        _add(total, _container_requests(container))
    if injected:
        _add(total, injected)
    sidecars: Requests = {}
    peak: Requests = {}
    for init in pod.get("initContainers") or ():
        own = _container_requests(init)
        if init.get("restartPolicy") == "Always":
            _add(sidecars, own)
            continue
        # A regular init container runs beside the native sidecars started before it.
        running = dict(sidecars)
        _add(running, own)
        for name, amount in running.items():
            peak[name] = max(peak.get(name, Decimal(0)), amount)
    _add(total, sidecars)
    effective = {
        name: max(total.get(name, Decimal(0)), peak.get(name, Decimal(0)))
        for name in {*total, *peak}
    }
    overhead: Mapping[str, Any] = pod.get("overhead") or {}
    _add(effective, {name: parse_quantity(v) for name, v in overhead.items()})
    return effective


def admitted_pod(
    pod: Mapping[str, Any], runtime_classes: Mapping[str, Mapping[str, Any]]
) -> Mapping[str, Any]:
    """The pod as the RuntimeClass admission controller leaves it: `overhead` set from its
    RuntimeClass's `overhead.podFixed`, when the class declares one."""
    class_name = pod.get("runtimeClassName")
    if class_name is None or class_name not in runtime_classes:
        return pod
    overhead: Mapping[str, Any] = runtime_classes[class_name].get("overhead") or {}
    fixed: Mapping[str, Any] = overhead.get("podFixed") or {}
    if not fixed:
        return pod
    return {**pod, "overhead": dict(fixed)}


@dataclass(frozen=True)
class WorkloadPods:
    """One workload of a namespace: its pod template and how many pods it can reach."""

    name: str
    pod: Mapping[str, Any]
    max_replicas: int
    surge: int = 0  # pods a rolling update adds above max_replicas

    @property
    def pods(self) -> int:
        return self.max_replicas + self.surge


@dataclass(frozen=True)
class Demand:
    """What a namespace's workloads request at their maximum, by resource."""

    requests: Requests = field(default_factory=dict[str, Decimal])
    pods: int = 0


def namespace_demand(
    workloads: Iterable[WorkloadPods], injected: Mapping[str, Decimal] | None = None
) -> Demand:
    total: Requests = {}
    pods = 0
    for w in workloads:
        per_pod = pod_requests(w.pod, injected)
        _add(total, {name: amount * w.pods for name, amount in per_pod.items()})
        pods += w.pods
    return Demand(total, pods)


def surge_pods(replicas: int, max_surge: int | str) -> int:
    """Pods a rolling update adds: an absolute maxSurge, or a percentage rounded up."""
    if isinstance(max_surge, str) and max_surge.endswith("%"):
        return math.ceil(replicas * int(max_surge[:-1]) / 100)
    return int(max_surge)


class QuotaSpec(Spec):
    """A namespace's ResourceQuota: what all its pods may request together."""

    cpu: float = Field(gt=0, le=100_000, description="CPU cores all pods may request.")
    memory_gib: float = Field(gt=0, le=1_000_000, description="Memory all pods may request, GiB.")
    gpus: int = Field(default=0, ge=0, le=10_000, description="Whole GPUs (`nvidia.com/gpu`).")
    mig: dict[str, int] = Field(
        default_factory=dict[str, int],
        description="MIG slices by resource suffix, e.g. `{3g.40gb: 4}` for "
        "`nvidia.com/mig-3g.40gb`.",
    )
    pods: int = Field(ge=1, le=100_000, description="Pods.")

    @field_validator("mig")
    @classmethod
    def _counts(cls, mig: dict[str, int]) -> dict[str, int]:
        bad = {k: v for k, v in mig.items() if v < 0}
        if bad:
            raise ValueError(f"MIG slice counts must be 0 or more ({bad})")
        return mig

    def requests(self) -> Requests:
        found: Requests = {
            "cpu": Decimal(str(self.cpu)),
            "memory": Decimal(str(self.memory_gib)) * GIB,
        }
        if self.gpus:
            found[GPU] = Decimal(self.gpus)
        for profile, count in self.mig.items():
            found[f"{MIG_PREFIX}{profile}"] = Decimal(count)
        return found


class TeamSpec(Spec):
    """A tenant team: its own namespace, quota and container defaults."""

    name: DnsLabel = Field(description="Team name; its namespace is `swarmstack-team-<name>`.")
    quota: QuotaSpec = Field(description="What the team's namespace may request in total.")
    default_cpu: str = Field(
        default="250m", pattern=r"^[0-9]+m?$", description="CPU request a container gets "
        "when it names none (LimitRange)."
    )  # fmt: skip
    default_memory_mib: int = Field(
        default=256, ge=16, le=1_048_576,
        description="Memory request and limit a container gets when it names none, MiB.",
    )  # fmt: skip


class StackQuotas(Spec):
    """Quotas of the stack's own namespaces. Unset: computed from the workloads (every one
    at max replicas plus its rollout surge); set: used as written, never below that."""

    models: QuotaSpec | None = Field(
        default=None, description="The models namespace's quota (GPUs and MIG slices)."
    )
    agents: QuotaSpec | None = Field(
        default=None,
        description="The agents namespace's quota (every agent type's workers with their "
        "sidecars, canaries and sandbox overhead).",
    )

    def by_role(self) -> dict[str, QuotaSpec]:
        roles = (("models", self.models), ("agents", self.agents))
        return {role: q for role, q in roles if q is not None}


class TenancySpec(Spec):
    """Quotas of the stack's own namespaces, and tenant teams (`swarmstack:tenancy`)."""

    quotas: StackQuotas = Field(
        default_factory=StackQuotas,
        description="Quotas of the stack's own namespaces, replacing the computed ones.",
    )
    teams: list[TeamSpec] = Field(
        default_factory=list[TeamSpec], description="Tenant teams, each in its own namespace."
    )


def team_namespace(team: TeamSpec) -> str:
    return f"swarmstack-team-{team.name}"


def format_quantity(name: str, amount: Decimal) -> str:
    """A quota figure as a reader writes it: whole cores or millicores, Gi or Mi, counts."""
    if name == "cpu":
        return (
            str(int(amount))
            if amount == amount.to_integral_value()
            else f"{math.ceil(amount * 1000)}m"
        )
    if name == "memory":
        if amount % GIB == 0:
            return f"{int(amount // GIB)}Gi"
        return f"{math.ceil(amount / 2**20)}Mi"
    return str(math.ceil(amount))


def quota_hard(requests: Mapping[str, Decimal], pods: int) -> dict[str, str]:
    """A ResourceQuota's `spec.hard`: the requests of every resource (extended resources,
    GPUs and MIG slices, take only the `requests.` form) and pods."""
    hard = {f"requests.{name}": format_quantity(name, requests[name]) for name in sorted(requests)}
    hard["pods"] = str(pods)
    return hard


def shortfalls(quota: Requests, quota_pods: int, demand: Demand) -> list[str]:
    """Each resource where `quota` is below `demand`, named with both figures."""
    found: list[str] = []
    for name in sorted(demand.requests):
        need = demand.requests[name]
        have = quota.get(name, Decimal(0))
        if have < need:
            found.append(
                f"{name}: quota {format_quantity(name, have)} is below the "
                f"{format_quantity(name, need)} its workloads request at max replicas"
            )
    if quota_pods < demand.pods:
        found.append(
            f"pods: quota {quota_pods} is below the {demand.pods} pods its workloads reach"
        )
    return found


def limit_range(default_cpu: str, default_memory_mib: int) -> dict[str, Any]:
    """A LimitRange spec: the requests (and memory limit) a container without any gets, so
    a quota on requests admits it."""
    memory = f"{default_memory_mib}Mi"
    return {
        "limits": [
            {
                "type": "Container",
                "defaultRequest": {"cpu": default_cpu, "memory": memory},
                "default": {"memory": memory},
            }
        ]
    }


def demand_names(workloads: Sequence[WorkloadPods]) -> str:
    return ", ".join(f"{w.name} x{w.pods}" for w in workloads)
