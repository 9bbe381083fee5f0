"""GPUs: extended-resource accounting, MIG profiles that exist, tainted GPU nodes, a GPU budget.

Kubernetes requires extended resources such as `nvidia.com/gpu` in limits, and a
request left out defaults to the limit. With the GPU operator's `mixed` MIG
strategy each MIG profile is its own resource, `nvidia.com/mig-<profile>` (with a
`+` of the profile written `.`: `1g.10gb+me` is `nvidia.com/mig-1g.10gb.me`), which
only exists on nodes whose MIG manager applied a mig-parted configuration
creating that profile. The configuration a node gets is the one its
`nvidia.com/mig.config` label names (the MIG manager's default otherwise, which
in swarmstack is `all-disabled`); mig-parted configurations live in ConfigMaps as
a YAML document with a `mig-configs` key.

The pack cannot depend on PyYAML, so mig-parted documents are read with a small
reader of the block-YAML subset they are written in (mappings, sequences, plain
and quoted scalars, one-line flow collections); JSON, which is YAML too, is read
with `json`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import (
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    StackValidationArgs,
)

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
    selects,
    string_map,
)

GPU_RESOURCE = "nvidia.com/gpu"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"
MIG_CONFIG_LABEL = "nvidia.com/mig.config"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_TAINT_EFFECT = "NO_SCHEDULE"
# p* and g* instance families carry NVIDIA GPUs (gr6: memory-heavy g6).
GPU_FAMILY = re.compile(r"^(p|g|gr)\d")
# EKS AMI types with the NVIDIA driver: AL2023_*_NVIDIA, BOTTLEROCKET_*_NVIDIA, AL2_x86_64_GPU.
GPU_AMI = re.compile(r"NVIDIA|_GPU$")
# EKS launches t3.medium when neither the node group nor its launch template names a type.
EKS_DEFAULT_INSTANCE_TYPE = "t3.medium"

# GPUs per instance of the NVIDIA GPU types EC2 offers. The pack imports nothing of the
# components; tests/test_gpu_catalogue.py holds this table to components/compute/instances.py
# (same count for every GPU type the components know, no type they know to be CPU-only).
GPUS_PER_INSTANCE: dict[str, int] = {
    "p4d.24xlarge": 8,
    "p4de.24xlarge": 8,
    "p5.4xlarge": 1,
    "p5.48xlarge": 8,
    "p5e.48xlarge": 8,
    "p5en.48xlarge": 8,
    "p6-b200.48xlarge": 8,
    **{f"g5.{size}": 1 for size in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "g5.12xlarge": 4,
    "g5.24xlarge": 4,
    "g5.48xlarge": 8,
    **{f"g6.{size}": 1 for size in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "g6.12xlarge": 4,
    "g6.24xlarge": 4,
    "g6.48xlarge": 8,
    **{f"g6e.{size}": 1 for size in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "g6e.12xlarge": 4,
    "g6e.24xlarge": 4,
    "g6e.48xlarge": 8,
}


# --------------------------------------------------------------------------- quantities

NANO = 10**9
# A suffix's value in nano-units: Kubernetes keeps quantities to nano precision, rounding up.
_SCALE: dict[str, int] = {
    "n": 1,
    "u": 10**3,
    "m": 10**6,
    "": NANO,
    "k": 10**3 * NANO,
    "M": 10**6 * NANO,
    "G": 10**9 * NANO,
    "T": 10**12 * NANO,
    "P": 10**15 * NANO,
    "E": 10**18 * NANO,
    **{s: 1024**i * NANO for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), start=1)},
}
_QUANTITY = re.compile(
    r"^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$"
)


def quantity_nanos(value: object) -> int | None:
    """A Kubernetes resource quantity ("1", 2, "500m", "1Ki", "1e3") in nano-units, exactly."""
    match = _QUANTITY.match(str(value).strip())
    if match is None or not (match.group(2) or match.group(3)):
        return None
    sign, whole, fraction, exponent, suffix = match.groups(default="")
    numerator = int(whole + fraction or "0") * _SCALE[suffix]
    denominator = 10 ** len(fraction)
    if exponent:
        power = int(exponent)
        numerator, denominator = (
            (numerator * 10**power, denominator)
            if power >= 0
            else (numerator, denominator * 10**-power)
        )
    nanos = -(-numerator // denominator)  # round up, as Kubernetes does
    return -nanos if sign == "-" else nanos


def _plain(nanos: int) -> str:
    if nanos < 0:
        return f"-{_plain(-nanos)}"
    whole, rest = divmod(nanos, NANO)
    return str(whole) if not rest else f"{whole}.{rest:09d}".rstrip("0")


def _gpu_resource(name: str) -> bool:
    return name == GPU_RESOURCE or name.startswith(MIG_RESOURCE_PREFIX)


def _limits_equal_requests(w: Workload, _: Mapping[str, Any]) -> None:
    for label, c in containers(w.pod):
        resources = as_dict(c.get("resources"))
        requests, limits = as_dict(resources.get("requests")), as_dict(resources.get("limits"))
        names = sorted({str(k) for k in (*requests, *limits) if _gpu_resource(str(k))})
        for name in names:
            if name not in limits:
                w.report(
                    f"{label} requests {name} without a limit (Kubernetes requires extended "
                    "resources in limits)"
                )
                continue
            limit = quantity_nanos(limits[name])
            # A request left out defaults to the limit.
            request = quantity_nanos(requests[name]) if name in requests else limit
            if limit is None or request is None:
                w.report(f"{label} sets {name} to something that is not a quantity")
            elif limit != request:
                w.report(
                    f"{label} requests {_plain(request)} {name} but limits {_plain(limit)}; "
                    "GPUs cannot be overcommitted, set both equal"
                )
            elif limit % NANO:
                w.report(f"{label} asks for {_plain(limit)} {name}, which is not a whole number")


# --------------------------------------------------------------------------- mig-parted documents


def _scalar(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text.startswith("{") and text.endswith("}"):
        items = [i for i in text[1:-1].split(",") if i.strip()]
        pairs = [i.split(":", 1) for i in items]
        return {str(_scalar(k)): _scalar(v) for k, v in (p for p in pairs if len(p) == 2)}
    if text.startswith("[") and text.endswith("]"):
        return [_scalar(i) for i in text[1:-1].split(",") if i.strip()]
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("", "~", "null"):
        return None
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    return text


def _split_key(text: str) -> tuple[str, str] | None:
    """`key: value` / `key:` -> (key, value); None when the line is not a mapping entry."""
    if text[:1] in "'\"":
        end = text.find(text[0], 1)
        if end > 0 and text[end + 1 : end + 2] == ":":
            rest = text[end + 2 :]
            if not rest or rest[0] == " ":
                return text[1:end], rest.strip()
        return None
    match = re.match(r"^([^:#{\[]*?):(?: (.*))?$", text)
    if match is None:
        return None
    return match.group(1).strip(), (match.group(2) or "").strip()


@dataclass
class _Lines:
    """The document's non-blank lines as (indent, text), and where reading is."""

    items: list[tuple[int, str]] = field(default_factory=list[tuple[int, str]])
    at: int = 0

    def peek(self) -> tuple[int, str] | None:
        return self.items[self.at] if self.at < len(self.items) else None


def _lines(document: str) -> _Lines:
    lines = _Lines()
    for raw in document.splitlines():
        text = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not text.strip() or text.startswith(("---", "...", "%")):
            continue
        stripped = text.lstrip(" ")
        lines.items.append((len(text) - len(stripped), stripped))
    return lines


def _block(lines: _Lines, indent: int) -> Any:
    first = lines.peek()
    if first is None or first[0] != indent:
        return None
    if first[1] == "-" or first[1].startswith("- "):
        return _sequence(lines, indent)
    if _split_key(first[1]) is None:
        lines.at += 1
        return _scalar(first[1])
    return _mapping(lines, indent)


def _sequence(lines: _Lines, indent: int) -> list[Any]:
    out: list[Any] = []
    while (line := lines.peek()) is not None and line[0] == indent and line[1][:1] == "-":
        rest = line[1][1:]
        if not rest.strip():
            lines.at += 1
            nxt = lines.peek()
            out.append(_block(lines, nxt[0]) if nxt is not None and nxt[0] > indent else None)
            continue
        if rest[:1] != " ":
            break
        # `- key: value` opens a mapping whose later keys sit under `key`.
        item = rest.lstrip(" ")
        inner = indent + 1 + len(rest) - len(item)
        lines.items[lines.at] = (inner, item)
        out.append(_block(lines, inner))
    return out


def _mapping(lines: _Lines, indent: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    while (line := lines.peek()) is not None and line[0] == indent:
        entry = _split_key(line[1])
        if entry is None:
            break
        key, value = entry
        lines.at += 1
        if value:
            out[key] = _scalar(value)
            continue
        nxt = lines.peek()
        if nxt is not None and (nxt[0] > indent or (nxt[0] == indent and nxt[1][:1] == "-")):
            out[key] = _block(lines, nxt[0])
        else:
            out[key] = None
    return out


def read_yaml_subset(document: str) -> Any:
    """A YAML or JSON document in the subset mig-parted configurations are written in."""
    try:
        return json.loads(document)
    except ValueError:
        pass
    lines = _lines(document)
    first = lines.peek()
    return None if first is None else _block(lines, first[0])


def mig_offers(document: str) -> dict[str, set[str]]:
    """Profiles each configuration of a mig-parted document creates (count above zero)."""
    configs = as_dict(as_dict(read_yaml_subset(document)).get("mig-configs"))
    offers: dict[str, set[str]] = {}
    for name, entries in configs.items():
        profiles = offers.setdefault(str(name), set())
        for e in as_list(entries):
            entry = as_dict(e)
            if entry.get("mig-enabled") is not True:
                continue
            for profile, count in as_dict(entry.get("mig-devices")).items():
                amount = quantity_nanos(count)
                if amount is not None and amount > 0:
                    profiles.add(str(profile))
    return offers


# --------------------------------------------------------------------------- the stack's GPU nodes


@dataclass(frozen=True)
class _NodeGroup:
    name: str
    labels: dict[str, str]

    @property
    def mig_config(self) -> str | None:
        return self.labels.get(MIG_CONFIG_LABEL)


def _node_groups(resources: Sequence[PolicyResource]) -> list[_NodeGroup]:
    groups = [
        _NodeGroup(r.name, string_map(r.props.get("labels")))
        for r in resources
        if r.resource_type == NODE_GROUP
    ]
    return sorted(groups, key=lambda g: g.name)


def _mig_configurations(resources: Sequence[PolicyResource]) -> dict[str, set[str]]:
    offers: dict[str, set[str]] = {}
    for r in resources:
        if r.resource_type != CONFIG_MAP:
            continue
        for value in as_dict(r.props.get("data")).values():
            if isinstance(value, str) and "mig-configs" in value:
                for name, profiles in mig_offers(value).items():
                    offers.setdefault(name, set()).update(profiles)
    return offers


def _mig_requests(pod: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for label, c in containers(pod):
        resources = as_dict(c.get("resources"))
        names = {
            str(k) for k in (*as_dict(resources.get("requests")), *as_dict(resources.get("limits")))
        }
        for name in sorted(names):
            if name.startswith(MIG_RESOURCE_PREFIX):
                yield label, name[len(MIG_RESOURCE_PREFIX) :]


def _candidates(pod: Mapping[str, Any], groups: list[_NodeGroup]) -> list[_NodeGroup]:
    """The node groups a pod may land on by its nodeSelector.

    Only selector keys some node group declares narrow the choice (the others, such as
    kubernetes.io/arch, are set by the kubelet on every node); node affinity is not read.
    """
    declared = {k for g in groups for k in g.labels}
    selector = {k: v for k, v in string_map(pod.get("nodeSelector")).items() if k in declared}
    return [g for g in groups if selects({"matchLabels": selector}, g.labels)]


def mig_resource_suffix(profile: str) -> str:
    """What follows `nvidia.com/mig-` in the device plugin's resource for a MIG profile."""
    return profile.replace("+", ".")


def _offered(profiles: set[str]) -> str:
    return ", ".join(sorted(profiles)) or "no MIG profile"


def _mig_profile_offered(args: StackValidationArgs, report: ReportViolation) -> None:
    groups = _node_groups(args.resources)
    configs = _mig_configurations(args.resources)
    labelled = [g for g in groups if g.mig_config is not None]
    for r in args.resources:
        pod = pod_spec(k8s_kind(r.resource_type), r.props)
        if pod is None:
            continue
        wanted = list(_mig_requests(pod))
        if not wanted:
            continue
        say = reporter(r.resource_type, r.props, r.name, lambda m, _u=None, u=r.urn: report(m, u))
        if labelled:
            # The configurations the node groups it may land on apply; a group without the
            # label gets the MIG manager's default, which creates no MIG device here.
            pool = _candidates(pod, groups) or labelled
            where = "; ".join(
                f"node group {g.name} applies {g.mig_config or 'the default'}: "
                + _offered(configs.get(g.mig_config or "", set()))
                for g in pool
            )
            offered = {p for g in pool for p in configs.get(g.mig_config or "", set())}
        else:
            # No node group of the stack says which configuration it applies (the nodes are
            # managed elsewhere): any configuration the stack declares may be applied.
            offered = {p for profiles in configs.values() for p in profiles}
            where = (
                "mig-parted configurations of the stack offer " + _offered(offered)
                if configs
                else "the stack declares no mig-parted configuration"
            )
        resources = {mig_resource_suffix(p) for p in offered}
        for label, profile in wanted:
            if profile not in resources:
                say(
                    f"{label} requests {MIG_RESOURCE_PREFIX}{profile}, which no MIG "
                    f"configuration its nodes get creates ({where}); it would stay Pending"
                )


# --------------------------------------------------------------------------- node groups


def _instance_types(props: Mapping[str, Any]) -> list[str]:
    return [str(t) for t in as_list(props.get("instanceTypes"))]


def _is_gpu_type(instance_type: str) -> bool:
    return GPU_FAMILY.match(instance_type.split(".", 1)[0]) is not None


def _node_group_tainted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != NODE_GROUP:
        return
    ami = str(args.props.get("amiType") or "")
    gpu_types = [t for t in _instance_types(args.props) if _is_gpu_type(t)]
    if not GPU_AMI.search(ami) and not gpu_types:
        return
    taints = [as_dict(t) for t in as_list(args.props.get("taints"))]
    effects = [str(t.get("effect")) for t in taints if t.get("key") == GPU_TAINT_KEY]
    if GPU_TAINT_EFFECT in effects:
        return
    what = ", ".join([*([ami] if GPU_AMI.search(ami) else []), *gpu_types])
    found = (
        f"its {GPU_TAINT_KEY} taint has effect {', '.join(effects)}"
        if effects
        else f"it has no {GPU_TAINT_KEY} taint"
    )
    reporter(args.resource_type, args.props, args.name, report)(
        f"runs GPU nodes ({what}) but {found}; pods that ask for no GPU would be scheduled "
        f"there (taint {GPU_TAINT_KEY} with effect {GPU_TAINT_EFFECT})"
    )


def _gpu_budget(args: StackValidationArgs, report: ReportViolation) -> None:
    config = args.get_config()
    table = {
        **GPUS_PER_INSTANCE,
        **{str(k): int(v) for k, v in as_dict(config.get("gpusPerInstance")).items()},
    }
    budget = int(config.get("maxGpus", 16))
    pools: list[str] = []
    unknown: list[str] = []
    total = 0
    # By name, so that the message does not depend on the order resources registered in.
    for r in sorted(args.resources, key=lambda r: r.name):
        if r.resource_type != NODE_GROUP:
            continue
        declared = _instance_types(r.props)
        types = declared or [EKS_DEFAULT_INSTANCE_TYPE]
        gpu_ami = GPU_AMI.search(str(r.props.get("amiType") or "")) is not None
        not_counted = [t for t in types if t not in table and (gpu_ami or _is_gpu_type(t))]
        if not_counted:
            unknown.append(
                f"{r.name} ({', '.join(not_counted) if declared else 'no instanceTypes'})"
            )
            continue
        per_instance = max(table.get(t, 0) for t in types)
        if per_instance == 0:
            continue
        max_size = int(as_dict(r.props.get("scalingConfig")).get("maxSize") or 0)
        gpus = max_size * per_instance
        total += gpus
        kind = "/".join(t for t in types if table.get(t, 0) == per_instance)
        pools.append(f"{r.name} {max_size} x {kind} ({per_instance} GPUs) = {gpus}")
    if unknown:
        report(
            "GPU node groups: cannot count the GPUs of "
            + "; ".join(unknown)
            + ": add the instance types to gpusPerInstance",
            None,
        )
    if total > budget:
        report(
            f"GPU node groups: {total} GPUs at max scale ({'; '.join(pools)}) exceed the "
            f"budget of {budget} (maxGpus)",
            None,
        )


RULES = [
    Rule(
        "gpu-limits-equal-requests",
        "gpu",
        "Containers asking for nvidia.com/gpu or nvidia.com/mig-* set the limit (Kubernetes "
        "requires it; the request defaults to it) and request exactly the limit.",
        "Set resources.limits and resources.requests of the GPU resource to the same whole number.",
        check=for_workloads(_limits_equal_requests),
    ),
    Rule(
        "mig-profile-offered",
        "gpu",
        "Every nvidia.com/mig-<profile> a workload asks for is created by the mig-parted "
        "configuration (nvidia.com/mig.config label) of a node group it may be scheduled on.",
        "Request a profile the pool's MIG layout creates, or add the profile to that pool's MIG "
        "layout in the stack config.",
        check_stack=_mig_profile_offered,
    ),
    Rule(
        "gpu-node-group-tainted",
        "gpu",
        "Node groups of GPU instances (NVIDIA AMI, p* or g* types) carry the taint "
        "nvidia.com/gpu with effect NO_SCHEDULE.",
        "Add taints=[{key: nvidia.com/gpu, value: present, effect: NO_SCHEDULE}] to the node "
        "group.",
        check=_node_group_tainted,
    ),
    Rule(
        "gpu-budget",
        "gpu",
        "All node groups together have at most maxGpus GPUs at maximum scale "
        "(maxSize x GPUs per instance).",
        "Lower maxSize or use smaller instances, or raise maxGpus in the policy config.",
        check_stack=_gpu_budget,
        config={
            "maxGpus": {
                "type": "integer",
                "minimum": 0,
                "default": 16,
                "description": "GPUs the stack's node groups may reach at max scale.",
            },
            "gpusPerInstance": {
                "type": "object",
                "additionalProperties": {"type": "integer", "minimum": 0},
                "default": {},
                "description": "GPUs per instance of types missing from the built-in table.",
            },
        },
    ),
]
