"""Namespaces for models, agents and data stores, each closed by a default-deny NetworkPolicy,
and the monitoring namespace.

Traffic that is allowed is listed explicitly: DNS for everyone, agents to the
model servers' port, the monitoring namespace's Prometheus to the model servers'
merged-metrics port (vLLM's /metrics through the Istio agent), and model servers
out on 443 for weights (S3 or the Hub) and for STS (IRSA). The monitoring namespace
is not closed by default: its Prometheus scrapes the kubelets, the API server and
host-network exporters on every node, and the API server calls its operator's
admission webhook. The data
stores' own openings come in as `extra_policies` (rendered by components/data/network.py
from the stores that exist).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.observe.selection import PROMETHEUS_POD_LABELS
from components.specs import CostLabels, Namespaces
from components.traffic.istio_chart import INJECTION_LABEL, MERGED_METRICS_PORT

ROLE_LABEL = "swarmstack.io/role"
# Namespaces whose pods get an Istio sidecar; the data stores keep their own TLS outside.
MESHED_ROLES = ("models", "agents")
MODEL_SERVER_COMPONENT = "model-server"
MODEL_PORT = 8000


def namespace_labels(role: str, cost_labels: CostLabels) -> dict[str, str]:
    if role == "monitoring":
        # The node exporter DaemonSet reads the host (hostNetwork, hostPID, hostPath), which
        # only the privileged level admits; every other pod of the release is restricted,
        # and the restricted level still warns and audits what goes beyond it.
        security = {
            "pod-security.kubernetes.io/enforce": "privileged",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/audit": "restricted",
        }
    else:
        # Model servers and agents run as restricted pods; nothing here needs more.
        security = {"pod-security.kubernetes.io/enforce": "restricted"}
    return {
        **cost_labels.as_labels(),
        ROLE_LABEL: role,
        "app.kubernetes.io/part-of": "swarmstack",
        INJECTION_LABEL: "enabled" if role in MESHED_ROLES else "disabled",
        **security,
        "pod-security.kubernetes.io/enforce-version": "latest",
    }


def prometheus_peer(ns: Namespaces) -> dict[str, Any]:
    """The monitoring namespace's Prometheus pods, as a NetworkPolicy peer."""
    return {
        **_namespace_selector(ns.monitoring),
        "podSelector": {"matchLabels": dict(PROMETHEUS_POD_LABELS)},
    }


def _namespace_selector(namespace: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}


def network_policies(ns: Namespaces) -> dict[str, dict[str, Any]]:
    """NetworkPolicy specs by resource suffix; pure so it can be read and tested alone."""
    dns = {
        "to": [
            {
                **_namespace_selector("kube-system"),
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    model_pods = {"matchLabels": {"app.kubernetes.io/component": MODEL_SERVER_COMPONENT}}
    policies: dict[str, dict[str, Any]] = {}
    for role, name in (("models", ns.models), ("agents", ns.agents), ("data", ns.data)):
        policies[f"{role}-default-deny"] = {
            "namespace": name,
            "name": "default-deny",
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        }
        policies[f"{role}-allow-dns"] = {
            "namespace": name,
            "name": "allow-dns",
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [dns]},
        }
    policies["models-allow-agents"] = {
        "namespace": ns.models,
        "name": "allow-agents-to-model-servers",
        "spec": {
            "podSelector": model_pods,
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [_namespace_selector(ns.agents)],
                    "ports": [{"protocol": "TCP", "port": MODEL_PORT}],
                }
            ],
        },
    }
    # Model servers are meshed (STRICT mTLS on the API port): Prometheus, outside the mesh,
    # scrapes Istio's merged metrics port (vLLM's /metrics merged with Envoy's) and nothing
    # else (components/traffic/mesh.py).
    policies["models-allow-prometheus"] = {
        "namespace": ns.models,
        "name": "allow-prometheus-to-model-servers",
        "spec": {
            "podSelector": model_pods,
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [prometheus_peer(ns)],
                    "ports": [{"protocol": "TCP", "port": MERGED_METRICS_PORT}],
                }
            ],
        },
    }
    policies["models-allow-weights"] = {
        "namespace": ns.models,
        "name": "allow-model-servers-https-egress",
        "spec": {
            "podSelector": model_pods,
            "policyTypes": ["Egress"],
            "egress": [{"ports": [{"protocol": "TCP", "port": 443}]}],
        },
    }
    policies["agents-allow-models"] = {
        "namespace": ns.agents,
        "name": "allow-agents-to-model-servers",
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{**_namespace_selector(ns.models), "podSelector": model_pods}],
                    "ports": [{"protocol": "TCP", "port": MODEL_PORT}],
                }
            ],
        },
    }
    return policies


@dataclass(frozen=True)
class TenancyArgs:
    namespaces: Namespaces
    cost_labels: CostLabels
    # More NetworkPolicies (suffix -> namespace, name, spec) in these namespaces.
    extra_policies: Mapping[str, Mapping[str, Any]] = field(
        default_factory=dict[str, Mapping[str, Any]]
    )


class Tenancy(pulumi.ComponentResource):
    """The namespaces swarmstack deploys into, closed by default."""

    namespaces: Mapping[str, k8s.core.v1.Namespace]
    models_namespace: pulumi.Output[str]
    agents_namespace: pulumi.Output[str]
    data_namespace: pulumi.Output[str]
    monitoring_namespace: pulumi.Output[str]

    def __init__(
        self, name: str, args: TenancyArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("swarmstack:tenancy:Tenancy", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns = args.namespaces
        self.namespaces = {
            role: k8s.core.v1.Namespace(
                f"{name}-{role}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=ns_name, labels=namespace_labels(role, args.cost_labels)
                ),
                opts=child,
            )
            for role, ns_name in (
                ("models", ns.models),
                ("agents", ns.agents),
                ("data", ns.data),
                ("monitoring", ns.monitoring),
            )
        }
        self.models_namespace = self.namespaces["models"].metadata.apply(lambda m: m.name or "")
        self.agents_namespace = self.namespaces["agents"].metadata.apply(lambda m: m.name or "")
        self.data_namespace = self.namespaces["data"].metadata.apply(lambda m: m.name or "")
        self.monitoring_namespace = self.namespaces["monitoring"].metadata.apply(
            lambda m: m.name or ""
        )
        namespace_of = {
            ns.models: self.namespaces["models"],
            ns.agents: self.namespaces["agents"],
            ns.data: self.namespaces["data"],
            ns.monitoring: self.namespaces["monitoring"],
        }
        policies = {**network_policies(ns), **args.extra_policies}
        for suffix, policy in policies.items():
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{suffix}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=policy["name"],
                    namespace=policy["namespace"],
                    labels=args.cost_labels.as_labels(),
                ),
                spec=policy["spec"],
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=[namespace_of[policy["namespace"]]]
                ),
            )
        self.register_outputs(
            {
                "modelsNamespace": self.models_namespace,
                "agentsNamespace": self.agents_namespace,
                "dataNamespace": self.data_namespace,
                "monitoringNamespace": self.monitoring_namespace,
            }
        )
