"""Typed specifications of what each component builds.

These pydantic models are the shape of a stack's `Pulumi.<stack>.yaml` (keys in
camelCase, unknown keys rejected). Each field's description feeds the README's
generated config reference, so write it for the people who edit stack files.
Rules that need more than one field of one model live here; rules that cross
components live in `stacks/config.py`.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from components.compute.gpu_operator_chart import CHART_VERSION
from components.compute.instances import CPU_INSTANCE_TYPES, GPU_INSTANCE_TYPES
from components.observe.selection import MONITORING_NAMESPACE
from components.serving.vllm import KvCacheDtype, ToolCallParser, ToolStrictLevel, WeightDtype

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
LABEL_VALUE = r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"

DnsLabel = Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]
LabelValue = Annotated[str, Field(pattern=LABEL_VALUE, max_length=63)]

if TYPE_CHECKING:
    # A Literal built from a runtime list is no static type; type checkers see a str.
    CpuInstanceType = str
    GpuInstanceType = str
else:
    # pydantic validates against (and its JSON schema lists) every known instance type.
    CpuInstanceType = Literal[tuple(CPU_INSTANCE_TYPES)]
    GpuInstanceType = Literal[tuple(GPU_INSTANCE_TYPES)]


def _cidr(value: str) -> str:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a CIDR block (e.g. 203.0.113.0/24): {exc}") from None
    if net.version != 4:
        raise ValueError(f"{value!r} is not an IPv4 CIDR block")
    if net.prefixlen == 0:
        raise ValueError(f"{value!r} opens the whole internet: list specific CIDR blocks")
    return value


Cidr = Annotated[str, AfterValidator(_cidr)]


class Spec(BaseModel):
    """Base of every config model: camelCase keys, nothing unknown, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        validate_default=True,
    )


class CostLabels(Spec):
    """Cost-attribution labels put on every namespace, pod template and AWS resource."""

    team: LabelValue = Field(description="Team that owns and pays for the stack.")
    cost_center: LabelValue = Field(description="Finance cost center the spend is booked to.")
    environment: LabelValue = Field(description="Environment name, e.g. pilot, production.")

    def as_labels(self) -> dict[str, str]:
        return {"team": self.team, "cost-center": self.cost_center, "environment": self.environment}


class ImageRef(Spec):
    """A container image pinned to a version tag (and optionally a digest)."""

    repository: str = Field(
        pattern=r"^[a-z0-9.\-]+(:[0-9]+)?(/[a-z0-9._\-]+)+$|^[a-z0-9._\-]+(/[a-z0-9._\-]+)*$",
        description="Registry and repository, e.g. docker.io/vllm/vllm-openai.",
    )
    tag: str = Field(
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$",
        description="Version tag. `latest` is refused: pin a version.",
    )
    digest: str | None = Field(
        default=None,
        pattern=r"^sha256:[a-f0-9]{64}$",
        description="Optional content digest (sha256:...). Leave unset unless you know it.",
    )

    @field_validator("tag")
    @classmethod
    def _no_latest(cls, tag: str) -> str:
        if tag == "latest":
            raise ValueError("'latest' is not a version: pin a release tag such as v0.32.0")
        return tag

    @property
    def reference(self) -> str:
        ref = f"{self.repository}:{self.tag}"
        return f"{ref}@{self.digest}" if self.digest else ref


class EndpointAccess(Spec):
    """Who may reach the Kubernetes API server."""

    private_only: bool = Field(
        default=False,
        description="Turn the public endpoint off (for CI runners and admins inside the VPC).",
    )
    public_access_cidrs: list[Cidr] = Field(
        default_factory=list,
        description="CIDR allow-list for the public endpoint. Required unless privateOnly; "
        "0.0.0.0/0 is refused.",
    )

    @model_validator(mode="after")
    def _allow_list(self) -> EndpointAccess:
        if not self.private_only and not self.public_access_cidrs:
            raise ValueError(
                "publicAccessCidrs is empty: give at least one CIDR or set privateOnly: true"
            )
        if self.private_only and self.public_access_cidrs:
            raise ValueError("publicAccessCidrs must be empty when privateOnly is true")
        return self


class AddonVersions(Spec):
    """Pinned EKS managed add-on versions (`aws eks describe-addon-versions`)."""

    vpc_cni: str = Field(pattern=r"^v[0-9.]+-eksbuild\.[0-9]+$", description="vpc-cni version.")
    coredns: str = Field(pattern=r"^v[0-9.]+-eksbuild\.[0-9]+$", description="coredns version.")
    kube_proxy: str = Field(
        pattern=r"^v[0-9.]+-eksbuild\.[0-9]+$", description="kube-proxy version."
    )
    ebs_csi_driver: str = Field(
        pattern=r"^v[0-9.]+-eksbuild\.[0-9]+$", description="aws-ebs-csi-driver version."
    )

    @field_validator("vpc_cni")
    @classmethod
    def _enforces_network_policy(cls, version: str) -> str:
        # The network policy agent, which makes NetworkPolicies take effect, came in 1.14.
        release = version[1:].partition("-")[0]
        major, minor = (int(part) for part in release.split(".")[:2])
        if (major, minor) < (1, 14):
            raise ValueError(
                f"{version} cannot enforce NetworkPolicies: use v1.14.0 or later (the network "
                "policy agent the stack turns on came in 1.14)"
            )
        return version


class SystemPool(Spec):
    """The untainted node group for CoreDNS, operators and agent workers."""

    instance_type: CpuInstanceType = Field(description="EC2 instance type.")
    min_size: int = Field(ge=1, le=100, description="Minimum nodes.")
    max_size: int = Field(ge=1, le=100, description="Maximum nodes.")
    disk_size_gib: int = Field(default=100, ge=20, le=2000, description="Root volume, GiB.")

    @model_validator(mode="after")
    def _sizes(self) -> SystemPool:
        if self.min_size > self.max_size:
            raise ValueError(f"minSize {self.min_size} is above maxSize {self.max_size}")
        return self


class SandboxPool(Spec):
    """Nodes that run agent tools under gVisor (`sandbox: gvisor` agent types), tainted so
    nothing else lands there (components/compute/sandbox.py)."""

    instance_type: CpuInstanceType = Field(description="EC2 instance type.")
    min_size: int = Field(ge=0, le=100, description="Minimum nodes.")
    max_size: int = Field(ge=1, le=100, description="Maximum nodes.")
    disk_size_gib: int = Field(default=100, ge=20, le=2000, description="Root volume, GiB.")
    gvisor_release: str = Field(
        default="20260928.0",
        pattern=r"^[0-9]{8}\.[0-9]+$",
        description="gVisor point release the nodes install (`yyyymmdd.N`, the release's "
        "path in gVisor's release bucket; from 20260907 on a release is one tarball).",
    )

    @model_validator(mode="after")
    def _sizes(self) -> SandboxPool:
        if self.min_size > self.max_size:
            raise ValueError(f"minSize {self.min_size} is above maxSize {self.max_size}")
        return self


class ExistingNetwork(Spec):
    """The VPC of an existing cluster, for data stores AWS runs (MSK, ElastiCache)."""

    vpc_id: str = Field(pattern=r"^vpc-[0-9a-f]{8,17}$", description="VPC of the cluster.")
    private_subnet_ids: list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]] = Field(
        min_length=2,
        max_length=6,
        description="Private subnets the managed stores use, one per AZ (their count is the "
        "AZ count of the data-plane rules).",
    )
    node_security_group_id: str = Field(
        pattern=r"^sg-[0-9a-f]{8,17}$",
        description="Security group of the cluster's nodes: the only source the stores admit.",
    )
    kms_key_arn: str = Field(
        pattern=r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$",
        description="KMS key for the stores' encryption at rest.",
    )


class ClusterSpec(Spec):
    """The Kubernetes cluster: a new EKS cluster, or an existing one from a kubeconfig."""

    mode: Literal["eks", "existing"] = Field(
        default="eks",
        description="`eks` builds VPC + EKS; `existing` deploys onto the kubeconfig context "
        "`kubeconfigContext` and builds no AWS resources.",
    )
    name: DnsLabel = Field(description="Cluster name (also the prefix of AWS resource names).")
    kubernetes_version: Literal["1.31", "1.32", "1.33", "1.34"] = Field(
        default="1.33", description="EKS Kubernetes minor version."
    )
    kubeconfig_context: str | None = Field(
        default=None, description="kubeconfig context of an existing cluster (mode: existing)."
    )
    vpc_cidr: Cidr = Field(default="10.40.0.0/16", description="VPC CIDR block (/16 to /20).")
    availability_zones: int = Field(
        default=2, ge=2, le=6, description="How many AZs the VPC spans (at least 2)."
    )
    nat_gateways: Literal["single", "perAz"] = Field(
        default="single",
        description="One NAT gateway for the VPC, or one per AZ (survives an AZ outage).",
    )
    endpoint: EndpointAccess = Field(description="API server endpoint access.")
    admin_role_arns: list[Annotated[str, Field(pattern=r"^arn:aws:iam::[0-9]{12}:role/.+$")]] = (
        Field(
            default_factory=list,
            description="IAM roles granted cluster-admin through EKS access entries.",
        )
    )
    addons: AddonVersions = Field(description="Pinned EKS add-on versions.")
    system_pool: SystemPool = Field(description="The system node group.")
    sandbox_pool: SandboxPool | None = Field(
        default=None,
        description="The gVisor node group for `sandbox: gvisor` agent types (mode eks "
        "only; unset: no sandboxed agents).",
    )
    log_retention_days: Literal[7, 14, 30, 60, 90, 180, 365] = Field(
        default=90, description="Retention of the control-plane log group, days."
    )
    network: ExistingNetwork | None = Field(
        default=None,
        description="VPC facts of an existing cluster (mode: existing), needed only by "
        "`dataPlane.kafka.mode: msk`, `dataPlane.redis.mode: elasticache` and "
        "`gateway.database.mode: rds`.",
    )

    @model_validator(mode="after")
    def _mode(self) -> ClusterSpec:
        if self.mode == "existing" and not self.kubeconfig_context:
            raise ValueError("mode 'existing' needs kubeconfigContext")
        if self.mode == "eks" and self.network is not None:
            raise ValueError("network is only used with mode 'existing' (eks builds its own VPC)")
        if self.mode == "eks" and self.kubeconfig_context:
            raise ValueError("kubeconfigContext is only used with mode 'existing'")
        if self.mode == "existing" and self.sandbox_pool is not None:
            raise ValueError(
                "sandboxPool needs mode 'eks': the stack installs gVisor on nodes it builds"
            )
        prefix = ipaddress.ip_network(self.vpc_cidr).prefixlen
        if not 16 <= prefix <= 20:
            raise ValueError(f"vpcCidr {self.vpc_cidr} is a /{prefix}: use a /16 to /20")
        return self


class MigSpec(Spec):
    """The MIG layout applied to every GPU of a pool's nodes."""

    profiles: list[str] = Field(
        min_length=1,
        max_length=7,
        description="MIG profiles per GPU, one entry per instance, e.g. [3g.40gb, 3g.40gb].",
    )


class GpuPoolSpec(Spec):
    """One EKS managed node group of GPU instances."""

    name: DnsLabel = Field(description="Pool name; also its node label `swarmstack.io/pool`.")
    instance_type: GpuInstanceType = Field(description="EC2 GPU instance type.")
    min_size: int = Field(ge=0, le=100, description="Minimum nodes.")
    max_size: int = Field(ge=1, le=100, description="Maximum nodes.")
    disk_size_gib: int = Field(default=500, ge=100, le=16000, description="Root volume, GiB.")
    availability_zone: str | None = Field(
        default=None,
        pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9][a-z]$",
        description="Pin the pool to one AZ (e.g. where a capacity reservation lives).",
    )
    capacity_reservation_id: str | None = Field(
        default=None,
        pattern=r"^cr-[0-9a-f]{17}$",
        description="On-demand capacity reservation (or capacity block) to launch into.",
    )
    mig: MigSpec | None = Field(default=None, description="MIG layout; omit for whole GPUs.")
    priority: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Placement preference: a model without `pool` goes to the pool of highest "
        "priority that can hold it (equal priorities: the cheapest per replica), and the "
        "Cluster Autoscaler's priority expander grows pools in the same order.",
    )

    @model_validator(mode="after")
    def _sizes(self) -> GpuPoolSpec:
        if self.min_size > self.max_size:
            raise ValueError(f"minSize {self.min_size} is above maxSize {self.max_size}")
        if self.capacity_reservation_id and not self.availability_zone:
            raise ValueError(
                "capacityReservationId needs availabilityZone (reservations are zonal)"
            )
        return self


class GpuOperatorSpec(Spec):
    """The NVIDIA GPU operator Helm release."""

    chart_version: str = Field(
        description=f"gpu-operator chart version. Only {CHART_VERSION} is accepted: the Helm "
        "values swarmstack renders were checked against that release's chart.",
        json_schema_extra={"enum": [CHART_VERSION]},
    )
    repository: str = Field(
        default="https://helm.ngc.nvidia.com/nvidia", description="Helm repository URL."
    )
    namespace: DnsLabel = Field(default="gpu-operator", description="Namespace of the operator.")
    mig_strategy: Literal["single", "mixed"] = Field(
        default="mixed",
        description="`single`: one profile per node, advertised as nvidia.com/gpu; "
        "`mixed`: several profiles, advertised as nvidia.com/mig-<profile>.",
    )

    @field_validator("chart_version")
    @classmethod
    def _checked_chart(cls, version: str) -> str:
        if version != CHART_VERSION:
            raise ValueError(
                f"{version!r} is not the gpu-operator chart version swarmstack's Helm values "
                f"were checked against ({CHART_VERSION}); another version needs its values.yaml "
                "read again and components/compute/gpu_operator_chart.py updated first"
            )
        return version


class Replicas(Spec):
    min: int = Field(ge=0, le=100, description="Replicas at the least.")
    max: int = Field(ge=1, le=100, description="Replicas at the most.")

    @model_validator(mode="after")
    def _order(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class Architecture(Spec):
    """What the memory-fit check needs to know about a model."""

    parameters_b: float = Field(gt=0, le=2000, description="Parameters, billions.")
    layers: int = Field(ge=1, le=512, description="Transformer layers.")
    kv_heads: int = Field(ge=1, le=256, description="Key/value heads (GQA groups).")
    head_dim: int = Field(ge=16, le=1024, description="Dimension of one attention head.")
    dtype: WeightDtype = Field(default="bfloat16", description="Weight dtype.")


class VllmSettings(Spec):
    """vLLM engine settings rendered into its command line."""

    max_num_seqs: int = Field(default=64, ge=1, le=1024, description="Concurrent sequences.")
    max_model_len: int = Field(ge=256, le=1_048_576, description="Context length, tokens.")
    gpu_memory_utilization: float = Field(
        default=0.9, ge=0.5, le=0.98, description="Share of device memory vLLM may use."
    )
    enable_prefix_caching: bool = Field(default=True, description="Automatic prefix caching.")
    kv_cache_dtype: KvCacheDtype = Field(default="auto", description="KV cache dtype.")
    tool_call_parser: ToolCallParser | None = Field(
        default=None,
        description="vLLM tool-call parser for the model's chat format (hermes for Qwen2.5, "
        "llama3_json for Llama 3.x); agents' tool turns need it. Unset: no tool calling.",
    )
    tool_strict_level: ToolStrictLevel = Field(
        default="auto",
        description="How far vLLM constrains tool calls with guided decoding, whatever the "
        "client asks: `auto` (vLLM's default) only as `tool_choice` and each tool's `strict` "
        "flag ask; `function` always constrains the call itself (name and JSON envelope); "
        "`parameter` also pins the arguments to each tool's JSON schema, as if every tool "
        "were strict. Needs toolCallParser.",
    )

    @model_validator(mode="after")
    def _strictness_needs_a_parser(self) -> VllmSettings:
        if self.tool_strict_level != "auto" and self.tool_call_parser is None:
            raise ValueError(
                f"toolStrictLevel {self.tool_strict_level!r} needs toolCallParser: without a "
                "parser vLLM serves no tool calls to constrain"
            )
        return self


class Slo(Spec):
    """Latency objectives of a model; carried as annotations for policies and dashboards."""

    tier: Literal["interactive", "batch"] = Field(description="Latency tier.")
    ttft_p99_ms: int = Field(ge=1, le=600_000, description="P99 time to first token, ms.")
    itl_p99_ms: int = Field(ge=1, le=60_000, description="P99 inter-token latency, ms.")
    e2e_p99_s: int = Field(
        alias="e2eP99S", ge=1, le=3600, description="P99 end-to-end request latency, s."
    )


class S3Weights(Spec):
    source: Literal["s3"] = Field(description="Stream weights from S3 through an IRSA role.")
    uri: str = Field(
        pattern=r"^s3://[a-z0-9.\-]{3,63}(/[^\s]*)?$",
        description="s3://bucket/prefix. The bucket must be listed in `external.s3Buckets`: "
        "`pulumi up` refuses any other.",
    )

    @property
    def bucket(self) -> str:
        return self.uri.removeprefix("s3://").partition("/")[0]


class VolumeWeights(Spec):
    source: Literal["pvc"] = Field(description="Weights on a PersistentVolumeClaim.")
    claim_name: DnsLabel = Field(description="Existing PVC in the models namespace.")
    path: str = Field(default="/", pattern=r"^/.*$", description="Model folder inside the claim.")


class HubWeights(Spec):
    source: Literal["huggingface"] = Field(
        description="Download from the Hugging Face Hub at start (needs egress)."
    )


Weights = Annotated[S3Weights | VolumeWeights | HubWeights, Field(discriminator="source")]


class CanarySpec(Spec):
    """A second version of a model, served next to it and sent a share of its requests."""

    weight: int = Field(
        ge=0,
        le=100,
        description="Percent of the model's requests the mesh routes to the canary (0-100); "
        "the stable version gets the rest.",
    )
    replicas: int = Field(default=1, ge=1, le=100, description="Canary replicas (fixed).")
    image: ImageRef | None = Field(
        default=None, description="vLLM image of the canary (unset: `images.vllm`)."
    )
    vllm: VllmSettings | None = Field(
        default=None, description="vLLM engine settings of the canary (unset: the model's)."
    )


class ModelSpec(Spec):
    """One model served by vLLM."""

    name: DnsLabel = Field(description="Deployment/Service name.")
    model: str = Field(
        pattern=r"^[A-Za-z0-9._\-]+/[A-Za-z0-9._\-]+$",
        description="Model id as served (Hugging Face org/name).",
    )
    pool: DnsLabel | None = Field(
        default=None,
        description="Pin the model to this GPU pool. Unset: the placement planner picks the "
        "pool (highest `gpuPools[].priority`, then the cheapest replica, with room for "
        "`replicas.max`) and lets replicas overflow onto every other pool that offers the "
        "same slice.",
    )
    mig_profile: str | None = Field(
        default=None,
        description="MIG profile of one replica (MIG pools only). Unset: the smallest profile "
        "of the pool's layout that holds the model at its `maxModelLen`.",
    )
    tensor_parallel_size: int = Field(
        default=1, ge=1, le=8, description="GPUs per replica (1 on MIG pools)."
    )
    replicas: Replicas = Field(description="Replica range.")
    architecture: Architecture = Field(description="Model architecture, for memory fit.")
    vllm: VllmSettings = Field(description="vLLM engine settings.")
    weights: Weights = Field(description="Where weights come from.")
    slo: Slo = Field(description="Latency objectives.")
    model_load_timeout_s: int = Field(
        default=900, ge=30, le=7200, description="Time the startup probe allows for loading, s."
    )
    cpu: str = Field(default="4", pattern=r"^[0-9]+(m)?$", description="CPU request per replica.")
    memory_gib: int = Field(default=32, ge=1, le=2048, description="Memory per replica, GiB.")
    shm_gib: int = Field(default=8, ge=1, le=512, description="/dev/shm size, GiB.")
    canary: CanarySpec | None = Field(
        default=None,
        description="A canary version (another image or vLLM settings) with its share of "
        "requests: a second Deployment `<name>-canary` and a weighted route.",
    )


class Namespaces(Spec):
    models: DnsLabel = Field(default="swarmstack-models", description="Namespace of model servers.")
    agents: DnsLabel = Field(default="swarmstack-agents", description="Namespace of agent workers.")
    data: DnsLabel = Field(
        default="swarmstack-data", description="Namespace of the data stores and their operator."
    )
    monitoring: DnsLabel = Field(
        default=MONITORING_NAMESPACE,
        description="Namespace of the monitoring release (Prometheus, Alertmanager, Grafana); "
        "the other namespaces admit its Prometheus on their metrics ports.",
    )

    @model_validator(mode="after")
    def _distinct(self) -> Namespaces:
        names = [self.models, self.agents, self.data, self.monitoring]
        if len(set(names)) != len(names):
            raise ValueError(
                f"models, agents, data and monitoring must be different namespaces ({names})"
            )
        reserved = {"default", "kube-system", "kube-public", "kube-node-lease", "cert-manager"}
        for name in names:
            if name in reserved:
                raise ValueError(f"{name!r} is reserved by Kubernetes")
        return self
