"""`swarmstack capacity`: the pilot's demand against what it provides, from summary.json files
written by the load tests' own report code (loadtests/report.py) from constructed samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadtests.metrics import RequestSample, summarize
from loadtests.report import write_summary
from loadtests.slo import Slo, evaluate
from stacks.capacity import CapacityError, plan_capacity, read_measurement
from stacks.cli import main
from stacks.config import ConfigError, StackConfig, load

ROOT = Path(__file__).resolve().parents[1]
# qwen25-7b's objectives in the pilot: a run judged against them measured within them.
QWEN_SLO = Slo("qwen25-7b (test)", ttft_p99_ms=500, itl_p99_ms=50, e2e_p99_s=60, error_rate=0.01)


def run_summary(
    folder: Path,
    *,
    per_second: int,
    e2e_s: float = 1.0,
    ttft_s: float = 0.1,
    seconds: int = 10,
    kind: str = "agent-turn",
    slo: Slo = QWEN_SLO,
) -> Path:
    """A run with `per_second` turns starting each second, each lasting `e2e_s`."""
    samples = [
        RequestSample(
            kind=kind,
            started_at=i / per_second,
            e2e_s=e2e_s,
            ttft_s=ttft_s,
            chunk_offsets_s=tuple(ttft_s + 0.02 * k for k in range(10)),
            output_tokens=10,
        )
        for i in range(per_second * seconds)
    ]
    summary = summarize(samples, duration_s=float(seconds))
    folder.mkdir(parents=True, exist_ok=True)
    return write_summary(summary, evaluate(summary, samples, slo), folder / "summary.json")


def pilot(raw: dict[str, Any], **demand: Any) -> StackConfig:
    raw["demand"] = {
        "users": 40,
        "turnsPerMinute": 120,
        "agents": [
            {"agent": "concierge", "share": 0.75},
            {"agent": "researcher", "share": 0.25},
        ],
        **demand,
    }
    return load(raw, "us-east-1", "Pulumi.pilot.yaml")


def test_a_run_is_one_replicas_capacity_in_turns(tmp_path: Path) -> None:
    got = read_measurement("qwen25-7b", run_summary(tmp_path, per_second=4, e2e_s=2.0), 2)
    # 40 turns in 10 s, all within the SLO, on 2 replicas; 2 s each: 8 in flight.
    assert got.turns_per_s_per_replica == pytest.approx(2.0)
    assert got.in_flight_per_replica == pytest.approx(4.0)
    assert got.turn_e2e_mean_s == pytest.approx(2.0)


def test_the_pilot_carries_its_demand_when_a_replica_holds_the_keda_threshold(
    pilot_raw: dict[str, Any], tmp_path: Path
) -> None:
    # 48 turns/s per replica, 1 s each: 48 in flight, qwen's KEDA threshold (64 x 0.75).
    # llama31-8b (threshold 32) has its own run at 32 in flight.
    config = pilot(pilot_raw)
    measured = {
        "qwen25-7b": read_measurement("qwen25-7b", run_summary(tmp_path / "q", per_second=48), 1),
        "llama31-8b": read_measurement("llama31-8b", run_summary(tmp_path / "l", per_second=32), 1),
    }
    report = plan_capacity(config, "pilot", measured)
    assert report.shortfalls == []
    qwen = next(m for m in report.models if m.model == "qwen25-7b")
    assert (qwen.demand_turns_per_s, qwen.replicas_needed, qwen.keda_threshold) == (1.5, 1, 48)
    concierge = next(a for a in report.agents if a.agent == "concierge")
    assert (concierge.replicas_needed, concierge.basis) == (2, "30 sessions / 20 per pod")
    assert "no shortfall" in report.render()


def test_each_shortfall_is_named_by_its_config_path(
    pilot_raw: dict[str, Any], tmp_path: Path
) -> None:
    # 1 turn/s per replica at 1 in flight; 6 turns/s for qwen (interactive, headroom 0.75)
    # -> 8 replicas; researcher's turns last 20 s -> 40 consumers for 6 partitions.
    config = pilot(pilot_raw, turnsPerMinute=480, users=400)
    measured = {
        "qwen25-7b": read_measurement("qwen25-7b", run_summary(tmp_path / "q", per_second=1), 1),
        "llama31-8b": read_measurement(
            "llama31-8b", run_summary(tmp_path / "l", per_second=1, e2e_s=20.0), 1
        ),
    }
    report = plan_capacity(config, "pilot", measured)
    by_path = {s.path: s.message for s in report.shortfalls}
    assert by_path["models[0].replicas.max"].startswith(
        "qwen25-7b needs 8 replicas for 6.000 turns/s at 1.000 per replica"
    )
    assert (
        "KEDA adds a qwen25-7b replica at 48 sequences per replica"
        in by_path["autoscaling.interactiveSlotUtilization (models[0].vllm.maxNumSeqs)"]
    )
    assert (
        "needs 40 consumers, but its tasks topic has 6 partitions"
        in by_path["agents[0].topics.tasks.partitions"]
    )
    assert by_path["agents[0].replicas.max"].startswith("researcher needs 40 pods")
    # 400 users x 0.75 = 300 sessions at 20 per pod.
    assert by_path["agents[1].replicas.max"].startswith("concierge needs 15 pods")
    # qwen 8 + llama 2 (2 turns/s at 1 per replica, batch headroom 1) MIG slices, 2 a node.
    assert by_path["gpuPools[0].maxSize"] == (
        "pool h100-mig needs 5 x p5.4xlarge for 10 x nvidia.com/mig-3g.40gb; the stack allows 2"
    )
    assert report.usd_per_hour_needed == pytest.approx(5 * report.pools[0].usd_per_node_hour)


def test_an_unmeasured_model_is_said_and_sized_at_its_minimum(pilot_raw: dict[str, Any]) -> None:
    report = plan_capacity(pilot(pilot_raw), "pilot", {})
    assert [m.replicas_needed for m in report.models] == [None, None]
    assert any(n.startswith("qwen25-7b is not measured") for n in report.notes)
    assert report.pools[0].nodes_needed == report.pools[0].min_size


def test_a_looser_slo_in_the_run_is_noted(pilot_raw: dict[str, Any], tmp_path: Path) -> None:
    loose = Slo("local", ttft_p99_ms=25000, itl_p99_ms=1500, e2e_p99_s=60, error_rate=0.05)
    got = read_measurement("qwen25-7b", run_summary(tmp_path, per_second=48, slo=loose), 1)
    report = plan_capacity(pilot(pilot_raw), "pilot", {"qwen25-7b": got})
    assert (
        "qwen25-7b: the load test judged against a looser SLO than the model's "
        "(ttftP99Ms 25000 (the model's: 500); itlP99Ms 1500 (the model's: 50))"
    ) in report.notes[0]


def test_a_run_that_missed_its_slo_measured_no_capacity(tmp_path: Path) -> None:
    path = run_summary(tmp_path, per_second=4, ttft_s=0.9)  # qwen's P99 TTFT is 500 ms
    with pytest.raises(CapacityError, match=r"missed its SLO \(failed: ttftP99Ms\)"):
        read_measurement("qwen25-7b", path, 1)


def test_a_run_without_turns_is_refused(tmp_path: Path) -> None:
    path = run_summary(tmp_path, per_second=4, kind="model")
    with pytest.raises(CapacityError, match=r"no agent turns \(by_kind: \{'model': 40\}\)"):
        read_measurement("qwen25-7b", path, 1)


def test_demand_config_errors_name_the_path(pilot_raw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as bad_share:
        pilot(pilot_raw, agents=[{"agent": "concierge", "share": 0.75}])
    assert "they must add up to 1" in str(bad_share.value)
    assert "demand" in str(bad_share.value)
    with pytest.raises(ConfigError) as unknown:
        pilot(pilot_raw, agents=[{"agent": "nobody", "share": 1}])
    assert (
        "demand.agents[0].agent: 'nobody' is not an agent type (one of ['researcher', 'concierge'])"
    ) in str(unknown.value)


def test_cli_exits_1_on_a_shortfall_and_prints_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = run_summary(tmp_path, per_second=1)
    code = main(["capacity", "pilot", "--root", str(ROOT), "--json",
                 "--measured", f"qwen25-7b={summary}"])  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    assert "autoscaling.interactiveSlotUtilization (models[0].vllm.maxNumSeqs)" in [
        s["path"] for s in doc["shortfalls"]
    ]
    assert set(doc["usd_per_hour"]) == {"needed", "min", "max"}


def test_cli_refuses_a_model_the_stack_does_not_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = run_summary(tmp_path, per_second=1)
    code = main(["capacity", "pilot", "--root", str(ROOT), "--measured", f"gpt-9={summary}"])
    assert code == 2
    assert "--measured gpt-9=...: 'gpt-9' is not a model of stack pilot" in capsys.readouterr().err
