"""The local target's vLLM runs the command line a stack's model server is rendered with."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

from loadtests import services
from loadtests.local_model import LOCAL_MODEL, vllm_command
from loadtests.services import Service


def test_local_vllm_runs_the_rendered_command_line_and_serves_the_model_as_a_pod_does(
    vllm: Service, vllm_python_path: str, model_dir: Path
) -> None:
    running = Path(f"/proc/{vllm.process.pid}/cmdline").read_bytes().split(b"\0")[:-1]
    expected = vllm_command(os.path.abspath(vllm_python_path), model_dir, vllm.port)
    assert [a.decode() for a in running] == expected

    with urllib.request.urlopen(f"{vllm.url}/v1/models", timeout=10) as response:
        (served,) = json.load(response)["data"]
    assert served["id"] == LOCAL_MODEL.model == services.MODEL_NAME
    assert served["max_model_len"] == LOCAL_MODEL.vllm.max_model_len
