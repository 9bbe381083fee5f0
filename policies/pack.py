"""Every rule of the pack, in one list. The PolicyPack itself is built in __main__.py only
(building it starts the analyzer's gRPC server)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from policies.framework import Level, Rule
from policies.rules import (
    aws,
    cost,
    data,
    database,
    event_bus,
    gateway,
    gpu,
    kubernetes_security,
    observability,
    scaling,
    supply_chain,
    traffic,
)

PACK_NAME = "swarmstack"

# The phases a stack can be in (stacks/config.py builds a subset of them so far) and the
# config key that names a stack's phase.
Phase = Literal["pilot", "production"]
PHASES: tuple[Phase, ...] = ("pilot", "production")
PHASE_KEY = "swarmstack:phase"

RULES: list[Rule] = [
    *kubernetes_security.RULES,
    *supply_chain.RULES,
    *gpu.RULES,
    *traffic.RULES,
    *gateway.RULES,
    *scaling.RULES,
    *data.RULES,
    *database.RULES,
    *event_bus.RULES,
    *aws.RULES,
    *cost.RULES,
    *observability.RULES,
]


def rules_by_name() -> dict[str, Rule]:
    names = [r.name for r in RULES]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"duplicate rule names: {sorted(duplicates)}")
    return {r.name: r for r in RULES}


def phase_levels(phase: Phase, rules: Sequence[Rule] | None = None) -> dict[str, Level]:
    """Each rule's enforcement level in a stack of `phase`, before its policy config applies.

    pilot: each rule's own level (a few are advisory); production: every rule mandatory.
    A stack's `policies/config/<stack>.json` (`--policy-pack-config`) then overrides these.
    """
    rules = RULES if rules is None else rules
    if phase == "production":
        return {r.name: "mandatory" for r in rules}
    return {r.name: r.level for r in rules}


def describe_phase_levels(phase: Phase) -> str:
    if phase == "production":
        return "the production phase defaults (every rule mandatory)"
    return "the pilot phase defaults (each rule's own level)"


def stack_phase(stack_config: Mapping[str, object]) -> Phase:
    """The phase a stack's config names, read the way the Pulumi CLI hands config to a policy
    pack (the PULUMI_CONFIG variable: {"swarmstack:phase": "pilot", ...}).

    Without the key (a stack that is not swarmstack's) the strictest phase applies."""
    value = stack_config.get(PHASE_KEY)
    if value is None:
        return "production"
    for phase in PHASES:
        if value == phase:
            return phase
    raise ValueError(f"{PHASE_KEY} {value!r} is not a phase (one of {', '.join(PHASES)})")
