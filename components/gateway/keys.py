"""Agent types' keys at the gateway: how each key is made and what it is registered with.

A key is derived, not stored: `sk-` and the HMAC-SHA256 of the agent's name and
`keyVersion` under the `gatewayAgentKeySeed` config secret. The derivation runs inside the
Pulumi program (an `apply` on the secret), so the same key reaches the agent's Secret (the
worker reads it from a file) and the key Job's Secret (which registers it with the proxy),
and raising `keyVersion` rotates one agent's key without touching the others. A key is
never in the config, the plan or a ConfigMap.

`key_requests` renders what the key Job sends to the proxy's `/key/generate` (and
`/key/update`) for each agent: budget, budget duration, rpm/tpm, parallel requests and the
models it may call (`GenerateKeyRequest` in LiteLLM's proxy/_types.py). It holds no key:
the Job reads each agent's key from its mounted file, by the agent's name.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from typing import Any

from components.gateway.spec import GatewaySpec, key_models

KEY_PREFIX = "sk-"  # LiteLLM refuses a user-defined key without it
MIN_SEED_CHARS = 32
# What LiteLLM's own key derivation accepts (`sk-` optional, at least 32 bytes of hex).
SALT_KEY_FORMAT = re.compile(r"^(sk-)?([0-9a-fA-F]{2}){32,}$")
FINGERPRINT_CHARS = 16


def salt_key_fingerprint(salt_key: str) -> str:
    """The first 16 hex characters of the salt key's SHA-256: recorded in the stack file
    (`gateway.saltKeyFingerprint`) at the first deploy, it reveals nothing of the key and
    makes any later change of the secret visible before anything is deployed."""
    return hashlib.sha256(salt_key.encode()).hexdigest()[:FINGERPRINT_CHARS]


def salt_key_problems(
    salt_key: str, fingerprint: str | None, *, require_fingerprint: bool
) -> list[str]:
    """Why a salt key cannot be deployed: its format, or a fingerprint that differs from
    (or, for `pulumi up`, is missing next to) the one the stack recorded."""
    if not SALT_KEY_FORMAT.match(salt_key):
        return [
            "is not at least 32 bytes of hex (optionally after sk-): generate it once with "
            "sk-$(openssl rand -hex 32)"
        ]
    actual = salt_key_fingerprint(salt_key)
    if fingerprint is None:
        if require_fingerprint:
            return [
                f"has fingerprint {actual}, but gateway.saltKeyFingerprint is not set: record "
                f"it (saltKeyFingerprint: {actual}) in the stack file, so the salt key can "
                "never change unnoticed after this first deploy"
            ]
        return []
    if actual != fingerprint:
        return [
            f"has fingerprint {actual}, not the {fingerprint} recorded in "
            "gateway.saltKeyFingerprint: the salt key changed, and every credential the "
            "gateway stored would become unreadable; restore the original salt key"
        ]
    return []


def derive_agent_key(seed: str, agent: str, version: int) -> str:
    """The gateway key of `agent` at `version` (`sk-` and 64 hex characters)."""
    if len(seed) < MIN_SEED_CHARS:
        raise ValueError(
            f"gatewayAgentKeySeed has {len(seed)} characters: use at least {MIN_SEED_CHARS} "
            "(e.g. openssl rand -hex 32)"
        )
    message = f"swarmstack-gateway-key/{agent}/{version}".encode()
    return KEY_PREFIX + hmac.new(seed.encode(), message, hashlib.sha256).hexdigest()


def key_alias(agent: str) -> str:
    """The key's alias at the gateway (one live key per agent type carries it)."""
    return f"agent-{agent}"


def key_requests(
    spec: GatewaySpec,
    agents: Sequence[tuple[str, str]],
    degraded_models: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One request body per agent type (`agents`: name and model; `degraded_models`: the
    agents' cheaper models, by name), without the key."""
    degraded = dict(degraded_models or {})
    out: list[dict[str, Any]] = []
    for name, model in agents:
        key = spec.key(name)
        if key is None:
            raise ValueError(f"agent {name!r} has no gateway key (gateway.keys)")
        body: dict[str, Any] = {
            "key_alias": key_alias(name),
            "models": key_models(key, model, spec, degraded.get(name)),
            "metadata": {"agent": name, "key_version": key.key_version},
        }
        for field, value in (
            ("max_budget", key.max_budget_usd),
            ("rpm_limit", key.rpm_limit),
            ("tpm_limit", key.tpm_limit),
            ("max_parallel_requests", key.max_parallel_requests),
        ):
            if value is not None:
                body[field] = value
        if key.max_budget_usd is not None:
            body["budget_duration"] = key.budget_duration
        out.append({"agent": name, "request": body})
    return out
