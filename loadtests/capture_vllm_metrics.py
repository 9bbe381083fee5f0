"""Capture the metric families of the deployed vLLM release from a running server.

Starts the local target's vLLM on CPU (the release of `.venv-vllm`, the one the stack's
image pins), sends a few chat requests so every histogram and counter has samples, reads
`/metrics` and writes each family's name, type, label names and sample names to
`components/observe/vllm_metrics_v<version>.json`, the file the metric catalogue reads:

    .venv/bin/python -m loadtests.capture_vllm_metrics --vllm-python .venv-vllm/bin/python

`tests/e2e/test_vllm_metrics_catalogue.py` re-reads a running server and fails when the
committed file disagrees with it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from components.observe.catalogue import VLLM_METRICS_FILE, VLLM_VERSION
from loadtests import services
from loadtests.local_model import LOCAL_MODEL

# Families of the process and Python runtime, not of vLLM: queries do not build on them.
RUNTIME_PREFIXES = ("python_", "process_")


def families(exposition: str) -> list[dict[str, Any]]:
    """vLLM's families in a /metrics body: name, type, label names and sample names."""
    out: list[dict[str, Any]] = []
    for family in text_string_to_metric_families(exposition):
        if family.name.startswith(RUNTIME_PREFIXES):
            continue
        labels: set[str] = set()
        series: set[str] = set()
        for sample in family.samples:
            labels |= set(sample.labels) - {"le", "quantile"}
            series.add(sample.name)
        out.append(
            {
                "name": family.name,
                "type": family.type,
                "labels": sorted(labels),
                "series": sorted(series),
            }
        )
    return fold_created(out)


def fold_created(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The text format has no place for a counter's, histogram's or summary's `_created`
    series, so the parser reports each as a gauge family of its own: fold it back."""
    by_name = {str(f["name"]): f for f in found}
    for name, family in list(by_name.items()):
        parent = by_name.get(name.removesuffix("_created"))
        if name.endswith("_created") and parent is not None and parent["type"] != "gauge":
            parent["series"] = sorted({*parent["series"], *family["series"]})
            del by_name[name]
    return sorted(by_name.values(), key=lambda f: str(f["name"]))


def document(exposition: str) -> dict[str, Any]:
    return {
        "version": VLLM_VERSION,
        "generatedBy": "loadtests/capture_vllm_metrics.py",
        "families": families(exposition),
    }


def exercise(url: str, requests: int = 2) -> None:
    """Streamed chat requests, so TTFT, ITL and E2E histograms have observations."""
    for i in range(requests):
        body = json.dumps(
            {
                "model": LOCAL_MODEL.model,
                "messages": [{"role": "user", "content": f"Count to {i + 3}."}],
                "max_tokens": 8,
                "stream": True,
            }
        ).encode()
        request = urllib.request.Request(
            f"{url}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        return response.read().decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Capture the deployed vLLM release's metric families from a running server."
    )
    parser.add_argument("--vllm-python", required=True, help="the vLLM venv's python")
    parser.add_argument("--out", type=Path, default=VLLM_METRICS_FILE)
    parser.add_argument("--timeout-s", type=float, default=600, help="wait for vLLM to start")
    args = parser.parse_args(argv)
    model_dir = services.prepare_model(python=args.vllm_python)
    with tempfile.TemporaryDirectory(prefix="vllm-metrics-") as workdir:
        vllm = services.start_vllm(
            model_dir, python=args.vllm_python, workdir=Path(workdir), timeout_s=args.timeout_s
        )
        try:
            exercise(vllm.url)
            doc = document(scrape(vllm.url))
        finally:
            vllm.stop()
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"{len(doc['families'])} vLLM metric families written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
