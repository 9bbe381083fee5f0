"""Model pods read the Hugging Face token from a file: the real huggingface_hub (from the
vLLM venv, as the vLLM image carries it) finds it through the variable the pod sets.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.serving.model_serving import HF_TOKEN_KEY, Placement, pod_template
from stacks.config import serving_placement
from tests.vllm_support import stack_configs


@pytest.fixture
def hub_model_pod() -> dict[str, Any]:
    config = stack_configs()["pilot"]
    model = next(m for m in config.models if m.weights.source == "huggingface")
    return pod_template(
        model,
        image=config.images.vllm,
        placement=Placement(serving_placement(model, config).pool, "nvidia.com/mig-3g.40gb", 1),
        cost_labels=config.cost_labels,
        service_account=model.name,
        hf_token_secret="huggingface-token",
    )


def test_huggingface_hub_reads_the_token_from_the_file_the_pod_names(
    vllm_python_path: str, hub_model_pod: dict[str, Any], tmp_path: Path
) -> None:
    container = hub_model_pod["spec"]["containers"][0]
    (entry,) = [e for e in container["env"] if "TOKEN" in e["name"]]
    mount = next(m for m in container["volumeMounts"] if entry["value"].startswith(m["mountPath"]))
    secret = next(v for v in hub_model_pod["spec"]["volumes"] if v["name"] == mount["name"])
    (item,) = secret["secret"]["items"]
    assert item["key"] == HF_TOKEN_KEY
    assert entry["value"] == f"{mount['mountPath']}/{item['path']}"

    # The Secret's file, as the kubelet writes it, at the same name in a folder of ours.
    token = "hf_swarmstackTestTokenNotARealOne"
    folder = tmp_path / "secret"
    folder.mkdir()
    (folder / item["path"]).write_text(token + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env["HF_HOME"] = str(tmp_path / "hf-home")  # no token stored there
    probe = "import huggingface_hub; print(huggingface_hub.get_token() or '<none>')"

    def token_seen(extra: dict[str, str]) -> str:
        result = subprocess.run(
            [vllm_python_path, "-c", probe],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, **extra},
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert token_seen({}) == "<none>"  # without the variable nothing finds the file
    assert token_seen({entry["name"]: str(folder / item["path"])}) == token
