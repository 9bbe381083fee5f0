"""Tool argument checks, the pure tools and the hashing embedder."""

from __future__ import annotations

import math

import pytest
from agent_worker.embedder import DIMENSIONS, embed
from agent_worker.state import TOOL_NAMES
from agent_worker.tools import (
    SCHEMAS,
    ToolError,
    parse_arguments,
    run_calculator,
    run_clock,
)


def test_every_tool_has_a_closed_object_schema() -> None:
    assert tuple(SCHEMAS) == TOOL_NAMES
    for spec in SCHEMAS.values():
        params = spec["parameters"]
        assert params["type"] == "object" and params["additionalProperties"] is False
        assert set(params["required"]) == set(params["properties"])


@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [
        ("calculator", "not json", "not JSON"),
        ("calculator", "[1]", "JSON object"),
        ("calculator", "{}", "missing"),
        ("calculator", '{"expression": "1", "x": 2}', "unknown argument"),
        ("retrieve", '{"query": "  "}', "non-empty"),
        ("clock", '{"utc_offset_hours": "2"}', "integer"),
        ("clock", '{"utc_offset_hours": true}', "integer"),
        ("clock", '{"utc_offset_hours": 99}', "out of range"),
    ],
)
def test_bad_arguments(name: str, arguments: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        parse_arguments(name, arguments)


def test_calculator_and_clock() -> None:
    assert run_calculator({"expression": "12*7+3"}) == {"expression": "12*7+3", "value": 87}
    with pytest.raises(ToolError, match="calculator"):
        run_calculator({"expression": "import os"})
    now = 1_700_000_000.0
    assert run_clock({"utc_offset_hours": 2}, now=now) == {
        "iso8601": "2023-11-15T00:13:20+02:00",
        "unix": 1_700_000_000,
    }


def test_embedder_is_deterministic_and_normalised() -> None:
    a = embed("Kafka consumer lag drives autoscaling")
    assert a == embed("kafka  CONSUMER lag drives autoscaling!")
    assert len(a) == DIMENSIONS
    assert math.isclose(sum(v * v for v in a), 1.0, rel_tol=1e-9)
    assert not any(embed("the of and"))  # stop words only: no features, zero vector


def test_embedder_ranks_the_related_text_higher() -> None:
    def cosine(x: list[float], y: list[float]) -> float:
        return sum(p * q for p, q in zip(x, y, strict=True))

    query = embed("how does kafka autoscaling work")
    kafka = embed("Agent tasks arrive on a Kafka topic; consumer lag drives KEDA autoscaling")
    redis = embed("Agent sessions are checkpointed to Redis after every step with a TTL")
    assert cosine(query, kafka) > cosine(query, redis)
