"""Entry point the Pulumi CLI runs: `pulumi preview --policy-pack policies`."""

import sys
from pathlib import Path

# The CLI runs this file by path from the pack's folder; make `policies` importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from policies.pack import PACK_NAME, RULES

PolicyPack(
    name=PACK_NAME,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[rule.policy() for rule in RULES],
    description="Governance for GPU, model-serving and agent platforms on Kubernetes and AWS",
)
