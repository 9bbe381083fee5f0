"""The vector store's rendered settings against what this machine has of Qdrant.

No Qdrant server binary exists here, so: the rendered config.yaml is checked against the
keys of Qdrant's own config/config.yaml (structurally); the worker's API-key path runs
against a local HTTPS STAND-IN for Qdrant that enforces the `api-key` header (it is not
Qdrant: it answers only the collection-exists call); and the rendered collection settings
are created through qdrant-client's in-process local mode, with a retrieval round trip.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from agent_worker.config import ConfigError, load_settings
from agent_worker.embedder import DIMENSIONS, embed
from agent_worker.retrieval import COLLECTION, VectorStore
from qdrant_client import QdrantClient, models

from components.data import qdrant
from components.data.qdrant import QdrantSpec
from tests.test_redis_server import issue, make_ca

KEY = "stand-in-api-key-123"

# The keys of Qdrant v1.19.0's config/config.yaml that the rendering may use (section ->
# keys), read from the qdrant/qdrant repository at that tag.
QDRANT_CONFIG_KEYS: dict[str, set[str]] = {
    "": {"log_level", "storage", "service", "cluster", "telemetry_disabled", "tls"},
    "storage": {"storage_path", "snapshots_path", "on_disk_payload", "temp_path"},
    "service": {
        "host", "http_port", "grpc_port", "enable_tls", "enable_cors", "max_request_size_mb",
        "verify_https_client_certificate", "api_key", "read_only_api_key",
    },
    "cluster": {"enabled", "p2p", "consensus"},
    "cluster.p2p": {"port", "enable_tls"},
    "tls": {"cert", "key", "ca_cert", "cert_ttl"},
}  # fmt: skip


def _sections(config: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    yield prefix, set(config)
    for key, value in config.items():
        if isinstance(value, dict):
            yield from _sections(value, f"{prefix}.{key}".lstrip("."))  # pyright: ignore[reportUnknownArgumentType]


@pytest.mark.parametrize("tls", [True, False])
def test_rendered_config_uses_only_qdrant_keys(tls: bool) -> None:
    config = qdrant.render_config(QdrantSpec(tls=tls))
    for section, keys in _sections(config):
        assert keys <= QDRANT_CONFIG_KEYS[section], (section, keys - QDRANT_CONFIG_KEYS[section])
    assert config["cluster"]["enabled"] is True
    assert config["cluster"]["p2p"]["port"] == 6335
    assert config["service"]["enable_tls"] is tls
    assert ("tls" in config) is tls
    # Keys come from the Secret through env, never from the file.
    assert "api_key" not in config["service"] and "read_only_api_key" not in config["service"]


class StandIn(BaseHTTPRequestHandler):
    """NOT Qdrant: answers GET /collections/<name>/exists, and 401 without the api-key."""

    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        StandIn.seen.append(self.headers.get("api-key"))
        if self.headers.get("api-key") != KEY:
            self._send(401, {"status": {"error": "Must provide an API key"}})
        elif self.path.endswith("/exists"):
            self._send(200, {"result": {"exists": True}, "status": "ok", "time": 0.0})
        else:
            self._send(404, {"status": {"error": "not in the stand-in"}})

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[tuple[str, str]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed for the stand-in's throwaway CA")
    make_ca(tmp_path / "ca")
    files = issue(tmp_path / "ca", tmp_path / "tls", serial=77)
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    StandIn.seen = []
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", files.ca
    finally:
        server.shutdown()
        server.server_close()


def _exists(store: VectorStore) -> bool:
    async def check() -> bool:
        try:
            return await store._client.collection_exists(COLLECTION)  # pyright: ignore[reportPrivateUsage]
        finally:
            await store.close()

    return asyncio.run(check())


def test_worker_sends_the_api_key_from_its_file(stand_in: tuple[str, str], tmp_path: Path) -> None:
    url, ca = stand_in
    key_file = tmp_path / "api-key"
    key_file.write_text(KEY + "\n")
    env = {
        "MODEL_BASE_URL": "http://127.0.0.1:8000/v1",
        "MODEL_NAME": "m",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "QDRANT_URL": url,
        "QDRANT_API_KEY_FILE": str(key_file),
        "QDRANT_CA_FILE": ca,
    }
    s = load_settings(env)
    store = VectorStore.connect(
        path=s.qdrant_path,
        url=s.qdrant_url,
        api_key=s.qdrant_api_key,
        api_key_file=s.qdrant_api_key_file,
        ca_file=s.qdrant_ca_file,
    )
    assert _exists(store) is True
    assert StandIn.seen[-1] == KEY

    key_file.write_text("wrong-key")
    with pytest.raises(Exception, match=r"401|Unauthorized|API key"):
        _exists(VectorStore.connect(path=None, url=url, api_key=None, api_key_file=str(key_file),
                                    ca_file=ca))  # fmt: skip
    with pytest.raises(Exception, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        _exists(VectorStore.connect(path=None, url=url, api_key=KEY, ca_file=None))


def test_worker_config_refuses_key_file_problems(tmp_path: Path) -> None:
    base = {"MODEL_BASE_URL": "http://m:8000/v1", "MODEL_NAME": "m", "REDIS_URL": "redis://r:1"}
    key = tmp_path / "k"
    key.write_text(KEY)
    with pytest.raises(ConfigError, match=r"^QDRANT_API_KEY_FILE must name a readable file"):
        load_settings({**base, "QDRANT_URL": "https://q:6333", "QDRANT_API_KEY_FILE": "/nope"})
    with pytest.raises(ConfigError, match=r"^QDRANT_API_KEY and QDRANT_API_KEY_FILE are both"):
        load_settings(
            {**base, "QDRANT_URL": "https://q:6333", "QDRANT_API_KEY": "k",
             "QDRANT_API_KEY_FILE": str(key)}
        )  # fmt: skip
    with pytest.raises(ConfigError, match=r"^QDRANT_API_KEY_FILE is set but QDRANT_URL is not"):
        load_settings({**base, "QDRANT_API_KEY_FILE": str(key)})
    with pytest.raises(ConfigError, match=r"^QDRANT_CA_FILE is set but QDRANT_URL is not an https"):
        load_settings({**base, "QDRANT_URL": "http://q:6333", "QDRANT_CA_FILE": str(key)})


def test_rendered_collection_settings_create_a_collection_that_retrieves() -> None:
    spec = QdrantSpec(shards=3, replication_factor=2)
    (collection,) = spec.collections
    assert collection.vector_size == DIMENSIONS  # the worker's embeddings fit
    body = qdrant.collection_body(spec, collection)
    client = QdrantClient(location=":memory:")
    client.create_collection(
        collection.name,
        vectors_config=models.VectorParams(**body["vectors"]),
        shard_number=body["shard_number"],
        replication_factor=body["replication_factor"],
        write_consistency_factor=body["write_consistency_factor"],
        on_disk_payload=body["on_disk_payload"],
    )
    docs = ["Kafka consumer lag drives KEDA", "Redis keeps agent sessions", "MIG splits GPUs"]
    client.upsert(
        collection.name,
        points=[
            models.PointStruct(id=i, vector=embed(text), payload={"text": text})
            for i, text in enumerate(docs, start=1)
        ],
    )
    hits = client.query_points(collection.name, query=embed("agent sessions in Redis"), limit=1)
    assert hits.points[0].payload == {"text": "Redis keeps agent sessions"}
    info = client.get_collection(collection.name)
    assert info.config.params.vectors.size == DIMENSIONS  # pyright: ignore[reportAttributeAccessIssue, reportOptionalMemberAccess]
