"""RDS rules: encrypted, private, backed up, protected from deletion, TLS required."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws
import pytest

from policies.pack import phase_levels, rules_by_name
from stacks.plan.policy import evaluate
from stacks.plan.recorder import run
from tests.policy_support import messages, only

SECRET = "rds-s3cr3t-password"
KEY = "arn:aws:kms:us-east-1:111122223333:key/stack"


def _instance(**changes: Any) -> aws.rds.Instance:
    args: dict[str, Any] = {
        "identifier": "keys-db",
        "engine": "postgres",
        "engine_version": "17.9",
        "instance_class": "db.m7g.large",
        "allocated_storage": 20,
        "username": "litellm",
        "password": pulumi.Output.secret(SECRET),
        "storage_encrypted": True,
        "kms_key_id": KEY,
        "publicly_accessible": False,
        "backup_retention_period": 7,
        "deletion_protection": True,
        "parameter_group_name": "keys-params",
    }
    args.update(changes)
    return aws.rds.Instance("keys", **args)


def _params(force_ssl: str | None = "1") -> None:
    parameters = (
        []
        if force_ssl is None
        else [aws.rds.ParameterGroupParameterArgs(name="rds.force_ssl", value=force_ssl)]
    )
    aws.rds.ParameterGroup(
        "keys-params", name="keys-params", family="postgres17", parameters=parameters
    )


def _with_params(force_ssl: str | None = "1", **changes: Any) -> None:
    _params(force_ssl)
    _instance(**changes)


RULES = (
    "rds-storage-encrypted",
    "rds-not-publicly-accessible",
    "rds-backups-retained",
    "rds-deletion-protection",
    "rds-tls-required",
)


@pytest.mark.parametrize("rule", RULES)
def test_a_private_encrypted_protected_instance_passes(rule: str) -> None:
    assert messages(_with_params, rule) == []


@pytest.mark.parametrize(
    ("rule", "changes", "message"),
    [
        (
            "rds-storage-encrypted",
            {"storage_encrypted": False, "kms_key_id": None},
            "Instance keys: storageEncrypted is not true: its storage, backups and snapshots "
            "are unencrypted",
        ),
        (
            "rds-storage-encrypted",
            {"kms_key_id": None},
            "Instance keys: is encrypted with the account's AWS-managed key (kmsKeyId is "
            "unset), not the stack's customer-managed key",
        ),
        (
            "rds-not-publicly-accessible",
            {"publicly_accessible": True},
            "Instance keys: publiclyAccessible is true: its endpoint resolves to a public address",
        ),
        (
            "rds-backups-retained",
            {"backup_retention_period": 3},
            "Instance keys: keeps backups 3 day(s) (backupRetentionPeriod): at least 7 wanted",
        ),
        (
            "rds-backups-retained",
            {"backup_retention_period": None},
            "Instance keys: keeps backups unset, i.e. 1 day(s) (backupRetentionPeriod): at "
            "least 7 wanted",
        ),
        (
            "rds-deletion-protection",
            {"deletion_protection": False},
            "Instance keys: deletionProtection is not true: a `pulumi destroy` or a "
            "replacement deletes it",
        ),
    ],
    ids=["unencrypted", "aws-managed-key", "public", "3-days", "no-retention", "unprotected"],
)
def test_a_bad_instance_fails_naming_it(rule: str, changes: dict[str, Any], message: str) -> None:
    found = only(lambda: _with_params(**changes), rule)
    assert found.message == message
    assert found.resource.endswith("::keys")
    assert SECRET not in found.message


def test_the_backup_minimum_is_policy_config() -> None:
    program = lambda: _with_params(backup_retention_period=7)  # noqa: E731
    assert messages(
        program, "rds-backups-retained", {"rds-backups-retained": {"minRetentionDays": 14}}
    ) == ["Instance keys: keeps backups 7 day(s) (backupRetentionPeriod): at least 14 wanted"]


@pytest.mark.parametrize(
    ("force_ssl", "shown"), [("0", "'0'"), (None, "unset")], ids=["off", "unset"]
)
def test_a_parameter_group_without_force_ssl_fails(force_ssl: str | None, shown: str) -> None:
    found = only(lambda: _with_params(force_ssl), "rds-tls-required")
    assert found.message == (
        f"Instance keys: parameter group keys-params leaves rds.force_ssl {shown}: clients "
        "may connect without TLS"
    )


def test_the_default_group_requires_tls_from_postgres_15_only() -> None:
    assert messages(lambda: _instance(parameter_group_name=None), "rds-tls-required") == []
    assert messages(
        lambda: _instance(parameter_group_name=None, engine_version="14.20"), "rds-tls-required"
    ) == [
        "Instance keys: runs its engine's default parameter group, which does not require "
        "TLS before PostgreSQL 15: set rds.force_ssl=1 in one of the stack's"
    ]


def test_deletion_protection_is_advisory_in_the_pilot_and_mandatory_in_production() -> None:
    rule = rules_by_name()["rds-deletion-protection"]
    assert phase_levels("pilot", [rule]) == {"rds-deletion-protection": "advisory"}
    assert phase_levels("production", [rule]) == {"rds-deletion-protection": "mandatory"}
    found = evaluate(run(lambda: _with_params(deletion_protection=False)).registrations, {}, [rule])
    assert [(v.rule, v.level) for v in found] == [("rds-deletion-protection", "advisory")]
