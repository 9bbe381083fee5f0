"""A stack's typed configuration: loading, validation and error messages.

`load()` reads every `swarmstack:*` key of the stack's Pulumi config, validates
it into `StackConfig` and runs the rules that cross components. Nothing is
declared before this succeeds, and a failure names each bad config path as it
is written in `Pulumi.<stack>.yaml`, the bad value and what would be valid.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import yaml
from pulumi.runtime import config as runtime_config
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from components.agents.spec import AgentSpec, agent_problems, events_agents
from components.compute.instances import INSTANCE_TYPES
from components.compute.mig import MIG_PROFILES, MigLayoutError, validate_layout
from components.compute.placement import (
    ModelPlacement,
    PlacementError,
    model_memory_fit,
    plan_placements,
    pool_offers,
)
from components.data.kafka import KafkaSpec, kafka_problems, zone_spread_problems
from components.data.qdrant import QdrantSpec, qdrant_problems
from components.data.redis import RedisSpec, redis_problems
from components.demand import DemandSpec
from components.gateway.spec import GatewaySpec, Provider, gateway_problems, used_providers
from components.observe.alerts import slo_problems
from components.observe.monitoring import ReceiverType
from components.observe.spec import ObservabilitySpec
from components.scale.keda import AutoscalingSpec
from components.serving.model_serving import Placement
from components.specs import (
    ClusterSpec,
    CostLabels,
    GpuOperatorSpec,
    GpuPoolSpec,
    ImageRef,
    ModelSpec,
    Namespaces,
    Spec,
)
from components.traffic.mesh import MeshSpec
from components.traffic.quotas import TenancySpec
from components.traffic.regional_edge import RegionalSpec
from components.traffic.timeouts import TimeoutSpec

PROJECT = "swarmstack"
# Config keys that hold secrets: read with Config.get_secret, never validated as data.
HF_TOKEN_CONFIG_KEY = "huggingFaceToken"
REDIS_PASSWORD_KEY = "redisPassword"
QDRANT_API_KEY = "qdrantApiKey"
QDRANT_READ_ONLY_API_KEY = "qdrantReadOnlyApiKey"
GRAFANA_ADMIN_PASSWORD_KEY = "grafanaAdminPassword"
TRACING_AUTH_HEADER_KEY = "tracingBackendAuthHeader"
# The gateway's secrets: its master key, the salt key that encrypts what it stores (never
# changed after the first deploy), its database password, the seed every agent type's key
# derives from, and one API key per provider its managed models call.
GATEWAY_MASTER_KEY = "gatewayMasterKey"
GATEWAY_SALT_KEY = "gatewaySaltKey"
GATEWAY_DATABASE_PASSWORD_KEY = "gatewayDatabasePassword"
GATEWAY_AGENT_KEY_SEED = "gatewayAgentKeySeed"
GATEWAY_PROVIDER_KEYS: dict[Provider, str] = {
    "openai": "gatewayOpenaiApiKey",
    "anthropic": "gatewayAnthropicApiKey",
    "gemini": "gatewayGeminiApiKey",
    "mistral": "gatewayMistralApiKey",
}
# The secret each Alertmanager receiver type reads (one receiver of each type at most).
RECEIVER_SECRET_KEYS: dict[ReceiverType, str] = {
    "slack": "alertmanagerSlackApiUrl",
    "pagerduty": "alertmanagerPagerdutyRoutingKey",
    "webhook": "alertmanagerWebhookUrl",
}
SECRET_KEYS = frozenset(
    {
        HF_TOKEN_CONFIG_KEY,
        REDIS_PASSWORD_KEY,
        QDRANT_API_KEY,
        QDRANT_READ_ONLY_API_KEY,
        GRAFANA_ADMIN_PASSWORD_KEY,
        TRACING_AUTH_HEADER_KEY,
        GATEWAY_MASTER_KEY,
        GATEWAY_SALT_KEY,
        GATEWAY_DATABASE_PASSWORD_KEY,
        GATEWAY_AGENT_KEY_SEED,
        *GATEWAY_PROVIDER_KEYS.values(),
        *RECEIVER_SECRET_KEYS.values(),
    }
)
# The phases a stack can be in: the same composition, validated more strictly in production.
Phase = Literal["pilot", "production"]
# What a production stack gets where its file leaves a key out (the pilot keeps each field's
# own default): sections of the stack config by their keys in Pulumi.<stack>.yaml.
PHASE_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "production": {"cluster": {"availabilityZones": 3, "natGateways": "perAz"}},
}
# Production's floors (phase_problems).
PRODUCTION_MIN_ZONES = 3
PRODUCTION_MIN_REPLICAS = 2
PRODUCTION_KAFKA_REPLICATION = 3
# Config keys outside this project's namespace that the program reads.
REGION_KEY = "aws:region"


# An ECR repository name (its grammar in the ECR API reference), as a prefix of the mirror's.
EcrPrefix = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$",
        max_length=100,
    ),
]


class ImageMirror(Spec):
    """The stack's copy of every upstream image, in its own account's ECR (stacks/images.py)."""

    prefix: EcrPrefix = Field(
        description="ECR repository prefix of the mirror: `docker.io/vllm/vllm-openai:v0.32.0` "
        "runs as `<account>.dkr.ecr.<region>.amazonaws.com/<prefix>/docker.io/vllm/vllm-openai"
        ":v0.32.0@sha256:...`, the digest read from ECR before anything is declared. Copy the "
        "images first (`swarmstack images <stack>`, stacks/bootstrap/mirror-images.sh)."
    )


class Images(Spec):
    vllm: ImageRef = Field(description="vLLM OpenAI-compatible server image.")
    agent_worker: ImageRef | None = Field(
        default=None,
        description="The agent worker image (`images/agent-worker`, pushed to your registry "
        "as the README describes). The image of every agent type that names none of its "
        "own, and of the Job that creates the topics with `dataPlane.kafka.mode: msk`.",
    )
    mirror: ImageMirror | None = Field(
        default=None,
        description="Run every image of the stack from the account's ECR mirror, pinned by "
        "digest (required in phase production). Unset: images run from their upstream "
        "registries by tag.",
    )


BucketName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")]


class ExternalResources(Spec):
    """What a stack uses but never creates, changes or deletes: it must exist before `up`."""

    s3_buckets: list[BucketName] = Field(
        default_factory=list,
        description="S3 buckets holding model weights (`models[].weights.uri`) that already "
        "exist and that you control. swarmstack creates no bucket: it grants the model servers "
        "read access to these. Bucket names are global, so listing one here is how you say it "
        "is yours; `pulumi up` refuses a weights URI whose bucket is not listed.",
    )

    @field_validator("s3_buckets")
    @classmethod
    def _unique(cls, buckets: list[str]) -> list[str]:
        repeated = sorted({b for b in buckets if buckets.count(b) > 1})
        if repeated:
            raise ValueError(f"lists {', '.join(repeated)} more than once")
        return buckets


class DataPlaneSpec(Spec):
    """The agents' data stores. Each is optional: a stack may run without one (the pilot
    has all three); the agents that need a missing store are rejected."""

    kafka: KafkaSpec | None = Field(
        default=None, description="Event bus for events agents (unset: no Kafka)."
    )
    redis: RedisSpec | None = Field(
        default=None, description="Session store (unset: no Redis/Valkey)."
    )
    qdrant: QdrantSpec | None = Field(default=None, description="Vector store (unset: no Qdrant).")
    allow_fewer_zones_than_replicas: bool = Field(
        default=False,
        description="Accept a cluster with fewer AZs than `kafka.replicationFactor`. Two "
        "replicas of a partition then share a zone, and losing that zone can stop every "
        "acks=all write. Default false: such a stack is rejected.",
    )

    @property
    def empty(self) -> bool:
        return self.kafka is None and self.redis is None and self.qdrant is None


class StackConfig(Spec):
    """Everything a stack is built from: the `swarmstack:` keys of Pulumi.<stack>.yaml."""

    phase: Phase = Field(
        description="The stack's phase. Every phase builds the same composition from its "
        "values; `production` validates them more strictly (at least 3 AZs, a NAT gateway "
        "per AZ, at least 2 replicas of every agent type and interactive model, Kafka "
        "replicated 3 times across 3 AZs, every image from the ECR mirror) and runs every "
        "policy of the pack as mandatory."
    )
    cost_labels: CostLabels = Field(description="Cost-attribution labels and tags.")
    cluster: ClusterSpec = Field(description="The cluster and its network.")
    gpu_operator: GpuOperatorSpec = Field(description="NVIDIA GPU operator release.")
    gpu_pools: list[GpuPoolSpec] = Field(min_length=1, description="GPU node pools.")
    models: list[ModelSpec] = Field(min_length=1, description="Models served with vLLM.")
    images: Images = Field(description="Container images (version-pinned).")
    namespaces: Namespaces = Field(
        default_factory=Namespaces, description="Namespaces swarmstack creates."
    )
    external: ExternalResources = Field(
        default_factory=ExternalResources,
        description="Resources the stack uses but does not create (none by default).",
    )
    agents: list[AgentSpec] = Field(
        default_factory=list[AgentSpec],
        description="Agent types: the data plane declares their topics, users and ACLs.",
    )
    data_plane: DataPlaneSpec = Field(
        default_factory=DataPlaneSpec, description="Event bus, session and vector stores."
    )
    observability: ObservabilitySpec = Field(
        default_factory=ObservabilitySpec,
        description="Monitoring (Prometheus, Alertmanager, Grafana), what it scrapes, and "
        "the alert thresholds.",
    )
    tenancy: TenancySpec = Field(
        default_factory=TenancySpec,
        description="Quotas of the stack's namespaces (GPUs and MIG slices included) and "
        "tenant teams' namespaces.",
    )
    timeouts: TimeoutSpec = Field(
        default_factory=TimeoutSpec,
        description="The timeouts of a model call's hops, each above the one inside it.",
    )
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec,
        description="KEDA (models on their sequence slots, events agents on consumer lag, "
        "http agents on active sessions) and the Cluster Autoscaler.",
    )
    mesh: MeshSpec = Field(
        default_factory=MeshSpec,
        description="The Istio service mesh over the models and agents namespaces: its "
        "releases, istiod's scale and the sidecars' resources.",
    )
    gateway: GatewaySpec | None = Field(
        default=None,
        description="The model gateway (LiteLLM's proxy): with it, agents call their models "
        "through it with a key each (budgets, rate limits, allowed models) and models fall "
        "back to others, managed APIs included. Unset: agents call the model Services.",
    )
    demand: DemandSpec | None = Field(
        default=None,
        description="The expected peak (users, turns per minute, their split across agent "
        "types) that `swarmstack capacity` sizes the stack against. Declares nothing.",
    )
    regional: RegionalSpec | None = Field(
        default=None,
        description="Set when the stack is one region of a multi-cluster deployment: it "
        "declares an Istio ingress gateway in front of the gateway, its internal load "
        "balancer and health alarm, and exports what the global stack reads (README "
        '"Multi-cluster"). Needs phase production, an EKS cluster, the gateway and MSK.',
    )

    @model_validator(mode="before")
    @classmethod
    def _phase_defaults(cls, data: Any) -> Any:
        """Production's defaults where the stack file leaves a key out (PHASE_DEFAULTS)."""
        if not isinstance(data, dict):
            return data
        raw = cast(dict[str, Any], data)
        phase = raw.get("phase")
        defaults = PHASE_DEFAULTS.get(phase) if isinstance(phase, str) else None
        if defaults is None:
            return raw
        merged = dict(raw)
        for section, values in defaults.items():
            given = merged.get(section)
            if isinstance(given, dict):
                merged[section] = {**values, **cast(dict[str, Any], given)}
        return merged

    def pool(self, name: str) -> GpuPoolSpec:
        return next(p for p in self.gpu_pools if p.name == name)


def secret_purposes(config: StackConfig) -> dict[str, str]:
    """Why each secret config key matters to this stack; a key it does not use is absent."""
    purposes: dict[str, str] = {}
    hub = [m for m in config.models if m.weights.source == "huggingface"]
    if hub:
        names = ", ".join(f"{m.name} ({m.model})" for m in hub)
        verb = "downloads its weights" if len(hub) == 1 else "download their weights"
        purposes[HF_TOKEN_CONFIG_KEY] = (
            f"model{'s' if len(hub) > 1 else ''} {names} {verb} from the Hugging Face Hub with "
            "it (gated models refuse downloads without a token)"
        )
    data = config.data_plane
    if data.redis is not None:
        purposes[REDIS_PASSWORD_KEY] = (
            f"the session store ({data.redis.engine}, mode {data.redis.mode}) requires it "
            "from every client (16-128 printable characters, no spaces, quotes, @ or /)"
        )
    if data.qdrant is not None:
        purposes[QDRANT_API_KEY] = "the vector store's read-write API key"
        purposes[QDRANT_READ_ONLY_API_KEY] = (
            "the vector store's read-only API key, for agents that only retrieve"
        )
    monitoring = config.observability.monitoring
    purposes[GRAFANA_ADMIN_PASSWORD_KEY] = (
        f"Grafana's admin user {monitoring.grafana.admin_user!r} logs in with it"
    )
    for receiver in monitoring.alertmanager.receivers:
        what = "routing key" if receiver.type == "pagerduty" else "URL"
        purposes[RECEIVER_SECRET_KEYS[receiver.type]] = (
            f"Alertmanager receiver {receiver.name!r} ({receiver.type}) posts alerts with "
            f"this {what}"
        )
    gateway = config.gateway
    if gateway is not None:
        purposes[GATEWAY_MASTER_KEY] = (
            "the model gateway's admin key (`sk-` and at least 32 characters): the key Job "
            "registers the agents' keys with it"
        )
        purposes[GATEWAY_SALT_KEY] = (
            "the model gateway encrypts the credentials it stores with it (`sk-` and 64 hex "
            "characters, e.g. sk-$(openssl rand -hex 32)); never change it after the first "
            "deploy"
        )
        purposes[GATEWAY_DATABASE_PASSWORD_KEY] = (
            "the password of the gateway's Postgres (16-128 letters and digits)"
        )
        purposes[GATEWAY_AGENT_KEY_SEED] = (
            "every agent type's gateway key derives from it (at least 32 characters)"
        )
        for provider in used_providers(gateway):
            names = ", ".join(m.name for m in gateway.managed_models if m.provider == provider)
            purposes[GATEWAY_PROVIDER_KEYS[provider]] = (
                f"the gateway calls managed model(s) {names} ({provider}) with this API key"
            )
    tracing = config.observability.tracing
    if tracing.enabled and tracing.backend.auth_header is not None:
        purposes[TRACING_AUTH_HEADER_KEY] = (
            f"the trace collector sends it as header {tracing.backend.auth_header!r} to the "
            f"{tracing.backend.type} backend"
        )
    return purposes


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(ValueError):
    """Every problem found in a stack's config, each with its path."""

    def __init__(
        self, problems: list[Problem], source: str, headline: str = "invalid stack config"
    ) -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{headline} ({source}):\n{lines}")


# --------------------------------------------------------------------------- loading


def raw_from_pulumi_config() -> tuple[dict[str, Any], str]:
    """The stack's `swarmstack:*` values (secrets left out) and its region."""
    return raw_from_config({**runtime_config.get_config_env(), **runtime_config.CONFIG.get()})


def raw_from_config(merged: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """`swarmstack:*` values (secrets left out) and the region, from full config keys."""
    raw: dict[str, Any] = {}
    for full_key, value in merged.items():
        namespace, _, key = str(full_key).partition(":")
        if namespace != PROJECT or key in SECRET_KEYS:
            continue
        raw[key] = _decode(value)
    region = merged.get(REGION_KEY)
    return raw, str(region) if region is not None else ""


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def load(raw: dict[str, Any], region: str, source: str) -> StackConfig:
    """Validate raw config; raise ConfigError naming every bad path."""
    try:
        config = StackConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([_problem(e) for e in exc.errors()], source) from None
    problems = cross_component_problems(config, region)
    if problems:
        raise ConfigError(problems, source)
    return config


def file_region(path: Path) -> str:
    """The `aws:region` a `Pulumi.<stack>.yaml` sets ("" when it sets none)."""
    text: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    doc: dict[str, Any] = text.get("config") or {}
    return str(doc.get(REGION_KEY, ""))


def load_file(path: Path) -> StackConfig:
    """A `Pulumi.<stack>.yaml` as the program would see it (secrets left out), validated."""
    text: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    doc: dict[str, Any] = text.get("config") or {}
    raw: dict[str, Any] = {}
    for key, value in doc.items():
        namespace, _, name = key.partition(":")
        if namespace == PROJECT and name not in SECRET_KEYS:
            raw[name] = value
    return load(raw, str(doc.get(REGION_KEY, "")), str(path))


# --------------------------------------------------------------------------- messages


def render_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _schema() -> dict[str, Any]:
    return StackConfig.model_json_schema(by_alias=True)


def _keys_at(loc: tuple[int | str, ...], schema: dict[str, Any] | None = None) -> list[str]:
    """Valid keys of the object at `loc`, read from the config's JSON schema (a stack's, or
    the one given: the global stack's)."""
    schema = schema if schema is not None else _schema()
    defs: dict[str, Any] = schema.get("$defs", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = defs[str(node["$ref"]).split("/")[-1]]
        return node

    node = resolve(schema)
    for part in loc:
        if "anyOf" in node:
            node = resolve(next(n for n in node["anyOf"] if n.get("type") != "null"))
        if isinstance(part, int):
            node = resolve(node.get("items", {}))
        elif "properties" in node and part in node["properties"]:
            node = resolve(node["properties"][part])
        elif "oneOf" in node:  # discriminated union: the tag is part of the loc
            options = [resolve(n) for n in node["oneOf"]]
            tagged = [o for o in options if o["properties"]["source"].get("const") == part]
            if not tagged:
                return []
            node = tagged[0]
        else:
            return []
    return sorted(node.get("properties", {}))


def _is_union_tag(loc: tuple[int | str, ...], index: int) -> bool:
    return index > 0 and loc[index - 1] == "weights" and loc[index] in ("s3", "pvc", "huggingface")


def _problem(error: ErrorDetails, schema: dict[str, Any] | None = None) -> Problem:
    loc = tuple(p for i, p in enumerate(error["loc"]) if not _is_union_tag(error["loc"], i))
    path = render_path(loc)
    value = error.get("input")
    kind = error["type"]
    if kind == "extra_forbidden":
        valid = ", ".join(_keys_at(tuple(error["loc"][:-1]), schema))
        return Problem(path, f"unknown key (valid keys here: {valid})")
    if kind == "missing":
        return Problem(path, "required key is missing")
    message = error["msg"].removeprefix("Value error, ")
    if isinstance(value, str | int | float | bool) and repr(value) not in message:
        return Problem(path, f"{value!r} is not valid: {message}")
    return Problem(path, message)


# --------------------------------------------------------------------------- cross-component rules


def cross_component_problems(config: StackConfig, region: str) -> list[Problem]:
    problems: list[Problem] = []
    problems += _unique_names("gpuPools", [p.name for p in config.gpu_pools])
    problems += _unique_names("models", [m.name for m in config.models])
    if config.cluster.mode == "eks" and not region:
        problems.append(Problem(REGION_KEY, "is not set: the EKS cluster needs a region"))
    for i, pool in enumerate(config.gpu_pools):
        problems += _pool_problems(i, pool, config, region)
    for i, model in enumerate(config.models):
        problems += _model_problems(i, model, config)
    problems += [Problem(path, message) for path, message in slo_problems(config.models)]
    if not problems:  # placement and capacity arithmetic need valid pools and profiles
        problems += placement_problems(config)
    if not problems:
        problems += _capacity_problems(config)
    problems += data_plane_problems(config)
    problems += agent_runtime_problems(config)
    problems += gateway_config_problems(config)
    problems += autoscaling_problems(config)
    problems += demand_problems(config)
    problems += phase_problems(config)
    problems += regional_problems(config, region)
    if not problems:  # a quota is checked against the pods of a valid stack
        # Imported here: the quota check renders the stack's pods, and its module reads
        # this one's types.
        from stacks.quotas import quota_problems  # noqa: PLC0415

        problems += quota_problems(config)
    return problems


def phase_problems(config: StackConfig) -> list[Problem]:
    """What the production phase asks beyond the pilot; each problem names the pilot-grade
    value it refuses and the floor. A pilot stack has none of these rules."""
    if config.phase != "production":
        return []
    problems: list[Problem] = []
    cluster = config.cluster
    zones = cluster_zones(config)
    if zones < PRODUCTION_MIN_ZONES:
        path = (
            "cluster.availabilityZones"
            if cluster.mode == "eks"
            else "cluster.network.privateSubnetIds"
        )
        problems.append(
            Problem(
                path,
                f"{zones} AZs: phase 'production' needs at least {PRODUCTION_MIN_ZONES}, so "
                "that losing one AZ leaves Kafka a quorum of replicas and every workload a "
                "replica",
            )
        )
    if cluster.mode == "eks" and cluster.nat_gateways != "perAz":
        problems.append(
            Problem(
                "cluster.natGateways",
                f"{cluster.nat_gateways!r}: phase 'production' needs 'perAz' (one NAT gateway "
                "per AZ): with a single one, losing its AZ cuts every private subnet's "
                "egress",
            )
        )
    if config.images.mirror is None:
        problems.append(
            Problem(
                "images.mirror",
                "not set: phase 'production' runs every image from the account's ECR mirror, "
                "pinned by digest (policy image-digest-pinned is mandatory); set "
                "images.mirror.prefix and copy the images (`swarmstack images <stack>`)",
            )
        )
    floor = PRODUCTION_MIN_REPLICAS
    for i, agent in enumerate(config.agents):
        if agent.replicas.min < floor:
            problems.append(
                Problem(
                    f"agents[{i}].replicas.min",
                    f"{agent.replicas.min} for agent {agent.name!r}: phase 'production' needs "
                    f"at least {floor} replicas of every agent type (one may be drained or "
                    "lost with its AZ while the other works)",
                )
            )
    for i, model in enumerate(config.models):
        if model.slo.tier == "interactive" and model.replicas.min < floor:
            problems.append(
                Problem(
                    f"models[{i}].replicas.min",
                    f"{model.replicas.min} for interactive model {model.name!r}: phase "
                    f"'production' needs at least {floor} replicas of every interactive "
                    "model (a batch model may keep fewer)",
                )
            )
    gateway = config.gateway
    if gateway is not None and gateway.replicas < floor:  # the field's own floor is 2 today
        problems.append(
            Problem(
                "gateway.replicas",
                f"{gateway.replicas}: phase 'production' needs at least {floor} gateway replicas",
            )
        )
    data = config.data_plane
    kafka = data.kafka
    if kafka is not None:
        rf = kafka.replication_factor
        if rf < PRODUCTION_KAFKA_REPLICATION:
            problems.append(
                Problem(
                    "dataPlane.kafka.replicationFactor",
                    f"{rf}: phase 'production' needs {PRODUCTION_KAFKA_REPLICATION} "
                    "(with minInsyncReplicas 2, acks=all writes survive the loss of one "
                    "broker or AZ)",
                )
            )
        if kafka.brokers < PRODUCTION_MIN_ZONES:
            problems.append(
                Problem(
                    "dataPlane.kafka.brokers",
                    f"{kafka.brokers}: phase 'production' needs at least "
                    f"{PRODUCTION_MIN_ZONES} brokers, one in each of {PRODUCTION_MIN_ZONES} AZs",
                )
            )
        if data.allow_fewer_zones_than_replicas:
            problems.append(
                Problem(
                    "dataPlane.allowFewerZonesThanReplicas",
                    "true: phase 'production' keeps every Kafka replica of a partition in its "
                    "own AZ; remove the key",
                )
            )
    return problems


def regional_problems(config: StackConfig, region: str) -> list[Problem]:
    """A region of a multi-cluster deployment is a production stack whose gateway and MSK
    cluster the global stack routes and replicates to."""
    if config.regional is None:
        return []
    problems: list[Problem] = []
    if config.regional.region != region:
        problems.append(
            Problem(
                "regional.region",
                f"{config.regional.region!r} is not the stack's region {REGION_KEY} "
                f"{region!r}: set them equal",
            )
        )
    if config.phase != "production":
        problems.append(
            Problem(
                "phase",
                f"{config.phase!r}: a regional stack (`regional` is set) serves other regions' "
                "traffic on failover, so it needs phase 'production'",
            )
        )
    if config.cluster.mode != "eks":
        problems.append(
            Problem(
                "cluster.mode",
                f"{config.cluster.mode!r}: a regional stack declares its gateway's load "
                "balancer in the cluster's VPC: use 'eks'",
            )
        )
    if config.gateway is None:
        problems.append(
            Problem(
                "gateway",
                "not set: a regional stack's traffic arrives through its gateway (the "
                "global records point at it)",
            )
        )
    kafka = config.data_plane.kafka
    if kafka is None or kafka.mode != "msk":
        shown = "not set" if kafka is None else f"{kafka.mode!r}"
        problems.append(
            Problem(
                "dataPlane.kafka.mode",
                f"{shown}: a regional stack's tasks and results are replicated to the other "
                "regions with MSK Replicator, which needs 'msk' (its IAM auth on both clusters)",
            )
        )
    return problems


def policy_config_problems(phase: Phase, policy_config: Mapping[str, Any]) -> list[Problem]:
    """A production stack runs every policy mandatory (policies/pack.py, `phase_levels`):
    its policy config (`--policy-pack-config`) may set a rule's options, never lower its
    level. Paths are the config's keys (a rule name, or `all`)."""
    if phase != "production":
        return []
    problems: list[Problem] = []
    for key, entry in policy_config.items():
        level: object = entry
        if isinstance(entry, dict):
            level = cast(dict[str, Any], entry).get("enforcementLevel", "mandatory")
        if level != "mandatory":
            problems.append(
                Problem(
                    key,
                    f"{level!r}: phase 'production' runs every policy mandatory; set "
                    "'mandatory' or remove the level (a rule's options may stay)",
                )
            )
    return problems


def agent_runtime_problems(config: StackConfig) -> list[Problem]:
    """What each agent type's workers need from the rest of the stack: a model the stack
    serves, an image, the session store, the vector store for `retrieve`, and for an
    interactive agent a replica that is always up."""
    problems: list[Problem] = []
    served = [m.name for m in config.models]
    data = config.data_plane
    for i, agent in enumerate(config.agents):
        base = f"agents[{i}]"
        if agent.model not in served:
            problems.append(
                Problem(
                    f"{base}.model",
                    f"{agent.model!r} is not a model this stack serves (one of "
                    f"{', '.join(served)})",
                )
            )
        if agent.degraded_model is not None and config.gateway is None:
            problems.append(
                Problem(
                    f"{base}.degradedModel",
                    f"{agent.degraded_model!r}: a cheaper model is reached through the model "
                    "gateway only (the worker switches to it when the gateway says a budget "
                    "is spent); add gateway: or remove degradedModel",
                )
            )
        if agent.tier == "interactive" and agent.replicas.min == 0:
            problems.append(
                Problem(
                    f"{base}.replicas.min",
                    f"0 for interactive agent {agent.name!r}: the first request after idle "
                    "would wait for a pod to start; use at least 1, or tier batch",
                )
            )
        if agent.image is None and config.images.agent_worker is None:
            problems.append(
                Problem(
                    f"{base}.image",
                    "is not set and neither is images.agentWorker: give the worker image's "
                    'repository and tag (the README\'s "Agent worker image" pushes it)',
                )
            )
        if data.redis is None:
            problems.append(
                Problem(
                    f"{base}",
                    f"agent {agent.name!r} checkpoints its sessions in the session store, but "
                    "dataPlane.redis is not set: add it",
                )
            )
        if agent.sandbox == "gvisor" and config.cluster.sandbox_pool is None:
            problems.append(
                Problem(
                    f"{base}.sandbox",
                    "'gvisor' needs nodes that run it, but cluster.sandboxPool is not set: "
                    "add the sandbox pool (it installs gVisor and the RuntimeClass), or use "
                    "runc",
                )
            )
        if "retrieve" in agent.tools and data.qdrant is None:
            problems.append(
                Problem(
                    f"{base}.tools",
                    "lists retrieve, which searches the vector store, but dataPlane.qdrant is "
                    "not set: add it or remove retrieve",
                )
            )
    return problems


def gateway_config_problems(config: StackConfig) -> list[Problem]:
    """The gateway's models, fallbacks and keys against the stack's, and the store its
    replicas share their counters in."""
    gateway = config.gateway
    if gateway is None:
        return []
    found = gateway_problems(
        gateway,
        [m.name for m in config.models],
        [(a.name, a.model) for a in config.agents],
        {a.name: a.degraded_model for a in config.agents if a.degraded_model is not None},
    )
    problems = [Problem(path, message) for path, message in found]
    if config.data_plane.redis is None:
        problems.append(
            Problem(
                "gateway",
                "needs dataPlane.redis: the gateway's replicas share rate limits, spend "
                "counters and cooldowns there (without it each replica counts alone)",
            )
        )
    return problems


def autoscaling_problems(config: StackConfig) -> list[Problem]:
    """Interactive workloads keep a replica; KEDA's namespace is its own."""
    problems: list[Problem] = []
    for i, model in enumerate(config.models):
        if model.slo.tier == "interactive" and model.replicas.min < 1:
            problems.append(
                Problem(
                    f"models[{i}].replicas.min",
                    f"0 for interactive model {model.name!r}: an interactive model never "
                    "scales to zero (its first request would wait for the model to load); "
                    "use 1 or more, or slo.tier: batch",
                )
            )
    ns = config.namespaces
    keda_ns = config.autoscaling.keda.namespace
    if keda_ns in (ns.models, ns.agents, ns.data, ns.monitoring, "kube-system", "default"):
        problems.append(
            Problem(
                "autoscaling.keda.namespace",
                f"{keda_ns!r} is already used: KEDA runs in a namespace of its own",
            )
        )
    return problems


def cluster_zones(config: StackConfig) -> int:
    """The AZs the stores can spread over: the VPC's, or an existing cluster's subnets."""
    network = config.cluster.network
    if config.cluster.mode == "existing" and network is not None:
        return len(network.private_subnet_ids)
    return config.cluster.availability_zones


def data_plane_problems(config: StackConfig) -> list[Problem]:
    """Rules of the agents and the stores, each mapped to its full config path."""
    data, base = config.data_plane, "dataPlane"

    def under(found: list[tuple[str, str]]) -> list[Problem]:
        # Store rules name paths below `dataPlane`; agent rules start at the top level.
        return [
            Problem(path if path.startswith("agents[") else f"{base}.{path}", message)
            for path, message in found
        ]

    problems = under(agent_problems(config.agents))
    if data.kafka is None:
        problems += [
            Problem(
                f"agents[{i}].mode",
                f"agent {a.name!r} is mode events, but dataPlane.kafka is not set: add an "
                "event bus or use mode http",
            )
            for i, a in enumerate(config.agents)
            if a in events_agents(config.agents)
        ]
    else:
        problems += under(kafka_problems(data.kafka, config.agents))
        zones = cluster_zones(config)
        for path, message in zone_spread_problems(data.kafka, zones):
            if path == "kafka.replicationFactor" and data.allow_fewer_zones_than_replicas:
                continue
            hint = (
                f"; use cluster.availabilityZones >= {data.kafka.replication_factor}, or set "
                f"{base}.allowFewerZonesThanReplicas: true to accept it"
                if path == "kafka.replicationFactor"
                else ""
            )
            problems.append(Problem(f"{base}.{path}", message + hint))
    if data.redis is not None:
        problems += under(redis_problems(data.redis))
    if data.qdrant is not None:
        problems += under(qdrant_problems(data.qdrant))
    managed = (
        [(f"{base}.kafka.mode", "msk") for k in [data.kafka] if k is not None and k.mode == "msk"]
        + [
            (f"{base}.redis.mode", "elasticache")
            for r in [data.redis]
            if r is not None and r.mode == "elasticache"
        ]
        + [
            ("gateway.database.mode", "rds")
            for g in [config.gateway]
            if g is not None and g.database.mode == "rds"
        ]
    )
    if data.kafka is not None and data.kafka.mode == "msk":
        if config.images.agent_worker is None:
            problems.append(
                Problem(
                    "images.agentWorker",
                    "is not set, but dataPlane.kafka.mode is 'msk': MSK has no topic "
                    "resource, so a Job of the agent worker image creates the topics; give "
                    "its repository and tag",
                )
            )
        if config.cluster.mode == "existing":
            problems.append(
                Problem(
                    f"{base}.kafka.mode",
                    "'msk' authenticates agents with IAM roles for service accounts, which "
                    "the stack declares through the OIDC provider of a cluster it creates; "
                    "cluster.mode is 'existing': use mode strimzi, or cluster.mode eks",
                )
            )
    if config.cluster.mode == "existing" and config.cluster.network is None:
        problems += [
            Problem(
                path,
                f"{mode!r} runs in AWS next to the cluster, but cluster.mode is 'existing' and "
                "cluster.network is not set: give cluster.network (vpcId, privateSubnetIds, "
                "nodeSecurityGroupId, kmsKeyArn) or use an in-cluster mode",
            )
            for path, mode in managed
        ]
    return problems


def demand_problems(config: StackConfig) -> list[Problem]:
    """Each agent type named in `demand.agents` exists, and is named once."""
    if config.demand is None:
        return []
    names = [a.name for a in config.agents]
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, share in enumerate(config.demand.agents):
        path = f"demand.agents[{i}].agent"
        if share.agent not in names:
            problems.append(Problem(path, f"{share.agent!r} is not an agent type (one of {names})"))
        elif share.agent in seen:
            problems.append(Problem(path, f"{share.agent!r} is listed more than once"))
        seen.add(share.agent)
    return problems


def _unique_names(path: str, names: list[str]) -> list[Problem]:
    counts = Counter(names)
    return [
        Problem(f"{path}[{i}].name", f"{name!r} is used more than once; names must be unique")
        for i, name in enumerate(names)
        if counts[name] > 1 and names.index(name) != i
    ]


def _pool_problems(i: int, pool: GpuPoolSpec, config: StackConfig, region: str) -> list[Problem]:
    base = f"gpuPools[{i}]"
    itype = INSTANCE_TYPES[pool.instance_type]
    problems: list[Problem] = []
    if pool.availability_zone and region and not pool.availability_zone.startswith(region):
        problems.append(
            Problem(
                f"{base}.availabilityZone",
                f"{pool.availability_zone!r} is not in the stack's region {region!r} "
                f"(e.g. {region}a)",
            )
        )
    if pool.mig is None:
        return problems
    if not itype.mig_capable:
        mig_types = sorted(n for n, t in INSTANCE_TYPES.items() if t.mig_capable)
        problems.append(
            Problem(
                f"{base}.mig",
                f"{pool.instance_type} has {itype.gpus} x {itype.gpu_model}, which does not "
                f"support MIG (MIG instance types: {', '.join(mig_types)}); remove mig",
            )
        )
        return problems
    try:
        validate_layout(str(itype.gpu_model), pool.mig.profiles, config.gpu_operator.mig_strategy)
    except MigLayoutError as exc:
        path = f"{base}.mig.profiles" + (f"[{exc.index}]" if exc.index is not None else "")
        problems.append(Problem(path, str(exc)))
    return problems


def _model_problems(i: int, model: ModelSpec, config: StackConfig) -> list[Problem]:
    base = f"models[{i}]"
    if model.canary is not None and len(model.name) > 63 - len("-canary"):
        return [
            Problem(
                f"{base}.name",
                f"{model.name!r} is too long for a canary: the canary Deployment "
                f"'{model.name}-canary' must stay within 63 characters",
            )
        ]
    if model.pool is None:
        return []  # the placement planner picks the pool, or names the pools it tried
    names = [p.name for p in config.gpu_pools]
    if model.pool not in names:
        return [Problem(f"{base}.pool", f"{model.pool!r} is not a GPU pool (one of {names})")]
    pool = config.pool(model.pool)
    itype = INSTANCE_TYPES[pool.instance_type]
    gpu = itype.gpu
    assert gpu is not None
    problems: list[Problem] = []
    if pool.mig is not None:
        if not gpu.mig_capable:
            return []  # reported on the pool
        if model.tensor_parallel_size != 1:
            problems.append(
                Problem(
                    f"{base}.tensorParallelSize",
                    f"{model.tensor_parallel_size} is not possible on MIG pool {pool.name!r}: "
                    "a process sees one MIG device, so it must be 1 (or use a pool without MIG)",
                )
            )
        if model.mig_profile is None:
            return problems  # the planner picks the smallest slice that holds the model
        if model.mig_profile not in pool.mig.profiles:
            return [
                *problems,
                Problem(
                    f"{base}.migProfile",
                    f"{model.mig_profile!r} is not in the MIG layout of pool {pool.name!r} "
                    f"(one of {sorted(set(pool.mig.profiles))})",
                ),
            ]
        profile = MIG_PROFILES[gpu.model][model.mig_profile]
        device_gb, devices, device_name = profile.usable_memory_gb, 1, f"MIG {profile.name} slice"
    else:
        if model.mig_profile is not None:
            problems.append(
                Problem(
                    f"{base}.migProfile",
                    f"{model.mig_profile!r} set, but pool {pool.name!r} has no MIG layout; "
                    "remove migProfile",
                )
            )
        if model.tensor_parallel_size > itype.gpus:
            problems.append(
                Problem(
                    f"{base}.tensorParallelSize",
                    f"{model.tensor_parallel_size} exceeds the {itype.gpus} GPU(s) of a "
                    f"{pool.instance_type} node in pool {pool.name!r} (at most {itype.gpus})",
                )
            )
            return problems
        device_gb, devices = gpu.usable_memory_gb, model.tensor_parallel_size
        device_name = f"{devices} x {gpu.model}"
    fit = model_memory_fit(model, device_gb, devices)
    if not fit.fits:
        problems.append(
            Problem(
                f"{base}.architecture",
                f"{model.model} does not fit a {device_name} at gpuMemoryUtilization "
                f"{model.vllm.gpu_memory_utilization:g}: {fit.describe()}. Use a larger slice, "
                "a shorter maxModelLen, fp8 KV cache or a quantized model",
            )
        )
    return problems


def placements(config: StackConfig) -> dict[str, ModelPlacement]:
    """Every model's pool, slice and overflow pools (components/compute/placement.py);
    raises PlacementError for a config that `load` would refuse."""
    return plan_placements(config.models, config.gpu_pools, config.gpu_operator.mig_strategy)


def placement_problems(config: StackConfig) -> list[Problem]:
    try:
        placements(config)
    except PlacementError as exc:
        return [Problem(path, message) for path, message in exc.problems]
    return []


def accelerator_resource(model: ModelSpec, config: StackConfig) -> tuple[str, int]:
    """The extended resource one replica requests, and how many."""
    placed = placements(config)[model.name]
    return placed.resource, placed.count


def serving_placement(model: ModelSpec, config: StackConfig) -> Placement:
    """What the model's pods are given: its pool, accelerator and overflow pools."""
    placed = placements(config)[model.name]
    return Placement(placed.pool, placed.resource, placed.count, placed.overflow)


def _capacity_problems(config: StackConfig) -> list[Problem]:
    problems: list[Problem] = []
    strategy = config.gpu_operator.mig_strategy
    placed = placements(config)
    for pi, pool in enumerate(config.gpu_pools):
        members = [(i, m) for i, m in enumerate(config.models) if placed[m.name].pool == pool.name]
        if not members:
            continue
        for scale, nodes in (("min", pool.min_size), ("max", pool.max_size)):
            offered = pool_offers(pool, strategy, nodes)
            wanted: Counter[str] = Counter()
            for _, m in members:
                resource, count = accelerator_resource(m, config)
                replicas = m.replicas.min if scale == "min" else m.replicas.max
                replicas += m.canary.replicas if m.canary is not None else 0
                wanted[resource] += count * replicas
            for resource, need in sorted(wanted.items()):
                if need > offered[resource]:
                    problems.append(
                        Problem(
                            f"gpuPools[{pi}].{scale}Size",
                            f"{nodes} node(s) of {pool.instance_type} offer "
                            f"{offered[resource]} x {resource}, but the models on this pool "
                            f"need {need} at {scale} replicas; raise {scale}Size or lower "
                            f"models[*].replicas.{scale}",
                        )
                    )
    return problems
