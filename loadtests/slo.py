"""Service-level objectives for a load test, and the verdict of a run against them.

Where the objectives come from (`resolve`):

- `stack:<stack>[/<model>]` reads `stacks/Pulumi.<stack>.yaml` through the stack's typed
  config (`stacks.config.load`) and takes `models[].slo` (ttftP99Ms, itlP99Ms, e2eP99S) of
  the named model, or the first model when none is named. The error-rate objective comes
  from `defaults.errorRate` in `slo_profiles.yaml` (the stack config has none).
- `outputs` (`loadtests/stack_outputs.py`): the `slos` output of a deployed stack, as
  `pulumi stack output --json` prints it (`--outputs` of `loadtests.run`).
- `<profile>` (e.g. `local`) is a profile of `loadtests/slo_profiles.yaml`, sized for
  targets that are not a GPU stack: `local` is the 2-core CPU local target.

Overrides (`key=value` with the same keys) replace single objectives, e.g. the tests'
deliberately impossible `ttftP99Ms=1`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from loadtests.metrics import RequestObjectives, RequestSample, Summary, goodput

ROOT = Path(__file__).resolve().parent.parent
PROFILES_FILE = Path(__file__).resolve().parent / "slo_profiles.yaml"
KEYS = ("ttftP99Ms", "itlP99Ms", "e2eP99S", "errorRate")


class SloError(ValueError):
    """An SLO source that does not exist or does not validate."""


@dataclass(frozen=True)
class Slo:
    source: str
    ttft_p99_ms: float
    itl_p99_ms: float
    e2e_p99_s: float
    error_rate: float

    def objectives(self) -> RequestObjectives:
        return RequestObjectives(
            ttft_s=self.ttft_p99_ms / 1000, itl_s=self.itl_p99_ms / 1000, e2e_s=self.e2e_p99_s
        )

    def with_overrides(self, overrides: Mapping[str, float]) -> Slo:
        if not overrides:
            return self
        unknown = sorted(set(overrides) - set(KEYS))
        if unknown:
            raise SloError(f"unknown SLO key(s) {unknown}; known: {list(KEYS)}")
        changes = {_FIELD[k]: float(v) for k, v in overrides.items()}
        parts = ", ".join(f"{k}={v:g}" for k, v in overrides.items())
        return replace(self, source=f"{self.source} with {parts}", **changes)


_FIELD = {
    "ttftP99Ms": "ttft_p99_ms",
    "itlP99Ms": "itl_p99_ms",
    "e2eP99S": "e2e_p99_s",
    "errorRate": "error_rate",
}


def _profiles_doc(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict):
        raise SloError(f"{path}: expected a mapping")
    return doc


def default_error_rate(path: Path = PROFILES_FILE) -> float:
    return float(_profiles_doc(path).get("defaults", {}).get("errorRate", 0.01))


def from_profile(name: str, path: Path = PROFILES_FILE) -> Slo:
    profiles: dict[str, Any] = _profiles_doc(path).get("profiles", {})
    if name not in profiles:
        raise SloError(f"no SLO profile {name!r} in {path} (have: {sorted(profiles)})")
    entry: dict[str, Any] = profiles[name]
    missing = [k for k in KEYS if k != "errorRate" and k not in entry]
    if missing:
        raise SloError(f"SLO profile {name!r} lacks {missing}")
    return Slo(
        source=f"profile {name} ({path.name})",
        ttft_p99_ms=float(entry["ttftP99Ms"]),
        itl_p99_ms=float(entry["itlP99Ms"]),
        e2e_p99_s=float(entry["e2eP99S"]),
        error_rate=float(entry.get("errorRate", default_error_rate(path))),
    )


def from_stack(stack: str, model: str | None = None, root: Path = ROOT) -> Slo:
    """The SLO of one model of a stack, through the stack's typed config."""
    # Imported here: the load-test image runs from stack outputs and carries no stack code.
    from stacks.config import ConfigError, load  # noqa: PLC0415 (kept out of the image)

    path = root / "stacks" / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise SloError(f"no stack file {path}")
    doc: dict[str, Any] = yaml.safe_load(path.read_text()).get("config", {})
    raw = {k.split(":", 1)[1]: v for k, v in doc.items() if k.startswith("swarmstack:")}
    try:
        config = load(raw, str(doc.get("aws:region", "")), str(path))
    except ConfigError as exc:
        raise SloError(str(exc)) from None
    models = {m.name: m for m in config.models}
    chosen = models.get(model) if model else config.models[0]
    if chosen is None:
        raise SloError(f"stack {stack} has no model {model!r} (have: {sorted(models)})")
    return Slo(
        source=f"stack {stack}, model {chosen.name} (models[].slo)",
        ttft_p99_ms=float(chosen.slo.ttft_p99_ms),
        itl_p99_ms=float(chosen.slo.itl_p99_ms),
        e2e_p99_s=float(chosen.slo.e2e_p99_s),
        error_rate=default_error_rate(),
    )


def resolve(spec: str, overrides: Mapping[str, float] | None = None) -> Slo:
    """`stack:<stack>[/<model>]` or a profile name, then overrides."""
    if spec.startswith("stack:"):
        stack, _, model = spec.removeprefix("stack:").partition("/")
        slo = from_stack(stack, model or None)
    else:
        slo = from_profile(spec)
    return slo.with_overrides(overrides or {})


def parse_overrides(items: Iterable[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SloError(f"SLO override {item!r} is not key=value")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise SloError(f"SLO override {item!r}: {value!r} is not a number") from None
    unknown = sorted(set(out) - set(KEYS))
    if unknown:
        raise SloError(f"unknown SLO key(s) {unknown}; known: {list(KEYS)}")
    return out


# --------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class Check:
    key: str  # the config key, e.g. ttftP99Ms
    measured: float
    target: float
    unit: str
    passed: bool

    def __str__(self) -> str:
        mark = "ok  " if self.passed else "FAIL"
        op = "<=" if self.passed else ">"
        measured, target = _fmt(self.measured, self.unit), _fmt(self.target, self.unit)
        return f"{mark} {self.key}: measured {measured} {op} target {target}"


def _fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    if unit == "%":
        return f"{value * 100:.2f}%"
    return f"{value:.1f} {unit}" if unit == "ms" else f"{value:.2f} {unit}"


@dataclass(frozen=True)
class Verdict:
    slo: Slo
    checks: tuple[Check, ...]
    goodput_rps: float
    requests_per_s: float

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def lines(self) -> list[str]:
        head = "PASS" if self.passed else "FAIL: " + ", ".join(c.key for c in self.failed)
        out = [f"SLO verdict ({self.slo.source}): {head}"]
        out += [f"  {c}" for c in self.checks]
        share = self.goodput_rps / self.requests_per_s if self.requests_per_s else 0.0
        out.append(
            f"  goodput: {self.goodput_rps:.3f} req/s meeting every SLO "
            f"of {self.requests_per_s:.3f} req/s ({share:.0%})"
        )
        return out


def evaluate(summary: Summary, samples: Sequence[RequestSample], slo: Slo) -> Verdict:
    """Compare a run's p99s and error rate with the objectives.

    No successful request at all fails every latency objective (measured n/a).
    """

    def latency(key: str, measured_s: float, target: float, unit: str) -> Check:
        measured = measured_s * (1000 if unit == "ms" else 1)
        return Check(key, measured, target, unit, not math.isnan(measured) and measured <= target)

    checks = (
        latency("ttftP99Ms", summary.ttft.p99, slo.ttft_p99_ms, "ms"),
        latency("itlP99Ms", summary.itl.p99, slo.itl_p99_ms, "ms"),
        latency("e2eP99S", summary.e2e.p99, slo.e2e_p99_s, "s"),
        Check(
            "errorRate",
            summary.error_rate,
            slo.error_rate,
            "%",
            summary.requests > 0 and summary.error_rate <= slo.error_rate,
        ),
    )
    return Verdict(
        slo=slo,
        checks=checks,
        goodput_rps=goodput(samples, slo.objectives(), summary.duration_s),
        requests_per_s=summary.requests_per_s,
    )
