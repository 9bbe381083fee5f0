"""The local target's model gateway: LiteLLM's real proxy with the config the gateway
component renders (`components.gateway.proxy_config.render_proxy_config`), pointed at
127.0.0.1 instead of the model Services. One rendering, two targets: only `upstreams`
(gateway model name -> base URL) and `database=False` differ from the cluster's. The
local target (`start_local_gateway`) renders the stack's own gateway that way, with its
managed models left out (`stand_in_gateway` says why).

Without Postgres the proxy has no virtual keys: callers use the master key, and the
per-key budgets and limits of `gateway.keys` cannot run here (loadtests/README.md,
"Gateway", says what fails). What runs is everything a config file and Redis carry:
routing, fallbacks, retries before the first token, cooldowns, per-deployment rpm/tpm,
with the router's counters in a real Redis.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from stacks.config import StackConfig


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


def stand_in_gateway(config: StackConfig) -> tuple[GatewaySpec, list[ModelSpec]]:
    """The stack's gateway as the local target runs it: the stack's own `gateway` spec
    (retries, cooldowns, routes' rpm/tpm and fallbacks among the stack's models) with its
    managed models left out, and every stack model served by the local model under the
    stack model's own name, so an agent asks for the name its Deployment renders.

    Managed models are left out, with every fallback to one, because their API keys come
    from a Secret and their APIs from the internet, neither of which this machine has
    (`local_proxy_env` would refuse the key by name)."""
    if config.gateway is None:
        raise LocalGatewayError("the stack declares no gateway: its agents call models directly")
    managed = {m.name for m in config.gateway.managed_models}
    routes = [
        r.model_copy(update={"fallbacks": [f for f in r.fallbacks if f not in managed]})
        for r in config.gateway.routes
    ]
    spec = config.gateway.model_copy(update={"managed_models": [], "routes": routes})
    return spec, [local_model(m.name) for m in config.models]


@dataclass(frozen=True)
class LocalGateway:
    """The local target's gateway: the proxy, its Redis, and the key file agents read."""

    proxy: GatewayService
    redis: Service
    key_file: Path

    @property
    def services(self) -> tuple[Service, Service]:
        """In start order (stop in reverse: the proxy before its Redis)."""
        return (self.redis, self.proxy)

    def stop(self) -> None:
        self.proxy.stop()
        self.redis.stop()


def write_key_file(path: Path, key: str) -> Path:
    """`key` in a file only its owner reads (as a mounted Secret key: the value, no newline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return path


def start_local_gateway(
    config: StackConfig,
    *,
    vllm_base_url: str,
    workdir: Path,
    python: str | None = None,
    timeout_s: float = 120,
) -> LocalGateway:
    """The stack's gateway (`stand_in_gateway`, the stack's timeouts) in front of the local
    vLLM (`vllm_base_url`, `.../v1`), started by `start_gateway`.

    The agents' key file holds the run's master key: without Postgres the proxy has no
    virtual keys (module docstring), and the master key is the one key it accepts."""
    spec, models = stand_in_gateway(config)
    upstreams = {m.name: vllm_base_url for m in models}
    proxy_config = local_proxy_config(spec, models, upstreams, config.timeouts)
    proxy, redis = start_gateway(
        spec, proxy_config, workdir=workdir, python=python, timeout_s=timeout_s
    )
    key_file = write_key_file(workdir / "agent-key", proxy.master_key)
    return LocalGateway(proxy, redis, key_file)
