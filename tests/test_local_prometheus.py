"""The local target's Prometheus (Debian's `prometheus`): it loads the stack's own rendered
rule file with every group healthy, and a scraped process carries the operator's target
labels. The first scraped process is a small stand-in exposing a fixed metrics text (said
here: the real vLLM and worker are scraped by the load test); the gateway is the real
LiteLLM proxy with the pilot's rendered config (`$SWARMSTACK_LITELLM_PYTHON` or
.venv-litellm), scraped as the stack's `model-gateway` PodMonitor labels it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from components.observe.alerts import render_rule_file, rule_groups_wire
from loadtests import services
from loadtests.gateway import start_local_gateway
from loadtests.prometheus import ScrapeTarget, api, instant, start_prometheus
from loadtests.stand_in import pilot_stand_in
from stacks.config import load

pytestmark = pytest.mark.e2e

METRICS = b'# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name="m"} 3\n'


class _Metrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(METRICS)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def exporter() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_rules_load_and_targets_carry_operator_labels(
    pilot_raw: dict[str, Any], exporter: str, tmp_path: Path
) -> None:
    config = load(pilot_raw, "us-east-1", "stacks/Pulumi.pilot.yaml")
    target = ScrapeTarget(
        job="qwen25-7b",
        address=exporter,
        namespace=config.namespaces.models,
        service="qwen25-7b",
        pod="qwen25-7b-local",
        container="vllm",
    )
    prometheus = start_prometheus([target], render_rule_file(config), workdir=tmp_path)
    try:
        groups = api(prometheus.url, "/api/v1/rules")["groups"]
        assert sorted(g["name"] for g in groups) == sorted(
            g["name"] for g in rule_groups_wire(config)
        )
        broken = [r["name"] for g in groups for r in g["rules"] if r.get("health") == "err"]
        assert broken == []

        deadline = time.monotonic() + 30
        found: list[dict[str, Any]] = []
        while not found and time.monotonic() < deadline:
            found = instant(prometheus.url, "vllm:num_requests_waiting")
            time.sleep(0.5)
        (series,) = found
        labels = series["metric"]
        assert labels["job"] == "qwen25-7b" and labels["model_name"] == "m"
        assert {k: labels[k] for k in ("namespace", "service", "pod", "container")} == {
            "namespace": "swarmstack-models",
            "service": "qwen25-7b",
            "pod": "qwen25-7b-local",
            "container": "vllm",
        }
        assert series["value"][1] == "3"
    finally:
        prometheus.stop()


def test_the_gateways_metrics_are_scraped_as_its_podmonitor_labels_them(
    exporter: str, tmp_path: Path
) -> None:
    """The proxy serves /metrics to a scrape without a key (as the Istio agent asks for it
    in the cluster); its upstream is never called here, so any address will do."""
    try:
        python = services.litellm_python()
    except services.ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)
    stand_in = pilot_stand_in()
    gateway = start_local_gateway(
        stand_in.config,
        vllm_base_url=f"http://{exporter}/v1",
        workdir=tmp_path / "gateway",
        python=python,
    )
    try:
        target = stand_in.gateway_target(f"127.0.0.1:{gateway.proxy.port}")
        prometheus = start_prometheus(
            [target], render_rule_file(stand_in.config), workdir=tmp_path / "prometheus"
        )
        try:
            deadline = time.monotonic() + 60
            active: list[dict[str, Any]] = []
            while time.monotonic() < deadline:
                active = api(prometheus.url, "/api/v1/targets")["activeTargets"]
                if active and active[0]["health"] != "unknown":
                    break
                time.sleep(0.5)
            (scraped,) = active
            assert scraped["health"] == "up", scraped.get("lastError")
            assert scraped["labels"] == {
                "job": "swarmstack-agents/model-gateway",
                "instance": f"127.0.0.1:{gateway.proxy.port}",
                "namespace": "swarmstack-agents",
                "pod": "model-gateway-local-0",
                "container": "proxy",
                "endpoint": "15020",
            }
            (up,) = instant(prometheus.url, 'up{job="swarmstack-agents/model-gateway"}')
            assert up["value"][1] == "1"
            # LiteLLM's own registry answered, not some other page.
            assert instant(prometheus.url, 'python_info{container="proxy"}')
        finally:
            prometheus.stop()
    finally:
        gateway.stop()
