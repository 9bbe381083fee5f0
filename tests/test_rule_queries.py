"""Every query of the stack's alert and recording rules names real series: a metric the
catalogue lists (the deployed vLLM release's own /metrics, the worker's METRICS.md, the
exporters' documented names) or a series another of the stack's rules records."""

from __future__ import annotations

from typing import Any

from components.observe import catalogue as cat
from components.observe.alerts import rule_groups_wire
from components.observe.promql import query_metric_names
from stacks.config import load


def _rules(raw: dict[str, Any]) -> list[dict[str, Any]]:
    config = load(raw, "us-east-1", "stacks/Pulumi.pilot.yaml")
    return [rule for group in rule_groups_wire(config) for rule in group["rules"]]


def _unreal(rules: list[dict[str, Any]]) -> dict[str, set[str]]:
    recorded = {str(r["record"]) for r in rules if "record" in r}
    known = cat.catalogue()
    found: dict[str, set[str]] = {}
    for rule in rules:
        names = {n for n in query_metric_names(str(rule["expr"])) if n not in known}
        if names - recorded:
            found[str(rule.get("alert") or rule.get("record"))] = names - recorded
    return found


def test_every_rule_names_catalogued_or_recorded_series(pilot_raw: dict[str, Any]) -> None:
    rules = _rules(pilot_raw)
    assert len(rules) >= 60 and any("alert" in r for r in rules)
    assert _unreal(rules) == {}


def test_a_made_up_metric_in_a_rule_is_found(pilot_raw: dict[str, Any]) -> None:
    rules = _rules(pilot_raw)
    alert = next(r for r in rules if r.get("alert") == "AgentToolCallLoop")
    alert["expr"] = str(alert["expr"]).replace(
        "agent_tool_call_repeats_total", "agent_tool_call_repeat_total"
    )
    assert _unreal(rules) == {"AgentToolCallLoop": {"agent_tool_call_repeat_total"}}
