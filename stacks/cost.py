"""`swarmstack cost`: $ per agent, session, user and team from the workers' usage records.

Every finished turn leaves one record on the Redis stream `swarm:usage` (fields ts, agent,
session, user, team, model, input_tokens, output_tokens, tool_calls, duration_s, outcome;
see images/agent-worker/API.md). A token's price comes from the stack's own GPU prices:

    $ per token of a model = replicas x $/hour of one replica / tokens served per hour

where one replica's $/hour is its whole GPUs or its MIG slice's share of a GPU at the
pool's on-demand price: `components.observe.alerts.replica_usd_per_hour`, the same figure
the cost recording rules render into `swarmstack:model_usd_per_hour`; tokens served
per hour are the model's prompt + generation tokens per second x 3600, given on the
command line or read from Prometheus (`swarmstack:model_tokens_per_second`, averaged over
the window).
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from components.observe.alerts import replica_usd_per_hour
from components.specs import ModelSpec
from stacks.config import StackConfig

USAGE_STREAM = "swarm:usage"
TOKENS_PER_SECOND_RULE = "swarmstack:model_tokens_per_second"
GROUPS: tuple[Literal["agent", "session", "user", "team"], ...] = (
    "agent",
    "session",
    "user",
    "team",
)
_DURATION = re.compile(r"^([0-9]+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
PAGE = 1000


class CostError(ValueError):
    """Bad input to `swarmstack cost`; the message names the option and the value."""


@dataclass(frozen=True)
class UsageRecord:
    ts: float
    agent: str
    session: str
    user: str
    team: str
    model: str
    input_tokens: int
    output_tokens: int
    tool_calls: int
    duration_s: float
    outcome: str

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> UsageRecord:
        return cls(
            ts=float(fields["ts"]),
            agent=fields["agent"],
            session=fields["session"],
            user=fields["user"],
            team=fields["team"],
            model=fields["model"],
            input_tokens=int(fields["input_tokens"]),
            output_tokens=int(fields["output_tokens"]),
            tool_calls=int(fields["tool_calls"]),
            duration_s=float(fields["duration_s"]),
            outcome=fields["outcome"],
        )


def parse_duration(text: str, option: str = "--window") -> float:
    """`90s`, `15m`, `2h`, `7d` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise CostError(f"{option}: {text!r} is not a duration such as 30m, 2h or 1d")
    return float(int(match.group(1)) * _UNIT_S[match.group(2)])


def parse_since(text: str) -> float:
    """An ISO-8601 time (a naive one is UTC) -> Unix seconds."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CostError(f"--since: {text!r} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_assignments(pairs: Sequence[str], option: str) -> dict[str, str]:
    """`NAME=VALUE` options (repeatable) -> {NAME: VALUE}."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.rpartition("=")
        if not sep or not name or not value:
            raise CostError(f"{option}: {pair!r} is not NAME=VALUE")
        out[name] = value
    return out


def _positive(option: str, name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise CostError(f"{option} {name}={value}: not a number") from None
    if not number > 0:
        raise CostError(f"{option} {name}={value}: must be above 0")
    return number


class StreamReader(Protocol):
    def xrange(self, name: str, min: str, max: str, count: int | None) -> Any: ...


def read_usage(client: StreamReader, since: float, until: float) -> list[UsageRecord]:
    """The stream's records whose ids (append time, ms) fall in [since, until]."""
    records: list[UsageRecord] = []
    start, end = str(int(since * 1000)), str(int(until * 1000))
    while True:
        page: list[tuple[str, dict[str, str]]] = client.xrange(USAGE_STREAM, start, end, PAGE)
        records += [UsageRecord.from_fields(fields) for _, fields in page]
        if len(page) < PAGE:
            return records
        start = "(" + page[-1][0]  # exclusive: after the last id read


@dataclass(frozen=True)
class ModelPrice:
    """How one served model's token price was found."""

    served: str  # the model name in the records (vLLM's served name)
    stack_model: str  # the stack's models[].name it is priced as
    replicas: int
    replicas_from: str
    usd_per_hour: float  # all replicas
    tokens_per_second: float
    tokens_per_second_from: str

    @property
    def usd_per_token(self) -> float:
        return self.usd_per_hour / (self.tokens_per_second * 3600.0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stackModel": self.stack_model,
            "replicas": self.replicas,
            "replicasFrom": self.replicas_from,
            "usdPerHour": self.usd_per_hour,
            "tokensPerSecond": self.tokens_per_second,
            "tokensPerSecondFrom": self.tokens_per_second_from,
            "usdPerToken": self.usd_per_token,
        }


def stack_model(config: StackConfig, name: str) -> ModelSpec | None:
    """A stack model by its `name` or its served model id (`model`)."""
    return next((m for m in config.models if name in (m.name, m.model)), None)


def price_models(
    config: StackConfig,
    served: Iterable[str],
    *,
    tokens_per_second: Mapping[str, float],
    tokens_per_second_from: str,
    replicas: Mapping[str, int],
    price_as: Mapping[str, str],
) -> dict[str, ModelPrice]:
    """The price of every served model in the records; CostError names what is missing."""
    prices: dict[str, ModelPrice] = {}
    known = ", ".join(f"{m.name} ({m.model})" for m in config.models)
    for name in sorted(set(served)):
        target = price_as.get(name, name)
        spec = stack_model(config, target)
        if spec is None:
            raise CostError(
                f"model {target!r} of the usage records is not a model of the stack "
                f"(one of {known}); price it as one with --price-as {name}=<stack model>"
            )
        keys = (name, spec.name, spec.model)
        tps = next((tokens_per_second[k] for k in keys if k in tokens_per_second), None)
        if tps is None:
            raise CostError(
                f"no tokens per second for model {name!r}: give --tokens-per-second "
                f"{name}=<tokens/s> or --prometheus-url"
            )
        count = next((replicas[k] for k in keys if k in replicas), None)
        count_from = "--replicas" if count is not None else "models[].replicas.min of the stack"
        count = spec.replicas.min if count is None else count
        prices[name] = ModelPrice(
            served=name,
            stack_model=spec.name,
            replicas=count,
            replicas_from=count_from,
            usd_per_hour=count * replica_usd_per_hour(spec, config),
            tokens_per_second=tps,
            tokens_per_second_from=tokens_per_second_from,
        )
    return prices


def tokens_per_second_arg(pairs: Sequence[str]) -> dict[str, float]:
    option = "--tokens-per-second"
    return {k: _positive(option, k, v) for k, v in parse_assignments(pairs, option).items()}


def replicas_arg(pairs: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, v in parse_assignments(pairs, "--replicas").items():
        if not v.isdigit() or int(v) == 0:
            raise CostError(f"--replicas {k}={v}: must be a whole number above 0")
        out[k] = int(v)
    return out


def prometheus_query(window_s: float) -> str:
    return f"avg_over_time({TOKENS_PER_SECOND_RULE}[{int(window_s)}s])"


def tokens_per_second_from_prometheus(body: Mapping[str, Any]) -> dict[str, float]:
    """The instant-vector answer of the Prometheus HTTP API -> {model: tokens/s}."""
    if body.get("status") != "success":
        raise CostError(f"Prometheus answered {body.get('status')!r}: {body.get('error')}")
    out: dict[str, float] = {}
    for series in body["data"]["result"]:
        model = series["metric"].get("model")
        value = float(series["value"][1])
        if model and value > 0:
            out[str(model)] = value
    return out


@dataclass
class Line:
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "turns": self.turns,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "usd": self.usd,
        }


@dataclass
class CostReport:
    since: float
    until: float
    prices: dict[str, ModelPrice]
    total: Line = field(default_factory=Line)
    groups: dict[str, dict[str, Line]] = field(
        default_factory=lambda: {g: defaultdict[str, Line](Line) for g in GROUPS}
    )

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "models": {name: p.as_dict() for name, p in sorted(self.prices.items())},
            "total": self.total.as_dict(),
            **{
                f"per{group.capitalize()}": {
                    key: line.as_dict() for key, line in sorted(self.groups[group].items())
                }
                for group in GROUPS
            },
        }

    def render(self) -> str:
        span = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since))
        end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.until))
        lines = [f"swarmstack cost: {self.total.turns} turn(s) from {span} to {end}", ""]
        lines.append("Token prices:")
        for name, p in sorted(self.prices.items()):
            lines.append(
                f"  {name} (as {p.stack_model}): {p.replicas} replica(s) [{p.replicas_from}] "
                f"${p.usd_per_hour:.4f}/h / {p.tokens_per_second:g} tokens/s "
                f"[{p.tokens_per_second_from}] = ${p.usd_per_token * 1000:.6f} per 1k tokens"
            )
        for group in GROUPS:
            lines += ["", f"$ per {group}:"]
            rows = sorted(self.groups[group].items(), key=lambda kv: (-kv[1].usd, kv[0]))
            width = max((len(k) for k, _ in rows), default=0)
            for key, line in rows:
                lines.append(
                    f"  {key:<{width}}  ${line.usd:>12.6f}  {line.turns:>6} turn(s)  "
                    f"{line.input_tokens + line.output_tokens:>10} tokens"
                )
        lines += ["", f"total: ${self.total.usd:.6f} for {self.total.turns} turn(s)"]
        return "\n".join(lines) + "\n"


def aggregate(
    records: Iterable[UsageRecord], prices: Mapping[str, ModelPrice], since: float, until: float
) -> CostReport:
    report = CostReport(since, until, dict(prices))
    for r in records:
        usd = r.tokens * prices[r.model].usd_per_token
        for line in (
            report.total,
            *(report.groups[g][getattr(r, g)] for g in GROUPS),
        ):
            line.turns += 1
            line.input_tokens += r.input_tokens
            line.output_tokens += r.output_tokens
            line.usd += usd
    return report


def to_json(report: CostReport) -> str:
    return json.dumps(report.as_dict(), indent=2, sort_keys=False) + "\n"
