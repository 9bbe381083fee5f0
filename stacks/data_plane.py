"""The data-plane part of the composition: cert-manager, the three stores, their contract.

Called by the composition's `build` with what the cluster gives; declares only what
`dataPlane` configures and returns the connection contract (references only).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.compute.cluster import ClusterNetworkAndEks
from components.compute.irsa import Irsa
from components.data import kafka as kafka_store
from components.data import qdrant as qdrant_store
from components.data import redis as redis_store
from components.data.certs import CA_BUNDLE_KEY, CA_BUNDLE_SECRET, CertManager, CertManagerArgs
from components.data.contract import DataPlaneContract, data_plane_contract
from components.data.kafka import EventBus, EventBusArgs, SecretKeyRef
from components.data.network import ManagedNetwork, StoreAccess, data_network_policies
from components.data.qdrant import VectorStore, VectorStoreArgs
from components.data.redis import SessionStore, SessionStoreArgs
from stacks.config import (
    QDRANT_API_KEY,
    QDRANT_READ_ONLY_API_KEY,
    REDIS_PASSWORD_KEY,
    StackConfig,
)

STRIMZI_OPERATOR_PODS = {"strimzi.io/kind": "cluster-operator"}
KAFKA_CONTROLLER_PORT = 9090  # KRaft controllers (Strimzi's fixed control-plane port)
KAFKA_REPLICATION_PORT = 9091  # brokers, entity operator, exporter (Strimzi's internal TLS)
KAFKA_METRICS_PORT = 9404  # jmx exporter and Kafka exporter


@dataclass(frozen=True)
class DataSecrets:
    """The Pulumi secrets of the stores the config enables (None: that store is off)."""

    redis_password: pulumi.Output[str] | None
    qdrant_api_key: pulumi.Output[str] | None
    qdrant_read_only_api_key: pulumi.Output[str] | None


def read_secrets(config: StackConfig) -> DataSecrets:
    """The stores' Pulumi secrets (the program has refused a config that lacks one)."""
    stack_config = pulumi.Config()
    redis_on = config.data_plane.redis is not None
    qdrant_on = config.data_plane.qdrant is not None
    return DataSecrets(
        redis_password=stack_config.get_secret(REDIS_PASSWORD_KEY) if redis_on else None,
        qdrant_api_key=stack_config.get_secret(QDRANT_API_KEY) if qdrant_on else None,
        qdrant_read_only_api_key=(
            stack_config.get_secret(QDRANT_READ_ONLY_API_KEY) if qdrant_on else None
        ),
    )


def managed_network(config: StackConfig, eks: ClusterNetworkAndEks | None) -> ManagedNetwork | None:
    """The VPC facts for MSK/ElastiCache: the cluster built here, or `cluster.network`."""
    if eks is not None:
        return ManagedNetwork(
            vpc_id=eks.vpc_id,
            private_subnet_ids=list(eks.private_subnet_ids),
            node_security_group_id=eks.node_security_group_id,
            kms_key_arn=eks.kms_key_arn,
        )
    net = config.cluster.network
    if net is None:
        return None
    return ManagedNetwork(
        vpc_id=net.vpc_id,
        private_subnet_ids=list(net.private_subnet_ids),
        node_security_group_id=net.node_security_group_id,
        kms_key_arn=net.kms_key_arn,
    )


def store_access(config: StackConfig) -> list[StoreAccess]:
    """The in-cluster stores' pods and ports, for the data namespace's NetworkPolicies."""
    data, stores = config.data_plane, list[StoreAccess]()
    if data.kafka is not None and data.kafka.mode == "strimzi":
        kafka_pods = {kafka_store.CLUSTER_LABEL: "events"}
        stores.append(
            StoreAccess(
                name="kafka",
                pods=kafka_pods,
                client_ports=(kafka_store.TLS_PORT,),
                metrics_ports=(KAFKA_METRICS_PORT,),
                peer_ports=(KAFKA_CONTROLLER_PORT, KAFKA_REPLICATION_PORT),
                operator_pods=(STRIMZI_OPERATOR_PODS,),
                # The operator, the entity operator and the brokers' rack init container
                # call the Kubernetes API.
                https_egress_pods=(STRIMZI_OPERATOR_PODS, kafka_pods),
            )
        )
    if data.redis is not None and data.redis.mode == "inCluster":
        stores.append(
            StoreAccess(
                name="redis",
                pods=redis_store.selector_labels(),
                client_ports=(redis_store.PORT,),
                metrics_ports=(redis_store.EXPORTER_PORT,),
            )
        )
    if data.qdrant is not None:
        snapshot_pods = {"app.kubernetes.io/name": qdrant_store.SNAPSHOT_ACCOUNT}
        stores.append(
            StoreAccess(
                name="qdrant",
                pods=qdrant_store.selector_labels(),
                client_ports=(qdrant_store.HTTP_PORT, qdrant_store.GRPC_PORT),
                metrics_ports=(qdrant_store.HTTP_PORT,),  # /metrics on the HTTP port
                peer_ports=(qdrant_store.P2P_PORT,),
                operator_pods=(snapshot_pods,) if data.qdrant.snapshots else (),
                https_egress_pods=(snapshot_pods,) if data.qdrant.snapshots else (),
            )
        )
    return stores


def network_policies(config: StackConfig) -> dict[str, dict[str, object]]:
    ns = config.namespaces
    return {
        k: dict(v)
        for k, v in data_network_policies(
            data_namespace=ns.data,
            agents_namespace=ns.agents,
            monitoring_namespace=ns.monitoring,
            stores=store_access(config),
        ).items()
    }


def build_data_plane(
    config: StackConfig,
    *,
    stack: str,
    region: str,
    eks: ClusterNetworkAndEks | None,
    irsa: Irsa | None,
    secrets: DataSecrets,
    on_cluster: pulumi.ResourceOptions,
    buses: list[EventBus] | None = None,
) -> DataPlaneContract | None:
    """The stack's stores and the one contract agents connect through; the event bus is
    also appended to `buses` when given (a regional stack exports its MSK cluster)."""
    data, ns, labels = config.data_plane, config.namespaces, config.cost_labels
    if data.empty:
        return None
    network = managed_network(config, eks)
    needs_tls = (data.kafka is not None and data.kafka.mode == "strimzi") or any(
        s is not None and s.tls
        for s in (
            data.qdrant,
            data.redis if data.redis and data.redis.mode == "inCluster" else None,
        )
    )
    certs = (
        CertManager(
            "cert-manager",
            CertManagerArgs(stack=stack, cost_labels=labels, client_namespaces=[ns.agents]),
            opts=on_cluster,
        )
        if needs_tls
        else None
    )
    after_certs = pulumi.ResourceOptions.merge(
        on_cluster, pulumi.ResourceOptions(depends_on=[certs] if certs else [])
    )
    issuer = certs.issuer if certs else None

    bus_connection = None
    if data.kafka is not None:
        bus = EventBus(
            "event-bus",
            EventBusArgs(
                spec=data.kafka,
                agents=config.agents,
                namespace=ns.data,
                cost_labels=labels,
                network=network if data.kafka.mode == "msk" else None,
                region=region,
                topic_job_image=config.images.agent_worker,
                irsa=irsa,
                users_namespace=ns.agents,
                issuer=issuer,
                ca_bundle=SecretKeyRef(ns.agents, CA_BUNDLE_SECRET, CA_BUNDLE_KEY),
            ),
            opts=after_certs,
        )
        bus_connection = (bus.connection, data.kafka.mode)
        if buses is not None:
            buses.append(bus)

    sessions = None
    if data.redis is not None:
        assert secrets.redis_password is not None
        sessions = SessionStore(
            "session-store",
            SessionStoreArgs(
                spec=data.redis,
                namespace_name=ns.data,
                client_namespace=ns.agents,
                cost_labels=labels,
                password=secrets.redis_password,
                issuer=issuer,
                network=network if data.redis.mode == "elasticache" else None,
            ),
            opts=after_certs,
        ).connection

    vectors = None
    if data.qdrant is not None:
        assert secrets.qdrant_api_key is not None
        assert secrets.qdrant_read_only_api_key is not None
        vectors = VectorStore(
            "vector-store",
            VectorStoreArgs(
                spec=data.qdrant,
                namespace_name=ns.data,
                client_namespace=ns.agents,
                cost_labels=labels,
                api_key=secrets.qdrant_api_key,
                read_only_api_key=secrets.qdrant_read_only_api_key,
                issuer=issuer,
                irsa=irsa,
            ),
            opts=after_certs,
        ).connection

    return data_plane_contract(
        agents_namespace=ns.agents, kafka=bus_connection, redis=sessions, qdrant=vectors
    )
