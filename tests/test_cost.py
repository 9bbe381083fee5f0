"""`swarmstack cost`'s pure parts: windows, options, Prometheus answers and the replica
price of the pilot's models (the Redis side is tests/e2e/test_cost_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.observe.alerts import replica_usd_per_hour
from stacks import cost
from stacks.config import load_file

PILOT = Path(__file__).resolve().parent.parent / "stacks" / "Pulumi.pilot.yaml"


def test_windows_and_times() -> None:
    assert cost.parse_duration("90s") == 90
    assert cost.parse_duration("15m") == 900
    assert cost.parse_duration("2h") == 7200
    assert cost.parse_duration("1d") == 86400
    for bad in ("0h", "1w", "h", "-1h", "1.5h"):
        with pytest.raises(cost.CostError, match=r"--window: .* is not a duration"):
            cost.parse_duration(bad)
    assert cost.parse_since("2026-12-01T00:00:00Z") == 1796083200
    assert cost.parse_since("2026-12-01T00:00:00") == 1796083200  # naive is UTC
    assert cost.parse_since("2026-12-01T01:00:00+01:00") == 1796083200
    with pytest.raises(cost.CostError, match="--since: 'yesterday' is not an ISO-8601 time"):
        cost.parse_since("yesterday")


def test_assignments() -> None:
    assert cost.tokens_per_second_arg(["Qwen/Qwen2.5-7B-Instruct=12.5"]) == {
        "Qwen/Qwen2.5-7B-Instruct": 12.5
    }
    with pytest.raises(cost.CostError, match="--tokens-per-second: 'm' is not NAME=VALUE"):
        cost.tokens_per_second_arg(["m"])
    with pytest.raises(cost.CostError, match="--tokens-per-second m=x: not a number"):
        cost.tokens_per_second_arg(["m=x"])
    with pytest.raises(cost.CostError, match="--replicas m=0: must be a whole number above 0"):
        cost.replicas_arg(["m=0"])


def test_tokens_per_second_from_a_prometheus_answer() -> None:
    """The body of GET /api/v1/query for an instant vector, in the Prometheus HTTP API's
    documented shape (written here, not fetched from a server)."""
    body = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"model": "a"}, "value": [1796083200.0, "41.5"]},
                {"metric": {"model": "b"}, "value": [1796083200.0, "0"]},  # idle: no price
            ],
        },
    }
    assert cost.tokens_per_second_from_prometheus(body) == {"a": 41.5}
    with pytest.raises(cost.CostError, match="Prometheus answered 'error': bad_data"):
        cost.tokens_per_second_from_prometheus({"status": "error", "error": "bad_data"})
    assert cost.prometheus_query(3600) == (
        "avg_over_time(swarmstack:model_tokens_per_second[3600s])"
    )


def test_replica_prices_of_the_pilot() -> None:
    """A 3g.40gb slice of a p5.4xlarge's one H100 ($6.88/h) split [3g.40gb, 3g.40gb]:
    3 of the layout's 6 compute slices (the cost rules' price, which the CLI reuses)."""
    config = load_file(PILOT)
    for model in config.models:
        assert model.mig_profile == "3g.40gb"
        assert replica_usd_per_hour(model, config) == pytest.approx(6.88 / 2)
    # The same pool without MIG: a replica takes (and pays for) the whole GPU.
    pool = config.gpu_pools[0].model_copy(update={"mig": None})
    models = [m.model_copy(update={"mig_profile": None}) for m in config.models]
    whole = config.model_copy(update={"gpu_pools": [pool], "models": models})
    assert replica_usd_per_hour(whole.models[0], whole) == pytest.approx(6.88)
