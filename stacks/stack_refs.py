"""Which stacks a stack reads through `pulumi.StackReference`, read from its stack file
before anything runs: the offline plan plans them first (`plan_order`), and
`stacks/ci.py` re-plans a stack when one it references changes (`dependents`).

Only the global stack references others (`swarmstack:global.regions[].stack`). A reference
name is `stack` or `organization/project/stack`; its last segment names the stack file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

PROJECT = "swarmstack"
GLOBAL_CONFIG_KEY = f"{PROJECT}:global"


class StackReferenceError(ValueError):
    """A reference names no stack file, or the references form a cycle."""


def referenced_stacks(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(config path, reference name) of every StackReference a stack's `swarmstack:` config
    (keys without the namespace) names."""
    block = raw.get("global")
    if not isinstance(block, dict):
        return []
    regions = cast(dict[str, Any], block).get("regions")
    if not isinstance(regions, list):
        return []
    found: list[tuple[str, str]] = []
    for i, region in enumerate(cast(list[Any], regions)):
        if isinstance(region, dict):
            name = cast(dict[str, Any], region).get("stack")
            if isinstance(name, str):
                found.append((f"global.regions[{i}].stack", name))
    return found


def target_stack(reference: str) -> str:
    """The stack a reference name points at: `org/swarmstack/scale-east` -> `scale-east`."""
    return reference.rsplit("/", 1)[-1]


def file_references(stack_file: Path) -> list[tuple[str, str]]:
    # Imported here: the workflows run stacks/ci.py with the runner's python3, which may
    # lack PyYAML (ci.py then falls back, see `changed_stacks`).
    import yaml  # noqa: PLC0415

    doc: dict[str, Any] = yaml.safe_load(stack_file.read_text()) or {}
    config = cast(dict[str, Any], doc.get("config") or {})
    return referenced_stacks({"global": config.get(GLOBAL_CONFIG_KEY)})


def _stack_file(config_dir: Path, stack: str) -> Path:
    return config_dir / f"Pulumi.{stack}.yaml"


def _known(config_dir: Path) -> str:
    names = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in config_dir.glob("Pulumi.*.yaml"))
    return ", ".join(names)


def plan_order(config_dir: Path, stack: str) -> list[str]:
    """`stack` and every stack it references, transitively, each after the stacks it
    references (dependency order, `stack` last). Raises StackReferenceError naming both
    stacks for a reference without a stack file, and the whole loop for a cycle."""
    order: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            loop = [*visiting[visiting.index(name) :], name]
            raise StackReferenceError(
                f"stack references form a cycle: {' -> '.join(loop)} "
                "(global.regions[].stack): a stack cannot read its own outputs, even "
                "through another stack"
            )
        visiting.append(name)
        source = _stack_file(config_dir, name)
        for path, reference in file_references(source):
            target = target_stack(reference)
            if not _stack_file(config_dir, target).is_file():
                raise StackReferenceError(
                    f"stack {name} references stack {reference!r} ({path} in "
                    f"stacks/{source.name}), which has no stack file "
                    f"stacks/Pulumi.{target}.yaml (stacks: {_known(config_dir)})"
                )
            visit(target)
        visiting.pop()
        order.append(name)

    visit(stack)
    return order


def dependents(config_dir: Path, stacks: Iterable[str], touched: Iterable[str]) -> set[str]:
    """The stacks that reference a touched stack, directly or through others."""
    refs = {
        s: {target_stack(r) for _, r in file_references(_stack_file(config_dir, s))} for s in stacks
    }
    found = set(touched)
    grew = True
    while grew:
        grew = False
        for stack, targets in refs.items():
            if stack not in found and targets & found:
                found.add(stack)
                grew = True
    return found - set(touched)
