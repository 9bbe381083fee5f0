"""Run a bounded, headless Locust load test and judge it against SLOs.

    python -m loadtests.run --host http://127.0.0.1:8080 -u 8 -t 60 --slo local
    python -m loadtests.run --host http://vllm:8000 --user-class ModelUser \\
        --slo stack:pilot/qwen25-7b

It runs `locust --headless -t <duration>` on `loadtests/locustfile.py` (users finish their
current turn within `--stop-timeout`, and the whole run is killed if it overruns its
bound), then writes to `--out`:

- `locust.html`, `locust_stats.csv`, `locust_stats_history.csv`, `locust_failures.csv`:
  Locust's own reports, with the TTFT/ITL/TPOT/E2E entries next to the HTTP ones;
- `samples.jsonl`: one line per streamed request; `summary.json`: the figures below;
- `latency.png`: TTFT/ITL p50/p90/p99 over time with the SLO targets.

It prints TTFT/ITL/TPOT/E2E p50/p90/p99, the SLO verdict and where the reports are.
Exit status: 0 when every SLO holds, 1 when one fails (each failed SLO is named with its
measured value and target), 2 when the run itself failed (Locust crashed, no samples).

Against a deployed stack, `--outputs FILE` (or `-`: stdin) reads `pulumi stack output
--json`: the target is the stack's model gateway (ModelUser, `--model`, `--api-key-file`),
the SLO its `slos` entry (loadtests/stack_outputs.py); the stack can also run this inside
the cluster (loadtests/incluster.py, `swarmstack loadtest-manifests`).

SLOs (`--slo`): a profile of `loadtests/slo_profiles.yaml` (`local`) or
`stack:<stack>[/<model>]`, which reads models[].slo of `stacks/Pulumi.<stack>.yaml`
through the stack's typed config; `--slo-set ttftP99Ms=500` overrides one objective.

Distributed mode, for loads one machine cannot drive: one master aggregates, any number
of workers generate load (each worker ships its raw samples to the master with its stats
reports, so the percentiles and the verdict cover every worker):

    # on the master machine (binds 127.0.0.1 unless told otherwise)
    python -m loadtests.run --master --master-bind-host 10.0.0.5 --expect-workers 4 \\
        --host http://worker.swarm:8080 -u 200 -r 10 -t 600 --slo stack:pilot
    # on each load machine
    python -m loadtests.run --worker --master-host 10.0.0.5

or, on one machine with several cores, `--processes N` (Locust forks N workers).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from loadtests.metrics import RequestSample, Summary, summarize, summarize_by_kind
from loadtests.report import (
    format_by_kind,
    format_summary,
    plot_percentiles,
    print_reports,
    write_summary,
)
from loadtests.slo import Slo, SloError, Verdict, evaluate, parse_overrides, resolve
from loadtests.stack_outputs import OutputsError, read_outputs, target_from_outputs

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
EXIT_PASS, EXIT_SLO, EXIT_RUN = 0, 1, 2
WORKERS_WAIT_S = 180  # distributed: how long the master waits for its workers to connect
USER_CLASSES = ("AgentSessionUser", "ModelUser")


@dataclass
class RunConfig:
    host: str
    out: Path
    users: int = 8
    spawn_rate: float = 2.0
    duration_s: int = 60
    stop_timeout_s: int = 60
    user_classes: tuple[str, ...] = ("AgentSessionUser",)
    slo: str = "local"
    slo_overrides: dict[str, float] = field(default_factory=dict[str, float])
    processes: int = 0
    master: bool = False
    master_bind_host: str = "127.0.0.1"
    expect_workers: int = 1
    locust_options: list[str] = field(default_factory=list[str])  # passed through as they are
    # What the verdict measures (summary.json `path`); default: `locust -> <host>`.
    path: str = ""
    # The objectives themselves (read from stack outputs), in place of `slo`.
    slo_value: Slo | None = None


@dataclass
class RunOutcome:
    exit_code: int
    path: str = ""  # what was measured
    summary: Summary | None = None
    verdict: Verdict | None = None
    by_kind: dict[str, Summary] = field(default_factory=dict[str, Summary])
    reports: dict[str, Path] = field(default_factory=dict[str, Path])
    message: str = ""

    def lines(self) -> list[str]:
        out: list[str] = [f"measured: {self.path}"] if self.path else []
        if self.summary is not None:
            out += format_summary(self.summary)
            out += format_by_kind(self.by_kind)
        if self.verdict is not None:
            out += self.verdict.lines()
        if self.reports:
            out.append("reports:")
            out += [f"  {name}: {path}" for name, path in self.reports.items()]
        if self.message:
            out.append(self.message)
        return out


def locust_argv(config: RunConfig) -> list[str]:
    out = config.out
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        config.host,
        "-u",
        str(config.users),
        "-r",
        str(config.spawn_rate),
        "-t",
        f"{config.duration_s}s",
        "--stop-timeout",
        str(config.stop_timeout_s),
        "--only-summary",
        "--csv",
        str(out / "locust"),
        "--csv-full-history",
        "--html",
        str(out / "locust.html"),
        "--samples-out",
        str(out / "samples.jsonl"),
        "--exit-code-on-error",
        "0",  # failed requests are judged by the error-rate SLO, not Locust's exit code
    ]
    if config.processes:
        argv += ["--processes", str(config.processes)]
    if config.master:
        argv += [
            "--master", "--expect-workers", str(config.expect_workers),
            "--expect-workers-max-wait", str(WORKERS_WAIT_S),
        ]  # fmt: skip
    if config.processes or config.master:
        argv += ["--master-bind-host", config.master_bind_host]
    return [*argv, *config.locust_options, *config.user_classes]


def load_samples(path: Path) -> list[RequestSample]:
    if not path.is_file():
        return []
    return [
        RequestSample.from_json(json.loads(line))
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def run_locust(argv: list[str], *, timeout_s: float, log_path: Path) -> int:
    """Run Locust in its own process group; stop it on overrun, SIGINT or SIGTERM."""
    python_path = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in python_path if p)}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        print(f"locust overran its {timeout_s:.0f} s bound: stopping it", file=sys.stderr)
        return -1
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # Locust writes its reports on SIGTERM
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # forked --processes workers left behind


def execute(config: RunConfig) -> RunOutcome:
    """Run Locust bounded in time, then summarize, judge and write the reports."""
    try:
        if config.slo_value is not None:
            slo = config.slo_value.with_overrides(config.slo_overrides)
        else:
            slo = resolve(config.slo, config.slo_overrides)
    except SloError as exc:
        return RunOutcome(EXIT_RUN, message=f"error: {exc}")
    config.out.mkdir(parents=True, exist_ok=True)
    samples_path = config.out / "samples.jsonl"
    samples_path.unlink(missing_ok=True)
    log_path = config.out / "locust.log"
    bound = config.duration_s + config.stop_timeout_s + 60
    if config.master:
        bound += WORKERS_WAIT_S  # the load starts once the workers are there
    started = time.monotonic()
    code = run_locust(locust_argv(config), timeout_s=bound, log_path=log_path)
    elapsed = time.monotonic() - started
    samples = load_samples(samples_path)
    if code not in (0,) or not samples:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
        why = f"locust exited with {code}" if code else "no streamed request completed"
        return RunOutcome(
            EXIT_RUN,
            reports={"locust log": log_path},
            message=f"error: load test failed after {elapsed:.0f} s: {why}\n{tail}",
        )
    return judge(samples, slo, config.out, log_path, path=config.path or f"locust -> {config.host}")


def judge(
    samples: list[RequestSample], slo: Slo, out: Path, log_path: Path, *, path: str = ""
) -> RunOutcome:
    summary = summarize(samples)
    verdict = evaluate(summary, samples, slo)
    reports = {
        "HTML (Locust)": out / "locust.html",
        "CSV (Locust)": out / "locust_stats.csv",
        "CSV history (Locust)": out / "locust_stats_history.csv",
        "latency plot": plot_percentiles(samples, out / "latency.png", slo),
        "summary": write_summary(summary, verdict, out / "summary.json", path),
        "samples": out / "samples.jsonl",
        "locust log": log_path,
    }
    reports = {k: v for k, v in reports.items() if v.exists()}
    message = ""
    if not verdict.passed:
        message = "SLO FAILED: " + "; ".join(str(c).removeprefix("FAIL ") for c in verdict.failed)
    return RunOutcome(
        exit_code=EXIT_PASS if verdict.passed else EXIT_SLO,
        path=path,
        summary=summary,
        verdict=verdict,
        by_kind=summarize_by_kind(samples),
        reports=reports,
        message=message,
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.run",
        description="Bounded headless Locust run with TTFT/ITL/E2E percentiles and SLO verdict.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument("--host", help="worker (AgentSessionUser) or model (ModelUser) base URL")
    p.add_argument("-u", "--users", type=int, default=8)
    p.add_argument("-r", "--spawn-rate", type=float, default=2.0)
    p.add_argument("-t", "--duration", type=int, default=60, help="seconds of load")
    p.add_argument("--stop-timeout", type=int, default=60, help="s for in-flight turns")
    p.add_argument("--user-class", action="append", choices=USER_CLASSES, dest="user_classes")
    p.add_argument(
        "--slo", help="profile name or stack:<stack>[/<model>] (default: local, or the outputs')"
    )
    p.add_argument(
        "--outputs",
        metavar="FILE",
        help="`pulumi stack output --json` of a deployed stack (a file, or - for stdin): the "
        "target is its gateway (ModelUser), the SLO its `slos` of --model",
    )
    p.add_argument("--model", help="with --outputs: the gateway model (default: first with an SLO)")
    p.add_argument(
        "--api-key-file", help="ModelUser: file holding the API key (the gateway's), sent as Bearer"
    )
    p.add_argument(
        "--print-reports",
        action="store_true",
        help="print summary.json and Locust's CSVs between markers at the end (the in-cluster "
        "master: its log carries them, loadtests/incluster.py)",
    )
    p.add_argument("--slo-set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", type=Path, default=Path("out/loadtest"))
    p.add_argument("--processes", type=int, default=0, help="fork N local Locust workers")
    p.add_argument("--master", action="store_true", help="distributed: run as the master")
    p.add_argument("--expect-workers", type=int, default=1)
    p.add_argument("--master-bind-host", default="127.0.0.1")
    p.add_argument("--worker", action="store_true", help="distributed: run as a load worker")
    p.add_argument("--master-host", default="127.0.0.1")
    p.add_argument("--master-port", type=int, default=5557)
    p.add_argument(
        "locust_options", nargs="*", help="after --: options for the locustfile / Locust"
    )
    return p


def _terminate_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through run_locust's finally, which stops Locust


class ArgumentError(ValueError):
    pass


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run the command line asks for; with `--outputs`, target and SLO from the stack."""
    try:
        overrides = parse_overrides(args.slo_set)
    except SloError as exc:
        raise ArgumentError(str(exc)) from None
    host: str | None = args.host
    user_classes = tuple(args.user_classes or ())
    options = list(args.locust_options)
    slo_value: Slo | None = None
    path = ""
    if args.outputs:
        if args.slo:
            raise ArgumentError("--slo and --outputs both name the SLO: give one")
        try:
            target = target_from_outputs(read_outputs(args.outputs), args.model)
        except OutputsError as exc:
            raise ArgumentError(str(exc)) from None
        host = host or target.host
        user_classes = user_classes or ("ModelUser",)
        options += ["--model-name", target.model]
        slo_value = target.slo
        path = f"locust -> model gateway {target.base_url} (model {target.model})"
    elif args.model:
        raise ArgumentError("--model needs --outputs (or pass `-- --model-name NAME`)")
    if args.api_key_file:
        options += ["--api-key-file", str(args.api_key_file)]
    if not host:
        raise ArgumentError("--host is required (or --outputs)")
    return RunConfig(
        host=host,
        out=args.out,
        users=args.users,
        spawn_rate=args.spawn_rate,
        duration_s=args.duration,
        stop_timeout_s=args.stop_timeout,
        user_classes=user_classes or ("AgentSessionUser",),
        slo=args.slo or "local",
        slo_overrides=overrides,
        processes=args.processes,
        master=args.master,
        master_bind_host=args.master_bind_host,
        expect_workers=args.expect_workers,
        locust_options=options,
        path=path,
        slo_value=slo_value,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate_on_sigterm)
    if args.worker:
        worker = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
            "--master-host", args.master_host, "--master-port", str(args.master_port),
            *args.locust_options,
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.call(worker, env=env)
    try:
        config = config_from_args(args)
    except ArgumentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUN
    try:
        outcome = execute(config)
    except KeyboardInterrupt:
        print("interrupted: Locust stopped", file=sys.stderr)
        return 130
    for line in outcome.lines():
        print(line)
    if args.print_reports:
        print_reports(config.out)
    return outcome.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
