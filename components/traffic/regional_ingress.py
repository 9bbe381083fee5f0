"""The Istio ingress gateway that carries a region's internal NLB into the mesh.

The model gateway's sidecar accepts only mTLS (STRICT PeerAuthentication), and the NLB
sends plain TCP from outside the mesh, so the NLB does not reach the model gateway's pods:
it reaches this ingress gateway, an Envoy of the same Istio release as istiod (`router`
mode, injected with Istio's `gateway` template), which terminates the clients' plain HTTP
and forwards to the model gateway over mTLS with its own workload identity
(`ingress_principal`), the one the model gateway's AuthorizationPolicy admits besides the
agents.

The gateway's pods are reached through a NodePort Service (`NODE_PORT`): the NLB's target
group is of type `instance` on that port and the system node group's Auto Scaling group is
attached to it (components/traffic/regional_edge.py), so targets are registered by EC2 Auto
Scaling as nodes come and go, without the AWS Load Balancer Controller. kube-proxy carries a
node's NodePort to a ready ingress pod on any node (externalTrafficPolicy Cluster).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import pulumi
import pulumi_kubernetes as k8s

from components.gateway import proxy as gateway_proxy
from components.pod_security import restricted_container, restricted_pod
from components.specs import CostLabels, ImageRef, Namespaces
from components.traffic.istio_chart import (
    INJECTION_LABEL,
    ISTIO_NAMESPACE,
    ISTIOD_POD_LABELS,
    ISTIOD_XDS_PORT,
)
from components.traffic.tenancy import DNS_EGRESS, namespace_selector

TYPE_TOKEN = "swarmstack:traffic:RegionalIngress"
NAMESPACE = "gateway-ingress"
NAME = "gateway-ingress"
PROXY_UID = 1337  # the proxyv2 image's istio-proxy user
LISTEN_PORT = 8080  # the gateway's HTTP listener (unprivileged: restricted pods bind no port <1024)
STATUS_PORT = 15021  # pilot-agent's health endpoint on every Istio proxy
READY_PATH = "/healthz/ready"
# The NodePort the NLB's instance targets receive client traffic on (the Service's fixed
# nodePort, inside the default 30000-32767 range).
NODE_PORT = 30400
# Two, spread over zones: a rollout or a lost node keeps the region serving. Model calls
# are few and long, so two Envoys carry the region's peak many times over.
REPLICAS = 2
NETWORKING = "networking.istio.io/v1"


def selector_labels() -> dict[str, str]:
    """The ingress pods' labels; `istio` is what the Gateway's selector matches."""
    return {"app.kubernetes.io/name": NAME, "istio": NAME}


def ingress_principal() -> str:
    """The ingress gateway's workload identity (SPIFFE, trust domain cluster.local)."""
    return f"cluster.local/ns/{NAMESPACE}/sa/{NAME}"


def namespace_labels(cost_labels: CostLabels) -> dict[str, str]:
    return {
        **cost_labels.as_labels(),
        "app.kubernetes.io/part-of": "swarmstack",
        # istiod's injector webhooks skip a namespace labelled `disabled`; the pod picks
        # the `gateway` template by its own annotation.
        INJECTION_LABEL: "enabled",
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }


def pod_template(image: ImageRef, cost_labels: CostLabels) -> dict[str, Any]:
    """The ingress pod. Istio's injector fills the `istio-proxy` container from its
    `gateway` template (args `proxy router`, the bootstrap volumes); what is declared here
    overrides the template: the image pinned like every other, the restricted security
    context, resources and the readiness probe on the agent's status port."""
    container: dict[str, Any] = {
        "name": "istio-proxy",
        "image": image.reference,
        "ports": [
            {"name": "http", "containerPort": LISTEN_PORT, "protocol": "TCP"},
            {"name": "status-port", "containerPort": STATUS_PORT, "protocol": "TCP"},
            {"name": "http-envoy-prom", "containerPort": 15090, "protocol": "TCP"},
        ],
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"memory": "1Gi"},
        },
        "readinessProbe": {
            "httpGet": {"path": READY_PATH, "port": STATUS_PORT},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": READY_PATH, "port": STATUS_PORT},
            "initialDelaySeconds": 10,
            "periodSeconds": 15,
            "failureThreshold": 4,
        },
        "securityContext": restricted_container(),
    }
    return {
        "metadata": {
            "labels": {**selector_labels(), **cost_labels.as_labels()},
            "annotations": {
                "sidecar.istio.io/inject": "true",
                "inject.istio.io/templates": "gateway",
            },
        },
        "spec": {
            "serviceAccountName": NAME,
            # The proxy reads its token through the template's projected istio-token volume.
            "automountServiceAccountToken": False,
            "securityContext": restricted_pod(PROXY_UID),
            "terminationGracePeriodSeconds": 30,
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": selector_labels()},
                }
            ],
            "containers": [container],
        },
    }


def service_spec() -> dict[str, Any]:
    """NodePort on every node for the NLB's instance targets (client traffic only: the NLB
    health check goes through the same port to the model gateway's liveness path)."""
    return {
        "type": "NodePort",
        "externalTrafficPolicy": "Cluster",
        "selector": selector_labels(),
        "ports": [
            {
                "name": "http",
                "port": gateway_proxy.PORT,
                "targetPort": LISTEN_PORT,
                "nodePort": NODE_PORT,
                "protocol": "TCP",
            }
        ],
    }


def gateway_spec() -> dict[str, Any]:
    """The Istio Gateway on the ingress pods: plain HTTP from the NLB (README
    "Multi-cluster" says why not TLS), any host (the global records and the NLB's own
    name all reach it)."""
    return {
        "selector": {"istio": NAME},
        "servers": [
            {
                "port": {"number": LISTEN_PORT, "name": "http", "protocol": "HTTP"},
                "hosts": ["*"],
            }
        ],
    }


def virtual_service_spec(ns: Namespaces, route_timeout_s: int) -> dict[str, Any]:
    """Every request on the Gateway to the model gateway's Service, with the timeout the
    agents' route to it has (no retries: a generation is not safe to repeat)."""
    host = gateway_proxy.service_host(ns.agents)
    return {
        "hosts": ["*"],
        "gateways": [NAME],
        "exportTo": ["."],
        "http": [
            {
                "name": "model-gateway",
                "route": [{"destination": {"host": host, "port": {"number": gateway_proxy.PORT}}}],
                "timeout": f"{route_timeout_s}s",
                "retries": {"attempts": 0},
            }
        ],
    }


def destination_rule_spec(ns: Namespaces) -> dict[str, Any]:
    """mTLS to the model gateway, stated rather than left to auto mTLS."""
    return {
        "host": gateway_proxy.service_host(ns.agents),
        "exportTo": ["."],
        "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
    }


def network_policies(
    ns: Namespaces, client_cidrs: Sequence[str], vpc_cidr: str
) -> dict[str, dict[str, Any]]:
    """The ingress namespace is closed like the others; its pods take the clients' CIDRs on
    the listener (the NLB preserves the client's address) and this VPC's (the NLB's health
    checks, and kube-proxy's hop from another node, come from addresses of this VPC), and
    reach the model gateway's pods, istiod and DNS. The agents' namespace admits the
    ingress pods at the model gateway."""
    sources = list(dict.fromkeys([*client_cidrs, vpc_cidr]))
    ingress_pods = {"matchLabels": selector_labels()}
    istiod = {
        "to": [
            {
                **namespace_selector(ISTIO_NAMESPACE),
                "podSelector": {"matchLabels": dict(ISTIOD_POD_LABELS)},
            }
        ],
        "ports": [{"protocol": "TCP", "port": ISTIOD_XDS_PORT}],
    }
    return {
        "ingress-default-deny": {
            "namespace": NAMESPACE,
            "name": "default-deny",
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        },
        "ingress-clients": {
            "namespace": NAMESPACE,
            "name": f"allow-clients-to-{NAME}",
            "spec": {
                "podSelector": ingress_pods,
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"ipBlock": {"cidr": c}} for c in sources],
                        "ports": [{"protocol": "TCP", "port": LISTEN_PORT}],
                    }
                ],
            },
        },
        "ingress-egress": {
            "namespace": NAMESPACE,
            "name": f"allow-{NAME}-to-model-gateway",
            "spec": {
                "podSelector": ingress_pods,
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                **namespace_selector(ns.agents),
                                "podSelector": {"matchLabels": gateway_proxy.selector_labels()},
                            }
                        ],
                        "ports": [{"protocol": "TCP", "port": gateway_proxy.PORT}],
                    },
                    istiod,
                    DNS_EGRESS,
                ],
            },
        },
        "agents-allow-ingress": {
            "namespace": ns.agents,
            "name": f"allow-{NAME}-to-model-gateway",
            "spec": {
                "podSelector": {"matchLabels": gateway_proxy.selector_labels()},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{**namespace_selector(NAMESPACE), "podSelector": ingress_pods}],
                        "ports": [{"protocol": "TCP", "port": gateway_proxy.PORT}],
                    }
                ],
            },
        },
    }


@dataclass(frozen=True)
class RegionalIngressArgs:
    image: ImageRef
    namespaces: Namespaces
    client_cidrs: Sequence[str]
    vpc_cidr: str
    route_timeout_s: int
    cost_labels: CostLabels


class RegionalIngress(pulumi.ComponentResource):
    """The ingress namespace, its gateway pods, NodePort Service, Istio Gateway, route and
    NetworkPolicies (the agents' namespace's opening to the model gateway included)."""

    def __init__(
        self, name: str, args: RegionalIngressArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        labels = args.cost_labels.as_labels()
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=NAMESPACE, labels=namespace_labels(args.cost_labels)
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        inside = pulumi.ResourceOptions(parent=self, depends_on=[namespace])

        def meta(object_name: str, ns: str = NAMESPACE) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=object_name, namespace=ns, labels=labels)

        k8s.core.v1.ServiceAccount(
            f"{name}-account",
            metadata=meta(NAME),
            automount_service_account_token=False,
            opts=inside,
        )
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta(NAME),
            spec=cast(
                Any,
                {
                    "replicas": REPLICAS,
                    "selector": {"matchLabels": selector_labels()},
                    "strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                    "template": pod_template(args.image, args.cost_labels),
                },
            ),
            opts=inside,
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=meta(NAME),
            spec=cast(Any, {"minAvailable": 1, "selector": {"matchLabels": selector_labels()}}),
            opts=inside,
        )
        k8s.core.v1.Service(
            f"{name}-service",
            metadata=meta(NAME),
            spec=cast(Any, service_spec()),
            opts=inside,
        )
        for kind, api, spec in (
            ("Gateway", NETWORKING, gateway_spec()),
            (
                "VirtualService",
                NETWORKING,
                virtual_service_spec(args.namespaces, args.route_timeout_s),
            ),
            ("DestinationRule", NETWORKING, destination_rule_spec(args.namespaces)),
        ):
            k8s.apiextensions.CustomResource(
                f"{name}-{kind.lower()}",
                api_version=api,
                kind=kind,
                metadata=meta(NAME),
                spec=spec,
                opts=inside,
            )
        for suffix, policy in network_policies(
            args.namespaces, args.client_cidrs, args.vpc_cidr
        ).items():
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{suffix}",
                metadata=meta(policy["name"], policy["namespace"]),
                spec=policy["spec"],
                opts=inside,
            )
        self.register_outputs({"namespace": NAMESPACE, "nodePort": NODE_PORT})
