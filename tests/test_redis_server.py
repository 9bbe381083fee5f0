"""The session store's rendered redis.conf and ACL on a real redis-server (Debian's).

What these prove on a real server: the rendered settings are accepted and in force
(CONFIG GET), the ACL file rendered from the password locks out unauthenticated clients
(NOAUTH), with TLS only the TLS port listens, sessions written by the worker's store
survive a crash through the AOF, the reloader sidecar's script makes the running server
serve a renewed certificate, and the worker connects over TLS with a password file.
A throwaway CA is made with openssl for each test.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import redis
from agent_worker.store import Store

from components.data.redis import (
    RedisSpec,
    TlsFiles,
    maxmemory_bytes,
    render_tls_reloader,
)
from loadtests import services

pytestmark = pytest.mark.e2e
PASSWORD = "correct-horse-battery-staple-7"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=folder)
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "1",
        "-subj", "/CN=swarmstack test CA", "-out", "ca.crt", cwd=folder,
    )  # fmt: skip
    return folder / "ca.crt"


def issue(ca_dir: Path, out: Path, serial: int) -> TlsFiles:
    """A server certificate for 127.0.0.1 signed by the CA in `ca_dir`, written to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    work = ca_dir / f"issue-{serial}"
    work.mkdir()
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "tls.key", cwd=work)
    _openssl(
        "req", "-new", "-key", "tls.key", "-subj", "/CN=127.0.0.1", "-out", "tls.csr", cwd=work
    )
    (work / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509", "-req", "-in", "tls.csr", "-CA", str(ca_dir / "ca.crt"),
        "-CAkey", str(ca_dir / "ca.key"), "-set_serial", str(serial), "-days", "1",
        "-sha256", "-extfile", "ext", "-out", "tls.crt", cwd=work,
    )  # fmt: skip
    for name, source in (("tls.crt", work / "tls.crt"), ("tls.key", work / "tls.key")):
        tmp = out / f".{name}"
        tmp.write_bytes(source.read_bytes())
        os.replace(tmp, out / name)  # atomic, as the kubelet swaps a Secret's files
    (out / "ca.crt").write_bytes((ca_dir / "ca.crt").read_bytes())
    return TlsFiles(str(out / "tls.crt"), str(out / "tls.key"), str(out / "ca.crt"))


def peer_serial(port: int, ca: str) -> int:
    context = ssl.create_default_context(cafile=ca)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=3) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        cert = sock.getpeercert()
    assert cert is not None
    return int(str(cert["serialNumber"]), 16)


def listening_ports(pid: int) -> set[int]:
    """TCP ports the process listens on (its socket inodes matched in /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def raw_tls_command(port: int, ca: str, command: bytes) -> bytes:
    context = ssl.create_default_context(cafile=ca)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=3) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(command + b"\r\n")
        return sock.recv(256)


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    make_ca(tmp_path / "ca")
    return issue(tmp_path / "ca", tmp_path / "tls", serial=1001)


def _client(service: services.Service, tls: TlsFiles, password: str | None) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=service.port,
        password=password,
        ssl=True,
        ssl_ca_certs=tls.ca,
        decode_responses=True,
        socket_timeout=3,
    )


def test_rendered_conf_is_in_force_and_locks_out_unauthenticated_clients(
    tmp_path: Path, tls_files: TlsFiles
) -> None:
    spec = RedisSpec()
    service = services.start_redis(
        workdir=tmp_path / "redis", spec=spec, password=PASSWORD, tls=tls_files
    )
    try:
        client = _client(service, tls_files, PASSWORD)
        got = {
            key: client.config_get(key)[key]
            for key in ("appendonly", "appendfsync", "maxmemory-policy", "maxmemory", "port")
        }
        assert got == {
            "appendonly": "yes",
            "appendfsync": "everysec",
            "maxmemory-policy": "noeviction",
            "maxmemory": str(maxmemory_bytes(spec)),
            "port": "0",
        }
        # A raw RESP command, so no client library sends HELLO or AUTH first.
        assert raw_tls_command(service.port, tls_files.ca, b"GET swarm:{s}:session").startswith(
            b"-NOAUTH"
        )
        with pytest.raises(redis.AuthenticationError):
            _client(service, tls_files, "wrong-password").ping()
        # Only the TLS port listens; a plaintext client on it gets no answer.
        assert listening_ports(service.process.pid) == {service.port}
        plain = redis.Redis(host="127.0.0.1", port=service.port, socket_timeout=2)
        with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
            plain.ping()
    finally:
        service.stop()


def test_sessions_survive_a_crash_through_the_aof(tmp_path: Path, tls_files: TlsFiles) -> None:
    """Sessions the worker's store wrote come back on a fresh server from the AOF alone,
    after SIGKILL (no shutdown save) once the everysec fsync has run."""
    workdir = tmp_path / "redis"
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    service = services.start_redis(workdir=workdir, password=PASSWORD, tls=tls_files)
    port = service.port
    sessions = [{"session_id": f"s{i}", "turns": [{"n": i}], "checkpoints": 0} for i in range(40)]

    async def write() -> None:
        store = Store.from_url(
            service.url, 3600, password_file=str(password_file), ca_file=tls_files.ca
        )
        for session in sessions:
            assert await store.create_session(session)
        await store.close()

    async def read() -> list[dict[str, object] | None]:
        store = Store.from_url(
            f"rediss://127.0.0.1:{port}/0", 3600, password_file=str(password_file),
            ca_file=tls_files.ca,
        )  # fmt: skip
        try:
            return [await store.load_session(str(s["session_id"])) for s in sessions]
        finally:
            await store.close()

    try:
        asyncio.run(write())
        time.sleep(2.5)  # appendfsync everysec: the last second reaches the disk
        service.kill9()
        assert list((workdir / "appendonlydir").iterdir())  # the AOF is all there is
        assert not (workdir / "dump.rdb").exists()
        service = services.start_redis(workdir=workdir, port=port, password=PASSWORD, tls=tls_files)
        assert asyncio.run(read()) == sessions
    finally:
        service.stop()


def test_reloader_makes_the_running_server_serve_a_renewed_certificate(
    tmp_path: Path, tls_files: TlsFiles
) -> None:
    service = services.start_redis(
        workdir=tmp_path / "redis", password=PASSWORD, tls=tls_files, unix_socket=True
    )
    try:
        assert peer_serial(service.port, tls_files.ca) == 1001
        issue(tmp_path / "ca", Path(tls_files.cert).parent, serial=2002)  # "renewal"
        assert peer_serial(service.port, tls_files.ca) == 1001  # Redis does not notice alone
        password_file = tmp_path / "password"
        password_file.write_text(PASSWORD)
        layout = services.local_redis_layout(
            tmp_path / "redis", service.port, password=True, tls=tls_files, unix_socket=True
        )
        script = tmp_path / "reloader.sh"
        script.write_text(
            render_tls_reloader(
                layout, cli="redis-cli", password_file=str(password_file), interval_s=1
            )
        )
        for expected in (2002, 3003):  # twice: every renewal is picked up
            if expected == 3003:
                issue(tmp_path / "ca", Path(tls_files.cert).parent, serial=3003)
            run = subprocess.run(
                ["sh", str(script), "now"], check=False, capture_output=True, text=True
            )
            assert run.returncode == 0, run.stdout + run.stderr
            assert peer_serial(service.port, tls_files.ca) == expected
    finally:
        service.stop()


def test_worker_store_refuses_a_server_its_ca_does_not_sign(
    tmp_path: Path, tls_files: TlsFiles
) -> None:
    other_ca = make_ca(tmp_path / "other-ca")
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    service = services.start_redis(workdir=tmp_path / "redis", password=PASSWORD, tls=tls_files)

    async def ping(ca: str, password: str) -> None:
        password_file.write_text(password)
        store = Store.from_url(service.url, 60, password_file=str(password_file), ca_file=ca)
        try:
            await store.ping()
        finally:
            await store.close()

    try:
        asyncio.run(ping(tls_files.ca, PASSWORD))
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            asyncio.run(ping(str(other_ca), PASSWORD))
        with pytest.raises(redis.AuthenticationError):
            asyncio.run(ping(tls_files.ca, "rotated-elsewhere"))
    finally:
        service.stop()
