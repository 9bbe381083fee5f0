"""The gateway part of the composition: with `gateway:` set, one `ModelGateway` in the agents'
namespace, and what the rest of the stack changes because of it.

- The proxy config is `render_proxy_config` with every model's in-cluster Service (the
  local target renders the same config with 127.0.0.1 URLs).
- Agents: their model endpoint is the gateway (`MODEL_BASE_URL`), their model name is the
  gateway's name of the model (`models[].name`), their readiness checks the gateway's own
  `/health/readiness` (`MODEL_HEALTH_URL`), their key is a mounted file
  (`MODEL_API_KEY_FILE`) and `MODEL_TIMEOUT_S` is the gateway chain's worker hop.
- Mesh: agents may call the gateway and no model; the models accept only the gateway
  (components/traffic/mesh.py `GatewayTraffic`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pulumi

from components.agents.spec import AgentSpec
from components.agents.workload import ModelTarget, model_base_url
from components.data.contract import DataPlaneContract, MountedFile, SecretRef, WorkerWiring
from components.data.network import ManagedNetwork
from components.gateway import proxy as gateway_proxy
from components.gateway.proxy import (
    GatewaySecrets,
    ModelGateway,
    ModelGatewayArgs,
    RedisAccess,
    gateway_network_policies,
)
from components.gateway.proxy_config import render_proxy_config, timeouts_of
from components.gateway.rds import GatewayRds, GatewayRdsArgs
from components.gateway.spec import GatewaySpec, used_providers
from components.traffic.mesh import GatewayTraffic
from components.traffic.regional_ingress import ingress_principal
from components.traffic.timeouts import GatewayTimeouts
from stacks.config import (
    GATEWAY_AGENT_KEY_SEED,
    GATEWAY_DATABASE_PASSWORD_KEY,
    GATEWAY_MASTER_KEY,
    GATEWAY_PROVIDER_KEYS,
    GATEWAY_SALT_KEY,
    StackConfig,
)


def gateway_of(config: StackConfig) -> GatewaySpec:
    assert config.gateway is not None, "called only for a stack with a gateway"
    return config.gateway


def gateway_timeouts_of(config: StackConfig) -> GatewayTimeouts:
    return timeouts_of(gateway_of(config), config.models, config.timeouts)


def degraded_models(config: StackConfig) -> dict[str, str]:
    """Each agent's cheaper gateway model (`agents[].degradedModel`), for those with one."""
    return {a.name: a.degraded_model for a in config.agents if a.degraded_model is not None}


def cluster_upstreams(config: StackConfig) -> dict[str, str]:
    """Each stack model's in-cluster OpenAI base URL (its Service)."""
    return {m.name: model_base_url(m.name, config.namespaces.models) for m in config.models}


def cluster_proxy_config(config: StackConfig) -> dict[str, Any]:
    """The proxy config the cluster runs."""
    return render_proxy_config(
        gateway_of(config), config.models, config.timeouts, cluster_upstreams(config)
    )


def gateway_on_rds(config: StackConfig) -> bool:
    """Whether the gateway's Postgres is an RDS instance (a store AWS runs)."""
    return config.gateway is not None and config.gateway.database.mode == "rds"


def gateway_traffic(config: StackConfig) -> GatewayTraffic | None:
    """What the mesh needs of the gateway; None without one."""
    if config.gateway is None:
        return None
    hosts = sorted({m.host for m in config.gateway.managed_models})
    return GatewayTraffic(
        route_s=gateway_timeouts_of(config).route_s,
        external_hosts=tuple(hosts),
        in_cluster_database=not gateway_on_rds(config),
        ingress_principals=(ingress_principal(),) if config.regional is not None else (),
    )


def agent_gateway_selector() -> dict[str, Any]:
    """The gateway's pods and port, as the agents' NetworkPolicies name them."""
    return {"pods": gateway_proxy.selector_labels(), "port": gateway_proxy.PORT}


def gateway_policies(config: StackConfig) -> dict[str, dict[str, Any]]:
    """The gateway's NetworkPolicies; none without one."""
    if config.gateway is None:
        return {}
    return gateway_network_policies(
        config.namespaces,
        external_https=bool(config.gateway.managed_models),
        key_job=bool(config.agents),
        in_cluster_database=not gateway_on_rds(config),
    )


def model_target_through_gateway(config: StackConfig, agent: AgentSpec) -> ModelTarget:
    """The model an agent calls, through the gateway: the gateway's URL and model name, and
    the gateway chain's worker hop."""
    return ModelTarget(
        base_url=gateway_proxy.base_url(config.namespaces.agents),
        served_name=agent.model,
        timeout_s=gateway_timeouts_of(config).worker_s,
    )


def through_gateway(config: StackConfig, agent: AgentSpec, wiring: WorkerWiring) -> WorkerWiring:
    """The agent's wiring plus its gateway key (a mounted file) and the gateway's readiness
    as its model health check."""
    ns = config.namespaces.agents
    key = MountedFile(
        SecretRef(
            ns, gateway_proxy.agent_key_secret(agent.name), gateway_proxy.AGENT_KEY_SECRET_KEY
        ),
        gateway_proxy.AGENT_KEY_FILE,
    )
    env = {
        **wiring.env,
        "MODEL_HEALTH_URL": gateway_proxy.readiness_url(ns),
        "MODEL_API_KEY_FILE": gateway_proxy.AGENT_KEY_FILE,
    }
    return dataclasses.replace(wiring, env=env, files=(*wiring.files, key))


def read_gateway_secrets(config: StackConfig) -> GatewaySecrets:
    """The gateway's Pulumi secrets (the program has refused a config that lacks one)."""
    stack_config = pulumi.Config()
    gateway = gateway_of(config)
    return GatewaySecrets(
        master_key=stack_config.require_secret(GATEWAY_MASTER_KEY),
        salt_key=stack_config.require_secret(GATEWAY_SALT_KEY),
        database_password=stack_config.require_secret(GATEWAY_DATABASE_PASSWORD_KEY),
        agent_key_seed=stack_config.require_secret(GATEWAY_AGENT_KEY_SEED),
        provider_keys={
            p: stack_config.require_secret(GATEWAY_PROVIDER_KEYS[p])
            for p in used_providers(gateway)
        },
    )


def redis_access(contract: DataPlaneContract) -> RedisAccess:
    sessions = contract.session_store
    assert sessions is not None, "stacks/config.py refuses a gateway without the session store"
    conn = sessions.connection
    return RedisAccess(
        host=conn.host,
        port=conn.port,
        password_secret=conn.password.secret,
        password_key=conn.password.key,
        ca_secret=conn.ca.secret if conn.ca is not None else None,
        ca_key=conn.ca.key if conn.ca is not None else None,
    )


def rds_identifier(config: StackConfig) -> str:
    """The gateway's RDS instance name in the account (the cluster name is the prefix of
    every AWS resource name of the stack)."""
    return f"{config.cluster.name}-gateway-db"


def build_gateway_rds(
    config: StackConfig, network: ManagedNetwork | None, password: pulumi.Input[str]
) -> GatewayRds | None:
    """The gateway's RDS instance (database mode rds); None for the in-cluster Postgres."""
    if not gateway_on_rds(config):
        return None
    assert network is not None, "stacks/config.py refuses rds without the VPC's facts"
    return GatewayRds(
        "gateway-db",
        GatewayRdsArgs(
            spec=gateway_of(config).database.rds,
            identifier=rds_identifier(config),
            network=network,
            password=password,
            cost_labels=config.cost_labels,
        ),
    )


def build_gateway(
    config: StackConfig,
    *,
    contract: DataPlaneContract | None,
    network: ManagedNetwork | None,
    agents_namespace: pulumi.Input[str],
    on_cluster: pulumi.ResourceOptions,
    depends_on: Sequence[pulumi.Resource] = (),
) -> ModelGateway | None:
    if config.gateway is None:
        return None
    assert contract is not None, "stacks/config.py refuses a gateway without the session store"
    secrets = read_gateway_secrets(config)
    rds = build_gateway_rds(config, network, secrets.database_password)
    gateway = ModelGateway(
        "gateway",
        ModelGatewayArgs(
            spec=config.gateway,
            namespace=agents_namespace,
            namespace_name=config.namespaces.agents,
            config=cluster_proxy_config(config),
            agents=[(a.name, a.model) for a in config.agents],
            degraded_models=degraded_models(config),
            redis=redis_access(contract),
            secrets=secrets,
            cost_labels=config.cost_labels,
            database_host=rds.address if rds is not None else None,
        ),
        opts=pulumi.ResourceOptions.merge(
            on_cluster,
            pulumi.ResourceOptions(depends_on=[*depends_on, *([rds] if rds is not None else [])]),
        ),
    )
    pulumi.export(
        "gateway",
        {
            "baseUrl": gateway_proxy.base_url(config.namespaces.agents),
            "readinessUrl": gateway_proxy.readiness_url(config.namespaces.agents),
            "models": [m.name for m in config.models]
            + [m.name for m in config.gateway.managed_models],
            # Where a load test runs in the cluster and what its policies open
            # (loadtests/stack_outputs.py, loadtests/incluster.py).
            "namespace": config.namespaces.agents,
            "port": gateway_proxy.PORT,
            "podSelector": gateway_proxy.selector_labels(),
        },
    )
    return gateway
