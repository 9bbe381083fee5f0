"""What swarmstack relies on in Istio's Helm charts (`base`, `istiod`, `cni`) and the release
they were read at.

`components.traffic.mesh.istio_values` renders each chart's Helm values for one release,
`CHART_VERSION`. Every value key path it may set is listed in `VALUE_KEYS` with what the
chart does with it at that release, as read in the release's `manifests/charts/*/values.yaml`
and in the templates that consume the keys. A test holds every rendered key path to this
list, and the stack config accepts no other version: moving the pin means reading the new
release's charts again, updating the meanings below, then `CHART_VERSION`.

Checked at 1.30.3 (2026-07-13, the newest release tag; 1.31 had only pre-releases):

- The three charts read their defaults from `_internal_defaults_do_not_set` and merge the
  user's values over them (`templates/zzz_profile.yaml`): keys are set at the top level.
- `istiod`: `cni.enabled` reaches the sidecar injector as `.Values.pilot.cni.enabled`
  (`templates/istiod-injector-configmap.yaml` picks `cni` and `env`), and the injection
  template then adds the `istio-validation` init container (no capabilities) instead of
  `istio-init` (NET_ADMIN, NET_RAW), which restricted Pod Security refuses.
- `istiod`: `env` entries become istiod's environment (`templates/deployment.yaml`). Its
  `ENABLE_NATIVE_SIDECARS` (pilot/pkg/features/pilot.go) defaults to `auto`, which turns
  native sidecars on only when every node's kubelet is 1.33 or newer
  (pkg/kube/inject/webhook.go `DetectNativeSidecar`); `true` turns them on unconditionally
  (the SidecarContainers feature is on by default since Kubernetes 1.29, below every
  version the stack accepts).
- `istiod`: `meshConfig` is written as the mesh config (`templates/configmap.yaml`);
  `enablePrometheusMerge` is true by default.
- Sidecar listeners: istiod sets the HTTP connection manager's `stream_idle_timeout` to 0
  (disabled) on every sidecar listener (pilot/pkg/networking/core/listener_builder.go), so
  only the route timeout and the connection idle timeout can end a quiet stream.
- Outlier detection: `maxEjectionPercent` 0 is treated as unset (Envoy's 10 %, which still
  ejects one host whatever the percentage); `minHealthPercent` becomes the cluster's
  healthy panic threshold (pilot/pkg/networking/core/cluster_traffic_policy.go).
- Route retries: a route without `retries` gets two attempts on
  `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`;
  `attempts: 0` removes the retry policy (pilot/pkg/networking/core/route/retry/retry.go).
- `cni`: the chart's defaults for the CNI directories (`/opt/cni/bin`, `/etc/cni/net.d`)
  are the AWS VPC CNI's; `chained: true` appends istio-cni to the VPC CNI's conflist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from components import chart_values
from components.chart_values import ValueKey

CHART_VERSION = "1.30.3"
REPOSITORY = "https://istio-release.storage.googleapis.com/charts"
ChartName = Literal["base", "istiod", "cni"]
CHARTS: tuple[ChartName, ...] = ("base", "istiod", "cni")

ISTIO_NAMESPACE = "istio-system"  # istiod, its webhooks and the mesh's root namespace
CNI_NAMESPACE = "istio-cni"  # the CNI node agent alone: it needs privileged pods
ISTIOD_POD_LABELS = {"app": "istiod"}  # the istiod chart's pod label
ISTIOD_XDS_PORT = 15012  # istiod's xDS and certificate service (TLS), dialled by every proxy
MERGED_METRICS_PORT = 15020  # pilot-agent: merged app + Envoy metrics, outside mTLS
MERGED_METRICS_PATH = "/stats/prometheus"
MERGED_METRICS_PORT_NAME = "istio-metrics"


def merged_metrics_container_port() -> dict[str, Any]:
    """The merged-metrics port as the app container declares it. The injected proxy
    declares only 15090 (Envoy's own stats), and the Prometheus operator keeps a
    PodMonitor's `portNumber` targets only where a container declares that port: without
    this declaration the model and agent monitors would find no target at all. The port
    is the pod's (one network namespace), served by the sidecar's agent."""
    return {
        "name": MERGED_METRICS_PORT_NAME,
        "containerPort": MERGED_METRICS_PORT,
        "protocol": "TCP",
    }


INJECTION_LABEL = "istio-injection"  # namespace label the injector's webhook selects

VALUE_KEYS: dict[ChartName, dict[str, ValueKey]] = {
    "base": {
        "global.istioNamespace": ValueKey(
            "scalar",
            "namespace of istiod: the default-revision validating webhook and the reader "
            "service account point there",
        ),
    },
    "istiod": {
        "global.istioNamespace": ValueKey("scalar", "namespace istiod runs in"),
        "autoscaleMin": ValueKey(
            "scalar",
            "istiod HorizontalPodAutoscaler minReplicas; above 1 the chart also declares a "
            "PodDisruptionBudget (templates/poddisruptionbudget.yaml)",
        ),
        "autoscaleMax": ValueKey("scalar", "istiod HorizontalPodAutoscaler maxReplicas"),
        "cni.enabled": ValueKey(
            "scalar",
            "true: the injector relies on the Istio CNI node agent for traffic redirection "
            "and adds the unprivileged istio-validation init container, not istio-init",
        ),
        "env.ENABLE_NATIVE_SIDECARS": ValueKey(
            "scalar",
            "'true': the proxy is injected as an init container with restartPolicy Always "
            "(a native sidecar): it starts before and stops after the app containers",
        ),
        "meshConfig.enablePrometheusMerge": ValueKey(
            "scalar",
            "true: the injector moves the pod's prometheus.io/* annotations into the agent, "
            "which serves the app's metrics merged with Envoy's on :15020/stats/prometheus",
        ),
        "meshConfig.outboundTrafficPolicy.mode": ValueKey(
            "scalar",
            "REGISTRY_ONLY: sidecars send traffic only to Services and ServiceEntries in the "
            "registry; ALLOW_ANY passes unknown destinations through",
        ),
        "meshConfig.defaultConfig.holdApplicationUntilProxyStarts": ValueKey(
            "scalar",
            "true: the injector orders the app containers after a ready proxy (read as "
            ".ProxyConfig.HoldApplicationUntilProxyStarts in the injection template); native "
            "sidecars imply it, this covers pods injected without them",
        ),
        "global.proxy.resources.requests.cpu": ValueKey("scalar", "sidecar CPU request"),
        "global.proxy.resources.requests.memory": ValueKey("scalar", "sidecar memory request"),
        "global.proxy.resources.limits.memory": ValueKey("scalar", "sidecar memory limit"),
        "global.proxy.resources.limits.cpu": ValueKey(
            "scalar", "sidecar CPU limit; null removes the chart's 2000m (omitNil in the template)"
        ),
    },
    "cni": {
        "chained": ValueKey(
            "scalar", "true: istio-cni is added to the existing CNI's plugin chain (VPC CNI)"
        ),
        "cniBinDir": ValueKey("scalar", "host directory of CNI binaries (/opt/cni/bin on EKS)"),
        "cniConfDir": ValueKey(
            "scalar", "host directory of CNI configuration (/etc/cni/net.d on EKS)"
        ),
        "ambient.enabled": ValueKey(
            "scalar", "false: sidecar mode only; the node agent redirects injected pods"
        ),
        "seccompProfile": ValueKey(
            "map", "the node agent's seccomp profile ({type: RuntimeDefault})"
        ),
    },
}


def unchecked_value_paths(chart: ChartName, values: Mapping[str, Any]) -> list[str]:
    """Key paths of `values` that were not checked against `chart` at CHART_VERSION."""
    return chart_values.unchecked_value_paths(values, VALUE_KEYS[chart])


def value_key_paths(chart: ChartName, values: Mapping[str, Any]) -> list[str]:
    return list(chart_values.value_key_paths(values, VALUE_KEYS[chart]))
