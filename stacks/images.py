"""Every container image a stack runs, and its copy in the stack's own ECR mirror.

With `images.mirror` set, each image the stack would pull from an upstream registry runs
from `<account>.dkr.ecr.<region>.amazonaws.com/<prefix>/<registry>/<path>:<tag>` instead,
pinned by the digest ECR holds for that tag. The digests are read with the synchronous
`aws.ecr.get_image` invoke before the composition declares anything, so `pulumi preview`
shows (and the policy pack checks) the digest that will run; an image missing from the
mirror stops the program with the command that copies it. An image already in an ECR
repository (the agent worker) keeps its repository and gets its digest the same way.

Which images: every `ImageRef` in the config tree (`image_slots` walks the models, so a
field a component adds is mirrored without a change here), with the defaults a spec
computes made explicit (the session store's server image follows its engine and version),
and without the images of stores the stack does not run in the cluster (a session store
on ElastiCache, a gateway database on RDS, a disabled trace collector).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import pulumi_aws as aws
from pydantic import BaseModel

from components.data.redis import RedisSpec, server_image
from components.gateway.spec import GatewayDatabase
from components.observe.tracing import TracingSpec
from components.specs import ImageRef
from stacks.config import ConfigError, ImageMirror, Problem, StackConfig

# `<account>.dkr.ecr.<region>.amazonaws.com`: a private ECR registry.
ECR_HOST = re.compile(r"^([0-9]{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com$")
DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
DOCKER_HUB = "docker.io"

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class ImageSlot:
    """One image in the config: where it sits (field names, for the rewrite; the config
    path, for messages) and what it names."""

    loc: Loc
    path: str
    image: ImageRef


@dataclass(frozen=True)
class MirroredImage:
    """An image and the ECR repository the stack runs it from."""

    path: str
    loc: Loc
    upstream: ImageRef
    registry_id: str
    region: str
    repository_name: str
    # False when the upstream already is that ECR repository (nothing to copy).
    copy: bool

    @property
    def registry(self) -> str:
        return f"{self.registry_id}.dkr.ecr.{self.region}.amazonaws.com"

    @property
    def repository(self) -> str:
        return f"{self.registry}/{self.repository_name}"

    @property
    def reference(self) -> str:
        """The mirrored reference by tag (the digest is ECR's answer)."""
        return f"{self.repository}:{self.upstream.tag}"

    @property
    def source(self) -> str:
        """What `crane copy` reads: the upstream by tag, or by digest when it is pinned."""
        if self.upstream.digest is not None:
            return f"{self.upstream.repository}@{self.upstream.digest}"
        return f"{self.upstream.repository}:{self.upstream.tag}"

    def command(self) -> str:
        if not self.copy:
            return f"build and push {self.reference} (README, Agent worker)"
        return f"crane copy {self.source} {self.reference}"


def _unused(node: BaseModel) -> bool:
    """A spec whose images the stack does not run: an AWS managed store, or disabled."""
    if isinstance(node, RedisSpec):
        return node.mode != "inCluster"
    if isinstance(node, GatewayDatabase):
        return node.mode != "inCluster"
    if isinstance(node, TracingSpec):
        return not node.enabled
    return False


def _path(parts: list[str]) -> str:
    out = ""
    for part in parts:
        out += part if part.startswith("[") or not out else f".{part}"
    return out


def _walk(node: Any, loc: Loc, shown: list[str]) -> Iterator[ImageSlot]:
    if isinstance(node, ImageRef):
        yield ImageSlot(loc, _path(shown), node)
    elif isinstance(node, BaseModel):
        if _unused(node):
            return
        fields = type(node).model_fields
        for name, info in fields.items():
            value = getattr(node, name)
            alias = info.alias or name
            if value is None and isinstance(node, RedisSpec) and name == "image":
                value = server_image(node)  # the default the spec computes
            yield from _walk(value, (*loc, name), [*shown, alias])
    elif isinstance(node, list):
        for i, item in enumerate(cast(list[Any], node)):
            yield from _walk(item, (*loc, i), [*shown, f"[{i}]"])
    elif isinstance(node, dict):
        for key, item in sorted(cast(dict[str, Any], node).items()):
            yield from _walk(item, (*loc, key), [*shown, str(key)])


def image_slots(config: StackConfig) -> list[ImageSlot]:
    """Every image the stack runs, by config path (`images.vllm`, `gateway.image`, ...)."""
    return list(_walk(config, (), []))


def mirror_repository_name(upstream: str, prefix: str) -> str:
    """`docker.io/vllm/vllm-openai` -> `<prefix>/docker.io/vllm/vllm-openai`: the registry
    stays in the name, so two registries' `postgres` never share a repository."""
    host, _, path = upstream.partition("/")
    if not path or ("." not in host and ":" not in host and host != "localhost"):
        host, path = DOCKER_HUB, upstream
    if host == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return f"{prefix}/{host.replace(':', '-')}/{path}"


def mirror_plan(
    config: StackConfig, mirror: ImageMirror, account: str, region: str
) -> list[MirroredImage]:
    """Each image slot and the repository it runs from (by the slot's config path)."""
    planned: list[MirroredImage] = []
    for slot in image_slots(config):
        host, _, path = slot.image.repository.partition("/")
        ecr = ECR_HOST.match(host)
        if ecr is not None:
            planned.append(
                MirroredImage(
                    slot.path, slot.loc, slot.image, ecr.group(1), ecr.group(2), path, copy=False
                )
            )
        else:
            name = mirror_repository_name(slot.image.repository, mirror.prefix)
            planned.append(
                MirroredImage(slot.path, slot.loc, slot.image, account, region, name, copy=True)
            )
    return planned


def copies(planned: list[MirroredImage]) -> list[MirroredImage]:
    """The distinct copies to make (several slots may run the same image)."""
    seen: dict[str, MirroredImage] = {}
    for image in planned:
        if image.copy:
            seen.setdefault(image.reference, image)
    return sorted(seen.values(), key=lambda m: m.reference)


def ecr_digest(image: MirroredImage) -> str:
    """The digest ECR holds for the mirrored tag (the real, synchronous invoke)."""
    found = aws.ecr.get_image(
        registry_id=image.registry_id,
        region=image.region,
        repository_name=image.repository_name,
        image_tag=image.upstream.tag,
    )
    return found.image_digest


DigestLookup = Callable[[MirroredImage], str]


def _replace(node: Any, loc: Loc, value: ImageRef) -> Any:
    if not loc:
        return value
    head, rest = loc[0], loc[1:]
    if isinstance(node, BaseModel):
        assert isinstance(head, str)
        inner = getattr(node, head)
        if inner is None and isinstance(node, RedisSpec) and head == "image":
            inner = server_image(node)
        return node.model_copy(update={head: _replace(inner, rest, value)})
    if isinstance(node, list):
        assert isinstance(head, int)
        items = list(cast(list[Any], node))
        items[head] = _replace(items[head], rest, value)
        return items
    assert isinstance(node, dict) and isinstance(head, str)
    mapping = dict(cast(dict[str, Any], node))
    mapping[head] = _replace(mapping[head], rest, value)
    return mapping


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def pin_images(
    config: StackConfig,
    *,
    account: str,
    region: str,
    stack: str,
    source: str,
    lookup: DigestLookup = ecr_digest,
) -> StackConfig:
    """The config with every image rewritten to its mirror and pinned by ECR's digest; the
    config itself when `images.mirror` is unset. Every missing image is one problem."""
    mirror = config.images.mirror
    if mirror is None:
        return config
    problems: list[Problem] = []
    pinned = config
    for image in mirror_plan(config, mirror, account, region):
        try:
            digest = lookup(image)
        except Exception as exc:  # the invoke's error: the provider's message, one line
            why = _first_line(exc)
            if image.copy:
                message = (
                    f"{image.upstream.reference} is not in the mirror: ECR has no "
                    f"{image.reference} ({why}); {image.command()} "
                    f"(`swarmstack images {stack}` lists every copy)"
                )
            else:
                message = f"ECR has no {image.reference} ({why}); {image.command()}"
            problems.append(Problem(image.path, message))
            continue
        if not DIGEST.match(digest):
            problems.append(
                Problem(image.path, f"ECR answered {digest!r} for {image.reference}: no digest")
            )
            continue
        if image.upstream.digest is not None and image.upstream.digest != digest:
            problems.append(
                Problem(
                    image.path,
                    f"{image.reference} is {digest} in the mirror, but the config pins "
                    f"{image.upstream.digest}: copy the pinned image again "
                    f"({image.command()}) or change the pin",
                )
            )
            continue
        ref = ImageRef(repository=image.repository, tag=image.upstream.tag, digest=digest)
        pinned = cast(StackConfig, _replace(pinned, image.loc, ref))
    if problems:
        raise ConfigError(problems, source, "images.mirror: images missing from the mirror")
    return pinned


def account_id() -> str:
    """The account the stack deploys into (whose ECR holds the mirror)."""
    return aws.get_caller_identity().account_id
