"""Does Locust's TTFT agree with vLLM's own TTFT histogram over the same run?

    .venv/bin/python benchmarks/ttft_agreement.py [--duration 30 --users 4]
        [--vllm-python .venv-vllm/bin/python | --vllm-url http://127.0.0.1:8000]

Starts vLLM on CPU (unless given a URL), scrapes `/metrics` before and after a bounded
Locust run of `ModelUser`s (streaming chat/completions straight at vLLM, `loadtests.run`),
and compares, over exactly that run:

- Locust's TTFT: the per-request samples behind Locust's `STREAM TTFT` entry (client send
  -> first content chunk), plus the entry's own median from Locust's CSV;
- vLLM's: the change of the `vllm:time_to_first_token_seconds` histogram (buckets, sum,
  count) between the two scrapes.

Agreement within the histogram's resolution means: the same number of requests; and for
each quantile (p50/p90/p99) the bucket holding Locust's value and the bucket holding
vLLM's are the same or neighbours (the client also pays HTTP, chat templating and
detokenization, so it can sit a little above). Prints both side by side, writes JSON to
`--out`, exits 1 when they disagree.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import math
import os
import sys
import tempfile
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VLLM_PYTHON = os.environ.get(
    "SWARMSTACK_VLLM_PYTHON", str(ROOT / ".venv-vllm" / "bin" / "python")
)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from loadtests import services  # noqa: E402
from loadtests.metrics import percentile  # noqa: E402
from loadtests.run import RunConfig, execute, load_samples  # noqa: E402

METRIC = "vllm:time_to_first_token_seconds"
QUANTILES = (50, 90, 99)


@dataclass(frozen=True)
class Histogram:
    bounds: tuple[float, ...]  # upper bounds (le), ascending, +Inf last
    cumulative: tuple[float, ...]
    total: float
    count: float

    def minus(self, before: Histogram) -> Histogram:
        return Histogram(
            self.bounds,
            tuple(a - b for a, b in zip(self.cumulative, before.cumulative, strict=True)),
            self.total - before.total,
            self.count - before.count,
        )

    def bucket_of_quantile(self, q: float) -> int:
        """Index of the bucket that holds the q-th percentile observation."""
        rank = q / 100 * self.count
        for i, cum in enumerate(self.cumulative):
            if cum >= rank and cum > 0:
                return i
        return len(self.bounds) - 1

    def interpolated(self, q: float) -> float:
        """Prometheus' histogram_quantile: linear inside the bucket."""
        i = self.bucket_of_quantile(q)
        rank = q / 100 * self.count
        lo = self.bounds[i - 1] if i else 0.0
        hi = self.bounds[i]
        below = self.cumulative[i - 1] if i else 0.0
        inside = self.cumulative[i] - below
        if math.isinf(hi):
            return lo
        return lo + (hi - lo) * ((rank - below) / inside if inside else 0.0)


def scrape(url: str) -> Histogram:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    buckets: dict[float, float] = {}
    total = count = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != METRIC:
            continue
        for s in family.samples:
            if s.name.endswith("_bucket"):
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value  # summed over label sets
            elif s.name.endswith("_sum"):
                total += s.value
            elif s.name.endswith("_count"):
                count += s.value
    if not buckets:
        raise RuntimeError(f"{url}/metrics has no {METRIC} histogram")
    bounds = tuple(sorted(buckets))
    return Histogram(bounds, tuple(buckets[b] for b in bounds), total, count)


def bucket_index(bounds: tuple[float, ...], value: float) -> int:
    return bisect.bisect_left(bounds, value)


def locust_csv_median_ms(out: Path) -> float | None:
    path = out / "locust_stats.csv"
    if not path.is_file():
        return None
    with path.open() as fh:
        for row in csv.DictReader(fh):
            if row["Type"] == "STREAM" and row["Name"] == "TTFT":
                return float(row["Median Response Time"])
    return None


def fmt_bucket(bounds: tuple[float, ...], i: int) -> str:
    lo = bounds[i - 1] if i else 0.0
    hi = bounds[i]
    return f"({lo * 1000:g}, {hi * 1000:g}] ms" if not math.isinf(hi) else f"> {lo * 1000:g} ms"


def compare(ttfts: list[float], hist: Histogram) -> tuple[bool, list[str], dict[str, object]]:
    lines = [
        f"requests: Locust {len(ttfts)}   vLLM histogram count delta {hist.count:.0f}",
        f"mean TTFT: Locust {sum(ttfts) / len(ttfts) * 1000:.1f} ms   "
        f"vLLM sum/count {hist.total / hist.count * 1000 if hist.count else math.nan:.1f} ms",
        f"{'quantile':<9}{'Locust':>12}  {'its bucket':<22}"
        f"{'vLLM (interp.)':>15}  {'vLLM bucket':<22}",
    ]
    ok = len(ttfts) == round(hist.count)
    rows: list[dict[str, object]] = []
    for q in QUANTILES:
        value = percentile(ttfts, q)
        mine = bucket_index(hist.bounds, value)
        theirs = hist.bucket_of_quantile(q)
        agree = abs(mine - theirs) <= 1
        ok = ok and agree
        lines.append(
            f"p{q:<8}{value * 1000:>10.1f}ms  {fmt_bucket(hist.bounds, mine):<22}"
            f"{hist.interpolated(q) * 1000:>13.1f}ms  {fmt_bucket(hist.bounds, theirs):<22}"
            f"{'agree' if agree else 'DISAGREE'}"
        )
        rows.append({"q": q, "locust_ms": value * 1000, "locust_bucket": mine,
                     "vllm_interpolated_ms": hist.interpolated(q) * 1000,
                     "vllm_bucket": theirs, "agree": agree})  # fmt: skip
    # The whole distribution, bucket by bucket (cumulative share at each bound).
    lines.append(f"{'le (ms)':>10}{'Locust cum.':>14}{'vLLM cum.':>12}")
    for i, bound in enumerate(hist.bounds):
        mine_share = sum(1 for t in ttfts if t <= bound) / len(ttfts)
        theirs_share = hist.cumulative[i] / hist.count if hist.count else math.nan
        if theirs_share > 0 or mine_share > 0:
            lines.append(f"{bound * 1000:>10g}{mine_share:>14.1%}{theirs_share:>12.1%}")
        if mine_share >= 1 and theirs_share >= 1:
            break
    return ok, lines, {"count_locust": len(ttfts), "count_vllm": hist.count, "quantiles": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--duration", type=int, default=30)
    p.add_argument("--users", type=int, default=4)
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--output-tokens", type=int, default=32)
    p.add_argument("--vllm-python", default=DEFAULT_VLLM_PYTHON)
    p.add_argument("--vllm-url", default="")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "ttft_agreement")
    args = p.parse_args(argv)

    with ExitStack() as stack:
        url = args.vllm_url
        if not url:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="swarm-ttft-")))
            model_dir = services.prepare_model(python=args.vllm_python)
            vllm = services.start_vllm(model_dir, python=args.vllm_python, workdir=workdir)
            stack.callback(vllm.stop)
            url = vllm.url
        before = scrape(url)
        outcome = execute(
            RunConfig(
                host=url,
                out=args.out,
                users=args.users,
                spawn_rate=args.users,
                duration_s=args.duration,
                user_classes=("ModelUser",),
                slo="local",
                locust_options=[
                    "--prompt-tokens",
                    str(args.prompt_tokens),
                    "--output-tokens",
                    str(args.output_tokens),
                    "--model-think-max",
                    "0.5",
                ],
            )
        )
        after = scrape(url)  # Locust has exited: every request it counted has finished

    samples = [s for s in load_samples(args.out / "samples.jsonl") if s.ok and s.ttft_s]
    if not samples:
        print("\n".join(outcome.lines()))
        print("no successful ModelUser request: nothing to compare", file=sys.stderr)
        return 2
    ttfts = [s.ttft_s for s in samples if s.ttft_s is not None]
    ok, lines, data = compare(ttfts, after.minus(before))
    csv_median = locust_csv_median_ms(args.out)
    print(f"Locust run: {args.users} ModelUsers for {args.duration} s against {url}")
    if csv_median is not None:
        print(f"Locust's own STREAM TTFT entry: median {csv_median:.0f} ms (Locust rounds)")
    print("\n".join(lines))
    print("AGREE within bucket resolution" if ok else "DISAGREE")
    data["agree"] = ok
    data["locust_csv_median_ms"] = csv_median
    (args.out / "ttft_agreement.json").write_text(json.dumps(data, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
