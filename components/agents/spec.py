"""The agent types of a stack (`agents:` in `Pulumi.<stack>.yaml`).

An agent type is either `http` (sessions over the worker's HTTP API) or `events`
(tasks from a Kafka topic, one result per task on a results topic, records it
cannot use on a dead-letter topic). The data plane reads these to declare
topics, Kafka users and their ACLs; the agent runtime deploys the workers.

Topic, group and user names derive from the agent's name, so one name change
moves all of them together: `<name>.tasks`, `<name>.results`,
`<name>.dead-letter`, consumer group `<name>.workers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from components.specs import DnsLabel, ImageRef, LabelValue, Replicas, Spec

# Kafka keeps a topic's data for at least this long; shorter retention loses tasks
# that wait behind a stalled consumer over a weekend.
MIN_RETENTION_HOURS = 1
MAX_RETENTION_HOURS = 24 * 365

# The worker's tools (images/agent-worker/agent_worker/state.py TOOL_NAMES; a test holds
# the two equal).
ToolName = Literal["calculator", "clock", "retrieve", "ledger"]
TOOL_NAMES: tuple[ToolName, ...] = ("calculator", "clock", "retrieve", "ledger")

# A DNS name outside the cluster, optionally a wildcard for its subdomains (`*.example.com`).
ExternalHost = Annotated[
    str,
    Field(
        pattern=r"^(\*\.)?([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
        max_length=253,
    ),
]

TopicRole = Literal["tasks", "results", "deadLetter"]
TOPIC_ROLES: tuple[TopicRole, ...] = ("tasks", "results", "deadLetter")


class TopicSpec(Spec):
    """One Kafka topic of an events agent."""

    partitions: int = Field(
        ge=1,
        le=1000,
        description="Partitions. A tasks topic needs at least as many as its consumer's "
        "maximum replicas (KEDA never scales a consumer group past them).",
    )
    retention_hours: int = Field(
        ge=MIN_RETENTION_HOURS,
        le=MAX_RETENTION_HOURS,
        description="How long records are kept, hours (`retention.ms`).",
    )
    cleanup_policy: Literal["delete", "compact"] = Field(
        default="delete",
        description="`delete` drops records older than the retention; `compact` keeps the "
        "last record of every key (results keyed by task id).",
    )


class AgentTopics(Spec):
    """The three topics of an events agent."""

    tasks: TopicSpec = Field(description="Tasks the agent consumes.")
    results: TopicSpec = Field(description="One result per task, keyed by task id.")
    dead_letter: TopicSpec = Field(
        description="Records the agent could not use (no task id, not JSON), with the reason."
    )

    def by_role(self) -> dict[TopicRole, TopicSpec]:
        return {"tasks": self.tasks, "results": self.results, "deadLetter": self.dead_letter}


class AgentResources(Spec):
    """What one worker container requests (the memory request is also its limit)."""

    cpu_millis: int = Field(
        default=500, ge=50, le=16000, description="CPU request, millicores (no CPU limit)."
    )
    memory_mib: int = Field(
        default=512, ge=128, le=65536, description="Memory request and limit, MiB."
    )


class AgentBudgets(Spec):
    """Token budgets (input + output tokens) the worker enforces; unset: no budget."""

    session_tokens: int | None = Field(
        default=None, ge=1, description="Tokens one session may spend over its life."
    )
    user_tokens_per_day: int | None = Field(
        default=None, ge=1, description="Tokens one user may spend per UTC day on this agent."
    )
    agent_tokens_per_day: int | None = Field(
        default=None,
        ge=1,
        description="Tokens the agent type may spend per UTC day, across its replicas.",
    )
    degrade_at: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Used ratio of any budget from which new turns run degraded (fewer "
        "steps, shorter answers); at 1 they are refused.",
    )


class AgentCanarySpec(Spec):
    """A second version of an agent type's worker, run beside the stable one."""

    tag: str = Field(
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$",
        description="Image tag of the canary (same repository as the agent's image).",
    )
    weight: int = Field(
        ge=0,
        le=100,
        description="Percent of the agent's traffic the canary gets. http agents: the mesh "
        "routes that share of calls to the agent's Service to the canary. events agents "
        "have no route: the consumer group splits the partitions by replicas, so the "
        "canary's share is its replicas over all consumers and `weight` is not applied.",
    )
    replicas: int = Field(default=1, ge=1, le=100, description="Canary replicas (fixed).")

    @field_validator("tag")
    @classmethod
    def _no_latest(cls, tag: str) -> str:
        if tag == "latest":
            raise ValueError("'latest' is not a version: pin a release tag")
        return tag


class AgentSpec(Spec):
    """One agent type."""

    name: DnsLabel = Field(description="Agent type name; prefixes its topics, group and user.")
    mode: Literal["http", "events"] = Field(
        description="`http`: sessions over HTTP; `events`: tasks from Kafka."
    )
    replicas: Replicas = Field(description="Worker replica range (the autoscaler's bounds).")
    tier: Literal["interactive", "batch"] = Field(
        description="`interactive` (people wait on it: never scaled to zero, scheduled and "
        "kept before batch) or `batch` (queued work)."
    )
    model: DnsLabel = Field(description="The stack model (`models[].name`) the agent calls.")
    degraded_model: DnsLabel | None = Field(
        default=None,
        description="The cheaper gateway model (a stack model's `models[].name` or a "
        "`gateway.managedModels[].name`, not `model`) a turn goes on with when the gateway "
        "says a budget is spent (`MODEL_DEGRADED_NAME`); only with `gateway:`. The agent's "
        "key may call it: a key without `models` gets it with its fallbacks, a key that "
        "lists `models` must list it. It helps when the spent budget is the model's own "
        "(a deployment budget at the gateway); a spent key budget (`maxBudgetUsd`) refuses "
        "every model of the key. Unset: such a turn fails with the gateway's reason.",
    )
    image: ImageRef | None = Field(
        default=None,
        description="The worker image for this agent type; unset: `images.agentWorker`.",
    )
    tools: list[ToolName] = Field(
        default_factory=list[ToolName],
        description="The worker tools this agent's turns may call (calculator, clock, "
        "retrieve, ledger); a turn asking for another is refused. Empty: none.",
    )
    resources: AgentResources = Field(
        default_factory=AgentResources, description="The worker container's requests."
    )
    sandbox: Literal["runc", "gvisor"] = Field(
        default="runc",
        description="`runc` (the node's default runtime) or `gvisor` (RuntimeClass `gvisor`, "
        "for agents whose tools run untrusted code; the cluster must offer that runtime).",
    )
    grace_period_s: int = Field(
        default=25,
        ge=5,
        le=600,
        description="Seconds the worker has after SIGTERM to finish or checkpoint its turns "
        "(`GRACE_PERIOD_S`); the pod's termination grace period adds the preStop delay and "
        "a margin.",
    )
    budgets: AgentBudgets = Field(
        default_factory=AgentBudgets, description="Token budgets (none by default)."
    )
    team: LabelValue | None = Field(
        default=None,
        description="The team usage records are booked to (`AGENT_TEAM`, the pods' `team` "
        "label); unset: `costLabels.team`.",
    )
    topics: AgentTopics | None = Field(
        default=None, description="Kafka topics (events agents only, and required for them)."
    )
    egress: list[ExternalHost] = Field(
        default_factory=list[str],
        description="External hosts the agent type may call over HTTPS (port 443), e.g. "
        "api.example.com or *.example.com. The mesh sends nothing else out of the cluster "
        "(REGISTRY_ONLY): each host gets a ServiceEntry only this agent type's proxies see.",
    )

    canary: AgentCanarySpec | None = Field(
        default=None,
        description="A canary version of the worker: Deployment `agent-<name>-canary` with "
        "the canary's image tag and fixed replicas; http agents get a weighted route, events "
        "agents split by replicas (see `canary.weight`).",
    )

    @field_validator("egress")
    @classmethod
    def _unique_hosts(cls, hosts: list[str]) -> list[str]:
        repeated = sorted({h for h in hosts if hosts.count(h) > 1})
        if repeated:
            raise ValueError(f"lists {', '.join(repeated)} more than once")
        internal = [h for h in hosts if h.endswith(".cluster.local")]
        if internal:
            raise ValueError(
                f"{', '.join(internal)}: in-cluster Services are reached without egress "
                "entries; list external hosts only"
            )
        return hosts

    @field_validator("tools")
    @classmethod
    def _unique_tools(cls, tools: list[ToolName]) -> list[ToolName]:
        repeated = sorted({t for t in tools if tools.count(t) > 1})
        if repeated:
            raise ValueError(f"lists {', '.join(repeated)} more than once")
        return tools

    @model_validator(mode="after")
    def _topics_match_mode(self) -> AgentSpec:
        if self.mode == "events" and self.topics is None:
            raise ValueError(f"agent {self.name!r} is mode events: give its topics")
        if self.mode == "http" and self.topics is not None:
            raise ValueError(f"agent {self.name!r} is mode http: it has no topics (remove them)")
        return self


@dataclass(frozen=True)
class AgentKafkaNames:
    """The Kafka names of one events agent: topics, consumer group and user."""

    tasks: str
    results: str
    dead_letter: str
    group: str
    user: str

    def topic(self, role: TopicRole) -> str:
        return {"tasks": self.tasks, "results": self.results, "deadLetter": self.dead_letter}[role]


def kafka_names(agent: AgentSpec) -> AgentKafkaNames:
    """Topic, group and user names of an agent (valid Kafka and Kubernetes names)."""
    return AgentKafkaNames(
        tasks=f"{agent.name}.tasks",
        results=f"{agent.name}.results",
        dead_letter=f"{agent.name}.dead-letter",
        group=f"{agent.name}.workers",
        user=f"agent-{agent.name}",
    )


def events_agents(agents: Sequence[AgentSpec]) -> list[AgentSpec]:
    return [a for a in agents if a.mode == "events"]


def agent_problems(agents: Sequence[AgentSpec]) -> list[tuple[str, str]]:
    """Rules over the agent list: (path from the stack's top level, message)."""
    problems: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for i, agent in enumerate(agents):
        if agent.name in seen:
            problems.append(
                (
                    f"agents[{i}].name",
                    f"{agent.name!r} is already the name of agents[{seen[agent.name]}]: "
                    "agent names must be unique",
                )
            )
        seen.setdefault(agent.name, i)
    return problems


AGENT_COMPONENT = "agent"  # app.kubernetes.io/component of every agent worker pod
WORKER_PORT = 8080  # the worker image's WORKER_PORT: API, probes and /metrics
# The worker container's command, rendered so a pod never depends on an image default;
# the image's CMD is the same (tests/test_dockerfiles.py holds them equal).
WORKER_COMMAND: tuple[str, ...] = ("python", "-m", "agent_worker")
AGENT_LABEL = "swarmstack.io/agent"  # the agent type a pod belongs to


def workload_name(agent: AgentSpec) -> str:
    """The name of an agent type's Deployment, Service, ServiceAccount and PDB (in the
    agents namespace); the mesh, the autoscaler and the monitors refer to it by this."""
    return f"agent-{agent.name}"


def selector_labels(agent: AgentSpec) -> dict[str, str]:
    """The labels that select an agent type's pods."""
    return {"app.kubernetes.io/name": workload_name(agent), AGENT_LABEL: agent.name}


def canary_name(agent: AgentSpec) -> str:
    """The canary's Deployment and PDB name."""
    return f"{workload_name(agent)}-canary"


def canary_selector_labels(agent: AgentSpec) -> dict[str, str]:
    """The canary's pods: their own name, so neither Deployment selects the other's pods."""
    return {"app.kubernetes.io/name": canary_name(agent), AGENT_LABEL: agent.name}


def type_selector(agent: AgentSpec) -> dict[str, str]:
    """Every pod of the agent type: both versions when it has a canary (its Service, Sidecar
    and NetworkPolicies), else the stable pods as before."""
    if agent.canary is None:
        return selector_labels(agent)
    return {AGENT_LABEL: agent.name}
