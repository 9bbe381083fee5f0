"""The table of changes that force a replacement names real types and real fields.

Kubernetes entries are looked up in the API schemas kubernetes-validate ships (for the
pilot's Kubernetes version); AWS entries in the pulumi-aws SDK's argument classes, and each
AWS type must be one the stacks declare (the pilot's plan, or a component that builds it).
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from stacks.plan.replacements import AWS, KUBERNETES, ForcesReplacement, forced_by

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = (
    Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / "v1.33.0-local-strict"
)
GOLDEN_SUMMARY = ROOT / "tests" / "golden" / "pilot" / "summary.json"


@cache
def _definitions() -> dict[str, Any]:
    return json.loads((SCHEMAS / "_definitions.json").read_text())["$defs"]


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = _definitions()[node["$ref"].split("/")[-1]]
    if node.get("type") == "array" or "items" in node:
        return _resolve(node.get("items", {}))
    return node


def _k8s_schema(type_: str) -> dict[str, Any]:
    _, group_version, kind = type_.split(":")
    group, _, version = group_version.rpartition("/")
    suffix = "" if group == "core" else f"-{group.split('.')[0]}"
    return json.loads((SCHEMAS / f"{kind.lower()}{suffix}-{version}.json").read_text())


def _has_path(schema: dict[str, Any], path: str) -> bool:
    node = schema
    for part in path.split("."):
        resolved = _resolve(node)
        props = resolved.get("properties", {})
        if part in props:
            node = props[part]
        elif isinstance(resolved.get("additionalProperties"), dict):  # a map: any key
            node = resolved["additionalProperties"]
        else:
            return False
    return True


@pytest.mark.parametrize("entry", KUBERNETES, ids=lambda e: f"{e.type}:{e.path}")
def test_kubernetes_entry_is_a_field_of_its_kind(entry: ForcesReplacement) -> None:
    if entry.type == "kubernetes:helm.sh/v3:Release":
        # helm/<release>.yaml as the plan writes it (stacks/plan/model.py HelmRelease).
        assert entry.path in ("release", "namespace"), entry
        return
    kinds = ["apps/v1:Deployment", "core/v1:Service"] if entry.type == "kubernetes:*" else []
    for type_ in [f"kubernetes:{k}" for k in kinds] or [entry.type]:
        schema = _k8s_schema(type_)
        for path in (entry.path, *entry.except_paths):
            assert _has_path(schema, path), f"{type_} has no field {path}"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _args_class(type_: str) -> type:
    _, module_path, cls = type_.split(":")
    module = importlib.import_module(f"pulumi_aws.{module_path.split('/')[0]}")
    return getattr(module, f"{cls}Args")


def _aws_has_path(type_: str, path: str) -> bool:
    cls = _args_class(type_)
    module = inspect.getmodule(cls)
    for part in path.split("."):
        params = inspect.signature(cls.__init__).parameters
        name = _snake(part)
        if name not in params:
            return False
        nested = re.findall(r"'(\w+Args)'", str(params[name].annotation))
        if nested:
            cls = getattr(module, nested[0])
    return True


def _declared_aws_types() -> set[str]:
    types = set(json.loads(GOLDEN_SUMMARY.read_text())["resourcesByType"])
    # Managed data stores the production phase selects (components/data/): the classes the
    # components construct.
    source = "\n".join(p.read_text() for p in (ROOT / "components").rglob("*.py"))
    if "aws.msk.Cluster(" in source:
        types.add("aws:msk/cluster:Cluster")
    if "aws.elasticache.ReplicationGroup(" in source:
        types.add("aws:elasticache/replicationGroup:ReplicationGroup")
    return types


@pytest.mark.parametrize("entry", AWS, ids=lambda e: f"{e.type}:{e.path}")
def test_aws_entry_is_a_declared_type_and_a_field_of_it(entry: ForcesReplacement) -> None:
    assert entry.type in _declared_aws_types(), f"no stack declares {entry.type}"
    assert _aws_has_path(entry.type, entry.path), f"{entry.type} has no input {entry.path}"


def test_the_lookup_follows_the_table() -> None:
    deployment = "kubernetes:apps/v1:Deployment"
    assert forced_by(deployment, "spec.selector.matchLabels.app") is not None
    assert forced_by(deployment, "metadata.name") is not None
    assert forced_by(deployment, "spec.replicas") is None
    assert forced_by(deployment, "metadata.labels.team") is None
    pvc = "kubernetes:core/v1:PersistentVolumeClaim"
    assert forced_by(pvc, "spec.resources.requests.storage") is None
    assert forced_by(pvc, "spec.storageClassName") is not None
    node_group = "aws:eks/nodeGroup:NodeGroup"
    assert forced_by(node_group, "instanceTypes") is not None
    assert forced_by(node_group, "scalingConfig.maxSize") is None
    # `name` of an AWS resource is no Kubernetes metadata.name
    assert forced_by("aws:eks/cluster:Cluster", "metadata.name") is None
    assert forced_by("aws:eks/cluster:Cluster", "vpcConfig.subnetIds") is None
