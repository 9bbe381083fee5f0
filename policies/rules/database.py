"""Relational databases AWS runs: RDS instances (the gateway's Postgres in production).

A field that is absent means what RDS does without it: an instance without
`storageEncrypted` is not encrypted, without `backupRetentionPeriod` keeps one day of
backups, without `deletionProtection` can be deleted by any `destroy`, and without a
parameter group of its own runs its engine's default group.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs, StackValidationArgs

from policies.framework import Rule, as_dict, as_list, reporter, stack_reporter

RDS_INSTANCE = "aws:rds/instance:Instance"
RDS_PARAMETER_GROUP = "aws:rds/parameterGroup:ParameterGroup"
RDS_DEFAULT_BACKUP_DAYS = 1  # what CreateDBInstance keeps without backupRetentionPeriod
# RDS for PostgreSQL's default parameter groups require TLS (rds.force_ssl=1) from 15 on.
FORCE_SSL_DEFAULT_FROM = 15


def _is_true(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _encrypted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != RDS_INSTANCE:
        return
    say = reporter(args.resource_type, args.props, args.name, report)
    if not _is_true(args.props.get("storageEncrypted")):
        say("storageEncrypted is not true: its storage, backups and snapshots are unencrypted")
    elif not args.props.get("kmsKeyId"):
        say("is encrypted with the account's AWS-managed key (kmsKeyId is unset), not the "
            "stack's customer-managed key")  # fmt: skip


def _private(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != RDS_INSTANCE:
        return
    if _is_true(args.props.get("publiclyAccessible")):
        reporter(args.resource_type, args.props, args.name, report)(
            "publiclyAccessible is true: its endpoint resolves to a public address"
        )


def _backups(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != RDS_INSTANCE:
        return
    minimum = int(args.get_config()["minRetentionDays"])
    value = args.props.get("backupRetentionPeriod")
    days = RDS_DEFAULT_BACKUP_DAYS if value is None else int(value)
    if days < minimum:
        shown = "unset, i.e. 1" if value is None else str(days)
        reporter(args.resource_type, args.props, args.name, report)(
            f"keeps backups {shown} day(s) (backupRetentionPeriod): at least {minimum} wanted"
        )


def _deletion_protection(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != RDS_INSTANCE:
        return
    if not _is_true(args.props.get("deletionProtection")):
        reporter(args.resource_type, args.props, args.name, report)(
            "deletionProtection is not true: a `pulumi destroy` or a replacement deletes it"
        )


def _force_ssl(parameters: object) -> str | None:
    for item in as_list(parameters):
        parameter = as_dict(item)
        if parameter.get("name") == "rds.force_ssl":
            return str(parameter.get("value"))
    return None


def _major(version: object) -> int | None:
    head = str(version or "").split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _tls_required(args: StackValidationArgs, report: ReportViolation) -> None:
    groups: dict[str, Mapping[str, Any]] = {
        str(r.props.get("name")): r.props
        for r in args.resources
        if r.resource_type == RDS_PARAMETER_GROUP and r.props.get("name")
    }
    for r in args.resources:
        if r.resource_type != RDS_INSTANCE or r.props.get("engine") != "postgres":
            continue
        say = stack_reporter(r, report)
        group = r.props.get("parameterGroupName")
        if group is None:
            major = _major(r.props.get("engineVersion"))
            if major is None or major < FORCE_SSL_DEFAULT_FROM:
                say(
                    "runs its engine's default parameter group, which does not require TLS "
                    f"before PostgreSQL {FORCE_SSL_DEFAULT_FROM}: set rds.force_ssl=1 in one "
                    "of the stack's"
                )
            continue
        props = groups.get(str(group))
        if props is None:
            continue  # a group the stack does not declare: nothing to read
        value = _force_ssl(props.get("parameters"))
        if value != "1":
            shown = "unset" if value is None else repr(value)
            say(
                f"parameter group {group} leaves rds.force_ssl {shown}: clients may connect "
                "without TLS"
            )


RULES: list[Rule] = [
    Rule(
        "rds-storage-encrypted",
        "data",
        "RDS instances encrypt their storage, backups and snapshots with a customer-managed "
        "KMS key.",
        "Set storageEncrypted: true and kmsKeyId to the stack's KMS key.",
        check=_encrypted,
    ),
    Rule(
        "rds-not-publicly-accessible",
        "data",
        "RDS instances have no public endpoint: they sit in private subnets and are reached "
        "from inside the VPC only.",
        "Set publiclyAccessible: false and a DB subnet group of private subnets.",
        check=_private,
    ),
    Rule(
        "rds-backups-retained",
        "data",
        "RDS instances keep automated backups (point-in-time restore) for at least "
        "minRetentionDays days.",
        "Set backupRetentionPeriod to minRetentionDays (default 7) or more.",
        check=_backups,
        config={
            "minRetentionDays": {
                "type": "integer",
                "default": 7,
                "minimum": 1,
                "maximum": 35,
                "description": "Fewest days of automated backups an RDS instance keeps.",
            }
        },
    ),
    Rule(
        "rds-deletion-protection",
        "data",
        "RDS instances are protected from deletion (advisory in the pilot, where a database "
        "may be thrown away; mandatory in production).",
        "Set deletionProtection: true (turn it off in a reviewed change before a destroy).",
        level="advisory",
        check=_deletion_protection,
    ),
    Rule(
        "rds-tls-required",
        "data",
        "RDS for PostgreSQL instances refuse connections without TLS: the stack's parameter "
        "group they use sets rds.force_ssl=1 (the default groups do so from PostgreSQL 15 on).",
        "Declare a parameter group with rds.force_ssl=1 and set the instance's "
        "parameterGroupName to it.",
        check_stack=_tls_required,
    ),
]
