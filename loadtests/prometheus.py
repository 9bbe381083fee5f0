"""A real Prometheus for the local target: it scrapes the local services with the target
labels the Prometheus operator gives the cluster's monitors, and evaluates the stack's own
rendered rule file (`components.observe.alerts.render_rule_file`), so the recording and
alert rules run here exactly as in the cluster.

The operator's relabelling gives every scraped series `job`, `namespace`, `service`, `pod`,
`container` and `endpoint` (plus `instance`). A `ScrapeTarget` names the same values for a
local process, written as static labels, so a rule that aggregates `by (namespace, pod)` or
counts replicas per pod holds on both targets.
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from loadtests.services import Service, _launch, _wait_ready, free_port, http_ok

RULE_FILE = "rules.yml"


@dataclass(frozen=True)
class ScrapeTarget:
    """One local process, labelled as the operator labels its pod in the cluster."""

    job: str  # a ServiceMonitor's job is its Service's name
    address: str  # host:port on 127.0.0.1
    namespace: str
    service: str
    pod: str
    container: str
    endpoint: str = "http"  # the port's name
    metrics_path: str = "/metrics"

    def labels(self) -> dict[str, str]:
        return {
            "namespace": self.namespace,
            "service": self.service,
            "pod": self.pod,
            "container": self.container,
            "endpoint": self.endpoint,
        }


def scrape_config(targets: Sequence[ScrapeTarget], *, interval_s: float) -> dict[str, Any]:
    """prometheus.yml for the local target: one job per target, the rule file beside it."""
    interval = f"{max(1, round(interval_s))}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [RULE_FILE],
        "scrape_configs": [
            {
                "job_name": target.job,
                "metrics_path": target.metrics_path,
                "honor_labels": False,
                "static_configs": [{"targets": [target.address], "labels": target.labels()}],
            }
            for target in targets
        ],
    }


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise FileNotFoundError(
            "prometheus is not installed: `make system-deps` installs Debian's package"
        )
    return found


def start_prometheus(
    targets: Sequence[ScrapeTarget],
    rule_file: str,
    *,
    workdir: Path,
    interval_s: float = 2.0,
    port: int | None = None,
) -> Service:
    """Prometheus on 127.0.0.1 with the rendered rules, scraping `targets`; returns once
    it answers /-/ready. Its TSDB lives in `workdir` and goes with it."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / RULE_FILE).write_text(rule_file)
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(targets, interval_s=interval_s)))
    argv = [
        prometheus_binary(),
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1d",
        "--log.level=warn",
    ]
    process, log_path = _launch("prometheus", argv, workdir=workdir)
    url = f"http://127.0.0.1:{port}"
    service = Service("prometheus", url, port, process, log_path)
    return _wait_ready(service, lambda: http_ok(f"{url}/-/ready"), timeout_s=60)


def api(url: str, path: str, **params: str) -> Any:
    """GET one Prometheus HTTP API call; its `data`, or an error naming what it said."""
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}{path}?{query}", timeout=10) as response:
        body = json.loads(response.read())
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus {path} {params}: {body}")
    return body["data"]


def instant(url: str, promql: str) -> list[dict[str, Any]]:
    """An instant query's result vector."""
    data = api(url, "/api/v1/query", query=promql)
    return list(data["result"])
