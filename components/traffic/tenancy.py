"""Namespaces for models, agents and data stores, each closed by a default-deny NetworkPolicy,
and the monitoring namespace.

Traffic that is allowed is listed explicitly: DNS for everyone, the agents
namespace into the model servers' port, the monitoring namespace's Prometheus to the
model servers' merged-metrics port (vLLM's /metrics through the Istio agent), and model
servers out on 443 for weights (S3 or the Hub) and for STS (IRSA). Each agent type's own
openings come from `agent_network_policies`: out to its one model's port, in from
Prometheus on the merged-metrics port, and for http agents in from the agents namespace.
The monitoring namespace is not closed by default: its Prometheus scrapes the kubelets,
the API server and host-network exporters on every node, and the API server calls its
operator's admission webhook. The data stores' own openings come in as
`extra_policies` (rendered by components/data/network.py from the stores that exist).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pulumi
import pulumi_kubernetes as k8s

from components.agents.spec import (
    AGENT_COMPONENT,
    WORKER_PORT,
    AgentSpec,
    type_selector,
    workload_name,
)
from components.observe.selection import PROMETHEUS_POD_LABELS
from components.specs import CostLabels, Namespaces
from components.traffic.istio_chart import INJECTION_LABEL, MERGED_METRICS_PORT
from components.traffic.quotas import TeamSpec, limit_range, quota_hard, team_namespace

ROLE_LABEL = "swarmstack.io/role"
TEAM_LABEL = "swarmstack.io/team"
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
        **namespace_selector(ns.monitoring),
        "podSelector": {"matchLabels": dict(PROMETHEUS_POD_LABELS)},
    }


def namespace_selector(namespace: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}


# Egress to the cluster DNS, which every closed namespace allows.
DNS_EGRESS: dict[str, Any] = {
    "to": [
        {
            **namespace_selector("kube-system"),
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}
MODEL_PODS: dict[str, Any] = {
    "matchLabels": {"app.kubernetes.io/component": MODEL_SERVER_COMPONENT}
}


def network_policies(ns: Namespaces) -> dict[str, dict[str, Any]]:
    """NetworkPolicy specs by resource suffix; pure so it can be read and tested alone."""
    dns = DNS_EGRESS
    model_pods = MODEL_PODS
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
                    "from": [namespace_selector(ns.agents)],
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
    return policies


def model_server_pods(model: str) -> dict[str, Any]:
    """One model's server pods (its `app.kubernetes.io/name` is the model's name)."""
    return {
        "matchLabels": {
            "app.kubernetes.io/name": model,
            "app.kubernetes.io/component": MODEL_SERVER_COMPONENT,
        }
    }


def agent_network_policies(
    ns: Namespaces,
    agents: Sequence[AgentSpec],
    gateway: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Each agent type's openings in the agents namespace (closed by default-deny): out to
    its own model's API port and nothing else of the models namespace (with a gateway:
    out to the gateway's pods, given as `{"pods": selector, "port": port}`, and to no
    model), in from Prometheus on the worker port (/metrics), and, for an http agent, in
    from the agents namespace on the worker port. Its stores' openings come with the stores
    (components/data/network.py); DNS is open to every pod."""
    policies: dict[str, dict[str, Any]] = {}
    worker_port = [{"protocol": "TCP", "port": WORKER_PORT}]
    for agent in agents:
        pods = {"matchLabels": type_selector(agent)}
        if gateway is not None:
            policies[f"agents-{agent.name}-to-gateway"] = {
                "namespace": ns.agents,
                "name": f"allow-{workload_name(agent)}-to-gateway",
                "spec": {
                    "podSelector": pods,
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            "to": [{"podSelector": {"matchLabels": dict(gateway["pods"])}}],
                            "ports": [{"protocol": "TCP", "port": gateway["port"]}],
                        }
                    ],
                },
            }
        else:
            policies[f"agents-{agent.name}-to-model"] = {
                "namespace": ns.agents,
                "name": f"allow-{workload_name(agent)}-to-{agent.model}",
                "spec": {
                    "podSelector": pods,
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            "to": [
                                {
                                    **namespace_selector(ns.models),
                                    "podSelector": model_server_pods(agent.model),
                                }
                            ],
                            "ports": [{"protocol": "TCP", "port": MODEL_PORT}],
                        }
                    ],
                },
            }
        if agent.mode == "http":
            policies[f"agents-{agent.name}-ingress"] = {
                "namespace": ns.agents,
                "name": f"allow-clients-to-{workload_name(agent)}",
                "spec": {
                    "podSelector": pods,
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {"from": [{"podSelector": {}}], "ports": worker_port},
                    ],
                },
            }
    if agents:
        policies["agents-allow-prometheus"] = {
            "namespace": ns.agents,
            "name": "allow-prometheus-to-agents",
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": AGENT_COMPONENT}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [prometheus_peer(ns)],
                        "ports": [{"protocol": "TCP", "port": MERGED_METRICS_PORT}],
                    }
                ],
            },
        }
    return policies


# --------------------------------------------------------------------------- tenant teams
#
# A team's namespace runs restricted pods only and denies all traffic but DNS. It is
# outside the mesh, and the model servers accept only mTLS from the agent types' service
# accounts, so a team's workloads reach models and stores through the stack's agents
# (and, with a gateway, through its keys), never directly.


def team_quota(team: TeamSpec) -> dict[str, str]:
    return quota_hard(team.quota.requests(), team.quota.pods)


def team_limit_range(team: TeamSpec) -> dict[str, Any]:
    return limit_range(team.default_cpu, team.default_memory_mib)


def team_policies(teams: Sequence[TeamSpec], ns: Namespaces) -> dict[str, dict[str, Any]]:
    """NetworkPolicy specs by resource suffix, as `tenancy.network_policies` gives them."""
    policies: dict[str, dict[str, Any]] = {}
    for team in teams:
        name = team_namespace(team)
        policies[f"team-{team.name}-default-deny"] = {
            "namespace": name,
            "name": "default-deny",
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        }
        policies[f"team-{team.name}-allow-dns"] = {
            "namespace": name,
            "name": "allow-dns",
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [DNS_EGRESS]},
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
    # ResourceQuota `spec.hard` of the stack's namespaces, by role (models, agents).
    quotas: Mapping[str, Mapping[str, str]] = field(default_factory=dict[str, Mapping[str, str]])
    teams: Sequence[TeamSpec] = ()


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
        for team in args.teams:
            self.namespaces[f"team-{team.name}"] = k8s.core.v1.Namespace(
                f"{name}-team-{team.name}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=team_namespace(team),
                    labels={**namespace_labels("team", args.cost_labels), TEAM_LABEL: team.name},
                ),
                opts=child,
            )
        namespace_of = {
            ns.models: self.namespaces["models"],
            ns.agents: self.namespaces["agents"],
            ns.data: self.namespaces["data"],
            ns.monitoring: self.namespaces["monitoring"],
            **{team_namespace(t): self.namespaces[f"team-{t.name}"] for t in args.teams},
        }
        quotas = {
            **{getattr(ns, role): (role, hard) for role, hard in args.quotas.items()},
            **{team_namespace(t): (f"team-{t.name}", team_quota(t)) for t in args.teams},
        }
        for ns_name, (suffix, hard) in quotas.items():
            k8s.core.v1.ResourceQuota(
                f"{name}-{suffix}-quota",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name="swarmstack-quota", namespace=ns_name, labels=args.cost_labels.as_labels()
                ),
                spec={"hard": dict(hard)},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace_of[ns_name]]),
            )
        for team in args.teams:
            k8s.core.v1.LimitRange(
                f"{name}-team-{team.name}-limits",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name="container-defaults",
                    namespace=team_namespace(team),
                    labels=args.cost_labels.as_labels(),
                ),
                spec=cast(Any, team_limit_range(team)),  # wire form, sent as written
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=[namespace_of[team_namespace(team)]]
                ),
            )
        policies = {
            **network_policies(ns),
            **team_policies(args.teams, ns),
            **args.extra_policies,
        }
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
