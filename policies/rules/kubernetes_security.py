"""Kubernetes workload security: what a restricted pod looks like, with Kubernetes' defaults.

A field that is absent means what Kubernetes does without it: a container
without securityContext runs as the image's user with the runtime's default
capabilities, a missing namespace is `default`, and a service account token is
mounted unless automounting is turned off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs

from policies.framework import (
    CLUSTER_SCOPED,
    Rule,
    Workload,
    as_dict,
    as_list,
    containers,
    for_workloads,
    k8s_kind,
    metadata_of,
    namespace_of,
    reporter,
)

EXEMPT_WORKLOADS: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string"},
    "default": [],
    "description": "Workloads exempt from this rule, as namespace/name.",
}


def _exempt(w: Workload, config: Mapping[str, Any]) -> bool:
    key = f"{namespace_of(w.props)}/{w.config_name}"
    return key in as_list(config.get("exemptions"))


def _security(pod: Mapping[str, Any], container: Mapping[str, Any], key: str) -> Any:
    """A security setting as Kubernetes resolves it: the container's, else the pod's."""
    value = as_dict(container.get("securityContext")).get(key)
    if value is None:
        value = as_dict(pod.get("securityContext")).get(key)
    return value


def _resources(w: Workload, _: Mapping[str, Any]) -> None:
    for label, c in containers(w.pod):
        resources = as_dict(c.get("resources"))
        requests, limits = as_dict(resources.get("requests")), as_dict(resources.get("limits"))
        missing = [
            what
            for what, present in (
                ("requests.cpu", "cpu" in requests),
                ("requests.memory", "memory" in requests),
                ("limits.memory", "memory" in limits),
            )
            if not present
        ]
        if missing:
            w.report(f"{label} sets no {', '.join(missing)}")


def _privileged(w: Workload, _: Mapping[str, Any]) -> None:
    for label, c in containers(w.pod):
        if as_dict(c.get("securityContext")).get("privileged") is True:
            w.report(f"{label} runs privileged")


def _escalation(w: Workload, _: Mapping[str, Any]) -> None:
    for label, c in containers(w.pod):
        # Unset means allowed (true) unless the container is already non-privileged and
        # has no CAP_SYS_ADMIN: Kubernetes' default is to allow escalation.
        if as_dict(c.get("securityContext")).get("allowPrivilegeEscalation") is not False:
            w.report(f"{label} does not set allowPrivilegeEscalation: false")


def _non_root(w: Workload, _: Mapping[str, Any]) -> None:
    for label, c in containers(w.pod):
        if _security(w.pod, c, "runAsNonRoot") is not True:
            user = _security(w.pod, c, "runAsUser")
            if user is None or int(user) == 0:
                w.report(f"{label} may run as root (runAsNonRoot is not true)")


def _drop_all(w: Workload, _: Mapping[str, Any]) -> None:
    for label, c in containers(w.pod):
        caps = as_dict(as_dict(c.get("securityContext")).get("capabilities"))
        if "ALL" not in [str(x) for x in as_list(caps.get("drop"))]:
            w.report(f"{label} does not drop ALL capabilities")


def _read_only_root(w: Workload, _: Mapping[str, Any]) -> None:
    for label, c in containers(w.pod):
        if as_dict(c.get("securityContext")).get("readOnlyRootFilesystem") is not True:
            w.report(f"{label} has a writable root filesystem")


def _host_namespaces(w: Workload, config: Mapping[str, Any]) -> None:
    if _exempt(w, config):
        return
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if w.pod.get(key) is True:
            w.report(f"pod sets {key}: true")


def _host_path(w: Workload, config: Mapping[str, Any]) -> None:
    if _exempt(w, config):
        return
    for v in as_list(w.pod.get("volumes")):
        volume = as_dict(v)
        if "hostPath" in volume:
            path = as_dict(volume.get("hostPath")).get("path")
            w.report(f"volume {volume.get('name')} mounts host path {path}")


def _seccomp(w: Workload, _: Mapping[str, Any]) -> None:
    pod_profile = as_dict(as_dict(w.pod.get("securityContext")).get("seccompProfile")).get("type")
    for label, c in containers(w.pod):
        profile = as_dict(as_dict(c.get("securityContext")).get("seccompProfile")).get("type")
        effective = profile if profile is not None else pod_profile
        if effective not in ("RuntimeDefault", "Localhost"):
            w.report(f"{label} runs with seccomp profile {effective or 'Unconfined (unset)'}")


def _probes(w: Workload, _: Mapping[str, Any]) -> None:
    if w.kind in ("Job", "CronJob"):
        return
    for label, c in containers(w.pod):
        if label.startswith("init "):
            continue
        missing = [p for p in ("readinessProbe", "livenessProbe") if p not in c]
        if w.is_model_server and "startupProbe" not in c:
            missing.append("startupProbe (a model server needs time to load weights)")
        if missing:
            w.report(f"{label} has no {', '.join(missing)}")


def _automount(w: Workload, config: Mapping[str, Any]) -> None:
    if _exempt(w, config):
        return
    if w.pod.get("automountServiceAccountToken") is not False:
        w.report("mounts a service account token (automountServiceAccountToken is not false)")


def _bare_pods(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if k8s_kind(args.resource_type) == "Pod":
        reporter(args.resource_type, args.props, args.name, report)(
            "is a bare Pod: nothing restarts it on node loss; use a Deployment or Job"
        )


POD_SECURITY_ENFORCE = "pod-security.kubernetes.io/enforce"
# Namespaces whose pods must reach the host, each with the reason; nothing else runs there.
PRIVILEGED_NAMESPACES: dict[str, str] = {
    "istio-cni": "Istio's CNI node agent sets up every meshed pod's traffic redirection from "
    "the host (privileged, hostNetwork, hostPath), so the meshed pods need no NET_ADMIN",
    "gpu-operator": "the GPU operator's device plugin, MIG manager, validator and DCGM "
    "exporter run privileged with host paths and host PID",
    "swarmstack-monitoring": "the node exporter reads the host (hostNetwork, hostPID, hostPath)",
}
EXEMPT_NAMESPACES: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string"},
    "default": sorted(PRIVILEGED_NAMESPACES),
    "description": "Namespaces that may enforce a level below restricted, by name. The "
    "defaults and why: "
    + "; ".join(f"{n}: {why}" for n, why in sorted(PRIVILEGED_NAMESPACES.items())),
}


def _namespace_pod_security(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if k8s_kind(args.resource_type) != "Namespace":
        return
    meta = metadata_of(args.props)
    name = str(meta.get("name") or "")
    if name in as_list(args.get_config().get("exemptions")):
        return
    level = as_dict(meta.get("labels")).get(POD_SECURITY_ENFORCE)
    if level != "restricted":
        how = f"enforces {level!r}" if level else "enforces no level (every pod is admitted)"
        reporter(args.resource_type, args.props, args.name, report)(
            f"Pod Security {how}, not 'restricted' ({POD_SECURITY_ENFORCE})"
        )


def _default_namespace(args: ResourceValidationArgs, report: ReportViolation) -> None:
    kind = k8s_kind(args.resource_type)
    if (
        not kind
        or kind in CLUSTER_SCOPED
        or kind.endswith("List")
        or "helm.sh" in args.resource_type
    ):
        return
    if (
        args.resource_type.startswith("kubernetes:yaml")
        or args.resource_type == "pulumi:providers:kubernetes"
    ):
        return
    namespace = metadata_of(args.props).get("namespace")
    if namespace in (None, "", "default"):
        reporter(args.resource_type, args.props, args.name, report)(
            "lands in the default namespace (metadata.namespace is "
            + ("unset" if not namespace else "'default'")
            + ")"
        )


RULES = [
    Rule(
        "container-resources",
        "kubernetes-security",
        "Every container requests CPU and memory and limits memory.",
        "Set resources.requests.cpu, resources.requests.memory and resources.limits.memory.",
        check=for_workloads(_resources),
    ),
    Rule(
        "no-privileged-containers",
        "kubernetes-security",
        "No container runs privileged.",
        "Remove securityContext.privileged; grant the one capability needed instead.",
        check=for_workloads(_privileged),
    ),
    Rule(
        "no-privilege-escalation",
        "kubernetes-security",
        "Every container sets allowPrivilegeEscalation: false (Kubernetes allows it when unset).",
        "Set securityContext.allowPrivilegeEscalation: false on every container.",
        check=for_workloads(_escalation),
    ),
    Rule(
        "run-as-non-root",
        "kubernetes-security",
        "Containers run as non-root; without securityContext they run as the image's user.",
        "Set runAsNonRoot: true (and a non-zero runAsUser) on the pod or container.",
        check=for_workloads(_non_root),
    ),
    Rule(
        "drop-all-capabilities",
        "kubernetes-security",
        "Every container drops ALL Linux capabilities.",
        "Set securityContext.capabilities.drop: [ALL]; add back only what is needed.",
        check=for_workloads(_drop_all),
    ),
    Rule(
        "read-only-root-filesystem",
        "kubernetes-security",
        "Every container has a read-only root filesystem.",
        "Set readOnlyRootFilesystem: true and mount emptyDirs for scratch and caches.",
        check=for_workloads(_read_only_root),
    ),
    Rule(
        "no-host-namespaces",
        "kubernetes-security",
        "No pod shares the node's network, PID or IPC namespace, outside exemptions.",
        "Remove hostNetwork/hostPID/hostIPC, or exempt the workload (device plugins, DCGM).",
        check=for_workloads(_host_namespaces),
        config={"exemptions": EXEMPT_WORKLOADS},
    ),
    Rule(
        "no-host-path-volumes",
        "kubernetes-security",
        "No pod mounts a hostPath volume, outside exemptions.",
        "Use an emptyDir or a PersistentVolumeClaim, or exempt the workload.",
        check=for_workloads(_host_path),
        config={"exemptions": EXEMPT_WORKLOADS},
    ),
    Rule(
        "seccomp-runtime-default",
        "kubernetes-security",
        "Every container runs with the RuntimeDefault (or a Localhost) seccomp profile.",
        "Set securityContext.seccompProfile.type: RuntimeDefault on the pod.",
        check=for_workloads(_seccomp),
    ),
    Rule(
        "probes-configured",
        "kubernetes-security",
        "Long-running containers have readiness and liveness probes; model servers a startup "
        "probe.",
        "Add readinessProbe and livenessProbe; for model servers a startupProbe sized for loading.",
        check=for_workloads(_probes),
    ),
    Rule(
        "namespace-pod-security",
        "kubernetes-security",
        "Every namespace the stack declares enforces the restricted Pod Security level, "
        "outside documented exemptions (the Istio CNI node agent's, the GPU operator's and "
        "the monitoring namespace, whose pods reach the host).",
        "Label the namespace pod-security.kubernetes.io/enforce: restricted, or exempt it by "
        "name with the reason its pods need the host.",
        check=_namespace_pod_security,
        config={"exemptions": EXEMPT_NAMESPACES},
    ),
    Rule(
        "no-bare-pods",
        "kubernetes-security",
        "Pods are managed by a controller, never declared bare.",
        "Wrap the pod in a Deployment, StatefulSet or Job.",
        check=_bare_pods,
    ),
    Rule(
        "no-default-namespace",
        "kubernetes-security",
        "Namespaced resources name a namespace other than default (unset means default).",
        "Set metadata.namespace to one of the stack's namespaces.",
        check=_default_namespace,
    ),
    Rule(
        "no-service-account-token-automount",
        "kubernetes-security",
        "Pods do not mount a service account token unless exempted (it is mounted when unset).",
        "Set automountServiceAccountToken: false on the pod, or exempt a workload that calls "
        "the Kubernetes API.",
        check=for_workloads(_automount),
        config={"exemptions": EXEMPT_WORKLOADS},
    ),
]
