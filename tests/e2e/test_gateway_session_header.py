"""The worker's session header reaches the model through LiteLLM's real proxy.

The mesh keeps a session on one vLLM replica by hashing on `x-swarmstack-session-id`
(components/traffic/mesh.py), and the hash runs in the gateway's sidecar, on the call the
proxy makes to the model: the header must survive the proxy. Here the real worker
(`services.start_worker`, configured as a stack configures it behind a gateway) calls the
real LiteLLM proxy started from the gateway component's rendering
(`loadtests.gateway.local_proxy_config`, i.e. `render_proxy_config` with a 127.0.0.1
upstream and no database), whose `model_group_settings` is what forwards it.

The upstream is a stand-in, said so here: a small OpenAI-compatible server in this test
that records each request's headers and streams a fixed answer, because vLLM does not show
the headers it received. What is tested is the worker and the proxy; the stand-in only
answers and records.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from components.gateway.proxy_config import READINESS_PATH, timeouts_of
from components.gateway.spec import GatewaySpec
from components.traffic.mesh import SESSION_HEADER
from components.traffic.timeouts import TimeoutSpec
from loadtests import gateway as local_gateway
from loadtests import services
from loadtests.services import GatewayService, Service
from tests.e2e.conftest import RedisFactory
from tests.e2e.worker_client import create_session, post_turn

MODEL = "smollm2-affine"  # a stack model of the rendering: its calls carry client headers
SPEC = GatewaySpec()
TURN = {"message": "Say hello.", "max_tokens": 8}


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: dict[str, Any]


@dataclass
class RecordingUpstream:
    """An OpenAI-compatible chat endpoint that records every request it gets."""

    server: ThreadingHTTPServer
    requests: list[Recorded] = field(default_factory=list[Recorded])

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def chats(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]


def _chunk(delta: dict[str, Any], finish: str | None) -> bytes:
    data = {
        "id": "chatcmpl-stand-in",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "stand-in",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def start_recording_upstream() -> RecordingUpstream:
    upstream: RecordingUpstream | None = None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            assert upstream is not None
            headers = {k.lower(): v for k, v in self.headers.items()}
            upstream.requests.append(Recorded(self.path, headers, body))
            if not body.get("stream"):
                answer = json.dumps(
                    {
                        "id": "chatcmpl-stand-in",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": "stand-in",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": "Hello."},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                return
            usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
            stream = (
                _chunk({"role": "assistant", "content": "Hello"}, None)
                + _chunk({"content": "."}, None)
                + _chunk({}, "stop")
                + b"data: "
                + json.dumps(
                    {
                        "id": "chatcmpl-stand-in",
                        "object": "chat.completion.chunk",
                        "created": int(time.time()),
                        "model": "stand-in",
                        "choices": [],
                        "usage": usage,
                    }
                ).encode()
                + b"\n\ndata: [DONE]\n\n"
            )
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("content-length", str(len(stream)))
            self.end_headers()
            self.wfile.write(stream)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    upstream = RecordingUpstream(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return upstream


@dataclass
class Proxy:
    proxy: GatewayService
    redis: Service
    upstream: RecordingUpstream
    key_file: Path
    worker_timeout_s: int


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    base = tmp_path_factory.mktemp("gateway-session")
    upstream = start_recording_upstream()
    models = [local_gateway.local_model(MODEL)]
    config = local_gateway.local_proxy_config(SPEC, models, {MODEL: upstream.url})
    gateway, redis = local_gateway.start_gateway(SPEC, config, workdir=base)
    key_file = base / "agent-key"
    key_file.write_text(gateway.master_key)
    key_file.chmod(0o600)
    chain = timeouts_of(SPEC, models, TimeoutSpec())
    try:
        yield Proxy(gateway, redis, upstream, key_file, chain.worker_s)
    finally:
        gateway.stop()
        redis.stop()
        upstream.server.shutdown()
        upstream.server.server_close()


def test_each_sessions_calls_reach_the_model_with_its_session_header(
    proxy: Proxy, redis_factory: RedisFactory, tmp_path: Path
) -> None:
    redis = redis_factory(workdir=tmp_path / "redis")
    env = {
        "MODEL_BASE_URL": f"{proxy.proxy.url}/v1",
        "MODEL_HEALTH_URL": f"{proxy.proxy.url}{READINESS_PATH}",
        "MODEL_API_KEY_FILE": str(proxy.key_file),
        "MODEL_NAME": MODEL,
        "MODEL_TIMEOUT_S": str(proxy.worker_timeout_s),
        "REDIS_URL": redis.url,
        "QDRANT_PATH": ":memory:",
    }
    worker = services.start_worker(env, workdir=tmp_path / "worker")
    try:
        first, second = create_session(worker.url), create_session(worker.url)
        sent: list[str] = []
        for sid in (first, second, first):
            seen = len(proxy.upstream.chats())
            stream = post_turn(worker.url, sid, TURN)
            assert stream.names()[-1] == "done", stream.events
            calls = proxy.upstream.chats()[seen:]
            assert calls, "the turn made no model call"
            sent += [c.headers.get(SESSION_HEADER, "") for c in calls]
            # Every call of the turn, through the proxy, names the turn's session.
            assert {c.headers.get(SESSION_HEADER) for c in calls} == {sid}
        assert first != second and len(set(sent)) == 2
        # The agent's key stays at the gateway: the model gets the proxy's own credential.
        for call in proxy.upstream.chats():
            assert proxy.proxy.master_key not in json.dumps(call.headers)
    finally:
        worker.stop()
