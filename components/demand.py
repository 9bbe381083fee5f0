"""The load a stack is expected to carry at its peak (`swarmstack:demand`).

`swarmstack capacity` sizes the stack from it: the users with an open session, the agent
turns per minute, and how those turns split across the agent types. Nothing is declared
from this section; it is what the stack's replica ranges, pool sizes and autoscaling
thresholds are checked against.
"""

from __future__ import annotations

import math

from pydantic import Field, model_validator

from components.specs import DnsLabel, Spec


class AgentDemand(Spec):
    """One agent type's part of the peak load."""

    agent: DnsLabel = Field(description="The agent type (`agents[].name`).")
    share: float = Field(
        gt=0,
        le=1,
        description="Its share of the turns (and, for an http agent, of the users' "
        "sessions); the shares of all agent types add up to 1.",
    )
    sessions_per_user: float = Field(
        default=1.0,
        gt=0,
        le=100,
        description="Open sessions per user of this http agent type (ignored for events "
        "agents, which have no sessions).",
    )


class DemandSpec(Spec):
    """The expected peak: users, turns per minute and their split across agent types."""

    users: int = Field(ge=1, le=10_000_000, description="Users with an open session at the peak.")
    turns_per_minute: float = Field(
        gt=0, le=10_000_000, description="Agent turns per minute at the peak, all agent types."
    )
    agents: list[AgentDemand] = Field(
        min_length=1, description="How the turns and sessions split across agent types."
    )

    @model_validator(mode="after")
    def _shares(self) -> DemandSpec:
        total = sum(a.share for a in self.agents)
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            shares = ", ".join(f"{a.agent} {a.share:g}" for a in self.agents)
            raise ValueError(
                f"the agents' shares add up to {total:g} ({shares}); they must add up to 1"
            )
        return self
