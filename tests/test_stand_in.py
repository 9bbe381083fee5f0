"""The local target's scrape targets carry the labels the Prometheus operator gives the
pilot's own monitors, and the renames that make the local vLLM and worker the pilot
model they stand for (no Prometheus runs here: tests/e2e/test_local_prometheus_cost.py
scrapes the real processes)."""

from __future__ import annotations

import re
from typing import Any

from components.data import redis as redis_store
from components.specs import CostLabels
from loadtests.prometheus import literal_regex, scrape_config
from loadtests.services import MODEL_NAME
from loadtests.stand_in import pilot_stand_in
from stacks.observability import stack_monitors

QWEN = "Qwen/Qwen2.5-7B-Instruct"


def monitor(name: str) -> dict[str, Any]:
    stand_in = pilot_stand_in()
    return next(m for m in stack_monitors(stand_in.config) if m["metadata"]["name"] == name)


def test_vllm_target_is_labelled_as_the_model_servers_service_monitor_labels_it() -> None:
    stand_in = pilot_stand_in()
    target = stand_in.vllm_target("127.0.0.1:8000")
    spec = monitor("model-servers")["spec"]
    # PodMonitor on the merged metrics port: job <namespace>/<monitor>, no service.
    assert target.labels() == {
        "namespace": spec["namespaceSelector"]["matchNames"][0],
        "pod": "qwen25-7b-local-0",
        "container": "vllm",
        "endpoint": str(spec["podMetricsEndpoints"][0]["portNumber"]),
    }
    assert target.job == "swarmstack-models/model-servers"
    job = scrape_config([target], interval_s=1)["scrape_configs"][0]
    (rename,) = job["metric_relabel_configs"]
    assert rename["source_labels"] == ["model_name"] == [rename["target_label"]]
    assert rename["replacement"] == QWEN
    assert re.fullmatch(rename["regex"], MODEL_NAME)


def test_worker_and_redis_exporter_targets() -> None:
    stand_in = pilot_stand_in()
    worker = stand_in.worker_target("127.0.0.1:9000")
    agents = monitor("agents")
    assert worker.job == f"{agents['metadata']['namespace']}/agents"
    assert worker.labels() == {
        "namespace": "swarmstack-agents",
        "pod": "concierge-local-0",
        "container": "worker",
        "endpoint": str(agents["spec"]["podMetricsEndpoints"][0]["portNumber"]),
    }
    assert [(r.label, r.value, r.replacement) for r in worker.renames] == [
        ("model", MODEL_NAME, QWEN)
    ]

    exporter = stand_in.redis_exporter_target("127.0.0.1:9121")
    podmonitor = monitor("session-store")
    # PodMonitor: job is <namespace>/<name>, no service label; the port and container are
    # the session store pod's exporter sidecar's.
    assert exporter.job == f"{podmonitor['metadata']['namespace']}/session-store"
    port = podmonitor["spec"]["podMetricsEndpoints"][0]["port"]
    redis = stand_in.config.data_plane.redis
    assert redis is not None
    pod = redis_store.pod_template(
        redis,
        CostLabels(team="t", cost_center="c", environment="e"),
        auth_secret="auth",
        tls_secret=None,
    )
    (container,) = [
        c for c in pod["spec"]["containers"] if port in [p["name"] for p in c.get("ports", [])]
    ]
    assert exporter.labels() == {
        "namespace": "swarmstack-data",
        "pod": "session-store-0",
        "container": container["name"],
        "endpoint": port,
    }


def test_literal_regex_matches_only_the_value() -> None:
    pattern = literal_regex("a.b+c(d)/e-f")
    assert re.fullmatch(pattern, "a.b+c(d)/e-f")
    assert not re.fullmatch(pattern, "aXbbc(d)/e-f")
