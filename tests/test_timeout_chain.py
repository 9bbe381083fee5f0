"""The timeouts of a model call's hops: each above the one inside it, for every model of
every stack, from the model's e2e P99 outwards."""

from __future__ import annotations

from typing import Any

import pytest

from components.traffic.timeouts import (
    MODEL_ROUTE,
    OBJECTIVE,
    WORKER,
    Hop,
    TimeoutChain,
    TimeoutSpec,
    timeout_chain,
)
from stacks.config import ConfigError, load
from tests.vllm_support import stack_configs

Raw = dict[str, Any]


@pytest.mark.parametrize("stack", sorted(stack_configs()))
def test_every_models_chain_is_ordered_above_its_p99(stack: str) -> None:
    config = stack_configs()[stack]
    for model in config.models:
        chain = timeout_chain(model, config.timeouts)
        assert chain.disorders() == []
        assert [h.name for h in chain.hops] == [OBJECTIVE, MODEL_ROUTE, WORKER]
        assert chain.hops[0].seconds == model.slo.e2e_p99_s
        assert model.slo.e2e_p99_s < chain.model_route_s < chain.worker_s


def test_the_pilot_worker_waits_beyond_the_slowest_models_p99() -> None:
    """The worker's built-in 120 s equals the pilot llama's e2e P99: the stack's chain
    renders a deadline above it, one margin beyond the route."""
    config = stack_configs()["pilot"]
    llama = next(m for m in config.models if m.name == "llama31-8b")
    chain = timeout_chain(llama, config.timeouts)
    margin = config.timeouts.hop_margin_s
    assert llama.slo.e2e_p99_s == 120
    assert (chain.model_route_s, chain.worker_s) == (120 + margin, 120 + 2 * margin)


def test_gateway_hops_sit_between_the_model_route_and_the_worker() -> None:
    model = stack_configs()["pilot"].models[0]
    chain = timeout_chain(
        model, TimeoutSpec.model_validate({"hopMarginS": 5}), ("gateway upstream", "agent route")
    )
    p99 = model.slo.e2e_p99_s
    assert [(h.name, h.seconds) for h in chain.hops] == [
        (OBJECTIVE, p99),
        (MODEL_ROUTE, p99 + 5),
        ("gateway upstream", p99 + 10),
        ("agent route", p99 + 15),
        (WORKER, p99 + 20),
    ]
    assert chain.disorders() == []


def test_a_hop_that_gives_up_first_is_named() -> None:
    chain = TimeoutChain("m", (Hop(OBJECTIVE, 60), Hop(MODEL_ROUTE, 60), Hop(WORKER, 90)))
    assert chain.disorders() == [
        f"m: {MODEL_ROUTE} (60 s) must exceed {OBJECTIVE} (60 s)",
    ]


def test_a_margin_of_zero_is_refused_with_its_path(pilot_raw: Raw) -> None:
    raw = {**pilot_raw, "timeouts": {"hopMarginS": 0}}
    with pytest.raises(ConfigError) as caught:
        load(raw, "us-east-1", "stacks/Pulumi.pilot.yaml")
    assert "timeouts.hopMarginS" in str(caught.value)
    assert "greater than or equal to 1" in str(caught.value)
