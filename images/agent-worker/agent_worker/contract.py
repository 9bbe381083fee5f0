"""The metrics contract as METRICS.md writes it, read without the metrics library: the
stack's offline plan reads it (components/observe/catalogue.py) where only the Pulumi SDKs
are installed."""

from __future__ import annotations


def contract_from_markdown(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """The `## Families` table of METRICS.md: name -> (type, labels)."""
    rows: dict[str, tuple[str, frozenset[str]]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`agent_"):
            continue
        labels = frozenset(c.strip().strip("`") for c in cells[2].split(",") if c.strip())
        rows[cells[0].strip("`")] = (cells[1], labels)
    return rows
