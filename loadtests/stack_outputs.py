"""A load test's target and SLOs from a deployed stack's outputs.

`pulumi stack output --json` (or the offline plan's `out/<stack>/outputs.json`, the same
document) holds what a run against the stack needs, and no secret:

- `gateway`: `baseUrl` (the model gateway's OpenAI-compatible API, in the cluster),
  `readinessUrl`, `models` (every name the gateway routes), `namespace`, `port` and
  `podSelector` (the gateway's pods, for the in-cluster run's NetworkPolicy and
  AuthorizationPolicy);
- `slos`: per stack model, `ttftP99Ms`, `itlP99Ms`, `e2eP99S` (`models[].slo`);
- `costLabels`: the labels every pod of the stack carries.

`target_from_outputs` reads them into a `StackTarget`, naming the missing or mistyped key
(as `gateway.baseUrl`); the error-rate objective, which the stack config does not set,
comes from `slo_profiles.yaml` as for `--slo stack:<stack>`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from loadtests.slo import Slo, SloError, default_error_rate

# The outputs a run reads; anything else (kubeconfig, endpoints) is left behind.
NEEDED = ("gateway", "slos", "costLabels", "phase")


class OutputsError(ValueError):
    """Stack outputs that lack what a load test needs."""


@dataclass(frozen=True)
class StackTarget:
    """Where a run sends its requests and what it is judged against."""

    base_url: str  # the gateway's OpenAI-compatible API (…/v1)
    readiness_url: str
    model: str  # the gateway model name the run calls
    models: tuple[str, ...]  # every model the gateway routes
    slo: Slo
    namespace: str  # where the gateway runs (the in-cluster run runs there too)
    port: int
    pod_selector: dict[str, str]
    cost_labels: dict[str, str]

    @property
    def host(self) -> str:
        """Locust's `--host`: the API's root (ModelUser adds `/v1/...`)."""
        return self.base_url.rstrip("/").removesuffix("/v1")


def read_outputs(source: str | Path) -> dict[str, Any]:
    """`pulumi stack output --json` from a file, or from stdin when `source` is `-`."""
    if str(source) == "-":
        text, where = sys.stdin.read(), "stdin"
    else:
        path = Path(source)
        if not path.is_file():
            raise OutputsError(
                f"--outputs {path}: no such file (pulumi stack output --json > FILE)"
            )
        text, where = path.read_text(), str(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OutputsError(
            f"{where}: not JSON ({exc}); expected `pulumi stack output --json`"
        ) from None
    if not isinstance(doc, dict):
        raise OutputsError(f"{where}: expected a JSON object of stack outputs")
    return cast(dict[str, Any], doc)


def needed_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The outputs a run reads, and nothing else (what the in-cluster run mounts)."""
    return {k: outputs[k] for k in NEEDED if k in outputs}


def _mapping(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise OutputsError(f"{path}: expected an object, got {value!r}")
    return cast(dict[str, Any], value)


def _string(doc: Mapping[str, Any], key: str, path: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise OutputsError(f"{path}.{key}: expected a non-empty string, got {value!r}")
    return value


def _number(doc: Mapping[str, Any], key: str, path: str) -> float:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise OutputsError(f"{path}.{key}: expected a positive number, got {value!r}")
    return float(value)


def _labels(value: Any, path: str) -> dict[str, str]:
    doc = _mapping(value, path)
    bad = {k: v for k, v in doc.items() if not isinstance(v, str)}
    if bad:
        raise OutputsError(f"{path}: label values must be strings, got {bad!r}")
    return {str(k): str(v) for k, v in doc.items()}


def target_from_outputs(outputs: Mapping[str, Any], model: str | None = None) -> StackTarget:
    """The gateway, the model to call and its SLO; `model` defaults to the first model that
    has an SLO (a managed model behind the gateway has none)."""
    if "gateway" not in outputs:
        raise OutputsError(
            "the stack exports no `gateway` output: it has no model gateway, so there is no "
            f"in-cluster API to load (outputs: {sorted(outputs)})"
        )
    gateway = _mapping(outputs["gateway"], "gateway")
    slos = _mapping(outputs.get("slos"), "slos")
    raw_models = gateway.get("models")
    if not isinstance(raw_models, list) or not raw_models:
        raise OutputsError(f"gateway.models: expected a list of model names, got {raw_models!r}")
    models = tuple(str(m) for m in cast(list[Any], raw_models))
    with_slo = [m for m in models if m in slos]
    if model is None:
        if not with_slo:
            raise OutputsError(f"slos: no SLO for any gateway model {list(models)}")
        model = with_slo[0]
    elif model not in models:
        raise OutputsError(f"--model {model!r}: not a gateway model (one of {', '.join(models)})")
    elif model not in slos:
        raise OutputsError(
            f"--model {model!r} has no SLO in the outputs (models with one: {', '.join(with_slo)})"
        )
    entry = _mapping(slos[model], f"slos.{model}")
    port = gateway.get("port")
    if isinstance(port, float) and port.is_integer():
        port = int(port)  # JSON numbers may come back as floats
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise OutputsError(f"gateway.port: expected a TCP port, got {port!r}")
    try:
        error_rate = default_error_rate()
    except SloError as exc:
        raise OutputsError(str(exc)) from None
    slo = Slo(
        source=f"stack outputs, model {model} (slos.{model})",
        ttft_p99_ms=_number(entry, "ttftP99Ms", f"slos.{model}"),
        itl_p99_ms=_number(entry, "itlP99Ms", f"slos.{model}"),
        e2e_p99_s=_number(entry, "e2eP99S", f"slos.{model}"),
        error_rate=error_rate,
    )
    return StackTarget(
        base_url=_string(gateway, "baseUrl", "gateway"),
        readiness_url=_string(gateway, "readinessUrl", "gateway"),
        model=model,
        models=models,
        slo=slo,
        namespace=_string(gateway, "namespace", "gateway"),
        port=port,
        pod_selector=_labels(gateway.get("podSelector"), "gateway.podSelector"),
        cost_labels=_labels(outputs.get("costLabels", {}), "costLabels"),
    )
