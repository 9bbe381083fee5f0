"""The worker overhead benchmark's arithmetic and scheduling, without services: paired
differences, CPU accounting from /proc, the concurrency of a level, the printed table."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import worker_overhead as bench  # pyright: ignore[reportMissingImports]


def timing(ttft: float, e2e: float, tokens: int, times: tuple[float, ...]) -> bench.Timing:
    return bench.Timing(ttft, e2e, tokens, times)


def test_paired_differences_are_worker_minus_direct() -> None:
    pairs = [
        bench.Pair(
            direct=timing(0.050, 1.00, 10, (0.050, 0.150, 0.250)),  # mean ITL 100 ms
            worker=timing(0.055, 1.02, 10, (0.055, 0.157, 0.259)),  # mean ITL 102 ms
        ),
        bench.Pair(
            direct=timing(0.040, 2.00, 20, (0.040, 0.140)),
            worker=timing(0.060, 2.10, 10, (0.060, 0.164)),  # unequal length
        ),
    ]
    out = bench.differences(pairs)
    assert out["ttft_difference"]["median_ms"] == pytest.approx(12.5)  # 5 and 20 ms
    assert out["ttft_difference"]["count"] == 2
    assert out["itl_difference"]["mean_ms"] == pytest.approx(3.0)  # 2 and 4 ms
    assert out["e2e_difference"]["median_ms"] == pytest.approx(60.0)
    # per output token: 1.02/10 - 1.00/10 = 2 ms; 2.10/10 - 2.00/20 = 110 ms
    per_token = out["e2e_per_output_token_difference"]
    assert per_token["mean_ms"] == pytest.approx(56.0)
    assert out["pairs_with_equal_output_tokens"] == 1
    assert out["e2e_difference_equal_output_tokens"]["median_ms"] == pytest.approx(20.0)


def test_p95_interpolates_between_the_two_largest() -> None:
    values = [i / 1000 for i in range(1, 21)]  # 1..20 ms
    s = bench.stats(values)
    assert s is not None
    assert s["p95_ms"] == pytest.approx(19.05)
    assert s["median_ms"] == pytest.approx(10.5)
    assert bench.stats([]) is None


def test_itl_needs_two_tokens() -> None:
    one = timing(0.1, 0.2, 1, (0.1,))
    assert one.mean_itl_s is None and one.itls_s == []
    out = bench.differences([bench.Pair(one, one)])
    assert out["itl_difference"] is None
    assert bench.sides([bench.Pair(one, one)])["worker_itl"] is None


def test_cpu_report_per_1k_tokens_share_and_other() -> None:
    before = bench.CpuSample(
        worker_s=10.0, vllm_s=100.0, client_s=1.0, machine_busy_s=500, machine_total_s=1000
    )
    after = bench.CpuSample(
        worker_s=12.0, vllm_s=118.0, client_s=1.5, machine_busy_s=530, machine_total_s=1040
    )
    cpu = bench.cpu_report(before, after, worker_tokens=4000, all_tokens=8000)
    assert cpu["worker_s"] == pytest.approx(2.0)
    assert cpu["worker_s_per_1k_tokens"] == pytest.approx(0.5)
    assert cpu["vllm_s_per_1k_tokens"] == pytest.approx(18.0 / 8)
    assert cpu["worker_share"] == pytest.approx(2.0 / 20.0)
    assert cpu["machine_busy_fraction"] == pytest.approx(30 / 40)
    assert cpu["other_s"] == pytest.approx(30 - 2 - 18 - 0.5)


def test_cpu_report_without_process_groups() -> None:
    sample = bench.CpuSample(None, None, 0.0, 1.0, 2.0)
    cpu = bench.cpu_report(sample, sample, worker_tokens=10, all_tokens=20)
    assert cpu["worker_s_per_1k_tokens"] is None
    assert cpu["worker_share"] is None and cpu["other_s"] is None


def _stat(pid: int, comm: str, pgrp: int, times: tuple[int, int, int, int]) -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime ...
    utime, stime, cutime, cstime = times
    return (
        f"{pid} ({comm}) S 1 {pgrp} {pgrp} 0 -1 4194560 10 0 0 0 "
        f"{utime} {stime} {cutime} {cstime} 20 0 1 0 100 1000 50\n"
    )


def test_group_cpu_sums_the_group_only(tmp_path: Path) -> None:
    hz = os.sysconf("SC_CLK_TCK")
    for pid, comm, pgrp, times in [
        (100, "python", 100, (100, 50, 7, 3)),
        (101, "VLLM::Engine) x (", 100, (200, 0, 0, 0)),  # ')' inside the name
        (200, "other", 200, (999, 999, 0, 0)),
    ]:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(_stat(pid, comm, pgrp, times))
    (tmp_path / "self").mkdir()  # not a pid: ignored
    (tmp_path / "300").mkdir()  # a process that went away: no stat file
    assert bench.group_cpu_s(100, tmp_path) == pytest.approx(360 / hz)
    assert bench.group_cpu_s(200, tmp_path) == pytest.approx(1998 / hz)


def test_group_cpu_of_a_real_process_group() -> None:
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    child = subprocess.Popen(
        [sys.executable, "-c", busy + "time.sleep(30)"], start_new_session=True
    )
    try:
        deadline = time.monotonic() + 20
        while bench.group_cpu_s(child.pid) < 0.25:
            assert time.monotonic() < deadline, "the busy child's CPU never showed up"
            time.sleep(0.05)
        assert bench.group_cpu_s(child.pid) < 5
    finally:
        child.kill()
        child.wait()


def test_machine_cpu_from_proc_stat(tmp_path: Path) -> None:
    hz = os.sysconf("SC_CLK_TCK")
    (tmp_path / "stat").write_text("cpu  100 5 50 800 20 3 2 10 0 0\ncpu0 1 2 3 4 5 6 7 8\n")
    busy, total = bench.machine_cpu_s(tmp_path)
    assert total == pytest.approx(990 / hz)
    assert busy == pytest.approx((990 - 820) / hz)


def test_order_alternates_within_pairs() -> None:
    assert [bench.direct_first(i) for i in range(4)] == [True, False, True, False]


def _fake_pair(i: int) -> bench.Pair:
    t = timing(0.01, 0.02 + i / 1000, 4, (0.01, 0.02))
    return bench.Pair(t, t)


def test_level_keeps_n_in_flight_until_the_last_measured_pair() -> None:
    in_flight = 0
    seen: list[int] = []  # in-flight count whenever a measured pair finishes
    started: list[int] = []

    async def run_pair(index: int, prompt: str) -> bench.Pair:
        nonlocal in_flight
        in_flight += 1
        started.append(index)
        await asyncio.sleep(0.01 + (index % 3) * 0.005)
        if index >= 0:
            seen.append(in_flight)
        in_flight -= 1
        return _fake_pair(index)

    prompts = [f"p{i}" for i in range(10)]
    run = asyncio.run(bench.run_level(4, prompts, run_pair, deadline=math.inf))
    assert [p.direct.e2e_s for p in run.pairs] == [_fake_pair(i).direct.e2e_s for i in range(10)]
    assert max(seen) == 4 and min(seen) == 4  # never fewer than N while measuring
    assert sorted(i for i in started if i >= 0) == list(range(10))
    assert run.fillers and all(i < 0 for i in started[10:])
    assert not run.truncated and not run.errors


def test_level_stops_at_the_deadline_and_counts_errors() -> None:
    async def run_pair(index: int, prompt: str) -> bench.Pair:
        await asyncio.sleep(0.02)
        if index == 1:
            raise bench.BenchmarkError("worker turn failed")
        return _fake_pair(index)

    deadline = time.monotonic() + 0.05
    prompts = [f"p{i}" for i in range(100)]
    run = asyncio.run(bench.run_level(1, prompts, run_pair, deadline=deadline))
    assert run.truncated
    assert 1 <= len(run.pairs) < 10
    assert run.errors == ["BenchmarkError: worker turn failed"]


def test_prompts_depend_on_level_and_index_only() -> None:
    assert bench.prompts_for(4, 3) == bench.prompts_for(4, 3)
    assert bench.prompts_for(4, 5)[:3] == bench.prompts_for(4, 3)
    assert bench.prompts_for(4, 3) != bench.prompts_for(8, 3)


def test_table_shows_each_level() -> None:
    pairs = [_fake_pair(i) for i in range(3)]
    cpu = bench.cpu_report(
        bench.CpuSample(1.0, 10.0, 0.0, 0.0, 0.0),
        bench.CpuSample(1.5, 14.5, 0.1, 5.0, 10.0),
        worker_tokens=1000,
        all_tokens=2000,
    )
    level = {
        "concurrency": 16,
        "pairs": 3,
        "truncated": True,
        "errors": 0,
        **bench.differences(pairs),
        "cpu": cpu,
    }
    text = bench.table({"levels": [level, {"concurrency": 32, "skipped": "out of time"}]})
    row = text.splitlines()[2]
    assert row.split()[:2] == ["16", "3"]
    assert "0.500" in row and "10.0%" in row and "50%" in row and "TRUNCATED" in row
    assert "32 skipped: out of time" in text


def test_concurrency_option() -> None:
    assert bench.parse_levels("1,4,8,16") == [1, 4, 8, 16]
    for bad in ("", "1,x", "0,4"):
        with pytest.raises(Exception, match="--concurrency"):
            bench.parse_levels(bad)
