"""A real Prometheus for the local target: it scrapes the local services with the target
labels the Prometheus operator gives the cluster's monitors, and evaluates the stack's own
rendered rule file (`components.observe.alerts.render_rule_file`), so the recording and
alert rules run here exactly as in the cluster.

The operator's relabelling gives every scraped series `job`, `namespace`, `service`, `pod`,
`container` and `endpoint` (plus `instance`). A `ScrapeTarget` names the same values for a
local process, written as static labels, so a rule that aggregates `by (namespace, pod)` or
counts replicas per pod holds on both targets. A target's `renames` rewrite one label's
value on every scraped series (`metric_relabel_configs`), which is how a local process
carries the identity of the stack workload it stands for (`loadtests.stand_in`).
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from loadtests.services import Service, _launch, _wait_ready, free_port, http_ok

RULE_FILE = "rules.yml"


@dataclass(frozen=True)
class LabelRename:
    """Series whose `label` is exactly `value` get `replacement` instead (a metric
    relabelling of the scrape, so the stored series and every rule see the new value)."""

    label: str
    value: str
    replacement: str

    def render(self) -> dict[str, Any]:
        return {
            "source_labels": [self.label],
            "regex": literal_regex(self.value),
            "target_label": self.label,
            "replacement": self.replacement,
            "action": "replace",
        }


def literal_regex(value: str) -> str:
    """An RE2 pattern matching exactly `value` (Prometheus anchors relabel regexes)."""
    return re.sub(r"([\\.+*?()\[\]{}|^$])", r"\\\1", value)


@dataclass(frozen=True)
class ScrapeTarget:
    """One local process, labelled as the operator labels its pod in the cluster."""

    job: str  # a ServiceMonitor's job is its Service's name, a PodMonitor's <ns>/<name>
    address: str  # host:port on 127.0.0.1
    namespace: str
    service: str | None  # None for a PodMonitor's target (it has no Service)
    pod: str
    container: str
    endpoint: str = "http"  # the port's name
    metrics_path: str = "/metrics"
    renames: tuple[LabelRename, ...] = ()

    def labels(self) -> dict[str, str]:
        labels = {
            "namespace": self.namespace,
            "service": self.service,
            "pod": self.pod,
            "container": self.container,
            "endpoint": self.endpoint,
        }
        return {k: v for k, v in labels.items() if v is not None}


def scrape_config(targets: Sequence[ScrapeTarget], *, interval_s: float) -> dict[str, Any]:
    """prometheus.yml for the local target: one job per target, the rule file beside it."""
    interval = f"{max(1, round(interval_s))}s"
    jobs: list[dict[str, Any]] = []
    for target in targets:
        job: dict[str, Any] = {
            "job_name": target.job,
            "metrics_path": target.metrics_path,
            "honor_labels": False,
            "static_configs": [{"targets": [target.address], "labels": target.labels()}],
        }
        if target.renames:
            job["metric_relabel_configs"] = [r.render() for r in target.renames]
        jobs.append(job)
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [RULE_FILE],
        "scrape_configs": jobs,
    }


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise FileNotFoundError(
            "prometheus is not installed: `make system-deps` installs Debian's package"
        )
    return found


def redis_exporter_binary() -> str:
    """Debian's redis_exporter (`prometheus-redis-exporter`, the exporter the session
    store's pods run as a sidecar)."""
    for name in ("prometheus-redis-exporter", "redis_exporter"):
        found = shutil.which(name)
        if found is not None:
            return found
    raise FileNotFoundError(
        "prometheus-redis-exporter is not installed: `make system-deps` installs Debian's package"
    )


def start_redis_exporter(redis_port: int, *, workdir: Path, port: int | None = None) -> Service:
    """redis_exporter on 127.0.0.1 for the Redis at `redis_port`; returns once its
    /metrics says `redis_up 1`."""
    port = port or free_port()
    argv = [
        redis_exporter_binary(),
        f"-redis.addr=redis://127.0.0.1:{redis_port}",
        f"-web.listen-address=127.0.0.1:{port}",
    ]
    process, log_path = _launch("redis-exporter", argv, workdir=workdir)
    url = f"http://127.0.0.1:{port}"
    service = Service("redis-exporter", url, port, process, log_path)

    def up() -> bool:
        with urllib.request.urlopen(f"{url}/metrics", timeout=2) as response:
            return b"\nredis_up 1" in response.read()

    return _wait_ready(service, up, timeout_s=30)


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


def instant(url: str, promql: str, at: float | None = None) -> list[dict[str, Any]]:
    """An instant query's result vector (now, or at Unix time `at`)."""
    params = {"query": promql} if at is None else {"query": promql, "time": f"{at:.3f}"}
    data = api(url, "/api/v1/query", **params)
    return list(data["result"])


def scraped_since(url: str, moment: float, *, interval_s: float, timeout_s: float = 30) -> float:
    """Wait until every target was scraped after `moment` and the rules were evaluated on
    those samples (one more evaluation interval); returns the time the data is complete.

    Counters scraped before a turn's last token would miss it: cost figures and the
    tests read Prometheus at the returned time, never before."""
    deadline = time.monotonic() + timeout_s
    while True:
        active = api(url, "/api/v1/targets")["activeTargets"]
        stamps = [_rfc3339(t.get("lastScrape", "")) for t in active]
        if active and all(s > moment for s in stamps) and all(t["health"] == "up" for t in active):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"Prometheus {url}: targets not scraped after {moment}: {active}")
        time.sleep(0.2)
    time.sleep(interval_s * 1.5)  # the next rule evaluation reads those samples
    return time.time()


def _rfc3339(text: str) -> float:
    """Prometheus' lastScrape (RFC 3339 with nanoseconds) -> Unix seconds; 0 if unset."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if match is None:
        return 0.0
    base = datetime.fromisoformat(match.group(1) + (match.group(3).replace("Z", "+00:00")))
    return base.timestamp() + float(match.group(2) or 0)
