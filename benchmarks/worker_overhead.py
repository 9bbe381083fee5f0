"""Latency the agent worker adds over calling the model directly, side by side in one run.

    .venv/bin/python benchmarks/worker_overhead.py [--pairs 40] [--max-tokens 32]
        [--vllm-python .venv-vllm/bin/python]  # or --vllm-url/--worker-url of running ones

Starts vLLM on CPU (SmolLM2-135M-Instruct), Redis and the agent worker on 127.0.0.1
(unless given URLs), then sends `--pairs` pairs of streamed requests, one at a time:

- direct: POST /v1/chat/completions on vLLM (stream, same max_tokens) with the messages
  the worker itself sends for a first plain turn: its system prompt (taken from
  `agent_worker.agent.system_prompt`) and the user message, so the model does the same
  work on both sides and the difference is what the worker adds;
- worker: a fresh session, then POST /v1/sessions/{id}/turns (SSE), a plain (no tool)
  turn with the same message.

Both requests of a pair carry the same prompt, and every pair has a prompt of its own
(so neither side profits from the other's prefix cache more than the other). The order
within a pair alternates, cancelling drift. The difference worker - direct of each pair
is taken for TTFT and E2E, and of E2E normalized per output token (the two sides may
stop after different numbers of tokens); median and p95 of the differences are printed
with the machine and written to `--out` as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VLLM_PYTHON = os.environ.get(
    "SWARMSTACK_VLLM_PYTHON", str(ROOT / ".venv-vllm" / "bin" / "python")
)
for path in (ROOT, ROOT / "images" / "agent-worker"):  # run as a script from a checkout
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import httpx  # noqa: E402
from agent_worker.agent import (  # noqa: E402  # pyright: ignore[reportMissingImports]
    system_prompt,  # pyright: ignore[reportUnknownVariableType]
)
from agent_worker.sse import SSEStream  # noqa: E402
from machine import machine  # noqa: E402  (benchmarks/machine.py, beside this script)

from loadtests import services  # noqa: E402
from loadtests.metrics import percentile  # noqa: E402
from loadtests.prompts import chat_prompt  # noqa: E402


@dataclass(frozen=True)
class Timing:
    ttft_s: float
    e2e_s: float
    tokens: int


def _events(response: httpx.Response, t0: float) -> Iterator[tuple[float, str, str]]:
    parser = SSEStream()
    for chunk in response.iter_bytes():
        now = time.perf_counter() - t0
        for event in parser.feed(chunk):
            yield now, event.event, event.data
    for event in parser.close():
        yield time.perf_counter() - t0, event.event, event.data


def direct(
    client: httpx.Client, base: str, *, model: str, system: str, message: str, max_tokens: int
) -> Timing:
    body = {
        "model": model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": message}],
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    ttft: float | None = None
    tokens = 0
    with client.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for at, _, data in _events(response, t0):
            if data == "[DONE]":
                continue
            chunk = json.loads(data)
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content") and ttft is None:
                    ttft = at
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
    e2e = time.perf_counter() - t0
    if ttft is None:
        raise RuntimeError("direct request streamed no token")
    return Timing(ttft, e2e, tokens)


def through_worker(client: httpx.Client, base: str, message: str, max_tokens: int) -> Timing:
    created = client.post(f"{base}/v1/sessions", json={"user": "bench"})
    created.raise_for_status()
    session = created.json()["session_id"]
    body = {"message": message, "tool": None, "max_tokens": max_tokens}
    t0 = time.perf_counter()
    ttft: float | None = None
    tokens = 0
    with client.stream("POST", f"{base}/v1/sessions/{session}/turns", json=body) as response:
        response.raise_for_status()
        for at, event, data in _events(response, t0):
            if event == "token" and ttft is None:
                ttft = at
            elif event == "done":
                tokens = int(json.loads(data).get("output_tokens") or 0)
            elif event == "error":
                raise RuntimeError(f"worker turn failed: {data}")
    e2e = time.perf_counter() - t0
    if ttft is None:
        raise RuntimeError("worker turn streamed no token")
    return Timing(ttft, e2e, tokens)


def stats(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": percentile(values, 50) * 1000,
        "p95_ms": percentile(values, 95) * 1000,
        "mean_ms": sum(values) / len(values) * 1000,
    }


def measure(
    vllm_url: str, worker_url: str, *, agent: str, pairs: int, max_tokens: int, warmup: int
) -> dict[str, Any]:
    rng = random.Random(20261121)
    system = system_prompt(agent)
    rows: list[tuple[Timing, Timing]] = []
    with httpx.Client(timeout=httpx.Timeout(120.0)) as client:
        model = client.get(f"{vllm_url}/v1/models").json()["data"][0]["id"]
        for i in range(warmup + pairs):
            message = chat_prompt(rng)
            if i % 2 == 0:
                d = direct(
                    client, vllm_url, model=model, system=system, message=message,
                    max_tokens=max_tokens,
                )  # fmt: skip
                w = through_worker(client, worker_url, message, max_tokens)
            else:
                w = through_worker(client, worker_url, message, max_tokens)
                d = direct(
                    client, vllm_url, model=model, system=system, message=message,
                    max_tokens=max_tokens,
                )  # fmt: skip
            if i >= warmup:
                rows.append((d, w))
    ttft_diff = [w.ttft_s - d.ttft_s for d, w in rows]
    e2e_diff = [w.e2e_s - d.e2e_s for d, w in rows]
    per_token = [w.e2e_s / max(w.tokens, 1) - d.e2e_s / max(d.tokens, 1) for d, w in rows]
    same_length = [w.e2e_s - d.e2e_s for d, w in rows if w.tokens == d.tokens]
    return {
        "pairs": len(rows),
        "pairs_with_equal_output_tokens": len(same_length),
        "max_tokens": max_tokens,
        "direct_ttft": stats([d.ttft_s for d, _ in rows]),
        "worker_ttft": stats([w.ttft_s for _, w in rows]),
        "direct_e2e": stats([d.e2e_s for d, _ in rows]),
        "worker_e2e": stats([w.e2e_s for _, w in rows]),
        "ttft_difference": stats(ttft_diff),
        "e2e_difference": stats(e2e_diff),
        "e2e_per_output_token_difference": stats(per_token),
        "e2e_difference_equal_output_tokens": stats(same_length) if same_length else None,
        "output_tokens": {
            "direct_mean": sum(d.tokens for d, _ in rows) / len(rows),
            "worker_mean": sum(w.tokens for _, w in rows) / len(rows),
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--pairs", type=int, default=40)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--vllm-python", default=DEFAULT_VLLM_PYTHON)
    p.add_argument("--vllm-url", default="", help="use a running vLLM instead of starting one")
    p.add_argument("--worker-url", default="", help="use a running worker (needs --vllm-url)")
    p.add_argument("--agent-name", default="bench", help="the worker's AGENT_NAME")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "worker_overhead.json")
    args = p.parse_args(argv)

    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="swarm-bench-")))
        vllm_url, worker_url = args.vllm_url, args.worker_url
        if not vllm_url:
            model_dir = services.prepare_model(python=args.vllm_python)
            vllm = services.start_vllm(model_dir, python=args.vllm_python, workdir=workdir / "v")
            stack.callback(vllm.stop)
            vllm_url = vllm.url
        if not worker_url:
            redis = services.start_redis(workdir=workdir / "redis")
            stack.callback(redis.stop)
            worker = services.start_worker(
                {
                    "MODEL_BASE_URL": f"{vllm_url}/v1",
                    "MODEL_NAME": services.MODEL_NAME,
                    "REDIS_URL": redis.url,
                    "QDRANT_PATH": str(workdir / "qdrant"),
                    "AGENT_NAME": args.agent_name,
                },
                workdir=workdir / "worker",
            )
            stack.callback(worker.stop)
            worker_url = worker.url
        result = measure(
            vllm_url, worker_url, agent=args.agent_name, pairs=args.pairs,
            max_tokens=args.max_tokens, warmup=args.warmup,
        )  # fmt: skip

    result["machine"] = machine()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, {m['os']}")
    print(f"{result['pairs']} pairs, max_tokens {args.max_tokens}, sequential, one at a time")
    for key in ("direct_ttft", "worker_ttft", "direct_e2e", "worker_e2e"):
        s = result[key]
        print(f"  {key:<12} median {s['median_ms']:8.1f} ms   p95 {s['p95_ms']:8.1f} ms")
    print("worker - direct, per pair:")
    for key in (
        "ttft_difference",
        "e2e_difference",
        "e2e_difference_equal_output_tokens",
        "e2e_per_output_token_difference",
    ):
        s = result[key]
        if s is not None:
            print(f"  {key:<35} median {s['median_ms']:+8.2f} ms   p95 {s['p95_ms']:+8.2f} ms")
    print(f"  ({result['pairs_with_equal_output_tokens']} pairs had equal output token counts)")
    tokens = result["output_tokens"]
    direct_mean, worker_mean = tokens["direct_mean"], tokens["worker_mean"]
    print(f"  output tokens (mean): direct {direct_mean:.1f}, worker {worker_mean:.1f}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
