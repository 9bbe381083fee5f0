"""Prompts of the load-test users: distinct per request, about the size asked for."""

from __future__ import annotations

import random

TOOLS = ("calculator", "clock", "retrieve", "ledger")
TOPICS = (
    "vector databases", "Kafka consumer lag", "Redis persistence", "GPU partitioning",
    "continuous batching", "idempotent retries", "rate limiting", "canary releases",
    "circuit breakers", "prefix caching", "token budgets", "graceful shutdown",
    "pod disruption budgets", "autoscaling on queue depth", "session checkpoints",
    "structured logging", "TLS certificates", "secret rotation", "cost allocation tags",
    "multi-tenant isolation",
)  # fmt: skip
AUDIENCES = (
    "new engineer", "product manager", "site reliability engineer", "security reviewer",
    "data scientist", "finance analyst", "support agent", "student",
)  # fmt: skip
WORDS = (
    "agent", "cluster", "request", "token", "model", "session", "latency", "memory",
    "queue", "tool", "result", "policy", "budget", "window", "stream", "replica",
    "network", "storage", "shard", "schedule", "signal", "metric", "ledger", "vector",
)  # fmt: skip


def _ref(rng: random.Random) -> str:
    """48 random bits: prompts of a run (all users, all workers) do not repeat."""
    return f"{rng.getrandbits(48):012x}"


def chat_prompt(rng: random.Random) -> str:
    return (
        f"In two short sentences, explain {rng.choice(TOPICS)} to a {rng.choice(AUDIENCES)}. "
        f"(ref {_ref(rng)})"
    )


def tool_prompt(tool: str, rng: random.Random) -> str:
    """A turn that names its tool; the worker forces that tool with a named tool_choice."""
    if tool == "calculator":
        a, b, c = rng.randint(2, 999), rng.randint(2, 99), rng.randint(1, 9999)
        return f"Use the calculator: what is {a} * {b} + {c}? (ref {_ref(rng)})"
    if tool == "clock":
        return f"What is the current UTC time? I need it for ticket T-{_ref(rng)}."
    if tool == "retrieve":
        topic = rng.choice(TOPICS)
        return f"Look up our notes about {topic} for case C-{_ref(rng)} in one line."
    amount = rng.randint(1, 5000)
    return f"Record a payment of {amount} credits in the ledger for invoice INV-{_ref(rng)}."


def filler_prompt(tokens: int, rng: random.Random) -> str:
    """About `tokens` tokens, starting with a random reference so no two share a prefix."""
    words = [rng.choice(WORDS) for _ in range(max(tokens - 12, 1))]
    return (
        f"Reference {_ref(rng)}. Continue this list of words with more "
        f"words of the same kind: {' '.join(words)}"
    )
