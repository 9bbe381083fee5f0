"""vLLM sizing and argument rendering: pure functions, no Pulumi.

Memory fit follows how vLLM budgets a device: it may use
`gpu_memory_utilization` of the device's memory for the weights plus the KV
cache, and refuses to start unless the KV cache holds at least one sequence of
`max_model_len` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

WeightDtype = Literal["bfloat16", "float16", "fp8", "int8", "int4"]
KvCacheDtype = Literal["auto", "fp8"]
# vLLM's parsers for tool calls in a model's output (needed for `tool_choice`).
ToolCallParser = Literal["hermes", "llama3_json", "mistral", "granite", "pythonic"]
# vLLM's server-side floor for constraining tool calls with guided decoding.
ToolStrictLevel = Literal["auto", "function", "parameter"]

# The module both targets start the server with: `python -m SERVER_MODULE <args>`. It parses
# and checks its arguments as `vllm serve` does and runs the same server; the older
# `vllm.entrypoints.openai.api_server` still works in 0.32 but is deprecated there.
SERVER_MODULE = "vllm.entrypoints.launchers.api_server.entry"

BYTES_PER_PARAM: dict[str, float] = {
    "bfloat16": 2.0,
    "float16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
}


@dataclass(frozen=True)
class MemoryFit:
    """The numbers behind a fit verdict, all in GB (1e9 bytes)."""

    weights_gb: float
    kv_per_sequence_gb: float
    budget_gb: float

    @property
    def required_gb(self) -> float:
        return self.weights_gb + self.kv_per_sequence_gb

    @property
    def fits(self) -> bool:
        return self.required_gb <= self.budget_gb

    @property
    def full_length_sequences(self) -> int:
        """How many max-length sequences the KV cache holds at once."""
        if self.kv_per_sequence_gb <= 0:
            return 0
        return max(0, int((self.budget_gb - self.weights_gb) // self.kv_per_sequence_gb))

    def describe(self) -> str:
        return (
            f"weights {self.weights_gb:.2f} GB + KV cache of one full sequence "
            f"{self.kv_per_sequence_gb:.2f} GB = {self.required_gb:.2f} GB, "
            f"budget {self.budget_gb:.2f} GB"
        )


def kv_bytes_per_token(
    layers: int, kv_heads: int, head_dim: int, weight_dtype: WeightDtype, kv_dtype: KvCacheDtype
) -> float:
    """Bytes of K and V cached per token across all layers."""
    element = 1.0 if kv_dtype == "fp8" else max(BYTES_PER_PARAM[weight_dtype], 2.0)
    return 2 * layers * kv_heads * head_dim * element


def memory_fit(
    *,
    parameters_b: float,
    layers: int,
    kv_heads: int,
    head_dim: int,
    dtype: WeightDtype,
    kv_cache_dtype: KvCacheDtype,
    max_model_len: int,
    device_usable_gb: float,
    devices: int,
    gpu_memory_utilization: float,
) -> MemoryFit:
    """Weights + one max-length sequence's KV cache against the usable memory."""
    weights_gb = parameters_b * BYTES_PER_PARAM[dtype]
    kv_gb = kv_bytes_per_token(layers, kv_heads, head_dim, dtype, kv_cache_dtype)
    kv_gb = kv_gb * max_model_len / 1e9
    budget_gb = device_usable_gb * devices * gpu_memory_utilization
    return MemoryFit(round(weights_gb, 4), round(kv_gb, 4), round(budget_gb, 4))


@dataclass(frozen=True)
class ServerArgs:
    """What the vLLM OpenAI server is started with."""

    model: str
    served_model_name: str
    port: int
    tensor_parallel_size: int
    max_num_seqs: int
    max_model_len: int
    gpu_memory_utilization: float
    enable_prefix_caching: bool
    dtype: WeightDtype
    kv_cache_dtype: KvCacheDtype
    load_format: str | None = None
    download_dir: str | None = None
    tool_call_parser: ToolCallParser | None = None
    tool_strict_level: ToolStrictLevel = "auto"
    # OTLP/gRPC URL of the trace collector; vLLM exports a span per request to it.
    otlp_traces_endpoint: str | None = None


def render_server_args(a: ServerArgs) -> list[str]:
    """Command-line arguments for vLLM's OpenAI server (`SERVER_MODULE`), in a stable order."""
    dtype = "auto" if a.dtype in ("fp8", "int8", "int4") else a.dtype
    args = [
        "--model",
        a.model,
        "--served-model-name",
        a.served_model_name,
        "--host",
        "0.0.0.0",
        "--port",
        str(a.port),
        "--tensor-parallel-size",
        str(a.tensor_parallel_size),
        "--max-num-seqs",
        str(a.max_num_seqs),
        "--max-model-len",
        str(a.max_model_len),
        "--gpu-memory-utilization",
        f"{a.gpu_memory_utilization:g}",
        "--dtype",
        dtype,
        "--kv-cache-dtype",
        a.kv_cache_dtype,
        "--enable-prefix-caching" if a.enable_prefix_caching else "--no-enable-prefix-caching",
    ]
    if a.tool_call_parser:
        # Agents send forced named tool_choice; vLLM refuses it without a parser.
        args += ["--enable-auto-tool-choice", "--tool-call-parser", a.tool_call_parser]
        args += ["--tool-strict-level", a.tool_strict_level]
    if a.load_format:
        args += ["--load-format", a.load_format]
    if a.download_dir:
        args += ["--download-dir", a.download_dir]
    if a.otlp_traces_endpoint:
        args += ["--otlp-traces-endpoint", a.otlp_traces_endpoint]
    return args


def startup_probe_failure_threshold(model_load_timeout_s: int, period_s: int) -> int:
    """Probe failures allowed so that a model has `model_load_timeout_s` to load."""
    return max(1, -(-model_load_timeout_s // period_s))
