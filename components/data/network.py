"""The stack's VPC facts a managed data store (MSK, ElastiCache) is placed into.

One type for every managed store: the composition builds it once, from the cluster
this stack creates (mode `eks`) or from `cluster.network` of an existing cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_aws as aws

from components.observe.selection import PROMETHEUS_POD_LABELS


@dataclass(frozen=True)
class ManagedNetwork:
    """Where a managed store lives and who may reach it."""

    vpc_id: pulumi.Input[str]
    private_subnet_ids: Sequence[pulumi.Input[str]]  # one per AZ, in AZ order
    # The security group of the cluster's nodes: the only source a store's group admits.
    node_security_group_id: pulumi.Input[str]
    # Customer-managed key for encryption at rest (brokers, replication groups, logs).
    kms_key_arn: pulumi.Input[str]


@dataclass(frozen=True)
class StorePlacement:
    """The subnet group and security group a managed store is created in."""

    subnet_group_name: pulumi.Output[str]
    security_group_id: pulumi.Output[str]


def place_node_only_store(
    name: str,
    network: ManagedNetwork,
    *,
    service: Literal["rds", "elasticache"],
    port: int,
    subnet_group_name: str | None,
    subnets_description: str,
    group_description: str,
    rule_description: str,
    tags: Mapping[str, str],
    opts: pulumi.ResourceOptions,
) -> StorePlacement:
    """A subnet group of the service over the private subnets (no route from the internet)
    and a security group whose only ingress is `port`/tcp from the cluster's node security
    group (with the VPC CNI, the pods' source too). Children `<name>-subnets`, `<name>-sg`
    and `<name>-from-nodes`; `subnet_group_name` None lets AWS name the subnet group."""
    tag_map = dict(tags)
    subnet_group = aws.rds.SubnetGroup if service == "rds" else aws.elasticache.SubnetGroup
    subnets = subnet_group(
        f"{name}-subnets",
        name=subnet_group_name,
        description=subnets_description,
        subnet_ids=list(network.private_subnet_ids),
        tags=tag_map,
        opts=opts,
    )
    group = aws.ec2.SecurityGroup(
        f"{name}-sg",
        vpc_id=network.vpc_id,
        description=group_description,
        tags=tag_map,
        opts=opts,
    )
    aws.vpc.SecurityGroupIngressRule(
        f"{name}-from-nodes",
        security_group_id=group.id,
        description=rule_description,
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        referenced_security_group_id=network.node_security_group_id,
        tags=tag_map,
        opts=opts,
    )
    return StorePlacement(subnet_group_name=subnets.name, security_group_id=group.id)


# --------------------------------------------------------------------------- NetworkPolicies


@dataclass(frozen=True)
class StoreAccess:
    """Who a store's pods are and which of their ports serve whom (pure facts, no objects)."""

    name: str  # resource suffix: kafka, redis, qdrant
    pods: Mapping[str, str]  # matchLabels of every pod of the store in the data namespace
    client_ports: tuple[int, ...]  # what agents dial
    metrics_ports: tuple[int, ...] = ()  # what Prometheus scrapes
    peer_ports: tuple[int, ...] = ()  # among the store's own pods (replication, consensus)
    # Pods of the data namespace that manage the store and dial its peer and client ports
    # (the Strimzi cluster operator; Qdrant's snapshot job).
    operator_pods: tuple[Mapping[str, str], ...] = ()
    # Pods that need HTTPS out of the cluster network: the Kubernetes API (Strimzi's
    # operator, its broker init containers and entity operator) or S3 (snapshots).
    https_egress_pods: tuple[Mapping[str, str], ...] = ()


def _ns(namespace: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}


def _tcp(ports: Sequence[int]) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def data_network_policies(
    *,
    data_namespace: str,
    agents_namespace: str,
    monitoring_namespace: str,
    stores: Sequence[StoreAccess],
) -> dict[str, dict[str, Any]]:
    """NetworkPolicies (resource suffix -> namespace, name, spec) that open the data
    namespace, closed by default-deny, to exactly: the agents on each store's client ports,
    the monitoring namespace's Prometheus pods on its metrics ports, a store's own pods and
    operators among themselves, and HTTPS out for the pods that call the Kubernetes API or
    S3. The agents' namespace gets the matching egress. cert-manager is not admitted
    anywhere: it writes Secrets through the API server and never dials a store."""
    policies: dict[str, dict[str, Any]] = {}
    for store in stores:
        pods = {"matchLabels": dict(store.pods)}
        members = [{"podSelector": pods}] + [
            {"podSelector": {"matchLabels": dict(o)}} for o in store.operator_pods
        ]
        internal = sorted({*store.peer_ports, *store.client_ports})
        ingress: list[dict[str, Any]] = [
            {"from": [_ns(agents_namespace)], "ports": _tcp(store.client_ports)}
        ]
        if store.metrics_ports:
            prometheus = {
                **_ns(monitoring_namespace),
                "podSelector": {"matchLabels": dict(PROMETHEUS_POD_LABELS)},
            }
            ingress.append({"from": [prometheus], "ports": _tcp(store.metrics_ports)})
        if store.peer_ports or store.operator_pods:
            ingress.append({"from": members, "ports": _tcp(internal)})
        policies[f"data-{store.name}-ingress"] = {
            "namespace": data_namespace,
            "name": f"allow-{store.name}-clients",
            "spec": {"podSelector": pods, "policyTypes": ["Ingress"], "ingress": ingress},
        }
        if store.peer_ports or store.operator_pods:
            for i, source in enumerate(
                [pods, *({"matchLabels": dict(o)} for o in store.operator_pods)]
            ):
                policies[f"data-{store.name}-internal-egress-{i}"] = {
                    "namespace": data_namespace,
                    "name": f"allow-{store.name}-internal-{i}",
                    "spec": {
                        "podSelector": source,
                        "policyTypes": ["Egress"],
                        "egress": [{"to": [{"podSelector": pods}], "ports": _tcp(internal)}],
                    },
                }
        for i, source in enumerate(store.https_egress_pods):
            policies[f"data-{store.name}-https-egress-{i}"] = {
                "namespace": data_namespace,
                "name": f"allow-{store.name}-https-{i}",
                "spec": {
                    "podSelector": {"matchLabels": dict(source)},
                    "policyTypes": ["Egress"],
                    "egress": [{"ports": _tcp([443])}],
                },
            }
        policies[f"agents-to-{store.name}"] = {
            "namespace": agents_namespace,
            "name": f"allow-agents-to-{store.name}",
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{**_ns(data_namespace), "podSelector": pods}],
                        "ports": _tcp(store.client_ports),
                    }
                ],
            },
        }
    return policies
