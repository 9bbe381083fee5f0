"""The swarmstack Pulumi program: load and check the stack's config, then build its phase."""

from __future__ import annotations

from collections.abc import Callable

import pulumi
from pulumi.runtime.config import get_config, is_config_secret

from stacks import pilot
from stacks.config import (
    SECRET_KEYS,
    ConfigError,
    Problem,
    StackConfig,
    load,
    raw_from_pulumi_config,
)

Phase = Callable[[StackConfig, str, "pulumi.Output[str] | None"], None]
PHASES: dict[str, Phase] = {"pilot": pilot.build}


def _secret_problems(config: StackConfig, hf_token_set: bool) -> list[Problem]:
    problems: list[Problem] = []
    for key in sorted(SECRET_KEYS):
        full = f"{pulumi.get_project()}:{key}"
        if get_config(full) is not None and not is_config_secret(full):
            problems.append(
                Problem(key, f"is stored in clear: run `pulumi config set --secret {key} ...`")
            )
    hub_models = [m for m in config.models if m.weights.source == "huggingface"]
    if hub_models and not hf_token_set:
        problems.append(
            Problem(
                "huggingFaceToken",
                f"not set, but {hub_models[0].model} downloads from the Hugging Face Hub: "
                "run `pulumi config set --secret huggingFaceToken <token>`",
            )
        )
    return problems


def main() -> None:
    """Validate everything first; only a valid config declares resources."""
    raw, region = raw_from_pulumi_config()
    source = f"stacks/Pulumi.{pulumi.get_stack()}.yaml"
    try:
        config = load(raw, region, source)
        hf_token = pulumi.Config().get_secret("huggingFaceToken")
        problems = _secret_problems(config, hf_token is not None)
        if problems:
            raise ConfigError(problems, source)
    except ConfigError as exc:
        raise pulumi.RunError(str(exc)) from None
    PHASES[config.phase](config, region, hf_token)
