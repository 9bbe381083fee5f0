"""Check vLLM server command lines with the installed vLLM's own parser and checks.

Runs INSIDE the vLLM venv (the real `vllm` package exists only there), started by
tests/e2e/test_vllm_server_args.py:

    .venv-vllm/bin/python tests/e2e/vllm_argv_check.py IN.json OUT.json

IN.json: {"server_module": "<module>", "cases": {"<name>": [<argv without the program>]}}.
OUT.json: {"version": "<vllm version>", "server_module_main": bool,
           "errors": {"<name>": "<why the release refuses it>" | null}}.

Each argv goes through what the server does with its command line before it loads a
model, in order: the parser `make_arg_parser(FlexibleArgumentParser())` builds, its
`parse_args`, `validate_parsed_serve_args` (the serve checks), and
`validate_api_server_args` (the tool-call and reasoning parser names, checked before the
socket is bound). Two more checks, because the parser lets them through: every flag is
spelt exactly as the release defines it (argparse also takes an unambiguous prefix, which
a later release can make ambiguous), `--load-format` names a loader of the release
(the parser takes any string; the engine looks the loader up only when it loads), and an
`--otlp-traces-endpoint` passes the release's ObservabilityConfig, which the server builds
at start, and finds the OpenTelemetry SDK and OTLP exporters the engine's tracer needs
(`vllm.tracing.otel.is_otel_available`; the engine refuses to start its tracer without
them). ObservabilityConfig's own availability check does not catch that in 0.32.0: its
`is_tracing_available` tests the registered backends' check functions for truth instead
of calling them.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import sys
from pathlib import Path
from typing import Any, get_args

# These exist only in the vLLM venv, which is where this script runs.
import vllm  # pyright: ignore[reportMissingImports]
from vllm.config import ObservabilityConfig  # pyright: ignore[reportMissingImports]
from vllm.entrypoints.launchers.cli_args import (  # pyright: ignore[reportMissingImports]
    make_arg_parser,
    validate_parsed_serve_args,
)
from vllm.entrypoints.launchers.launcher import (  # pyright: ignore[reportMissingImports]
    validate_api_server_args,
)
from vllm.model_executor.model_loader import LoadFormats  # pyright: ignore[reportMissingImports]
from vllm.tracing.otel import is_otel_available  # pyright: ignore[reportMissingImports]
from vllm.utils.argparse_utils import FlexibleArgumentParser  # pyright: ignore[reportMissingImports]


def refusal(argv: list[str]) -> str | None:
    """Why this release refuses `argv`, or None when it accepts it."""
    parser = make_arg_parser(FlexibleArgumentParser())
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = parser.parse_args(argv)
    except SystemExit:
        lines = [line for line in stderr.getvalue().splitlines() if "error:" in line]
        return lines[-1].split("error:", 1)[1].strip() if lines else stderr.getvalue()
    known: dict[str, Any] = parser._option_string_actions  # argparse: option string -> action
    for token in argv:
        flag = token.split("=", 1)[0]
        if flag.startswith("--") and flag not in known:
            return f"{flag} is not a flag of vLLM {vllm.__version__} (only a prefix of one)"
    try:
        validate_parsed_serve_args(args)
        validate_api_server_args(args)
    except Exception as exc:  # the server stops on any of them
        return f"{type(exc).__name__}: {exc}"
    if args.load_format not in get_args(LoadFormats):
        return f"--load-format {args.load_format!r} is not one of {list(get_args(LoadFormats))}"
    if args.otlp_traces_endpoint is not None:
        try:
            ObservabilityConfig(otlp_traces_endpoint=args.otlp_traces_endpoint)
        except Exception as exc:  # pydantic's ValidationError: the server stops on it
            return f"--otlp-traces-endpoint: {type(exc).__name__}: {exc}"
        if not is_otel_available():
            return "--otlp-traces-endpoint: the OpenTelemetry packages the tracer needs are missing"
    return None


def main() -> None:
    request = json.loads(Path(sys.argv[1]).read_text())
    module = importlib.import_module(request["server_module"])
    result = {
        "version": vllm.__version__,
        "server_module_main": callable(getattr(module, "main", None)),
        "errors": {name: refusal(argv) for name, argv in request["cases"].items()},
    }
    Path(sys.argv[2]).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
