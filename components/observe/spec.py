"""The stack's observability config (`swarmstack:observability`): one field per part, so
tracing and later parts each add theirs next to `monitoring` and `alerts`."""

from __future__ import annotations

from pydantic import Field

from components.observe.alerts import AlertThresholds
from components.observe.monitoring import MonitoringSpec
from components.observe.tracing import TracingSpec
from components.specs import Spec


class ObservabilitySpec(Spec):
    """Monitoring, alerting, cost rules and traces, in every stack."""

    monitoring: MonitoringSpec = Field(
        default_factory=MonitoringSpec,
        description="The kube-prometheus-stack release (Prometheus, Alertmanager, Grafana).",
    )
    alerts: AlertThresholds = Field(
        default_factory=AlertThresholds,
        description="Thresholds of the alert rules (each alert's runbook is "
        "docs/runbooks/<alert>.md).",
    )
    tracing: TracingSpec = Field(
        default_factory=TracingSpec,
        description="The OpenTelemetry Collector the agent workers and model servers send "
        "spans to, and the backend it exports them to.",
    )
