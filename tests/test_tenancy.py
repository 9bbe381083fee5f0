"""Namespaces closed by default: default-deny plus the few allows model servers need."""

from __future__ import annotations

from components.specs import CostLabels, Namespaces
from components.traffic.tenancy import Tenancy, TenancyArgs, network_policies
from stacks.plan.recorder import run

LABELS = CostLabels(team="t", cost_center="c", environment="e")


def test_every_namespace_gets_default_deny_and_dns() -> None:
    policies = network_policies(Namespaces())
    for ns in ("swarmstack-models", "swarmstack-agents"):
        deny = [
            p for p in policies.values() if p["namespace"] == ns and p["name"] == "default-deny"
        ]
        assert deny[0]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        assert any(p["namespace"] == ns and p["name"] == "allow-dns" for p in policies.values())


def test_model_servers_accept_only_agents_on_their_port() -> None:
    policy = network_policies(Namespaces())["models-allow-agents"]["spec"]
    rule = policy["ingress"][0]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "swarmstack-agents"}}}
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]


def test_component_declares_namespaces_and_policies_with_cost_labels() -> None:
    capture = run(lambda: Tenancy("tenancy", TenancyArgs(Namespaces(), LABELS)))
    namespaces = capture.of_type("kubernetes:core/v1:Namespace")
    assert sorted(n.inputs["metadata"]["name"] for n in namespaces) == [
        "swarmstack-agents",
        "swarmstack-data",
        "swarmstack-models",
        "swarmstack-monitoring",
    ]
    for ns in namespaces:
        labels = ns.inputs["metadata"]["labels"]
        assert labels["cost-center"] == "c"
        # The monitoring namespace runs the node exporter (host network and paths).
        monitoring = ns.inputs["metadata"]["name"] == "swarmstack-monitoring"
        enforce = "privileged" if monitoring else "restricted"
        assert labels["pod-security.kubernetes.io/enforce"] == enforce
    policies = capture.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    # default deny + DNS in 3 namespaces; the agents namespace into the model servers,
    # Prometheus to the model servers, model servers' HTTPS egress. The monitoring namespace
    # has none; each agent type's own egress comes from agent_network_policies.
    assert len(policies) == 9
    component = capture.of_type("swarmstack:tenancy:Tenancy")[0]
    assert all(p.parent == component.urn for p in policies)
    ns_urns = {n.urn for n in namespaces}
    assert all(set(p.dependencies) & ns_urns for p in policies)
