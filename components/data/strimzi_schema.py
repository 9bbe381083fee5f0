"""The Strimzi custom resources swarmstack declares, as typed models of their CRD schemas.

No registry package ships Strimzi's CRDs, so the fields used here are encoded from the
openAPIV3Schema of the Strimzi 1.2.0 release (tag 1.2.0 of strimzi-kafka-operator):
  packaging/install/cluster-operator/040-Crd-kafka.yaml         (Kafka, v1 only)
  packaging/install/cluster-operator/043-Crd-kafkatopic.yaml    (KafkaTopic, v1 only)
  packaging/install/cluster-operator/044-Crd-kafkauser.yaml     (KafkaUser, v1 only)
  packaging/install/cluster-operator/045-Crd-kafkanodepool.yaml (KafkaNodePool, v1 only)
Enumerations, minimums, patterns and required fields are the CRD's. Objects the CRD
leaves open (`config`, `metadata.labels`) stay open; everything else is closed
(extra=forbid), so a misspelt or unknown field is refused here as a CRD-validating API
server would prune or reject it. Only the subset swarmstack renders is modelled: a field
the CRD has and this model lacks is refused too, and must be added here (from the CRD)
before it is used.
"""

# Field names are the CRD's own camelCase, so a model reads like the schema it encodes.
# ruff: noqa: N815

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

QUANTITY = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"  # noqa: E501 - the CRD's pattern

Quantity = Annotated[str, Field(pattern=QUANTITY)]


class _Closed(BaseModel):
    # strict: "yes" is no boolean and "3" no integer to the API server either.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Metadata(_Closed):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    namespace: str
    labels: dict[str, str] = Field(default_factory=dict[str, str])
    annotations: dict[str, str] = Field(default_factory=dict[str, str])


# --- template pieces shared by Kafka and KafkaNodePool (same schema in both CRDs) -----------


class SeccompProfile(_Closed):
    type: str
    localhostProfile: str | None = None


class Capabilities(_Closed):
    add: list[str] | None = None
    drop: list[str] | None = None


class PodSecurityContext(_Closed):
    runAsNonRoot: bool | None = None
    runAsUser: int | None = None
    runAsGroup: int | None = None
    fsGroup: int | None = None
    seccompProfile: SeccompProfile | None = None


class ContainerSecurityContext(_Closed):
    allowPrivilegeEscalation: bool | None = None
    capabilities: Capabilities | None = None
    privileged: bool | None = None
    readOnlyRootFilesystem: bool | None = None
    runAsNonRoot: bool | None = None
    runAsUser: int | None = None
    runAsGroup: int | None = None
    seccompProfile: SeccompProfile | None = None


class TemplateMetadata(_Closed):
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class LabelSelector(_Closed):
    matchLabels: dict[str, str] | None = None


class TopologySpreadConstraint(_Closed):
    maxSkew: int
    topologyKey: str
    whenUnsatisfiable: str
    labelSelector: LabelSelector | None = None


class PodTemplate(_Closed):
    metadata: TemplateMetadata | None = None
    securityContext: PodSecurityContext | None = None
    terminationGracePeriodSeconds: Annotated[int, Field(ge=0)] | None = None
    topologySpreadConstraints: list[TopologySpreadConstraint] | None = None
    priorityClassName: str | None = None


class ContainerTemplate(_Closed):
    securityContext: ContainerSecurityContext | None = None


class Resources(_Closed):
    requests: dict[str, Quantity] | None = None
    limits: dict[str, Quantity] | None = None


# --- Kafka (040-Crd-kafka.yaml) --------------------------------------------------------------


class ListenerAuthentication(_Closed):
    type: Literal["tls", "scram-sha-512", "custom"]


class CertChainAndKey(_Closed):
    # spec.kafka.listeners[].configuration.brokerCertChainAndKey (040-Crd-kafka.yaml at 1.2.0:
    # all three required; the key must be unencrypted PKCS #8).
    secretName: str
    certificate: str
    key: str


class ListenerConfiguration(_Closed):
    brokerCertChainAndKey: CertChainAndKey | None = None


class Listener(_Closed):
    name: str = Field(pattern=r"^[a-z0-9]{1,11}$")
    port: int = Field(ge=9092)
    type: Literal["internal", "route", "tlsroute", "loadbalancer", "nodeport", "ingress", "cluster-ip"]  # fmt: skip  # noqa: E501
    tls: bool
    authentication: ListenerAuthentication | None = None
    configuration: ListenerConfiguration | None = None


class Authorization(_Closed):
    type: Literal["simple", "custom"]
    superUsers: list[str] | None = None


class Rack(_Closed):
    topologyKey: str | None = None
    type: Literal["topology-label", "environment-variable"] | None = None


class ConfigMapKeyRef(_Closed):
    name: str
    key: str
    optional: bool | None = None


class MetricsValueFrom(_Closed):
    configMapKeyRef: ConfigMapKeyRef


class MetricsConfig(_Closed):
    type: Literal["jmxPrometheusExporter", "strimziMetricsReporter"]
    valueFrom: MetricsValueFrom | None = None

    @model_validator(mode="after")
    def _value_from(self) -> MetricsConfig:
        # x-kubernetes-validations: self.type != 'jmxPrometheusExporter' || has(self.valueFrom)
        if self.type == "jmxPrometheusExporter" and self.valueFrom is None:
            raise ValueError("valueFrom property is required")
        return self


class KafkaClusterTemplate(_Closed):
    pod: PodTemplate | None = None
    kafkaContainer: ContainerTemplate | None = None
    initContainer: ContainerTemplate | None = None


class KafkaClusterSpec(_Closed):
    version: str | None = None
    metadataVersion: str | None = None
    listeners: list[Listener] = Field(min_length=1)
    config: dict[str, str | int | float | bool] | None = None
    authorization: Authorization | None = None
    rack: Rack | None = None
    metricsConfig: MetricsConfig | None = None
    template: KafkaClusterTemplate | None = None


class EntityTopicOperator(_Closed):
    watchedNamespace: str | None = None
    reconciliationIntervalMs: Annotated[int, Field(ge=0)] | None = None
    resources: Resources | None = None


class EntityUserOperator(_Closed):
    watchedNamespace: str | None = None
    reconciliationIntervalMs: Annotated[int, Field(ge=0)] | None = None
    resources: Resources | None = None


class EntityOperatorTemplate(_Closed):
    pod: PodTemplate | None = None
    topicOperatorContainer: ContainerTemplate | None = None
    userOperatorContainer: ContainerTemplate | None = None


class EntityOperator(_Closed):
    topicOperator: EntityTopicOperator | None = None
    userOperator: EntityUserOperator | None = None
    template: EntityOperatorTemplate | None = None


class KafkaExporterTemplate(_Closed):
    pod: PodTemplate | None = None
    container: ContainerTemplate | None = None


class KafkaExporter(_Closed):
    topicRegex: str | None = None
    groupRegex: str | None = None
    resources: Resources | None = None
    template: KafkaExporterTemplate | None = None


class KafkaSpecModel(_Closed):
    kafka: KafkaClusterSpec
    entityOperator: EntityOperator | None = None
    kafkaExporter: KafkaExporter | None = None


class Kafka(_Closed):
    apiVersion: Literal["kafka.strimzi.io/v1"]
    kind: Literal["Kafka"]
    metadata: Metadata
    spec: KafkaSpecModel


# --- KafkaNodePool (045-Crd-kafkanodepool.yaml) ----------------------------------------------


class JbodVolume(_Closed):
    id: int = Field(ge=0)
    type: Literal["ephemeral", "persistent-claim"]
    size: str | None = None
    # `class` is a Python keyword: the alias carries the CRD's name.
    storage_class: str | None = Field(default=None, alias="class")
    deleteClaim: bool | None = None
    kraftMetadata: Literal["shared"] | None = None


class Storage(_Closed):
    type: Literal["ephemeral", "persistent-claim", "jbod"]
    volumes: list[JbodVolume] | None = None


class NodePoolTemplate(_Closed):
    pod: PodTemplate | None = None
    kafkaContainer: ContainerTemplate | None = None


class KafkaNodePoolSpec(_Closed):
    replicas: int = Field(ge=0)
    roles: list[Literal["controller", "broker"]] = Field(min_length=1)
    storage: Storage
    resources: Resources | None = None
    template: NodePoolTemplate | None = None


class KafkaNodePool(_Closed):
    apiVersion: Literal["kafka.strimzi.io/v1"]
    kind: Literal["KafkaNodePool"]
    metadata: Metadata
    spec: KafkaNodePoolSpec


# --- KafkaTopic (043-Crd-kafkatopic.yaml) ----------------------------------------------------


class KafkaTopicSpec(_Closed):
    topicName: str | None = None
    partitions: int | None = Field(default=None, ge=1)
    replicas: int | None = Field(default=None, ge=1, le=32767)
    config: dict[str, str | int | float | bool] | None = None


class KafkaTopic(_Closed):
    apiVersion: Literal["kafka.strimzi.io/v1"]
    kind: Literal["KafkaTopic"]
    metadata: Metadata
    spec: KafkaTopicSpec


# --- KafkaUser (044-Crd-kafkauser.yaml) ------------------------------------------------------


class AclResource(_Closed):
    type: Literal["topic", "group", "cluster", "transactionalId"]
    name: str | None = None
    patternType: Literal["literal", "prefix"] | None = None


AclOperation = Literal[
    "Read",
    "Write",
    "Create",
    "Delete",
    "Alter",
    "Describe",
    "ClusterAction",
    "AlterConfigs",
    "DescribeConfigs",
    "IdempotentWrite",
    "All",
]


class Acl(_Closed):
    type: Literal["allow", "deny"] | None = None
    resource: AclResource
    host: str | None = None
    operations: list[AclOperation]


class UserAuthentication(_Closed):
    type: Literal["tls", "tls-external", "scram-sha-512"]


class UserAuthorization(_Closed):
    type: Literal["simple"]
    acls: list[Acl]


class KafkaUserSpec(_Closed):
    authentication: UserAuthentication | None = None
    authorization: UserAuthorization | None = None


class KafkaUser(_Closed):
    apiVersion: Literal["kafka.strimzi.io/v1"]
    kind: Literal["KafkaUser"]
    metadata: Metadata
    spec: KafkaUserSpec


MODELS: dict[str, type[_Closed]] = {
    "Kafka": Kafka,
    "KafkaNodePool": KafkaNodePool,
    "KafkaTopic": KafkaTopic,
    "KafkaUser": KafkaUser,
}


def strimzi_problems(body: dict[str, Any]) -> list[str]:
    """What the CRD model refuses in one rendered Strimzi resource (empty: accepted).

    Each problem names the field path and pydantic's reason, e.g.
    `spec.kafka.listeners.0.type: Input should be 'internal', 'route', ...`.
    """
    kind = body.get("kind")
    model = MODELS.get(str(kind))
    if model is None:
        return [f"kind {kind!r} is not a Strimzi kind swarmstack models ({', '.join(MODELS)})"]
    try:
        model.model_validate(body)
    except ValidationError as exc:
        return [
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        ]
    return []


class StrimziResourceError(ValueError):
    """A rendered Strimzi resource the CRD model refuses."""


def check_strimzi_resource(body: dict[str, Any]) -> None:
    """Raise StrimziResourceError naming the resource and every refused field."""
    problems = strimzi_problems(body)
    if problems:
        meta: dict[str, Any] = body.get("metadata") or {}
        name = f"{body.get('kind')} {meta.get('namespace', '?')}/{meta.get('name', '?')}"
        raise StrimziResourceError(
            f"{name} does not match the Strimzi 1.2.0 CRD: " + "; ".join(problems)
        )
