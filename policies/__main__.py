"""Entry point the Pulumi CLI runs: `pulumi preview --policy-pack policies`.

The CLI hands the pack the stack's config in PULUMI_CONFIG; its `swarmstack:phase`
sets each rule's default level (policies.pack.phase_levels, the same function the
offline plan uses), and `--policy-pack-config` overrides those.
"""

import json
import os
import sys
from pathlib import Path

# The CLI runs this file by path from the pack's folder; make `policies` importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from policies.pack import PACK_NAME, RULES, phase_levels, stack_phase

PHASE = stack_phase(json.loads(os.environ.get("PULUMI_CONFIG") or "{}"))
LEVELS = phase_levels(PHASE)

PolicyPack(
    name=PACK_NAME,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[rule.policy(LEVELS[rule.name]) for rule in RULES],
    description="Governance for GPU, model-serving and agent platforms on Kubernetes and AWS "
    f"({PHASE} phase levels)",
)
