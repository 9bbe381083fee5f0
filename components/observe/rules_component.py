"""The stack's alert and cost rules as PrometheusRules (prometheus-operator), one per group.

The groups are `alerts.rule_groups_wire(config)`: the same rendering the local target's
Prometheus loads from `alerts.render_rule_file(config)`. Each PrometheusRule carries the
stack's monitor labels, which the monitoring release's ruleSelector picks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_kubernetes as k8s

from components.observe.alerts import rule_groups_wire
from components.observe.selection import MONITORING_NAMESPACE, STACK_MONITOR_LABELS

if TYPE_CHECKING:
    from stacks.config import StackConfig

API_VERSION = "monitoring.coreos.com/v1"


def prometheus_rule_bodies(config: StackConfig, namespace: str) -> list[dict[str, Any]]:
    """One PrometheusRule manifest per rule group, named after the group."""
    labels = {**config.cost_labels.as_labels(), **STACK_MONITOR_LABELS}
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "PrometheusRule",
            "metadata": {"name": group["name"], "namespace": namespace, "labels": labels},
            "spec": {"groups": [group]},
        }
        for group in rule_groups_wire(config)
    ]


@dataclass(frozen=True)
class AlertRulesArgs:
    config: StackConfig
    namespace: str = MONITORING_NAMESPACE


class AlertRules(pulumi.ComponentResource):
    """Alerting and cost recording rules of the stack, for the monitoring release."""

    rules: list[k8s.apiextensions.CustomResource]
    alert_names: list[str]

    def __init__(
        self, name: str, args: AlertRulesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("swarmstack:observe:AlertRules", name, None, opts)
        bodies = prometheus_rule_bodies(args.config, args.namespace)
        self.alert_names = [
            str(rule["alert"])
            for body in bodies
            for group in body["spec"]["groups"]
            for rule in group["rules"]
            if "alert" in rule
        ]
        self.rules = [
            k8s.apiextensions.CustomResource(
                f"{name}-{body['metadata']['name']}",
                api_version=body["apiVersion"],
                kind=body["kind"],
                metadata=body["metadata"],
                spec=body["spec"],
                opts=pulumi.ResourceOptions(parent=self),
            )
            for body in bodies
        ]
        self.register_outputs(
            {
                "prometheusRules": [str(b["metadata"]["name"]) for b in bodies],
                "alerts": self.alert_names,
            }
        )


def build_alert_rules(config: StackConfig, opts: pulumi.ResourceOptions) -> AlertRules:
    """The composition's one call: the stack's rules on its cluster."""
    args = AlertRulesArgs(config=config, namespace=config.namespaces.monitoring)
    return AlertRules("alert-rules", args, opts=opts)
