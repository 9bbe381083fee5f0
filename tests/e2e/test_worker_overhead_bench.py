"""The overhead benchmark, run quick against real vLLM and a real worker: both sides of every
pair stream exactly `max_tokens` (the worker's `min_tokens` reaches vLLM), each level
reports its pairs and the two services' CPU."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import worker_overhead as bench  # pyright: ignore[reportMissingImports]

from tests.e2e.worker_client import metrics_text


def test_quick_run_at_two_levels(vllm: Any, worker_factory: Any) -> None:
    worker = worker_factory({"AGENT_NAME": "bench"})
    target = bench.Target(vllm.url, worker.url, vllm.process.pid, worker.process.pid)
    result = asyncio.run(
        bench.measure(
            target,
            agent="bench",
            levels=[1, 2],
            pairs=2,
            max_tokens=12,
            lengths="exact",
            warmup=0,
            max_seconds=300,
        )
    )
    assert [level["concurrency"] for level in result["levels"]] == [1, 2]
    for level in result["levels"]:
        assert level["pairs"] == 2 and level["errors"] == 0, level["error_examples"]
        assert level["pairs_with_equal_output_tokens"] == 2
        assert level["direct_output_tokens_mean"] == level["worker_output_tokens_mean"] == 12
        assert level["ttft_difference"]["count"] == 2
        cpu = level["cpu"]
        assert cpu["worker_s"] is not None and cpu["vllm_s"] is not None
        assert cpu["vllm_s"] > 0 and 0 <= cpu["worker_share"] < 1
        assert level["worker_tokens"] >= 24
    assert "TRUNCATED" not in bench.table(result)


def test_control_run_never_calls_the_worker(vllm: Any, worker_factory: Any) -> None:
    """--control: both sides go straight to vLLM, so the worker serves no turn at all."""
    worker = worker_factory({"AGENT_NAME": "bench"})
    target = bench.Target(vllm.url, worker.url, vllm.process.pid, worker.process.pid)
    result = asyncio.run(
        bench.measure(
            target,
            agent="bench",
            levels=[1],
            pairs=2,
            max_tokens=8,
            lengths="exact",
            warmup=0,
            max_seconds=300,
            control=True,
        )
    )
    assert result["config"]["control"] is True
    (level,) = result["levels"]
    assert level["pairs"] == 2 and level["errors"] == 0, level["error_examples"]
    assert level["direct_output_tokens_mean"] == level["worker_output_tokens_mean"] == 8
    text = metrics_text(worker.url)
    assert 'agent_turns_total{agent="bench",outcome="done"}' not in text
