"""The local target's model gateway: LiteLLM's real proxy with the config the gateway
component renders (`components.gateway.proxy_config.render_proxy_config`), pointed at
127.0.0.1 instead of the model Services. One rendering, two targets: only `upstreams`
(gateway model name -> base URL) and `database=False` differ from the cluster's.

Without Postgres the proxy has no virtual keys: callers use the master key, and the
per-key budgets and limits of `gateway.keys` cannot run here (loadtests/README.md,
"Gateway", says what fails). What runs is everything a config file and Redis carry:
routing, fallbacks, retries before the first token, cooldowns, per-deployment rpm/tpm,
with the router's counters in a real Redis.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from components.gateway.proxy import RedisAccess, proxy_environment
from components.gateway.proxy_config import (
    MASTER_KEY_ENV,
    REDIS_PASSWORD_ENV,
    SALT_KEY_ENV,
    render_proxy_config,
)
from components.gateway.spec import GatewaySpec
from components.specs import ModelSpec
from components.traffic.timeouts import TimeoutSpec
from loadtests import services
from loadtests.local_model import LOCAL_MODEL
from loadtests.services import GatewayService, Service


def local_model(name: str) -> ModelSpec:
    """The local model under another gateway name (every gateway model of the local
    target is the same small model; the names give them different routes)."""
    return LOCAL_MODEL.model_copy(update={"name": name})


def local_proxy_config(
    spec: GatewaySpec,
    models: Sequence[ModelSpec],
    upstreams: Mapping[str, str],
    timeouts: TimeoutSpec | None = None,
) -> dict[str, Any]:
    """The component's rendering with local upstreams and no database."""
    return render_proxy_config(spec, models, timeouts or TimeoutSpec(), upstreams, database=False)


class LocalGatewayError(ValueError):
    """The proxy's rendered environment has a secret this machine does not supply."""


def local_proxy_env(spec: GatewaySpec, *, redis_port: int, redis_password: str) -> dict[str, str]:
    """The proxy container's rendered environment (`proxy_environment`, without a
    database) for this machine: its plain settings as rendered, Redis on loopback without
    TLS, and each Secret reference resolved here. The master and salt keys are generated
    per run by `services.start_litellm`; any other Secret (a managed provider's key) has
    no local value, so it is refused by name."""
    redis = RedisAccess(
        host="127.0.0.1", port=redis_port, password_secret="local", password_key="local"
    )
    local_secrets = {REDIS_PASSWORD_ENV: redis_password}
    generated = {MASTER_KEY_ENV, SALT_KEY_ENV}
    env: dict[str, str] = {}
    for entry in proxy_environment(spec, redis, database_enabled=False):
        name = entry["name"]
        if "value" in entry:
            env[name] = entry["value"]
        elif name in local_secrets:
            env[name] = local_secrets[name]
        elif name not in generated:
            raise LocalGatewayError(
                f"{name} comes from a Secret in the pod and has no local value "
                "(managed model keys cannot be served here)"
            )
    return env


def start_gateway(
    spec: GatewaySpec,
    config: Mapping[str, Any],
    *,
    workdir: Path,
    python: str | None = None,
    timeout_s: float = 120,
) -> tuple[GatewayService, Service]:
    """A password-protected Redis (the router's shared counters) and the proxy on it,
    with `spec`'s rendered environment (`local_proxy_env`) and `config`."""
    password = secrets.token_urlsafe(18)
    redis = services.start_redis(workdir=workdir / "redis", appendonly=False, password=password)
    try:
        env = local_proxy_env(spec, redis_port=redis.port, redis_password=password)
    except BaseException:
        redis.stop()
        raise
    try:
        proxy = services.start_litellm(
            config, workdir=workdir / "litellm", env=env, python=python, timeout_s=timeout_s
        )
    except BaseException:
        redis.stop()
        raise
    return proxy, redis
