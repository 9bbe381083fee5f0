"""The agents part of the composition: one `AgentWorkload` per agent type of the config,
the PriorityClasses they share and the ECR repository of the worker image.

Each agent's environment comes from the data plane's connection contract
(`worker_wiring`) with the trace collector's endpoint, its model's in-cluster Service and
served name, and the model's timeout chain (`MODEL_TIMEOUT_S` is the chain's worker hop);
with a gateway, the gateway instead of the model's Service (stacks/gateway.py).
The config rules have already refused an agent whose model, image or session store is
missing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pulumi

from components.agents.spec import AgentSpec, events_agents, type_selector, workload_name
from components.agents.workload import (
    AgentPriorityClasses,
    AgentWorkload,
    AgentWorkloadArgs,
    ModelTarget,
    model_base_url,
    worker_repository,
)
from components.compute.cluster import ClusterNetworkAndEks
from components.compute.irsa import Irsa
from components.data import redis as redis_store
from components.data.contract import DataPlaneContract, WorkerWiring, worker_wiring
from components.gateway import database as gateway_database
from components.gateway import proxy as gateway_proxy
from components.specs import ImageRef
from components.traffic.mesh import ManagedStores
from components.traffic.timeouts import timeout_chain
from stacks.config import StackConfig
from stacks.gateway import gateway_on_rds, model_target_through_gateway, through_gateway
from stacks.observability import worker_tracing_env

WORKER_REPOSITORY = "agent-worker"  # ECR repository <cluster name>/agent-worker


def worker_repository_name(config: StackConfig) -> str:
    return f"{config.cluster.name}/{WORKER_REPOSITORY}"


def agent_image(config: StackConfig, agent: AgentSpec) -> ImageRef:
    """The agent's own image, else `images.agentWorker` (the config rules refuse neither)."""
    image = agent.image or config.images.agent_worker
    assert image is not None, "stacks/config.py refuses an agent without an image"
    return image


def model_target(config: StackConfig, agent: AgentSpec) -> ModelTarget:
    """The model an agent calls, as its worker sees it (through the gateway when the stack
    has one)."""
    if config.gateway is not None:
        return model_target_through_gateway(config, agent)
    model = next(m for m in config.models if m.name == agent.model)
    return ModelTarget(
        base_url=model_base_url(model.name, config.namespaces.models),
        served_name=model.model,
        timeout_s=timeout_chain(model, config.timeouts).worker_s,
    )


def with_tracing(config: StackConfig, wiring: WorkerWiring) -> WorkerWiring:
    """The wiring plus the trace collector's endpoint, when the stack runs one."""
    return dataclasses.replace(wiring, env={**wiring.env, **worker_tracing_env(config)})


def agent_wiring(
    config: StackConfig, contract: DataPlaneContract, agent: AgentSpec
) -> WorkerWiring:
    """One agent type's worker wiring: the data plane's, the tracing endpoint and, with a
    gateway, its key file and the gateway's readiness."""
    wiring = with_tracing(config, worker_wiring(contract, agent))
    return through_gateway(config, agent, wiring) if config.gateway is not None else wiring


def managed_store_policies(config: StackConfig) -> dict[str, dict[str, Any]]:
    """Egress of the agents to the stores AWS runs (MSK, ElastiCache) in the stack's VPC,
    which no pod selector can name: the VPC's CIDR on the store's client port, and for MSK
    (IAM client auth) the STS interface endpoint (443) the worker's IRSA credentials come
    from; and of the gateway's pods (proxy and migration Job) to its Postgres on RDS.
    With `cluster.mode: existing` the VPC's CIDR is not in the config: none is rendered,
    and the agents namespace needs its own opening (README, "Network isolation")."""
    if config.cluster.mode != "eks":
        return {}
    vpc = [{"ipBlock": {"cidr": config.cluster.vpc_cidr}}]
    ns, data = config.namespaces.agents, config.data_plane
    policies: dict[str, dict[str, Any]] = {}
    kafka = data.kafka
    if kafka is not None and kafka.mode == "msk":
        ports = [kafka.cluster_port, 443]  # MSK authenticates agents with IAM only
        for agent in events_agents(config.agents):
            policies[f"agents-{agent.name}-to-msk"] = {
                "namespace": ns,
                "name": f"allow-{workload_name(agent)}-to-msk",
                "spec": {
                    "podSelector": {"matchLabels": type_selector(agent)},
                    "policyTypes": ["Egress"],
                    "egress": [
                        {"to": vpc, "ports": [{"protocol": "TCP", "port": p} for p in ports]}
                    ],
                },
            }
    if data.redis is not None and data.redis.mode == "elasticache" and config.agents:
        policies["agents-to-elasticache"] = {
            "namespace": ns,
            "name": "allow-agents-to-elasticache",
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [{"to": vpc, "ports": [{"protocol": "TCP", "port": redis_store.PORT}]}],
            },
        }
    if gateway_on_rds(config):
        policies["agents-gateway-to-rds"] = {
            "namespace": ns,
            "name": f"allow-{gateway_proxy.NAME}-to-rds",
            "spec": {
                "podSelector": gateway_proxy.component_pods(),
                "policyTypes": ["Egress"],
                "egress": [
                    {"to": vpc, "ports": [{"protocol": "TCP", "port": gateway_database.PORT}]}
                ],
            },
        }
    return policies


def managed_stores(config: StackConfig, region: str) -> ManagedStores | None:
    """The stores AWS runs that the agents dial (the mesh lets them out by ServiceEntry);
    None when every store is in the cluster."""
    data = config.data_plane
    kafka, redis = data.kafka, data.redis
    msk_port = kafka.cluster_port if kafka is not None and kafka.mode == "msk" else None
    elasticache = redis is not None and redis.mode == "elasticache"
    rds = gateway_on_rds(config)
    if msk_port is None and not elasticache and not rds:
        return None
    return ManagedStores(
        region=region,
        msk_port=msk_port,
        elasticache_port=redis_store.PORT if elasticache else None,
        rds_port=gateway_database.PORT if rds else None,
    )


def build_agents(
    config: StackConfig,
    *,
    contract: DataPlaneContract | None,
    eks: ClusterNetworkAndEks | None,
    irsa: Irsa | None,
    agents_namespace: pulumi.Input[str],
    on_cluster: pulumi.ResourceOptions,
    depends_on: Sequence[pulumi.Resource] = (),
) -> list[AgentWorkload]:
    if eks is not None:
        repository = worker_repository(
            "agent-worker-repository",
            repository_name=worker_repository_name(config),
            kms_key_arn=eks.kms_key_arn,
            cost_labels=config.cost_labels,
        )
        pulumi.export("agentWorkerRepository", repository.repository_url)
    if not config.agents:
        return []
    assert contract is not None, "stacks/config.py refuses agents without a session store"
    after = pulumi.ResourceOptions.merge(
        on_cluster, pulumi.ResourceOptions(depends_on=list(depends_on))
    )
    priorities = AgentPriorityClasses("agent-priorities", config.cost_labels, opts=on_cluster)
    workloads: list[AgentWorkload] = []
    for agent in config.agents:
        workloads.append(
            AgentWorkload(
                f"agent-{agent.name}",
                AgentWorkloadArgs(
                    spec=agent,
                    namespace=agents_namespace,
                    namespace_name=config.namespaces.agents,
                    image=agent_image(config, agent),
                    model=model_target(config, agent),
                    wiring=agent_wiring(config, contract, agent),
                    cost_labels=config.cost_labels,
                    irsa=irsa,
                ),
                opts=pulumi.ResourceOptions.merge(
                    after, pulumi.ResourceOptions(depends_on=[priorities])
                ),
            )
        )
    return workloads
