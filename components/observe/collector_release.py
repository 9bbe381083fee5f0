"""What swarmstack relies on in the OpenTelemetry Collector release it pins, and a check of a
rendered collector config against it.

The collector cannot run on the machines that plan a stack (no registry they reach ships
the core distribution's binary), so `config_problems` applies, in Python, the checks the
collector applies when it loads a config, for the parts swarmstack renders:

- every component id is `type[/name]` with a type the distribution carries at `RELEASE`
  (its manifest, `distributions/otelcol/manifest.yaml` at v0.159.0), and no deprecated
  alias (`otlp` and `otlphttp` exporters were renamed `otlp_grpc` and `otlp_http`);
- every key under a component is a config key of that component at `RELEASE` (the
  collector refuses unknown keys: "has invalid keys"), read from each component's
  `config.schema.yaml` / `config.go` at the tag, and its value has the type the field
  has there (Go durations, unsigned integers, booleans, the debug exporter's levels);
- the components' own `Validate()` rules that the rendered values can break:
  memory_limiter needs `check_interval` > 0, a limit, percentages <= 100 and the spike
  below the limit; batch needs `send_batch_max_size` >= `send_batch_size`;
- the service section: every extension it enables and every receiver, processor and
  exporter a pipeline names is configured; each pipeline has a receiver and an exporter
  and names no processor twice; pipeline ids are `traces|metrics|logs[/name]`;
- every `${...}` reference is `${env:NAME}` or `${file:/absolute/path}` (both providers
  are in the distribution) and every header value is one: a secret is never written
  into the config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, cast

RELEASE = "0.159.0"

# Component types of the core distribution `otelcol` at RELEASE, by section.
DISTRIBUTION: dict[str, frozenset[str]] = {
    "receivers": frozenset(
        {"nop", "otlp", "hostmetrics", "jaeger", "kafka", "prometheus", "zipkin"}
    ),
    "processors": frozenset(
        {
            "batch",
            "memory_limiter",
            "attributes",
            "resource",
            "span",
            "probabilistic_sampler",
            "filter",
        }
    ),
    "exporters": frozenset(
        {
            "debug",
            "nop",
            "otlp_grpc",
            "otlp_http",
            "file",
            "kafka",
            "prometheus",
            "prometheusremotewrite",
            "zipkin",
        }
    ),
    "extensions": frozenset({"zpages", "health_check", "pprof"}),
    "connectors": frozenset({"forward"}),
}
# Still accepted at RELEASE, but deprecated: the rendered config uses the new names.
DEPRECATED_TYPES: dict[str, str] = {"otlp": "otlp_grpc", "otlphttp": "otlp_http"}
SECTIONS = ("receivers", "processors", "exporters", "connectors", "extensions")
SIGNALS = frozenset({"traces", "metrics", "logs"})

ValueKind = Literal["endpoint", "url", "duration", "uint", "bool", "string", "headers", "level"]


@dataclass(frozen=True)
class Key:
    kind: ValueKind
    meaning: str


Shape: TypeAlias = Mapping[str, "Key | Shape"]

_TLS_CLIENT: Shape = {
    "insecure": Key("bool", "gRPC only: plaintext, no TLS (configtls.ClientConfig)"),
    "ca_file": Key("string", "CA bundle the server certificate is checked against"),
    "server_name_override": Key("string", "name the server certificate must carry"),
}
_QUEUE: Shape = {
    "enabled": Key("bool", "queue requests in memory while the backend is slow or down"),
    "queue_size": Key("uint", "requests (the default sizer) the queue holds"),
    "num_consumers": Key("uint", "requests sent in parallel"),
}
_RETRY: Shape = {
    "enabled": Key("bool", "retry a failed export with exponential back-off"),
    "initial_interval": Key("duration", "first wait"),
    "max_interval": Key("duration", "longest wait"),
    "max_elapsed_time": Key("duration", "give a request up after this long"),
}
_OTLP_CLIENT: Shape = {
    "endpoint": Key("url", "backend address (configgrpc / confighttp ClientConfig)"),
    "tls": _TLS_CLIENT,
    "headers": Key("headers", "headers on every request (configopaque.MapList)"),
    "compression": Key("string", "gzip (default), zstd, snappy or none"),
    "timeout": Key("duration", "per request (exporterhelper.TimeoutConfig)"),
    "sending_queue": _QUEUE,
    "retry_on_failure": _RETRY,
}

# The config keys of each component type swarmstack renders, at RELEASE.
COMPONENT_KEYS: dict[tuple[str, str], Shape] = {
    ("receivers", "otlp"): {
        "protocols": {
            "grpc": {"endpoint": Key("endpoint", "host:port the gRPC server binds")},
            "http": {"endpoint": Key("endpoint", "host:port the HTTP server binds")},
        }
    },
    ("processors", "memory_limiter"): {
        "check_interval": Key("duration", "how often memory use is measured (must be > 0)"),
        "limit_percentage": Key("uint", "hard limit, % of the container's memory limit"),
        "spike_limit_percentage": Key("uint", "headroom below the hard limit (soft limit)"),
    },
    ("processors", "batch"): {
        "timeout": Key("duration", "longest a batch waits before it is sent"),
        "send_batch_size": Key("uint", "items that trigger a send"),
        "send_batch_max_size": Key("uint", "largest batch (>= send_batch_size, 0: no limit)"),
    },
    ("exporters", "otlp_grpc"): _OTLP_CLIENT,
    ("exporters", "otlp_http"): {
        **_OTLP_CLIENT,
        "traces_endpoint": Key("url", "traces URL (default endpoint + /v1/traces)"),
    },
    ("exporters", "debug"): {
        "verbosity": Key("level", "basic (counts), normal or detailed"),
    },
    ("exporters", "nop"): {},
    ("extensions", "health_check"): {
        "endpoint": Key("endpoint", "host:port of the health server (default localhost:13133)"),
        "path": Key("string", "path answered with 200 while the collector runs (default /)"),
    },
}
DEBUG_LEVELS = frozenset({"basic", "normal", "detailed"})

_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
_FILE_REF = re.compile(r"\$\{file:(/[^}\s]+)\}")
_ANY_REF = re.compile(r"\$\{[^}]*\}")
_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$")


def _references(node: Any, pattern: re.Pattern[str]) -> set[str]:
    if isinstance(node, Mapping):
        mapping = cast(Mapping[str, Any], node)
        return {n for v in mapping.values() for n in _references(v, pattern)}
    if isinstance(node, list):
        return {n for v in cast(list[Any], node) for n in _references(v, pattern)}
    return set(pattern.findall(node)) if isinstance(node, str) else set()


def env_references(node: Any) -> set[str]:
    """Every variable a `${env:NAME}` of the config names."""
    return _references(node, _ENV_REF)


def file_references(node: Any) -> set[str]:
    """Every path a `${file:/path}` of the config names."""
    return _references(node, _FILE_REF)


def _is_reference(value: Any) -> bool:
    return isinstance(value, str) and bool(_ENV_REF.fullmatch(value) or _FILE_REF.fullmatch(value))


def _value_problem(kind: ValueKind, value: Any) -> str | None:
    if kind == "bool":
        return None if isinstance(value, bool) else "is not a boolean"
    if kind == "uint":
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return None if ok else "is not an unsigned integer"
    if kind == "headers":
        if not isinstance(value, Mapping):
            return "is not a map of header names to values"
        clear = [name for name, v in cast(Mapping[str, Any], value).items() if not _is_reference(v)]
        return f"has header values in clear ({clear}): use ${{file:/path}}" if clear else None
    if not isinstance(value, str):
        return "is not a string"
    if kind == "duration":
        return None if _DURATION.match(value) else "is not a Go duration (e.g. 1s, 200ms)"
    if kind == "level":
        return None if value in DEBUG_LEVELS else f"is not one of {sorted(DEBUG_LEVELS)}"
    if kind == "endpoint":
        resolved = _ENV_REF.sub("0.0.0.0", value)
        return None if _HOST_PORT.match(resolved) else "is not host:port"
    if kind == "url":
        ok = re.match(r"^https?://[^/\s:]+(:[0-9]{1,5})?(/\S*)?$", value)
        return None if ok else "is not an http(s) URL"
    return None


def _shape_problems(path: str, shape: Shape, node: Any, owner: str) -> list[str]:
    if not isinstance(node, Mapping):
        return [f"{path}: is not a map"]
    problems: list[str] = []
    for key, value in cast(Mapping[str, Any], node).items():
        where = f"{path}.{key}"
        expected = shape.get(key)
        if expected is None:
            problems.append(f"{where}: not a config key of {owner} at {RELEASE}")
        elif isinstance(expected, Key):
            problem = _value_problem(expected.kind, value)
            if problem is not None:
                problems.append(f"{where}: {value!r} {problem}")
        else:
            problems += _shape_problems(where, expected, value, owner)
    return problems


def _rule_problems(section: str, kind: str, path: str, body: Mapping[str, Any]) -> list[str]:
    """The component's own Validate() rules that rendered values can break."""
    problems: list[str] = []
    if (section, kind) == ("processors", "memory_limiter"):
        limit = body.get("limit_percentage", 0)
        spike = body.get("spike_limit_percentage", 0)
        if "check_interval" not in body:
            problems.append(f"{path}: check_interval must be greater than zero")
        if not limit and not body.get("limit_mib"):
            problems.append(f"{path}: a memory limit (limit_percentage) is required")
        if isinstance(limit, int) and isinstance(spike, int):
            if limit > 100 or spike > 100:
                problems.append(f"{path}: percentages must be at most 100")
            if limit and limit <= spike:
                problems.append(f"{path}: spike_limit_percentage must be below limit_percentage")
    if (section, kind) == ("processors", "batch"):
        size, most = body.get("send_batch_size", 8192), body.get("send_batch_max_size", 0)
        if isinstance(size, int) and isinstance(most, int) and 0 < most < size:
            problems.append(
                f"{path}: send_batch_max_size must be greater or equal to send_batch_size"
            )
    if section == "exporters" and kind in ("otlp_grpc", "otlp_http") and "endpoint" not in body:
        problems.append(f"{path}: endpoint is required")
    return problems


def _strings(node: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(node, Mapping):
        return [
            leaf
            for k, v in cast(Mapping[str, Any], node).items()
            for leaf in _strings(v, f"{path}.{k}" if path else str(k))
        ]
    if isinstance(node, list):
        return [
            leaf
            for i, v in enumerate(cast(list[Any], node))
            for leaf in _strings(v, f"{path}[{i}]")
        ]
    return [(path, node)] if isinstance(node, str) else []


def _service_problems(config: Mapping[str, Any]) -> list[str]:
    service = config.get("service")
    if not isinstance(service, Mapping):
        return ["service: missing"]
    service = cast(Mapping[str, Any], service)
    problems = [
        f"service.{k}: not a service key the config renders"
        for k in service
        if k not in ("extensions", "pipelines")
    ]

    def declared(section: str) -> set[str]:
        body = config.get(section)
        return set(cast(Mapping[str, Any], body)) if isinstance(body, Mapping) else set()

    for ref in cast(list[Any], service.get("extensions") or []):
        if ref not in declared("extensions"):
            problems.append(
                f"service.extensions: references extension {ref!r} which is not configured"
            )
    pipelines = service.get("pipelines")
    if not isinstance(pipelines, Mapping) or not pipelines:
        return [*problems, "service.pipelines: service must have at least one pipeline"]
    for pid, pipeline in cast(Mapping[str, Any], pipelines).items():
        where = f"service.pipelines.{pid}"
        if str(pid).partition("/")[0] not in SIGNALS:
            problems.append(f"{where}: not a pipeline of {sorted(SIGNALS)}")
        if not isinstance(pipeline, Mapping):
            problems.append(f"{where}: is not a map")
            continue
        pipeline = cast(Mapping[str, Any], pipeline)
        for key in pipeline:
            if key not in ("receivers", "processors", "exporters"):
                problems.append(f"{where}.{key}: not a pipeline key")
        for key, section in (
            ("receivers", "receivers"),
            ("processors", "processors"),
            ("exporters", "exporters"),
        ):
            refs = [str(r) for r in cast(list[Any], pipeline.get(key) or [])]
            if key != "processors" and not refs:
                problems.append(f"{where}: must have at least one {key[:-1]}")
            if len(set(refs)) != len(refs):
                problems.append(f"{where}.{key}: names a component more than once")
            for ref in refs:
                if ref not in declared(section) and ref not in declared("connectors"):
                    problems.append(
                        f"{where}: references {key[:-1]} {ref!r} which is not configured"
                    )
    return problems


def config_problems(config: Mapping[str, Any]) -> list[str]:
    """What the collector at RELEASE would refuse in `config` (empty: it loads)."""
    problems = [
        f"{key}: not a top-level key of a collector config"
        for key in config
        if key not in (*SECTIONS, "service")
    ]
    for section in SECTIONS:
        body: Any = config.get(section) or {}
        if not isinstance(body, Mapping):
            problems.append(f"{section}: is not a map")
            continue
        for cid, settings in cast(Mapping[str, Any], body).items():
            kind = str(cid).partition("/")[0]
            path = f"{section}.{cid}"
            if kind in DEPRECATED_TYPES and section == "exporters":
                problems.append(
                    f"{path}: {kind!r} is a deprecated alias at {RELEASE}; "
                    f"use {DEPRECATED_TYPES[kind]!r}"
                )
                continue
            if kind not in DISTRIBUTION[section]:
                problems.append(
                    f"{path}: the core distribution {RELEASE} has no {section[:-1]} {kind!r}"
                )
                continue
            shape = COMPONENT_KEYS.get((section, kind))
            if shape is None:
                problems.append(f"{path}: swarmstack has not recorded the keys of {kind!r}")
                continue
            given: Any = settings if settings is not None else {}
            problems += _shape_problems(path, shape, given, kind)
            if isinstance(given, Mapping):
                problems += _rule_problems(section, kind, path, cast(Mapping[str, Any], given))
    for path, value in _strings(config, ""):
        for ref in _ANY_REF.findall(value):
            if not _is_reference(ref):
                problems.append(
                    f"{path}: {ref} is not an ${{env:NAME}} or ${{file:/path}} reference"
                )
    return problems + _service_problems(config)
