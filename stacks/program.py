"""The swarmstack Pulumi program: load and check the stack's config, then build the composition.

Every phase runs the same `stacks.composition.build`; the phase only changes what the
config accepts (stacks/config.py) and the policy levels (policies/pack.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime.config import get_config, is_config_secret

from components.gateway.keys import MIN_SEED_CHARS, salt_key_problems
from stacks import composition, global_composition
from stacks.config import (
    GATEWAY_AGENT_KEY_SEED,
    GATEWAY_SALT_KEY,
    HF_TOKEN_CONFIG_KEY,
    SECRET_KEYS,
    ConfigError,
    Phase,
    Problem,
    StackConfig,
    load,
    policy_config_problems,
    raw_from_pulumi_config,
    secret_purposes,
)
from stacks.global_config import is_global, load_global
from stacks.images import account_id, pin_images
from stacks.mode import Mode, current_mode
from stacks.placeholders import documentation_values

# The stack's `--policy-pack-config` file; production refuses one that lowers a level.
POLICY_CONFIG_DIR = Path(__file__).resolve().parent.parent / "policies" / "config"


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


def gateway_secret_problems(
    config: StackConfig, mode: Mode, read: Callable[[str], str | None] = get_config
) -> list[Problem]:
    """The gateway's secrets, checked before anything is declared: the salt key's format
    and its fingerprint against the one the stack file recorded (required for `pulumi up`,
    so after the first deploy the salt key can never change unnoticed), and the key seed's
    length. The offline plan has only placeholders, so it checks none of them."""
    gateway = config.gateway
    if gateway is None or mode == "plan":
        return []
    problems: list[Problem] = []
    salt = read(f"{pulumi.get_project()}:{GATEWAY_SALT_KEY}")
    if salt is not None:
        problems += [
            Problem(GATEWAY_SALT_KEY, message)
            for message in salt_key_problems(
                salt, gateway.salt_key_fingerprint, require_fingerprint=mode == "up"
            )
        ]
    seed = read(f"{pulumi.get_project()}:{GATEWAY_AGENT_KEY_SEED}")
    if seed is not None and len(seed) < MIN_SEED_CHARS:
        problems.append(
            Problem(
                GATEWAY_AGENT_KEY_SEED,
                f"has {len(seed)} characters: use at least {MIN_SEED_CHARS} "
                "(e.g. openssl rand -hex 32)",
            )
        )
    return problems


def _policy_file_problems(phase: Phase) -> list[Problem]:
    policy_file = POLICY_CONFIG_DIR / f"{pulumi.get_stack()}.json"
    if not policy_file.is_file():
        return []
    shown = f"policies/config/{policy_file.name}"
    return [
        Problem(f"{shown}: {p.path}", p.message)
        for p in policy_config_problems(phase, json.loads(policy_file.read_text()))
    ]


def main_global(raw: dict[str, Any], source: str) -> None:
    """A global stack (config `global`): the regions through StackReferences and what
    spans them; no cluster, no secrets."""
    try:
        config = load_global(raw, source)
        problems = _policy_file_problems(config.phase)
        if problems:
            raise ConfigError(problems, source)
    except ConfigError as exc:
        raise pulumi.RunError(str(exc)) from None
    global_composition.build_global(config)


def main() -> None:
    """Validate everything first; only a valid config declares resources.

    A real `pulumi up` also refuses the shipped documentation values; a preview and
    the offline plan warn about each instead (see stacks/mode.py)."""
    raw, region = raw_from_pulumi_config()
    source = f"stacks/Pulumi.{pulumi.get_stack()}.yaml"
    mode = current_mode()
    if is_global(raw):
        main_global(raw, source)
        return
    try:
        config = load(raw, region, source)
        hf_token = pulumi.Config().get_secret(HF_TOKEN_CONFIG_KEY)
        problems = _secret_problems(config) + _policy_file_problems(config.phase)
        if problems:
            raise ConfigError(problems, source)
        placeholders = documentation_values(config)
        if placeholders and mode == "up":
            raise ConfigError(
                placeholders, source, "`pulumi up` refuses documentation placeholders"
            )
        gateway_problems = gateway_secret_problems(config, mode)
        if gateway_problems and mode == "up":
            raise ConfigError(gateway_problems, source, "`pulumi up` refuses the gateway's secrets")
        if config.images.mirror is not None:
            # Digests are read before anything is declared: the preview shows what runs.
            config = pin_images(
                config,
                account=account_id(),
                region=region,
                stack=pulumi.get_stack(),
                source=source,
            )
    except ConfigError as exc:
        raise pulumi.RunError(str(exc)) from None
    for problem in [*placeholders, *gateway_problems]:
        pulumi.log.warn(f"{problem} (`pulumi up` refuses it)")
    composition.build(config, region, hf_token)
