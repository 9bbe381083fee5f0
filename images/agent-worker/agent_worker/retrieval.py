"""The vector store behind the `retrieve` tool: Qdrant, seeded at start."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

from qdrant_client import AsyncQdrantClient, models

from agent_worker.embedder import DIMENSIONS, embed

COLLECTION = "swarm-docs"

SEED_DOCUMENTS: tuple[tuple[str, str], ...] = (
    (
        "MIG partitions",
        "NVIDIA MIG splits an A100 or H100 GPU into isolated slices with their own memory; "
        "a 1g.10gb slice serves a small model for one agent pool.",
    ),
    (
        "vLLM serving",
        "vLLM serves models over an OpenAI-compatible API with continuous batching and "
        "prefix caching; num_requests_waiting shows queueing.",
    ),
    (
        "Kafka event bus",
        "Agent tasks arrive on a Kafka topic; consumer lag drives KEDA autoscaling, which "
        "never scales a consumer group past the partition count.",
    ),
    (
        "Redis session store",
        "Agent sessions are checkpointed to Redis after every step with a TTL; append-only "
        "persistence with fsync every second loses at most about one second.",
    ),
    (
        "Qdrant vector store",
        "Qdrant stores document embeddings for retrieval; collections are replicated and "
        "snapshotted.",
    ),
    (
        "Graceful shutdown",
        "On SIGTERM a worker stops taking work, checkpoints in-flight sessions and exits "
        "within the termination grace period.",
    ),
)


@dataclass(frozen=True)
class Hit:
    doc_id: int
    title: str
    text: str
    score: float


class VectorStore:
    """Thin async wrapper: seed, search, ping."""

    def __init__(self, client: AsyncQdrantClient) -> None:
        self._client = client

    @classmethod
    def connect(
        cls,
        *,
        path: str | None,
        url: str | None,
        api_key: str | None,
        api_key_file: str | None = None,
        ca_file: str | None = None,
    ) -> VectorStore:
        """A server at `url` (API key from `api_key` or a mounted `api_key_file`, TLS
        verified against `ca_file` or the system's CAs), else a local store."""
        if url:
            if api_key_file is not None:
                with open(api_key_file, encoding="utf-8") as handle:
                    api_key = handle.read().strip()
            options: dict[str, Any] = {}
            if ca_file is not None:
                options["verify"] = ssl.create_default_context(cafile=ca_file)
            return cls(AsyncQdrantClient(url=url, api_key=api_key, timeout=5, **options))
        if path in (None, ":memory:"):
            return cls(AsyncQdrantClient(location=":memory:"))
        return cls(AsyncQdrantClient(path=path))

    async def seed(self) -> None:
        """Create the collection if missing and upsert the seed documents (idempotent)."""
        if not await self._client.collection_exists(COLLECTION):
            await self._client.create_collection(
                COLLECTION,
                vectors_config=models.VectorParams(
                    size=DIMENSIONS, distance=models.Distance.COSINE
                ),
            )
        await self._client.upsert(
            COLLECTION,
            points=[
                models.PointStruct(
                    id=i, vector=embed(f"{title}. {text}"), payload={"title": title, "text": text}
                )
                for i, (title, text) in enumerate(SEED_DOCUMENTS, start=1)
            ],
        )

    async def search(self, query: str, limit: int) -> list[Hit]:
        vector = embed(query)
        if not any(vector):
            raise ValueError("query has no words to search for")
        response = await self._client.query_points(
            COLLECTION, query=vector, limit=limit, with_payload=True
        )
        hits: list[Hit] = []
        for point in response.points:
            payload: dict[str, Any] = dict(point.payload or {})
            hits.append(
                Hit(
                    doc_id=int(point.id),
                    title=str(payload.get("title", "")),
                    text=str(payload.get("text", "")),
                    score=round(float(point.score), 4),
                )
            )
        return hits

    async def ping(self) -> None:
        """Raises unless the collection answers."""
        await self._client.get_collection(COLLECTION)

    async def close(self) -> None:
        await self._client.close()
