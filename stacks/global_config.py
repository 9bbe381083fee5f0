"""The global stack of a multi-cluster deployment: its typed config (`swarmstack:global`).

A stack whose file sets `swarmstack:global` is the global composition of the same program
(stacks/global_composition.py): it declares no cluster, only what spans the regions (the
gateway records and their health checks, the Kafka replication between the regions' MSK
clusters, the image replication), and reads each region through a StackReference whose
stack name is `global.regions[].stack`."""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import Field, ValidationError

from components.specs import CostLabels, Spec
from stacks.config import ConfigError, Phase, Problem, _problem  # pyright: ignore[reportPrivateUsage]

GLOBAL_KEY = "global"
# The stack names a StackReference takes: `stack`, or `organization/project/stack`.
STACK_NAME = r"^([A-Za-z0-9_.-]+/){0,2}[A-Za-z0-9_.-]+$"


class GlobalRegion(Spec):
    """One region: a regional stack (config `regional`) read through a StackReference."""

    name: str = Field(
        pattern=r"^[a-z][a-z0-9]{1,14}$",
        description="The region's short name; the regional stack's `regional.alias` must "
        "be the same.",
    )
    stack: str = Field(
        pattern=STACK_NAME,
        description="The regional stack's name for `pulumi.StackReference`: `scale-east`, "
        "or `organization/swarmstack/scale-east` on a backend with organizations. The offline "
        "plan plans it first (its last path segment names `stacks/Pulumi.<stack>.yaml`).",
    )
    role: Literal["primary", "secondary"] = Field(
        description="`primary`: its tasks are replicated to every secondary for failover, "
        "and its image registry is the source of the image replication. One region is "
        "primary."
    )


class GlobalRouting(Spec):
    """Route 53 in front of the regional gateways."""

    zone_name: str = Field(
        pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
        description="The private hosted zone the gateway records live in, associated with "
        "every region's VPC (e.g. `agents.example.internal`).",
    )
    record: str = Field(
        default="gateway",
        pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        description="The gateway's name in the zone: `<record>.<zoneName>` answers with the "
        "closest healthy region (latency records); `<region>.<record>.<zoneName>` with "
        "that region, failing over to another (failover records).",
    )
    insufficient_data_health_status: Literal["Healthy", "Unhealthy", "LastKnownStatus"] = Field(
        default="LastKnownStatus",
        description="What a health check reports while its CloudWatch alarm has too little "
        "data (a new alarm, a metric gap).",
    )


class GlobalKafka(Spec):
    """Kafka between the regions' MSK clusters (MSK Replicator, IAM auth on both ends)."""

    tasks: Literal["activePassive", "activeActive"] = Field(
        default="activePassive",
        description="`activePassive`: each region consumes only its own tasks topics; "
        "the primary's are replicated to every secondary (prefixed with the source "
        "cluster's alias, read only on failover). `activeActive` is refused: the result "
        "ledger is regional, so a task consumed in two regions would run twice.",
    )
    compression: Literal["NONE", "GZIP", "SNAPPY", "LZ4", "ZSTD"] = Field(
        default="LZ4", description="Compression of the records the replicators write."
    )
    starting_position: Literal["LATEST", "EARLIEST"] = Field(
        default="EARLIEST",
        description="Where a new replicator starts in each topic (EARLIEST: nothing kept is "
        "missed).",
    )


class GlobalSpec(Spec):
    regions: list[GlobalRegion] = Field(
        min_length=2, description="The regional stacks, one of them primary."
    )
    routing: GlobalRouting = Field(description="Route 53 records to the regional gateways.")
    kafka: GlobalKafka = Field(
        default_factory=GlobalKafka, description="Replication between the regions' Kafka."
    )


class GlobalStackConfig(Spec):
    """A global stack's `swarmstack:` keys: no cluster, only what spans the regions."""

    phase: Phase = Field(description="The stack's phase (its policy levels).")
    cost_labels: CostLabels = Field(description="Cost-attribution tags.")
    global_: GlobalSpec = Field(
        alias=GLOBAL_KEY, description='The regions and what spans them (README "Multi-cluster").'
    )

    @property
    def primary(self) -> GlobalRegion:
        return next(r for r in self.global_.regions if r.role == "primary")

    @property
    def secondaries(self) -> list[GlobalRegion]:
        return [r for r in self.global_.regions if r.role == "secondary"]


def is_global(raw: dict[str, Any]) -> bool:
    return GLOBAL_KEY in raw


def global_problems(config: GlobalStackConfig) -> list[Problem]:
    spec = config.global_
    problems: list[Problem] = []
    primaries = [i for i, r in enumerate(spec.regions) if r.role == "primary"]
    if len(primaries) != 1:
        problems.append(
            Problem(
                "global.regions",
                f"{len(primaries)} regions with role primary: exactly one region is primary "
                "(it receives no replicated tasks; the others fail over to it and it to them)",
            )
        )
    for field, values in (
        ("name", [r.name for r in spec.regions]),
        ("stack", [r.stack for r in spec.regions]),
    ):
        repeated = sorted(v for v, n in Counter(values).items() if n > 1)
        for value in repeated:
            problems.append(
                Problem(f"global.regions[].{field}", f"{value!r} is listed more than once")
            )
    if spec.kafka.tasks == "activeActive":
        problems.append(
            Problem(
                "global.kafka.tasks",
                "'activeActive' is refused: tasks replicated both ways are consumed in both "
                "regions and would run twice, while each region's result ledger (its results "
                "topic and session store) only sees its own runs. Use 'activePassive': each "
                "region consumes its own tasks, the primary's are replicated to the others "
                "for failover",
            )
        )
    return problems


def load_global(raw: dict[str, Any], source: str) -> GlobalStackConfig:
    """Validate a global stack's config; raise ConfigError naming every bad path."""
    try:
        config = GlobalStackConfig.model_validate(raw)
    except ValidationError as exc:
        schema = GlobalStackConfig.model_json_schema(by_alias=True)
        raise ConfigError([_problem(e, schema) for e in exc.errors()], source) from None
    problems = global_problems(config)
    if problems:
        raise ConfigError(problems, source)
    return config
