"""vLLM sizing and argument rendering."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from components.serving.vllm import (
    ServerArgs,
    kv_bytes_per_token,
    memory_fit,
    render_server_args,
    startup_probe_failure_threshold,
)


def test_kv_cache_per_token_of_llama_3_8b() -> None:
    # 32 layers x 8 KV heads x 128 dims x (K and V) x 2 bytes = 128 KiB per token
    assert kv_bytes_per_token(32, 8, 128, "bfloat16", "auto") == 131072
    assert kv_bytes_per_token(32, 8, 128, "bfloat16", "fp8") == 65536


def test_memory_fit_numbers() -> None:
    fit = memory_fit(
        parameters_b=8.03,
        layers=32,
        kv_heads=8,
        head_dim=128,
        dtype="bfloat16",
        kv_cache_dtype="auto",
        max_model_len=16384,
        device_usable_gb=39.0,
        devices=1,
        gpu_memory_utilization=0.9,
    )
    assert fit.weights_gb == 16.06
    assert round(fit.kv_per_sequence_gb, 2) == 2.15
    assert fit.budget_gb == 35.1
    assert fit.fits
    assert fit.full_length_sequences == 8


@settings(max_examples=200, deadline=None)
@given(
    params=st.floats(0.1, 80),
    length=st.integers(256, 131072),
    util=st.floats(0.5, 0.98),
    devices=st.integers(1, 8),
)
def test_fit_is_monotone_in_memory_and_context(
    params: float, length: int, util: float, devices: int
) -> None:
    def fit(device_gb: float, max_len: int) -> bool:
        return memory_fit(
            parameters_b=params,
            layers=32,
            kv_heads=8,
            head_dim=128,
            dtype="bfloat16",
            kv_cache_dtype="auto",
            max_model_len=max_len,
            device_usable_gb=device_gb,
            devices=devices,
            gpu_memory_utilization=util,
        ).fits

    # About two thirds of the draws fit; the rest are discarded, not passed unchecked.
    assume(fit(39.0, length))
    assert fit(78.0, length)  # more memory never breaks a fit
    assert fit(39.0, max(256, length // 2))  # a shorter context never breaks a fit


def test_server_args_render_every_setting_in_order() -> None:
    args = render_server_args(
        ServerArgs(
            model="s3://bucket/qwen",
            served_model_name="Qwen/Qwen2.5-7B-Instruct",
            port=8000,
            tensor_parallel_size=1,
            max_num_seqs=64,
            max_model_len=32768,
            gpu_memory_utilization=0.9,
            enable_prefix_caching=True,
            dtype="bfloat16",
            kv_cache_dtype="auto",
            load_format="runai_streamer",
        )
    )
    assert args == [
        "--model", "s3://bucket/qwen",
        "--served-model-name", "Qwen/Qwen2.5-7B-Instruct",
        "--host", "0.0.0.0",
        "--port", "8000",
        "--tensor-parallel-size", "1",
        "--max-num-seqs", "64",
        "--max-model-len", "32768",
        "--gpu-memory-utilization", "0.9",
        "--dtype", "bfloat16",
        "--kv-cache-dtype", "auto",
        "--enable-prefix-caching",
        "--load-format", "runai_streamer",
    ]  # fmt: skip


def test_tool_calling_renders_parser_and_strictness_together() -> None:
    base = ServerArgs("m/m", "m/m", 8000, 1, 8, 1024, 0.9, True, "bfloat16", "auto")
    assert "--tool-strict-level" not in render_server_args(base)  # no tool calls to constrain
    args = render_server_args(
        replace(base, tool_call_parser="llama3_json", tool_strict_level="parameter")
    )
    assert args[-5:] == [
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "llama3_json",
        "--tool-strict-level",
        "parameter",
    ]
    assert render_server_args(replace(base, tool_call_parser="hermes"))[-2:] == [
        "--tool-strict-level",
        "auto",
    ]


def test_prefix_caching_can_be_turned_off() -> None:
    base = ServerArgs("m/m", "m/m", 8000, 1, 8, 1024, 0.9, False, "bfloat16", "auto")
    assert "--no-enable-prefix-caching" in render_server_args(base)


def test_startup_probe_covers_the_load_timeout() -> None:
    assert startup_probe_failure_threshold(600, 10) == 60
    assert startup_probe_failure_threshold(605, 10) == 61
