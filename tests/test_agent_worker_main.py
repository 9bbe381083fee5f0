"""The worker process's runtime: the event loop and HTTP stack it serves with."""

from __future__ import annotations

from agent_worker.__main__ import event_loop_factory, server_config
from agent_worker.config import load_settings
from starlette.applications import Starlette

SETTINGS = load_settings(
    {
        "MODEL_BASE_URL": "http://127.0.0.1:1/v1",
        "MODEL_NAME": "m",
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
)


def test_the_worker_runs_on_uvloop() -> None:
    loop = event_loop_factory()()
    try:
        assert type(loop).__module__.split(".")[0] == "uvloop"
    finally:
        loop.close()


def test_uvicorn_serves_with_httptools() -> None:
    config = server_config(Starlette(), SETTINGS)
    config.load()
    assert config.http_protocol_class.__name__ == "HttpToolsProtocol"  # pyright: ignore[reportAttributeAccessIssue]
    assert (config.host, config.port) == (SETTINGS.worker_host, SETTINGS.worker_port)
