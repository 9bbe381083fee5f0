"""GPU catalogue and NVIDIA MIG layout rules: plain data and pure functions.

Every MIG-capable GPU has 7 compute slices and 8 memory slices. A GPU instance
of a profile takes a fixed number of each and may only start at fixed
positions, so a layout is valid when (a) every profile exists on that GPU,
(b) no profile appears more often than NVIDIA allows on one GPU, (c) the
compute and memory slices add up to at most 7 and 8, and (d) the instances
can actually be placed side by side on the GPU's slice positions.

The tables were checked (2026-12-01) against two sources, and agree with both:

- NVIDIA's MIG user guide (r580), "Supported MIG Profiles": the profile tables of
  A100 (40GB; 80GB by the memory proportion), H100 80GB, H200 141GB and B200 180GB
  (name, fraction of memory and of SMs, instances available), and the placements
  `nvidia-smi mig -lgipp` lists: {0..6}:1 for 1g, {0,2,4,6}:2 for 1g with two memory
  slices, {0,2,4}:2 for 2g, {0,4}:4 for 3g, {0}:4 for 4g, {0}:8 for 7g. The guide's
  A100-40GB table gives 1g.10gb a 1/8 memory fraction; its name (10 of 40 GB), its
  placements (two slices) and the MIG manager's default configuration (4 per GPU)
  all say 2/8, which is what the table here holds.
- The GPU operator's MIG manager default configuration (`default-mig-parted-config`
  in the operator's assets at chart v26.7.0): an `all-<profile>` configuration per
  profile with the maximum count per GPU (for 1g.10gb per device id: 4 on
  A100-40GB, 7 on A100-80GB and H100-80GB), and B200's `all-balanced` layout
  2 x 1g.23gb + 2g.45gb + 3g.90gb.

`+me` profiles are 1g instances that also get the media engines; one per GPU.
The device plugin advertises a profile's resource with `+` written `.`
(`nvidia.com/mig-1g.10gb.me`), as Kubernetes resource names allow no `+`.
L4, L40S and A10G have no MIG.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

COMPUTE_SLICES = 7
MEMORY_SLICES = 8
# A MIG slice holds a little less than its name says (a "10gb" slice: ~9.75 GB).
USABLE_FRACTION_OF_NAMED_MEMORY = 0.975

GpuModel = Literal[
    "A100-40GB",
    "A100-80GB",
    "H100-80GB",
    "H200-141GB",
    "B200-180GB",
    "A10G-24GB",
    "L4-24GB",
    "L40S-48GB",
]


@dataclass(frozen=True)
class MigProfile:
    """One GPU-instance profile: its name, slices and how many fit on one GPU."""

    name: str
    compute_slices: int
    memory_slices: int
    max_per_gpu: int
    memory_gb: float

    @property
    def usable_memory_gb(self) -> float:
        return round(self.memory_gb * USABLE_FRACTION_OF_NAMED_MEMORY, 3)

    def placements(self) -> tuple[int, ...]:
        """Slice indices at which an instance of this profile may start."""
        if self.compute_slices == COMPUTE_SLICES:
            return (0,)
        if self.compute_slices == 4:
            return (0,)
        if self.compute_slices == 3:
            return (0, 4)
        if self.compute_slices == 2:
            return (0, 2, 4)
        if self.memory_slices == 2:  # 1g with twice the memory
            return (0, 2, 4, 6)
        return tuple(range(COMPUTE_SLICES))


def _profiles(gb_small: int, gb_1g2: int, gb_3g: int, gb_full: int) -> dict[str, MigProfile]:
    """The seven profiles every A100/H100/H200/B200 offers, named by their memory."""
    rows = [
        (f"1g.{gb_small}gb", 1, 1, 7, gb_small),
        (f"1g.{gb_small}gb+me", 1, 1, 1, gb_small),
        (f"1g.{gb_1g2}gb", 1, 2, 4, gb_1g2),
        (f"2g.{gb_1g2}gb", 2, 2, 3, gb_1g2),
        (f"3g.{gb_3g}gb", 3, 4, 2, gb_3g),
        (f"4g.{gb_3g}gb", 4, 4, 1, gb_3g),
        (f"7g.{gb_full}gb", 7, 8, 1, gb_full),
    ]
    return {name: MigProfile(name, c, m, mx, float(gb)) for name, c, m, mx, gb in rows}


MIG_PROFILES: dict[str, dict[str, MigProfile]] = {
    "A100-40GB": _profiles(5, 10, 20, 40),
    "A100-80GB": _profiles(10, 20, 40, 80),
    "H100-80GB": _profiles(10, 20, 40, 80),
    "H200-141GB": _profiles(18, 35, 71, 141),
    "B200-180GB": _profiles(23, 45, 90, 180),
}


@dataclass(frozen=True)
class GpuSpec:
    model: GpuModel
    memory_gb: float

    @property
    def mig_capable(self) -> bool:
        return self.model in MIG_PROFILES

    @property
    def usable_memory_gb(self) -> float:
        return round(self.memory_gb * USABLE_FRACTION_OF_NAMED_MEMORY, 3)


GPUS: dict[str, GpuSpec] = {
    "A100-40GB": GpuSpec("A100-40GB", 40),
    "A100-80GB": GpuSpec("A100-80GB", 80),
    "H100-80GB": GpuSpec("H100-80GB", 80),
    "H200-141GB": GpuSpec("H200-141GB", 141),
    "B200-180GB": GpuSpec("B200-180GB", 180),
    "A10G-24GB": GpuSpec("A10G-24GB", 24),
    "L4-24GB": GpuSpec("L4-24GB", 24),
    "L40S-48GB": GpuSpec("L40S-48GB", 48),
}


class MigLayoutError(ValueError):
    """A MIG layout that a GPU cannot hold. `index` points at the offending entry."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


def profile_for(gpu: str, name: str) -> MigProfile:
    """Look up a profile of a GPU model, with an error listing the valid ones."""
    table = MIG_PROFILES.get(gpu)
    if table is None:
        raise MigLayoutError(f"{gpu} does not support MIG (MIG GPUs: {', '.join(MIG_PROFILES)})")
    if name not in table:
        raise MigLayoutError(f"{name!r} is not a MIG profile of {gpu} (one of {', '.join(table)})")
    return table[name]


def place_instances(profiles: Sequence[MigProfile]) -> list[int] | None:
    """Find a start slice for each instance so none overlap; None when impossible."""
    order = sorted(range(len(profiles)), key=lambda i: -profiles[i].memory_slices)
    compute_used = [False] * COMPUTE_SLICES
    memory_used = [False] * MEMORY_SLICES
    starts = [0] * len(profiles)

    def fits(p: MigProfile, start: int) -> bool:
        compute = range(start, start + p.compute_slices)
        memory = range(start, start + p.memory_slices)
        return (
            compute.stop <= COMPUTE_SLICES
            and memory.stop <= MEMORY_SLICES
            and not any(compute_used[i] for i in compute)
            and not any(memory_used[i] for i in memory)
        )

    def mark(p: MigProfile, start: int, used: bool) -> None:
        for i in range(start, start + p.compute_slices):
            compute_used[i] = used
        for i in range(start, start + p.memory_slices):
            memory_used[i] = used

    def search(k: int) -> bool:
        if k == len(order):
            return True
        p = profiles[order[k]]
        for start in p.placements():
            if fits(p, start):
                mark(p, start, True)
                starts[order[k]] = start
                if search(k + 1):
                    return True
                mark(p, start, False)
        return False

    return starts if search(0) else None


def validate_layout(
    gpu: str, names: Sequence[str], strategy: Literal["single", "mixed"]
) -> list[MigProfile]:
    """Check one GPU's MIG layout; return its profiles or raise MigLayoutError."""
    if not names:
        raise MigLayoutError("a MIG layout needs at least one profile")
    profiles = [profile_for_at(gpu, name, i) for i, name in enumerate(names)]
    if strategy == "single":
        for i, name in enumerate(names):
            if name != names[0]:
                raise MigLayoutError(
                    f"{name!r} differs from {names[0]!r}: the 'single' MIG strategy "
                    "allows one profile per node (use 'mixed' for several)",
                    i,
                )
    for name, count in Counter(names).items():
        limit = MIG_PROFILES[gpu][name].max_per_gpu
        if count > limit:
            last = max(i for i, n in enumerate(names) if n == name)
            raise MigLayoutError(
                f"{count} x {name} exceeds that profile's maximum of {limit} per {gpu}", last
            )
    compute = sum(p.compute_slices for p in profiles)
    memory = sum(p.memory_slices for p in profiles)
    if compute > COMPUTE_SLICES or memory > MEMORY_SLICES:
        raise MigLayoutError(
            f"layout {list(names)} needs {compute} compute and {memory} memory slices; "
            f"a {gpu} has {COMPUTE_SLICES} compute and {MEMORY_SLICES} memory slices"
        )
    if place_instances(profiles) is None:
        raise MigLayoutError(
            f"layout {list(names)} fits the slice budget but cannot be placed: "
            f"{gpu} instances start only at fixed slice positions"
        )
    return profiles


def profile_for_at(gpu: str, name: str, index: int) -> MigProfile:
    try:
        return profile_for(gpu, name)
    except MigLayoutError as exc:
        raise MigLayoutError(str(exc), index) from None


def mig_resource_name(profile: str, strategy: Literal["single", "mixed"]) -> str:
    """The extended resource the NVIDIA device plugin advertises for a MIG slice.

    `mixed` names each profile, with `+` written `.` (`1g.10gb+me` -> `mig-1g.10gb.me`).
    """
    if strategy == "single":
        return "nvidia.com/gpu"
    return f"nvidia.com/mig-{profile.replace('+', '.')}"
