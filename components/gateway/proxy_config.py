"""LiteLLM's proxy `config.yaml`, rendered from the typed stack config.

One rendering, two targets: `render_proxy_config` takes where each model is reached
(`upstreams`: gateway model name -> OpenAI base URL), so the cluster passes the model
Services' in-cluster URLs and the local target passes 127.0.0.1 URLs, and nothing else
differs. Every secret is a reference the proxy resolves from its environment at start
(`os.environ/<NAME>`): the rendered dict holds no key, password or URL with credentials,
and the ConfigMap it becomes can be read by anyone who can read the namespace.

Every key below was read against LiteLLM's own source at `LITELLM_VERSION`:

- `model_list[].litellm_params` (`GenericLiteLLMParams` in litellm/types/router.py):
  `model` (`hosted_vllm/<served id>` for vLLM, `<provider>/<model>` for managed APIs),
  `api_base`, `api_key`, `rpm`, `tpm`, `timeout`, `stream_timeout`, `max_retries`.
  `max_retries: 0` leaves retries to the router alone (the provider client would retry
  again under it). vLLM needs no key; LiteLLM sends a placeholder.
- `router_settings` keys are `Router.__init__` arguments (litellm/router.py), which the
  proxy passes through (proxy_server.py ignores, with a warning, any other key):
  `routing_strategy`, `num_retries`, `retry_policy` (`RetryPolicy`: per exception type),
  `allowed_fails`, `cooldown_time`, `fallbacks`, `max_fallbacks`, `timeout`,
  `stream_timeout`, `enable_mid_stream_fallback_continuation`, `redis_host`,
  `redis_port`, `redis_password`. Retries only before the first token: the router reads a
  stream's first chunk inside the attempt, so a stream that fails before any token is
  retried or falls back; one that fails after content reached the caller is surfaced as
  is while `enable_mid_stream_fallback_continuation` is false (written out, not left to
  the default). Timeouts, rate limits and client errors are not retried at all
  (`retry_policy`), so a slow model never costs two upstream timeouts, and the agents'
  own backoff (honouring `Retry-After`) is the only retry of a 429.
- Redis: `router_settings.redis_*` shares deployments' rpm/tpm usage and cooldowns across
  the proxy's replicas; `general_settings.coordination_redis` (`CoordinationRedisParams`
  in litellm/proxy/_types.py) shares the keys' rate limits and spend counters. Both read
  the same `REDIS_*` variables; TLS settings (`REDIS_SSL`, `REDIS_SSL_CA_CERTS`) are read
  from the environment by LiteLLM's Redis client (litellm/_redis.py).
- `general_settings`: `master_key` and `database_url` from the environment (the proxy
  resolves `os.environ/` there itself), `store_model_in_db: false` (this file is the only
  source of models), `background_health_checks: false` (LiteLLM's `/health` calls every
  model, paid APIs included; nothing here polls it), and
  `allow_public_health_readiness_details: false`: the probes use `/health/liveliness` and
  `/health/readiness`, which call no model.
- `litellm_settings` are module attributes of `litellm`: `drop_params` (a parameter a
  provider does not take is dropped, not an error), `request_timeout` (the default of a
  call with no deployment timeout), `turn_off_message_logging` (prompts stay out of logs
  and callbacks), `json_logs`, and `callbacks: [prometheus]`, which mounts `/metrics` on
  the proxy's own port. `require_auth_for_metrics_endpoint: false`: this LiteLLM release
  answers `/metrics` without a key with 401 by default (its
  proxy/middleware/prometheus_auth_middleware.py), and the Istio agent that merges the
  app's metrics into the scraped port asks from inside the pod with no credentials, so
  the gateway's series would be missing. Callers of the API port cannot read `/metrics`
  instead: the mesh's AuthorizationPolicy admits them on every path but that one
  (components/traffic/mesh.py `gateway_callers_policy`).
- Session affinity: `litellm_settings.model_group_settings` (`ModelGroupSettings` in
  litellm/types/router.py) `.forward_client_headers_to_llm_api` lists the model groups
  whose calls carry the client's headers to the model: for those, the proxy copies every
  request header that starts with `x-` (except `x-stainless-*`; never its own key header)
  into the upstream call (`LiteLLMProxyRequestSetup._get_forwardable_headers` in
  litellm/proxy/litellm_pre_call_utils.py). It lists the stack's vLLM models, so the
  worker's session header (`x-swarmstack-session-id`, components/traffic/mesh.py) reaches
  the gateway's sidecar, which hashes the model's replicas on it. Managed API models are
  not listed: a direct call to a provider carries none of the client's `x-` headers (the
  mesh's own among them); a fallback from a vLLM model to one does (the proxy sets them on
  the request, before routing: checked against the real proxy), which sends the provider
  an opaque session id and the mesh's request ids, nothing secret. The proxy-wide
  `general_settings.forward_client_headers_to_llm_api` would send them to every model,
  and so would an empty list (LiteLLM reads it as every model): a stack without vLLM
  models renders none. LiteLLM also reads a header named `x-<vendor>-session-id` as the
  call's session id (`litellm_session_id`), so its logs group a session's calls.

`LITELLM_SALT_KEY`, which encrypts the credentials LiteLLM stores in Postgres, is not
part of the config: LiteLLM reads it from the environment only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from components.gateway.spec import GatewaySpec, ManagedModel, provider_key_env
from components.specs import ModelSpec
from components.traffic.timeouts import GatewayTimeouts, TimeoutSpec, gateway_timeouts

PORT = 4000  # the proxy's API, probes and /metrics
LIVENESS_PATH = "/health/liveliness"
READINESS_PATH = "/health/readiness"
METRICS_PATH = "/metrics"

# Environment variables the rendered config refers to (the pod sets them from Secrets).
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
SALT_KEY_ENV = "LITELLM_SALT_KEY"
DATABASE_URL_ENV = "DATABASE_URL"
REDIS_HOST_ENV = "REDIS_HOST"
REDIS_PORT_ENV = "REDIS_PORT"
REDIS_PASSWORD_ENV = "REDIS_PASSWORD"
REDIS_SSL_ENV = "REDIS_SSL"

# The exceptions the router retries (`RetryPolicy` fields): a failure before any token
# that another attempt can fix. Everything else is answered at once.
RETRIED = ("InternalServerErrorRetries", "ServiceUnavailableErrorRetries")
NOT_RETRIED = (
    "TimeoutErrorRetries",
    "RateLimitErrorRetries",
    "BadRequestErrorRetries",
    "AuthenticationErrorRetries",
    "ContentPolicyViolationErrorRetries",
    "NotFoundErrorRetries",
)


def env_ref(name: str) -> str:
    """How the proxy config names a value it reads from its environment."""
    return f"os.environ/{name}"


def gateway_model_names(spec: GatewaySpec, models: Sequence[ModelSpec]) -> list[str]:
    """Every model the gateway serves: the stack's, then the managed ones."""
    return [m.name for m in models] + [m.name for m in spec.managed_models]


def timeouts_of(
    spec: GatewaySpec, models: Sequence[ModelSpec], timeouts: TimeoutSpec
) -> GatewayTimeouts:
    """The gateway's timeout hops for this stack (components/traffic/timeouts.py)."""
    return gateway_timeouts(
        models,
        timeouts,
        managed_timeouts_s={m.name: m.timeout_s for m in spec.managed_models},
        fallbacks=spec.fallbacks(),
    )


def _limits(rpm: int | None, tpm: int | None) -> dict[str, int]:
    return {k: v for k, v in (("rpm", rpm), ("tpm", tpm)) if v is not None}


def _vllm_deployment(
    model: ModelSpec, spec: GatewaySpec, api_base: str, timeout_s: int
) -> dict[str, Any]:
    route = spec.route(model.name)
    return {
        "model_name": model.name,
        "litellm_params": {
            "model": f"hosted_vllm/{model.model}",
            "api_base": api_base,
            **_limits(route.rpm, route.tpm),
            "timeout": timeout_s,
            "stream_timeout": timeout_s,
            "max_retries": 0,
        },
        "model_info": {"id": model.name},
    }


def _managed_deployment(model: ManagedModel) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model": model.model,
        "api_key": env_ref(provider_key_env(model.provider)),
    }
    if model.api_base is not None:
        params["api_base"] = model.api_base
    params.update(_limits(model.rpm, model.tpm))
    params.update(timeout=model.timeout_s, stream_timeout=model.timeout_s, max_retries=0)
    return {"model_name": model.name, "litellm_params": params, "model_info": {"id": model.name}}


def _redis_refs() -> dict[str, str]:
    return {
        "host": env_ref(REDIS_HOST_ENV),
        "port": env_ref(REDIS_PORT_ENV),
        "password": env_ref(REDIS_PASSWORD_ENV),
    }


def render_proxy_config(
    spec: GatewaySpec,
    models: Sequence[ModelSpec],
    timeouts: TimeoutSpec,
    upstreams: Mapping[str, str],
    *,
    database: bool = True,
) -> dict[str, Any]:
    """LiteLLM's proxy config for the stack's `models` and the gateway `spec`.

    `upstreams` maps each stack model's name to its OpenAI base URL (`.../v1`); a model
    without one is an error, since the proxy would start without it. `database: False`
    leaves `database_url` out (a proxy without Postgres: no virtual keys, only the master
    key), for a target that runs none."""
    missing = [m.name for m in models if m.name not in upstreams]
    if missing:
        raise ValueError(f"no upstream URL for model(s) {', '.join(missing)}")
    chain = timeouts_of(spec, models, timeouts)
    model_list = [
        _vllm_deployment(m, spec, upstreams[m.name], chain.upstream_s[m.name]) for m in models
    ]
    model_list += [_managed_deployment(m) for m in spec.managed_models]
    fallbacks = spec.fallbacks()
    longest_upstream = max(chain.upstream_s.values())
    redis = _redis_refs()
    router: dict[str, Any] = {
        "routing_strategy": "simple-shuffle",
        "num_retries": spec.num_retries,
        "retry_policy": {
            **{name: spec.num_retries for name in RETRIED},
            **{name: 0 for name in NOT_RETRIED},
        },
        "allowed_fails": spec.allowed_fails,
        "cooldown_time": spec.cooldown_s,
        "timeout": longest_upstream,
        "stream_timeout": longest_upstream,
        "enable_mid_stream_fallback_continuation": False,
        # Without this pre-call check LiteLLM only weighs deployments by their rpm/tpm
        # under simple-shuffle and never refuses one over its limit.
        "optional_pre_call_checks": ["enforce_model_rate_limits"],
        "redis_host": redis["host"],
        "redis_port": redis["port"],
        "redis_password": redis["password"],
    }
    if fallbacks:
        router["fallbacks"] = [{name: targets} for name, targets in fallbacks.items()]
        router["max_fallbacks"] = max(len(t) for t in fallbacks.values())
    general: dict[str, Any] = {
        "master_key": env_ref(MASTER_KEY_ENV),
        "store_model_in_db": False,
        "background_health_checks": False,
        "allow_public_health_readiness_details": False,
        "coordination_redis": {**redis, "ssl": env_ref(REDIS_SSL_ENV)},
    }
    if database:
        general["database_url"] = env_ref(DATABASE_URL_ENV)
    config: dict[str, Any] = {
        "model_list": model_list,
        "router_settings": router,
        "litellm_settings": {
            "drop_params": True,
            "request_timeout": longest_upstream,
            "turn_off_message_logging": True,
            "json_logs": True,
            "callbacks": ["prometheus"],
            "require_auth_for_metrics_endpoint": False,
        },
        "general_settings": general,
    }
    if models:  # LiteLLM reads an empty list as every model
        config["litellm_settings"]["model_group_settings"] = {
            "forward_client_headers_to_llm_api": [m.name for m in models]
        }
    return config
