"""The stack's observability settings (`observability:` in Pulumi.<stack>.yaml)."""

from __future__ import annotations

from pydantic import Field

from components.observe.alerts import AlertThresholds
from components.specs import Spec


class ObservabilitySpec(Spec):
    """Monitoring, alerting and cost rules of the stack."""

    alerts: AlertThresholds = Field(
        default_factory=AlertThresholds,
        description="Thresholds of the alert rules (each alert's runbook is "
        "docs/runbooks/<alert>.md).",
    )
