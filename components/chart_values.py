"""Recorded Helm value keys: which keys of a pinned chart the stack sets, checked against
that chart's values.yaml, and what each does. Each chart module keeps its own table of
`ValueKey`s; the walk over rendered values is shared."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast


@dataclass(frozen=True)
class ValueKey:
    """One value key path of the chart: its shape and what the chart does with it."""

    # `map` and `list` keys are set as a whole: their entries are the caller's, not the chart's.
    kind: Literal["scalar", "list", "map"]
    meaning: str


def value_key_paths(
    values: Mapping[str, Any], recorded: Mapping[str, ValueKey], prefix: str = ""
) -> Iterator[str]:
    """Every dotted key path of Helm values, down to scalars, lists and recorded maps."""
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        known = recorded.get(path)
        nested = cast(Mapping[str, Any], value) if isinstance(value, Mapping) else None
        if nested is not None and (known is None or known.kind != "map"):
            yield from value_key_paths(nested, recorded, path)
        else:
            yield path


def unchecked_value_paths(values: Mapping[str, Any], recorded: Mapping[str, ValueKey]) -> list[str]:
    """Key paths of `values` that no recorded key covers."""
    return [p for p in value_key_paths(values, recorded) if p not in recorded]
