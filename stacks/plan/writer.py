"""Write a plan under out/<stack>/, atomically: a failed plan leaves the old one in place."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from stacks.plan.model import Finding, Plan
from stacks.plan.recorder import Registration
from stacks.plan.summary import Summary


class SecretLeakError(RuntimeError):
    """A secret value was about to be written; nothing is written."""


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    # typeshed's yaml stubs leave represent_scalar's `value` parameter unannotated.
    return dumper.represent_scalar(  # pyright: ignore[reportUnknownMemberType]
        "tag:yaml.org,2002:str", value, style=style
    )


_Dumper.add_representer(str, _str)


def dump_yaml(doc: Any) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-")


def _files(plan: Plan, findings: list[Finding], summary: Summary) -> dict[str, str]:
    files: dict[str, str] = {}
    # Where each resource's inputs were written, by URN: `swarmstack diff` matches
    # resources across plans by URN, as the engine does, so a renamed object is a change
    # of its name (and a replacement), not one resource removed and another added.
    index: list[dict[str, Any]] = []
    for i, m in enumerate(plan.manifests, start=1):
        parts = [m.namespace or "cluster", m.kind, m.name or m.registration.name]
        name = f"manifests/{i:03d}-{'-'.join(_slug(p) for p in parts)}.yaml"
        files[name] = dump_yaml(m.document())
        index.append(_entry(m.registration, name))
    for release in plan.releases:
        name = f"helm/{_slug(release.name or release.registration.name)}.yaml"
        files[name] = dump_yaml(release.document())
        index.append(_entry(release.registration, name))
    files["aws-resources.yaml"] = dump_yaml(
        [{"type": r.type, "name": r.name, "inputs": r.inputs} for r in plan.aws]
    )
    index += [_entry(r, "aws-resources.yaml", item) for item, r in enumerate(plan.aws)]
    index.sort(key=lambda e: str(e["urn"]))
    files["index.json"] = json.dumps(index, indent=2) + "\n"
    files["tree.json"] = (
        json.dumps(
            [
                {
                    "urn": r.urn,
                    "type": r.type,
                    "name": r.name,
                    "parent": r.parent or None,
                    "provider": r.provider or None,
                    "dependencies": r.dependencies,
                    "component": r.is_component,
                }
                for r in sorted(plan.capture.registrations, key=lambda r: r.urn)
            ],
            indent=2,
        )
        + "\n"
    )
    files["outputs.json"] = json.dumps(plan.capture.outputs, indent=2, sort_keys=True) + "\n"
    files["checks.json"] = (
        json.dumps(
            [
                {
                    "severity": f.severity,
                    "check": f.check,
                    "resource": f.resource,
                    "message": f.message,
                }
                for f in findings
            ],
            indent=2,
        )
        + "\n"
    )
    files["summary.json"] = json.dumps(summary.as_dict(), indent=2) + "\n"
    files["summary.txt"] = summary.render()
    return files


def _entry(r: Registration, file: str, item: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"urn": r.urn, "type": r.type, "name": r.name, "file": file}
    if item is not None:
        entry["item"] = item
    return entry


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def describe_written(plan: Plan, files: list[str]) -> str:
    """Every top-level file and folder of a written plan, in the order written, with counts."""
    counts = {
        "manifests": _count(len(plan.manifests), "Kubernetes manifest"),
        "helm": _count(len(plan.releases), "Helm release"),
        "aws-resources.yaml": _count(len(plan.aws), "AWS resource"),
    }
    entries: list[str] = []
    for rel in files:
        top, _, rest = rel.partition("/")
        entry = f"{top}/" if rest else top
        if top in counts:
            entry += f" ({counts[top]})"
        if entry not in entries:
            entries.append(entry)
    return ", ".join(entries)


def write_plan(
    plan: Plan,
    findings: list[Finding],
    summary: Summary,
    destination: Path,
    *,
    forbidden: list[str],
    extra: dict[str, str] | None = None,
) -> list[str]:
    """Render every file, refuse any that holds a forbidden (secret) value, then swap in.

    Returns the written files, relative to `destination`, in the order written."""
    files = {**_files(plan, findings, summary), **(extra or {})}
    for path, text in files.items():
        for secret in forbidden:
            if secret and secret in text:
                raise SecretLeakError(f"{path} would contain a secret value; nothing was written")
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}-", dir=destination.parent))
    try:
        for rel, text in files.items():
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        old = None
        if destination.exists():
            old = destination.with_name(f".{destination.name}-old-{os.getpid()}")
            destination.rename(old)
        staging.rename(destination)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return list(files)
