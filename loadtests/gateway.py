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

from components.gateway.proxy_config import (
    REDIS_HOST_ENV,
    REDIS_PASSWORD_ENV,
    REDIS_PORT_ENV,
    REDIS_SSL_ENV,
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


def start_gateway(
    config: Mapping[str, Any],
    *,
    workdir: Path,
    python: str | None = None,
    timeout_s: float = 120,
) -> tuple[GatewayService, Service]:
    """A password-protected Redis (the router's shared counters) and the proxy on it."""
    password = secrets.token_urlsafe(18)
    redis = services.start_redis(workdir=workdir / "redis", appendonly=False, password=password)
    env = {
        REDIS_HOST_ENV: "127.0.0.1",
        REDIS_PORT_ENV: str(redis.port),
        REDIS_PASSWORD_ENV: password,
        REDIS_SSL_ENV: "False",
    }
    try:
        proxy = services.start_litellm(
            config, workdir=workdir / "litellm", env=env, python=python, timeout_s=timeout_s
        )
    except BaseException:
        redis.stop()
        raise
    return proxy, redis
