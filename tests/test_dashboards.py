"""The dashboards: every query names catalogued metrics, the JSON is Grafana's, the plan
ships them."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.models.dashboard import Dashboard as DashboardModel

from components.observe import catalogue as cat
from components.observe import dashboards as d
from components.observe.selection import DASHBOARD_LABEL, MONITORING_NAMESPACE
from stacks.cli import main
from stacks.config import StackConfig, load

ROOT = Path(__file__).resolve().parent.parent
SLUGS = ["model-serving", "agents", "gpu-mig", "data-plane", "cost"]


def config_from(raw: dict[str, Any]) -> StackConfig:
    return load(copy.deepcopy(raw), "us-east-1", "Pulumi.pilot.yaml")


@pytest.fixture
def pilot(pilot_raw: dict[str, Any]) -> StackConfig:
    return config_from(pilot_raw)


def unreal(queries: Iterable[d.DashboardQuery]) -> list[tuple[str, str, list[str]]]:
    """(dashboard, panel, names) of every query naming a metric the catalogue lacks."""
    return [
        (q.dashboard, q.panel, sorted(names))
        for q in queries
        if (names := cat.unknown_metrics(q.promql))
    ]


def test_every_panel_query_names_only_catalogued_metrics(pilot: StackConfig) -> None:
    queries = d.dashboard_queries(pilot)
    assert {q.dashboard for q in queries} == set(SLUGS)
    assert len(queries) >= 40
    assert unreal(queries) == []


def test_every_panel_query_matches_only_labels_its_metrics_have(pilot: StackConfig) -> None:
    wrong = [
        (q.dashboard, q.panel, bad)
        for q in d.dashboard_queries(pilot)
        if (bad := cat.unknown_labels(q.promql))
    ]
    assert wrong == []


def test_a_made_up_metric_is_caught(pilot: StackConfig) -> None:
    built = (
        d.cost(d.DashboardInputs.from_config(pilot))
        .with_panel(d.graph("Typo", [("sum(swarmstack:pool_usd_per_hr)", "x")], "short"))
        .build()
    )
    queries = list(d.panel_queries(d.Dashboard("cost", "Cost", d.encode(built))))
    assert unreal(queries) == [("cost", "Typo", ["swarmstack:pool_usd_per_hr"])]


def test_queries_say_what_a_local_prometheus_cannot_answer(pilot: StackConfig) -> None:
    queries = d.dashboard_queries(pilot)
    by_dashboard: dict[str, set[frozenset[str]]] = {}
    for q in queries:
        by_dashboard.setdefault(q.dashboard, set()).add(q.needs)
    assert by_dashboard["gpu-mig"] == {frozenset({"gpu"}), frozenset({"cluster"})}
    assert frozenset({"kafka"}) in by_dashboard["data-plane"]
    assert frozenset() in by_dashboard["data-plane"]  # Redis runs locally
    assert by_dashboard["model-serving"] == {frozenset()}
    assert by_dashboard["agents"] == {frozenset()}
    # a pool's $/hour counts its nodes (kube-state-metrics); $ per token and per agent do not
    assert by_dashboard["cost"] == {frozenset({"cluster"}), frozenset()}
    dashboard, panel, promql = queries[0]  # a plain (dashboard, panel, promql) tuple
    assert (dashboard, panel) == ("model-serving", "Time to first token")
    assert "vllm:time_to_first_token_seconds_bucket" in promql


def test_the_json_is_a_grafana_dashboard_model(pilot: StackConfig) -> None:
    for board in d.build_dashboards(d.DashboardInputs.from_config(pilot)):
        decoded = DashboardModel.from_json(board.model)
        again = d.encode(decoded)
        assert again == board.model, board.slug
        assert board.model["uid"] == board.uid == f"swarmstack-{board.slug}"
        assert len(board.uid) <= 40  # Grafana's limit
        assert board.model["panels"], board.slug


def test_uids_do_not_depend_on_the_config(pilot_raw: dict[str, Any]) -> None:
    one = d.build_dashboards(d.DashboardInputs.from_config(config_from(pilot_raw)))
    fewer = copy.deepcopy(pilot_raw)
    fewer["models"] = fewer["models"][:1]
    fewer["dataPlane"].pop("kafka")
    fewer["agents"] = [a for a in fewer["agents"] if a["mode"] == "http"]
    fewer.pop("gateway")  # its routes name the model left out
    fewer.pop("demand")  # its shares name the agent left out
    two = d.build_dashboards(d.DashboardInputs.from_config(config_from(fewer)))
    assert [b.uid for b in one] == [b.uid for b in two] == [f"swarmstack-{s}" for s in SLUGS]
    assert one[0].model != two[0].model


def test_every_panel_and_query_reads_the_releases_prometheus(pilot: StackConfig) -> None:
    expected = {"type": "prometheus", "uid": "prometheus"}
    for board in d.build_dashboards(d.DashboardInputs.from_config(pilot)):
        for panel in board.model["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == expected, (board.slug, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"] == expected


def _panel(board: d.Dashboard, title: str, after_row: str) -> dict[str, Any]:
    panels: list[dict[str, Any]] = board.model["panels"]
    start = next(i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == after_row)
    return next(p for p in panels[start + 1 :] if p["title"] == title)


def test_latency_panels_draw_each_models_slo(pilot_raw: dict[str, Any]) -> None:
    raw = copy.deepcopy(pilot_raw)
    raw["models"][1]["slo"]["ttftP99Ms"] = 1000
    serving = d.build_dashboards(d.DashboardInputs.from_config(config_from(raw)))[0]
    rows = [p["title"] for p in serving.model["panels"] if p["type"] == "row"]
    assert rows == [
        "qwen25-7b (Qwen/Qwen2.5-7B-Instruct, interactive)",
        "llama31-8b (meta-llama/Llama-3.1-8B-Instruct, batch)",
    ]
    for row, ttft_s, itl_s, e2e_s in [(rows[0], 0.5, 0.05, 60), (rows[1], 1.0, 0.1, 120)]:
        for title, line in [
            ("Time to first token", ttft_s),
            ("Inter-token latency", itl_s),
            ("End-to-end request latency", e2e_s),
        ]:
            panel = _panel(serving, title, row)
            steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            assert [s["value"] for s in steps] == [None, line], (row, title)
            custom = panel["fieldConfig"]["defaults"]["custom"]
            assert custom["thresholdsStyle"]["mode"] == "line"
            assert all("model_name=" in t["expr"] for t in panel["targets"])
    llama = _panel(serving, "Time to first token", rows[1])
    assert all(
        'model_name="meta-llama/Llama-3.1-8B-Instruct"' in t["expr"] for t in llama["targets"]
    )
    assert [t["legendFormat"] for t in llama["targets"]] == ["p50", "p95", "p99"]


def test_each_gpu_pool_shows_its_nodes_against_its_maximum(pilot_raw: dict[str, Any]) -> None:
    raw = copy.deepcopy(pilot_raw)
    raw["gpuPools"][0]["maxSize"] = 3
    board = d.build_dashboards(d.DashboardInputs.from_config(config_from(raw)))[2]
    panel = _panel(board, "h100-mig: nodes (max 3)", "GPU pools")
    (target,) = panel["targets"]
    assert target["expr"] == (
        'count(kube_node_labels{label_swarmstack_io_pool="h100-mig"}) or vector(0)'
    )
    assert panel["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"] == 3


def test_data_plane_panels_follow_the_stores_configured(pilot_raw: dict[str, Any]) -> None:
    raw = copy.deepcopy(pilot_raw)
    raw["dataPlane"].pop("kafka")
    raw["agents"] = [a for a in raw["agents"] if a["mode"] == "http"]
    raw["gateway"]["keys"] = [k for k in raw["gateway"]["keys"] if k["agent"] == "concierge"]
    raw.pop("demand")  # its shares name the agent left out
    board = d.build_dashboards(d.DashboardInputs.from_config(config_from(raw)))[3]
    exprs = " ".join(t["expr"] for p in board.model["panels"] for t in p.get("targets", []))
    assert "kafka_" not in exprs
    assert "redis_memory_used_bytes" in exprs
    memory = next(p for p in board.model["panels"] if p["title"] == "Memory used")
    limit = memory["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"]
    assert limit == raw["dataPlane"]["redis"]["memoryGib"] * 2**30


@pytest.fixture(scope="module")
def pilot_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plan")
    assert main(["plan", "pilot", "--root", str(ROOT), "--out", str(out)]) == 0
    return out / "pilot"


def test_the_plan_ships_five_dashboard_config_maps(pilot_plan: Path) -> None:
    docs = [
        yaml.safe_load(p.read_text()) for p in sorted((pilot_plan / "manifests").glob("*.yaml"))
    ]
    maps = [
        m
        for m in docs
        if m["kind"] == "ConfigMap" and m["metadata"].get("labels", {}).get(DASHBOARD_LABEL[0])
    ]
    assert sorted(m["metadata"]["name"] for m in maps) == sorted(
        f"swarmstack-dashboard-{s}" for s in SLUGS
    )
    for m in maps:
        assert m["metadata"]["namespace"] == MONITORING_NAMESPACE
        assert m["metadata"]["labels"][DASHBOARD_LABEL[0]] == DASHBOARD_LABEL[1]
        (key, text), *_ = m["data"].items()
        model = json.loads(text)
        assert key == f"{model['uid']}.json"
        assert (
            model["uid"]
            == f"swarmstack-{m['metadata']['name'].removeprefix('swarmstack-dashboard-')}"
        )
