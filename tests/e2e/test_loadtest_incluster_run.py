"""The in-cluster run's Job arguments, run for real on this machine: a Locust master with
the master Job's args and a worker with the worker Job's, against a stand-in of the
gateway's OpenAI-compatible API that requires the mounted key as Bearer.

Only the pod's paths (outputs file, key file, reports) and the master's Service name
(127.0.0.1) are swapped for local ones; the outputs are the pilot's planned ones with the
gateway's address pointed at the stand-in. The master must reach its verdict with every
worker's samples and print its reports between the markers; both must exit 0, which is
what completes both Jobs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from loadtests.incluster import (
    API_KEY_KEY,
    KEY_DIR,
    OUTPUTS_FILE,
    REPORTS_DIR,
    RunSpec,
    master_args,
    master_service,
    worker_args,
)
from loadtests.report import reports_from_log
from loadtests.stack_outputs import read_outputs, target_from_outputs

ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = ROOT / "tests" / "golden" / "pilot" / "outputs.json"
KEY = "sk-loadtest-e2e"


class _Gateway(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    unauthorized = 0
    models: list[str] = []  # noqa: RUF012 (class-level tally of the handler threads)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        if self.headers.get("authorization") != f"Bearer {KEY}":
            type(self).unauthorized += 1
            self.send_response(401)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        type(self).models.append(str(body["model"]))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        tokens = int(body.get("max_tokens", 8))
        for i in range(tokens):
            chunk = {"choices": [{"delta": {"content": f"t{i} "}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        usage = {"choices": [], "usage": {"completion_tokens": tokens}}
        self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def gateway() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_the_jobs_args_run_a_distributed_test_to_its_verdict(gateway: int, tmp_path: Path) -> None:
    outputs = read_outputs(OUTPUTS)
    outputs["gateway"]["baseUrl"] = f"http://127.0.0.1:{gateway}/v1"
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps(outputs))
    key_file = tmp_path / API_KEY_KEY
    key_file.write_text(KEY + "\n")
    spec = RunSpec(
        image="111122223333.dkr.ecr.us-east-1.amazonaws.com/swarm-pilot/loadtest:0.1.0",
        api_key_secret="model-gateway-agent-concierge",
        users=4,
        spawn_rate=4,
        run_time_s=8,
        stop_timeout_s=5,
        workers=1,
        locust_options=("--prompt-tokens", "16", "--output-tokens", "8"),
    )
    target = target_from_outputs(outputs)
    local = {
        OUTPUTS_FILE: str(outputs_file),
        f"{KEY_DIR}/{API_KEY_KEY}": str(key_file),
        REPORTS_DIR: str(tmp_path / "reports"),
        master_service(spec): "127.0.0.1",
    }
    master_argv = [local.get(a, a) for a in master_args(spec, target)]
    worker_argv = [local.get(a, a) for a in worker_args(spec, target)]
    run = [sys.executable, "-m", "loadtests.run"]
    master = subprocess.Popen(
        [*run, *master_argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    time.sleep(2)
    worker = subprocess.Popen(
        [*run, *worker_argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        log, _ = master.communicate(timeout=180)
        worker_log, _ = worker.communicate(timeout=60)
    finally:
        for p in (master, worker):
            if p.poll() is None:
                p.kill()
    assert master.returncode == 0, log[-3000:]
    assert worker.returncode == 0, worker_log[-3000:]  # the worker Job completes
    reports = reports_from_log(log)
    summary = json.loads(reports["summary.json"])
    assert summary["slo"]["passed"] is True
    assert summary["slo"]["source"] == "stack outputs, model qwen25-7b (slos.qwen25-7b)"
    assert summary["requests"] > 0 and summary["errors"] == 0
    assert "STREAM,TTFT" in reports["locust_stats.csv"]
    assert _Gateway.unauthorized == 0 and set(_Gateway.models) == {"qwen25-7b"}
