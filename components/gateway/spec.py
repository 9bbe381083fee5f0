"""The model gateway's typed config (`swarmstack:gateway` in `Pulumi.<stack>.yaml`).

With `gateway:` set, the agents call their models through LiteLLM's proxy instead of the
model Services: every vLLM model of the stack is a gateway model under its own name
(`models[].name`), managed API models can be added (`managedModels`), each agent type gets
its own key with its budget, rate limits and allowed models (`keys`), and a model that
fails or is saturated falls back to the models its route lists (`routes[].fallbacks`).

Secrets are never part of this config: the master key, the salt key, the seed the agents'
keys derive from, the providers' API keys and the database password are Pulumi config
secrets (README, "Secrets"); the rendered proxy config names them only as
`os.environ/<NAME>`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from components.specs import DnsLabel, ImageRef, Spec

# The LiteLLM release every key of the rendered proxy config was read against (its
# proxy_server.py, router.py and types), and whose non-root image the stack runs.
LITELLM_VERSION = "1.110.2"
IMAGE_REPOSITORY = "ghcr.io/berriai/litellm-non_root"
POSTGRES_REPOSITORY = "docker.io/library/postgres"
POSTGRES_TAG = "17.6"
POSTGRES_EXPORTER_REPOSITORY = "quay.io/prometheuscommunity/postgres-exporter"
POSTGRES_EXPORTER_TAG = "v0.17.1"

# The providers a managed model may name (LiteLLM's model prefix), with the API host each
# one calls when `apiBase` is not set; the mesh lets only the gateway reach these hosts.
Provider = Literal["openai", "anthropic", "gemini", "mistral"]
PROVIDER_HOSTS: dict[Provider, str] = {
    "openai": "api.openai.com",
    "anthropic": "api.anthropic.com",
    "gemini": "generativelanguage.googleapis.com",
    "mistral": "api.mistral.ai",
}

# LiteLLM's duration strings for budgets (`budget_duration`): seconds, minutes, hours, days.
BudgetDuration = Annotated[str, Field(pattern=r"^[1-9][0-9]{0,3}(s|m|h|d)$")]


class GatewayResources(Spec):
    """What one proxy container requests (the memory request is also its limit)."""

    cpu_millis: int = Field(
        default=500, ge=100, le=16000, description="CPU request, millicores (no CPU limit)."
    )
    memory_mib: int = Field(
        default=1024, ge=512, le=65536, description="Memory request and limit, MiB."
    )


class ModelRoute(Spec):
    """The gateway's settings for one vLLM model of the stack."""

    model: DnsLabel = Field(description="The stack model (`models[].name`) these apply to.")
    rpm: int | None = Field(
        default=None,
        ge=1,
        description="Requests per minute the gateway sends this model, across its replicas "
        "(a request over it goes to a fallback, or gets 429). Unset: no limit.",
    )
    tpm: int | None = Field(
        default=None,
        ge=1,
        description="Tokens per minute the gateway sends this model, across its replicas. "
        "Unset: no limit.",
    )
    fallbacks: list[DnsLabel] = Field(
        default_factory=list[str],
        description="Gateway models (stack models or `managedModels[].name`) tried in order "
        "when this one fails before its first token, times out or is over its limits.",
    )

    @field_validator("fallbacks")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"lists {', '.join(repeated)} more than once")
        return names


class ManagedModel(Spec):
    """A model behind a provider's API, reached through the gateway only."""

    name: DnsLabel = Field(
        description="The gateway model name (what fallbacks and keys refer to); its API key "
        "is the provider's config secret (`gatewayOpenaiApiKey`, `gatewayAnthropicApiKey`, "
        "`gatewayGeminiApiKey` or `gatewayMistralApiKey`)."
    )
    model: str = Field(
        pattern=r"^(openai|anthropic|gemini|mistral)/[A-Za-z0-9._:\-]+$",
        description="Provider and model, as LiteLLM names it, e.g. openai/gpt-4o-mini.",
    )
    api_base: str | None = Field(
        default=None,
        pattern=r"^https://([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}(/[A-Za-z0-9._/\-]*)?$",
        description="The provider's API base URL (https only); unset: the provider's own.",
    )
    rpm: int | None = Field(
        default=None, ge=1, description="Requests per minute sent to it. Unset: no limit."
    )
    tpm: int | None = Field(
        default=None, ge=1, description="Tokens per minute sent to it. Unset: no limit."
    )
    timeout_s: int = Field(
        default=120,
        ge=1,
        le=3600,
        description="Seconds the gateway waits for one call to it (a fallback adds this to "
        "the gateway's route timeout).",
    )

    @property
    def provider(self) -> Provider:
        prefix = self.model.partition("/")[0]
        return next(p for p in PROVIDER_HOSTS if p == prefix)

    @property
    def host(self) -> str:
        """The external host the gateway calls for this model."""
        if self.api_base is not None:
            return urlsplit(self.api_base).hostname or ""
        return PROVIDER_HOSTS[self.provider]


class AgentKey(Spec):
    """One agent type's key at the gateway: what it may call and spend."""

    agent: DnsLabel = Field(
        description="The agent type (`agents[].name`). Its key derives from the "
        "`gatewayAgentKeySeed` config secret, the agent's name and `keyVersion`."
    )
    key_version: int = Field(
        default=1,
        ge=1,
        le=1_000_000,
        description="Raise it to rotate this agent's key: the next deploy derives a new key, "
        "revokes the old one at the gateway and gives the workers the new one.",
    )
    models: list[DnsLabel] = Field(
        default_factory=list[str],
        description="Gateway models the key may call. Empty: the agent's model and that "
        "model's fallbacks.",
    )
    max_budget_usd: float | None = Field(
        default=None,
        gt=0,
        description="Spend, USD, the key may reach per `budgetDuration` (LiteLLM's cost "
        "per token; a self-hosted model costs what its model info says, by default 0). "
        "Unset: no budget.",
    )
    budget_duration: BudgetDuration = Field(
        default="30d",
        description="How often the budget resets: a number and s, m, h or d (e.g. 1d, 30d).",
    )
    rpm_limit: int | None = Field(
        default=None, ge=1, description="Requests per minute of the key. Unset: no limit."
    )
    tpm_limit: int | None = Field(
        default=None, ge=1, description="Tokens per minute of the key. Unset: no limit."
    )
    max_parallel_requests: int | None = Field(
        default=None, ge=1, description="Calls in flight at once. Unset: no limit."
    )

    @field_validator("models")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"lists {', '.join(repeated)} more than once")
        return names


# RDS for PostgreSQL 17 minor versions the stack accepts (each one AWS lists for new
# instances; 17.1-17.4 left standard support in May 2026). The instance is pinned to one:
# RDS does not upgrade it on its own (`autoMinorVersionUpgrade` off), a new minor version
# is a reviewed config change.
RDS_ENGINE_VERSIONS = ("17.7", "17.8", "17.9")
RDS_PARAMETER_FAMILY = "postgres17"
RdsEngineVersion = Literal["17.7", "17.8", "17.9"]
RdsInstanceClass = Literal[
    "db.t4g.medium",
    "db.t4g.large",
    "db.m7g.large",
    "db.m7g.xlarge",
    "db.m7g.2xlarge",
    "db.r7g.large",
    "db.r7g.xlarge",
    "db.r7g.2xlarge",
]


class RdsDatabase(Spec):
    """The gateway's Postgres on Amazon RDS (database.mode: rds): one instance in the
    cluster VPC's private subnets, encrypted with the stack's KMS key, TLS required."""

    instance_class: RdsInstanceClass = Field(
        default="db.m7g.large", description="RDS instance class."
    )
    engine_version: RdsEngineVersion = Field(
        default="17.9",
        description="PostgreSQL minor version, pinned (RDS applies no minor upgrade itself).",
    )
    allocated_storage_gib: int = Field(
        default=20, ge=20, le=65536, description="gp3 storage at creation, GiB."
    )
    max_allocated_storage_gib: int = Field(
        default=100,
        ge=20,
        le=65536,
        description="Storage autoscaling ceiling, GiB (equal to allocatedStorageGib: no "
        "autoscaling).",
    )
    multi_az: bool = Field(
        default=True,
        description="A synchronous standby in a second AZ, failed over to automatically.",
    )
    backup_retention_days: int = Field(
        default=7,
        ge=1,
        le=35,
        description="Automated backups (point-in-time restore) kept, days; the policy pack "
        "wants at least 7.",
    )
    backup_window: str = Field(
        default="03:00-04:00",
        pattern=r"^[0-2][0-9]:[0-5][0-9]-[0-2][0-9]:[0-5][0-9]$",
        description="Daily backup window, UTC (hh:mm-hh:mm).",
    )
    maintenance_window: str = Field(
        default="sun:05:00-sun:06:00",
        pattern=r"^(mon|tue|wed|thu|fri|sat|sun):[0-2][0-9]:[0-5][0-9]-"
        r"(mon|tue|wed|thu|fri|sat|sun):[0-2][0-9]:[0-5][0-9]$",
        description="Weekly maintenance window, UTC (ddd:hh:mm-ddd:hh:mm).",
    )
    deletion_protection: bool = Field(
        default=True,
        description="RDS refuses to delete the instance (a `pulumi destroy` fails until it "
        "is turned off).",
    )
    final_snapshot: bool = Field(
        default=True,
        description="Take a snapshot when the instance is deleted (named after the instance).",
    )
    performance_insights: bool = Field(
        default=False,
        description="Performance Insights (7 days, free tier), encrypted with the stack's KMS key.",
    )

    @model_validator(mode="after")
    def _storage(self) -> RdsDatabase:
        if self.max_allocated_storage_gib < self.allocated_storage_gib:
            raise ValueError(
                f"maxAllocatedStorageGib {self.max_allocated_storage_gib} is below "
                f"allocatedStorageGib {self.allocated_storage_gib}"
            )
        return self


class GatewayDatabase(Spec):
    """Postgres for the gateway's keys, budgets and spend (LiteLLM stores them there)."""

    mode: Literal["inCluster", "rds"] = Field(
        default="inCluster",
        description="`inCluster`: a Postgres StatefulSet next to the gateway, reached only "
        "by it (components/gateway/database.py says why the pilot runs it); `rds`: an "
        "Amazon RDS instance in the stack's VPC (`rds`), for production.",
    )
    image: ImageRef = Field(
        default_factory=lambda: ImageRef(repository=POSTGRES_REPOSITORY, tag=POSTGRES_TAG),
        description="The Postgres image (official image, pinned; mode inCluster).",
    )
    exporter_image: ImageRef = Field(
        default_factory=lambda: ImageRef(
            repository=POSTGRES_EXPORTER_REPOSITORY, tag=POSTGRES_EXPORTER_TAG
        ),
        description="The Prometheus postgres-exporter sidecar's image (mode inCluster).",
    )
    storage_gib: int = Field(
        default=10, ge=1, le=16000, description="Data volume, GiB (mode inCluster)."
    )
    memory_mib: int = Field(
        default=512,
        ge=256,
        le=65536,
        description="Memory request and limit, MiB (mode inCluster).",
    )
    rds: RdsDatabase = Field(default_factory=RdsDatabase, description="RDS settings (mode: rds).")


class GatewaySpec(Spec):
    """LiteLLM's proxy in front of the stack's models (`swarmstack:gateway`)."""

    image: ImageRef = Field(
        default_factory=lambda: ImageRef(repository=IMAGE_REPOSITORY, tag=f"v{LITELLM_VERSION}"),
        description=f"The proxy image: LiteLLM's non-root image at {LITELLM_VERSION}, the "
        "release the rendered config was checked against.",
    )
    replicas: int = Field(
        default=2,
        ge=2,
        le=50,
        description="Proxy replicas (at least 2: one may be disrupted while the other "
        "serves; rate limits and spend are shared through Redis).",
    )
    resources: GatewayResources = Field(
        default_factory=GatewayResources, description="The proxy container's requests."
    )
    routes: list[ModelRoute] = Field(
        default_factory=list[ModelRoute],
        description="Limits and fallbacks of the stack's models; a model not listed is "
        "served with no limit and no fallback.",
    )
    managed_models: list[ManagedModel] = Field(
        default_factory=list[ManagedModel],
        description="Models behind providers' APIs (fallback or overflow targets).",
    )
    keys: list[AgentKey] = Field(
        default_factory=list[AgentKey],
        description="One key per agent type (every agent type needs one).",
    )
    num_retries: int = Field(
        default=2,
        ge=0,
        le=5,
        description="Retries of a call that failed before its first token on a server error "
        "or refused connection (never on a timeout, a rate limit, a bad request or a stream "
        "that has started), before its fallbacks.",
    )
    allowed_fails: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Failures of a deployment per minute before it cools down.",
    )
    cooldown_s: int = Field(
        default=30,
        ge=1,
        le=3600,
        description="Seconds a failing deployment is left out before it is tried again.",
    )
    database: GatewayDatabase = Field(
        default_factory=GatewayDatabase, description="Postgres for keys and budgets."
    )
    salt_key_fingerprint: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{16}$",
        description="The first 16 hex characters of the SHA-256 of the `gatewaySaltKey` "
        "secret, recorded at the first deploy (`pulumi up` prints it and refuses to run "
        "without it); a salt key with another fingerprint is refused.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> GatewaySpec:
        for what, names in (
            ("routes[].model", [r.model for r in self.routes]),
            ("managedModels[].name", [m.name for m in self.managed_models]),
            ("keys[].agent", [k.agent for k in self.keys]),
        ):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{what}: {', '.join(repeated)} appear more than once")
        return self

    def route(self, model: str) -> ModelRoute:
        """The route of a stack model (an empty one when the config lists none)."""
        return next((r for r in self.routes if r.model == model), ModelRoute(model=model))

    def fallbacks(self) -> dict[str, list[str]]:
        """Each gateway model's fallbacks, only those that have some."""
        return {r.model: list(r.fallbacks) for r in self.routes if r.fallbacks}

    def key(self, agent: str) -> AgentKey | None:
        return next((k for k in self.keys if k.agent == agent), None)


def provider_key_env(provider: Provider) -> str:
    """The proxy's environment variable holding a provider's API key."""
    return f"{provider.upper()}_API_KEY"


def used_providers(spec: GatewaySpec) -> list[Provider]:
    """The providers the managed models call, in a stable order."""
    wanted = {m.provider for m in spec.managed_models}
    return [p for p in PROVIDER_HOSTS if p in wanted]


def key_models(
    key: AgentKey, agent_model: str, spec: GatewaySpec, degraded_model: str | None = None
) -> list[str]:
    """The gateway models an agent's key may call: those its key lists, else the agent's
    model, its cheaper `degradedModel`, and the fallbacks of each (once, in that order)."""
    if key.models:
        return list(key.models)
    wanted: list[str] = []
    for model in (agent_model, degraded_model):
        if model is not None:
            wanted += [model, *spec.route(model).fallbacks]
    return list(dict.fromkeys(wanted))


def gateway_problems(
    spec: GatewaySpec,
    model_names: Sequence[str],
    agents: Sequence[tuple[str, str]],
    degraded_models: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    """Rules of the gateway against the stack's models and agent types (`agents`: name and
    model of each, in config order; `degraded_models`: agent name -> its `degradedModel`,
    for those that have one): (path from the stack's top level, message)."""
    degraded = dict(degraded_models or {})
    problems: list[tuple[str, str]] = []
    served = [*model_names, *(m.name for m in spec.managed_models)]
    for i, managed in enumerate(spec.managed_models):
        if managed.name in model_names:
            problems.append(
                (
                    f"gateway.managedModels[{i}].name",
                    f"{managed.name!r} is already a stack model's name: a gateway model name "
                    "names one model",
                )
            )
    for i, route in enumerate(spec.routes):
        base = f"gateway.routes[{i}]"
        if route.model not in model_names:
            problems.append(
                (
                    f"{base}.model",
                    f"{route.model!r} is not a model this stack serves (one of "
                    f"{', '.join(model_names)})",
                )
            )
        for j, target in enumerate(route.fallbacks):
            if target == route.model:
                problems.append((f"{base}.fallbacks[{j}]", f"{target!r} falls back to itself"))
            elif target not in served:
                problems.append(
                    (
                        f"{base}.fallbacks[{j}]",
                        f"{target!r} is not a gateway model (one of {', '.join(served)})",
                    )
                )
    agent_names = [name for name, _ in agents]
    for i, key in enumerate(spec.keys):
        base = f"gateway.keys[{i}]"
        if key.agent not in agent_names:
            problems.append(
                (
                    f"{base}.agent",
                    f"{key.agent!r} is not an agent type of this stack (one of "
                    f"{', '.join(agent_names) or 'none'})",
                )
            )
            continue
        agent_model = next(model for name, model in agents if name == key.agent)
        for j, name in enumerate(key.models):
            if name not in served:
                problems.append(
                    (
                        f"{base}.models[{j}]",
                        f"{name!r} is not a gateway model (one of {', '.join(served)})",
                    )
                )
        if key.models and agent_model not in key.models:
            problems.append(
                (
                    f"{base}.models",
                    f"leaves out {agent_model!r}, the model agent {key.agent!r} calls: add it",
                )
            )
        cheaper = degraded.get(key.agent)
        if key.models and cheaper in served and cheaper not in key.models:
            problems.append(
                (
                    f"{base}.models",
                    f"leaves out {cheaper!r}, the degradedModel of agent {key.agent!r}: "
                    "add it (the key could not call it when the budget is spent)",
                )
            )
    for i, (name, model) in enumerate(agents):
        cheaper = degraded.get(name)
        if cheaper is None:
            continue
        path = f"agents[{i}].degradedModel"
        if cheaper == model:
            problems.append(
                (
                    path,
                    f"{cheaper!r} is the agent's own model: name a cheaper gateway model "
                    f"(one of {', '.join(n for n in served if n != model)}) or remove it",
                )
            )
        elif cheaper not in served:
            problems.append(
                (path, f"{cheaper!r} is not a gateway model (one of {', '.join(served)})")
            )
    for i, (name, _) in enumerate(agents):
        if spec.key(name) is None:
            problems.append(
                (
                    f"agents[{i}]",
                    f"agent {name!r} calls its model through the gateway, but gateway.keys "
                    f"has no key for it: add {{agent: {name}}} (with its budget and limits)",
                )
            )
    return problems
