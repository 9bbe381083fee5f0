"""The gateway's typed config and the LiteLLM proxy config rendered from it: every model
of the stack behind it, secrets only as environment references, retries only before the
first token, timeouts from the chain, one rendering for both targets."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from agent_worker.model import SESSION_HEADER as WORKER_SESSION_HEADER
from pydantic import ValidationError

from components.gateway.keys import key_requests
from components.gateway.proxy_config import (
    DATABASE_URL_ENV,
    MASTER_KEY_ENV,
    NOT_RETRIED,
    RETRIED,
    render_proxy_config,
    timeouts_of,
)
from components.gateway.spec import (
    IMAGE_REPOSITORY,
    LITELLM_VERSION,
    GatewaySpec,
    key_models,
)
from components.traffic.mesh import SESSION_HEADER
from components.traffic.timeouts import (
    GATEWAY_ROUTE,
    GATEWAY_UPSTREAM,
    MODEL_ROUTE,
    OBJECTIVE,
    WORKER,
    TimeoutSpec,
    timeout_chain,
)
from stacks.config import ConfigError, StackConfig, load

Raw = dict[str, Any]

GATEWAY: Raw = {
    "routes": [
        {"model": "qwen25-7b", "rpm": 600, "tpm": 400000, "fallbacks": ["llama31-8b", "mini"]},
    ],
    "managedModels": [{"name": "mini", "model": "openai/gpt-4o-mini", "timeoutS": 90}],
    "keys": [
        {"agent": "researcher", "maxBudgetUsd": 25, "budgetDuration": "1d", "rpmLimit": 120},
        {"agent": "concierge", "tpmLimit": 200000},
    ],
}


def with_gateway(pilot_raw: Raw, gateway: Raw | None = None) -> Raw:
    raw = copy.deepcopy(pilot_raw)
    raw["gateway"] = copy.deepcopy(GATEWAY if gateway is None else gateway)
    return raw


def loaded(pilot_raw: Raw, gateway: Raw | None = None) -> StackConfig:
    return load(with_gateway(pilot_raw, gateway), "us-east-1", "Pulumi.pilot.yaml")


def errors_of(raw: Raw) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(raw, "us-east-1", "Pulumi.pilot.yaml")
    return [str(p) for p in caught.value.problems]


def cluster_upstreams(config: StackConfig) -> dict[str, str]:
    ns = config.namespaces.models
    return {m.name: f"http://{m.name}.{ns}.svc.cluster.local:8000/v1" for m in config.models}


def render(config: StackConfig, **kwargs: Any) -> dict[str, Any]:
    assert config.gateway is not None
    return render_proxy_config(
        config.gateway, config.models, config.timeouts, cluster_upstreams(config), **kwargs
    )


def strings(value: Any) -> list[tuple[str, str]]:
    """(key, value) of every string leaf of a rendered config."""
    out: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, str):
                out.append((str(k), v))
            else:
                out += strings(v)
    elif isinstance(value, list):
        for item in value:
            out += strings(item)
    return out


# --------------------------------------------------------------------------- the spec


def test_the_default_image_is_the_non_root_release_the_config_was_read_against() -> None:
    spec = GatewaySpec()
    assert spec.image.reference == f"{IMAGE_REPOSITORY}:v{LITELLM_VERSION}"
    assert "non_root" in spec.image.repository


def test_one_replica_is_refused() -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 2"):
        GatewaySpec.model_validate({"replicas": 1})


def test_a_model_route_listed_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"routes\[\]\.model: qwen25-7b appear"):
        GatewaySpec.model_validate({"routes": [{"model": "qwen25-7b"}, {"model": "qwen25-7b"}]})


def test_a_managed_model_must_name_its_provider() -> None:
    with pytest.raises(ValidationError, match="should match pattern"):
        GatewaySpec.model_validate({"managedModels": [{"name": "mini", "model": "gpt-4o-mini"}]})


def test_a_managed_model_api_base_must_be_https() -> None:
    with pytest.raises(ValidationError, match="should match pattern"):
        GatewaySpec.model_validate(
            {
                "managedModels": [
                    {"name": "m", "model": "openai/gpt-4o", "apiBase": "http://api.example.com"}
                ]
            }
        )


def test_the_pilot_with_a_gateway_loads(pilot_raw: Raw) -> None:
    config = loaded(pilot_raw)
    assert config.gateway is not None
    assert [k.agent for k in config.gateway.keys] == ["researcher", "concierge"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda g: g["routes"][0].update(model="mistral"),
            "gateway.routes[0].model: 'mistral' is not a model this stack serves",
        ),
        (
            lambda g: g["routes"][0].update(fallbacks=["gpt-5"]),
            "gateway.routes[0].fallbacks[0]: 'gpt-5' is not a gateway model",
        ),
        (
            lambda g: g["routes"][0].update(fallbacks=["qwen25-7b"]),
            "gateway.routes[0].fallbacks[0]: 'qwen25-7b' falls back to itself",
        ),
        (
            lambda g: g["managedModels"][0].update(name="llama31-8b"),
            "gateway.managedModels[0].name: 'llama31-8b' is already a stack model's name",
        ),
        (
            lambda g: g["keys"][0].update(agent="nobody"),
            "gateway.keys[0].agent: 'nobody' is not an agent type of this stack",
        ),
        (
            lambda g: g["keys"].pop(1),
            "agents[1]: agent 'concierge' calls its model through the gateway, but "
            "gateway.keys has no key for it",
        ),
        (
            lambda g: g["keys"][1].update(models=["llama31-8b"]),
            "gateway.keys[1].models: leaves out 'qwen25-7b', the model agent 'concierge' calls",
        ),
        (
            lambda g: g["keys"][1].update(models=["qwen25-7b", "claude"]),
            "gateway.keys[1].models[1]: 'claude' is not a gateway model",
        ),
    ],
)
def test_each_gateway_mistake_is_named(pilot_raw: Raw, change: Any, expected: str) -> None:
    gateway = copy.deepcopy(GATEWAY)
    change(gateway)
    errors = errors_of(with_gateway(pilot_raw, gateway))
    assert any(e.startswith(expected) for e in errors), errors


def test_a_gateway_needs_the_shared_store(pilot_raw: Raw) -> None:
    raw = with_gateway(pilot_raw)
    del raw["dataPlane"]["redis"]
    assert any(
        e.startswith("gateway: needs dataPlane.redis: the gateway's replicas share rate limits")
        for e in errors_of(raw)
    )


def test_a_key_without_models_may_call_its_model_and_that_models_fallbacks(
    pilot_raw: Raw,
) -> None:
    config = loaded(pilot_raw)
    assert config.gateway is not None
    concierge = config.gateway.key("concierge")
    assert concierge is not None
    assert key_models(concierge, "qwen25-7b", config.gateway) == ["qwen25-7b", "llama31-8b", "mini"]


@pytest.mark.parametrize(
    ("agent", "degraded", "expected"),
    [
        (
            1,
            "qwen25-7b",
            "agents[1].degradedModel: 'qwen25-7b' is the agent's own model: name a cheaper "
            "gateway model (one of llama31-8b, mini) or remove it",
        ),
        (
            0,
            "gpt-5",
            "agents[0].degradedModel: 'gpt-5' is not a gateway model (one of qwen25-7b, "
            "llama31-8b, mini)",
        ),
    ],
)
def test_a_bad_degraded_model_is_named_with_what_is_valid(
    pilot_raw: Raw, agent: int, degraded: str, expected: str
) -> None:
    raw = with_gateway(pilot_raw)
    raw["agents"][agent]["degradedModel"] = degraded
    assert expected in errors_of(raw)


def test_a_degraded_model_needs_the_gateway(pilot_raw: Raw) -> None:
    raw = copy.deepcopy(pilot_raw)
    del raw["gateway"]
    raw["agents"][0]["degradedModel"] = "qwen25-7b"
    assert errors_of(raw) == [
        "agents[0].degradedModel: 'qwen25-7b': a cheaper model is reached through the model "
        "gateway only (the worker switches to it when the gateway says a budget is spent); "
        "add gateway: or remove degradedModel"
    ]


def test_a_key_that_lists_its_models_must_list_the_degraded_model(pilot_raw: Raw) -> None:
    gateway = copy.deepcopy(GATEWAY)
    gateway["keys"][0]["models"] = ["llama31-8b"]
    raw = with_gateway(pilot_raw, gateway)
    raw["agents"][0]["degradedModel"] = "mini"
    assert errors_of(raw) == [
        "gateway.keys[0].models: leaves out 'mini', the degradedModel of agent 'researcher': "
        "add it (the key could not call it when the budget is spent)"
    ]
    gateway["keys"][0]["models"] = ["llama31-8b", "mini"]
    raw = with_gateway(pilot_raw, gateway)
    raw["agents"][0]["degradedModel"] = "mini"
    config = load(raw, "us-east-1", "Pulumi.pilot.yaml")
    assert config.agents[0].degraded_model == "mini"


def test_a_key_without_models_may_call_the_degraded_model_and_its_fallbacks(
    pilot_raw: Raw,
) -> None:
    """Listed once each, the agent's own model and fallbacks first."""
    config = loaded(pilot_raw)
    assert config.gateway is not None
    researcher = config.gateway.key("researcher")
    assert researcher is not None
    assert key_models(researcher, "llama31-8b", config.gateway) == ["llama31-8b"]
    assert key_models(researcher, "llama31-8b", config.gateway, "qwen25-7b") == [
        "llama31-8b",
        "qwen25-7b",
        "mini",
    ]
    [request] = key_requests(config.gateway, [("researcher", "llama31-8b")], {"researcher": "mini"})
    assert request["request"]["models"] == ["llama31-8b", "mini"]


# --------------------------------------------------------------------------- the rendering


def test_every_stack_model_is_served_by_its_service_and_served_id(pilot_raw: Raw) -> None:
    config = loaded(pilot_raw)
    deployments = {d["model_name"]: d["litellm_params"] for d in render(config)["model_list"]}
    assert sorted(deployments) == ["llama31-8b", "mini", "qwen25-7b"]
    for model in config.models:
        params = deployments[model.name]
        assert params["model"] == f"hosted_vllm/{model.model}"
        assert params["api_base"] == cluster_upstreams(config)[model.name]
        assert params["max_retries"] == 0
    assert (deployments["qwen25-7b"]["rpm"], deployments["qwen25-7b"]["tpm"]) == (600, 400000)
    assert "rpm" not in deployments["llama31-8b"]
    assert deployments["mini"]["model"] == "openai/gpt-4o-mini"
    assert deployments["mini"]["api_key"] == "os.environ/OPENAI_API_KEY"


def test_no_secret_value_is_rendered_only_references(pilot_raw: Raw) -> None:
    rendered = render(loaded(pilot_raw))
    secretish = ("key", "password", "database_url", "token", "secret")
    for key, value in strings(rendered):
        if any(word in key for word in secretish):
            assert value.startswith("os.environ/"), (key, value)
        assert not value.startswith("sk-"), (key, value)
        assert "@" not in value, (key, value)  # no credentials inside a URL
    general = rendered["general_settings"]
    assert general["master_key"] == f"os.environ/{MASTER_KEY_ENV}"
    assert general["database_url"] == f"os.environ/{DATABASE_URL_ENV}"


def test_redis_is_shared_by_the_router_and_the_key_limits(pilot_raw: Raw) -> None:
    rendered = render(loaded(pilot_raw))
    router, coordination = rendered["router_settings"], rendered["general_settings"]
    assert router["redis_host"] == "os.environ/REDIS_HOST"
    assert router["redis_password"] == "os.environ/REDIS_PASSWORD"
    assert coordination["coordination_redis"]["host"] == "os.environ/REDIS_HOST"
    assert coordination["coordination_redis"]["port"] == router["redis_port"]


def test_deployment_rpm_and_tpm_limits_are_enforced_not_only_weighed(pilot_raw: Raw) -> None:
    """LiteLLM refuses a deployment over its rpm/tpm only with this pre-call check (the
    real-proxy e2e test's 429 depends on it); the pilot's routes set limits."""
    rendered = render(loaded(pilot_raw))
    assert any("rpm" in d["litellm_params"] for d in rendered["model_list"])
    assert rendered["router_settings"]["optional_pre_call_checks"] == ["enforce_model_rate_limits"]


def test_only_failures_before_the_first_token_are_retried(pilot_raw: Raw) -> None:
    router = render(loaded(pilot_raw))["router_settings"]
    assert router["enable_mid_stream_fallback_continuation"] is False
    assert router["num_retries"] == 2
    policy = router["retry_policy"]
    assert {policy[name] for name in NOT_RETRIED} == {0}
    assert {policy[name] for name in RETRIED} == {2}
    assert router["fallbacks"] == [{"qwen25-7b": ["llama31-8b", "mini"]}]
    assert router["max_fallbacks"] == 2


def test_the_stack_models_get_the_workers_session_header_and_managed_models_do_not(
    pilot_raw: Raw,
) -> None:
    """LiteLLM forwards a client's `x-` headers (never `x-stainless-*`) to the models its
    `model_group_settings` lists: the worker's session header reaches the vLLM models,
    whose DestinationRules hash on it; a managed API is sent none of them."""
    rendered = render(loaded(pilot_raw))
    groups = rendered["litellm_settings"]["model_group_settings"]
    assert groups == {"forward_client_headers_to_llm_api": ["qwen25-7b", "llama31-8b"]}
    assert "forward_client_headers_to_llm_api" not in rendered["general_settings"]
    assert WORKER_SESSION_HEADER == SESSION_HEADER
    assert SESSION_HEADER.startswith("x-") and not SESSION_HEADER.startswith("x-stainless")
    assert not SESSION_HEADER.startswith("x-litellm")  # the proxy's own headers


def test_the_metrics_endpoint_answers_the_istio_agent_without_a_key(pilot_raw: Raw) -> None:
    """The merged metrics port's agent scrapes /metrics with no credentials; LiteLLM's
    default would answer it 401, leaving the gateway without series."""
    rendered = render(loaded(pilot_raw))
    assert rendered["litellm_settings"]["callbacks"] == ["prometheus"]
    assert rendered["litellm_settings"]["require_auth_for_metrics_endpoint"] is False


def test_a_gateway_of_managed_models_only_forwards_no_client_header() -> None:
    """An empty list means every model to LiteLLM: with no vLLM model none is rendered."""
    spec = GatewaySpec.model_validate(
        {"managedModels": [{"name": "mini", "model": "openai/gpt-4o-mini"}]}
    )
    rendered = render_proxy_config(spec, [], TimeoutSpec(), {})
    assert "model_group_settings" not in rendered["litellm_settings"]


def test_the_health_endpoints_call_no_model(pilot_raw: Raw) -> None:
    general = render(loaded(pilot_raw))["general_settings"]
    assert general["background_health_checks"] is False
    assert general["allow_public_health_readiness_details"] is False
    assert general["store_model_in_db"] is False


def test_one_rendering_two_targets_differ_only_in_the_upstreams(pilot_raw: Raw) -> None:
    config = loaded(pilot_raw)
    assert config.gateway is not None
    local = {m.name: f"http://127.0.0.1:{8100 + i}/v1" for i, m in enumerate(config.models)}
    on_laptop = render_proxy_config(config.gateway, config.models, config.timeouts, local)
    in_cluster = render(config)
    for deployment in on_laptop["model_list"]:
        deployment["litellm_params"].pop("api_base", None)
    for deployment in in_cluster["model_list"]:
        deployment["litellm_params"].pop("api_base", None)
    assert json.dumps(on_laptop, sort_keys=True) == json.dumps(in_cluster, sort_keys=True)


def test_a_model_without_an_upstream_is_refused(pilot_raw: Raw) -> None:
    config = loaded(pilot_raw)
    assert config.gateway is not None
    with pytest.raises(ValueError, match="no upstream URL for model\\(s\\) llama31-8b"):
        render_proxy_config(
            config.gateway, config.models, config.timeouts, {"qwen25-7b": "http://q/v1"}
        )


def test_without_a_database_no_database_url_is_rendered(pilot_raw: Raw) -> None:
    assert "database_url" not in render(loaded(pilot_raw), database=False)["general_settings"]


# --------------------------------------------------------------------------- timeouts


def test_each_deployment_waits_one_margin_beyond_its_model_route(pilot_raw: Raw) -> None:
    config = loaded(pilot_raw)
    deployments = {d["model_name"]: d["litellm_params"] for d in render(config)["model_list"]}
    margin = config.timeouts.hop_margin_s
    for model in config.models:
        route = timeout_chain(model, config.timeouts).model_route_s
        assert deployments[model.name]["timeout"] == route + margin
        assert deployments[model.name]["stream_timeout"] == route + margin
    assert deployments["mini"]["timeout"] == 90


def test_the_gateway_chain_orders_every_hop_and_covers_the_fallbacks(pilot_raw: Raw) -> None:
    config = loaded(pilot_raw)
    assert config.gateway is not None
    hops = timeouts_of(config.gateway, config.models, config.timeouts)
    margin = config.timeouts.hop_margin_s
    # qwen (p99 60 s): upstream 60+30, then llama (p99 120 s) 120+30, then mini 90.
    assert hops.upstream_s == {"qwen25-7b": 90, "llama31-8b": 150, "mini": 90}
    assert hops.route_s == 90 + 150 + 90 + margin
    assert hops.worker_s == hops.route_s + margin
    for model in config.models:
        chain = hops.chains[model.name]
        assert [h.name for h in chain.hops] == [
            OBJECTIVE,
            MODEL_ROUTE,
            GATEWAY_UPSTREAM,
            GATEWAY_ROUTE,
            WORKER,
        ]
        assert chain.disorders() == []


def test_a_bigger_margin_moves_every_gateway_hop(pilot_raw: Raw) -> None:
    config = loaded(pilot_raw)
    assert config.gateway is not None
    wide = TimeoutSpec.model_validate({"hopMarginS": 40})
    rendered = render_proxy_config(config.gateway, config.models, wide, cluster_upstreams(config))
    qwen = next(d for d in rendered["model_list"] if d["model_name"] == "qwen25-7b")
    assert qwen["litellm_params"]["timeout"] == 60 + 40 + 40
    assert rendered["router_settings"]["timeout"] == 120 + 40 + 40
