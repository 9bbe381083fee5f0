"""How a swarmstack rule is written: one validator, one kebab-case name, a remediation hint.

Rules depend on pulumi-policy and the standard library only, so the Pulumi CLI
can load the pack from `policies/requirements.txt` alone. Validators read
Kubernetes' and the controllers' defaults where a field is absent (a missing
namespace is `default`, a container without securityContext runs as the
image's user), and tolerate values unknown at preview: reading one raises the
SDK's UnknownValueError, which the analyzer reports as "could not run".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

Level = Literal["advisory", "mandatory", "disabled"]
Domain = Literal[
    "kubernetes-security",
    "supply-chain",
    "gpu",
    "traffic",
    "scaling",
    "data",
    "aws",
    "cost",
    "observability",
]

ResourceCheck = Callable[[ResourceValidationArgs, ReportViolation], None]
StackCheck = Callable[[StackValidationArgs, ReportViolation], None]

KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Rule:
    """One policy: what it checks, why, how to fix it, and its default level."""

    name: str
    domain: Domain
    description: str
    remediation: str
    level: Level = "mandatory"
    check: ResourceCheck | None = None
    check_stack: StackCheck | None = None
    config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict[str, Mapping[str, Any]])

    def __post_init__(self) -> None:
        if not KEBAB.match(self.name):
            raise ValueError(f"rule name {self.name!r} is not kebab-case")
        if (self.check is None) == (self.check_stack is None):
            raise ValueError(f"rule {self.name} needs exactly one of check / check_stack")

    @property
    def scope(self) -> str:
        return "resource" if self.check is not None else "stack"

    def defaults(self) -> dict[str, Any]:
        return {k: v["default"] for k, v in self.config.items() if "default" in v}

    def policy(self, level: Level | None = None) -> Policy:
        """The pulumi-policy object the Pulumi CLI runs, at `level` (default: the rule's own)."""
        schema = (
            PolicyConfigSchema(properties={k: dict(v) for k, v in self.config.items()})
            if self.config
            else None
        )
        enforcement = EnforcementLevel(level or self.level)
        if self.check is not None:
            return ResourceValidationPolicy(
                name=self.name,
                description=self.description,
                validate=_with_defaults_resource(self.check, self.defaults()),
                enforcement_level=enforcement,
                config_schema=schema,
                remediation_steps=self.remediation,
            )
        assert self.check_stack is not None
        return StackValidationPolicy(
            name=self.name,
            description=self.description,
            validate=_with_defaults_stack(self.check_stack, self.defaults()),
            enforcement_level=enforcement,
            config_schema=schema,
            remediation_steps=self.remediation,
        )


def _with_defaults_resource(check: ResourceCheck, defaults: dict[str, Any]) -> ResourceCheck:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        config = {**defaults, **dict(args.get_config())}
        merged = ResourceValidationArgs(
            args.resource_type,
            args.props,
            args.urn,
            args.name,
            args.opts,
            args.provider,
            config,
            args.stack_tags,
        )
        check(merged, report)

    return validate


def _with_defaults_stack(check: StackCheck, defaults: dict[str, Any]) -> StackCheck:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        config = {**defaults, **dict(args.get_config())}
        check(StackValidationArgs(args.resources, config, args.stack_tags), report)

    return validate


# --------------------------------------------------------------------------- reading props


EMPTY: Mapping[str, Any] = {}


def as_dict(value: object) -> Mapping[str, Any]:
    """A mapping view (not a copy: copying would read values the rule never needs,
    and reading a value unknown at preview raises)."""
    if isinstance(value, Mapping):
        return cast(Mapping[str, Any], value)
    return EMPTY


def as_list(value: object) -> Sequence[Any]:
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return cast(Sequence[Any], value)
    return ()


def string_map(value: object) -> dict[str, str]:
    """A mapping (labels, annotations, a selector) as strings to strings; {} if not a mapping."""
    return {str(k): str(v) for k, v in as_dict(value).items()}


def metadata_of(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """A Kubernetes resource's metadata ({} when absent)."""
    return as_dict(props.get("metadata"))


def namespace_of(props: Mapping[str, Any]) -> str:
    """A Kubernetes resource's namespace: metadata.namespace, else `default`."""
    return str(metadata_of(props).get("namespace") or "default")


class Named(Protocol):
    """A resource as a rule sees it: a PolicyResource or ResourceValidationArgs."""

    props: Mapping[str, Any]
    name: str


def name_of(resource: Named) -> str:
    """A Kubernetes resource's name: metadata.name, else the Pulumi resource name."""
    return str(metadata_of(resource.props).get("name") or resource.name)


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels and matchExpressions) selects these labels.

    An empty selector selects everything; callers for which an empty selector selects
    nothing (a Service's) check for that themselves.
    """
    for k, v in as_dict(selector.get("matchLabels")).items():
        if labels.get(str(k)) != str(v):
            return False
    for e in as_list(selector.get("matchExpressions")):
        expr = as_dict(e)
        key, op = str(expr.get("key")), str(expr.get("operator"))
        values = {str(v) for v in as_list(expr.get("values"))}
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(op, False)
        if not ok:
            return False
    return True


def k8s_kind(resource_type: str) -> str:
    """`kubernetes:apps/v1:Deployment` -> `Deployment`."""
    if not resource_type.startswith("kubernetes:"):
        return ""
    return resource_type.rsplit(":", 1)[-1]


CLUSTER_SCOPED = {
    "Namespace",
    "StorageClass",
    "PriorityClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "Node",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "RuntimeClass",
    "ClusterIssuer",  # cert-manager.io
}


def _known(read: Callable[[], Any]) -> Any:
    """A value for a message; one still unknown at preview reads as `<unknown>`."""
    try:
        return read()
    except UnknownValueError:
        return "<unknown>"


def describe(resource_type: str, props: Mapping[str, Any], name: str) -> str:
    """How a violation names a resource: `Deployment swarmstack-models/qwen (model-qwen)`."""
    kind = k8s_kind(resource_type)
    if resource_type == "kubernetes:helm.sh/v3:Release":  # no metadata: name/namespace inputs
        ns = _known(lambda: props.get("namespace")) or "default"
        return f"Release {ns}/{_known(lambda: props.get('name')) or name} ({name})"
    if kind:
        meta = metadata_of(props)
        ns = _known(lambda: meta.get("namespace"))
        where = f"{ns}/" if ns else ("" if kind in CLUSTER_SCOPED else "default/")
        return f"{kind} {where}{_known(lambda: meta.get('name')) or name} ({name})"
    return f"{resource_type.rsplit(':', 1)[-1]} {name}"


def reporter(
    resource_type: str, props: Mapping[str, Any], name: str, report: ReportViolation
) -> Callable[[str], None]:
    label = describe(resource_type, props, name)
    return lambda message: report(f"{label}: {message}", None)


def stack_reporter(resource: PolicyResource, report: ReportViolation) -> Callable[[str], None]:
    """Like `reporter`, for stack rules: the message names the resource and carries its URN."""
    label = describe(resource.resource_type, resource.props, resource.name)
    return lambda message: report(f"{label}: {message}", resource.urn)


def of_kind(
    resources: Sequence[PolicyResource], kind: str, prefix: str = "kubernetes:"
) -> Iterator[PolicyResource]:
    """The stack's resources of one kind whose type starts with `prefix`."""
    for r in resources:
        if r.resource_type.startswith(prefix) and k8s_kind(r.resource_type) == kind:
            yield r


WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}


def pod_spec(kind: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod spec inside a workload (None for kinds that carry no pods)."""
    spec = as_dict(props.get("spec"))
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        job = as_dict(as_dict(spec.get("jobTemplate")).get("spec"))
        return as_dict(as_dict(job.get("template")).get("spec"))
    if kind in WORKLOAD_KINDS:
        return as_dict(as_dict(spec.get("template")).get("spec"))
    return None


def pod_metadata(kind: str, props: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = as_dict(props.get("spec"))
    if kind == "Pod":
        return metadata_of(props)
    if kind == "CronJob":
        job = as_dict(as_dict(spec.get("jobTemplate")).get("spec"))
        return as_dict(as_dict(job.get("template")).get("metadata"))
    return as_dict(as_dict(spec.get("template")).get("metadata"))


def containers(pod: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every container of a pod, init containers included, with a label for messages."""
    for key, label in (("initContainers", "init container"), ("containers", "container")):
        for c in as_list(pod.get(key)):
            container = as_dict(c)
            yield f"{label} {container.get('name', '?')}", container


@dataclass(frozen=True)
class Workload:
    """A pod-bearing Kubernetes resource as a rule sees it."""

    kind: str
    props: Mapping[str, Any]
    pod: Mapping[str, Any]
    report: Callable[[str], None]

    @property
    def metadata(self) -> Mapping[str, Any]:
        return metadata_of(self.props)

    @property
    def pod_labels(self) -> dict[str, str]:
        return string_map(pod_metadata(self.kind, self.props).get("labels"))

    @property
    def annotations(self) -> dict[str, str]:
        merged = {
            **as_dict(self.metadata.get("annotations")),
            **as_dict(pod_metadata(self.kind, self.props).get("annotations")),
        }
        return string_map(merged)

    @property
    def is_model_server(self) -> bool:
        return self.pod_labels.get("app.kubernetes.io/component") == "model-server"

    @property
    def config_name(self) -> str:
        return str(self.metadata.get("name") or "")


def for_workloads(
    check: Callable[[Workload, Mapping[str, Any]], None],
) -> ResourceCheck:
    """Lift a check of one workload into a resource validator (other kinds pass)."""

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        kind = k8s_kind(args.resource_type)
        pod = pod_spec(kind, args.props)
        if pod is None:
            return
        workload = Workload(
            kind, args.props, pod, reporter(args.resource_type, args.props, args.name, report)
        )
        check(workload, args.get_config())

    return validate
