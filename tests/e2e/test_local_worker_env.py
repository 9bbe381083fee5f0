"""One rendering, two targets: the local target's worker process runs with exactly the
environment the pilot's `concierge` Deployment renders, with the local differences
(`loadtests/local_worker.py local_env`) applied and nothing else, read back from the
running process's /proc/<pid>/environ key by key, and it serves as that agent type."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from loadtests import services
from loadtests.gateway import LocalGateway
from loadtests.local_worker import LocalSite, RenderedWorker, start_local_worker
from loadtests.services import Service
from loadtests.stand_in import STAND_IN_AGENT
from tests.e2e.conftest import RedisFactory
from tests.e2e.worker_client import create_session, metric_value, metrics_text, post_turn


def proxy_chat_statuses(gateway: LocalGateway) -> list[int]:
    """The status of every chat request the proxy answered, in order (its access log)."""
    text = gateway.proxy.log_path.read_text(errors="replace")
    return [int(s) for s in re.findall(r'POST /v1/chat/completions HTTP/1.1\\" (\d{3})', text)]


def process_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if item)


def test_the_local_worker_runs_with_the_rendered_environment_and_only_the_listed_differences(
    rendered_concierge: RenderedWorker,
    vllm: Service,
    local_gateway: LocalGateway,
    redis_factory: RedisFactory,
    tmp_path: Path,
) -> None:
    concierge = rendered_concierge
    redis = redis_factory()
    site = LocalSite(
        port=services.free_port(),
        gateway_url=local_gateway.proxy.url,
        gateway_key_file=local_gateway.key_file,
        redis_url=redis.url,
        qdrant_path=tmp_path / "qdrant",
    )
    worker, launch = start_local_worker(concierge, site, workdir=tmp_path / "worker")
    try:
        environ = process_environ(worker.process.pid)
        differences = {d.name: d for d in launch.differences}
        # Every rendered variable: as rendered, or as its one listed difference says.
        for item in concierge.env:
            d = differences.get(item.name)
            if d is None:
                assert environ.get(item.name) == item.value, item.name
            elif d.action == "drop":
                assert item.name not in environ, item.name
            else:
                assert d.action == "set" and environ.get(item.name) == d.value, item.name
        # Every other variable is a listed addition; nothing comes from the launching shell.
        rendered = {e.name for e in concierge.env}
        for name, value in environ.items():
            if name not in rendered:
                d = differences.get(name)
                assert d is not None and d.action == "add", f"{name} is neither rendered nor added"
                assert value == d.value, name
        assert {d.name for d in launch.differences if d.action == "add"} <= set(environ)
        assert environ == launch.env

        # It serves as the rendered agent type: its name and only its tools.
        assert httpx.get(f"{worker.url}/readyz", timeout=5).json() == {"ready": True}
        sid = create_session(worker.url)
        session = httpx.get(f"{worker.url}/v1/sessions/{sid}", timeout=5).json()
        assert session["agent"] == STAND_IN_AGENT == environ["AGENT_NAME"]
        assert "retrieve" not in environ["AGENT_TOOLS"].split(",")
        refused = post_turn(worker.url, sid, {"message": "look it up", "tool": "retrieve"})
        assert refused.status == 400, refused.body
        assert "retrieve" in refused.body["error"]["message"]
        assert worker.process.args == launch.command

        # Its model is reached through the gateway, under the rendered gateway name, with
        # the key from its key file: the proxy answered, and vLLM behind it.
        assert environ["MODEL_NAME"] == concierge.literal("MODEL_NAME")
        assert environ["MODEL_BASE_URL"] == f"{local_gateway.proxy.url}/v1"
        before_vllm = metric_value(metrics_text(vllm.url), "vllm:request_success_total")
        before_proxy = proxy_chat_statuses(local_gateway)
        answered = post_turn(worker.url, sid, {"message": "Say hello.", "max_tokens": 8})
        assert answered.names()[-1] == "done", answered.events
        assert proxy_chat_statuses(local_gateway)[len(before_proxy) :] == [200]
        assert metric_value(metrics_text(vllm.url), "vllm:request_success_total") > before_vllm
    finally:
        worker.stop()
