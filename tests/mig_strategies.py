# pyright: strict
"""Hypothesis strategies for MIG layouts that only build layouts the GPU accepts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from hypothesis import strategies as st

from components.compute.mig import MIG_PROFILES, MigLayoutError, validate_layout

Strategy = Literal["single", "mixed"]
STRATEGIES: tuple[Strategy, ...] = ("single", "mixed")


@st.composite
def valid_layouts(
    draw: st.DrawFn, strategies: Sequence[Strategy] = STRATEGIES
) -> tuple[str, list[str], Strategy]:
    """A GPU model, a layout validate_layout accepts on it, and the strategy it was checked with.

    Candidates are added one at a time and kept only if the layout stays valid, so
    every draw is valid without filtering (no property passes on a rejected input) and
    layouts up to full GPUs are reached. The first candidate alone is always valid, so
    the layout is never empty unless validate_layout rejects a single profile.
    """
    gpu = draw(st.sampled_from(sorted(MIG_PROFILES)))
    strategy = draw(st.sampled_from(list(strategies)))
    names = sorted(MIG_PROFILES[gpu])
    candidates = draw(st.lists(st.sampled_from(names), min_size=3, max_size=14))
    layout: list[str] = []
    for name in candidates:
        try:
            validate_layout(gpu, [*layout, name], strategy)
        except MigLayoutError:
            continue
        layout.append(name)
    return gpu, layout, strategy
