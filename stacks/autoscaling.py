"""The autoscaling part of the composition: KEDA with a ScaledObject per model and per
deployed agent type, and the Cluster Autoscaler for the node groups this stack builds.

`scaling_objects` decides from the config alone what KEDA is given (pure, so tests and the
plan read the same objects); `build_autoscaling` declares them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.agents.spec import AgentSpec, events_agents
from components.compute.cluster import ClusterNetworkAndEks
from components.compute.irsa import Irsa
from components.compute.nodes import aws_tags
from components.compute.placement import expander_priorities
from components.data import kafka as kafka_store
from components.data.contract import DataPlaneContract
from components.data.kafka import KEDA_USER, KafkaConnection
from components.scale.cluster_autoscaler import ClusterAutoscaler, ClusterAutoscalerArgs
from components.scale.keda import (
    KAFKA_USERNAME_CONFIG_MAP,
    Keda,
    KedaArgs,
    KedaOperatorRole,
    agent_scaled_object,
    kafka_auth_metadata,
    kafka_trigger_authentication,
    keda_network_policies,
    model_scaled_object,
)
from components.traffic.timeouts import timeout_chain
from stacks.config import StackConfig
from stacks.observability import KAFKA_CLUSTER


@dataclass(frozen=True)
class ScalingObjects:
    """What KEDA is given: bodies by resource suffix, and the ConfigMaps they read."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict[str, dict[str, Any]])
    config_maps: dict[str, tuple[str, str, Mapping[str, str]]] = field(
        default_factory=dict[str, tuple[str, str, Mapping[str, str]]]
    )
    skipped: list[str] = field(default_factory=list[str])


def contract_bus(contract: DataPlaneContract | None) -> KafkaConnection | None:
    """The bus of the data plane's connection contract: in the cluster (Strimzi: SCRAM over
    TLS, the KafkaUsers' Secrets and the CA bundle in the agents' namespace) or MSK (IAM
    over TLS, the KEDA operator's IRSA role)."""
    bus = contract.event_bus if contract is not None else None
    return None if bus is None else bus.connection


def scaler_reads(bus: KafkaConnection | None, *, irsa: bool = True) -> str | None:
    """Why KEDA's kafka scaler cannot read `bus` (None: it can); `irsa`: whether the
    cluster has an OIDC provider for the operator's IAM role (MSK)."""
    if bus is None:
        return "the stack has no event bus"
    if bus.tls and bus.auth == "aws-msk-iam" and not irsa:
        return (
            "the kafka scaler signs MSK IAM tokens with an IRSA role, which needs the "
            "cluster's OIDC provider (cluster.mode: eks)"
        )
    if bus.tls and bus.auth in ("scram-sha-512", "aws-msk-iam"):
        return None
    return (
        "the kafka scaler is wired for SCRAM-SHA-512 (Strimzi) and IAM (MSK) over TLS only, "
        f"this bus uses auth {bus.auth} (tls {bus.tls})"
    )


def keda_operator_policy(bus: KafkaConnection, agents: Sequence[AgentSpec]) -> Any:
    """The KEDA operator's IAM policy JSON (pulumi.Input[str]) on an MSK bus."""
    return pulumi.Output.from_input(bus.cluster_arn).apply(
        lambda arn: kafka_store.msk_lag_reader_policy(str(arn), agents)
    )


def scaling_objects(
    config: StackConfig,
    agents: Sequence[AgentSpec],
    bus: KafkaConnection | None,
    *,
    irsa: bool = True,
) -> ScalingObjects:
    """ScaledObjects for every model and for `agents` (the agent types whose Deployments
    the composition declares), and the TriggerAuthentication the kafka scaler uses on
    `bus` (see `contract_bus`): the KafkaUser KEDA_USER on Strimzi, the operator's IAM role
    on MSK."""
    ns, spec = config.namespaces, config.autoscaling
    labels = config.cost_labels.as_labels()
    chains = {m.name: timeout_chain(m, config.timeouts) for m in config.models}
    out = ScalingObjects()
    for model in config.models:
        out.objects[f"model-{model.name}"] = model_scaled_object(
            model,
            namespace=ns.models,
            monitoring_namespace=ns.monitoring,
            spec=spec,
            chain=chains[model.name],
            labels=labels,
        )
    unreadable = scaler_reads(bus, irsa=irsa)
    for agent in agents:
        if agent.mode == "events" and unreadable is not None:
            out.skipped.append(f"agent {agent.name}: no ScaledObject, {unreadable}")
            continue
        on_bus = agent.mode == "events" and bus is not None
        out.objects[f"agent-{agent.name}"] = agent_scaled_object(
            agent,
            namespace=ns.agents,
            monitoring_namespace=ns.monitoring,
            spec=spec,
            chains=list(chains.values()),
            labels=labels,
            bootstrap=bus.bootstrap if on_bus and bus is not None else None,
            kafka_auth=kafka_auth_metadata(bus) if on_bus and bus is not None else None,
        )
    if bus is not None and unreadable is None and any(a.mode == "events" for a in agents):
        out.objects["kafka-auth"] = kafka_trigger_authentication(ns.agents, bus, labels)
        if bus.auth == "scram-sha-512":
            out.config_maps["kafka-username"] = (
                ns.agents,
                KAFKA_USERNAME_CONFIG_MAP,
                {"username": KEDA_USER},
            )
    return out


def scaling_network_policies(config: StackConfig) -> dict[str, dict[str, Any]]:
    """The openings KEDA's operator needs in closed namespaces (the Strimzi brokers)."""
    kafka = config.data_plane.kafka
    if kafka is None or kafka.mode != "strimzi" or not events_agents(config.agents):
        return {}
    return keda_network_policies(
        keda_namespace=config.autoscaling.keda.namespace,
        data_namespace=config.namespaces.data,
        kafka_pods={kafka_store.CLUSTER_LABEL: KAFKA_CLUSTER},
        kafka_port=kafka_store.TLS_PORT,
    )


def build_autoscaling(
    config: StackConfig,
    *,
    region: str,
    eks: ClusterNetworkAndEks | None,
    irsa: Irsa | None,
    agents: Sequence[AgentSpec],
    contract: DataPlaneContract | None,
    targets: Mapping[str, Sequence[pulumi.Resource]],
    on_cluster: pulumi.ResourceOptions,
) -> Keda:
    """`targets`: the Deployment (and what it needs) behind each ScaledObject suffix
    (`model-<name>`, `agent-<name>`)."""
    bus = contract_bus(contract)
    rendered = scaling_objects(config, agents, bus, irsa=irsa is not None)
    for note in rendered.skipped:
        pulumi.log.warn(note)
    operator_role: KedaOperatorRole | None = None
    if (
        bus is not None
        and bus.auth == "aws-msk-iam"
        and irsa is not None
        and "kafka-auth" in rendered.objects
    ):
        operator_role = KedaOperatorRole(
            irsa=irsa,
            policy=keda_operator_policy(bus, agents),
            description="KEDA's kafka scaler: describe the agents' MSK tasks topics and "
            "consumer groups (lag only)",
            tags=aws_tags(config.cost_labels.as_labels(), component="autoscaling"),
        )
    keda = Keda(
        "keda",
        KedaArgs(
            spec=config.autoscaling,
            cost_labels=config.cost_labels,
            objects=rendered.objects,
            config_maps=rendered.config_maps,
            targets=targets,
            operator_role=operator_role,
        ),
        opts=on_cluster,
    )
    if eks is not None and irsa is not None:
        ClusterAutoscaler(
            "cluster-autoscaler",
            ClusterAutoscalerArgs(
                cluster_name=eks.cluster_name,
                region=region,
                kubernetes_version=eks.kubernetes_version,
                chart_version=config.autoscaling.cluster_autoscaler_chart_version,
                irsa=irsa,
                cost_labels=config.cost_labels,
                priorities=expander_priorities(config.gpu_pools),
            ),
            opts=on_cluster,
        )
    else:
        pulumi.log.warn(
            "cluster.mode is 'existing': no Cluster Autoscaler is installed; the existing "
            "cluster's own node autoscaling decides whether replicas.max is reachable"
        )
    return keda
