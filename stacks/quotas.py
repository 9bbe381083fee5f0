"""The stack's quotas: what each of its namespaces may request, computed from the pods the
stack itself renders, and the tenant teams' namespaces.

The models namespace's quota is every model at its maximum replicas (GPUs and MIG slices
included, and the mesh's sidecar in each pod) plus the rollout surge, read from the same
pod templates the model Deployments use; `tenancy.quotas.models` may replace it, but
never with less than that, or a scale-up the autoscaler asks for would stop on a quota
error instead.
"""

from __future__ import annotations

from decimal import Decimal

from components.serving.model_serving import MAX_SURGE, Placement, pod_template
from components.traffic.quotas import (
    Demand,
    WorkloadPods,
    namespace_demand,
    parse_quantity,
    quota_hard,
    shortfalls,
    surge_pods,
)
from stacks.config import Problem, StackConfig, accelerator_resource

HF_SECRET = "huggingface-token"  # any name: a Secret volume requests nothing


def model_workloads(config: StackConfig) -> list[WorkloadPods]:
    workloads: list[WorkloadPods] = []
    for model in config.models:
        resource, count = accelerator_resource(model, config)
        template = pod_template(
            model,
            image=config.images.vllm,
            placement=Placement(pool=model.pool, resource=resource, count=count),
            cost_labels=config.cost_labels,
            service_account=model.name,
            hf_token_secret=HF_SECRET if model.weights.source == "huggingface" else None,
        )
        workloads.append(
            WorkloadPods(
                model.name,
                template["spec"],
                model.replicas.max,
                surge_pods(model.replicas.max, MAX_SURGE),
            )
        )
        if model.canary is not None:
            # Same resources and accelerator as the stable version (only its image or vLLM
            # settings differ), at its fixed replica count.
            replicas = model.canary.replicas
            workloads.append(
                WorkloadPods(
                    f"{model.name}-canary",
                    template["spec"],
                    replicas,
                    surge_pods(replicas, MAX_SURGE),
                )
            )
    return workloads


def sidecar_requests(config: StackConfig) -> dict[str, Decimal]:
    """What Istio's injector adds to every meshed pod: the proxy's requests."""
    proxy = config.mesh.proxy
    return {"cpu": parse_quantity(proxy.cpu), "memory": Decimal(proxy.memory_mib * 2**20)}


def namespace_demands(config: StackConfig) -> dict[str, Demand]:
    """Demand by namespace role, the mesh's sidecar in every pod included."""
    return {"models": namespace_demand(model_workloads(config), sidecar_requests(config))}


def stack_quotas(config: StackConfig) -> dict[str, dict[str, str]]:
    """`spec.hard` of each stack namespace's ResourceQuota, by role."""
    hard: dict[str, dict[str, str]] = {}
    for role, demand in namespace_demands(config).items():
        configured = config.tenancy.quotas.by_role().get(role)
        if configured is None:
            hard[role] = quota_hard(demand.requests, demand.pods)
        else:
            hard[role] = quota_hard(configured.requests(), configured.pods)
    return hard


def quota_problems(config: StackConfig) -> list[Problem]:
    """A configured quota below what the stack's own workloads request, named by path."""
    problems: list[Problem] = []
    demands = namespace_demands(config)
    for role, quota in config.tenancy.quotas.by_role().items():
        for message in shortfalls(quota.requests(), quota.pods, demands[role]):
            problems.append(Problem(f"tenancy.quotas.{role}", message))
    return problems
