"""What session-affine routing gains in vLLM's prefix cache over round-robin, two local
vLLM replicas, the same multi-turn workload, one run.

    .venv/bin/python benchmarks/prefix_affinity.py [--sessions 8] [--turns 6]
        [--concurrency 4] [--max-tokens 24] [--out FILE] [--vllm-python ...]

Starts two vLLM replicas on CPU (SmolLM2-135M-Instruct, the local target's command line,
automatic prefix caching on as the stacks deploy it) on 127.0.0.1 and runs the workload
twice, once per placement:

- `affinity`: every call of a session goes to the replica its session id hashes to
  (SHA-256 of the id, mod 2): where consistent hashing on a session header in the
  model's DestinationRule would send it, while both replicas are healthy. No Envoy runs
  here: the client places the calls, so the figure measures the benefit of the
  placement, not the mechanism that gives it in the cluster.
- `round_robin`: calls alternate between the replicas in the order they are sent, as
  the mesh's default load balancing would.

The workload: `--sessions` agent sessions of `--turns` turns, `--concurrency` sessions
at a time; each turn sends the system prompt, the whole history and a new user message
(what an agent's next call carries) and streams the answer (`--max-tokens`). The two
placements run the same generator (same session count, turn count, message lengths),
each with its own salt in the session's first message, so the second placement finds
nothing of the first in the cache. Per placement the increase of
`vllm:prefix_cache_hits_total` over `vllm:prefix_cache_queries_total` (prompt tokens,
summed over both replicas) is the hit rate.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import random
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import httpx  # noqa: E402
import worker_overhead as wo  # noqa: E402  # pyright: ignore[reportMissingImports]
from machine import machine  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from loadtests import services  # noqa: E402
from loadtests.prompts import chat_prompt  # noqa: E402

HITS = "vllm:prefix_cache_hits_total"
QUERIES = "vllm:prefix_cache_queries_total"


def replica_for(session_id: str, replicas: int) -> int:
    """Where a session-affine placement sends every call of `session_id`."""
    return int.from_bytes(hashlib.sha256(session_id.encode()).digest()[:8], "big") % replicas


def counter(text: str, name: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


async def cache_counters(client: httpx.AsyncClient, urls: list[str]) -> tuple[float, float]:
    hits = queries = 0.0
    for url in urls:
        text = (await client.get(f"{url}/metrics")).text
        hits += counter(text, HITS)
        queries += counter(text, QUERIES)
    return hits, queries


async def run_placement(
    client: httpx.AsyncClient,
    urls: list[str],
    placement: str,
    *,
    sessions: int,
    turns: int,
    concurrency: int,
    max_tokens: int,
    seed: int,
) -> dict[str, Any]:
    system = wo.system_prompt("bench")
    rr = itertools.count()
    sent = [0 for _ in urls]
    semaphore = asyncio.Semaphore(concurrency)

    async def session(index: int) -> None:
        rng = random.Random(f"{seed}:{index}")
        sid = f"{placement}-{seed}-{index}"
        messages: list[dict[str, str]] = [{"role": "system", "content": system}]
        async with semaphore:
            for turn in range(turns):
                salt = f" [{placement} {index}]" if turn == 0 else ""
                messages.append({"role": "user", "content": chat_prompt(rng) + salt})
                if placement == "affinity":
                    target = replica_for(sid, len(urls))
                else:
                    target = next(rr) % len(urls)
                sent[target] += 1
                body = {
                    "model": services.MODEL_NAME,
                    "messages": messages,
                    "max_tokens": max_tokens,
                    "temperature": 0.0,
                }
                response = await client.post(f"{urls[target]}/v1/chat/completions", json=body)
                response.raise_for_status()
                answer = response.json()["choices"][0]["message"]["content"] or ""
                messages.append({"role": "assistant", "content": answer})

    before = await cache_counters(client, urls)
    started = time.monotonic()
    await asyncio.gather(*(session(i) for i in range(sessions)))
    duration = time.monotonic() - started
    after = await cache_counters(client, urls)
    hits, queries = after[0] - before[0], after[1] - before[1]
    return {
        "placement": placement,
        "calls_per_replica": sent,
        "prefix_cache_hits_tokens": hits,
        "prefix_cache_queries_tokens": queries,
        "hit_rate": hits / queries if queries else None,
        "duration_s": duration,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--turns", type=int, default=6)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--seed", type=int, default=20261201)
    p.add_argument("--vllm-python", default=wo.DEFAULT_VLLM_PYTHON)
    p.add_argument("--out", type=Path, default=wo.ROOT / "out" / "bench" / "prefix_affinity.json")
    args = p.parse_args(argv)
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="swarm-px-")))
        model_dir = services.prepare_model(python=args.vllm_python)
        replicas = []
        for i in range(2):  # one after the other: two cold starts at once starve 2 cores
            replica = services.start_vllm(
                model_dir, python=args.vllm_python, workdir=workdir / f"v{i}"
            )
            stack.callback(replica.stop)
            replicas.append(replica)
        urls = [r.url for r in replicas]

        async def both() -> list[dict[str, Any]]:
            async with httpx.AsyncClient(timeout=httpx.Timeout(300.0)) as client:
                return [
                    await run_placement(
                        client,
                        urls,
                        placement,
                        sessions=args.sessions,
                        turns=args.turns,
                        concurrency=args.concurrency,
                        max_tokens=args.max_tokens,
                        seed=args.seed,
                    )
                    for placement in ("affinity", "round_robin")
                ]

        placements = asyncio.run(both())
    result = {
        "config": {
            "sessions": args.sessions,
            "turns": args.turns,
            "concurrency": args.concurrency,
            "max_tokens": args.max_tokens,
            "replicas": 2,
        },
        "placements": placements,
        "note": "session placement emulated in the client (hash of the session id): the "
        "figure measures the benefit of affinity, not the mesh mechanism",
        "machine": machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, load {m['load_average_1m']}")
    print(
        f"{args.sessions} sessions x {args.turns} turns, {args.concurrency} at a time, 2 replicas"
    )
    for row in placements:
        print(
            f"{row['placement']:>12}: hits/queries = {row['prefix_cache_hits_tokens']:.0f}/"
            f"{row['prefix_cache_queries_tokens']:.0f} = {row['hit_rate']:.1%}, calls per "
            f"replica {row['calls_per_replica']}, {row['duration_s']:.1f} s"
        )
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
