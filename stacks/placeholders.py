"""Documentation values that must never reach AWS.

The shipped stack files carry values from the documentation so that a fresh
checkout plans: the RFC 5737 address ranges, AWS's example account ids (in ARNs
and in ECR registry hosts), and a weights bucket nobody here owns. A trace backend on a
domain reserved for documentation (RFC 2606 / RFC 6761: example.com, .net and .org,
and the `.example`, `.invalid`, `.test` and `.localhost` names) is one too. `pulumi up`
refuses every one of them (see
stacks/program.py); `pulumi preview` and the offline plan list them as warnings.
Each finding names the config path as written in `Pulumi.<stack>.yaml`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, cast
from urllib.parse import urlsplit

from components.specs import S3Weights
from stacks.config import Problem, StackConfig, render_path

# RFC 5737 (IPv4) and RFC 3849 (IPv6): reserved for documentation, never routed.
DOCUMENTATION_NETWORKS = {
    ipaddress.ip_network("192.0.2.0/24"): "RFC 5737 TEST-NET-1",
    ipaddress.ip_network("198.51.100.0/24"): "RFC 5737 TEST-NET-2",
    ipaddress.ip_network("203.0.113.0/24"): "RFC 5737 TEST-NET-3",
    ipaddress.ip_network("2001:db8::/32"): "RFC 3849",
}
# Account ids AWS's documentation uses in example ARNs.
DOCUMENTATION_ACCOUNTS = frozenset({"111122223333", "123456789012", "444455556666", "777788889999"})
_ARN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]*:[a-z0-9-]*:([0-9]{12}):")
# A private ECR registry host names its account: <account>.dkr.ecr.<region>.amazonaws.com
_ECR_HOST = re.compile(r"^([0-9]{12})\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/")


# Reserved for documentation and tests, never an organisation's own (RFC 2606, RFC 6761).
DOCUMENTATION_DOMAINS = ("example.com", "example.net", "example.org")
DOCUMENTATION_TLDS = ("example", "invalid", "test", "localhost")


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def documentation_domain(host: str) -> str | None:
    """The reserved domain `host` lies in, if any."""
    name = host.lower().rstrip(".")
    for domain in DOCUMENTATION_DOMAINS:
        if name == domain or name.endswith(f".{domain}"):
            return domain
    tld = name.rpartition(".")[2]
    return f".{tld}" if tld in DOCUMENTATION_TLDS else None


def _inside(net: Network, doc: Network) -> bool:
    if isinstance(net, ipaddress.IPv4Network) and isinstance(doc, ipaddress.IPv4Network):
        return net.subnet_of(doc)
    if isinstance(net, ipaddress.IPv6Network) and isinstance(doc, ipaddress.IPv6Network):
        return net.subnet_of(doc)
    return False  # different IP versions


def _documentation_network(value: str) -> str | None:
    """The documentation range `value` (an address or CIDR) lies in, if any."""
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None
    for doc, name in DOCUMENTATION_NETWORKS.items():
        if _inside(net, doc):
            return f"{doc} ({name})"
    return None


def _leaves(node: Any, loc: tuple[int | str, ...] = ()) -> list[tuple[tuple[int | str, ...], str]]:
    """Every string in a dumped config, with its path."""
    if isinstance(node, dict):
        mapping = cast(dict[str, Any], node)
        return [leaf for k, v in mapping.items() for leaf in _leaves(v, (*loc, k))]
    if isinstance(node, list):
        items = cast(list[Any], node)
        return [leaf for i, v in enumerate(items) for leaf in _leaves(v, (*loc, i))]
    return [(loc, node)] if isinstance(node, str) else []


def documentation_values(config: StackConfig) -> list[Problem]:
    """Every documentation value in the config; `pulumi up` refuses a stack with any."""
    problems: list[Problem] = []
    for loc, value in _leaves(config.model_dump(by_alias=True, mode="json")):
        path = render_path(loc)
        network = _documentation_network(value)
        if network is not None:
            problems.append(
                Problem(
                    path,
                    f"{value!r} is in {network}, an address range reserved for documentation: "
                    "replace it with a network of yours",
                )
            )
        for account in _ARN.findall(value):
            if account in DOCUMENTATION_ACCOUNTS:
                problems.append(
                    Problem(
                        path,
                        f"{value!r} is in account {account}, an example account of AWS's "
                        "documentation: use an ARN of your own account",
                    )
                )
        registry = _ECR_HOST.match(value)
        if registry is not None and registry.group(1) in DOCUMENTATION_ACCOUNTS:
            problems.append(
                Problem(
                    path,
                    f"{value!r} is a registry of account {registry.group(1)}, an example "
                    "account of AWS's documentation: push the image to your own registry",
                )
            )
    external = set(config.external.s3_buckets)
    for i, model in enumerate(config.models):
        weights = model.weights
        if isinstance(weights, S3Weights) and weights.bucket not in external:
            problems.append(
                Problem(
                    f"models[{i}].weights.uri",
                    f"bucket {weights.bucket!r} is neither created by this stack (it creates "
                    "none) nor listed in external.s3Buckets: point the URI at your own bucket "
                    "and list that bucket there",
                )
            )
    tracing = config.observability.tracing
    endpoint = tracing.backend.endpoint
    if tracing.enabled and endpoint is not None:
        domain = documentation_domain(urlsplit(endpoint).hostname or "")
        if domain is not None:
            problems.append(
                Problem(
                    "observability.tracing.backend.endpoint",
                    f"{endpoint!r} is in {domain}, a domain reserved for documentation: "
                    "point it at your trace backend",
                )
            )
    qdrant = config.data_plane.qdrant
    if qdrant is not None and qdrant.snapshots is not None:
        bucket = qdrant.snapshots.bucket
        if bucket not in external:
            problems.append(
                Problem(
                    "dataPlane.qdrant.snapshots.bucket",
                    f"bucket {bucket!r} is neither created by this stack (it creates none) nor "
                    "listed in external.s3Buckets: name your own bucket and list it there",
                )
            )
    return problems
