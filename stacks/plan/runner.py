"""Run the project's real program offline, the way `pulumi preview` would feed it.

Reads Pulumi.yaml (project name, `main`, `stackConfigDir`) and the stack's
`Pulumi.<stack>.yaml` as the CLI does: structured values become JSON strings,
keys without a namespace belong to the project, and `secure:` values are
secrets. Encrypted values cannot be read without the stack's secrets provider,
so secrets get placeholders, which are marked secret and redacted everywhere.
A secret the stack file does not set gets one too, so a fresh checkout plans;
the plan warns that `pulumi up` would refuse it, and `--unset-secret` leaves it
out to show that refusal. The program runs marked as the offline plan
(stacks/mode.py), so documentation placeholders warn instead of failing.
"""

from __future__ import annotations

import json
import runpy
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stacks.config import PROJECT, REGION_KEY, SECRET_KEYS
from stacks.mode import offline_plan
from stacks.plan.recorder import Capture, PlannedOutputs, run

PLACEHOLDER_PREFIX = "plan-placeholder-secret-"


class PlanInputError(ValueError):
    """The project or stack file cannot be read."""


@dataclass
class ProgramInput:
    project: str
    main: Path
    stack: str
    stack_file: Path
    config: dict[str, str]
    secret_keys: list[str]
    region: str
    placeholders: dict[str, str] = field(default_factory=dict[str, str])
    # Secret keys (full, e.g. swarmstack:huggingFaceToken) the stack file does not set.
    not_in_stack_file: list[str] = field(default_factory=list[str])


def _config_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def read_program_input(root: Path, stack: str, unset: Iterable[str] = ()) -> ProgramInput:
    """The program's config as the CLI would pass it, a placeholder for every secret.

    A secret key in `unset` (e.g. `huggingFaceToken`) gets no value at all, as if
    nobody had set it, so the program's own refusal can be seen."""
    unset = tuple(unset)
    unknown = sorted(set(unset) - SECRET_KEYS)
    if unknown:
        valid = ", ".join(sorted(SECRET_KEYS))
        raise PlanInputError(
            f"--unset-secret {', '.join(unknown)}: not a secret config key (one of {valid})"
        )
    left_out = {f"{PROJECT}:{key}" for key in unset}
    project_file = root / "Pulumi.yaml"
    if not project_file.is_file():
        raise PlanInputError(f"{project_file} not found: run from the swarmstack checkout")
    project_doc: dict[str, Any] = yaml.safe_load(project_file.read_text()) or {}
    project = str(project_doc.get("name", ""))
    main = root / str(project_doc.get("main", "."))
    config_dir = root / str(project_doc.get("stackConfigDir", "."))
    stack_file = config_dir / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        known = sorted(
            p.name[len("Pulumi.") : -len(".yaml")] for p in config_dir.glob("Pulumi.*.yaml")
        )
        raise PlanInputError(
            f"no stack {stack!r}: {stack_file} not found (stacks: {', '.join(known)})"
        )
    doc: dict[str, Any] = yaml.safe_load(stack_file.read_text()) or {}
    raw_config: dict[str, Any] = doc.get("config") or {}
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    placeholders: dict[str, str] = {}
    for key, value in raw_config.items():
        full = key if ":" in key else f"{project}:{key}"
        if full in left_out:
            continue
        if isinstance(value, dict) and "secure" in value:
            placeholders[full] = f"{PLACEHOLDER_PREFIX}{full.replace(':', '-')}"
            config[full] = placeholders[full]
            secret_keys.append(full)
        else:
            config[full] = _config_value(value)
    not_in_stack_file: list[str] = []
    for key in sorted(SECRET_KEYS):
        full = f"{PROJECT}:{key}"
        if full not in config and full not in left_out:
            not_in_stack_file.append(full)
            placeholders[full] = f"{PLACEHOLDER_PREFIX}{full.replace(':', '-')}"
            config[full] = placeholders[full]
            secret_keys.append(full)
    return ProgramInput(
        project=project,
        main=main,
        stack=stack,
        stack_file=stack_file,
        config=config,
        secret_keys=secret_keys,
        region=config.get(REGION_KEY, "us-east-1"),
        placeholders=placeholders,
        not_in_stack_file=not_in_stack_file,
    )


def run_program(inp: ProgramInput, references: dict[str, PlannedOutputs] | None = None) -> Capture:
    """Execute the `main` Pulumi.yaml names on the mock runtime and record it; its
    StackReferences read `references` (stack name -> planned outputs)."""

    def program() -> None:
        runpy.run_path(str(inp.main), run_name="__main__")

    with offline_plan():  # what tells the program it is not a real `pulumi up`
        return run(
            program,
            project=inp.project,
            stack=inp.stack,
            config=inp.config,
            secret_keys=inp.secret_keys,
            region=inp.region,
            references=references,
        )
