"""Pure parts of the load tests: metric definitions, SLOs, goodput, SSE parsing, reports."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtests.metrics import (
    Distribution,
    RequestObjectives,
    RequestSample,
    goodput,
    inter_token_latencies,
    meets_slo,
    percentile,
    run_duration,
    summarize,
    summarize_by_kind,
    tpot,
    windows,
)
from loadtests.prompts import TOOLS, chat_prompt, filler_prompt, tool_prompt
from loadtests.report import format_by_kind, percentile_series, plot_percentiles, summary_json
from loadtests.run import RunConfig, judge, locust_argv
from loadtests.slo import (
    Slo,
    SloError,
    evaluate,
    from_profile,
    from_stack,
    parse_overrides,
    resolve,
)

finite = st.floats(min_value=0, max_value=1e4, allow_nan=False, allow_infinity=False)


def sample(  # noqa: PLR0917 - a test factory with defaults
    ttft: float | None = 0.1,
    chunks: tuple[float, ...] = (0.1, 0.2, 0.3),
    e2e: float = 0.3,
    tokens: int = 3,
    ok: bool = True,
    started_at: float = 1000.0,
    kind: str = "agent-turn",
) -> RequestSample:
    return RequestSample(
        kind=kind,
        started_at=started_at,
        e2e_s=e2e,
        ttft_s=ttft,
        chunk_offsets_s=chunks,
        output_tokens=tokens,
        ok=ok,
        error=None if ok else "boom",
    )


def local_slo(**changes: float) -> Slo:
    return Slo("test", ttft_p99_ms=200, itl_p99_ms=150, e2e_p99_s=1, error_rate=0.1).with_overrides(
        changes
    )


# --------------------------------------------------------------------------- metrics


@given(st.lists(finite, min_size=1, max_size=60), st.floats(min_value=0, max_value=100))
def test_percentile_is_numpys_linear_percentile(values: list[float], q: float) -> None:
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), abs=1e-6)


@given(st.lists(finite, min_size=1, max_size=60))
def test_percentiles_are_ordered_and_bounded(values: list[float]) -> None:
    d = Distribution.of(values)
    assert min(values) <= d.p50 <= d.p90 <= d.p95 <= d.p99 <= d.max == max(values)


def test_percentile_of_nothing_is_nan_and_q_is_checked() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


@given(st.lists(finite, min_size=2, max_size=50).map(sorted))
def test_itl_gaps_add_up_to_the_stream(offsets: list[float]) -> None:
    gaps = inter_token_latencies(offsets)
    assert len(gaps) == len(offsets) - 1
    assert sum(gaps) == pytest.approx(offsets[-1] - offsets[0], abs=1e-6)


def test_tpot_follows_vllms_definition() -> None:
    assert tpot(e2e_s=2.0, ttft_s=0.5, output_tokens=16) == pytest.approx(0.1)
    assert tpot(e2e_s=2.0, ttft_s=0.5, output_tokens=1) is None  # undefined for one token
    assert tpot(e2e_s=2.0, ttft_s=None, output_tokens=16) is None


def test_summary_pools_itl_and_leaves_failed_requests_out_of_latencies() -> None:
    samples = [
        sample(ttft=0.1, chunks=(0.1, 0.2, 0.4), e2e=0.5, tokens=3, started_at=0),
        sample(ttft=0.3, chunks=(0.3, 0.35), e2e=0.4, tokens=2, started_at=1),
        sample(ttft=None, chunks=(), e2e=9.0, tokens=0, ok=False, started_at=2),
    ]
    s = summarize(samples)
    assert (s.requests, s.errors) == (3, 1)
    assert s.error_rate == pytest.approx(1 / 3)
    assert s.ttft.count == 2 and s.ttft.p50 == pytest.approx(0.2)
    assert s.itl.count == 3  # 2 + 1 gaps, pooled
    assert s.itl.mean == pytest.approx((0.1 + 0.2 + 0.05) / 3)
    assert s.itl.max == pytest.approx(0.2)
    assert s.e2e.max == pytest.approx(0.5)  # the failed 9 s request is not a latency
    assert s.tpot.count == 2
    assert s.output_tokens == 5
    assert s.duration_s == pytest.approx(11.0)  # first send to last completion
    assert s.output_tokens_per_s == pytest.approx(5 / 11)
    assert s.by_kind == {"agent-turn": 3}


def test_run_duration_and_windows() -> None:
    samples = [sample(started_at=10, e2e=1), sample(started_at=12, e2e=4)]
    assert run_duration(samples) == pytest.approx(6)
    assert [(start, len(group)) for start, group in windows(samples, 5)] == [(0, 1), (5, 1)]
    assert windows([], 5) == []


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0.001, max_value=5),
            st.floats(min_value=0.001, max_value=5),
            st.booleans(),
        ),
        max_size=40,
    ),
    st.floats(min_value=0.01, max_value=5),
    st.floats(min_value=1, max_value=100),
)
def test_goodput_counts_exactly_the_requests_meeting_every_objective(
    rows: list[tuple[float, float, bool]], ttft_limit: float, duration: float
) -> None:
    samples = [
        sample(ttft=ttft, chunks=(ttft,), e2e=ttft + extra, tokens=1, ok=ok)
        for ttft, extra, ok in rows
    ]
    objectives = RequestObjectives(ttft_s=ttft_limit, e2e_s=ttft_limit * 2)
    expected = sum(
        1 for t, extra, ok in rows if ok and t <= ttft_limit and t + extra <= 2 * ttft_limit
    )
    assert goodput(samples, objectives, duration) == pytest.approx(expected / duration)
    assert goodput(samples, RequestObjectives(), duration) == pytest.approx(
        sum(1 for *_, ok in rows if ok) / duration
    )


def test_meets_slo_per_request() -> None:
    limits = RequestObjectives(ttft_s=0.2, itl_s=0.1, e2e_s=1.0)
    assert meets_slo(sample(), limits)
    assert not meets_slo(sample(ok=False), limits)
    assert not meets_slo(sample(ttft=None), limits)
    assert not meets_slo(sample(ttft=0.3), limits)
    assert not meets_slo(sample(e2e=1.5), limits)
    assert not meets_slo(sample(chunks=(0.1, 0.5, 0.9)), limits)  # steadily slow stream
    # One slow gap among many does not disqualify a long stream (per-request p99).
    steady = tuple(0.1 + 0.01 * i for i in range(300))
    bumpy = (*steady, steady[-1] + 0.5)
    assert meets_slo(sample(chunks=bumpy, e2e=0.9, tokens=len(bumpy)), limits)
    assert goodput([sample()], limits, 0) == 0


@given(st.floats(min_value=0, max_value=100), st.floats(min_value=0, max_value=100))
def test_sample_json_round_trip(ttft: float, e2e: float) -> None:
    s = sample(ttft=ttft, e2e=e2e)
    assert RequestSample.from_json(json.loads(json.dumps(s.to_json()))) == s


# --------------------------------------------------------------------------- SSE


# --------------------------------------------------------------------------- SLOs


def test_local_profile_is_sized_for_a_cpu_target() -> None:
    slo = from_profile("local")
    assert slo.ttft_p99_ms > 500 and slo.itl_p99_ms > 50  # looser than the GPU stack's
    assert 0 < slo.error_rate < 1


def test_stack_slos_come_from_the_typed_stack_config() -> None:
    first = from_stack("pilot")
    assert (first.ttft_p99_ms, first.itl_p99_ms, first.e2e_p99_s) == (500, 50, 60)
    assert "qwen25-7b" in first.source
    batch = resolve("stack:pilot/llama31-8b")
    assert (batch.ttft_p99_ms, batch.itl_p99_ms, batch.e2e_p99_s) == (2500, 100, 120)
    with pytest.raises(SloError, match="no model 'nope'"):
        from_stack("pilot", "nope")
    with pytest.raises(SloError, match="no stack file"):
        from_stack("nostack")
    with pytest.raises(SloError, match="no SLO profile"):
        resolve("nonexistent")


def test_overrides() -> None:
    slo = resolve("local", parse_overrides(["ttftP99Ms=1", "errorRate=0"]))
    assert slo.ttft_p99_ms == 1 and slo.error_rate == 0
    assert "ttftP99Ms=1" in slo.source
    for bad in ("ttft=1", "ttftP99Ms", "ttftP99Ms=fast"):
        with pytest.raises(SloError):
            parse_overrides([bad])


def test_verdict_names_each_failed_slo_with_measured_and_target() -> None:
    samples = [sample(ttft=0.1 * (i + 1), e2e=0.5 + 0.1 * i, started_at=i) for i in range(5)]
    summary = summarize(samples)
    assert evaluate(summary, samples, local_slo(ttftP99Ms=1000)).passed

    verdict = evaluate(summary, samples, local_slo(ttftP99Ms=100, e2eP99S=0.6))
    assert not verdict.passed
    assert [c.key for c in verdict.failed] == ["ttftP99Ms", "e2eP99S"]
    text = "\n".join(verdict.lines())
    assert "FAIL: ttftP99Ms, e2eP99S" in text
    assert "FAIL ttftP99Ms: measured 496.0 ms > target 100.0 ms" in text
    assert "ok   itlP99Ms" in text
    assert "goodput" in text


def test_errors_and_empty_runs_fail() -> None:
    failing = [sample(ok=False), sample()]
    verdict = evaluate(summarize(failing), failing, local_slo(errorRate=0.1))
    assert [c.key for c in verdict.failed] == ["errorRate"]
    nothing = evaluate(summarize([]), [], local_slo())
    assert {c.key for c in nothing.failed} == {"ttftP99Ms", "itlP99Ms", "e2eP99S", "errorRate"}
    assert "n/a" in "\n".join(nothing.lines())


# --------------------------------------------------------------------------- prompts, reports


def test_prompts_are_distinct_and_name_their_tool() -> None:
    rng = random.Random(7)
    prompts = [chat_prompt(rng) for _ in range(300)]
    prompts += [tool_prompt(tool, rng) for tool in TOOLS for _ in range(100)]
    assert len(set(prompts)) == len(prompts)
    assert "calculator" in tool_prompt("calculator", rng)
    assert "ledger" in tool_prompt("ledger", rng)
    long = filler_prompt(200, rng)
    assert 180 <= len(long.split()) <= 220
    assert filler_prompt(50, rng)[:30] != filler_prompt(50, rng)[:30]  # no shared prefix


def test_reports_plot_and_summary(tmp_path: Path) -> None:
    samples = [
        sample(ttft=0.05 * (i % 7 + 1), chunks=(0.1, 0.2, 0.35), e2e=0.4, started_at=i * 0.7)
        for i in range(40)
    ]
    series = percentile_series(samples, 5)
    assert series["ttft"][99] and all(p50 <= p99 for (_, p50), (_, p99) in zip(
        series["ttft"][50], series["ttft"][99], strict=True
    ))  # fmt: skip
    png = plot_percentiles(samples, tmp_path / "latency.png", local_slo())
    assert png.read_bytes()[:4] == b"\x89PNG"
    outcome = judge(
        samples, local_slo(ttftP99Ms=10), tmp_path, tmp_path / "locust.log", path="a -> b"
    )
    assert outcome.exit_code == 1
    assert outcome.lines()[0] == "measured: a -> b"
    assert outcome.message.startswith("SLO FAILED: ttftP99Ms")
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["slo"]["failed"] == ["ttftP99Ms"]
    assert written["path"] == "a -> b"  # which path the verdict is of
    assert written["ttft"]["count"] == 40
    doc = summary_json(outcome.summary, outcome.verdict)  # type: ignore[arg-type]
    assert doc["itl"]["p50_ms"] == pytest.approx(125.0)


def test_per_kind_lines_label_the_mean_output_tokens() -> None:
    samples = [
        sample(kind="agent-turn", tokens=3, ttft=0.1, e2e=0.3),
        sample(kind="agent-turn", tokens=6, ttft=0.3, e2e=0.5),
        sample(kind="agent-turn", tokens=0, ttft=None, chunks=(), e2e=2.0, ok=False),
        sample(kind="model-call", tokens=2, ttft=0.05, chunks=(0.05, 0.1), e2e=0.1),
        sample(kind="tool-turn", tokens=0, ttft=None, chunks=(), e2e=1.0, ok=False),
    ]
    assert format_by_kind(summarize_by_kind(samples)) == [
        "  by kind:",
        "    agent-turn  TTFT p50    200.0 ms p99    298.0 ms   E2E p50    400.0 ms p99    498.0 ms"
        "   (n=3, mean output 4.5 tokens per successful request)",
        "    model-call  TTFT p50     50.0 ms p99     50.0 ms   E2E p50    100.0 ms p99    100.0 ms"
        "   (n=1, mean output 2.0 tokens per successful request)",
        "    tool-turn   n=1, no successful request",
    ]
    assert format_by_kind(summarize_by_kind(samples[:2])) == []  # one kind: the summary says it


@settings(max_examples=20)
@given(st.integers(min_value=1, max_value=64), st.integers(min_value=0, max_value=4))
def test_locust_command_is_bounded_and_local(users: int, processes: int) -> None:
    config = RunConfig(
        host="http://127.0.0.1:1", out=Path("/tmp/x"), users=users, duration_s=20,
        processes=processes, user_classes=("ModelUser",),
    )  # fmt: skip
    argv = locust_argv(config)
    assert argv[argv.index("-t") + 1] == "20s"
    assert argv[argv.index("-u") + 1] == str(users)
    assert "--headless" in argv and argv[-1] == "ModelUser"
    if processes:
        assert argv[argv.index("--processes") + 1] == str(processes)
        assert argv[argv.index("--master-bind-host") + 1] == "127.0.0.1"
    else:  # one process: no master, so nothing listens for workers
        assert "--processes" not in argv and "--master-bind-host" not in argv
