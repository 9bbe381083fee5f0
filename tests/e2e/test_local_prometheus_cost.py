"""The pilot's cost rules and dashboards on a real Prometheus scraping the real vLLM and
the real worker after a few real turns (the local target's wiring: `loadtests.stand_in`).

Prices by hand (stacks/Pulumi.pilot.yaml): the local vLLM stands for qwen25-7b, one
replica on a 3g.40gb slice of pool h100-mig's p5.4xlarge (1 x H100-80GB at $6.88/hour
on-demand) split into [3g.40gb, 3g.40gb]: 3 of the layout's 6 compute slices, $3.44/hour.
So one token costs 3.44 / 3600 / (tokens per second) dollars.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from components.observe.alerts import render_rule_file
from components.observe.dashboards import dashboard_queries
from loadtests import services
from loadtests.cost_figures import cost_figures
from loadtests.prometheus import instant, scraped_since, start_prometheus, start_redis_exporter
from loadtests.services import Service
from loadtests.stand_in import StandIn, pilot_stand_in
from tests.e2e.worker_client import create_session, post_turn

QWEN = "Qwen/Qwen2.5-7B-Instruct"
USD_PER_REPLICA_HOUR = 6.88 * 3 / 6
INTERVAL_S = 1.0
# (user, turns): each turn's body. Short answers keep the module at a few seconds of vLLM.
TURNS: tuple[tuple[str, tuple[dict[str, Any], ...]], ...] = (
    (
        "alice",
        (
            {"message": "Say hello in three words.", "max_tokens": 12},
            {"message": "What is 6*7?", "tool": "calculator", "max_tokens": 12},
        ),
    ),
    ("bob", ({"message": "Name one colour.", "max_tokens": 8},)),
)


@dataclass(frozen=True)
class Observed:
    stand_in: StandIn
    redis_url: str
    prometheus_url: str
    before: float  # Prometheus had scraped both targets, no turn had started
    since: float
    until: float  # every turn's tokens scraped and the rules evaluated on them
    sessions: dict[str, str]  # session id -> user


def vllm_tokens(url: str, at: float) -> float:
    found = instant(
        url,
        f'sum(vllm:prompt_tokens_total{{model_name="{QWEN}"}})'
        f' + sum(vllm:generation_tokens_total{{model_name="{QWEN}"}})',
        at,
    )
    return float(found[0]["value"][1]) if found else 0.0


@pytest.fixture(scope="module")
def observed(vllm: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    base = tmp_path_factory.mktemp("local-prometheus-cost")
    stand_in = pilot_stand_in()
    started: list[Service] = []
    try:
        store = services.start_redis(workdir=base / "redis", appendonly=False)
        started.append(store)
        worker = services.start_worker(
            {
                "MODEL_BASE_URL": f"{vllm.url}/v1",
                "MODEL_NAME": services.MODEL_NAME,
                "REDIS_URL": store.url,
                "QDRANT_PATH": str(base / "qdrant"),
                "AGENT_NAME": stand_in.agent,
            },
            workdir=base / "worker",
        )
        started.append(worker)
        exporter = start_redis_exporter(store.port, workdir=base / "redis-exporter")
        started.append(exporter)
        prometheus = start_prometheus(
            stand_in.targets(
                vllm=f"127.0.0.1:{vllm.port}",
                worker=f"127.0.0.1:{worker.port}",
                redis_exporter=f"127.0.0.1:{exporter.port}",
            ),
            render_rule_file(stand_in.config),
            workdir=base / "prometheus",
            interval_s=INTERVAL_S,
        )
        started.append(prometheus)
        before = scraped_since(prometheus.url, time.time(), interval_s=INTERVAL_S)
        since = time.time()
        sessions: dict[str, str] = {}
        for user, bodies in TURNS:
            sid = create_session(worker.url, user=user)
            sessions[sid] = user
            for n, body in enumerate(bodies):
                stream = post_turn(worker.url, sid, {**body, "turn_id": f"t{n}"})
                assert stream.names()[-1] == "done", stream.events
        until = scraped_since(prometheus.url, time.time(), interval_s=INTERVAL_S)
        yield Observed(stand_in, store.url, prometheus.url, before, since, until, sessions)
    finally:
        for service in reversed(started):
            service.stop()


def usage_records(url: str) -> list[dict[str, str]]:
    client: Any = redis.Redis.from_url(url, decode_responses=True)  # pyright: ignore[reportUnknownMemberType]
    try:
        return [fields for _, fields in client.xrange("swarm:usage", "-", "+")]
    finally:
        client.close()


def value(url: str, promql: str, at: float) -> float:
    (series,) = instant(url, promql, at)
    return float(series["value"][1])


def test_cost_series_agree_with_the_tokens_served(observed: Observed) -> None:
    o, url = observed, observed.prometheus_url
    records = usage_records(o.redis_url)
    assert len(records) == sum(len(bodies) for _, bodies in TURNS)
    tokens = {"agent": Counter[str](), "session": Counter[str](), "user": Counter[str]()}
    for r in records:
        n = int(r["input_tokens"]) + int(r["output_tokens"])
        for group, counts in tokens.items():
            counts[r[group]] += n
    total = sum(tokens["agent"].values())
    assert set(tokens["agent"]) == {"concierge"}
    assert {s: o.sessions[s] for s in tokens["session"]} == o.sessions
    assert total > 0

    # The series carry the pilot's identities; the served name is gone.
    assert instant(url, f'{{model_name="{services.MODEL_NAME}"}}', o.until) == []
    assert instant(url, f'{{model="{services.MODEL_NAME}"}}', o.until) == []
    for rule, label, expected in (
        # behind the gateway the price is also recorded under the gateway's model name
        ("swarmstack:model_usd_per_token", "model", [QWEN, "qwen25-7b"]),
        ("swarmstack:model_usd_per_hour", "model", [QWEN]),
        ("swarmstack:model_tokens_per_second", "model", [QWEN]),
        ("swarmstack:agent_usd_per_hour", "agent", ["concierge"]),
        ("swarmstack:agent_usd_per_1k_turns", "agent", ["concierge"]),
    ):
        found = instant(url, rule, o.until)
        assert sorted(str(s["metric"].get(label)) for s in found) == expected, (rule, found)
        assert float(found[0]["value"][1]) > 0, (rule, found)

    # The worker's counters in Prometheus count exactly the records' tokens: the worker
    # adds a call's usage to them before the turn's record is written, and `until` is
    # after a scrape that followed the last turn.
    worker_tokens = value(
        url,
        f'sum(agent_model_input_tokens_total{{agent="concierge", model="{QWEN}"}})'
        f' + sum(agent_model_output_tokens_total{{agent="concierge", model="{QWEN}"}})',
        o.until,
    )
    assert worker_tokens == total
    # vLLM's own prompt + generation counters grew by the same tokens between a scrape
    # before the first turn and one after the last: no other client used this vLLM in
    # between, and the worker's counts are the usage vLLM reported. Tolerance 0: a scrape
    # catches a counter between two requests, never inside one, because both scrapes
    # bracket idle periods.
    assert vllm_tokens(url, o.until) - vllm_tokens(url, o.before) == total

    # The rule's $ per token is the pilot's slice price over the tokens per second.
    tps = value(url, f'swarmstack:model_tokens_per_second{{model="{QWEN}"}}', o.until)
    usd_per_token = USD_PER_REPLICA_HOUR / 3600 / tps
    rule = value(url, f'swarmstack:model_usd_per_token{{model="{QWEN}"}}', o.until)
    assert rule == pytest.approx(usd_per_token, rel=1e-9)

    # `swarmstack cost` over the window: tokens x that $ per token, per agent/session/user.
    figures = cost_figures(
        o.stand_in,
        redis_url=o.redis_url,
        prometheus_url=url,
        since=o.since - 1,
        until=o.until,
    )
    report = figures.as_dict()["swarmstackCost"]
    for group, key in (("agent", "perAgent"), ("session", "perSession"), ("user", "perUser")):
        assert {k: v["usd"] for k, v in report[key].items()} == {
            k: pytest.approx(n * usd_per_token, rel=1e-9) for k, n in tokens[group].items()
        }, group
    assert report["total"]["usd"] == pytest.approx(total * usd_per_token, rel=1e-9)
    assert figures.series["swarmstack:model_usd_per_token"][QWEN] == pytest.approx(rule)


def test_every_dashboard_query_answers(observed: Observed) -> None:
    """Every dashboard query returns data here, unless `.needs` lists GPU, Kafka or
    cluster metrics, or it is one of the queries the pilot's other model adds to the
    dashboards (no local process serves that model: those must return nothing, or a
    per-model panel is not per model). The other model's queries are found by building
    the dashboards without it, not by reading their text."""
    config = observed.stand_in.config
    queries = dashboard_queries(config)
    alone = config.model_copy(update={"models": [observed.stand_in.model]})
    others = Counter(q.promql for q in queries) - Counter(
        q.promql for q in dashboard_queries(alone)
    )
    assert sum(others.values()) >= 10  # the other model's row: latency, queue, KV, tokens

    answered: list[str] = []
    silent: list[str] = []
    leaked: list[str] = []
    for q in queries:
        name = f"{q.dashboard} / {q.panel}: {q.promql}"
        if q.needs:
            continue
        found = instant(observed.prometheus_url, q.promql, observed.until)
        if others[q.promql] > 0:
            others[q.promql] -= 1
            if found:
                leaked.append(name)
        elif found:
            answered.append(name)
        else:
            silent.append(name)
    assert silent == [], "dashboard queries that need nothing returned no data:\n" + "\n".join(
        silent
    )
    assert leaked == [], "queries of a model no local process serves returned data:\n" + (
        "\n".join(leaked)
    )
    assert len(answered) > 20
