"""The metric catalogue and the PromQL name checker the dashboards and rules are held to."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from components.observe import catalogue as cat
from components.observe.promql import PromQLError, Selector, query_metric_names, query_selectors

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        # aggregation with grouping before and after, label matchers with operators
        (
            "histogram_quantile(0.99, sum by (le, model_name) "
            '(rate(vllm:e2e_request_latency_seconds_bucket{model_name="a/b", job!~"x|y"}[5m])))',
            {"vllm:e2e_request_latency_seconds_bucket"},
        ),
        (
            "sum(rate(agent_turns_total[5m])) by (agent, outcome)",
            {"agent_turns_total"},
        ),
        # vector matching: on/ignoring/group_left lists are labels, not metrics
        (
            "a_total * on (agent) group_left (team, user) b_info / ignoring (pod) c",
            {"a_total", "b_info", "c"},
        ),
        ("x / on() group_right y", {"x", "y"}),
        # keywords, bool, offset and @ modifiers, durations, subqueries
        (
            "max_over_time(rate(m_total[5m] offset 1h30m)[1d:5m]) > bool 3 unless n @ start()",
            {"m_total", "n"},
        ),
        ("x offset -5m and y @ 1700000000", {"x", "y"}),
        # strings are never metrics, whatever they contain
        (
            'label_replace(up{job="vllm"}, "dst", "rate(fake[5m])", "src", "(.*)")',
            {"up"},
        ),
        ('count_values("le", z) or vector(0)', {"z"}),
        ("topk(5, q) + quantile(0.9, r) - 1e3 * 0x1F + Inf - NaN", {"q", "r"}),
        # recording rule names carry colons; keywords are case-insensitive
        (
            "SUM BY (pool) (swarmstack:pool_usd_per_hour) AND ON (pool) Foo",
            {"swarmstack:pool_usd_per_hour", "Foo"},
        ),
        # a name given by a matcher, and Prometheus 3's quoted names
        ('{__name__="up", job="a"}', {"up"}),
        ('{"dotted.name", job="a"}', {"dotted.name"}),
        ('sum without (instance) ({"a.b"}) # a comment naming fake_metric', {"a.b"}),
        ("-(a) ^ 2 % b", {"a", "b"}),
        # operators before a bracket are not calls
        ("(a > 0.1 and b > 0.1)\nor\n(c > 1 unless (d)) atan2 (e)", {"a", "b", "c", "d", "e"}),
    ],
)
def test_query_metric_names(expr: str, names: set[str]) -> None:
    assert query_metric_names(expr) == names


@pytest.mark.parametrize(
    ("expr", "error"),
    [
        ("rat(x[5m])", "'rat' at 0 in 'rat(x[5m])' is not a PromQL function"),
        ('{__name__=~"vllm:.*"}', "selects metrics by pattern"),
        ("sum(x", "unclosed '('"),
        ("x $ y", "unexpected character '$'"),
    ],
)
def test_expressions_the_checker_cannot_vouch_for_are_errors(expr: str, error: str) -> None:
    with pytest.raises(PromQLError, match=re.escape(error)):
        query_metric_names(expr)


def test_unknown_metrics_names_the_made_up_one_only() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[5m])))"
        " / sum(vllm:num_requests_waitin) + sum(agent_active_sessions)"
    )
    assert cat.unknown_metrics(expr) == {"vllm:num_requests_waitin"}


def test_unknown_labels_names_a_matcher_on_a_label_the_family_lacks() -> None:
    expr = (
        'sum(rate(vllm:prompt_tokens_total{model="a", job="vllm"}[5m]))'
        ' + sum(agent_tool_calls_total{outcome="ok", namespace="x"})'
        ' + sum(DCGM_FI_DEV_FB_USED{GPU_I_PROFILE="3g.40gb"})'
        ' + sum(rate(vllm:e2e_request_latency_seconds_bucket{le="60.0"}[5m]))'
        ' + sum(rate(vllm:e2e_request_latency_seconds_count{le="60.0"}[5m]))'
    )
    assert cat.unknown_labels(expr) == {
        "vllm:prompt_tokens_total": {"model"},
        "vllm:e2e_request_latency_seconds_count": {"le"},
    }


def test_query_selectors_pair_names_with_their_matchers() -> None:
    found = query_selectors('a_total{x="1", y!~"2"} / {__name__="b", z="3"} + {job="j"} + c')
    assert found == [
        Selector("a_total", frozenset({"x", "y"})),
        Selector("b", frozenset({"z"})),
        Selector(None, frozenset({"job"})),
        Selector("c", frozenset()),
    ]


def test_histograms_and_counters_are_known_by_their_series_names() -> None:
    known = cat.catalogue()
    assert {"agent_model_ttft_seconds_bucket", "agent_model_ttft_seconds_count"} <= set(known)
    assert "agent_model_ttft_seconds" not in known  # a histogram has no bare series
    assert "vllm:prompt_tokens_total" in known
    assert "vllm:prompt_tokens" not in known
    assert "redis_evicted_keys_total" in known


def test_worker_families_follow_metrics_md(tmp_path: Path) -> None:
    text = (ROOT / "images" / "agent-worker" / "METRICS.md").read_text()
    edited = tmp_path / "METRICS.md"
    edited.write_text(
        text.replace("`agent_tool_call_repeats_total`", "`agent_tool_call_loops_total`")
    )
    before = {f.name for f in cat.worker_families()}
    after = {f.name for f in cat.worker_families(edited)}
    assert before - after == {"agent_tool_call_repeats_total"}
    assert after - before == {"agent_tool_call_loops_total"}


def test_vllm_families_come_from_the_captured_file() -> None:
    doc = json.loads(cat.VLLM_METRICS_FILE.read_text())
    assert doc["version"] == cat.VLLM_VERSION
    families = {f.name: f for f in cat.vllm_families()}
    assert len(families) == len(doc["families"])
    ttft = families["vllm:time_to_first_token_seconds"]
    assert ttft.kind == "histogram"
    assert "model_name" in ttft.labels
    assert families["vllm:num_requests_waiting"].kind == "gauge"


def test_vllm_version_is_the_deployed_release() -> None:
    pilot = (ROOT / "stacks" / "Pulumi.pilot.yaml").read_text()
    assert f"tag: v{cat.VLLM_VERSION}\n" in pilot
    pins = (ROOT / "loadtests" / "requirements-vllm.txt").read_text()
    assert f"=={cat.VLLM_VERSION}" in pins


def test_every_exporter_family_names_its_source_and_what_it_needs() -> None:
    for family in cat.EXPORTER_FAMILIES:
        assert family.source
    needs = {f.name: f.needs for f in cat.EXPORTER_FAMILIES}
    assert needs["DCGM_FI_DEV_XID_ERRORS"] == "gpu"
    assert needs["kafka_consumergroup_lag"] == "kafka"
    assert needs["kube_node_labels"] == "cluster"
    assert needs["redis_memory_used_bytes"] is None
    assert cat.query_needs("sum(DCGM_FI_DEV_FB_USED) + sum(kafka_brokers) + up") == {
        "gpu",
        "kafka",
    }


def test_a_series_claimed_by_two_sources_is_refused() -> None:
    clash = cat.MetricFamily("redis_up", "gauge", frozenset(), "another exporter")
    with pytest.raises(ValueError, match="redis_up is claimed by redis_exporter README"):
        cat.index([*cat.EXPORTER_FAMILIES, clash])
    assert "redis_up" in cat.index(cat.EXPORTER_FAMILIES)
