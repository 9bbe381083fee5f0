"""Compare two plan folders written by `swarmstack plan` and render a pull-request comment.

Resources are matched by URN, as the engine matches them (the plan's `index.json`); a
plan written before the index existed is matched by type and object name instead, and the
comment says so. Values the plan redacted are never shown: a change that touches one reads
"changed (secret)". Everything is sorted, so the same two plans give the same comment.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from stacks.plan.model import as_dict, as_list
from stacks.plan.recorder import REDACTED
from stacks.plan.replacements import forced_by

# GitHub refuses comments over 65,536 characters; the rest is headroom for the marker and
# the note of what was cut.
COMMENT_LIMIT = 60_000
VALUE_WIDTH = 80
TEXT_DIFF_LINES = 12
MARKER = "<!-- swarmstack-plan-diff -->"

Action = Literal["add", "change", "replace", "remove"]
ACTION_ORDER: dict[str, int] = {"replace": 0, "change": 1, "add": 2, "remove": 3}
ACTION_SIGN = {"replace": "±", "change": "~", "add": "+", "remove": "-"}


class PlanFolderError(ValueError):
    """A folder that is not a plan `swarmstack plan` wrote."""


@dataclass(frozen=True)
class Resource:
    key: str  # URN, or type::identity for plans without an index
    type: str
    label: str
    props: dict[str, Any]


@dataclass
class PlanFolder:
    path: Path
    resources: dict[str, Resource]
    indexed: bool
    policy: list[dict[str, str]]
    summary: dict[str, Any]

    @property
    def stack(self) -> str | None:
        """The stack the plan's URNs name (None without an index)."""
        for key in self.resources:
            found = URN_STACK.match(key)
            if found is not None:
                return found.group(1)
        return None


# `urn:pulumi:<stack>::<project>::<type>::<name>`: the stack part.
URN_STACK = re.compile(r"^urn:pulumi:([^:]+)::")


def without_stack(urn: str) -> str:
    """A URN with its stack left out, so two stacks' resources match by what they are."""
    return URN_STACK.sub("urn:pulumi:::", urn, count=1)


def _across_stacks(plan: PlanFolder) -> PlanFolder:
    resources = {
        without_stack(k): Resource(without_stack(k), r.type, r.label, r.props)
        for k, r in plan.resources.items()
    }
    policy = [{**f, "resource": without_stack(f.get("resource", ""))} for f in plan.policy]
    return PlanFolder(plan.path, resources, plan.indexed, policy, plan.summary)


@dataclass(frozen=True)
class PropertyChange:
    path: str
    old: Any
    new: Any
    kind: Literal["added", "removed", "changed"]
    forces: str | None = None  # why it forces a replacement


@dataclass
class ResourceChange:
    action: Action
    type: str
    label: str
    changes: list[PropertyChange] = field(default_factory=list[PropertyChange])


@dataclass
class PlanDiff:
    resources: list[ResourceChange]
    findings_added: list[dict[str, str]]
    findings_resolved: list[dict[str, str]]
    base_summary: dict[str, Any]
    head_summary: dict[str, Any]
    notes: list[str]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(ACTION_ORDER, 0)
        for r in self.resources:
            out[r.action] += 1
        return out


# --- reading a plan folder ---------------------------------------------------------------


def _k8s_type(doc: dict[str, Any]) -> str:
    api = str(doc.get("apiVersion", ""))
    group_version = api if "/" in api else f"core/{api}"
    return f"kubernetes:{group_version}:{doc.get('kind', '')}"


def _k8s_label(doc: dict[str, Any]) -> str:
    meta = as_dict(doc.get("metadata"))
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{doc.get('kind', '')} {where}{meta.get('name', '<unnamed>')}"


def _helm_label(doc: dict[str, Any]) -> str:
    where = f"{doc['namespace']}/" if doc.get("namespace") else ""
    return f"Helm release {where}{doc.get('release', '')}"


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PlanFolderError(f"{path}: {exc}") from None


def _read_json(path: Path, default: Any) -> Any:
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PlanFolderError(f"{path}: {exc}") from None


def load_plan(folder: Path, *, by_urn: bool = True) -> PlanFolder:
    """Every resource of a plan folder with its inputs, its policy findings and summary."""
    if not (folder / "summary.json").is_file():
        raise PlanFolderError(
            f"{folder}: not a plan folder (no summary.json); `swarmstack plan <stack>` writes one"
        )
    index = as_list(_read_json(folder / "index.json", None))
    indexed = by_urn and (folder / "index.json").is_file()
    resources: dict[str, Resource] = {}
    aws = [as_dict(a) for a in as_list(_read_yaml(folder / "aws-resources.yaml"))]
    if indexed:
        docs: dict[str, Any] = {}
        for entry in map(as_dict, index):
            file = str(entry["file"])
            type_ = str(entry["type"])
            if file == "aws-resources.yaml":
                item = aws[int(entry["item"])]
                props, label = as_dict(item.get("inputs")), str(entry["name"])
            else:
                if file not in docs:
                    docs[file] = _read_yaml(folder / file)
                props = as_dict(docs[file])
                label = _helm_label(props) if file.startswith("helm/") else _k8s_label(props)
            urn = str(entry["urn"])
            resources[urn] = Resource(urn, type_, label, props)
    else:
        for path in sorted((folder / "manifests").glob("*.yaml")):
            doc = as_dict(_read_yaml(path))
            type_ = _k8s_type(doc)
            label = _k8s_label(doc)
            resources[f"{type_}::{label}"] = Resource(f"{type_}::{label}", type_, label, doc)
        for path in sorted((folder / "helm").glob("*.yaml")):
            doc = as_dict(_read_yaml(path))
            type_ = "kubernetes:helm.sh/v3:Release"
            label = _helm_label(doc)
            resources[f"{type_}::{label}"] = Resource(f"{type_}::{label}", type_, label, doc)
        for item in aws:
            type_, name = str(item.get("type")), str(item.get("name"))
            key = f"{type_}::{name}"
            resources[key] = Resource(key, type_, name, as_dict(item.get("inputs")))
    policy = [
        {str(k): str(v) for k, v in as_dict(v).items()}
        for v in as_list(_read_json(folder / "policy.json", []))
    ]
    summary = as_dict(_read_json(folder / "summary.json", {}))
    return PlanFolder(folder, resources, indexed, policy, summary)


# --- comparing -----------------------------------------------------------------------------


def _is_dict(value: object) -> bool:
    return isinstance(value, dict)


def _is_list(value: object) -> bool:
    return isinstance(value, list)


def is_secret(value: Any) -> bool:
    """Whether a value holds (or is) a redacted secret anywhere inside it."""
    if isinstance(value, str):
        return REDACTED in value
    if _is_dict(value):
        return any(is_secret(v) for v in as_dict(value).values())
    if _is_list(value):
        return any(is_secret(v) for v in as_list(value))
    return False


# Keys that name a list's items: containers, env and ports by `name`, Prometheus rules by
# `alert` or `record`; a list whose items all carry one (unique) is compared item by item.
ITEM_KEYS = ("name", "alert", "record")


def _named(items: list[Any]) -> dict[str, Any] | None:
    """A list of objects keyed by their `name` (or `alert`, `record`) if every one has one."""
    names: dict[str, Any] = {}
    for item in items:
        obj = as_dict(item)
        key = next((f"{k}={obj[k]}" for k in ITEM_KEYS if isinstance(obj.get(k), str)), None)
        if key is None or key in names:
            return None
        names[key] = item
    return names


def property_changes(old: Any, new: Any, path: str = "") -> list[PropertyChange]:
    """Every leaf-level difference between two input trees, in a stable order."""
    if old == new:
        return []
    if _is_dict(old) and _is_dict(new):
        a, b = as_dict(old), as_dict(new)
        out: list[PropertyChange] = []
        for key in sorted(set(a) | set(b)):
            sub = f"{path}.{key}" if path else str(key)
            if key not in a:
                out.append(PropertyChange(sub, None, b[key], "added"))
            elif key not in b:
                out.append(PropertyChange(sub, a[key], None, "removed"))
            else:
                out += property_changes(a[key], b[key], sub)
        return out
    if _is_list(old) and _is_list(new):
        a_list, b_list = as_list(old), as_list(new)
        a_named, b_named = _named(a_list), _named(b_list)
        if a_named is not None and b_named is not None and (a_named or b_named):
            out = []
            for name in sorted(set(a_named) | set(b_named)):
                sub = f"{path}[{name}]"
                if name not in a_named:
                    out.append(PropertyChange(sub, None, b_named[name], "added"))
                elif name not in b_named:
                    out.append(PropertyChange(sub, a_named[name], None, "removed"))
                else:
                    out += property_changes(a_named[name], b_named[name], sub)
            return out
        if len(a_list) == len(b_list) and all(isinstance(x, dict) for x in [*a_list, *b_list]):
            out = []
            for i, (x, y) in enumerate(zip(a_list, b_list, strict=True)):
                out += property_changes(x, y, f"{path}[{i}]")
            return out
    return [PropertyChange(path, old, new, "changed")]


def _with_forces(type_: str, changes: list[PropertyChange]) -> list[PropertyChange]:
    out: list[PropertyChange] = []
    for c in changes:
        entry = forced_by(type_, c.path)
        out.append(PropertyChange(c.path, c.old, c.new, c.kind, entry.why if entry else None))
    return out


def _finding_key(f: dict[str, str]) -> tuple[str, str, str, str]:
    return f.get("rule", ""), f.get("level", ""), f.get("message", ""), f.get("resource", "")


def diff_plans(base: PlanFolder, head: PlanFolder) -> PlanDiff:
    notes: list[str] = []
    if base.indexed != head.indexed:
        # Keys must agree: match both by type and name when either plan has no index.
        base = load_plan(base.path, by_urn=False)
        head = load_plan(head.path, by_urn=False)
    if base.indexed and base.stack != head.stack:
        notes.append(
            f"plans of two stacks are compared ({base.stack} -> {head.stack}): resources are "
            "matched by URN without the stack name, as if one stack became the other"
        )
        base, head = _across_stacks(base), _across_stacks(head)
    if not base.indexed:
        notes.append(
            "a plan without index.json (written by an older swarmstack) is compared: "
            "resources are matched by type and object name, so a rename shows as a removal "
            "and an addition"
        )
    changes: list[ResourceChange] = []
    for key in sorted(set(base.resources) | set(head.resources)):
        old, new = base.resources.get(key), head.resources.get(key)
        if old is None and new is not None:
            changes.append(ResourceChange("add", new.type, new.label))
        elif new is None and old is not None:
            changes.append(ResourceChange("remove", old.type, old.label))
        elif old is not None and new is not None:
            props = _with_forces(new.type, property_changes(old.props, new.props))
            if props:
                action: Action = "replace" if any(p.forces for p in props) else "change"
                label = new.label if new.label == old.label else f"{new.label} (was {old.label})"
                changes.append(ResourceChange(action, new.type, label, props))
    changes.sort(key=lambda c: (c.type, ACTION_ORDER[c.action], c.label))
    base_findings = {_finding_key(f): f for f in base.policy}
    head_findings = {_finding_key(f): f for f in head.policy}
    added = [head_findings[k] for k in sorted(set(head_findings) - set(base_findings))]
    resolved = [base_findings[k] for k in sorted(set(base_findings) - set(head_findings))]
    return PlanDiff(changes, added, resolved, base.summary, head.summary, notes)


# --- rendering -----------------------------------------------------------------------------


def shorten(text: str, width: int = VALUE_WIDTH) -> str:
    if len(text) <= width:
        return text
    return f"{text[:width]} …(+{len(text) - width})"


def _code(text: str) -> str:
    text = text.replace("\n", "⏎")
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def show(value: Any) -> str:
    """A value inline, one line, shortened; never a secret."""
    if is_secret(value):
        return "(secret)"
    return _code(shorten(_text(value)))


def show_pair(old: Any, new: Any) -> tuple[str, str]:
    """Two long values shortened around where they first differ, so the change shows."""
    a, b = _text(old), _text(new)
    if len(a) <= VALUE_WIDTH and len(b) <= VALUE_WIDTH:
        return show(old), show(new)
    first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), 0)
    start = max(0, first - VALUE_WIDTH // 4)

    def window(text: str) -> str:
        part = text[start : start + VALUE_WIDTH]
        head = f"…(+{start}) " if start else ""
        tail = f" …(+{len(text) - start - len(part)})" if start + len(part) < len(text) else ""
        return _code(f"{head}{part}{tail}")

    return window(a), window(b)


def _text_diff(old: str, new: str) -> list[str]:
    lines = [
        line
        for line in difflib.unified_diff(old.splitlines(), new.splitlines(), n=0, lineterm="")
        if not line.startswith(("---", "+++", "@@"))
    ]
    if len(lines) > TEXT_DIFF_LINES:
        more = len(lines) - TEXT_DIFF_LINES
        lines = [*lines[:TEXT_DIFF_LINES], f"… {more} more changed line{'s' * (more != 1)}"]
    return [shorten(line, 120) for line in lines]


def render_property(c: PropertyChange) -> list[str]:
    flag = f" **forces replacement** ({c.forces})" if c.forces else ""
    where = _code(c.path or "(whole resource)")
    if is_secret(c.old) or is_secret(c.new):
        verb = {"added": "added", "removed": "removed", "changed": "changed"}[c.kind]
        return [f"  - {where}: {verb} (secret){flag}"]
    if c.kind == "added":
        return [f"  - {where}: added {show(c.new)}{flag}"]
    if c.kind == "removed":
        return [f"  - {where}: removed (was {show(c.old)}){flag}"]
    if isinstance(c.old, str) and isinstance(c.new, str) and ("\n" in c.old or "\n" in c.new):
        out = [f"  - {where}: text changed{flag}", "    ```diff"]
        out += [f"    {line}" for line in _text_diff(c.old, c.new)]
        return [*out, "    ```"]
    before, after = show_pair(c.old, c.new)
    return [f"  - {where}: {before} → {after}{flag}"]


def render_resource(r: ResourceChange) -> list[str]:
    head = f"- {ACTION_SIGN[r.action]} **{r.action}** {_code(r.label)}"
    if r.action == "replace":
        fields = sorted({c.path for c in r.changes if c.forces})
        head += f" (replaced: {', '.join(_code(f) for f in fields)} cannot change in place)"
    lines = [head]
    for c in r.changes:
        lines += render_property(c)
    return lines


def _scale_row(
    label: str, path: tuple[str, ...], base: dict[str, Any], head: dict[str, Any]
) -> str:
    def get(summary: dict[str, Any], scale: str) -> float:
        value: Any = as_dict(summary.get(scale))
        for p in path:
            value = as_dict(value).get(p, 0) if _is_dict(value) else 0
        return float(value or 0)

    def fmt(v: float) -> str:
        return f"{v:,.2f}" if label.startswith("$") else f"{v:g}"

    cells: list[str] = []
    for scale in ("min", "max"):
        before, after = get(base, scale), get(head, scale)
        cell = f"{fmt(before)} → {fmt(after)}" if before != after else fmt(after)
        delta = after - before
        if delta:
            cell = f"**{cell}** ({'+' if delta > 0 else '-'}{fmt(abs(delta))})"
        cells.append(cell)
    return f"| {label} | {cells[0]} | {cells[1]} |"


def render_capacity(base: dict[str, Any], head: dict[str, Any]) -> list[str]:
    lines = [
        "### GPUs, MIG slices and cost",
        "",
        "| | min scale | max scale |",
        "|---|---|---|",
        _scale_row("nodes", ("nodes",), base, head),
        _scale_row("GPUs", ("gpus",), base, head),
    ]
    keys: set[str] = set()
    for summary in (base, head):
        for scale in ("min", "max"):
            keys |= set(as_dict(as_dict(summary.get(scale)).get("accelerators")))
    for key in sorted(keys):
        lines.append(_scale_row(key.removeprefix("nvidia.com/"), ("accelerators", key), base, head))
    lines.append(_scale_row("$/hour", ("usdPerHour",), base, head))
    prices = head.get("pricesCheckedOn") or base.get("pricesCheckedOn")
    if prices:
        lines += ["", f"On-demand us-east-1 list prices of {prices}; before → after."]
    return lines


def _finding_line(f: dict[str, str]) -> str:
    return f"- `{f.get('rule', '')}` ({f.get('level', '')}): {shorten(f.get('message', ''), 300)}"


def render_findings(diff: PlanDiff) -> list[str]:
    lines = ["### Policy findings", ""]
    if not diff.findings_added and not diff.findings_resolved:
        return [*lines, "No policy finding added or resolved."]
    if diff.findings_added:
        lines.append(f"Added ({len(diff.findings_added)}):")
        lines += [_finding_line(f) for f in diff.findings_added]
        lines.append("")
    if diff.findings_resolved:
        lines.append(f"Resolved ({len(diff.findings_resolved)}):")
        lines += [_finding_line(f) for f in diff.findings_resolved]
        lines.append("")
    return lines[:-1] if lines[-1] == "" else lines


def _cut_note(cut: int, types: set[str]) -> str:
    return (
        f"**{cut} more resource change{'s' * (cut != 1)} not shown** (the comment is kept under "
        f"GitHub's 65,536-character limit), of: {', '.join(_code(t) for t in sorted(types))}. "
        "The full diff is in the workflow's artifact, or run `swarmstack diff` locally."
    )


def render_markdown(
    diff: PlanDiff, *, title: str, base_label: str, head_label: str, limit: int = COMMENT_LIMIT
) -> str:
    """The comment: a headline, capacity and cost, policy findings, then resources by type
    until `limit` characters, with a note of what was left out."""
    counts = diff.counts()
    lines = [MARKER, f"## {title}", ""]
    lines.append(f"{_code(base_label)} → {_code(head_label)}")
    lines.append("")
    if not diff.resources:
        lines.append("**No resource changes.**")
    else:
        parts = [
            f"{counts['add']} to add",
            f"{counts['change']} to change",
            f"{counts['replace']} to replace",
            f"{counts['remove']} to remove",
        ]
        lines.append(f"**{', '.join(parts)}.**")
    if counts["replace"]:
        lines += [
            "",
            f"> [!WARNING]\n> {counts['replace']} resource"
            f"{'s are' if counts['replace'] != 1 else ' is'} replaced (deleted and created "
            "again): check for data loss and downtime.",
        ]
    lines += ["", *render_capacity(diff.base_summary, diff.head_summary), ""]
    lines += [*render_findings(diff), ""]
    footer = [
        "",
        "---",
        "Offline plans (`swarmstack plan`), no cloud account involved. Secret values are "
        "redacted in plans and never compared.",
        *[f"Note: {n}." for n in diff.notes],
    ]
    if not diff.resources:
        return "\n".join([*lines, *footer]) + "\n"
    lines += ["### Resources", ""]
    by_type: dict[str, list[ResourceChange]] = {}
    for r in diff.resources:
        by_type.setdefault(r.type, []).append(r)
    worst_note = _cut_note(len(diff.resources), set(by_type))
    budget = limit - len("\n".join([*lines, *footer])) - len(worst_note) - 4
    body: list[str] = []
    shown = 0
    cut_types: set[str] = set()
    for type_, items in by_type.items():
        tally = ", ".join(
            f"{sum(1 for r in items if r.action == a)} {a}"
            for a in ACTION_ORDER
            if any(r.action == a for r in items)
        )
        block = [f"#### {_code(type_)} ({tally})", ""]
        for r in items:
            entry = render_resource(r)
            size = len("\n".join([*body, *block, *entry])) + 1
            if size > budget:
                cut_types.add(type_)
                continue
            block += entry
            shown += 1
        if len(block) > 2:
            body += [*block, ""]
    lines += body
    cut = len(diff.resources) - shown
    if cut:
        lines.append(_cut_note(cut, cut_types))
    return "\n".join([*lines, *footer]).rstrip("\n") + "\n"
