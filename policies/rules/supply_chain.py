"""Supply chain: where images and charts come from, and whether a reference can move.

An image reference is read the way the container runtime reads it: the first
path component is a registry host only when it holds a `.` or a `:` or is
`localhost`, so `vllm/vllm-openai` is `docker.io/vllm/vllm-openai`; a reference
without a tag or digest means `:latest`; a digest (`@sha256:...`) pins the image
whatever the tag says. Helm charts are checked by the host of the repository
they are pulled from; a URL is never printed whole (it may carry credentials).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs

from policies.framework import (
    Rule,
    Workload,
    as_dict,
    as_list,
    containers,
    for_workloads,
    k8s_kind,
    pod_spec,
    reporter,
)

DEFAULT_REGISTRY = "docker.io"
# Names Docker Hub is also reached by; they mean the same registry as docker.io.
DOCKER_HUB_ALIASES = {"index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
DIGEST = re.compile(r"^(sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128})$")
HELM_TYPES = {"kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart"}

ALLOWED_REGISTRIES = [
    "docker.io",
    "nvcr.io",
    "public.ecr.aws",
    "registry.k8s.io",
    "quay.io",
    "ghcr.io",
    "*.dkr.ecr.*.amazonaws.com",
]
ALLOWED_CHART_REPOSITORIES = [
    "helm.ngc.nvidia.com",
    "kedacore.github.io",
    "kubernetes.github.io",
    "strimzi.io",
    "charts.jetstack.io",
    "istio-release.storage.googleapis.com",
    "prometheus-community.github.io",
    "qdrant.github.io",
    "charts.bitnami.com",
    "open-telemetry.github.io",
    "grafana.github.io",
]


@dataclass(frozen=True)
class ImageRef:
    """An image reference split the way the container runtime splits it."""

    registry: str  # host[:port], lower-cased; docker.io when the reference names none
    repository: str
    tag: str | None
    digest: str | None


def parse_image(reference: str) -> ImageRef:
    """`vllm/vllm-openai:v0.11.0` -> docker.io, vllm/vllm-openai, v0.11.0, no digest."""
    name, _, digest = reference.strip().partition("@")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = first.lower(), rest
    else:
        registry, path = DEFAULT_REGISTRY, name
    if registry in DOCKER_HUB_ALIASES:
        registry = DEFAULT_REGISTRY
    head, colon, tag = path.rpartition(":")
    if colon and "/" not in tag:
        return ImageRef(registry, head, tag, digest or None)
    return ImageRef(registry, path, None, digest or None)


def host_allowed(host: str, allowed: Sequence[Any]) -> bool:
    """Whether a host (or host:port) matches an allow-list entry.

    An entry is a host name whose labels may be `*` patterns, each matching within one
    label: `*.dkr.ecr.*.amazonaws.com` matches `111122223333.dkr.ecr.us-east-1.amazonaws.com`.
    An entry without a port matches the host on any port.
    """
    host = host.lower()
    bare = host.rsplit(":", 1)[0] if ":" in host else host
    for entry in allowed:
        pattern = str(entry).lower()
        candidate = host if ":" in pattern else bare
        want, got = pattern.split("."), candidate.split(".")
        if len(want) == len(got) and all(fnmatchcase(g, w) for g, w in zip(got, want, strict=True)):
            return True
    return False


def _images(w: Workload) -> list[tuple[str, str]]:
    return [(label, str(c.get("image") or "")) for label, c in containers(w.pod)]


def _tag_pinned(w: Workload, config: Mapping[str, Any]) -> None:
    forbidden = [str(t) for t in as_list(config.get("forbiddenTags"))]
    for label, image in _images(w):
        if not image:
            w.report(f"{label} sets no image")
            continue
        ref = parse_image(image)
        if ref.digest:
            continue
        if ref.tag is None:
            w.report(f"{label} image {image} has no tag, which means latest; pin a version")
        elif not ref.tag:
            w.report(f"{label} image {image} has an empty tag")
        elif ref.tag in forbidden:
            w.report(f"{label} image {image} uses the mutable tag {ref.tag}; pin a version")


def _url_host(url: str) -> str:
    """The host of a URL, without user info or port; a URL without a scheme starts with it."""
    authority = re.split(r"[/?#]", url.split("://", 1)[-1], maxsplit=1)[0]
    host = authority.rsplit("@", 1)[-1]
    if host.startswith("["):  # an IPv6 literal
        return host[1:].split("]", 1)[0].lower()
    return host.split(":", 1)[0].lower()


def _chart_hosts(props: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """Hosts a Helm chart is fetched from, or why they cannot be told."""
    repo = str(as_dict(props.get("repositoryOpts")).get("repo") or "")
    chart = str(props.get("chart") or "")
    hosts = [_url_host(repo)] if repo else []
    if "://" in chart:  # a chart given by URL (oci://, https://.../chart.tgz)
        hosts.append(_url_host(chart))
    if hosts:
        return hosts, None
    if "/" in chart and not chart.startswith((".", "/")):
        return [], (
            f"chart {chart} comes from a locally configured repository alias; set "
            "repositoryOpts.repo so that its host can be checked"
        )
    return [], None  # a chart on local disk


def _registry_allowed(args: ResourceValidationArgs, report: ReportViolation) -> None:
    config = args.get_config()
    say = reporter(args.resource_type, args.props, args.name, report)
    if args.resource_type in HELM_TYPES:
        allowed_charts = as_list(config.get("allowedChartRepositories"))
        hosts, problem = _chart_hosts(args.props)
        if problem:
            say(problem)
        for host in hosts:
            if not host or not host_allowed(host, allowed_charts):
                say(
                    f"pulls its chart from {host or 'a URL without a host'}, which is not on "
                    "the allowed chart repositories"
                )
        return
    pod = pod_spec(k8s_kind(args.resource_type), args.props)
    if pod is None:
        return
    allowed = as_list(config.get("allowedRegistries"))
    for label, c in containers(pod):
        image = str(c.get("image") or "")
        if not image:
            continue
        ref = parse_image(image)
        if not host_allowed(ref.registry, allowed):
            say(f"{label} image {image} comes from {ref.registry}, not an allowed registry")


def _digest_pinned(w: Workload, _: Mapping[str, Any]) -> None:
    for label, image in _images(w):
        if not image:
            continue
        digest = parse_image(image).digest
        if digest is None:
            w.report(f"{label} image {image} is not pinned by digest (@sha256:...)")
        elif not DIGEST.match(digest):
            w.report(f"{label} image {image} has a malformed digest")


HOST_LIST = {"type": "array", "items": {"type": "string"}}

RULES = [
    Rule(
        "image-tag-pinned",
        "supply-chain",
        "Every container image names a version: a tag other than latest, or a digest (an image "
        "without a tag means latest).",
        "Use an explicit version tag (vllm/vllm-openai:v0.11.0) or pin the image by @sha256 "
        "digest.",
        check=for_workloads(_tag_pinned),
        config={
            "forbiddenTags": {
                **HOST_LIST,
                "default": ["latest"],
                "description": "Tags that move and so pin nothing.",
            }
        },
    ),
    Rule(
        "image-registry-allowed",
        "supply-chain",
        "Images come from allowed registries (an image without a registry host comes from "
        "docker.io) and Helm charts from allowed chart repositories.",
        "Mirror the image or chart into an allowed registry (e.g. the account's ECR), or add "
        "the host to allowedRegistries / allowedChartRepositories.",
        check=_registry_allowed,
        config={
            "allowedRegistries": {
                **HOST_LIST,
                "default": ALLOWED_REGISTRIES,
                "description": "Registry hosts images may come from; `*` matches within one "
                "DNS label.",
            },
            "allowedChartRepositories": {
                **HOST_LIST,
                "default": ALLOWED_CHART_REPOSITORIES,
                "description": "Hosts Helm chart repositories may be on; `*` matches within "
                "one DNS label.",
            },
        },
    ),
    Rule(
        "image-digest-pinned",
        "supply-chain",
        "Every container image is pinned by digest, so a re-pushed tag cannot change what runs.",
        "Append the image's digest: repo/image:tag@sha256:<digest> (e.g. from `crane digest`).",
        level="advisory",
        check=for_workloads(_digest_pinned),
    ),
]
