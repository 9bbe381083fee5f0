"""Run the policy pack over a captured plan the way the Pulumi analyzer would.

Properties are deserialized with pulumi-policy's own deserializer and wrapped
in its unknown-checking proxy, so secrets are unwrapped for checking (never
written: messages name variables, not values) and a value unknown at preview
raises the same way. Rules run through the very `Policy` objects the pack's
entry point hands to the CLI, with the same `--policy-pack-config` file.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from policies.framework import Level, Rule
from policies.pack import RULES, Phase, describe_phase_levels, phase_levels
from stacks.plan.recorder import Registration


@dataclass(frozen=True)
class Violation:
    rule: str
    level: str
    resource: str  # URN, or "stack"
    message: str
    remediation: str

    def __str__(self) -> str:
        return f"[{self.level}] {self.rule}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {
            "rule": self.rule,
            "level": self.level,
            "resource": self.resource,
            "message": self.message,
            "remediation": self.remediation,
        }


class PolicyConfigError(ValueError):
    pass


def load_config(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PolicyConfigError(f"{path}: not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PolicyConfigError(f"{path}: expected an object of rule names")
    return cast(dict[str, Any], doc)


def unknown_rules(config: dict[str, Any]) -> list[str]:
    """Names in a policy config that are neither `all` nor a rule of the pack."""
    known = {r.name for r in RULES}
    return sorted(k for k in config if k != "all" and k not in known)


def settings(
    rule: Rule, config: dict[str, Any], default: Level | None = None
) -> tuple[Level, dict[str, Any]]:
    """A rule's enforcement level and its config, as `--policy-pack-config` sets them over
    `default` (the stack's phase level, `phase_levels`; else the rule's own)."""
    level: str = default or rule.level
    if isinstance(config.get("all"), str):
        level = str(config["all"])
    entry = config.get(rule.name)
    values: dict[str, Any] = {}
    if isinstance(entry, str):
        level = entry
    elif isinstance(entry, dict):
        options = cast(dict[str, Any], entry)
        values = {k: v for k, v in options.items() if k != "enforcementLevel"}
        level = str(options.get("enforcementLevel", level))
    if level not in ("advisory", "mandatory", "disabled"):
        raise PolicyConfigError(
            f"{rule.name}: enforcement level {level!r} is not one of advisory, mandatory, disabled"
        )
    unknown = sorted(set(values) - set(rule.config))
    if unknown:
        raise PolicyConfigError(
            f"{rule.name}: unknown config {unknown} (valid: {sorted(rule.config) or 'none'})"
        )
    return level, values


def _props(r: Registration) -> Any:
    return unknown_checking_proxy(deserialize_properties(r.wire))


def _options(r: Registration) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=r.protect,
        ignore_changes=list(r.ignore_changes),
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
        parent=r.parent or None,
    )


@dataclass(frozen=True)
class Levels:
    """Where a plan's enforcement levels come from: the stack's phase, then its config file."""

    phase: Phase
    config_file: str | None  # shown relative to the project; None: the stack has none
    expected_file: str

    @property
    def defaults(self) -> dict[str, Level]:
        return phase_levels(self.phase)

    def describe(self) -> str:
        base = describe_phase_levels(self.phase)
        if self.config_file is None:
            return f"no {self.expected_file}, so {base}"
        return f"{base} with {self.config_file} applied"


def effective_levels(levels: Levels, config: dict[str, Any]) -> dict[str, Level]:
    """Every rule's level as the pack runs it for this stack."""
    defaults = levels.defaults
    return {r.name: settings(r, config, defaults[r.name])[0] for r in RULES}


def count_levels(effective: dict[str, Level]) -> str:
    counts = Counter(effective.values())
    order: list[Level] = ["mandatory", "advisory", "disabled"]
    return ", ".join(f"{counts[level]} {level}" for level in order if counts[level])


def evaluate(
    registrations: list[Registration],
    config: dict[str, Any],
    rules: list[Rule] | None = None,
    defaults: dict[str, Level] | None = None,
) -> list[Violation]:
    """Every violation of every enabled rule, resources first, then the stack.

    `defaults` are the levels before `config` applies (`phase_levels` of the stack's phase);
    without them each rule runs at its own level."""
    rules = RULES if rules is None else rules
    defaults = defaults or {}
    registrations = sorted(registrations, key=lambda r: r.urn)  # capture order is not stable
    violations: list[Violation] = []
    props = {r.urn: _props(r) for r in registrations}
    for rule in rules:
        level, values = settings(rule, config, defaults.get(rule.name))
        if level == "disabled":
            continue
        policy = rule.policy()

        def report(
            message: str,
            urn: str | None = None,
            *,
            _rule: Rule = rule,
            _level: str = level,
            _where: str = "stack",
        ) -> None:
            violations.append(
                Violation(_rule.name, _level, urn or _where, message, _rule.remediation)
            )

        if isinstance(policy, ResourceValidationPolicy):
            for r in registrations:
                args = ResourceValidationArgs(
                    r.type, props[r.urn], r.urn, r.name, _options(r), None, values, {}
                )
                try:
                    # pulumi_policy types validate's return as a bare Awaitable
                    policy.validate(  # pyright: ignore[reportUnknownMemberType]
                        args, lambda m, u=None, _u=r.urn: report(m, u, _where=_u)
                    )
                except UnknownValueError as exc:
                    violations.append(
                        Violation(rule.name, "advisory", r.urn, f"could not run: {exc.message}", "")
                    )
        elif isinstance(policy, StackValidationPolicy):
            resources = _stack_resources(registrations, props)
            try:
                policy.validate(  # pyright: ignore[reportUnknownMemberType] (bare Awaitable)
                    StackValidationArgs(resources, values, {}), report
                )
            except UnknownValueError as exc:
                violations.append(
                    Violation(rule.name, "advisory", "stack", f"could not run: {exc.message}", "")
                )
    return violations


def _stack_resources(
    registrations: list[Registration], props: dict[str, Any]
) -> list[PolicyResource]:
    by_urn = {
        r.urn: PolicyResource(r.type, props[r.urn], r.urn, r.name, _options(r), None, None, [], {})
        for r in registrations
    }
    for r in registrations:
        resource = by_urn[r.urn]
        resource.parent = by_urn.get(r.parent)
        resource.dependencies = [by_urn[d] for d in r.dependencies if d in by_urn]
    return list(by_urn.values())


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def report_markdown(
    violations: list[Violation], levels: Levels, effective: dict[str, Level]
) -> str:
    lines = [
        "# Policy report",
        "",
        "Pack `swarmstack`. Offline plan: nothing was deployed.",
        "",
        f"Enforcement levels: {levels.describe()}: {count_levels(effective)}.",
        "",
    ]
    if not violations:
        lines.append("No violations.")
    else:
        lines += ["| level | rule | resource | message | remediation |", "|---|---|---|---|---|"]
        for v in violations:
            where = v.resource.rsplit("::", 1)[-1]
            lines.append(_row([v.level, f"`{v.rule}`", where, v.message, v.remediation]))
    lines += ["", "## Enforcement levels", "", "| rule | level |", "|---|---|"]
    lines += [_row([f"`{name}`", level]) for name, level in effective.items()]
    return "\n".join(lines) + "\n"
