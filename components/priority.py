"""PriorityClasses, declared one way for every workload family that has tiers (the agents'
and the model servers'): interactive above batch, never the cluster default, preempting
only lower priorities."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import pulumi
import pulumi_kubernetes as k8s

from components.specs import CostLabels

Tier = TypeVar("Tier", bound=str)


def declare_priority_classes(
    parent: pulumi.Resource,
    name: str,
    classes: Mapping[Tier, tuple[str, int]],
    workloads: str,
    cost_labels: CostLabels,
) -> dict[Tier, str]:
    """One PriorityClass per tier (`classes`: tier -> (class name, value)), children of
    `parent`, described as `swarmstack <tier> <workloads>`; returns tier -> class name."""
    names: dict[Tier, str] = {}
    for tier, (class_name, value) in classes.items():
        k8s.scheduling.v1.PriorityClass(
            f"{name}-{tier}",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=class_name, labels=cost_labels.as_labels()),
            value=value,
            global_default=False,
            preemption_policy="PreemptLowerPriority",
            description=f"swarmstack {tier} {workloads}",
            opts=pulumi.ResourceOptions(parent=parent),
        )
        names[tier] = class_name
    return names
