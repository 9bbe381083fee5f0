"""Kafka keeps acknowledged writes: replicated three times, two in sync before acks=all
succeeds, no unclean leader election, no topics auto-created with broker defaults.

Read from what the stack declares: a Strimzi `Kafka`'s `spec.kafka.config`, each
`KafkaTopic`'s replicas and config, an `aws.msk.Configuration`'s server properties and an
`aws.msk.Cluster`'s broker count. A setting left out means the broker's default: Apache
Kafka creates topics on first use (`auto.create.topics.enable=true`) and takes
`min.insync.replicas=1`; MSK's defaults for a three-AZ cluster are
`default.replication.factor=3`, `min.insync.replicas=2`, `auto.create.topics.enable=false`
and `unclean.leader.election.enable=false`. A KafkaTopic without `replicas` takes the
broker's `default.replication.factor`, checked on the Kafka resource.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs

from policies.framework import Rule, as_dict, k8s_kind, reporter

MSK_CLUSTER = "aws:msk/cluster:Cluster"
MSK_CONFIGURATION = "aws:msk/configuration:Configuration"
STRIMZI_GROUP = "kubernetes:kafka.strimzi.io/"

APACHE_DEFAULTS: dict[str, str] = {
    "auto.create.topics.enable": "true",
    "unclean.leader.election.enable": "false",
    "min.insync.replicas": "1",
    "default.replication.factor": "1",
    "offsets.topic.replication.factor": "3",
}
MSK_DEFAULTS: dict[str, str] = {
    "auto.create.topics.enable": "false",
    "unclean.leader.election.enable": "false",
    "min.insync.replicas": "2",
    "default.replication.factor": "3",
    "offsets.topic.replication.factor": "3",
}


def _text(value: object) -> str:
    """A config value as Kafka reads it: booleans lower-case, whole floats as ints."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _number(value: str) -> int | None:
    try:
        return int(float(value))
    except ValueError:
        return None


def parse_properties(text: str) -> dict[str, str]:
    """A Java properties file's `key=value` lines (comments and blanks skipped)."""
    props: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        if sep:
            props[key.strip()] = value.strip()
    return props


def _check_broker(
    settings: Mapping[str, str], config: Mapping[str, Any], say: Callable[[str], None]
) -> None:
    min_rf, min_isr = int(config["minReplicationFactor"]), int(config["minInsyncReplicas"])
    for key in ("default.replication.factor", "offsets.topic.replication.factor"):
        rf = _number(settings[key])
        if rf is None or rf < min_rf:
            say(f"{key} is {settings[key]}: fewer than {min_rf} copies of every write")
    isr = _number(settings["min.insync.replicas"])
    if isr is None or isr < min_isr:
        say(
            f"min.insync.replicas is {settings['min.insync.replicas']}: acks=all succeeds with "
            f"fewer than {min_isr} replicas holding the write"
        )
    if settings["unclean.leader.election.enable"].lower() != "false":
        say("unclean.leader.election.enable is not false: an out-of-sync replica may lead")
    if settings["auto.create.topics.enable"].lower() != "false":
        say(
            f"auto.create.topics.enable is {settings['auto.create.topics.enable']}: a typo in a "
            "topic name creates a topic with broker defaults"
        )


def _effective(declared: Mapping[str, Any], defaults: Mapping[str, str]) -> dict[str, str]:
    return {**defaults, **{str(k): _text(v) for k, v in declared.items() if v is not None}}


def _strimzi_kafka(args: ResourceValidationArgs, say: Callable[[str], None]) -> None:
    kafka = as_dict(as_dict(args.props.get("spec")).get("kafka"))
    settings = _effective(as_dict(kafka.get("config")), APACHE_DEFAULTS)
    _check_broker(settings, args.get_config(), say)


def _strimzi_topic(args: ResourceValidationArgs, say: Callable[[str], None]) -> None:
    config = args.get_config()
    min_rf, min_isr = int(config["minReplicationFactor"]), int(config["minInsyncReplicas"])
    spec = as_dict(args.props.get("spec"))
    replicas = spec.get("replicas")
    if replicas is not None and (_number(_text(replicas)) or 0) < min_rf:
        say(f"replicas is {_text(replicas)}: fewer than {min_rf} copies of every write")
    overrides = {str(k): _text(v) for k, v in as_dict(spec.get("config")).items()}
    if "min.insync.replicas" in overrides:
        isr = _number(overrides["min.insync.replicas"])
        if isr is None or isr < min_isr:
            say(
                f"config min.insync.replicas is {overrides['min.insync.replicas']}: acks=all "
                f"succeeds with fewer than {min_isr} replicas holding the write"
            )
    if overrides.get("unclean.leader.election.enable", "false").lower() != "false":
        say("config unclean.leader.election.enable is not false: an out-of-sync replica may lead")


def _msk_configuration(args: ResourceValidationArgs, say: Callable[[str], None]) -> None:
    declared = parse_properties(str(args.props.get("serverProperties") or ""))
    _check_broker(_effective(declared, MSK_DEFAULTS), args.get_config(), say)


def _msk_cluster(args: ResourceValidationArgs, say: Callable[[str], None]) -> None:
    min_rf = int(args.get_config()["minReplicationFactor"])
    brokers = args.props.get("numberOfBrokerNodes")
    if isinstance(brokers, int | float) and brokers < min_rf:
        say(f"numberOfBrokerNodes is {int(brokers)}: {min_rf} replicas need {min_rf} brokers")


def _kafka_durable(args: ResourceValidationArgs, report: ReportViolation) -> None:
    say = reporter(args.resource_type, args.props, args.name, report)
    kind = k8s_kind(args.resource_type)
    if args.resource_type.startswith(STRIMZI_GROUP) and kind == "Kafka":
        _strimzi_kafka(args, say)
    elif args.resource_type.startswith(STRIMZI_GROUP) and kind == "KafkaTopic":
        _strimzi_topic(args, say)
    elif args.resource_type == MSK_CONFIGURATION:
        _msk_configuration(args, say)
    elif args.resource_type == MSK_CLUSTER:
        _msk_cluster(args, say)


RULES: list[Rule] = [
    Rule(
        "kafka-durable",
        "data",
        "Kafka keeps acknowledged writes: replication factor >= 3 (brokers, offsets, topic "
        "overrides), min.insync.replicas >= 2 (brokers and topic overrides), no unclean leader "
        "election, no auto-created topics; on Strimzi and MSK.",
        "Strimzi: set spec.kafka.config default.replication.factor and "
        "offsets.topic.replication.factor to 3, min.insync.replicas to 2, "
        "unclean.leader.election.enable and auto.create.topics.enable to false, and keep "
        "KafkaTopic replicas/min.insync.replicas at or above them. MSK: the same keys in the "
        "Configuration's serverProperties, and at least 3 brokers.",
        check=_kafka_durable,
        config={
            "minReplicationFactor": {
                "type": "integer",
                "default": 3,
                "description": "Fewest replicas of every partition.",
            },
            "minInsyncReplicas": {
                "type": "integer",
                "default": 2,
                "description": "Fewest in-sync replicas for an acks=all write.",
            },
        },
    ),
]
