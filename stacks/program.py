"""The swarmstack Pulumi program: load and check the stack's config, then build its phase."""

from __future__ import annotations

from collections.abc import Callable

import pulumi
from pulumi.runtime.config import get_config, is_config_secret

from stacks import pilot
from stacks.config import (
    HF_TOKEN_CONFIG_KEY,
    SECRET_KEYS,
    ConfigError,
    Problem,
    StackConfig,
    load,
    raw_from_pulumi_config,
    secret_purposes,
)
from stacks.mode import current_mode
from stacks.placeholders import documentation_values

Phase = Callable[[StackConfig, str, "pulumi.Output[str] | None"], None]
PHASES: dict[str, Phase] = {"pilot": pilot.build}


def _secret_problems(config: StackConfig) -> list[Problem]:
    problems: list[Problem] = []
    for key in sorted(SECRET_KEYS):
        full = f"{pulumi.get_project()}:{key}"
        if get_config(full) is not None and not is_config_secret(full):
            problems.append(
                Problem(key, f"is stored in clear: run `pulumi config set --secret {key} ...`")
            )
    for key, purpose in sorted(secret_purposes(config).items()):
        if get_config(f"{pulumi.get_project()}:{key}") is None:
            value = "<token>" if key == HF_TOKEN_CONFIG_KEY else "<value>"
            problems.append(
                Problem(
                    key,
                    f"not set, but {purpose}: run `pulumi config set --secret {key} {value}`",
                )
            )
    return problems


def main() -> None:
    """Validate everything first; only a valid config declares resources.

    A real `pulumi up` also refuses the shipped documentation values; a preview and
    the offline plan warn about each instead (see stacks/mode.py)."""
    raw, region = raw_from_pulumi_config()
    source = f"stacks/Pulumi.{pulumi.get_stack()}.yaml"
    mode = current_mode()
    try:
        config = load(raw, region, source)
        hf_token = pulumi.Config().get_secret(HF_TOKEN_CONFIG_KEY)
        problems = _secret_problems(config)
        if problems:
            raise ConfigError(problems, source)
        placeholders = documentation_values(config)
        if placeholders and mode == "up":
            raise ConfigError(
                placeholders, source, "`pulumi up` refuses documentation placeholders"
            )
    except ConfigError as exc:
        raise pulumi.RunError(str(exc)) from None
    for problem in placeholders:
        pulumi.log.warn(f"{problem} (`pulumi up` refuses it)")
    PHASES[config.phase](config, region, hf_token)
