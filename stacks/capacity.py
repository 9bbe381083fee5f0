"""`swarmstack capacity <stack>`: what the expected peak needs against what the stack provides.

In: the stack's `demand` (users with an open session, agent turns per minute, their split
across agent types) and, per model, a load test's `summary.json` (loadtests/report.py) that
says what one replica served within the SLO. Out, per model, agent type and GPU pool:
replicas, MIG slices or GPUs, nodes, the autoscaling thresholds and $/hour needed, beside
what the config provides, with each shortfall named by its config path.

The arithmetic, all of it printed with its inputs:

- An agent type's turns per second: `turnsPerMinute x share / 60`. A model's demand is the
  sum over the agent types that call it (fallbacks through the gateway are not counted:
  they are for failures, not for the peak).
- One replica's turns per second: the summary's goodput (requests that met the SLO, per
  second) times its share of agent turns, over the replicas that served the run. A run that
  did not fill its replica understates this, so the replica count is conservative; a run
  that missed its SLO measured no capacity and is refused.
- Replicas: `ceil(demand / (per replica x headroom))`, the headroom being the tier's slot
  utilisation at which KEDA adds a replica (at most 1), never below `replicas.min`.
- In flight per replica in the run: `requests per s x mean E2E / replicas` (Little's law).
  KEDA adds a model replica at `maxNumSeqs x utilisation` sequences per replica; a
  threshold above what the run held within the SLO scales out after the SLO is at risk.
- Nodes: the accelerators the pool's models need at those replicas (canaries at their
  replicas; an unmeasured model at `replicas.min`) over what one node offers, per resource.
- http agents: `users x share x sessionsPerUser / autoscaling.sessionsPerWorker` pods.
  events agents take one task at a time per pod: `turns per s x mean turn E2E` pods, and no
  more than the tasks topic's partitions.
- $/hour: the GPU pools' nodes at their on-demand prices (components/compute/instances.py).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from components.compute.instances import INSTANCE_TYPES
from components.scale.keda import model_threshold
from components.specs import ModelSpec
from stacks.config import StackConfig, accelerator_resource, placements, pool_offers

TURN_KINDS = ("agent-turn", "tool-turn")


class CapacityError(ValueError):
    """Input `swarmstack capacity` cannot use; the message names the option or file."""


@dataclass(frozen=True)
class Measured:
    """What one load test says a model's replica serves within the SLO."""

    model: str
    source: str
    replicas: int
    turns_per_s_per_replica: float
    in_flight_per_replica: float
    turn_e2e_mean_s: float
    slo_targets: dict[str, float]


def read_measurement(model: str, path: Path, replicas: int) -> Measured:
    """A load test's summary.json as one replica's capacity; refused if it measured none."""
    where = f"--measured {model}={path}"
    try:
        doc: Any = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CapacityError(f"{where}: cannot read a summary.json: {exc}") from None
    summary: Any = doc
    if not isinstance(doc, dict) or not isinstance(summary.get("slo"), dict):
        raise CapacityError(f"{where}: not a load-test summary.json (no `slo` section)")
    slo: Any = summary["slo"]
    if slo.get("passed") is not True:
        failed_keys: list[Any] = slo.get("failed") or []
        failed = ", ".join(str(f) for f in failed_keys) or "unknown"
        raise CapacityError(
            f"{where}: the run missed its SLO (failed: {failed}), so its throughput is no "
            "capacity within the SLO; run it again with fewer users"
        )
    by_kind: dict[str, int] = summary.get("by_kind") or {}
    requests = int(summary.get("requests") or 0)
    turns = sum(int(by_kind.get(kind, 0)) for kind in TURN_KINDS)
    if turns == 0 or requests == 0:
        raise CapacityError(
            f"{where}: the run has no agent turns (by_kind: {by_kind}); capacity is sized "
            "in turns, so run the load test's agent-session users"
        )
    goodput = float(slo.get("goodput_rps") or 0.0)
    e2e: dict[str, Any] = summary.get("e2e") or {}
    mean_ms = e2e.get("mean_ms")
    if goodput <= 0 or not isinstance(mean_ms, int | float) or mean_ms <= 0:
        raise CapacityError(f"{where}: no request met the SLO (goodput {goodput:g}/s)")
    rate = float(summary.get("requests_per_s") or 0.0)
    return Measured(
        model=model,
        source=str(path),
        replicas=replicas,
        turns_per_s_per_replica=goodput * turns / requests / replicas,
        in_flight_per_replica=rate * mean_ms / 1000 / replicas,
        turn_e2e_mean_s=mean_ms / 1000,
        slo_targets=_targets(slo.get("checks") or []),
    )


def _targets(checks: list[Any]) -> dict[str, float]:
    return {str(c["key"]): float(c["target"]) for c in checks if c.get("target") is not None}


@dataclass(frozen=True)
class Shortfall:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class ModelNeed:
    model: str
    demand_turns_per_s: float
    measured_from: str | None
    per_replica_turns_per_s: float | None
    headroom: float
    replicas_needed: int | None
    replicas_min: int
    replicas_max: int
    keda_threshold: int
    in_flight_held: float | None


@dataclass(frozen=True)
class AgentNeed:
    agent: str
    mode: str
    turns_per_s: float
    basis: str
    replicas_needed: int | None
    replicas_max: int


@dataclass(frozen=True)
class PoolNeed:
    pool: str
    instance_type: str
    accelerators_needed: dict[str, int]
    per_node: dict[str, int]
    nodes_needed: int
    min_size: int
    max_size: int
    usd_per_node_hour: float


@dataclass(frozen=True)
class CapacityReport:
    stack: str
    users: int
    turns_per_minute: float
    models: list[ModelNeed]
    agents: list[AgentNeed]
    pools: list[PoolNeed]
    shortfalls: list[Shortfall] = field(default_factory=list[Shortfall])
    notes: list[str] = field(default_factory=list[str])

    @property
    def usd_per_hour_needed(self) -> float:
        return sum(p.nodes_needed * p.usd_per_node_hour for p in self.pools)

    @property
    def usd_per_hour_min(self) -> float:
        return sum(p.min_size * p.usd_per_node_hour for p in self.pools)

    @property
    def usd_per_hour_max(self) -> float:
        return sum(p.max_size * p.usd_per_node_hour for p in self.pools)

    def render(self) -> str:
        lines = [
            f"swarmstack capacity: stack {self.stack}",
            f"demand: {self.users} users, {self.turns_per_minute:g} turns/min",
            "",
            "models            demand turns/s  per replica  headroom  replicas needed  "
            "replicas (min-max)  KEDA at  held in SLO",
        ]
        for m in self.models:
            per = "-" if m.per_replica_turns_per_s is None else f"{m.per_replica_turns_per_s:.3f}"
            need = "unmeasured" if m.replicas_needed is None else str(m.replicas_needed)
            held = "-" if m.in_flight_held is None else f"{m.in_flight_held:.1f}"
            lines.append(
                f"  {m.model:<16}{m.demand_turns_per_s:>14.3f}{per:>13}{m.headroom:>10.2f}"
                f"{need:>17}{f'{m.replicas_min}-{m.replicas_max}':>20}{m.keda_threshold:>9}"
                f"{held:>13}"
            )
        lines += ["", "agents            mode    turns/s  pods needed  pods max  basis"]
        for a in self.agents:
            need = "unknown" if a.replicas_needed is None else str(a.replicas_needed)
            lines.append(
                f"  {a.agent:<16}{a.mode:<8}{a.turns_per_s:>7.3f}{need:>13}{a.replicas_max:>10}"
                f"  {a.basis}"
            )
        lines += [
            "",
            "GPU pools         needed                     per node           nodes  "
            "(min-max)  $/node-hour",
        ]
        for p in self.pools:
            needed = ", ".join(f"{n} x {r}" for r, n in sorted(p.accelerators_needed.items()))
            offer = ", ".join(f"{n} x {r}" for r, n in sorted(p.per_node.items()))
            lines.append(
                f"  {p.pool:<16}{needed:<27}{offer:<19}{p.nodes_needed:>5}"
                f"{f'{p.min_size}-{p.max_size}':>11}{p.usd_per_node_hour:>13.2f}"
            )
        lines += [
            "",
            f"$/hour of GPU nodes: needed {self.usd_per_hour_needed:.2f}; the stack runs "
            f"{self.usd_per_hour_min:.2f} at min and up to {self.usd_per_hour_max:.2f} at max",
        ]
        if self.notes:
            lines += ["", "notes:", *(f"  - {n}" for n in self.notes)]
        if self.shortfalls:
            lines += ["", f"shortfalls ({len(self.shortfalls)}):"]
            lines += [f"  - {s}" for s in self.shortfalls]
        else:
            lines += ["", "no shortfall: the stack provides what the demand needs"]
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        doc = asdict(self)
        doc["usd_per_hour"] = {
            "needed": round(self.usd_per_hour_needed, 4),
            "min": round(self.usd_per_hour_min, 4),
            "max": round(self.usd_per_hour_max, 4),
        }
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def _headroom(model: ModelSpec, config: StackConfig) -> float:
    spec = config.autoscaling
    share = (
        spec.interactive_slot_utilization
        if model.slo.tier == "interactive"
        else spec.batch_slot_utilization
    )
    return min(1.0, share)


def _slo_looser(model: ModelSpec, measured: Measured) -> list[str]:
    """The run's SLO targets that are looser than the model's own objectives."""
    ours = {
        "ttftP99Ms": float(model.slo.ttft_p99_ms),
        "itlP99Ms": float(model.slo.itl_p99_ms),
        "e2eP99S": float(model.slo.e2e_p99_s),
    }
    return [
        f"{key} {measured.slo_targets[key]:g} (the model's: {target:g})"
        for key, target in ours.items()
        if key in measured.slo_targets and measured.slo_targets[key] > target
    ]


def plan_capacity(
    config: StackConfig, stack: str, measured: Mapping[str, Measured]
) -> CapacityReport:
    demand = config.demand
    if demand is None:
        raise CapacityError(
            f"stack {stack} has no swarmstack:demand (users, turnsPerMinute, agents[].share): "
            "capacity is sized against it"
        )
    served = [m.name for m in config.models]
    for name in measured:
        if name not in served:
            raise CapacityError(
                f"--measured {name}=...: {name!r} is not a model of stack {stack} (one of {served})"
            )
    shares = {a.agent: a for a in demand.agents}
    agent_turns = {
        a.name: demand.turns_per_minute * shares[a.name].share / 60 if a.name in shares else 0.0
        for a in config.agents
    }
    shortfalls: list[Shortfall] = []
    notes: list[str] = []

    models: list[ModelNeed] = []
    replicas_for: dict[str, int] = {}
    for i, model in enumerate(config.models):
        rate = sum(agent_turns[a.name] for a in config.agents if a.model == model.name)
        headroom = _headroom(model, config)
        threshold = int(model_threshold(model, config.autoscaling))
        got = measured.get(model.name)
        if got is None:
            replicas_for[model.name] = model.replicas.min
            if rate > 0:
                notes.append(
                    f"{model.name} is not measured (--measured {model.name}=summary.json): "
                    f"its pool is sized at replicas.min {model.replicas.min}"
                )
            models.append(
                ModelNeed(
                    model.name,
                    rate,
                    None,
                    None,
                    headroom,
                    None,
                    model.replicas.min,
                    model.replicas.max,
                    threshold,
                    None,
                )
            )
            continue
        needed = max(model.replicas.min, math.ceil(rate / (got.turns_per_s_per_replica * headroom)))
        replicas_for[model.name] = needed
        if needed > model.replicas.max:
            shortfalls.append(
                Shortfall(
                    f"models[{i}].replicas.max",
                    f"{model.name} needs {needed} replicas for {rate:.3f} turns/s at "
                    f"{got.turns_per_s_per_replica:.3f} per replica and headroom "
                    f"{headroom:g}; the stack allows {model.replicas.max}",
                )
            )
        if threshold > got.in_flight_per_replica:
            knob = (
                "autoscaling.interactiveSlotUtilization"
                if model.slo.tier == "interactive"
                else "autoscaling.batchSlotUtilization"
            )
            shortfalls.append(
                Shortfall(
                    f"{knob} (models[{i}].vllm.maxNumSeqs)",
                    f"KEDA adds a {model.name} replica at {threshold} sequences per replica, "
                    f"but the load test held the SLO at {got.in_flight_per_replica:.1f} in "
                    "flight per replica: above that the SLO is unproven; lower the threshold "
                    "or load-test at that concurrency",
                )
            )
        looser = _slo_looser(model, got)
        if looser:
            notes.append(
                f"{model.name}: the load test judged against a looser SLO than the model's "
                f"({'; '.join(looser)}): its per-replica figure may be too high"
            )
        models.append(
            ModelNeed(
                model.name,
                rate,
                got.source,
                got.turns_per_s_per_replica,
                headroom,
                needed,
                model.replicas.min,
                model.replicas.max,
                threshold,
                got.in_flight_per_replica,
            )
        )

    agents: list[AgentNeed] = []
    for j, agent in enumerate(config.agents):
        rate = agent_turns[agent.name]
        share = shares.get(agent.name)
        needed: int | None
        if share is None:
            needed, basis = None, "no share in demand.agents"
        elif agent.mode == "http":
            sessions = demand.users * share.share * share.sessions_per_user
            per_pod = config.autoscaling.sessions_per_worker
            needed = max(agent.replicas.min, math.ceil(sessions / per_pod))
            basis = f"{sessions:g} sessions / {per_pod} per pod"
        else:
            got = measured.get(agent.model)
            if got is None:
                needed, basis = None, f"{agent.model} unmeasured: no turn duration"
            else:
                in_flight = rate * got.turn_e2e_mean_s
                needed = max(agent.replicas.min, math.ceil(in_flight))
                basis = f"{rate:.3f} turns/s x {got.turn_e2e_mean_s:.2f} s, one task per pod"
                partitions = agent.topics.tasks.partitions if agent.topics else None
                if partitions is not None and needed > partitions:
                    shortfalls.append(
                        Shortfall(
                            f"agents[{j}].topics.tasks.partitions",
                            f"{agent.name} needs {needed} consumers, but its tasks topic has "
                            f"{partitions} partitions (a consumer group never uses more)",
                        )
                    )
        if needed is not None and needed > agent.replicas.max:
            shortfalls.append(
                Shortfall(
                    f"agents[{j}].replicas.max",
                    f"{agent.name} needs {needed} pods ({basis}); the stack allows "
                    f"{agent.replicas.max}",
                )
            )
        agents.append(AgentNeed(agent.name, agent.mode, rate, basis, needed, agent.replicas.max))

    pools: list[PoolNeed] = []
    strategy = config.gpu_operator.mig_strategy
    placed = placements(config)
    for k, pool in enumerate(config.gpu_pools):
        wanted: Counter[str] = Counter()
        for model in config.models:
            if placed[model.name].pool != pool.name:
                continue
            resource, count = accelerator_resource(model, config)
            canary = model.canary.replicas if model.canary is not None else 0
            wanted[resource] += count * (replicas_for[model.name] + canary)
        per_node = pool_offers(pool, strategy, 1)
        nodes = pool.min_size
        for resource, need in wanted.items():
            nodes = max(nodes, math.ceil(need / per_node[resource]))
        if nodes > pool.max_size:
            shortfalls.append(
                Shortfall(
                    f"gpuPools[{k}].maxSize",
                    f"pool {pool.name} needs {nodes} x {pool.instance_type} for "
                    + ", ".join(f"{n} x {r}" for r, n in sorted(wanted.items()))
                    + f"; the stack allows {pool.max_size}",
                )
            )
        pools.append(
            PoolNeed(
                pool.name,
                pool.instance_type,
                dict(sorted(wanted.items())),
                {r: per_node[r] for r in sorted(per_node)},
                nodes,
                pool.min_size,
                pool.max_size,
                INSTANCE_TYPES[pool.instance_type].on_demand_usd_per_hour,
            )
        )
    return CapacityReport(
        stack, demand.users, demand.turns_per_minute, models, agents, pools, shortfalls, notes
    )


def measured_args(pairs: Sequence[str], replicas: Mapping[str, int]) -> dict[str, Measured]:
    """`--measured MODEL=PATH` (repeatable) with `--measured-replicas MODEL=N` (default 1)."""
    out: dict[str, Measured] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise CapacityError(f"--measured: {pair!r} is not MODEL=PATH")
        out[name] = read_measurement(name, Path(path), replicas.get(name, 1))
    for name in replicas:
        if name not in out:
            raise CapacityError(f"--measured-replicas {name}=...: no --measured {name}=PATH")
    return out


def replicas_args(pairs: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or not value.isdigit() or int(value) < 1:
            raise CapacityError(
                f"--measured-replicas: {pair!r} is not MODEL=N with N a whole number >= 1"
            )
        out[name] = int(value)
    return out
