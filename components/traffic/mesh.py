"""The service mesh: Istio in sidecar mode, and the traffic rules of every model and agent type.

Istio comes in as three pinned Helm releases (`base`: CRDs and the validation webhook;
`istiod`; `cni`: the node agent that redirects pod traffic). Sidecar mode, because ambient
applies L7 timeouts and retries only through waypoints, where VirtualService and
DestinationRule are not yet stable. The CNI node agent, because the models and agents
namespaces enforce restricted Pod Security, which refuses the NET_ADMIN `istio-init`
container; the node agent runs privileged in its own namespace (`istio-cni`), the one
exemption of the pack's `namespace-pod-security` rule it adds. Native sidecars are on, so
the proxy starts before the worker and stops after it: the worker's last checkpoint on
SIGTERM still reaches the session store through it.

The mesh covers the models and agents namespaces (`istio-injection: enabled`); the data
namespace stays outside, its stores speaking their own TLS, so operators, KEDA and the
exporters keep reaching them without a proxy. In the meshed namespaces:

- PeerAuthentication STRICT, namespace-wide: plaintext is refused on every port the proxy
  captures.
- Scraping: Prometheus runs outside the mesh and cannot present a mesh certificate, so it
  scrapes Istio's merged metrics on port 15020 (`/stats/prometheus`): the pilot-agent
  there serves the app's own metrics (read from the pod's `prometheus.io/*` annotations,
  which the injector moves into the agent) merged with Envoy's. Port 15020 is not
  captured by the proxy, so STRICT stays whole on the app port; a port exception would
  open the model API itself to plaintext. The monitors select pods on port 15020 and the
  NetworkPolicies admit Prometheus on that port and no other.
- Per model: a VirtualService whose route timeout is the timeout chain's model route
  (`components/traffic/timeouts.py`), retried only on connection-level failures before the
  request reaches vLLM (never on 5xx: a retry after generation started doubles the GPU
  work), with a per-try timeout equal to the route's, so no attempt is cut below the
  model's P99. A DestinationRule with ISTIO_MUTUAL, outlier detection that can never take
  the last replica out of load balancing, and connection limits (see `connection_limits`).
- Session affinity: the DestinationRule balances a model's replicas by consistent hashing
  (`ringHash`) on the session header the worker sends with every model call
  (`SESSION_HEADER`; the gateway forwards it, components/gateway/proxy_config.py), so a
  session's calls reach the replica holding its prefix cache while that replica is in
  rotation. Outlier detection still ejects a failing replica: it leaves the ring, and only
  the sessions that hashed to it move (to their next replica on the ring), the others stay.
  A call without the header goes to a random replica. With a canary, the route's weighted
  split picks the subset per call and the hash picks the replica inside it (the subsets
  inherit the rule's load balancing), so a session sticks to one replica of each version.
  Consistent hashing rather than the Gateway API Inference Extension's endpoint picker:
  it is one field of the rule the mesh already declares, in sidecar mode, with its
  timeouts, outlier detection and canaries unchanged; the picker (InferencePool, its own
  endpoint-picker Deployment, a Gateway in front of the models) scores replicas on their
  live queue and cache, which hashing cannot, but adds a hop and a controller per pool.
- Long SSE streams: istiod sets the sidecar listeners' stream idle timeout to 0 (disabled)
  at the pinned release, and DestinationRule `idleTimeout` only closes connections with no
  request in flight, so a stream lives until the route timeout. TCP keepalive on the
  connection pool finds a model pod that vanished mid-stream in about two minutes instead
  of at the route timeout.
- Canaries: a model with a canary gets DestinationRule subsets `stable` and `canary` (by
  `app.kubernetes.io/instance`) and its route splits `100 - weight` / `weight` between them.
  An http agent type with a canary gets the same for its Service (subsets by
  `app.kubernetes.io/name`, no timeout of its own); an events agent's canary has no route.
- AuthorizationPolicy: model servers accept calls only from the agent types' service
  accounts (`cluster.local/ns/<agents>/sa/agent-<name>`), on the model port.
- Egress: `outboundTrafficPolicy: REGISTRY_ONLY`. Each agent type may reach the external
  hosts its `egress` lists (a ServiceEntry each, and a Sidecar that shows that agent type's
  proxy only its own hosts, the models, the data stores and istiod); model servers reach
  the hosts their weights come from (S3 and STS, or the Hugging Face Hub). Agents on the
  stores AWS runs reach them through ServiceEntries too (`managed_egress`): the MSK
  brokers and STS (events agents, IAM auth through IRSA), ElastiCache (every agent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, field_validator

from components.agents.spec import (
    WORKER_PORT,
    AgentSpec,
    selector_labels,
    type_selector,
    workload_name,
)
from components.agents.spec import (
    canary_selector_labels as canary_selector_labels_of_agent,
)
from components.gateway import database as gateway_database
from components.gateway import proxy as gateway_proxy
from components.pod_security import runtime_default_seccomp
from components.serving.model_serving import canary_selector_labels
from components.serving.model_serving import selector_labels as selector_labels_of_model
from components.specs import (
    CostLabels,
    HubWeights,
    ModelSpec,
    Namespaces,
    Replicas,
    S3Weights,
    Spec,
)
from components.traffic import istio_chart
from components.traffic.istio_chart import (
    CHART_VERSION,
    CNI_NAMESPACE,
    ISTIO_NAMESPACE,
    ISTIOD_POD_LABELS,
    ISTIOD_XDS_PORT,
    ChartName,
)
from components.traffic.tenancy import MODEL_PORT, MODEL_SERVER_COMPONENT
from components.traffic.timeouts import TimeoutChain

NETWORKING = "networking.istio.io/v1"
SECURITY = "security.istio.io/v1"
CLUSTER_DOMAIN = "cluster.local"
# Envoy retry conditions that fire before the upstream has the request: a failed connect,
# an HTTP/2 stream the server refused, a reset before the request was sent.
SAFE_RETRY_ON = ("connect-failure", "refused-stream", "reset-before-request")
RETRY_ATTEMPTS = 2
CONNECT_TIMEOUT_S = 5
KEEPALIVE_TIME_S = 60
KEEPALIVE_INTERVAL_S = 15
KEEPALIVE_PROBES = 4
OUTLIER_CONSECUTIVE_5XX = 5
OUTLIER_INTERVAL_S = 10
OUTLIER_BASE_EJECTION_S = 30
ENVOY_DEFAULT_MAX_EJECTION_PERCENT = 10  # what Envoy uses when Istio leaves it unset
# The header the worker names its session in on every model call (the agent worker's
# agent_worker/model.py SESSION_HEADER; a test holds the two equal). It starts with `x-`
# so that the gateway forwards it (LiteLLM forwards a client's `x-` headers only).
SESSION_HEADER = "x-swarmstack-session-id"
# Virtual nodes of the hash ring (Envoy's default): enough for an even split of a model's
# replicas; a replica that leaves takes only its own share of the sessions with it.
RING_SIZE = 1024
STABLE, CANARY = "stable", "canary"  # DestinationRule subsets of a model with a canary
HUB_HOSTS = ("huggingface.co", "*.huggingface.co", "*.hf.co")


class ProxyResources(Spec):
    """What each injected sidecar requests (it counts against the namespace's quota)."""

    cpu: str = Field(default="100m", pattern=r"^[0-9]+(m)?$", description="CPU request.")
    memory_mib: int = Field(default=128, ge=32, le=4096, description="Memory request, MiB.")
    memory_limit_mib: int = Field(
        default=512, ge=64, le=8192, description="Memory limit, MiB (at least the request)."
    )


class MeshSpec(Spec):
    """The Istio service mesh (`swarmstack:mesh`)."""

    chart_version: str = Field(
        default=CHART_VERSION,
        description=f"Istio chart version (base, istiod, cni). Only {CHART_VERSION} is "
        "accepted: the Helm values swarmstack renders were checked against those charts.",
        json_schema_extra={"enum": [CHART_VERSION]},
    )
    repository: str = Field(default=istio_chart.REPOSITORY, description="Helm repository URL.")
    istiod_replicas: Replicas = Field(
        default_factory=lambda: Replicas(min=2, max=5),
        description="istiod autoscaling range; a minimum above 1 also gives it a "
        "PodDisruptionBudget.",
    )
    proxy: ProxyResources = Field(default_factory=ProxyResources, description="Sidecar resources.")

    @field_validator("chart_version")
    @classmethod
    def _checked_chart(cls, version: str) -> str:
        if version != CHART_VERSION:
            raise ValueError(
                f"{version!r} is not the Istio chart version swarmstack's Helm values were "
                f"checked against ({CHART_VERSION}); another version needs its charts read "
                "again and components/traffic/istio_chart.py updated first"
            )
        return version


# --------------------------------------------------------------------------- Helm values


def istio_values(spec: MeshSpec) -> dict[ChartName, dict[str, Any]]:
    """Helm values of the three charts, every key recorded in istio_chart.VALUE_KEYS."""
    proxy = spec.proxy
    return {
        "base": {"global": {"istioNamespace": ISTIO_NAMESPACE}},
        "istiod": {
            "global": {
                "istioNamespace": ISTIO_NAMESPACE,
                "proxy": {
                    "resources": {
                        "requests": {"cpu": proxy.cpu, "memory": f"{proxy.memory_mib}Mi"},
                        "limits": {"cpu": None, "memory": f"{proxy.memory_limit_mib}Mi"},
                    }
                },
            },
            "autoscaleMin": spec.istiod_replicas.min,
            "autoscaleMax": spec.istiod_replicas.max,
            "cni": {"enabled": True},
            "env": {"ENABLE_NATIVE_SIDECARS": "true"},
            "meshConfig": {
                "enablePrometheusMerge": True,
                "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
                "defaultConfig": {"holdApplicationUntilProxyStarts": True},
            },
        },
        "cni": {
            "chained": True,
            "cniBinDir": "/opt/cni/bin",
            "cniConfDir": "/etc/cni/net.d",
            "ambient": {"enabled": False},
            "seccompProfile": runtime_default_seccomp(),
        },
    }


# --------------------------------------------------------------------------- model traffic


def service_host(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}"


def seconds(value: int) -> str:
    return f"{value}s"


def model_route(model: ModelSpec, namespace: str, chain: TimeoutChain) -> dict[str, Any]:
    """The VirtualService spec of one model: the chain's route timeout, safe retries only."""
    host = service_host(model.name, namespace)
    timeout = seconds(chain.model_route_s)
    port = {"number": MODEL_PORT}
    route: list[dict[str, Any]] = [{"destination": {"host": host, "port": port}}]
    if model.canary is not None:
        weight = model.canary.weight
        route = [
            {"destination": {"host": host, "port": port, "subset": STABLE}, "weight": 100 - weight},
            {"destination": {"host": host, "port": port, "subset": CANARY}, "weight": weight},
        ]
    return {
        "hosts": [host],
        "exportTo": ["*"],
        "http": [
            {
                "name": "generate",
                "route": route,
                "timeout": timeout,
                "retries": {
                    "attempts": RETRY_ATTEMPTS,
                    "retryOn": ",".join(SAFE_RETRY_ON),
                    # Equal to the route's: no attempt is cut below the model's P99.
                    "perTryTimeout": timeout,
                },
            }
        ],
    }


@dataclass(frozen=True)
class EjectionLimits:
    max_ejection_percent: int  # 0: unset, Envoy's 10 % (which still ejects one host)
    min_health_percent: int  # below this share of healthy hosts Envoy ignores ejections


def ejection_limits(replicas: Replicas) -> EjectionLimits:
    """Outlier-detection limits under which the last replica is never out of rotation.

    `maxEjectionPercent` leaves at least one of `replicas.min` hosts; but Envoy always ejects
    one host whatever the percentage, so with a single replica only the panic threshold
    (`minHealthPercent`) protects it: once the healthy share falls below it Envoy balances
    over every host, ejected or not. It is at most 100/max, so that one healthy host of the
    largest pool does not trigger panic, and at least 1, so that none healthy always does.
    """
    low = max(replicas.min, 1)
    return EjectionLimits(
        max_ejection_percent=100 * (low - 1) // low,
        min_health_percent=max(1, 100 // max(replicas.max, 1)),
    )


def ejected_hosts(hosts: int, max_ejection_percent: int) -> int:
    """How many of `hosts` Envoy ejects at most: it ejects one more while the ejected share
    is below the limit (Envoy's default when 0), and always at least one."""
    limit = max_ejection_percent or ENVOY_DEFAULT_MAX_EJECTION_PERCENT
    ejected = 0
    while ejected < hosts and (ejected == 0 or ejected * 100 < limit * hosts):
        ejected += 1
    return ejected


def routable_hosts(hosts: int, limits: EjectionLimits) -> int:
    """Hosts that receive traffic once Envoy ejected all it may (panic mode: all of them)."""
    healthy = hosts - ejected_hosts(hosts, limits.max_ejection_percent)
    return hosts if healthy * 100 < limits.min_health_percent * hosts else healthy


@dataclass(frozen=True)
class ConnectionLimits:
    """Limits one calling proxy (each agent pod's sidecar) applies to one model's Service.

    They are per calling proxy, not per model: N agent pods may hold N times as much. So
    they stop one runaway client from queuing more than the model can ever serve (every
    sequence slot of its largest scale, `maxNumSeqs x replicas.max`), not the aggregate
    load, which vLLM queues and the autoscaler answers.
    """

    max_connections: int
    max_requests: int
    max_pending: int


def connection_limits(model: ModelSpec) -> ConnectionLimits:
    slots = model.vllm.max_num_seqs * model.replicas.max
    return ConnectionLimits(
        max_connections=slots, max_requests=slots, max_pending=model.vllm.max_num_seqs
    )


def model_destination_rule(model: ModelSpec, namespace: str) -> dict[str, Any]:
    limits = connection_limits(model)
    ejection = ejection_limits(model.replicas)
    outlier: dict[str, Any] = {
        "consecutive5xxErrors": OUTLIER_CONSECUTIVE_5XX,
        "interval": seconds(OUTLIER_INTERVAL_S),
        "baseEjectionTime": seconds(OUTLIER_BASE_EJECTION_S),
        "minHealthPercent": ejection.min_health_percent,
    }
    if ejection.max_ejection_percent > 0:
        outlier["maxEjectionPercent"] = ejection.max_ejection_percent
    subsets: dict[str, Any] = {}
    if model.canary is not None:
        subsets["subsets"] = [
            {"name": STABLE, "labels": selector_labels_of_model(model)},
            {"name": CANARY, "labels": canary_selector_labels(model)},
        ]
    return {
        **subsets,
        "host": service_host(model.name, namespace),
        "exportTo": ["*"],
        "trafficPolicy": {
            "tls": {"mode": "ISTIO_MUTUAL"},
            "connectionPool": {
                "tcp": {
                    "maxConnections": limits.max_connections,
                    "connectTimeout": seconds(CONNECT_TIMEOUT_S),
                    "tcpKeepalive": {
                        "time": seconds(KEEPALIVE_TIME_S),
                        "interval": seconds(KEEPALIVE_INTERVAL_S),
                        "probes": KEEPALIVE_PROBES,
                    },
                },
                "http": {
                    "http1MaxPendingRequests": limits.max_pending,
                    "http2MaxRequests": limits.max_requests,
                },
            },
            "loadBalancer": session_affinity(),
            "outlierDetection": outlier,
        },
    }


def session_affinity() -> dict[str, Any]:
    """A model's load balancing: consistent hashing on the worker's session header."""
    return {
        "consistentHash": {
            "httpHeaderName": SESSION_HEADER,
            "ringHash": {"minimumRingSize": RING_SIZE},
        }
    }


def agent_canary_route(agent: AgentSpec, namespace: str) -> dict[str, Any]:
    """The VirtualService of an http agent with a canary: its Service's calls split
    `100 - weight` / `weight` between the stable and canary subsets (no timeout or retry
    of its own: a session's stream is bounded by the worker and its model's chain)."""
    assert agent.canary is not None
    host = service_host(workload_name(agent), namespace)
    port = {"number": WORKER_PORT}
    weight = agent.canary.weight
    return {
        "hosts": [host],
        "exportTo": ["*"],
        "http": [
            {
                "name": "sessions",
                "route": [
                    {
                        "destination": {"host": host, "port": port, "subset": STABLE},
                        "weight": 100 - weight,
                    },
                    {
                        "destination": {"host": host, "port": port, "subset": CANARY},
                        "weight": weight,
                    },
                ],
            }
        ],
    }


def agent_canary_destination_rule(agent: AgentSpec, namespace: str) -> dict[str, Any]:
    """The subsets of an http agent with a canary, by each version's name label."""
    return {
        "host": service_host(workload_name(agent), namespace),
        "exportTo": ["*"],
        "subsets": [
            {"name": STABLE, "labels": selector_labels(agent)},
            {"name": CANARY, "labels": canary_selector_labels_of_agent(agent)},
        ],
        "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
    }


def agent_principal(agent: AgentSpec, agents_namespace: str) -> str:
    return f"{CLUSTER_DOMAIN}/ns/{agents_namespace}/sa/{workload_name(agent)}"


def account_principal(account: str, namespace: str) -> str:
    return f"{CLUSTER_DOMAIN}/ns/{namespace}/sa/{account}"


@dataclass(frozen=True)
class GatewayTraffic:
    """What the mesh needs to know of a model gateway: the agent-side route's timeout (the
    timeout chain's `gateway route` hop) and the managed APIs' hosts it calls."""

    route_s: int
    external_hosts: tuple[str, ...] = ()
    # False: the gateway's Postgres is an RDS instance (a managed store), not a pod.
    in_cluster_database: bool = True
    # Principals outside the agents' namespace the gateway admits as callers: a regional
    # stack's ingress gateway (components/traffic/regional_ingress.py).
    ingress_principals: tuple[str, ...] = ()


def model_callers_policy(
    agents: Sequence[AgentSpec], ns: Namespaces, gateway: GatewayTraffic | None = None
) -> dict[str, Any]:
    """AuthorizationPolicy: only agent service accounts call model servers, on the model
    port; with a gateway, only the gateway's. With no caller it admits nobody (an ALLOW
    policy without rules)."""
    principals = (
        [account_principal(gateway_proxy.NAME, ns.agents)]
        if gateway is not None
        else [agent_principal(a, ns.agents) for a in agents]
    )
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app.kubernetes.io/component": MODEL_SERVER_COMPONENT}},
        "action": "ALLOW",
    }
    if principals:
        spec["rules"] = [
            {
                "from": [{"source": {"principals": principals}}],
                "to": [{"operation": {"ports": [str(MODEL_PORT)]}}],
            }
        ]
    return spec


# --------------------------------------------------------------------------- egress


def external_service(
    hosts: Sequence[str],
    port: int = 443,
    port_name: str = "tls",
    protocol: Literal["TLS", "TCP"] = "TLS",
) -> dict[str, Any]:
    """A ServiceEntry for external hosts, passed through (no TLS origination, resolution
    NONE: the proxy forwards to the address the client resolved), visible only in its own
    namespace. TLS hosts are told apart by SNI; a TCP entry (a protocol that starts TLS
    inside itself, like Postgres) by its port."""
    return {
        "hosts": list(hosts),
        "exportTo": ["."],
        "location": "MESH_EXTERNAL",
        "resolution": "NONE",
        "ports": [{"number": port, "name": port_name, "protocol": protocol}],
    }


@dataclass(frozen=True)
class ManagedStores:
    """The stores AWS runs for the stack that agents dial (None: not used, or in-cluster)."""

    region: str
    msk_port: int | None = None  # the MSK brokers' client port (IAM auth: 9098)
    elasticache_port: int | None = None  # the ElastiCache TLS port (6379)
    rds_port: int | None = None  # the gateway's Postgres on RDS (5432)


@dataclass(frozen=True)
class ManagedEgress:
    """One managed service an agent's proxy must let out: its ServiceEntry's name, hosts
    and TLS port."""

    name: str
    hosts: tuple[str, ...]
    port: int
    port_name: str
    protocol: Literal["TLS", "TCP"] = "TLS"


def managed_egress(agent: AgentSpec, stores: ManagedStores | None) -> list[ManagedEgress]:
    """The managed services one agent type dials under REGISTRY_ONLY.

    - MSK (events agents): every broker is `b-<n>.<cluster>.<id>.c<n>.kafka.<region>.
      amazonaws.com`, on 9098 for IAM auth inside AWS, so one wildcard on the region's
      kafka domain covers the bootstrap and every broker it hands out; with IAM auth the
      worker's IRSA credentials come from the regional STS endpoint on 443 (the EKS pod
      identity webhook sets `AWS_STS_REGIONAL_ENDPOINTS=regional`).
    - ElastiCache (every agent: the session store): endpoints carry an abbreviated region
      code (`...use1.cache.amazonaws.com`) and an id AWS assigns at creation, so the
      entry names the service's domain on the TLS port only.
    """
    if stores is None:
        return []
    found: list[ManagedEgress] = []
    if stores.msk_port is not None and agent.mode == "events":
        found.append(
            ManagedEgress(
                "managed-msk", (f"*.kafka.{stores.region}.amazonaws.com",), stores.msk_port,
                "tls-kafka",
            )
        )  # fmt: skip
        found.append(
            ManagedEgress("managed-sts", (f"sts.{stores.region}.amazonaws.com",), 443, "tls")
        )
    return found + managed_egress_of_stores(stores)


ELASTICACHE_ENTRY = "managed-elasticache"


def managed_egress_of_stores(stores: ManagedStores | None) -> list[ManagedEgress]:
    """The managed services every client of the session store dials, whatever its kind
    (every agent, and the gateway that shares the store): ElastiCache's TLS port."""
    if stores is None or stores.elasticache_port is None:
        return []
    return [
        ManagedEgress(
            ELASTICACHE_ENTRY, ("*.cache.amazonaws.com",), stores.elasticache_port, "tls-redis"
        )
    ]


RDS_ENTRY = "managed-rds"


def gateway_managed_egress(stores: ManagedStores | None) -> list[ManagedEgress]:
    """The managed services the gateway dials: the session store's (it shares it) and its
    Postgres on RDS. RDS endpoints are `<instance>.<id>.<region>.rds.amazonaws.com`, the id
    assigned by AWS, so the entry names the region's RDS domain, on 5432 as TCP: Postgres
    asks for TLS inside its own protocol (no SNI to route by); the NetworkPolicy holds the
    address to the VPC's CIDR."""
    found = managed_egress_of_stores(stores)
    if stores is not None and stores.rds_port is not None:
        found.append(
            ManagedEgress(
                RDS_ENTRY,
                (f"*.{stores.region}.rds.amazonaws.com",),
                stores.rds_port,
                "tcp-postgres",
                "TCP",
            )
        )
    return found


def agent_sidecar(
    agent: AgentSpec,
    ns: Namespaces,
    stores: ManagedStores | None = None,
    gateway: GatewayTraffic | None = None,
) -> dict[str, Any]:
    """A Sidecar for one agent type: its proxy sees its own external hosts, the managed
    stores it dials, the models (with a gateway: the gateway instead), the data stores and
    istiod, and nothing else."""
    hosts = [f"./{h}" for h in agent.egress]
    hosts += [f"./{h}" for e in managed_egress(agent, stores) for h in e.hosts]
    models = f"./{gateway_proxy.service_host(ns.agents)}" if gateway else f"{ns.models}/*"
    hosts += [models, f"{ns.data}/*", f"{ISTIO_NAMESPACE}/*"]
    return {
        "workloadSelector": {"labels": type_selector(agent)},
        "egress": [{"hosts": hosts}],
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
    }


def weights_hosts(models: Sequence[ModelSpec], region: str) -> list[str]:
    """External hosts the model servers download weights from (and STS, for IRSA)."""
    hosts: list[str] = []
    for m in models:
        if isinstance(m.weights, S3Weights):
            hosts += [
                f"s3.{region}.amazonaws.com",
                f"{m.weights.bucket}.s3.{region}.amazonaws.com",
                f"sts.{region}.amazonaws.com",
            ]
        elif isinstance(m.weights, HubWeights):
            hosts += HUB_HOSTS
    return sorted(set(hosts))


# --------------------------------------------------------------------------- the gateway


def gateway_route(ns: Namespaces, gateway: GatewayTraffic) -> dict[str, Any]:
    """The agents' route to the gateway: the chain's `gateway route` timeout, retried only
    before the request reaches the proxy (as the model routes are)."""
    host = gateway_proxy.service_host(ns.agents)
    timeout = seconds(gateway.route_s)
    return {
        "hosts": [host],
        "exportTo": ["."],
        "http": [
            {
                "name": "gateway",
                "route": [{"destination": {"host": host, "port": {"number": gateway_proxy.PORT}}}],
                "timeout": timeout,
                "retries": {
                    "attempts": RETRY_ATTEMPTS,
                    "retryOn": ",".join(SAFE_RETRY_ON),
                    "perTryTimeout": timeout,
                },
            }
        ],
    }


def gateway_destination_rule(ns: Namespaces) -> dict[str, Any]:
    return {
        "host": gateway_proxy.service_host(ns.agents),
        "exportTo": ["."],
        "trafficPolicy": {
            "tls": {"mode": "ISTIO_MUTUAL"},
            "connectionPool": {
                "tcp": {
                    "connectTimeout": seconds(CONNECT_TIMEOUT_S),
                    "tcpKeepalive": {
                        "time": seconds(KEEPALIVE_TIME_S),
                        "interval": seconds(KEEPALIVE_INTERVAL_S),
                        "probes": KEEPALIVE_PROBES,
                    },
                }
            },
        },
    }


def gateway_callers_policy(
    agents: Sequence[AgentSpec], ns: Namespaces, ingress_principals: Sequence[str] = ()
) -> dict[str, Any]:
    """AuthorizationPolicy: the gateway accepts the agent types, its key Job and a regional
    stack's ingress gateway (`ingress_principals`), on its port,
    on every path but its metrics: the proxy serves `/metrics` without a key (for the Istio
    agent, which scrapes it inside the pod, past this policy), so no caller reads them
    through the API port; Prometheus reads them on the merged metrics port."""
    principals = [agent_principal(a, ns.agents) for a in agents]
    principals.append(account_principal(gateway_proxy.KEY_JOB_ACCOUNT, ns.agents))
    principals.extend(ingress_principals)
    metrics = gateway_proxy.METRICS_PATH
    return {
        "selector": {"matchLabels": gateway_proxy.selector_labels()},
        "action": "ALLOW",
        "rules": [
            {
                "from": [{"source": {"principals": principals}}],
                "to": [
                    {
                        "operation": {
                            "ports": [str(gateway_proxy.PORT)],
                            "notPaths": [metrics, f"{metrics}/*"],
                        }
                    }
                ],
            }
        ],
    }


def gateway_database_policy(ns: Namespaces) -> dict[str, Any]:
    """AuthorizationPolicy: only the gateway's service account (its proxy and its migration
    Job) reaches its database."""
    return {
        "selector": {"matchLabels": gateway_database.selector_labels()},
        "action": "ALLOW",
        "rules": [
            {
                "from": [
                    {"source": {"principals": [account_principal(gateway_proxy.NAME, ns.agents)]}}
                ],
                "to": [{"operation": {"ports": [str(gateway_database.PORT)]}}],
            }
        ],
    }


def gateway_sidecar(
    ns: Namespaces, gateway: GatewayTraffic, stores: ManagedStores | None = None
) -> dict[str, Any]:
    """The gateway's proxy sees the models, its database (in the cluster, or RDS's
    ServiceEntry hosts), the data stores (Redis: with ElastiCache, its ServiceEntry's
    hosts, since the gateway shares the session store), istiod and the managed APIs'
    hosts."""
    hosts = [f"./{h}" for h in gateway.external_hosts]
    hosts += [f"./{h}" for e in gateway_managed_egress(stores) for h in e.hosts]
    if gateway.in_cluster_database:
        hosts.append(f"./{gateway_database.host(ns.agents)}")
    hosts += [f"{ns.models}/*", f"{ns.data}/*", f"{ISTIO_NAMESPACE}/*"]
    return {
        "workloadSelector": {"labels": gateway_proxy.selector_labels()},
        "egress": [{"hosts": hosts}],
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
    }


def gateway_resources(
    agents: Sequence[AgentSpec],
    ns: Namespaces,
    gateway: GatewayTraffic,
    stores: ManagedStores | None = None,
) -> list[MeshResource]:
    out = [
        MeshResource(
            NETWORKING, "VirtualService", ns.agents, gateway_proxy.NAME, gateway_route(ns, gateway)
        ),
        MeshResource(
            NETWORKING,
            "DestinationRule",
            ns.agents,
            gateway_proxy.NAME,
            gateway_destination_rule(ns),
        ),
        MeshResource(
            SECURITY,
            "AuthorizationPolicy",
            ns.agents,
            f"{gateway_proxy.NAME}-callers",
            gateway_callers_policy(agents, ns, gateway.ingress_principals),
        ),
    ]
    if gateway.in_cluster_database:
        out.append(
            MeshResource(
                SECURITY,
                "AuthorizationPolicy",
                ns.agents,
                f"{gateway_database.NAME}-callers",
                gateway_database_policy(ns),
            )
        )
    out.append(
        MeshResource(
            NETWORKING,
            "Sidecar",
            ns.agents,
            gateway_proxy.NAME,
            gateway_sidecar(ns, gateway, stores),
        )
    )
    if gateway.external_hosts:
        out.append(
            MeshResource(
                NETWORKING,
                "ServiceEntry",
                ns.agents,
                f"{gateway_proxy.NAME}-egress",
                external_service(gateway.external_hosts),
            )
        )
    return out


# --------------------------------------------------------------------------- network policy


def mesh_network_policies(agents: Sequence[AgentSpec], ns: Namespaces) -> dict[str, Any]:
    """NetworkPolicies the mesh needs in the default-deny namespaces (suffix -> namespace,
    name, spec): every proxy reaches istiod's xDS port; agent types with egress hosts reach
    port 443 outside the cluster (REGISTRY_ONLY and the ServiceEntries name the hosts)."""
    istiod = {
        "to": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": ISTIO_NAMESPACE}
                },
                "podSelector": {"matchLabels": dict(ISTIOD_POD_LABELS)},
            }
        ],
        "ports": [{"protocol": "TCP", "port": ISTIOD_XDS_PORT}],
    }
    policies: dict[str, Any] = {
        f"{role}-allow-istiod": {
            "namespace": name,
            "name": "allow-proxies-to-istiod",
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [istiod]},
        }
        for role, name in (("models", ns.models), ("agents", ns.agents))
    }
    for agent in agents:
        if not agent.egress:
            continue
        policies[f"agents-allow-egress-{agent.name}"] = {
            "namespace": ns.agents,
            "name": f"allow-{workload_name(agent)}-external-https",
            "spec": {
                "podSelector": {"matchLabels": type_selector(agent)},
                "policyTypes": ["Egress"],
                "egress": [{"ports": [{"protocol": "TCP", "port": 443}]}],
            },
        }
    return policies


# --------------------------------------------------------------------------- the component


@dataclass(frozen=True)
class MeshResource:
    """One Istio object: kind, namespace, name and spec (wire form)."""

    api_version: str
    kind: str
    namespace: str
    name: str
    spec: Mapping[str, Any]


def mesh_resources(
    models: Sequence[tuple[ModelSpec, TimeoutChain]],
    agents: Sequence[AgentSpec],
    ns: Namespaces,
    region: str,
    *,
    stores: ManagedStores | None = None,
    gateway: GatewayTraffic | None = None,
) -> list[MeshResource]:
    """Every Istio custom resource the stack declares, from its config alone."""
    out = [
        MeshResource(SECURITY, "PeerAuthentication", name, "default", {"mtls": {"mode": "STRICT"}})
        for name in (ns.models, ns.agents)
    ]
    for model, chain in models:
        out.append(
            MeshResource(
                NETWORKING,
                "VirtualService",
                ns.models,
                model.name,
                model_route(model, ns.models, chain),
            )
        )
        out.append(
            MeshResource(
                NETWORKING,
                "DestinationRule",
                ns.models,
                model.name,
                model_destination_rule(model, ns.models),
            )
        )
    out.append(
        MeshResource(
            SECURITY,
            "AuthorizationPolicy",
            ns.models,
            "model-servers-agent-callers",
            model_callers_policy(agents, ns, gateway),
        )
    )
    if gateway is not None:
        out += gateway_resources(agents, ns, gateway, stores)
    hosts = weights_hosts([m for m, _ in models], region)
    if hosts:
        out.append(
            MeshResource(
                NETWORKING, "ServiceEntry", ns.models, "model-weights", external_service(hosts)
            )
        )
    for agent in agents:
        name = workload_name(agent)
        if agent.egress:
            out.append(
                MeshResource(
                    NETWORKING,
                    "ServiceEntry",
                    ns.agents,
                    f"{name}-egress",
                    external_service(agent.egress),
                )
            )
        out.append(
            MeshResource(
                NETWORKING, "Sidecar", ns.agents, name, agent_sidecar(agent, ns, stores, gateway)
            )
        )
        if agent.canary is not None and agent.mode == "http":
            out.append(
                MeshResource(
                    NETWORKING,
                    "VirtualService",
                    ns.agents,
                    name,
                    agent_canary_route(agent, ns.agents),
                )
            )
            out.append(
                MeshResource(
                    NETWORKING,
                    "DestinationRule",
                    ns.agents,
                    name,
                    agent_canary_destination_rule(agent, ns.agents),
                )
            )
    managed = {e.name: e for agent in agents for e in managed_egress(agent, stores)}
    if gateway is not None:
        managed.update({e.name: e for e in gateway_managed_egress(stores)})
    for entry in sorted(managed.values(), key=lambda e: e.name):
        out.append(
            MeshResource(
                NETWORKING,
                "ServiceEntry",
                ns.agents,
                entry.name,
                external_service(entry.hosts, entry.port, entry.port_name, entry.protocol),
            )
        )
    return out


@dataclass(frozen=True)
class MeshArgs:
    spec: MeshSpec
    cost_labels: CostLabels
    resources: Sequence[MeshResource]
    depends_on: Sequence[pulumi.Resource] = ()


RELEASE_NAMES: dict[ChartName, str] = {"base": "istio-base", "istiod": "istiod", "cni": "istio-cni"}


class Mesh(pulumi.ComponentResource):
    """Istio (base, istiod, cni releases) and the stack's mesh resources."""

    releases: dict[ChartName, k8s.helm.v3.Release]

    def __init__(
        self, name: str, args: MeshArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("swarmstack:traffic:Mesh", name, None, opts)
        labels = args.cost_labels.as_labels()
        child = pulumi.ResourceOptions(parent=self)
        namespaces = {
            ISTIO_NAMESPACE: k8s.core.v1.Namespace(
                f"{name}-istio-system",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=ISTIO_NAMESPACE,
                    labels={
                        **labels,
                        "pod-security.kubernetes.io/enforce": "restricted",
                        "pod-security.kubernetes.io/enforce-version": "latest",
                    },
                ),
                opts=child,
            ),
            CNI_NAMESPACE: k8s.core.v1.Namespace(
                f"{name}-istio-cni",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=CNI_NAMESPACE,
                    labels={
                        **labels,
                        # The node agent edits every pod's network namespace from the host
                        # (hostNetwork, hostPath, privileged): only the privileged level
                        # admits it. Nothing else runs here.
                        "pod-security.kubernetes.io/enforce": "privileged",
                        "pod-security.kubernetes.io/warn": "restricted",
                    },
                ),
                opts=child,
            ),
        }
        values = istio_values(args.spec)
        where: dict[ChartName, str] = {
            "base": ISTIO_NAMESPACE,
            "istiod": ISTIO_NAMESPACE,
            "cni": CNI_NAMESPACE,
        }
        self.releases = {}
        previous: list[pulumi.Resource] = list(args.depends_on)
        for chart in istio_chart.CHARTS:
            namespace = where[chart]
            release = k8s.helm.v3.Release(
                f"{name}-{chart}",
                k8s.helm.v3.ReleaseArgs(
                    name=RELEASE_NAMES[chart],
                    chart=chart,
                    version=args.spec.chart_version,
                    repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=args.spec.repository),
                    namespace=namespace,
                    values=values[chart],
                    cleanup_on_fail=True,
                ),
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=[namespaces[namespace], *previous]
                ),
            )
            self.releases[chart] = release
            previous = [release]  # CRDs (base) before istiod, istiod before the node agent
        crds = [self.releases["base"], self.releases["istiod"]]
        for r in args.resources:
            k8s.apiextensions.CustomResource(
                f"{name}-{r.kind.lower()}-{r.namespace}-{r.name}",
                api_version=r.api_version,
                kind=r.kind,
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=r.name, namespace=r.namespace, labels=labels
                ),
                spec=dict(r.spec),
                opts=pulumi.ResourceOptions(parent=self, depends_on=crds),
            )
        self.register_outputs(
            {
                "istioNamespace": ISTIO_NAMESPACE,
                "chartVersion": args.spec.chart_version,
                "releases": {c: r.name for c, r in self.releases.items()},
            }
        )
