"""One builder for every scrape target of the stack: ServiceMonitors and PodMonitors.

`monitor_body` is a pure function from a `MonitorTarget` (what to select, where, which
named ports) to the monitoring.coreos.com/v1 object, labelled `STACK_MONITOR_LABELS` so the
monitoring release's Prometheus loads it; `declare_monitor` declares such a body as a
`CustomResource`. Every workload the stack runs (model servers, the data stores, and the
agents and autoscalers that come later) gets its monitor through these two functions, so
the plan's schema and selector checks and the `workloads-monitored` policy see one shape.

A ServiceMonitor selects Services (and scrapes their endpoints' pods through a named
Service port); a PodMonitor selects pods directly through a named container port, which
suits workloads whose Services would select the same pods twice (a headless and a client
Service) and pods an operator creates (Strimzi's brokers).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s

from components.observe.selection import STACK_MONITOR_LABELS

API_VERSION = "monitoring.coreos.com/v1"
MonitorKind = Literal["ServiceMonitor", "PodMonitor"]
MONITOR_KINDS: tuple[MonitorKind, ...] = ("ServiceMonitor", "PodMonitor")
ENDPOINTS_FIELD: dict[MonitorKind, str] = {
    "ServiceMonitor": "endpoints",
    "PodMonitor": "podMetricsEndpoints",
}


@dataclass(frozen=True)
class SecretKey:
    """A key of a Secret in the monitor's own namespace (Prometheus reads it from there)."""

    name: str
    key: str

    def render(self) -> dict[str, str]:
        return {"name": self.name, "key": self.key}


def pod_label_meta(label: str) -> str:
    """The meta label Prometheus' Kubernetes discovery gives a pod label: every character
    outside [a-zA-Z0-9_] becomes `_` (`swarmstack.io/track` ->
    `__meta_kubernetes_pod_label_swarmstack_io_track`)."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", label)


@dataclass(frozen=True)
class Endpoint:
    """One scraped port: a Service port name (ServiceMonitor) or container port name
    (PodMonitor); or, for a PodMonitor, a port number (`port_number`), for ports a
    container the plan does not see serves (the merged metrics port of an injected Istio
    proxy)."""

    port: str = ""
    path: str = "/metrics"
    scheme: Literal["http", "https"] = "http"
    interval_s: int = 30
    bearer_token: SecretKey | None = None  # sent as `Authorization: Bearer <value>`
    ca: SecretKey | None = None  # CA that signed the target's certificate (https)
    server_name: str | None = None  # the name the certificate was issued for (https)
    port_number: int | None = None
    # Pod labels copied into every series of the target: pod label -> series label.
    pod_labels: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if bool(self.port) == (self.port_number is not None):
            raise ValueError("an endpoint names a port or a port number, not both or neither")

    def render(self) -> dict[str, Any]:
        where: dict[str, Any] = (
            {"port": self.port} if self.port_number is None else {"portNumber": self.port_number}
        )
        endpoint: dict[str, Any] = {
            **where,
            "path": self.path,
            "scheme": self.scheme,
            "interval": f"{self.interval_s}s",
        }
        if self.bearer_token is not None:
            endpoint["authorization"] = {
                "type": "Bearer",
                "credentials": self.bearer_token.render(),
            }
        if self.ca is not None or self.server_name is not None:
            tls: dict[str, Any] = {}
            if self.ca is not None:
                tls["ca"] = {"secret": self.ca.render()}
            if self.server_name is not None:
                tls["serverName"] = self.server_name
            endpoint["tlsConfig"] = tls
        if self.pod_labels:
            endpoint["relabelings"] = [
                {
                    "action": "replace",
                    "sourceLabels": [pod_label_meta(pod_label)],
                    "targetLabel": series_label,
                }
                for pod_label, series_label in self.pod_labels
            ]
        return endpoint


@dataclass(frozen=True)
class MonitorTarget:
    """What one monitor scrapes: the Services or pods matching `selector` in `namespace`."""

    kind: MonitorKind
    name: str
    namespace: str
    selector: Mapping[str, str]
    endpoints: tuple[Endpoint, ...]

    def __post_init__(self) -> None:
        if not self.selector:
            raise ValueError(f"{self.kind} {self.name}: an empty selector would select everything")
        if not self.endpoints:
            raise ValueError(f"{self.kind} {self.name}: needs at least one endpoint")
        if self.kind == "ServiceMonitor" and any(e.port_number for e in self.endpoints):
            raise ValueError(f"{self.kind} {self.name}: port numbers are for PodMonitors")


def monitor_body(target: MonitorTarget, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ServiceMonitor or PodMonitor (wire form) for `target`, carrying `labels` and the
    label the monitoring release selects monitors by."""
    return {
        "apiVersion": API_VERSION,
        "kind": target.kind,
        "metadata": {
            "name": target.name,
            "namespace": target.namespace,
            "labels": {**(labels or {}), **STACK_MONITOR_LABELS},
        },
        "spec": {
            "selector": {"matchLabels": dict(target.selector)},
            "namespaceSelector": {"matchNames": [target.namespace]},
            ENDPOINTS_FIELD[target.kind]: [e.render() for e in target.endpoints],
        },
    }


def declare_monitor(
    resource_name: str, body: Mapping[str, Any], opts: pulumi.ResourceOptions
) -> k8s.apiextensions.CustomResource:
    """Declare a body from `monitor_body` (the monitoring CRDs must exist before `up`: the
    caller depends on the monitoring release)."""
    meta = body["metadata"]
    return k8s.apiextensions.CustomResource(
        resource_name,
        api_version=str(body["apiVersion"]),
        kind=str(body["kind"]),
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=meta["name"], namespace=meta["namespace"], labels=meta["labels"]
        ),
        spec=body["spec"],
        opts=opts,
    )
