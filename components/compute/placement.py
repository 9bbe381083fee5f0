"""Where each model runs: pool, MIG slice and the pools its replicas may overflow onto.

A pure planner over the stack's GPU pools (no Pulumi): `plan_placements` takes the models
and pools of a stack and returns one `ModelPlacement` per model, or raises
`PlacementError` naming every model that fits no pool, with each pool it tried and why.

How a model is placed:

1. Its candidates, one per pool it may run on (only its `pool` when it pins one): on a
   MIG pool the smallest profile of the pool's layout that holds the model at its
   `maxModelLen` (or the profile it pins), on a pool of whole GPUs `tensorParallelSize`
   GPUs of that pool's type, each checked with the same memory arithmetic as the
   config (`model_memory_fit`).
2. Models that pin a pool take their slices there first (the config's per-pool capacity
   check reports a pool they over-subscribe).
3. The others, largest slice first (first-fit decreasing by the memory one replica
   takes), go to the first candidate pool, in `pool_order` (highest `priority`, then the
   cheapest replica, then the name), that still has room for `replicas.max` (+ canary) at
   the pool's `maxSize`.

A placed model that did not pin its pool may also run on every other pool that offers the
same resource and holds it (its `overflow`): its pods require one of those pools and
prefer the chosen one, so a pending replica takes a free slice in any of them before the
Cluster Autoscaler starts a node, and the autoscaler's priority expander
(`expander_priorities`) grows the pools in the same order the planner fills them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from components.compute.instances import INSTANCE_TYPES
from components.compute.mig import COMPUTE_SLICES, MIG_PROFILES, mig_resource_name
from components.serving.vllm import MemoryFit, memory_fit
from components.specs import GpuPoolSpec, ModelSpec

MigStrategy = Literal["single", "mixed"]
# The expander's value for every node group no GPU pool's rule names (the system pool):
# a group that matches no rule is never grown, so the catch-all must exist.
CATCH_ALL_PRIORITY = 1
PRIORITY_STEP = 10


def model_memory_fit(model: ModelSpec, device_gb: float, devices: int) -> MemoryFit:
    """Whether one replica of `model` fits `devices` devices of `device_gb` usable GB."""
    arch = model.architecture
    return memory_fit(
        parameters_b=arch.parameters_b,
        layers=arch.layers,
        kv_heads=arch.kv_heads,
        head_dim=arch.head_dim,
        dtype=arch.dtype,
        kv_cache_dtype=model.vllm.kv_cache_dtype,
        max_model_len=model.vllm.max_model_len,
        device_usable_gb=device_gb,
        devices=devices,
        gpu_memory_utilization=model.vllm.gpu_memory_utilization,
    )


def pool_offers(pool: GpuPoolSpec, strategy: MigStrategy, nodes: int) -> Counter[str]:
    """Extended resources a pool offers with `nodes` nodes."""
    itype = INSTANCE_TYPES[pool.instance_type]
    if pool.mig is None:
        return Counter({"nvidia.com/gpu": itype.gpus * nodes})
    per_gpu = Counter(mig_resource_name(p, strategy) for p in pool.mig.profiles)
    return Counter({k: v * itype.gpus * nodes for k, v in per_gpu.items()})


def usd_per_gpu_hour(pool: GpuPoolSpec) -> float:
    itype = INSTANCE_TYPES[pool.instance_type]
    return itype.on_demand_usd_per_hour / itype.gpus


def _compute_slices_used(pool: GpuPoolSpec) -> int:
    """Compute slices of one GPU the pool's layout uses (a whole GPU: all seven)."""
    if pool.mig is None:
        return COMPUTE_SLICES
    gpu = INSTANCE_TYPES[pool.instance_type].gpu_model
    assert gpu is not None
    return sum(MIG_PROFILES[gpu][p].compute_slices for p in pool.mig.profiles)


def usd_per_compute_slice_hour(pool: GpuPoolSpec) -> float:
    """A GPU's price shared over the compute slices its layout uses: what the pool charges
    for one slice of compute, comparable across GPU types and layouts."""
    return usd_per_gpu_hour(pool) / _compute_slices_used(pool)


def pool_order(pools: Sequence[GpuPoolSpec]) -> list[GpuPoolSpec]:
    """Pools as the planner fills them and the autoscaler grows them: highest priority
    first, then the cheapest compute slice, then the name."""
    return sorted(pools, key=lambda p: (-p.priority, usd_per_compute_slice_hour(p), p.name))


@dataclass(frozen=True)
class Candidate:
    """One replica of a model on one pool: the resource it requests there and its cost."""

    pool: str
    profile: str | None
    resource: str
    count: int
    device_gb: float  # memory of the devices one replica takes
    usd_per_replica_hour: float


@dataclass(frozen=True)
class ModelPlacement:
    """Where a model's replicas run: its pool, slice, and the pools they may overflow to."""

    model: str
    pool: str
    profile: str | None
    resource: str  # nvidia.com/gpu or nvidia.com/mig-<profile>
    count: int  # of `resource` per replica
    usd_per_replica_hour: float
    pinned: bool
    overflow: tuple[str, ...] = ()

    @property
    def pools(self) -> tuple[str, ...]:
        """Every pool a replica may run on, the chosen one first."""
        return (self.pool, *self.overflow)


class PlacementError(ValueError):
    """Models that fit no pool: (config path, message) each."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems))


def candidate(model: ModelSpec, pool: GpuPoolSpec, strategy: MigStrategy) -> Candidate | str:
    """The replica of `model` on `pool`, or why the pool cannot hold one."""
    itype = INSTANCE_TYPES[pool.instance_type]
    gpu = itype.gpu
    assert gpu is not None
    if pool.mig is None:
        if model.mig_profile is not None:
            return f"has no MIG layout (migProfile {model.mig_profile!r} is set)"
        if model.tensor_parallel_size > itype.gpus:
            return (
                f"a {pool.instance_type} node has {itype.gpus} GPU(s), fewer than "
                f"tensorParallelSize {model.tensor_parallel_size}"
            )
        fit = model_memory_fit(model, gpu.usable_memory_gb, model.tensor_parallel_size)
        if not fit.fits:
            return f"{model.tensor_parallel_size} x {gpu.model} too small: {fit.describe()}"
        count = model.tensor_parallel_size
        return Candidate(
            pool.name,
            None,
            "nvidia.com/gpu",
            count,
            gpu.usable_memory_gb * count,
            usd_per_gpu_hour(pool) * count,
        )
    if model.tensor_parallel_size != 1:
        return (
            f"is partitioned with MIG and a process sees one MIG device, but "
            f"tensorParallelSize is {model.tensor_parallel_size}"
        )
    table = MIG_PROFILES[gpu.model]
    layout = sorted(
        set(pool.mig.profiles), key=lambda n: (table[n].memory_gb, table[n].compute_slices)
    )
    if model.mig_profile is not None:
        if model.mig_profile not in layout:
            return f"its layout {layout} has no {model.mig_profile!r} (migProfile)"
        layout = [model.mig_profile]
    for name in layout:
        profile = table[name]
        if model_memory_fit(model, profile.usable_memory_gb, 1).fits:
            return Candidate(
                pool.name,
                name,
                mig_resource_name(name, strategy),
                1,
                profile.usable_memory_gb,
                usd_per_gpu_hour(pool) * profile.compute_slices / _compute_slices_used(pool),
            )
    largest = table[layout[-1]]
    fit = model_memory_fit(model, largest.usable_memory_gb, 1)
    return f"no slice of its layout holds it (largest {largest.name}: {fit.describe()})"


def _replicas_at_max(model: ModelSpec) -> int:
    return model.replicas.max + (model.canary.replicas if model.canary is not None else 0)


def plan_placements(
    models: Sequence[ModelSpec], pools: Sequence[GpuPoolSpec], strategy: MigStrategy
) -> dict[str, ModelPlacement]:
    """Every model's placement, by model name (see the module's docstring)."""
    ordered = pool_order(pools)
    left = {p.name: pool_offers(p, strategy, p.max_size) for p in pools}
    placed: dict[str, ModelPlacement] = {}
    problems: list[tuple[str, str]] = []
    options: dict[str, list[tuple[GpuPoolSpec, Candidate | str]]] = {}
    for model in models:
        tried = [p for p in ordered if model.pool is None or p.name == model.pool]
        options[model.name] = [(p, candidate(model, p, strategy)) for p in tried]
    index = {m.name: i for i, m in enumerate(models)}

    for model in models:  # pinned models take their slices first
        if model.pool is None:
            continue
        found = [c for _, c in options[model.name] if isinstance(c, Candidate)]
        if not found:
            problems.append(_no_pool(index[model.name], model, options[model.name], {}))
            continue
        c = found[0]
        left[c.pool][c.resource] -= c.count * _replicas_at_max(model)
        placed[model.name] = _placement(model, c, pinned=True)

    def size(model: ModelSpec) -> float:
        """The memory of the smallest slice (or set of GPUs) that holds one replica."""
        fits = [c.device_gb for _, c in options[model.name] if isinstance(c, Candidate)]
        return min(fits, default=0.0)

    free = sorted((m for m in models if m.pool is None), key=lambda m: (-size(m), m.name))
    for model in free:
        short: dict[str, str] = {}
        chosen: Candidate | None = None
        for pool, c in options[model.name]:
            if isinstance(c, str):
                continue
            need = c.count * _replicas_at_max(model)
            have = left[pool.name][c.resource]
            if need <= have:
                chosen = c
                break
            short[pool.name] = (
                f"{max(have, 0)} x {c.resource} left at maxSize {pool.max_size}, "
                f"{need} needed for replicas.max"
            )
        if chosen is None:
            problems.append(_no_pool(index[model.name], model, options[model.name], short))
            continue
        left[chosen.pool][chosen.resource] -= chosen.count * _replicas_at_max(model)
        overflow = tuple(
            c.pool
            for _, c in options[model.name]
            if isinstance(c, Candidate)
            and c.pool != chosen.pool
            and (c.resource, c.count) == (chosen.resource, chosen.count)
        )
        placed[model.name] = _placement(model, chosen, pinned=False, overflow=overflow)
    if problems:
        raise PlacementError(sorted(problems))
    return {m.name: placed[m.name] for m in models}


def _placement(
    model: ModelSpec, c: Candidate, *, pinned: bool, overflow: tuple[str, ...] = ()
) -> ModelPlacement:
    return ModelPlacement(
        model.name, c.pool, c.profile, c.resource, c.count, c.usd_per_replica_hour, pinned, overflow
    )


def _no_pool(
    i: int,
    model: ModelSpec,
    options: list[tuple[GpuPoolSpec, Candidate | str]],
    short: dict[str, str],
) -> tuple[str, str]:
    reasons = [
        f"{pool.name} ({c if isinstance(c, str) else short.get(pool.name, 'not tried')})"
        for pool, c in options
    ]
    if model.pool is not None:
        path, verdict = f"models[{i}].pool", f"does not fit its pool {model.pool!r}"
    else:
        path, verdict = f"models[{i}]", "fits no GPU pool"
    return (
        path,
        f"{model.name!r} ({model.model}) {verdict}; tried: {'; '.join(reasons)}. Add a "
        "pool that holds it, raise maxSize, or shorten maxModelLen / quantize the model",
    )


def asg_name_pattern(pool: str) -> str:
    """A regular expression for the Auto Scaling group EKS creates for managed node group
    `pool`: `eks-<node group name>-<uuid>` (the priority expander matches group ids, which
    on AWS are Auto Scaling group names, never the node group's own name)."""
    uuid = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    return f"^eks-{pool}-{uuid}$"


def expander_priorities(pools: Sequence[GpuPoolSpec]) -> dict[int, list[str]]:
    """The priority expander's table: the GPU pools in `pool_order`, highest value first
    (pools with the same priority and slice price share a value), and `.*` for every other
    node group at the lowest value so that the system pool still grows."""
    table: dict[int, list[str]] = {CATCH_ALL_PRIORITY: [".*"]}
    keys: list[tuple[int, float]] = []
    for pool in pool_order(pools):
        key = (pool.priority, round(usd_per_compute_slice_hour(pool), 6))
        if key not in keys:
            keys.append(key)
    for pool in pools:
        key = (pool.priority, round(usd_per_compute_slice_hour(pool), 6))
        value = PRIORITY_STEP * (len(keys) - keys.index(key))
        table.setdefault(value, []).append(asg_name_pattern(pool.name))
    return {k: sorted(v) for k, v in sorted(table.items())}
