"""data rules (see policies/framework.py for how a rule is written)."""

from __future__ import annotations

from policies.framework import Rule

RULES: list[Rule] = []
