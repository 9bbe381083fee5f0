"""Generated artefacts stay in step with the config models."""

from __future__ import annotations

import json
from pathlib import Path

from stacks.reference import README_PATH, SCHEMA_PATH, readme_with_reference, schema_text

ROOT = Path(__file__).resolve().parent.parent


def test_config_schema_is_current() -> None:
    assert (ROOT / SCHEMA_PATH).read_text() == schema_text(), "run `make generate`"


def test_readme_config_reference_is_current() -> None:
    readme = (ROOT / README_PATH).read_text()
    assert readme == readme_with_reference(readme, ROOT), "run `make generate`"


def test_reference_documents_every_key_with_a_description() -> None:
    readme = (ROOT / README_PATH).read_text()
    for key in ("gpuPools[].mig.profiles", "models[].slo.e2eP99S", "cluster.endpoint.privateOnly"):
        line = next(line for line in readme.splitlines() if line.startswith(f"| `{key}` |"))
        assert line.rstrip(" |").split("|")[-1].strip(), f"{key} has no description"


def test_schema_rejects_unknown_keys_at_every_level() -> None:
    schema = json.loads((ROOT / SCHEMA_PATH).read_text())
    for name, definition in schema["$defs"].items():
        if definition.get("type") == "object":
            assert definition.get("additionalProperties") is False, name
