"""Run a Pulumi program on the SDK's mock runtime and record every registration.

The recording monitor sees what the Pulumi engine would see: each resource's
type, name, parent, dependencies and inputs. Inputs are decoded from the wire
format here rather than with the SDK's deserializer so that a secret is replaced
by `REDACTED` before it is ever held in clear; unknown values become `UNKNOWN`
and numbers that are whole become ints.

A Kubernetes Secret's `data` and `stringData` keep their keys: each value becomes
`REDACTED`, so the manifest keeps its schema. On the wire one secret value wraps
the whole map, so the keys are read from inside the wrapper; the values are
never read.

Mocked look-ups return fixed values (documented in `LOOKUPS`) so that plans are
reproducible.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, cast

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await  # pyright: ignore[reportPrivateUsage]

# Stands in for every secret value the plan writes. It is eight characters of the
# base64 alphabet, so it is also a valid value of a Secret's `data` (it decodes to
# six meaningless bytes), and plainly no real token or password.
REDACTED = "REDACTED"
UNKNOWN = "[unknown until deployed]"
ACCOUNT_ID = "111122223333"

_SIG = rpc._special_sig_key  # pyright: ignore[reportPrivateUsage]
_SECRET = rpc._special_secret_sig  # pyright: ignore[reportPrivateUsage]
_RESOURCE = rpc._special_resource_sig  # pyright: ignore[reportPrivateUsage]
_OUTPUT = rpc._special_output_value_sig  # pyright: ignore[reportPrivateUsage]


@dataclass
class Registration:
    """One resource as the engine would receive it."""

    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    provider: str
    dependencies: list[str]
    inputs: dict[str, Any]
    has_secrets: bool = False
    # The wire form, secrets included: only the policy pack reads it, nothing writes it.
    wire: dict[str, Any] = field(default_factory=dict[str, Any], repr=False)
    # Input paths `pulumi up` leaves to controllers (ResourceOptions.ignore_changes).
    ignore_changes: list[str] = field(default_factory=list[str])
    # ResourceOptions.protect and retain_on_delete, as the engine receives them.
    protect: bool = False
    retain_on_delete: bool = False

    @property
    def is_component(self) -> bool:
        return not self.custom


def decode(value: Any) -> tuple[Any, bool]:
    """Decode a wire value; returns (value, contained_a_secret)."""
    if isinstance(value, dict):
        wire = cast(dict[str, Any], value)
        sig = wire.get(_SIG)
        if sig == _SECRET:
            return REDACTED, True
        if sig == _RESOURCE:
            return wire.get("urn", ""), False
        if sig == _OUTPUT:
            if wire.get("secret"):
                return REDACTED, True
            return decode(wire["value"]) if "value" in wire else (UNKNOWN, False)
        out: dict[str, Any] = {}
        secret = False
        for k, v in sorted(wire.items()):  # the wire map has no stable order
            out[k], s = decode(v)
            secret = secret or s
        return out, secret
    if isinstance(value, list):
        items = [decode(v) for v in cast(list[Any], value)]
        return [v for v, _ in items], any(s for _, s in items)
    if value == rpc.UNKNOWN:
        return UNKNOWN, False
    if isinstance(value, float) and value.is_integer():
        return int(value), False
    return value, False


# Kubernetes types whose fields are maps of secret values: keys shown, values redacted.
SECRET_MAPS: dict[str, tuple[str, ...]] = {"kubernetes:core/v1:Secret": ("data", "stringData")}


def _map_keys(value: Any) -> list[str] | None:
    """Keys of a wire map, seen through secret and output wrappers; None if not a known map.

    Only the keys are read: the values stay on the wire, untouched."""
    while isinstance(value, dict):
        wire = cast(dict[str, Any], value)
        sig = wire.get(_SIG)
        if sig in (_SECRET, _OUTPUT):
            if "value" not in wire:
                return None  # unknown until deployed: no keys to show
            value = wire["value"]
            continue
        if sig is not None:
            return None
        return sorted(wire)
    return None


def decode_inputs(type_: str, wire: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """A resource's inputs decoded; the value maps of secret types redacted key by key."""
    decoded, secret = decode(wire)
    inputs = cast(dict[str, Any], decoded)
    for name in SECRET_MAPS.get(type_, ()):
        if name not in wire:
            continue
        keys = _map_keys(wire[name])
        if keys is not None:
            inputs[name] = {key: REDACTED for key in keys}
            secret = secret or bool(keys)
    return inputs, secret


# Fixed answers to the provider functions the program calls during a plan.
def _availability_zones(args: dict[str, Any], region: str) -> dict[str, Any]:
    names = [f"{region}{s}" for s in "abcdef"]
    return {"names": names, "zoneIds": [f"use1-az{i + 1}" for i in range(6)], "state": "available"}


def planned_image_digest(repository_name: str, tag: str) -> str:
    """The digest the plan answers for an ECR image: sha256 of `<repository>:<tag>`, so the
    same mirror and tag always plan the same digest (ECR's own is read by the preview)."""
    return "sha256:" + hashlib.sha256(f"{repository_name}:{tag}".encode()).hexdigest()


def _ecr_image(args: dict[str, Any], region: str) -> dict[str, Any]:
    repository = str(args.get("repositoryName"))
    tag = str(args.get("imageTag"))
    registry = str(args.get("registryId") or ACCOUNT_ID)
    where = str(args.get("region") or region)
    digest = planned_image_digest(repository, tag)
    return {
        "id": f"{repository}@{digest}",
        "imageDigest": digest,
        "imageTag": tag,
        "imageTags": [tag],
        "imageUri": f"{registry}.dkr.ecr.{where}.amazonaws.com/{repository}@{digest}",
        "registryId": registry,
        "repositoryName": repository,
        "region": where,
    }


LOOKUPS: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
    "aws:index/getAvailabilityZones:getAvailabilityZones": _availability_zones,
    "aws:index/getCallerIdentity:getCallerIdentity": lambda _a, _r: {
        "accountId": ACCOUNT_ID,
        "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/plan",
        "userId": "AIDAPLAN",
    },
    "aws:index/getRegion:getRegion": lambda _a, region: {"name": region, "region": region},
    "aws:index/getPartition:getPartition": lambda _a, _r: {
        "partition": "aws",
        "dnsSuffix": "amazonaws.com",
    },
    "aws:ecr/getImage:getImage": _ecr_image,
    "aws:ssm/getParameter:getParameter": lambda a, _r: {
        "name": a.get("name"),
        "value": "ami-0planned0000000000",
        "type": "String",
    },
}


GLOBAL_SERVICES = frozenset({"iam", "cloudfront", "route53"})


def mock_arn(type_: str, resource_id: str, region: str) -> str:
    """An ARN shaped like the real one: arn:aws:<service>:<region>:<account>:<kind>/<id>."""
    service = type_.split(":")[1].split("/", maxsplit=1)[0]
    kind = type_.rsplit(":", 1)[-1]
    kind = kind[:1].lower() + kind[1:]
    where = "" if service in GLOBAL_SERVICES else region
    return f"arn:aws:{service}:{where}:{ACCOUNT_ID}:{kind}/{resource_id}"


class _WarningCollector(logging.Handler):
    """Keeps what the program logs at warning level or above (pulumi.log.warn)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage().strip())


# Route 53 hosted zone ids of Network Load Balancers by region (the alias target zone of
# an NLB's DNS name, AWS's published table); other regions get a planned stand-in.
NLB_ZONE_IDS = {
    "us-east-1": "Z26RNL4JYFTOTI",
    "us-east-2": "ZLMOA37VPKANP",
    "us-west-1": "Z24FKFUX50B4VW",
    "us-west-2": "Z18D5FSROUN65G",
    "eu-west-1": "Z2IFOLAFXWLO4F",
    "eu-central-1": "Z3F0SRJ5LGBH90",
}
STACK_REFERENCE = "pulumi:pulumi:StackReference"


@dataclass(frozen=True)
class PlannedOutputs:
    """A planned stack's outputs, as a StackReference to it reads them: secret values stay
    `REDACTED` and are named in `secret`, so the reading stack sees them as secrets."""

    outputs: dict[str, Any]
    secret: list[str]


class UnplannedReferenceError(pulumi.RunError):
    """The program read a StackReference to a stack this plan has not planned."""


class PlanMocks(pulumi_mocks.Mocks):
    """Deterministic ids and outputs: every resource echoes its inputs."""

    def __init__(
        self,
        region: str,
        stack: str = "test",
        references: dict[str, PlannedOutputs] | None = None,
    ) -> None:
        self.region = region
        self.stack = stack
        self.references = references or {}
        self.reference_errors: list[str] = []

    def _stack_reference(self, target: str) -> dict[str, Any]:
        planned = self.references.get(target.rsplit("/", 1)[-1])
        if planned is None:
            known = ", ".join(sorted(self.references)) or "none"
            self.reference_errors.append(
                f"stack {self.stack} references stack {target}, which this plan has not "
                f"planned (planned before it: {known}); `swarmstack plan {self.stack}` plans "
                "the stacks its config references first: name it in global.regions[].stack"
            )
            return {"name": target, "outputs": {}, "secretOutputNames": []}
        return {
            "name": target,
            "outputs": planned.outputs,
            "secretOutputNames": sorted(planned.secret),
        }

    def new_resource(
        self, args: pulumi_mocks.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        # MockResourceArgs.inputs is annotated as a bare `dict` by the SDK.
        inputs = cast(dict[str, Any], args.inputs)  # pyright: ignore[reportUnknownMemberType]
        state: dict[str, Any] = dict(inputs)
        rid = f"{args.name}-id"
        if args.typ == STACK_REFERENCE:  # read, not created: the referenced stack's outputs
            target = str(args.resource_id or inputs.get("name") or args.name)
            return target, self._stack_reference(target)
        region = str(inputs.get("region") or self.region)
        if args.typ == "aws:lb/loadBalancer:LoadBalancer":
            lb_name = str(inputs.get("name", args.name))
            state.update(
                dnsName=f"{lb_name}-0123456789abcdef.elb.{region}.amazonaws.com",
                zoneId=NLB_ZONE_IDS.get(region, f"ZPLANNEDNLB{region.upper().replace('-', '')}"),
                arnSuffix=f"net/{lb_name}/0123456789abcdef",
            )
        if args.typ == "aws:lb/targetGroup:TargetGroup":
            state["arnSuffix"] = f"targetgroup/{inputs.get('name', args.name)}/0123456789abcdef"
        if args.typ == "aws:route53/zone:Zone":
            state["zoneId"] = f"ZPLANNED{args.name.upper().replace('-', '')}"[:32]
        if args.typ == "aws:eks/cluster:Cluster":
            state.update(
                endpoint=f"https://{args.name}.gr7.{self.region}.eks.amazonaws.com",
                certificateAuthority={"data": "UExBTi1DQQ=="},
                identities=[
                    {"oidcs": [{"issuer": f"https://oidc.eks.{self.region}.amazonaws.com/id/PLAN"}]}
                ],
                name=inputs.get("name", args.name),
            )
        if args.typ == "aws:eks/nodeGroup:NodeGroup":  # EKS makes one ASG per node group
            group = inputs.get("nodeGroupName", args.name)
            state["resources"] = [{"autoscalingGroups": [{"name": f"eks-{group}-planned"}]}]
        if args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state.setdefault("latestVersion", 1)
        if args.typ.startswith("aws:"):
            state.setdefault("arn", mock_arn(args.typ, rid, region))
        if args.typ.startswith("kubernetes:"):
            meta = dict(state.get("metadata") or {})
            meta.setdefault("name", args.name)
            state["metadata"] = meta
        return rid, state

    def call(
        self, args: pulumi_mocks.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        lookup = LOOKUPS.get(args.token)
        if lookup is None:
            raise NotImplementedError(f"the offline plan has no fixed answer for {args.token}")
        # MockCallArgs.args is annotated as a bare `dict` by the SDK.
        call_args = cast(dict[str, Any], args.args)  # pyright: ignore[reportUnknownMemberType]
        return lookup(dict(call_args), self.region), []


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(
        self, mocks: pulumi_mocks.Mocks, registrations: list[Registration] | None = None
    ) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = [] if registrations is None else registrations

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        # MockMonitor.RegisterResource leaves its `request` parameter unannotated.
        response = super().RegisterResource(request)  # pyright: ignore[reportUnknownMemberType]
        if request.type != "pulumi:pulumi:Stack":
            raw = json_format.MessageToDict(request.object)
            inputs, secret = decode_inputs(request.type, raw)
            self.registrations.append(
                Registration(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    custom=bool(request.custom),
                    provider=request.provider,
                    dependencies=sorted(set(request.dependencies)),
                    inputs=inputs,
                    has_secrets=secret,
                    wire=raw,
                    ignore_changes=list(request.ignoreChanges),
                    protect=bool(request.protect),
                    retain_on_delete=bool(request.retainOnDelete),
                )
            )
        return response


@dataclass
class Capture:
    registrations: list[Registration] = field(default_factory=list[Registration])
    outputs: dict[str, Any] = field(default_factory=dict[str, Any])
    warnings: list[str] = field(default_factory=list[str])
    # Names of the outputs that are secrets (their values are REDACTED in `outputs`).
    secret_outputs: list[str] = field(default_factory=list[str])

    def planned_outputs(self) -> PlannedOutputs:
        """What a StackReference to this stack reads in a later plan."""
        return PlannedOutputs(dict(self.outputs), list(self.secret_outputs))

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def named(self, name: str) -> Registration:
        matches = [r for r in self.registrations if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.registrations if r.urn == urn)


@contextlib.contextmanager
def _fresh_loop() -> Generator[None, None, None]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def run(
    program: Callable[[], object],
    *,
    project: str = "swarmstack",
    stack: str = "test",
    config: dict[str, str] | None = None,
    secret_keys: list[str] | None = None,
    region: str = "us-east-1",
    preview: bool = False,
    registrations: list[Registration] | None = None,
    references: dict[str, PlannedOutputs] | None = None,
) -> Capture:
    """Run `program` on the mock runtime; return every registration and stack output.

    `preview=True` runs it as `pulumi preview` would (`is_dry_run()`), else as `pulumi up`.
    Exceptions raised by the program (including inside `apply`) propagate; pass
    `registrations` to see what was declared before one. `references` answers the
    program's StackReferences: stack name -> that stack's planned outputs; a reference to
    any other stack raises UnplannedReferenceError naming both stacks.
    """
    with _fresh_loop():
        pulumi_settings.reset_options()
        pulumi.runtime.set_all_config(config or {}, secret_keys or [])
        mocks = PlanMocks(region, stack, references)
        monitor = RecordingMonitor(mocks, registrations)
        logger = logging.getLogger(f"swarmstack.plan.{stack}")
        logger.propagate = False
        collector = _WarningCollector()
        logger.handlers = [collector]
        pulumi.runtime.set_mocks(
            mocks, project=project, stack=stack, preview=preview, monitor=monitor, logger=logger
        )
        outputs: dict[str, Any] = {}

        def body() -> None:
            program()

        try:
            _sync_await(run_pulumi_func(body))
        except Exception:
            if mocks.reference_errors:  # the cause, not what failed after it
                raise UnplannedReferenceError("; ".join(mocks.reference_errors)) from None
            raise
        if mocks.reference_errors:
            raise UnplannedReferenceError("; ".join(mocks.reference_errors))
        root = pulumi.runtime.get_root_resource()
        secret: list[str] = []
        if root is not None:
            stack_outputs = getattr(root, "outputs", {})  # set by pulumi.export
            outputs = {k: _resolve(v) for k, v in dict(stack_outputs).items()}
            secret = sorted(k for k, v in dict(stack_outputs).items() if _is_secret(v))
        return Capture(monitor.registrations, outputs, collector.messages, secret)


def _is_secret(value: Any) -> bool:
    return bool(_sync_await(pulumi.Output.from_input(value).is_secret()))


def _resolve(value: Any) -> Any:
    """A stack output's value, nested Outputs included; secrets come back redacted."""
    out: pulumi.Output[Any] = pulumi.Output.from_input(value)
    if _sync_await(out.is_secret()):
        return REDACTED
    resolved = _sync_await(out.future())
    return json.loads(json.dumps(resolved, default=str))
