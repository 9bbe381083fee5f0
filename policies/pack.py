"""Every rule of the pack, in one list. The PolicyPack itself is built in __main__.py only
(building it starts the analyzer's gRPC server)."""

from __future__ import annotations

from policies.framework import Rule
from policies.rules import (
    aws,
    cost,
    data,
    event_bus,
    gpu,
    kubernetes_security,
    scaling,
    supply_chain,
    traffic,
)

PACK_NAME = "swarmstack"

RULES: list[Rule] = [
    *kubernetes_security.RULES,
    *supply_chain.RULES,
    *gpu.RULES,
    *traffic.RULES,
    *scaling.RULES,
    *data.RULES,
    *event_bus.RULES,
    *aws.RULES,
    *cost.RULES,
]


def rules_by_name() -> dict[str, Rule]:
    names = [r.name for r in RULES]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"duplicate rule names: {sorted(duplicates)}")
    return {r.name: r for r in RULES}
