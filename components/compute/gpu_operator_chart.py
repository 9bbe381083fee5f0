"""What swarmstack relies on in NVIDIA's `gpu-operator` Helm chart, and the release it was read at.

`components.compute.gpu_node_pool.gpu_operator_values` renders Helm values for one chart version,
`CHART_VERSION`. Every value key path it may set is listed in `VALUE_KEYS` with what the
chart does with it at that release, as read in the release's
`deployments/gpu-operator/values.yaml` and in the templates that consume the keys
(`templates/clusterpolicy.yaml`, `templates/_helpers.tpl`, `templates/mig_config.yaml`) and,
where the chart only passes a key on, in the operator's controllers.

A test holds every key path the component renders to this list, and the stack config
accepts no other chart version. Moving the pin therefore means reading the new release's
chart, updating the meanings below (and the values where a meaning changed), then
`CHART_VERSION`.

Checked at v26.7.0 (2026-08-20, the latest v26.7.x tag):

- Chart defaults swarmstack overrides on purpose: `cdi.enabled` (true since v25.10),
  `daemonsets.tolerations`, `migManager.config.name` (empty: the MIG manager then generates
  its configuration from the hardware).
- A default swarmstack sets explicitly so that a chart change cannot flip it unnoticed:
  `dcgmExporter.serviceMonitor.enabled`, true by default since v26.7.0. The operator creates
  the exporter's ServiceMonitor only while the cluster serves the `monitoring.coreos.com`
  ServiceMonitor CRD and skips it otherwise, so it is harmless before Prometheus runs.
- `dcgmExporter.serviceMonitor.additionalLabels` is passed into the ClusterPolicy as is
  (`templates/clusterpolicy.yaml`), and the operator merges it into the ServiceMonitor's
  labels (`applyServiceMonitorCustomEdits` in `controllers/object_controls.go`).
- `operator.labels` is read by the chart (the `gpu-operator.labels` helper) but is absent
  from values.yaml.
- mig-parted configuration format (mig-manager v0.15.0 at this release, `api/spec/v1`):
  `version: v1`, `mig-configs` mapping a name to a non-empty list of entries with `devices`
  (`all` or GPU indices), `mig-enabled`, and `mig-devices` (profile -> count, at least one
  count above zero) when enabled and empty when not; a ConfigMap named by
  `migManager.config.name` must hold it under the key `config.yaml`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, cast

from components import chart_values
from components.chart_values import ValueKey

CHART_VERSION = "v26.7.0"


VALUE_KEYS: dict[str, ValueKey] = {
    "driver.enabled": ValueKey(
        "scalar",
        "false: no driver daemonset; the node's own driver (the AL2023 NVIDIA AMI's) is used",
    ),
    "toolkit.enabled": ValueKey(
        "scalar",
        "false: no container-toolkit daemonset; the AMI's toolkit and the nvidia runtime it "
        "configures in containerd are used",
    ),
    "cdi.enabled": ValueKey(
        "scalar",
        "false: the device plugin hands devices to the node's nvidia runtime as "
        "NVIDIA_VISIBLE_DEVICES; true (the chart default) switches it to CDI device lists "
        "(cdi-annotations,cdi-cri) that depend on the node's containerd CDI setup",
    ),
    "mig.strategy": ValueKey(
        "scalar",
        "single | mixed: ClusterPolicy spec.mig.strategy, how the device plugin advertises MIG "
        "devices (nvidia.com/gpu, or nvidia.com/mig-<profile> with '+' written '.')",
    ),
    "migManager.enabled": ValueKey(
        "scalar",
        "true: the MIG manager applies the configuration a node's nvidia.com/mig.config "
        "label names",
    ),
    "migManager.config.name": ValueKey(
        "scalar",
        "ConfigMap the MIG manager mounts; when set, its key config.yaml is the configuration "
        "file (CONFIG_FILE) instead of the configuration generated from the hardware",
    ),
    "migManager.config.default": ValueKey(
        "scalar",
        "configuration for MIG-capable nodes without an nvidia.com/mig.config label; the "
        "operator labels such nodes only when it is all-disabled",
    ),
    "migManager.config.create": ValueKey(
        "scalar", "false: the chart renders no mig-parted ConfigMap of its own"
    ),
    "devicePlugin.enabled": ValueKey("scalar", "true: the NVIDIA device plugin daemonset"),
    "dcgmExporter.enabled": ValueKey("scalar", "true: the DCGM exporter daemonset"),
    "dcgmExporter.serviceMonitor.enabled": ValueKey(
        "scalar",
        "true: a ServiceMonitor for the exporter, created only while the cluster serves the "
        "monitoring.coreos.com ServiceMonitor CRD",
    ),
    "dcgmExporter.serviceMonitor.additionalLabels": ValueKey(
        "map",
        "labels the operator adds to the exporter's ServiceMonitor (ClusterPolicy "
        "spec.dcgmExporter.serviceMonitor.additionalLabels, merged into its metadata.labels)",
    ),
    "nodeStatusExporter.enabled": ValueKey("scalar", "false: no node status exporter daemonset"),
    "psa.enabled": ValueKey(
        "scalar", "false: the operator does not label its namespace for pod security"
    ),
    "daemonsets.tolerations": ValueKey(
        "list", "replaces every operand daemonset's tolerations (ClusterPolicy spec.daemonsets)"
    ),
    "daemonsets.labels": ValueKey(
        "map", "extra labels on every operand daemonset and its pods (operand-labels helper)"
    ),
    "operator.labels": ValueKey(
        "map", "extra labels on the operator Deployment and its pods (gpu-operator.labels helper)"
    ),
}


def value_key_paths(values: Mapping[str, Any]) -> Iterator[str]:
    """Every dotted key path of these Helm values, down to scalars, lists and recorded maps."""
    return chart_values.value_key_paths(values, VALUE_KEYS)


def unchecked_value_paths(values: Mapping[str, Any]) -> list[str]:
    """Key paths of `values` that were not checked against the chart at CHART_VERSION."""
    return chart_values.unchecked_value_paths(values, VALUE_KEYS)


_MIG_ENTRY_KEYS = frozenset({"device-filter", "devices", "mig-enabled", "mig-devices"})
# mig-parted's profile grammar: [<c>c.]<g>g.<gb>gb, then +attributes or -attributes.
_MIG_PROFILE = re.compile(
    r"^([0-9]+c\.)?[0-9]+g\.[0-9]+gb([+-][A-Za-z][A-Za-z0-9.]*(,[A-Za-z][A-Za-z0-9.]*)*)?$"
)


def mig_parted_problems(document: Mapping[str, Any]) -> list[str]:
    """Where a mig-parted document breaks the v1 format the MIG manager reads at CHART_VERSION."""
    problems: list[str] = []
    if document.get("version") != "v1":
        problems.append(f"version is {document.get('version')!r}, not 'v1'")
    problems += [f"unexpected field {k!r}" for k in document if k not in ("version", "mig-configs")]
    configs = _mapping(document.get("mig-configs"))
    if not configs:
        return [*problems, "mig-configs needs at least one configuration"]
    for name, entries in configs.items():
        if not isinstance(entries, list) or not entries:
            problems.append(f"{name}: needs at least one entry")
            continue
        for i, entry in enumerate(cast(list[object], entries)):
            problems += [f"{name}[{i}]: {p}" for p in _mig_entry_problems(entry)]
    return problems


def _mapping(value: object) -> Mapping[str, Any] | None:
    return cast(Mapping[str, Any], value) if isinstance(value, Mapping) else None


def _mig_entry_problems(entry: object) -> list[str]:
    fields = _mapping(entry)
    if fields is None:
        return ["is not a mapping"]
    problems = [f"unexpected field {k!r}" for k in fields if k not in _MIG_ENTRY_KEYS]
    devices: object = fields.get("devices")
    indices = isinstance(devices, list) and all(type(d) is int for d in cast(list[object], devices))
    if devices != "all" and not indices:
        problems.append(f"devices is {devices!r}: 'all' or a list of GPU indices")
    enabled: object = fields.get("mig-enabled")
    if type(enabled) is not bool:
        return [*problems, f"mig-enabled is {enabled!r}: true or false"]
    counts = _mapping(fields.get("mig-devices"))
    if not enabled:
        if counts:
            problems.append("mig-devices given although mig-enabled is false")
        return problems
    if not counts:
        return [*problems, "mig-enabled is true but mig-devices is missing"]
    for profile, count in counts.items():
        if not _MIG_PROFILE.match(str(profile)):
            problems.append(f"{profile!r} is not a MIG profile name")
        if type(count) is not int or count < 0:
            problems.append(f"count of {profile} is {count!r}: a whole number")
    if not any(type(c) is int and c > 0 for c in counts.values()):
        problems.append("every count in mig-devices is 0")
    return problems
