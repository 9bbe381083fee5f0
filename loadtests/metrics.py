"""Latency metrics of streamed requests, with vLLM's benchmark definitions (`vllm bench serve`).

Pure functions, no I/O:

- TTFT: client send -> first streamed token (first chunk that carries text).
- ITL: every gap between consecutive streamed token chunks, pooled over all requests.
- TPOT per request: (E2E - TTFT) / (output tokens - 1); undefined for < 2 output tokens.
- E2E: client send -> last byte of the stream.
- Output tokens/s: all output tokens / the run's wall time.
- Goodput: requests/s that met every per-request objective (see `meets_slo`).

Percentiles interpolate linearly between order statistics (numpy's default method).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class RequestSample:
    """One streamed request as the client saw it. Times are seconds."""

    kind: str  # "agent-turn", "tool-turn", "model"
    started_at: float  # wall-clock time the request was sent (epoch seconds)
    e2e_s: float
    ttft_s: float | None  # None when no token arrived
    chunk_offsets_s: tuple[float, ...] = ()  # arrival of each token chunk, from send
    output_tokens: int = 0
    ok: bool = True
    error: str | None = None

    @property
    def finished_at(self) -> float:
        return self.started_at + self.e2e_s

    @property
    def itls_s(self) -> list[float]:
        return inter_token_latencies(self.chunk_offsets_s)

    @property
    def tpot_s(self) -> float | None:
        return tpot(self.e2e_s, self.ttft_s, self.output_tokens)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["chunk_offsets_s"] = list(self.chunk_offsets_s)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RequestSample:
        return cls(
            kind=str(data["kind"]),
            started_at=float(data["started_at"]),
            e2e_s=float(data["e2e_s"]),
            ttft_s=None if data.get("ttft_s") is None else float(data["ttft_s"]),
            chunk_offsets_s=tuple(float(x) for x in data.get("chunk_offsets_s", ())),
            output_tokens=int(data.get("output_tokens", 0)),
            ok=bool(data.get("ok", True)),
            error=data.get("error"),
        )


def inter_token_latencies(chunk_offsets_s: Sequence[float]) -> list[float]:
    """Every gap between consecutive chunk arrivals."""
    return [b - a for a, b in itertools.pairwise(chunk_offsets_s)]


def tpot(e2e_s: float, ttft_s: float | None, output_tokens: int) -> float | None:
    """Time per output token after the first: (E2E - TTFT) / (tokens - 1)."""
    if ttft_s is None or output_tokens < 2:
        return None
    return (e2e_s - ttft_s) / (output_tokens - 1)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation; NaN for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    frac = rank - low
    return ordered[low] + (ordered[high] - ordered[low]) * frac


PERCENTILES: tuple[float, ...] = (50, 90, 95, 99)


@dataclass(frozen=True)
class Distribution:
    """Summary of one latency series, in seconds."""

    count: int
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution:
        if not values:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
        return cls(
            count=len(values),
            mean=sum(values) / len(values),
            p50=percentile(values, 50),
            p90=percentile(values, 90),
            p95=percentile(values, 95),
            p99=percentile(values, 99),
            max=max(values),
        )


@dataclass(frozen=True)
class Summary:
    """A run's figures: latency distributions (s), throughput and errors."""

    requests: int
    errors: int
    duration_s: float
    ttft: Distribution
    itl: Distribution
    tpot: Distribution
    e2e: Distribution
    output_tokens: int
    by_kind: dict[str, int] = field(default_factory=dict[str, int])

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def output_tokens_per_s(self) -> float:
        return self.output_tokens / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


def run_duration(samples: Sequence[RequestSample]) -> float:
    """Wall time from the first send to the last completion."""
    if not samples:
        return 0.0
    return max(s.finished_at for s in samples) - min(s.started_at for s in samples)


def summarize(samples: Sequence[RequestSample], duration_s: float | None = None) -> Summary:
    """Distributions over the successful requests; errors over all of them."""
    ok = [s for s in samples if s.ok]
    kinds: dict[str, int] = {}
    for s in samples:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    return Summary(
        requests=len(samples),
        errors=len(samples) - len(ok),
        duration_s=run_duration(samples) if duration_s is None else duration_s,
        ttft=Distribution.of([s.ttft_s for s in ok if s.ttft_s is not None]),
        itl=Distribution.of([gap for s in ok for gap in s.itls_s]),
        tpot=Distribution.of([t for s in ok if (t := s.tpot_s) is not None]),
        e2e=Distribution.of([s.e2e_s for s in ok]),
        output_tokens=sum(s.output_tokens for s in ok),
        by_kind=kinds,
    )


def summarize_by_kind(samples: Sequence[RequestSample]) -> dict[str, Summary]:
    """One summary per kind of request (plain agent turns, tool turns, model calls)."""
    kinds = sorted({s.kind for s in samples})
    return {k: summarize([s for s in samples if s.kind == k]) for k in kinds}


@dataclass(frozen=True)
class RequestObjectives:
    """Per-request limits used for goodput, in seconds. None means no limit."""

    ttft_s: float | None = None
    itl_s: float | None = None
    e2e_s: float | None = None


def meets_slo(sample: RequestSample, objectives: RequestObjectives) -> bool:
    """Did this request meet every objective?

    A failed request never does. TTFT and E2E are compared as they are; the ITL objective
    is met when the request's own p99 gap is within it (a single slow gap in a long
    stream does not disqualify the request, a steadily slow stream does).
    """
    if not sample.ok:
        return False
    if objectives.ttft_s is not None and (
        sample.ttft_s is None or sample.ttft_s > objectives.ttft_s
    ):
        return False
    if objectives.e2e_s is not None and sample.e2e_s > objectives.e2e_s:
        return False
    if objectives.itl_s is not None:
        gaps = sample.itls_s
        if gaps and percentile(gaps, 99) > objectives.itl_s:
            return False
    return True


def goodput(
    samples: Iterable[RequestSample], objectives: RequestObjectives, duration_s: float
) -> float:
    """Requests per second that met every objective."""
    if duration_s <= 0:
        return 0.0
    return sum(1 for s in samples if meets_slo(s, objectives)) / duration_s


def windows(
    samples: Sequence[RequestSample], width_s: float
) -> list[tuple[float, list[RequestSample]]]:
    """Successive time windows (start offset from the run's start, samples finished in it)."""
    if not samples or width_s <= 0:
        return []
    start = min(s.started_at for s in samples)
    buckets: dict[int, list[RequestSample]] = {}
    for s in samples:
        buckets.setdefault(int((s.finished_at - start) // width_s), []).append(s)
    return [(i * width_s, buckets[i]) for i in sorted(buckets)]
