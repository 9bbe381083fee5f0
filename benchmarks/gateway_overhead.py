"""Latency the model gateway (LiteLLM's proxy) adds over calling vLLM directly, paired
requests side by side in one run, with the method of `worker_overhead.py`.

    .venv/bin/python benchmarks/gateway_overhead.py [--concurrency 1,4] [--pairs 32]
        [--max-tokens 32] [--max-seconds 900] [--out FILE]
        [--vllm-python .venv-vllm/bin/python] [--litellm-python .venv-litellm/bin/python]

Starts vLLM on CPU (SmolLM2-135M-Instruct), a Redis and LiteLLM's proxy with the config
the gateway component renders for it (`loadtests.gateway.local_proxy_config`: the local
model as the gateway model `smollm2-135m-instruct`, no route limits), all on 127.0.0.1.
A *pair* is the same streamed chat request (same messages, `max_tokens`) sent once to
vLLM and once to the proxy (with its key, under the gateway model name), one after the
other, the order alternating from pair to pair; each pair has its own prompt (neither
side profits from the other's prefix cache more than the other). Per pair the
differences gateway minus direct of TTFT (first content chunk) and E2E (end of stream)
are taken, then their median and p95 over the level (`worker_overhead.differences`, with
"worker" standing for the gateway). Lengths are natural (the proxy may not pass vLLM's
`min_tokens` on): the E2E difference is also reported over the pairs whose two sides
streamed the same number of tokens. `--control` sends both sides straight to vLLM: the
method's noise floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import httpx  # noqa: E402
import worker_overhead as wo  # noqa: E402  # pyright: ignore[reportMissingImports]
from machine import machine  # noqa: E402

from components.gateway.spec import GatewaySpec  # noqa: E402
from loadtests import gateway as local_gateway  # noqa: E402
from loadtests import services  # noqa: E402
from loadtests.local_model import LOCAL_MODEL  # noqa: E402

AGENT = "bench"


async def measure(
    vllm_url: str,
    proxy_url: str,
    key: str,
    *,
    levels: list[int],
    pairs: int,
    max_tokens: int,
    warmup: int,
    control: bool,
    max_seconds: float,
) -> dict[str, Any]:
    system = wo.system_prompt(AGENT)
    deadline = time.monotonic() + max_seconds
    limits = httpx.Limits(max_connections=4 * max(levels) + 8, max_keepalive_connections=None)
    timeout = httpx.Timeout(120.0)
    async with (
        httpx.AsyncClient(timeout=timeout, limits=limits) as plain,
        httpx.AsyncClient(
            timeout=timeout, limits=limits, headers={"Authorization": f"Bearer {key}"}
        ) as keyed,
    ):

        async def run_pair(index: int, message: str) -> wo.Pair:
            request = wo.Request(message, max_tokens, 0)

            def d_call() -> Awaitable[wo.Timing]:
                return wo.direct(
                    plain, vllm_url, model=services.MODEL_NAME, system=system, request=request
                )

            def g_call() -> Awaitable[wo.Timing]:
                if control:
                    return d_call()
                return wo.direct(
                    keyed, proxy_url, model=LOCAL_MODEL.name, system=system, request=request
                )

            if wo.direct_first(index):
                d = await d_call()
                g = await g_call()
            else:
                g = await g_call()
                d = await d_call()
            return wo.Pair(d, g)

        for i, message in enumerate(wo.prompts_for(0, warmup)):
            await run_pair(i, message)
        results: list[dict[str, Any]] = []
        for level in levels:
            if time.monotonic() >= deadline:
                results.append({"concurrency": level, "skipped": "out of --max-seconds"})
                continue
            started = time.monotonic()
            run = await wo.run_level(
                level, wo.prompts_for(level, pairs), run_pair, deadline=deadline
            )
            if not run.pairs:
                raise wo.BenchmarkError(f"no pair completed at concurrency {level}: {run.errors}")
            sides = wo.sides(run.pairs)
            results.append(
                {
                    "concurrency": level,
                    "pairs": len(run.pairs),
                    "errors": len(run.errors),
                    "error_examples": run.errors[:3],
                    "truncated": run.truncated,
                    "duration_s": time.monotonic() - started,
                    **wo.differences(run.pairs),
                    "direct_ttft": sides["direct_ttft"],
                    "direct_e2e": sides["direct_e2e"],
                    "gateway_ttft": sides["worker_ttft"],
                    "gateway_e2e": sides["worker_e2e"],
                }
            )
    return {
        "config": {
            "concurrency": levels,
            "pairs_per_level": pairs,
            "max_tokens": max_tokens,
            "warmup": warmup,
            "control": control,
        },
        "levels": results,
    }


def table(result: dict[str, Any]) -> str:
    head = (
        f"{'N':>3} {'pairs':>5} | {'TTFT d p50':>10} {'p95':>8} | {'E2E d p50':>9} {'p95':>8} | "
        f"{'E2E= p50':>8} {'p95':>8} {'n=':>3} | {'direct TTFT p50':>15} {'E2E p50':>8}"
    )
    lines = [head, "-" * len(head)]
    for level in result["levels"]:
        if "skipped" in level:
            lines.append(f"{level['concurrency']:>3} skipped: {level['skipped']}")
            continue
        t, e = level["ttft_difference"], level["e2e_difference"]
        eq = level["e2e_difference_equal_output_tokens"]
        lines.append(
            f"{level['concurrency']:>3} {level['pairs']:>5} | "
            f"{wo._ms(t, 'median_ms'):>10} {wo._ms(t, 'p95_ms'):>8} | "  # pyright: ignore[reportPrivateUsage]
            f"{wo._ms(e, 'median_ms'):>9} {wo._ms(e, 'p95_ms'):>8} | "  # pyright: ignore[reportPrivateUsage]
            f"{wo._ms(eq, 'median_ms'):>8} {wo._ms(eq, 'p95_ms'):>8} "  # pyright: ignore[reportPrivateUsage]
            f"{level['pairs_with_equal_output_tokens']:>3} | "
            f"{level['direct_ttft']['median_ms']:>15.1f} {level['direct_e2e']['median_ms']:>8.1f}"
            + (" TRUNCATED" if level["truncated"] else "")
            + (f" errors={level['errors']}" if level["errors"] else "")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--concurrency", type=wo.parse_levels, default=[1, 4])
    p.add_argument("--pairs", type=int, default=32)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--control", action="store_true")
    p.add_argument("--max-seconds", type=float, default=900.0)
    p.add_argument("--vllm-python", default=wo.DEFAULT_VLLM_PYTHON)
    p.add_argument("--litellm-python", default=None)
    p.add_argument("--out", type=Path, default=wo.ROOT / "out" / "bench" / "gateway_overhead.json")
    args = p.parse_args(argv)
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="swarm-gw-")))
        model_dir = services.prepare_model(python=args.vllm_python)
        vllm = services.start_vllm(model_dir, python=args.vllm_python, workdir=workdir / "v")
        stack.callback(vllm.stop)
        spec = GatewaySpec()
        config = local_gateway.local_proxy_config(
            spec, [LOCAL_MODEL], {LOCAL_MODEL.name: f"{vllm.url}/v1"}
        )
        proxy, redis = local_gateway.start_gateway(
            spec, config, workdir=workdir / "gw", python=args.litellm_python
        )
        stack.callback(redis.stop)
        stack.callback(proxy.stop)
        result = asyncio.run(
            measure(
                vllm.url,
                proxy.url,
                proxy.master_key,
                levels=args.concurrency,
                pairs=args.pairs,
                max_tokens=args.max_tokens,
                warmup=args.warmup,
                control=args.control,
                max_seconds=args.max_seconds,
            )
        )
    result["machine"] = machine()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, load {m['load_average_1m']}")
    print(
        f"{args.pairs} pairs per level, max_tokens {args.max_tokens}, natural lengths; "
        + ("CONTROL: both sides to vLLM" if args.control else "gateway - direct per pair")
        + ", ms (E2E= over pairs with equal token counts)"
    )
    print(table(result))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
