"""The stack's quotas: what each of its namespaces may request, computed from the pods the
stack itself renders, and the tenant teams' namespaces.

The models namespace's quota is every model at its maximum replicas (GPUs and MIG slices
included, and the mesh's sidecar in each pod) plus the rollout surge, read from the same
pod templates the model Deployments use; `tenancy.quotas.models` may replace it, but
never with less than that, or a scale-up the autoscaler asks for would stop on a quota
error instead.

The agents namespace's quota is the same sum over every agent type's worker pod (the
template its Deployment uses, the mesh's sidecar added, a sandboxed pod's RuntimeClass
overhead when the class declares one) at its maximum replicas plus the rollout surge;
With a model gateway (which runs in the agents namespace), its proxy replicas, its
Postgres and its two Jobs (schema migration, key registration) count there too.
`tenancy.quotas.agents` may replace it under the same rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from components.agents import workload as agent_workload
from components.agents.spec import canary_name, workload_name
from components.compute.sandbox import RUNTIME_CLASS, runtime_class_body
from components.gateway import database as gateway_database
from components.gateway import proxy as gateway_proxy
from components.serving.model_serving import MAX_SURGE, pod_template
from components.traffic.quotas import (
    Demand,
    WorkloadPods,
    admitted_pod,
    namespace_demand,
    parse_quantity,
    quota_hard,
    shortfalls,
    surge_pods,
)
from stacks.agents import agent_image
from stacks.config import Problem, StackConfig, serving_placement

HF_SECRET = "huggingface-token"  # any name: a Secret volume requests nothing


def model_workloads(config: StackConfig) -> list[WorkloadPods]:
    workloads: list[WorkloadPods] = []
    for model in config.models:
        template = pod_template(
            model,
            image=config.images.vllm,
            placement=serving_placement(model, config),
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


def stack_runtime_classes() -> dict[str, Mapping[str, Any]]:
    """The RuntimeClasses the stack declares, by name (components/compute/sandbox.py)."""
    return {RUNTIME_CLASS: runtime_class_body()}


def agent_workloads(
    config: StackConfig, runtime_classes: Mapping[str, Mapping[str, Any]] | None = None
) -> list[WorkloadPods]:
    """Every agent type's worker pods at their maximum: the Deployment's own pod template
    (its environment and secret files request nothing, so they are left out here), as
    admission leaves it (`runtime_classes`, default the stack's own)."""
    classes = stack_runtime_classes() if runtime_classes is None else runtime_classes
    workloads: list[WorkloadPods] = []
    for agent in config.agents:
        template = agent_workload.pod_template(
            agent,
            image=agent_image(config, agent),
            worker=agent_workload.WorkerContainer(
                command=agent_workload.WORKER_COMMAND, env=(), files=()
            ),
            cost_labels=config.cost_labels,
        )
        replicas = agent.replicas.max
        workloads.append(
            WorkloadPods(
                workload_name(agent),
                admitted_pod(template["spec"], classes),
                replicas,
                surge_pods(replicas, agent_workload.MAX_SURGE),
            )
        )
        if agent.canary is not None:
            # Same resources (only its image tag differs), at its fixed replica count.
            canary = agent.canary.replicas
            workloads.append(
                WorkloadPods(
                    canary_name(agent),
                    admitted_pod(
                        agent_workload.canary_pod_template(agent, template)["spec"], classes
                    ),
                    canary,
                    surge_pods(canary, agent_workload.MAX_SURGE),
                )
            )
    return workloads


def gateway_workloads(config: StackConfig) -> list[WorkloadPods]:
    """The model gateway's pods in the agents namespace: its proxy at its replicas plus
    the rollout surge, its Postgres, and its migration and key Jobs (each one pod at a
    time; both may run during a rollout). Their requests do not depend on the Secret,
    ConfigMap and Redis names, so placeholders stand in for those here."""
    spec = config.gateway
    if spec is None:
        return []
    redis = gateway_proxy.RedisAccess(
        host="session-store", port=6379, password_secret="quota", password_key="quota"
    )
    proxy = gateway_proxy.pod_template(
        spec, redis=redis, config_map="quota", config_sha256="", cost_labels=config.cost_labels
    )
    migrate = gateway_proxy.migration_job_spec(
        spec, config_map="quota", redis=redis, cost_labels=config.cost_labels
    )
    agents = [(a.name, a.model) for a in config.agents]
    keys = gateway_proxy.key_job_spec(
        spec, agents, namespace="quota", scripts="quota", cost_labels=config.cost_labels
    )
    db = gateway_database.pod_template(spec.database, config.cost_labels, password_secret="quota")
    database = (
        [WorkloadPods(f"{gateway_proxy.NAME}-database", db["spec"], 1, 0)]
        if spec.database.mode == "inCluster"  # on RDS: no pod in the cluster
        else []
    )
    return [
        WorkloadPods(
            gateway_proxy.NAME,
            proxy["spec"],
            spec.replicas,
            surge_pods(spec.replicas, agent_workload.MAX_SURGE),
        ),
        *database,
        WorkloadPods(f"{gateway_proxy.NAME}-migrate", migrate["template"]["spec"], 1, 0),
        WorkloadPods(f"{gateway_proxy.NAME}-keys", keys["template"]["spec"], 1, 0),
    ]


def sidecar_requests(config: StackConfig) -> dict[str, Decimal]:
    """What Istio's injector adds to every meshed pod: the proxy's requests."""
    proxy = config.mesh.proxy
    return {"cpu": parse_quantity(proxy.cpu), "memory": Decimal(proxy.memory_mib * 2**20)}


def namespace_demands(config: StackConfig) -> dict[str, Demand]:
    """Demand by namespace role, the mesh's sidecar in every pod included (the agents'
    namespace only when the stack has agents or a quota for them is configured)."""
    sidecar = sidecar_requests(config)
    demands = {"models": namespace_demand(model_workloads(config), sidecar)}
    if config.agents or config.tenancy.quotas.agents is not None:
        demands["agents"] = namespace_demand(
            agent_workloads(config) + gateway_workloads(config), sidecar
        )
    return demands


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
