"""How the stack's monitoring objects find each other.

The kube-prometheus-stack release selects the stack's own ServiceMonitors, PodMonitors
and PrometheusRules by one label (not the chart's default `release: <name>` label, which
third-party charts set too), and the Grafana sidecar loads dashboards from ConfigMaps
by its own label. Every monitor, rule and dashboard the stack declares carries these.
"""

from __future__ import annotations

MONITORING_RELEASE = "monitoring"  # the kube-prometheus-stack release name
MONITORING_NAMESPACE = "swarmstack-monitoring"

# On every ServiceMonitor / PodMonitor / PrometheusRule of the stack; Prometheus selects
# exactly these (serviceMonitorSelector, podMonitorSelector, ruleSelector).
STACK_MONITOR_LABELS: dict[str, str] = {"swarmstack.io/monitoring": "stack"}

# The Grafana dashboard sidecar loads ConfigMaps with this label (any namespace).
DASHBOARD_LABEL = ("grafana_dashboard", "1")

# The labels the Prometheus operator puts on the Prometheus server pods it runs; the
# NetworkPolicies of monitored namespaces admit these pods of MONITORING_NAMESPACE only.
PROMETHEUS_POD_LABELS: dict[str, str] = {"app.kubernetes.io/name": "prometheus"}
