"""Latency and CPU the agent worker adds over calling the model directly, side by side in
one run, at several concurrency levels.

    .venv/bin/python benchmarks/worker_overhead.py [--concurrency 1,4,8,16] [--pairs 48]
        [--max-tokens 32] [--lengths exact|natural] [--max-seconds 1800] [--out FILE]
        [--vllm-python .venv-vllm/bin/python] [--control]
        # or against running services: --vllm-url URL --worker-url URL
        #     [--vllm-pgid PGID --worker-pgid PGID] for the CPU columns

Starts vLLM on CPU (SmolLM2-135M-Instruct), Redis and the agent worker on 127.0.0.1
(unless given URLs) and measures *pairs* of streamed requests with the same prompt:

- direct: POST /v1/chat/completions on vLLM (stream) with the messages the worker itself
  sends for a first plain turn: its system prompt (`agent_worker.agent.system_prompt`)
  and the user message, so the model does the same work on both sides;
- worker: a fresh session, then POST /v1/sessions/{id}/turns (SSE), a plain turn with the
  same message.

Equal lengths: with `--lengths exact` (default) both requests carry `max_tokens` = `min_tokens`
= `--max-tokens` (the worker passes its turn's `min_tokens` on to vLLM), so every answer
has exactly that many tokens and the differences compare equal work. `--lengths natural`
lets the model stop when it likes (for a worker without `min_tokens`): the pairs with equal
token counts are then counted and summarized apart.

Noise floor: `--control` sends both requests of every pair straight to vLLM (the "worker"
columns are then a second direct request). Its differences are what the pairing method
measures when there is nothing between client and model: the floor under which a worker
overhead cannot be told from vLLM's own run-to-run variation at that level.

Concurrency: at level N, N runners each run pairs one after another, so N pairs (N
requests) are in flight at once. Within a pair the two requests run one after the other,
the order alternating from pair to pair (direct first on even pairs), cancelling drift.
Every pair has a prompt of its own (neither side profits from the other's prefix cache
more than the other); prompts depend only on the level and the pair's index, so two runs
of the same command send the same prompts. A runner with no measured pair left runs
unmeasured filler pairs until the level's last measured pair is done, so the last
measured pairs still see N in flight. `--warmup` pairs run (one at a time) before the
first level. `--max-seconds` bounds the whole run: when it is up no new pair starts, the
level is marked `truncated` and later levels are skipped.

Per level (JSON under `levels[]`; the printed table has the starred ones), each
difference is worker minus direct, per pair, then summarized over the pairs (median, p95):

- `ttft_difference`*: time to the first token (first content chunk / first `token` event);
- `itl_difference`*: the pair's mean inter-token latency, (last token - first token) /
  (token events - 1), per side; pooled ITL percentiles of each side are in `direct_itl`,
  `worker_itl`;
- `e2e_difference`*: send to the end of the stream; `e2e_difference_equal_output_tokens`
  the same over the pairs whose two sides had equal token counts (all of them with
  `exact`);
- `e2e_per_output_token_difference`*: worker E2E / worker tokens - direct E2E / direct
  tokens (with equal lengths: the E2E difference divided by the tokens);
- `cpu` (from /proc/<pid>/stat utime+stime+cutime+cstime of every process in the
  service's process group, read before and after the level): `worker_s`, `vllm_s`,
  `client_s` (this script), `machine_busy_s` / `machine_total_s` (all cores, /proc/stat);
  `worker_s_per_1k_tokens`* is worker CPU per 1,000 tokens the worker streamed (it
  includes the per-turn costs: session creation, three checkpoints, Redis);
  `vllm_s_per_1k_tokens` per 1,000 tokens of both sides; `worker_share`* = worker /
  (worker + vLLM); `machine_busy_fraction`* = busy / total over the level, and
  `other_s` = busy - worker - vLLM - client: CPU taken by anything else on the machine
  (a high value means the level's latencies are contended and not comparable).

The machine is written beside the numbers (`machine`), the JSON to `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
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
from loadtests.metrics import inter_token_latencies, percentile  # noqa: E402
from loadtests.prompts import chat_prompt  # noqa: E402

PROMPT_SEED = 20261121


class BenchmarkError(RuntimeError):
    """The benchmark cannot measure what it was asked to (a side failed or refused)."""


@dataclass(frozen=True)
class Timing:
    ttft_s: float
    e2e_s: float
    tokens: int  # output tokens as the side reports them (usage / done.output_tokens)
    token_times_s: tuple[float, ...] = ()  # arrival of each chunk/event carrying text

    @property
    def itls_s(self) -> list[float]:
        return inter_token_latencies(self.token_times_s)

    @property
    def mean_itl_s(self) -> float | None:
        t = self.token_times_s
        return (t[-1] - t[0]) / (len(t) - 1) if len(t) >= 2 else None


@dataclass(frozen=True)
class Pair:
    direct: Timing
    worker: Timing


# ------------------------------------------------------------------------- statistics


def stats(values: Sequence[float]) -> dict[str, float] | None:
    """Median, p95 and mean of values in seconds, reported in milliseconds."""
    if not values:
        return None
    return {
        "median_ms": percentile(values, 50) * 1000,
        "p95_ms": percentile(values, 95) * 1000,
        "mean_ms": sum(values) / len(values) * 1000,
        "count": len(values),
    }


def differences(pairs: Sequence[Pair]) -> dict[str, Any]:
    """Worker minus direct, pair by pair, summarized (see the module docstring)."""
    itl = [
        w - d
        for d, w in ((p.direct.mean_itl_s, p.worker.mean_itl_s) for p in pairs)
        if d is not None and w is not None
    ]
    equal = [p for p in pairs if p.worker.tokens == p.direct.tokens]
    return {
        "ttft_difference": stats([p.worker.ttft_s - p.direct.ttft_s for p in pairs]),
        "itl_difference": stats(itl),
        "e2e_difference": stats([p.worker.e2e_s - p.direct.e2e_s for p in pairs]),
        "e2e_difference_equal_output_tokens": stats(
            [p.worker.e2e_s - p.direct.e2e_s for p in equal]
        ),
        "e2e_per_output_token_difference": stats(
            [
                p.worker.e2e_s / max(p.worker.tokens, 1) - p.direct.e2e_s / max(p.direct.tokens, 1)
                for p in pairs
            ]
        ),
        "pairs_with_equal_output_tokens": len(equal),
    }


def sides(pairs: Sequence[Pair]) -> dict[str, Any]:
    """Each side's own distributions (not paired)."""
    out: dict[str, Any] = {}
    for name in ("direct", "worker"):
        timings = [getattr(p, name) for p in pairs]
        out[f"{name}_ttft"] = stats([t.ttft_s for t in timings])
        out[f"{name}_e2e"] = stats([t.e2e_s for t in timings])
        out[f"{name}_itl"] = stats([gap for t in timings for gap in t.itls_s])
        out[f"{name}_output_tokens_mean"] = (
            sum(t.tokens for t in timings) / len(timings) if timings else None
        )
    return out


# ------------------------------------------------------------------------- CPU accounting


def group_cpu_s(pgid: int, proc: Path = Path("/proc")) -> float:
    """CPU seconds (user + system, with reaped children's) of every process in a group.

    Fields of /proc/<pid>/stat after the `(comm)`: state, ppid, pgrp, ... utime (14),
    stime (15), cutime (16), cstime (17), counted from 1 over the whole line. A process
    that exits and is reaped by a group member moves into that member's cutime/cstime,
    so the sum stays whole while the group lives.
    """
    ticks = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue  # gone in between
        fields = raw[raw.rindex(")") + 2 :].split()
        if int(fields[2]) != pgid:
            continue
        ticks += sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_cpu_s(proc: Path = Path("/proc")) -> tuple[float, float]:
    """(busy, total) CPU seconds of all cores since boot, from the `cpu` line of /proc/stat."""
    line = (proc / "stat").read_text().splitlines()[0].split()
    assert line[0] == "cpu"
    values = [int(x) for x in line[1:9]]  # user nice system idle iowait irq softirq steal
    idle = values[3] + values[4]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / hz, sum(values) / hz


def self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


@dataclass(frozen=True)
class CpuSample:
    worker_s: float | None
    vllm_s: float | None
    client_s: float
    machine_busy_s: float
    machine_total_s: float


def sample_cpu(worker_pgid: int | None, vllm_pgid: int | None) -> CpuSample:
    busy, total = machine_cpu_s()
    return CpuSample(
        worker_s=group_cpu_s(worker_pgid) if worker_pgid else None,
        vllm_s=group_cpu_s(vllm_pgid) if vllm_pgid else None,
        client_s=self_cpu_s(),
        machine_busy_s=busy,
        machine_total_s=total,
    )


def cpu_report(
    before: CpuSample, after: CpuSample, *, worker_tokens: int, all_tokens: int
) -> dict[str, float | None]:
    """CPU over one level: per 1,000 tokens, the worker's share, what else ran."""

    def delta(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else b - a

    worker = delta(before.worker_s, after.worker_s)
    vllm = delta(before.vllm_s, after.vllm_s)
    client = after.client_s - before.client_s
    busy = after.machine_busy_s - before.machine_busy_s
    total = after.machine_total_s - before.machine_total_s
    known = (worker or 0.0) + (vllm or 0.0) + client
    return {
        "worker_s": worker,
        "vllm_s": vllm,
        "client_s": client,
        "machine_busy_s": busy,
        "machine_total_s": total,
        "worker_s_per_1k_tokens": (
            worker / worker_tokens * 1000 if worker is not None and worker_tokens else None
        ),
        "vllm_s_per_1k_tokens": (
            vllm / all_tokens * 1000 if vllm is not None and all_tokens else None
        ),
        "worker_share": (
            worker / (worker + vllm) if worker is not None and vllm and worker + vllm else None
        ),
        "machine_busy_fraction": busy / total if total > 0 else None,
        "other_s": busy - known if worker is not None and vllm is not None else None,
    }


# ------------------------------------------------------------------------- the two sides


async def _events(response: httpx.Response, t0: float) -> AsyncIterator[tuple[float, str, str]]:
    parser = SSEStream()
    async for chunk in response.aiter_bytes():
        now = time.perf_counter() - t0
        for event in parser.feed(chunk):
            yield now, event.event, event.data
    for event in parser.close():
        yield time.perf_counter() - t0, event.event, event.data


@dataclass(frozen=True)
class Request:
    """What both sides of a pair are asked."""

    message: str
    max_tokens: int
    min_tokens: int  # 0: natural lengths


async def direct(
    client: httpx.AsyncClient, base: str, *, model: str, system: str, request: Request
) -> Timing:
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": request.message},
        ],
        "max_tokens": request.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.min_tokens:
        body["min_tokens"] = request.min_tokens  # what the worker sends for the same turn
    t0 = time.perf_counter()
    times: list[float] = []
    tokens = 0
    async with client.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            detail = (await response.aread()).decode(errors="replace")[:300]
            raise BenchmarkError(f"vLLM answered {response.status_code}: {detail}")
        async for at, _, data in _events(response, t0):
            if data == "[DONE]":
                continue
            chunk = json.loads(data)
            if any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or []):
                times.append(at)
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
    e2e = time.perf_counter() - t0
    if not times:
        raise BenchmarkError("direct request streamed no token")
    return Timing(times[0], e2e, tokens, tuple(times))


async def through_worker(client: httpx.AsyncClient, base: str, request: Request) -> Timing:
    created = await client.post(f"{base}/v1/sessions", json={"user": "bench"})
    created.raise_for_status()
    session = created.json()["session_id"]
    body: dict[str, Any] = {"message": request.message, "tool": None}
    body["max_tokens"] = request.max_tokens
    if request.min_tokens:
        body["min_tokens"] = request.min_tokens
    t0 = time.perf_counter()
    times: list[float] = []
    tokens = 0
    url = f"{base}/v1/sessions/{session}/turns"
    async with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            detail = (await response.aread()).decode(errors="replace")[:300]
            hint = (
                " (this worker has no min_tokens: use --lengths natural, or a worker that "
                "accepts it)"
                if "min_tokens" in detail
                else ""
            )
            raise BenchmarkError(f"worker answered {response.status_code}: {detail}{hint}")
        async for at, event, data in _events(response, t0):
            if event == "token":
                times.append(at)
            elif event == "done":
                tokens = int(json.loads(data).get("output_tokens") or 0)
            elif event == "error":
                raise BenchmarkError(f"worker turn failed: {data}")
    e2e = time.perf_counter() - t0
    if not times:
        raise BenchmarkError("worker turn streamed no token")
    return Timing(times[0], e2e, tokens, tuple(times))


# ------------------------------------------------------------------------- levels


def prompts_for(level: int, count: int, *, seed: int = PROMPT_SEED) -> list[str]:
    """The level's prompts: the same for every run of the same command."""
    rng = random.Random(f"{seed}:{level}")
    return [chat_prompt(rng) for _ in range(count)]


def direct_first(index: int) -> bool:
    """Order within pair `index`: direct first on even pairs, the worker first on odd."""
    return index % 2 == 0


RunPair = Callable[[int, str], Awaitable[Pair]]


@dataclass
class LevelRun:
    pairs: list[Pair] = field(default_factory=list[Pair])
    fillers: list[Pair] = field(default_factory=list[Pair])
    errors: list[str] = field(default_factory=list[str])
    truncated: bool = False


async def run_level(
    concurrency: int, prompts: Sequence[str], run_pair: RunPair, *, deadline: float
) -> LevelRun:
    """`concurrency` runners share the measured pairs; each pair `i` is run as
    `run_pair(i, prompt)`. Runners without a measured pair left run fillers (negative
    indices, prompts reused) while others still measure. No pair starts after `deadline`
    (time.monotonic)."""
    out = LevelRun()
    results: dict[int, Pair] = {}
    state = {"next": 0, "open": len(prompts), "filler": 0}

    async def one(index: int, prompt: str, measured: bool) -> None:
        try:
            pair = await run_pair(index, prompt)
        except (BenchmarkError, httpx.HTTPError) as exc:
            out.errors.append(f"{type(exc).__name__}: {exc}"[:300])
            return
        if measured:
            results[index] = pair
        else:
            out.fillers.append(pair)

    async def runner() -> None:
        while True:
            if time.monotonic() >= deadline:
                if state["next"] < len(prompts):
                    out.truncated = True
                return
            if state["next"] < len(prompts):
                index = state["next"]
                state["next"] += 1
                await one(index, prompts[index], measured=True)
                state["open"] -= 1
            elif state["open"] > 0:
                state["filler"] += 1
                filler = state["filler"]
                await one(-filler, prompts[filler % len(prompts)], measured=False)
            else:
                return

    await asyncio.gather(*(runner() for _ in range(concurrency)))
    out.pairs = [results[i] for i in sorted(results)]
    return out


@dataclass(frozen=True)
class Target:
    vllm_url: str
    worker_url: str
    vllm_pgid: int | None
    worker_pgid: int | None


async def measure(
    target: Target,
    *,
    agent: str,
    levels: Sequence[int],
    pairs: int,
    max_tokens: int,
    lengths: str,
    warmup: int,
    control: bool = False,
    max_seconds: float,
) -> dict[str, Any]:
    system = system_prompt(agent)
    min_tokens = max_tokens if lengths == "exact" else 0
    limits = httpx.Limits(max_connections=4 * max(levels) + 8, max_keepalive_connections=None)
    deadline = time.monotonic() + max_seconds
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as client:
        model = (await client.get(f"{target.vllm_url}/v1/models")).json()["data"][0]["id"]

        async def run_pair(index: int, message: str) -> Pair:
            request = Request(message, max_tokens, min_tokens)

            def d_call() -> Awaitable[Timing]:
                return direct(client, target.vllm_url, model=model, system=system, request=request)

            def w_call() -> Awaitable[Timing]:
                if control:  # the noise floor: a second direct request in the worker's place
                    return d_call()
                return through_worker(client, target.worker_url, request)

            if direct_first(index):
                d = await d_call()
                w = await w_call()
            else:
                w = await w_call()
                d = await d_call()
            return Pair(d, w)

        for i, message in enumerate(prompts_for(0, warmup)):
            await run_pair(i, message)

        results: list[dict[str, Any]] = []
        for level in levels:
            if time.monotonic() >= deadline:
                results.append({"concurrency": level, "skipped": "out of --max-seconds"})
                continue
            before = sample_cpu(target.worker_pgid, target.vllm_pgid)
            started = time.monotonic()
            run = await run_level(level, prompts_for(level, pairs), run_pair, deadline=deadline)
            duration = time.monotonic() - started
            after = sample_cpu(target.worker_pgid, target.vllm_pgid)
            everything = run.pairs + run.fillers
            worker_tokens = sum(p.worker.tokens for p in everything)
            all_tokens = worker_tokens + sum(p.direct.tokens for p in everything)
            if not run.pairs:
                raise BenchmarkError(f"no pair completed at concurrency {level}: {run.errors[:3]}")
            results.append(
                {
                    "concurrency": level,
                    "pairs": len(run.pairs),
                    "filler_pairs": len(run.fillers),
                    "errors": len(run.errors),
                    "error_examples": run.errors[:3],
                    "truncated": run.truncated,
                    "duration_s": duration,
                    "worker_tokens": worker_tokens,
                    "all_tokens": all_tokens,
                    **differences(run.pairs),
                    **sides(run.pairs),
                    "cpu": cpu_report(
                        before, after, worker_tokens=worker_tokens, all_tokens=all_tokens
                    ),
                }
            )
    return {
        "config": {
            "concurrency": list(levels),
            "pairs_per_level": pairs,
            "max_tokens": max_tokens,
            "lengths": lengths,
            "control": control,
            "min_tokens": min_tokens,
            "warmup": warmup,
            "max_seconds": max_seconds,
        },
        "levels": results,
    }


# ------------------------------------------------------------------------- output


def _ms(s: dict[str, float] | None, key: str, signed: bool = True) -> str:
    if s is None:
        return "-"
    return f"{s[key]:+.2f}" if signed else f"{s[key]:.2f}"


def table(result: dict[str, Any]) -> str:
    """The printed summary: one row per level."""
    head = (
        f"{'N':>3} {'pairs':>5} | {'TTFT d med':>10} {'p95':>8} | {'ITL d med':>9} {'p95':>7} | "
        f"{'E2E d med':>9} {'p95':>8} | {'/tok med':>8} {'p95':>7} | "
        f"{'wCPU s/1k':>9} {'w share':>7} {'busy':>5} {'other s':>7}"
    )
    lines = [head, "-" * len(head)]
    for level in result["levels"]:
        if "skipped" in level:
            lines.append(f"{level['concurrency']:>3} skipped: {level['skipped']}")
            continue
        cpu = level["cpu"]

        def num(value: float | None, fmt: str) -> str:
            return "-" if value is None else format(value, fmt)

        t, i, e, p = (
            level["ttft_difference"],
            level["itl_difference"],
            level["e2e_difference"],
            level["e2e_per_output_token_difference"],
        )
        lines.append(
            f"{level['concurrency']:>3} {level['pairs']:>5} | "
            f"{_ms(t, 'median_ms'):>10} {_ms(t, 'p95_ms'):>8} | "
            f"{_ms(i, 'median_ms'):>9} {_ms(i, 'p95_ms'):>7} | "
            f"{_ms(e, 'median_ms'):>9} {_ms(e, 'p95_ms'):>8} | "
            f"{_ms(p, 'median_ms'):>8} {_ms(p, 'p95_ms'):>7} | "
            f"{num(cpu['worker_s_per_1k_tokens'], '.3f'):>9} "
            f"{num(cpu['worker_share'], '.1%'):>7} "
            f"{num(cpu['machine_busy_fraction'], '.0%'):>5} "
            f"{num(cpu['other_s'], '.1f'):>7}"
            + (" TRUNCATED" if level["truncated"] else "")
            + (f" errors={level['errors']}" if level["errors"] else "")
        )
    return "\n".join(lines)


def parse_levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--concurrency: {text!r} is not a comma-separated list of integers"
        ) from None
    if not levels or any(n < 1 for n in levels):
        raise argparse.ArgumentTypeError(f"--concurrency: {text!r} needs integers >= 1")
    return levels


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--concurrency", type=parse_levels, default=[1, 4, 8, 16])
    p.add_argument("--pairs", type=int, default=48, help="measured pairs per level")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--lengths", choices=("exact", "natural"), default="exact")
    p.add_argument(
        "--control",
        action="store_true",
        help="both sides of each pair go straight to vLLM: the method's noise floor",
    )
    p.add_argument("--max-seconds", type=float, default=1800.0, help="bound on the whole run")
    p.add_argument("--vllm-python", default=DEFAULT_VLLM_PYTHON)
    p.add_argument("--vllm-url", default="", help="use a running vLLM instead of starting one")
    p.add_argument("--worker-url", default="", help="use a running worker (needs --vllm-url)")
    p.add_argument("--vllm-pgid", type=int, default=None, help="process group of --vllm-url")
    p.add_argument("--worker-pgid", type=int, default=None, help="process group of --worker-url")
    p.add_argument("--agent-name", default="bench", help="the worker's AGENT_NAME")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "worker_overhead.json")
    args = p.parse_args(argv)
    if args.pairs < 1 or args.max_tokens < 1:
        p.error("--pairs and --max-tokens must be at least 1")
    if args.worker_url and not args.vllm_url:
        p.error("--worker-url needs --vllm-url (the direct side)")

    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="swarm-bench-")))
        vllm_url, worker_url = args.vllm_url, args.worker_url
        vllm_pgid, worker_pgid = args.vllm_pgid, args.worker_pgid
        if not vllm_url:
            model_dir = services.prepare_model(python=args.vllm_python)
            vllm = services.start_vllm(model_dir, python=args.vllm_python, workdir=workdir / "v")
            stack.callback(vllm.stop)
            vllm_url, vllm_pgid = vllm.url, vllm.process.pid
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
            worker_url, worker_pgid = worker.url, worker.process.pid
        target = Target(vllm_url, worker_url, vllm_pgid, worker_pgid)
        result = asyncio.run(
            measure(
                target,
                agent=args.agent_name,
                levels=args.concurrency,
                pairs=args.pairs,
                max_tokens=args.max_tokens,
                lengths=args.lengths,
                control=args.control,
                warmup=args.warmup,
                max_seconds=args.max_seconds,
            )
        )

    result["machine"] = machine()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, {m['os']}")
    print(
        f"{args.pairs} pairs per level, max_tokens {args.max_tokens}, lengths {args.lengths}; "
        + (
            "CONTROL: both sides straight to vLLM, ms (d = one direct request - the other)"
            if args.control
            else "worker - direct per pair, ms (d = difference)"
        )
    )
    print(table(result))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
