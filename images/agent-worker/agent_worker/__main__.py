"""Entry point: `python -m agent_worker` (the image's CMD and the local target's command)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Generator

import uvicorn
from starlette.applications import Starlette

from agent_worker.config import ConfigError, Settings, load_settings
from agent_worker.events import EventLoop
from agent_worker.http_app import build_app
from agent_worker.service import Worker

log = logging.getLogger("agent_worker")
EXIT_CONFIG = 2
SHUTDOWN_MARGIN_S = 1.0  # kept back from the grace period: the process must be gone by then


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the worker drains first, then stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop when installed (the image and the `serve` extra pin it), else asyncio's own.

    The relay wakes the loop for every token it reads and writes; uvloop's C loop and
    transports make each of those wakeups, socket reads and writes cheaper.
    """
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def drain_budget(grace_period_s: float) -> float:
    """Time in-flight turns get to finish before they are interrupted at a checkpoint;
    the rest of the grace period is for checkpointing them and closing connections."""
    return max(grace_period_s * 0.5, grace_period_s - 7.0)


def server_config(app: Starlette, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.worker_host,
        port=settings.worker_port,
        http="auto",  # httptools when installed (pinned with the image), else h11
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
        timeout_keep_alive=5,
    )


async def serve(settings: Settings) -> int:
    worker = Worker(settings)
    await worker.start()
    server = _Server(server_config(build_app(worker), settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    consumer_task: asyncio.Task[None] | None = None
    if settings.worker_mode == "events":
        events = EventLoop(worker)
        consumer_task = asyncio.create_task(events.run())
    server_task = asyncio.create_task(server.serve())

    waiters: set[asyncio.Future[object]] = {
        asyncio.ensure_future(stop.wait()),
        server_task,  # pyright: ignore[reportAssignmentType]
    }
    if consumer_task is not None:
        waiters.add(consumer_task)  # pyright: ignore[reportArgumentType]
    done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    for task in done:
        if task is not server_task and task is not consumer_task:
            continue
        exc = task.exception()
        if exc is not None:
            log.error("%s stopped: %r", "server" if task is server_task else "consumer", exc)
            code = 1

    started = loop.time()
    deadline = started + settings.grace_period_s - SHUTDOWN_MARGIN_S

    def left() -> float:
        return max(0.1, deadline - loop.time())

    log.info("shutting down (grace period %.0f s)", settings.grace_period_s)
    worker.begin_drain()
    if consumer_task is not None and not consumer_task.done():
        events.request_stop()  # pyright: ignore[reportPossiblyUnboundVariable]
    await worker.drain(min(drain_budget(settings.grace_period_s), left()))
    if consumer_task is not None:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(consumer_task, left())
    server.should_exit = True
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(server_task, left())
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(worker.close(), left())
    log.info("stopped after %.1f s", loop.time() - started)
    return code


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        print(f"agent-worker: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if os.environ.get("SWARM_FAULT") and settings.fault is None:
        log.warning("SWARM_FAULT is set but SWARM_FAULT_HOOKS is not 1: fault hooks stay off")
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(serve(settings))


if __name__ == "__main__":
    sys.exit(main())
