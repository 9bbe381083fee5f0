"""Reports of a load-test run: the PNG plot of TTFT/ITL percentiles over time and a JSON summary.

Locust writes its own CSV (`--csv`) and HTML (`--html`) reports; this adds what Locust
cannot show for streams: TTFT and ITL percentiles (p50/p90/p99) per time window, with
the SLO targets drawn in.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests.metrics import Distribution, RequestSample, Summary, percentile, windows
from loadtests.slo import Slo, Verdict

PLOTTED = (50, 90, 99)


def percentile_series(
    samples: Sequence[RequestSample], width_s: float
) -> dict[str, dict[int, list[tuple[float, float]]]]:
    """Per window: (window midpoint s, percentile ms) of TTFT and pooled ITL, OK requests only."""
    series: dict[str, dict[int, list[tuple[float, float]]]] = {
        "ttft": {q: [] for q in PLOTTED},
        "itl": {q: [] for q in PLOTTED},
    }
    for start, group in windows([s for s in samples if s.ok], width_s):
        mid = start + width_s / 2
        ttfts = [s.ttft_s for s in group if s.ttft_s is not None]
        itls = [gap for s in group for gap in s.itls_s]
        for name, values in (("ttft", ttfts), ("itl", itls)):
            if values:
                for q in PLOTTED:
                    series[name][q].append((mid, percentile(values, q) * 1000))
    return series


def plot_percentiles(
    samples: Sequence[RequestSample], path: Path, slo: Slo | None = None, width_s: float = 5.0
) -> Path:
    """TTFT and ITL p50/p90/p99 per `width_s` window, SLO targets as dashed lines.

    matplotlib is imported here, not with the module: the CLI's in-cluster load test reads
    reports through this module, and `make plan` installs no load-test package."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")  # headless: no display on CI machines
    import matplotlib.pyplot as plt  # noqa: PLC0415

    series = percentile_series(samples, width_s)
    fig, axes = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    targets = (
        (slo.ttft_p99_ms if slo else None, "TTFT"),
        (slo.itl_p99_ms if slo else None, "ITL"),
    )
    for ax, name, (target, label) in zip(axes, ("ttft", "itl"), targets, strict=True):
        for q in PLOTTED:
            points = series[name][q]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", markersize=3, label=f"p{q}")
        if target is not None:
            ax.axhline(target, color="red", linestyle="--", label=f"SLO p99 {target:g} ms")
        ax.set_ylabel(f"{label} (ms)")
        ax.set_title(f"{label} percentiles per {width_s:g} s window")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
    axes[-1].set_xlabel("time since start of run (s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _dist_json(dist: Distribution) -> dict[str, Any]:
    def ms(value: float) -> float | None:
        return None if math.isnan(value) else round(value * 1000, 3)

    return {
        "count": dist.count,
        "mean_ms": ms(dist.mean),
        "p50_ms": ms(dist.p50),
        "p90_ms": ms(dist.p90),
        "p95_ms": ms(dist.p95),
        "p99_ms": ms(dist.p99),
        "max_ms": ms(dist.max),
    }


def summary_json(summary: Summary, verdict: Verdict, path: str = "") -> dict[str, Any]:
    """The figures and verdict; `path` is what was measured (the hops a request took,
    or only the target URL when the run does not know what stands behind it)."""
    return {
        "path": path,
        "requests": summary.requests,
        "errors": summary.errors,
        "error_rate": summary.error_rate,
        "duration_s": summary.duration_s,
        "requests_per_s": summary.requests_per_s,
        "output_tokens": summary.output_tokens,
        "output_tokens_per_s": summary.output_tokens_per_s,
        "by_kind": summary.by_kind,
        "ttft": _dist_json(summary.ttft),
        "itl": _dist_json(summary.itl),
        "tpot": _dist_json(summary.tpot),
        "e2e": _dist_json(summary.e2e),
        "slo": {
            "source": verdict.slo.source,
            "passed": verdict.passed,
            "failed": [c.key for c in verdict.failed],
            "checks": [
                {"key": c.key, "measured": c.measured, "target": c.target, "passed": c.passed}
                for c in verdict.checks
            ],
            "goodput_rps": verdict.goodput_rps,
        },
    }


def write_summary(summary: Summary, verdict: Verdict, path: Path, measured: str = "") -> Path:
    path.write_text(json.dumps(_no_nan(summary_json(summary, verdict, measured)), indent=2) + "\n")
    return path


def _no_nan(value: Any) -> Any:
    """NaN (no samples) is not JSON: write null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, list):
        return [_no_nan(v) for v in value]  # pyright: ignore[reportUnknownVariableType]
    return value


def format_by_kind(by_kind: dict[str, Summary]) -> list[str]:
    """p50/p99 of TTFT and E2E and the mean output length per kind of request (when there is
    more than one kind). The mean is over the kind's successful requests."""
    if len(by_kind) < 2:
        return []
    lines = ["  by kind:"]
    for kind, s in by_kind.items():
        if not s.ttft.count:
            lines.append(f"    {kind:<11} n={s.requests}, no successful request")
            continue
        mean_output = s.output_tokens / max(s.requests - s.errors, 1)
        lines.append(
            f"    {kind:<11} TTFT p50 {s.ttft.p50 * 1000:8.1f} ms p99 {s.ttft.p99 * 1000:8.1f} ms"
            f"   E2E p50 {s.e2e.p50 * 1000:8.1f} ms p99 {s.e2e.p99 * 1000:8.1f} ms"
            f"   (n={s.requests}, mean output {mean_output:.1f} tokens per successful request)"
        )
    return lines


def format_summary(summary: Summary) -> list[str]:
    def row(label: str, dist: Distribution) -> str:
        if not dist.count:
            return f"  {label:<5} no samples"
        return (
            f"  {label:<5} p50 {dist.p50 * 1000:9.1f} ms   p90 {dist.p90 * 1000:9.1f} ms   "
            f"p99 {dist.p99 * 1000:9.1f} ms   (n={dist.count})"
        )

    kinds = ", ".join(f"{k} {v}" for k, v in sorted(summary.by_kind.items()))
    return [
        f"requests: {summary.requests} ({kinds}) in {summary.duration_s:.1f} s, "
        f"errors: {summary.errors} ({summary.error_rate:.1%})",
        row("TTFT", summary.ttft),
        row("ITL", summary.itl),
        row("TPOT", summary.tpot),
        row("E2E", summary.e2e),
        f"  output: {summary.output_tokens} tokens, {summary.output_tokens_per_s:.1f} tokens/s; "
        f"{summary.requests_per_s:.2f} requests/s",
    ]


# --------------------------------------------------------------------------- in the log

# What `python -m loadtests.run --print-reports` prints around each report, so that the
# in-cluster master's log carries them (loadtests/incluster.py reads `kubectl logs`).
BEGIN = "----- swarmstack-loadtest begin {name} -----"
END = "----- swarmstack-loadtest end {name} -----"
PRINTED_REPORTS = ("summary.json", "locust_stats.csv", "locust_failures.csv")


def reports_from_log(log: str) -> dict[str, str]:
    """The files the master printed between the markers, by name."""
    found: dict[str, str] = {}
    lines = log.splitlines()
    for name in PRINTED_REPORTS:
        begin, end = BEGIN.format(name=name), END.format(name=name)
        if begin not in lines:
            continue
        start = lines.index(begin) + 1
        stop = lines.index(end, start) if end in lines[start:] else len(lines)
        found[name] = "\n".join(lines[start:stop]) + "\n"
    return found


def print_reports(out: Path) -> None:
    """What the master does last: each report between markers, for `kubectl logs`."""
    for name in PRINTED_REPORTS:
        path = out / name
        if path.is_file():
            print(BEGIN.format(name=name))
            print(path.read_text().rstrip("\n"))
            print(END.format(name=name))
    sys.stdout.flush()
