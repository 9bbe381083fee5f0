"""Deterministic hashing embedder: no model download, same vector on every worker."""

from __future__ import annotations

import hashlib
import itertools
import math
import re

DIMENSIONS = 512
_WORD_RE = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "do",
        "does",
        "for",
        "from",
        "how",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "the",
        "to",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "with",
        "work",
        "works",
    }
)


def features(text: str) -> list[str]:
    """Lower-cased words and adjacent word pairs."""
    words = [w for w in _WORD_RE.findall(text.lower()) if w not in STOPWORDS]
    return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]


def embed(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    """Signed feature hashing into `dimensions` buckets, L2-normalised.

    Returns the zero vector for text without any word; callers reject that.
    """
    vector = [0.0] * dimensions
    for feature in features(text):
        digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "big")
        vector[digest % dimensions] += 1.0 if (digest >> 40) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector
