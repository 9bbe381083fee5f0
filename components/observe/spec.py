"""The stack's observability config (`swarmstack:observability`): one field per part, so
alerting, tracing and dashboards each add theirs next to `monitoring`."""

from __future__ import annotations

from pydantic import Field

from components.observe.monitoring import MonitoringSpec
from components.specs import Spec


class ObservabilitySpec(Spec):
    """Monitoring, in every stack."""

    monitoring: MonitoringSpec = Field(
        default_factory=MonitoringSpec,
        description="The kube-prometheus-stack release (Prometheus, Alertmanager, Grafana).",
    )
