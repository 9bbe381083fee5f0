"""Token budgets (pure logic): per session, per user per UTC day, per agent type per UTC day.

Budgets count input + output tokens of finished turns, from the counters the usage record
script keeps in Redis (`Store.record_usage`), so every replica sees the same spend. A new
turn is decided before it starts:

- below `degrade_at` of every budget: it runs as asked;
- at or above `degrade_at` of one: it runs degraded (at most `DEGRADED_MAX_STEPS` model
  calls, half its `max_tokens`), and the client is told (`degraded` event or field);
- at or above 100% of one: it is refused (HTTP 429 `budget_exhausted`, or an error
  result in event mode) and nothing runs.

A turn already running is never stopped by its own spend: the budget can be overshot by
the last admitted turn (at most a turn's tokens per scope and replica).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Scope = Literal["session", "user", "agent"]
SCOPES: tuple[Scope, ...] = ("session", "user", "agent")
DEGRADED_MAX_STEPS = 2  # one tool call and its answer: the least a tool turn needs


@dataclass(frozen=True)
class Budgets:
    """Token limits (None: no limit) and the ratio at which turns run degraded."""

    session_tokens: int | None = None
    user_tokens_per_day: int | None = None
    agent_tokens_per_day: int | None = None
    degrade_at: float = 0.8

    def limit(self, scope: Scope) -> int | None:
        return {
            "session": self.session_tokens,
            "user": self.user_tokens_per_day,
            "agent": self.agent_tokens_per_day,
        }[scope]

    @property
    def any(self) -> bool:
        return any(self.limit(s) is not None for s in SCOPES)


@dataclass(frozen=True)
class Decision:
    action: Literal["run", "degraded", "refused"]
    scope: Scope | None = None
    used_tokens: int = 0
    limit_tokens: int = 0

    @property
    def ratio(self) -> float:
        return self.used_tokens / self.limit_tokens if self.limit_tokens else 0.0

    def message(self) -> str:
        what = {"session": "session", "user": "user's daily", "agent": "agent type's daily"}
        assert self.scope is not None
        return (
            f"{what[self.scope]} token budget exhausted: {self.used_tokens} of "
            f"{self.limit_tokens} tokens used"
        )


def decide(budgets: Budgets, used: Mapping[str, int]) -> Decision:
    """The most constraining budget's verdict: refused beats degraded beats run; within
    one verdict the scope with the highest used ratio is named."""
    worst: Decision = Decision("run")
    for scope in SCOPES:
        limit = budgets.limit(scope)
        if limit is None:
            continue
        spent = used[scope]
        ratio = spent / limit
        if ratio >= 1.0:
            action: Literal["run", "degraded", "refused"] = "refused"
        elif ratio >= budgets.degrade_at:
            action = "degraded"
        else:
            continue
        candidate = Decision(action, scope, spent, limit)
        rank = {"run": 0, "degraded": 1, "refused": 2}
        if rank[action] > rank[worst.action] or (
            action == worst.action and candidate.ratio > worst.ratio
        ):
            worst = candidate
    return worst


def degraded_limits(max_tokens: int, min_tokens: int) -> tuple[int, int]:
    """A degraded turn's (max_tokens, min_tokens): half the answer length, rounded up."""
    smaller = max(1, math.ceil(max_tokens / 2))
    return smaller, min(min_tokens, smaller)


def agent_used_ratio(budgets: Budgets, agent_tokens: int) -> float:
    """`agent_budget_used_ratio`: the agent type's spend today over its daily budget."""
    limit = budgets.agent_tokens_per_day
    return agent_tokens / limit if limit else 0.0
