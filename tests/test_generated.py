"""Generated artefacts stay in step with the config models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stacks.global_config import GlobalStackConfig
from stacks.reference import (
    END,
    README_PATH,
    SCHEMA_PATH,
    START,
    readme_with_reference,
    schema_text,
)

ROOT = Path(__file__).resolve().parent.parent


def test_config_schema_is_current() -> None:
    assert (ROOT / SCHEMA_PATH).read_text() == schema_text(), "run `make generate`"


def test_readme_config_reference_is_current() -> None:
    readme = (ROOT / README_PATH).read_text()
    assert readme == readme_with_reference(readme, ROOT), "run `make generate`"


def schema_keys(schema: dict[str, Any]) -> list[str]:
    """Every key the JSON schema allows, at every level, spelled the way the reference
    spells it: `a.b` for a nested object, `a[].b` for list items, `a(s3).b` for the
    variant of a discriminated union whose `source` is `s3`.

    Read from the schema itself, not from the generator, so a key the generator skips is
    still expected. A schema shape this walk does not know fails instead of being skipped.
    """
    defs: dict[str, Any] = schema.get("$defs", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = defs[node["$ref"].removeprefix("#/$defs/")]
        return node

    def value(node: dict[str, Any], path: str) -> list[str]:
        node = resolve(node)
        if "discriminator" in node:
            mapping: dict[str, str] = node["discriminator"]["mapping"]
            return [
                k
                for label, ref in mapping.items()
                for k in obj(resolve({"$ref": ref}), f"{path}({label})")
            ]
        if "anyOf" in node or "oneOf" in node:
            options = [resolve(o) for o in node.get("anyOf", node.get("oneOf", []))]
            objects = [o for o in options if "properties" in o]
            assert len(objects) <= 1, f"{path}: a union of objects without a discriminator"
            return [k for o in objects for k in obj(o, path)]
        if node.get("type") == "array":
            return value(node["items"], f"{path}[]")
        if "properties" in node:
            return obj(node, path)
        extra = node.get("additionalProperties")
        assert not isinstance(extra, dict) or "properties" not in resolve(extra), (
            f"{path}: a map of objects; teach this test (and the reference) its key syntax"
        )
        return []

    def obj(node: dict[str, Any], prefix: str) -> list[str]:
        keys: list[str] = []
        for name, sub in node["properties"].items():
            path = f"{prefix}.{name}" if prefix else name
            keys += [path, *value(sub, path)]
        return keys

    return obj(schema, "")


def reference_rows() -> dict[str, str]:
    """The generated config reference of the README: key -> its table row."""
    readme = (ROOT / README_PATH).read_text()
    section = readme[readme.index(START) : readme.index(END)]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {row.split("`", 2)[1]: row for row in rows}


def test_reference_documents_every_schema_key_with_a_description() -> None:
    keys = schema_keys(json.loads((ROOT / SCHEMA_PATH).read_text()))
    # The global stack's keys (stacks/global_config.py) share the table's key syntax.
    keys += schema_keys(GlobalStackConfig.model_json_schema(by_alias=True))
    assert len(keys) > 50 and "models[].weights(s3).uri" in keys  # the walk reaches the leaves
    rows = reference_rows()
    missing = [k for k in keys if k not in rows]
    assert not missing, f"config keys missing from the README reference: {missing}"
    stale = sorted(set(rows) - set(keys))
    assert not stale, f"README reference rows for keys the schema does not have: {stale}"
    undocumented = [k for k in keys if not rows[k].rstrip(" |").split("|")[-1].strip()]
    assert not undocumented, f"keys without a description: {undocumented}"


def test_schema_rejects_unknown_keys_at_every_level() -> None:
    schema = json.loads((ROOT / SCHEMA_PATH).read_text())
    for name, definition in schema["$defs"].items():
        if definition.get("type") == "object":
            assert definition.get("additionalProperties") is False, name
