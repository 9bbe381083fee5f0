"""Short real Locust runs against the local target (vLLM on CPU + Redis + the agent worker)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from loadtests.run import EXIT_PASS, EXIT_SLO
from loadtests.services import Service

ROOT = Path(__file__).resolve().parents[2]


def run_loadtest(out: Path, *args: str, timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtests.run", "--out", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def locust_entries(out: Path) -> dict[tuple[str, str], dict[str, str]]:
    with (out / "locust_stats.csv").open() as fh:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(fh)}


def summary(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text())


def test_agent_sessions_produce_streaming_figures_and_pass_local_slo(
    worker_factory: Any, tmp_path: Path
) -> None:
    worker: Service = worker_factory()
    out = tmp_path / "run"
    result = run_loadtest(
        out,
        "--host", worker.url, "-u", "4", "-r", "4", "-t", "20", "--slo", "local",
        "--", "--think-min", "0.2", "--think-max", "1", "--turns-per-session", "3",
    )  # fmt: skip
    report = result.stdout + result.stderr
    assert result.returncode == EXIT_PASS, report

    figures = summary(out)
    assert figures["requests"] >= 4, report
    assert {"agent-turn", "tool-turn"} <= set(figures["by_kind"]), report
    for metric in ("ttft", "itl", "e2e"):
        assert figures[metric]["count"] > 0, metric
        assert 0 < figures[metric]["p50_ms"] <= figures[metric]["p99_ms"], metric
    # TTFT comes before the end of the stream; ITL gaps are shorter than whole turns.
    assert figures["ttft"]["p50_ms"] <= figures["e2e"]["p50_ms"]
    assert figures["itl"]["p50_ms"] < figures["e2e"]["p50_ms"]
    assert figures["slo"]["passed"] is True

    for label in ("TTFT", "ITL", "E2E"):
        assert f"{label} " in result.stdout, report  # printed percentile rows
    assert "SLO verdict" in result.stdout and "PASS" in result.stdout

    entries = locust_entries(out)
    for name in ("TTFT", "ITL", "TPOT", "E2E"):
        assert int(entries[("SSE", name)]["Request Count"]) > 0, name
    assert ("POST", "POST /v1/sessions/[id]/turns") in entries
    assert (out / "locust.html").stat().st_size > 0
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_impossible_slo_fails_the_run_and_names_it(worker_factory: Any, tmp_path: Path) -> None:
    worker: Service = worker_factory()
    out = tmp_path / "run"
    result = run_loadtest(
        out,
        "--host", worker.url, "-u", "2", "-r", "2", "-t", "8", "--slo", "local",
        "--slo-set", "ttftP99Ms=1",
        "--", "--think-min", "0.1", "--think-max", "0.5", "--tool-every", "0",
    )  # fmt: skip
    report = result.stdout + result.stderr
    assert result.returncode == EXIT_SLO, report
    assert "SLO FAILED: ttftP99Ms" in result.stdout, report
    assert "target 1.0 ms" in result.stdout, report
    assert summary(out)["slo"]["failed"] == ["ttftP99Ms"], report


def test_model_user_in_distributed_mode_collects_every_workers_samples(
    vllm: Service, tmp_path: Path
) -> None:
    """Two forked Locust workers stream straight from vLLM; the master gets their samples."""
    out = tmp_path / "run"
    result = run_loadtest(
        out,
        "--host", vllm.url, "--user-class", "ModelUser", "-u", "2", "-r", "2", "-t", "10",
        "--processes", "2", "--slo", "local",
        "--", "--prompt-tokens", "64", "--output-tokens", "16", "--model-think-max", "0.2",
    )  # fmt: skip
    report = result.stdout + result.stderr
    assert result.returncode == EXIT_PASS, report
    figures = summary(out)
    assert figures["by_kind"] == {"model": figures["requests"]}
    assert figures["errors"] == 0
    # ignore_eos: every request streams exactly the asked-for number of tokens.
    assert figures["output_tokens"] == 16 * figures["requests"]
    entries = locust_entries(out)
    assert int(entries[("STREAM", "TTFT")]["Request Count"]) == figures["requests"]
