"""The plan as reviewers read it: manifests, Helm releases, AWS resources, node pools."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal, cast

import yaml

from components.compute.instances import INSTANCE_TYPES
from stacks.plan.recorder import Capture, Registration

K8S_PREFIX = "kubernetes:"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
MIG_CONFIG_LABEL = "nvidia.com/mig.config"

KIND_ORDER = [
    "Namespace",
    "StorageClass",
    "PriorityClass",
    "ResourceQuota",
    "LimitRange",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "NetworkPolicy",
    "Service",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "PodDisruptionBudget",
]
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def as_dict(value: object) -> dict[str, Any]:
    """`value` if it is a mapping of the plan's decoded JSON, else an empty dict."""
    return cast(dict[str, Any], value) if isinstance(value, dict) else {}


def as_list(value: object) -> list[Any]:
    """`value` if it is a list of the plan's decoded JSON, else an empty list."""
    return cast(list[Any], value) if isinstance(value, list) else []


Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One check's verdict on one resource (the plan fails on any error)."""

    severity: Severity
    check: str
    resource: str
    message: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.resource}: {self.message}"


@dataclass(frozen=True)
class Manifest:
    registration: Registration

    @property
    def body(self) -> dict[str, Any]:
        return self.registration.inputs

    def document(self) -> dict[str, Any]:
        """The manifest as kubectl users read it: apiVersion, kind, metadata first."""
        head = ("apiVersion", "kind", "metadata")
        body = self.body
        return {
            **{k: body[k] for k in head if k in body},
            **{k: v for k, v in body.items() if k not in head},
        }

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(as_dict(self.body.get("metadata")))

    @property
    def name(self) -> str:
        return str(self.metadata.get("name") or "")

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace") or "")

    @property
    def ref(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name or '<unnamed>'} ({self.registration.name})"

    @property
    def sort_key(self) -> tuple[int, str, str, str]:
        rank = KIND_ORDER.index(self.kind) if self.kind in KIND_ORDER else len(KIND_ORDER)
        return rank, self.namespace, self.kind, self.name or self.registration.name

    def pod_template(self) -> dict[str, Any] | None:
        if self.kind not in WORKLOAD_KINDS:
            return None
        return dict(as_dict(as_dict(self.body.get("spec")).get("template")))


@dataclass(frozen=True)
class HelmRelease:
    registration: Registration

    @property
    def name(self) -> str:
        return str(self.registration.inputs.get("name") or "")

    def document(self) -> dict[str, Any]:
        inputs = self.registration.inputs
        return {
            "release": self.name,
            "namespace": inputs.get("namespace"),
            "chart": inputs.get("chart"),
            "version": inputs.get("version"),
            "repository": as_dict(inputs.get("repositoryOpts")).get("repo"),
            "values": inputs.get("values") or {},
        }


@dataclass(frozen=True)
class NodePool:
    """A node group as the plan captured it, with what its nodes offer."""

    name: str
    instance_type: str
    min_size: int
    max_size: int
    labels: dict[str, str]
    taints: list[dict[str, str]]
    offers_per_node: Counter[str]

    @property
    def gpus_per_node(self) -> int:
        return (
            INSTANCE_TYPES[self.instance_type].gpus if self.instance_type in INSTANCE_TYPES else 0
        )

    @property
    def usd_per_node_hour(self) -> float:
        itype = INSTANCE_TYPES.get(self.instance_type)
        return itype.on_demand_usd_per_hour if itype else 0.0


@dataclass
class Plan:
    capture: Capture
    manifests: list[Manifest]
    releases: list[HelmRelease]
    aws: list[Registration]

    @classmethod
    def from_capture(cls, capture: Capture) -> Plan:
        manifests: list[Manifest] = []
        releases: list[HelmRelease] = []
        aws: list[Registration] = []
        for r in capture.registrations:
            if r.type == HELM_RELEASE:
                releases.append(HelmRelease(r))
            elif r.type.startswith(K8S_PREFIX) and r.custom:
                manifests.append(Manifest(r))
            elif r.type.startswith("aws:") and r.custom:
                aws.append(r)
        manifests.sort(key=lambda m: m.sort_key)
        releases.sort(key=lambda h: h.name)
        aws.sort(key=lambda r: (r.type, r.name))
        return cls(capture, manifests, releases, aws)

    def kubernetes_version(self) -> str:
        for r in self.aws:
            if r.type == "aws:eks/cluster:Cluster" and r.inputs.get("version"):
                return str(r.inputs["version"])
        return "1.33"

    def mig_strategy(self) -> str:
        for release in self.releases:
            values = as_dict(release.document()["values"])
            strategy = as_dict(values.get("mig")).get("strategy")
            if strategy:
                return str(strategy)
        return "single"

    def mig_configs(self) -> dict[str, Counter[str]]:
        """mig-parted configurations declared in ConfigMaps: name -> devices per GPU."""
        configs: dict[str, Counter[str]] = {}
        for m in self.manifests:
            if m.kind != "ConfigMap":
                continue
            for text in as_dict(m.body.get("data")).values():
                try:
                    doc = yaml.safe_load(str(text))
                except yaml.YAMLError:
                    continue
                if not isinstance(doc, dict) or "mig-configs" not in doc:
                    continue
                mig_configs = cast(dict[str, list[dict[str, Any]]], doc["mig-configs"])
                for name, entries in mig_configs.items():
                    devices: Counter[str] = Counter()
                    for entry in entries:
                        if entry.get("mig-enabled"):
                            mig_devices = cast(dict[str, Any], entry["mig-devices"])
                            devices.update({str(k): int(v) for k, v in mig_devices.items()})
                    configs[name] = devices
        return configs

    def node_pools(self) -> list[NodePool]:
        strategy = self.mig_strategy()
        mig_configs = self.mig_configs()
        pools: list[NodePool] = []
        for r in self.aws:
            if r.type != NODE_GROUP:
                continue
            labels = {str(k): str(v) for k, v in as_dict(r.inputs.get("labels")).items()}
            itype = str((r.inputs.get("instanceTypes") or [""])[0])
            scaling = as_dict(r.inputs.get("scalingConfig"))
            gpus = INSTANCE_TYPES[itype].gpus if itype in INSTANCE_TYPES else 0
            offers: Counter[str] = Counter()
            devices = mig_configs.get(labels.get(MIG_CONFIG_LABEL, ""), Counter[str]())
            if gpus and devices:
                for profile, count in devices.items():
                    key = "nvidia.com/gpu" if strategy == "single" else f"nvidia.com/mig-{profile}"
                    offers[key] += count * gpus
            elif gpus:
                offers["nvidia.com/gpu"] = gpus
            taints = [
                {
                    "key": str(t.get("key")),
                    "value": str(t.get("value", "")),
                    "effect": _k8s_effect(str(t.get("effect"))),
                }
                for t in map(as_dict, as_list(r.inputs.get("taints")))
            ]
            pools.append(
                NodePool(
                    name=str(r.inputs.get("nodeGroupName") or r.name),
                    instance_type=itype,
                    min_size=int(scaling.get("minSize", 0)),
                    max_size=int(scaling.get("maxSize", 0)),
                    labels=labels,
                    taints=taints,
                    offers_per_node=offers,
                )
            )
        return sorted(pools, key=lambda p: p.name)


def _k8s_effect(effect: str) -> str:
    return {
        "NO_SCHEDULE": "NoSchedule",
        "NO_EXECUTE": "NoExecute",
        "PREFER_NO_SCHEDULE": "PreferNoSchedule",
    }.get(effect, effect)
