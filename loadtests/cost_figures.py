"""$ per agent, session and user of a local run, from `swarmstack cost` and the local
Prometheus's cost series.

`cost_figures` is `swarmstack cost --since <run start> --tokens-per-second ... --price-as
<served>=<stand-in model>` called as code (`stacks.cost`) with the window pinned to
[since, until]: the usage records the worker wrote to the local Redis in that window,
priced with the pilot's GPU prices (`replica_usd_per_hour`) over the tokens per second
the local Prometheus recorded: `swarmstack:model_tokens_per_second` read at `until`, the
run's end. The rule is a 5 min rate, so for a run up to 5 min long its value at the end
covers the whole run, and the records are priced at exactly the rules' own $ per token
then (`swarmstack:model_usd_per_token`, printed beside them). The CLI's
`--prometheus-url` averages the rule over its window instead, which suits windows longer
than the rule's; over a short run that average would also average the rate's ramp-up.

Counters younger than the rule's 5 min window read low in a rate (Prometheus divides the
increase by the whole window): in a run shorter than 5 min tokens per second read low and
$ per token high, by about 300 s / the run's length. The figures of a short local run are
an upper bound, not a GPU's steady-state price.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from loadtests.prometheus import instant
from loadtests.stand_in import StandIn
from stacks.cost import (
    TOKENS_PER_SECOND_RULE,
    CostReport,
    Line,
    aggregate,
    price_models,
    read_usage,
    tokens_per_second_from_prometheus,
)

# The cost recording rules the printout and cost.json carry (components/observe/alerts.py).
COST_SERIES: tuple[tuple[str, str], ...] = (
    ("swarmstack:model_usd_per_token", "model"),
    ("swarmstack:agent_usd_per_hour", "agent"),
    ("swarmstack:model_usd_per_hour", "model"),
    ("swarmstack:model_tokens_per_second", "model"),
    ("swarmstack:agent_usd_per_1k_turns", "agent"),
)
RULE_WINDOW_S = 300.0  # the cost rules' rate window (5m, components/observe/alerts.py)
SHOWN = 5  # rows per group in the printout (cost.json has them all)


@dataclass(frozen=True)
class CostFigures:
    report: CostReport
    series: dict[str, dict[str, float]]  # rule -> {model or agent: value at `until`}
    tokens_per_second_query: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "swarmstackCost": self.report.as_dict(),
            "tokensPerSecondQuery": self.tokens_per_second_query,
            "prometheus": self.series,
        }

    def lines(self) -> list[str]:
        r = self.report
        span = r.until - r.since
        out = [f"cost ({r.total.turns} turns, {span:.0f} s, pilot GPU prices):"]
        for name, p in sorted(r.prices.items()):
            out.append(
                f"  token price: {name} as {p.stack_model}: ${p.usd_per_hour:.2f}/h / "
                f"{p.tokens_per_second:.2f} tokens/s = ${p.usd_per_token * 1e6:.2f} per 1M tokens"
            )
        for group in ("agent", "session", "user"):
            rows = sorted(r.groups[group].items(), key=lambda kv: (-kv[1].usd, kv[0]))
            out.append(f"  $ per {group} ({len(rows)}):")
            out += [_row(key, line) for key, line in rows[:SHOWN]]
            if len(rows) > SHOWN:
                rest = rows[SHOWN:]
                out.append(f"    ... {len(rest)} more: ${sum(line.usd for _, line in rest):.6f}")
        out.append(f"  total: ${r.total.usd:.6f}")
        if span < RULE_WINDOW_S:
            out.append(
                f"  (a {span:.0f} s run under the rules' {RULE_WINDOW_S:.0f} s rate: tokens/s "
                f"read low and $ high, by up to {RULE_WINDOW_S / span:.0f}x)"
            )
        out.append("  Prometheus cost series:")
        for rule, _ in COST_SERIES[:2]:
            values = self.series.get(rule, {})
            shown = ", ".join(f"{k} {v:.6g}" for k, v in sorted(values.items())) or "no data"
            out.append(f"    {rule}: {shown}")
        return out

    def write(self, out: Path) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "cost.json"
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        return path


def _row(key: str, line: Line) -> str:
    tokens = line.input_tokens + line.output_tokens
    return f"    {key:<36} ${line.usd:.6f}  {line.turns:>4} turns {tokens:>7} tokens"


def cost_series(prometheus_url: str, at: float) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for rule, key in COST_SERIES:
        out[rule] = {
            str(s["metric"].get(key, "")): float(s["value"][1])
            for s in instant(prometheus_url, rule, at)
        }
    return out


def cost_figures(
    stand_in: StandIn, *, redis_url: str, prometheus_url: str, since: float, until: float
) -> CostFigures:
    """The run's cost from its usage records and the local Prometheus (CostError when a
    record's model has no price, e.g. Prometheus recorded no tokens)."""
    client: Any = redis.Redis.from_url(  # pyright: ignore[reportUnknownMemberType]
        redis_url, decode_responses=True, socket_timeout=10
    )
    try:
        records = read_usage(client, since, until)
    finally:
        client.close()
    query = TOKENS_PER_SECOND_RULE
    body = {"status": "success", "data": {"result": instant(prometheus_url, query, until)}}
    prices = price_models(
        stand_in.config,
        (r.model for r in records),
        tokens_per_second=tokens_per_second_from_prometheus(body),
        tokens_per_second_from=f"Prometheus {prometheus_url}: {query} at the run's end",
        replicas={},
        price_as=stand_in.price_as(),
    )
    return CostFigures(
        aggregate(records, prices, since, until), cost_series(prometheus_url, until), query
    )
