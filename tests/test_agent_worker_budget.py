"""Token budgets: the decision per scope, the degraded limits, and the settings."""

from __future__ import annotations

import pytest
from agent_worker.budget import Budgets, Decision, agent_used_ratio, decide, degraded_limits
from agent_worker.config import ConfigError, load_settings

ENV = {"MODEL_BASE_URL": "http://m:8000/v1", "MODEL_NAME": "m", "REDIS_URL": "redis://r:6379"}


def used(session: int = 0, user: int = 0, agent: int = 0) -> dict[str, int]:
    return {"session": session, "user": user, "agent": agent}


def test_without_budgets_every_turn_runs() -> None:
    assert decide(Budgets(), used(10**9, 10**9, 10**9)) == Decision("run")


def test_degrade_then_refuse_at_the_ratios() -> None:
    b = Budgets(session_tokens=1000, degrade_at=0.8)
    assert decide(b, used(session=799)).action == "run"
    assert decide(b, used(session=800)) == Decision("degraded", "session", 800, 1000)
    assert decide(b, used(session=999)).action == "degraded"
    refused = decide(b, used(session=1000))
    assert refused == Decision("refused", "session", 1000, 1000)
    assert refused.message() == "session token budget exhausted: 1000 of 1000 tokens used"


def test_the_most_constraining_scope_is_named() -> None:
    b = Budgets(session_tokens=100, user_tokens_per_day=1000, agent_tokens_per_day=10_000)
    # degraded by the user (0.9) beats degraded by the session (0.85)
    assert decide(b, used(85, 900, 0)).scope == "user"
    # refused by the agent type beats degraded by anyone
    refused = decide(b, used(99, 999, 10_000))
    assert (refused.action, refused.scope) == ("refused", "agent")
    assert refused.message() == (
        "agent type's daily token budget exhausted: 10000 of 10000 tokens used"
    )


def test_degraded_limits_halve_the_answer() -> None:
    assert degraded_limits(128, 0) == (64, 0)
    assert degraded_limits(9, 9) == (5, 5)
    assert degraded_limits(1, 1) == (1, 1)


def test_agent_used_ratio() -> None:
    assert agent_used_ratio(Budgets(), 500) == 0.0
    assert agent_used_ratio(Budgets(agent_tokens_per_day=2000), 500) == 0.25


def test_settings() -> None:
    settings = load_settings(
        {
            **ENV,
            "BUDGET_SESSION_TOKENS": "5000",
            "BUDGET_USER_TOKENS_PER_DAY": "0",
            "BUDGET_AGENT_TOKENS_PER_DAY": "100000",
            "BUDGET_DEGRADE_AT": "0.9",
            "AGENT_TEAM": "search",
            "USAGE_STREAM_MAXLEN": "5000",
        }
    )
    assert settings.budgets == Budgets(5000, None, 100_000, 0.9)
    assert (settings.agent_team, settings.usage_maxlen) == ("search", 5000)
    defaults = load_settings(ENV)
    assert defaults.budgets == Budgets() and not defaults.budgets.any
    assert (defaults.agent_team, defaults.otel_endpoint) == ("unassigned", None)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BUDGET_SESSION_TOKENS", "lots", "BUDGET_SESSION_TOKENS must be an integer, got 'lots'"),
        ("BUDGET_USER_TOKENS_PER_DAY", "-1", "BUDGET_USER_TOKENS_PER_DAY must be between 0"),
        ("BUDGET_DEGRADE_AT", "1.5", "BUDGET_DEGRADE_AT must be between 0 and 1, got 1.5"),
        ("BUDGET_DEGRADE_AT", "0", "BUDGET_DEGRADE_AT must be above 0 and at most 1, got 0"),
        ("AGENT_TEAM", "a team", "AGENT_TEAM must be 1-63 characters"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317", "OTEL_EXPORTER_OTLP_ENDPOINT must be"),
        ("USAGE_STREAM_MAXLEN", "10", "USAGE_STREAM_MAXLEN must be between 1000"),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**ENV, name: value})
    assert str(caught.value).startswith(message)
