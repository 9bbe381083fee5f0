"""Observability: every alert the stack declares tells the person paged what to do.

A PrometheusRule's alerting rules (`spec.groups[].rules[]` with `alert`) carry a
`runbook_url` annotation pointing at the runbook in the repository,
`docs/runbooks/<alert-name-in-kebab-case>.md` (optionally behind a browse URL). Recording
rules need none.
"""

from __future__ import annotations

import re

from pulumi_policy import ReportViolation, ResourceValidationArgs

from policies.framework import Rule, as_dict, as_list, k8s_kind, reporter

PROMETHEUS_RULE_TYPE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"


def runbook_path(alert: str) -> str:
    """`AgentToolCallLoop` -> `docs/runbooks/agent-tool-call-loop.md`."""
    return "docs/runbooks/" + re.sub(r"(?<!^)(?=[A-Z])", "-", alert).lower() + ".md"


def _alerts_have_runbooks(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if k8s_kind(args.resource_type) != "PrometheusRule":
        return
    say = reporter(args.resource_type, args.props, args.name, report)
    for group in as_list(as_dict(args.props.get("spec")).get("groups")):
        group_name = as_dict(group).get("name", "?")
        for rule in as_list(as_dict(group).get("rules")):
            alert = as_dict(rule).get("alert")
            if alert is None:
                continue  # a recording rule
            url = str(as_dict(as_dict(rule).get("annotations")).get("runbook_url") or "")
            expected = runbook_path(str(alert))
            if not url:
                say(f"alert {alert} (group {group_name}) has no runbook_url annotation")
            elif not (url == expected or url.endswith("/" + expected)):
                say(
                    f"alert {alert} (group {group_name}): runbook_url {url!r} does not point "
                    f"at its runbook {expected}"
                )


RULES = [
    Rule(
        "alerts-have-runbooks",
        "observability",
        "Every alert of a PrometheusRule links its runbook (annotation runbook_url -> "
        "docs/runbooks/<alert-name-in-kebab-case>.md).",
        "Add annotations.runbook_url to the alerting rule and write the runbook at "
        "docs/runbooks/<alert>.md (components/observe/alerts.py does both for the stack's "
        "rules).",
        check=_alerts_have_runbooks,
    ),
]
