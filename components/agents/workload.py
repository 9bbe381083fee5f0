"""One agent type as a workload of the agent worker image (`images/agent-worker`).

`AgentWorkload` declares, in the agents' namespace, everything one agent type runs as:
a ServiceAccount (with an IRSA role only when the agent needs AWS: MSK IAM for an events
agent), a Deployment, a Service for `http` agents and a PodDisruptionBudget that allows
one disruption. The PriorityClasses all agents share are declared once, by
`AgentPriorityClasses`; the scrape target is the stack's one agents PodMonitor
(stacks/observability.py), so every agent pod, http or events, is scraped on its `http`
port.

The pod is rendered by pure functions so it can be read and tested alone:

- `worker_container` is the worker container's command and environment, the one
  rendering both targets run: the cluster (the Deployment here) and the local target
  (loadtests/local_worker.py), which overrides only what differs on one machine, each
  difference listed once with its reason (`local_env` there). Each variable says where a
  pod gets it: a literal value, the path of a mounted Secret key, or the downward API.
- `pod_template` is the pod: restricted security (non-root uid 10001 as the image's user,
  no privilege escalation, all capabilities dropped, seccomp RuntimeDefault, read-only
  root filesystem with an emptyDir at /tmp), the data plane's secrets as read-only files
  (projected volumes, one per folder the contract names), startup, readiness (`/readyz`:
  model, Redis and Qdrant reachable) and liveness (`/healthz`) probes, zone and node
  topology spread, the tier's PriorityClass and, for `sandbox: gvisor`, the gVisor
  RuntimeClass.

Shutdown: on deletion the kubelet runs the preStop sleep first (the endpoints controller
and every proxy drop the pod meanwhile, so no new turn arrives), then sends SIGTERM; the
worker drains and checkpoints within `GRACE_PERIOD_S`. The preStop time counts inside
`terminationGracePeriodSeconds`, so that is preStop + grace + `SHUTDOWN_MARGIN_S`
(`termination_grace_period_s`), and the kubelet never kills a worker that is still
checkpointing.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.agents.spec import (
    AGENT_COMPONENT,
    WORKER_COMMAND,
    WORKER_PORT,
    AgentSpec,
    canary_name,
    canary_selector_labels,
    selector_labels,
    type_selector,
    workload_name,
)
from components.compute.irsa import ROLE_ANNOTATION, Irsa, irsa_role
from components.compute.nodes import aws_tags
from components.data.contract import MountedFile, SecretRef, WorkerWiring
from components.pod_security import restricted_container, restricted_pod
from components.priority import declare_priority_classes
from components.specs import CostLabels, ImageRef
from components.traffic.istio_chart import merged_metrics_container_port
from components.traffic.tenancy import MODEL_PORT

# The worker's container in the pod template (KEDA reads its environment: envSourceContainerName).
WORKER_CONTAINER = "worker"

WORKER_PORT_NAME = "http"  # the worker port's name in the Service and the monitors
RUN_AS_USER = 10001  # the image's `agent` user and group
PRESTOP_SLEEP_S = 5  # endpoint removal reaches every proxy before SIGTERM
SHUTDOWN_MARGIN_S = 10  # past the worker's own deadline: process exit, last log lines
MAX_SURGE = 1  # a rollout adds one pod before it removes one
STARTUP_PERIOD_S = 5
STARTUP_BUDGET_S = 120  # the worker starts in seconds; the model may still be loading
SECRET_FILE_MODE = 0o440  # owner root, group 10001 (fsGroup) reads; nobody writes
GVISOR_RUNTIME_CLASS = "gvisor"
TEAM_FIELD = "metadata.labels['team']"  # AGENT_TEAM: the pod's own team label
ZONE_KEY = "topology.kubernetes.io/zone"
HOST_KEY = "kubernetes.io/hostname"

Tier = Literal["interactive", "batch"]
# Interactive agents preempt batch ones when a node is short, never the other way round;
# both sit below the system-node-critical/cluster-critical classes.
PRIORITY_CLASSES: dict[Tier, tuple[str, int]] = {
    "interactive": ("swarmstack-agent-interactive", 100_000),
    "batch": ("swarmstack-agent-batch", 10_000),
}


def termination_grace_period_s(grace_period_s: int) -> int:
    """The pod's terminationGracePeriodSeconds: the preStop sleep runs inside it, then the
    worker's own `GRACE_PERIOD_S`, then a margin."""
    return PRESTOP_SLEEP_S + grace_period_s + SHUTDOWN_MARGIN_S


def model_base_url(model: str, models_namespace: str) -> str:
    """The in-cluster URL of a model server's OpenAI API (its Service, port 8000)."""
    return f"http://{model}.{models_namespace}.svc.cluster.local:{MODEL_PORT}/v1"


@dataclass(frozen=True)
class ModelTarget:
    """The model an agent calls: where, by which served name, and how long it waits."""

    base_url: str
    served_name: str  # vLLM's --served-model-name (the model id)
    timeout_s: int  # the timeout chain's worker hop (components/traffic/timeouts.py)


def worker_environment(
    agent: AgentSpec,
    *,
    model: ModelTarget,
    wiring: WorkerWiring,
) -> dict[str, pulumi.Input[str]]:
    """The worker's environment variables (names as agent_worker/config.py reads them):
    the data plane's wiring, the model, the agent's tools, budgets and shutdown deadline.
    `AGENT_TEAM` is not here: the pod sets it from its own `team` label."""
    env: dict[str, pulumi.Input[str]] = dict(wiring.env)
    env["AGENT_NAME"] = agent.name
    env["WORKER_MODE"] = agent.mode
    env["MODEL_BASE_URL"] = model.base_url
    env["MODEL_NAME"] = model.served_name
    env["MODEL_TIMEOUT_S"] = str(model.timeout_s)
    if agent.degraded_model is not None:  # a gateway model name (the config requires one)
        env["MODEL_DEGRADED_NAME"] = agent.degraded_model
    env["GRACE_PERIOD_S"] = str(agent.grace_period_s)
    env["AGENT_TOOLS"] = ",".join(agent.tools) if agent.tools else "none"
    budgets = agent.budgets
    for name, value in (
        ("BUDGET_SESSION_TOKENS", budgets.session_tokens),
        ("BUDGET_USER_TOKENS_PER_DAY", budgets.user_tokens_per_day),
        ("BUDGET_AGENT_TOKENS_PER_DAY", budgets.agent_tokens_per_day),
    ):
        if value is not None:
            env[name] = str(value)
    env["BUDGET_DEGRADE_AT"] = f"{budgets.degrade_at:g}"
    return env


@dataclass(frozen=True)
class WorkerEnv:
    """One variable of the worker container and where a pod gets it: `value` (literal),
    `field_path` (the downward API), and for a literal that is the path of a mounted
    Secret key, that key (`secret`)."""

    name: str
    value: pulumi.Input[str] | None = None
    field_path: str | None = None
    secret: SecretRef | None = None

    def wire(self) -> dict[str, Any]:
        if self.field_path is not None:
            return {"name": self.name, "valueFrom": {"fieldRef": {"fieldPath": self.field_path}}}
        return {"name": self.name, "value": self.value}


@dataclass(frozen=True)
class WorkerContainer:
    """The worker container as rendered: its command, its environment in order, and the
    Secret keys mounted as files (the variables ending in _FILE name their paths)."""

    command: tuple[str, ...]
    env: tuple[WorkerEnv, ...]
    files: tuple[MountedFile, ...]

    def wire_env(self) -> list[dict[str, Any]]:
        return [e.wire() for e in self.env]


def worker_container(
    agent: AgentSpec, *, model: ModelTarget, wiring: WorkerWiring
) -> WorkerContainer:
    """The worker container's command and environment (pure): `worker_environment`, the
    listen address and port, and `AGENT_TEAM` from the pod's own `team` label."""
    mounted = {f.path: f.secret for f in wiring.files}
    env = [WorkerEnv("WORKER_HOST", "0.0.0.0"), WorkerEnv("WORKER_PORT", str(WORKER_PORT))]
    for name, value in sorted(worker_environment(agent, model=model, wiring=wiring).items()):
        secret = mounted.get(value) if isinstance(value, str) else None
        env.append(WorkerEnv(name, value, secret=secret))
    env.append(WorkerEnv("AGENT_TEAM", field_path=TEAM_FIELD))
    return WorkerContainer(command=WORKER_COMMAND, env=tuple(env), files=wiring.files)


def pod_labels(agent: AgentSpec, cost_labels: CostLabels) -> dict[str, str]:
    """Every agent pod's labels: its selector, the component, cost labels with the
    agent's own team (usage records read it through the downward API)."""
    labels = {
        **cost_labels.as_labels(),
        **selector_labels(agent),
        "app.kubernetes.io/component": AGENT_COMPONENT,
        "app.kubernetes.io/part-of": "swarmstack",
        "swarmstack.io/latency-tier": agent.tier,
    }
    if agent.team is not None:
        labels["team"] = agent.team
    return labels


def _secret_volumes(files: Sequence[MountedFile]) -> tuple[list[Any], list[Any]]:
    """One projected volume per folder the contract names (a folder may take keys of
    several Secrets: a password and the CA bundle)."""
    by_dir: dict[str, list[MountedFile]] = {}
    for f in files:
        by_dir.setdefault(posixpath.dirname(f.path), []).append(f)
    volumes: list[Any] = []
    mounts: list[Any] = []
    for i, (folder, members) in enumerate(sorted(by_dir.items())):
        name = f"secrets-{i}"
        volumes.append(
            {
                "name": name,
                "projected": {
                    "defaultMode": SECRET_FILE_MODE,
                    "sources": [
                        {
                            "secret": {
                                "name": m.secret.name,
                                "items": [
                                    {"key": m.secret.key, "path": posixpath.basename(m.path)}
                                ],
                            }
                        }
                        for m in members
                    ],
                },
            }
        )
        mounts.append({"name": name, "mountPath": folder, "readOnly": True})
    return volumes, mounts


def _spread(agent: AgentSpec) -> list[dict[str, Any]]:
    # Soft: a zone short of capacity must not stop a rollout, but replicas leave it first.
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector_labels(agent)},
        }
        for key in (ZONE_KEY, HOST_KEY)
    ]


def pod_template(
    agent: AgentSpec,
    *,
    image: ImageRef,
    worker: WorkerContainer,
    cost_labels: CostLabels,
) -> dict[str, Any]:
    """The worker pod template (Kubernetes wire form), running `worker`."""
    secret_volumes, secret_mounts = _secret_volumes(worker.files)
    probe = {"port": WORKER_PORT_NAME}
    container: dict[str, Any] = {
        "name": WORKER_CONTAINER,
        "image": image.reference,
        "imagePullPolicy": "IfNotPresent",
        "command": list(worker.command),
        "ports": [
            {"name": WORKER_PORT_NAME, "containerPort": WORKER_PORT, "protocol": "TCP"},
            merged_metrics_container_port(),
        ],
        "env": worker.wire_env(),
        "resources": {
            "requests": {
                "cpu": f"{agent.resources.cpu_millis}m",
                "memory": f"{agent.resources.memory_mib}Mi",
            },
            "limits": {"memory": f"{agent.resources.memory_mib}Mi"},
        },
        "startupProbe": {
            "httpGet": {"path": "/healthz", **probe},
            "periodSeconds": STARTUP_PERIOD_S,
            "failureThreshold": STARTUP_BUDGET_S // STARTUP_PERIOD_S,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", **probe},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", **probe},
            "periodSeconds": 15,
            "timeoutSeconds": 5,
            "failureThreshold": 4,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_S}}},
        "securityContext": restricted_container(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *secret_mounts],
    }
    spec: dict[str, Any] = {
        "serviceAccountName": workload_name(agent),
        # IRSA's token comes through the EKS webhook's own projected volume.
        "automountServiceAccountToken": False,
        "priorityClassName": PRIORITY_CLASSES[agent.tier][0],
        "terminationGracePeriodSeconds": termination_grace_period_s(agent.grace_period_s),
        "securityContext": restricted_pod(RUN_AS_USER, fs_group=RUN_AS_USER),
        "topologySpreadConstraints": _spread(agent),
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}, *secret_volumes],
    }
    if agent.sandbox == "gvisor":
        spec["runtimeClassName"] = GVISOR_RUNTIME_CLASS
    # Under STRICT mTLS Prometheus (outside the mesh) reaches only the sidecar's merged
    # metrics port; these tell the Istio agent where the worker's own /metrics are.
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(WORKER_PORT),
        "prometheus.io/path": "/metrics",
    }
    labels = pod_labels(agent, cost_labels)
    if agent.canary is not None:
        labels[TRACK_LABEL] = "stable"
    return {
        "metadata": {"labels": labels, "annotations": annotations},
        "spec": spec,
    }


TRACK_LABEL = "swarmstack.io/track"  # stable | canary, as on the model servers' pods


def canary_image(agent: AgentSpec, image: ImageRef) -> ImageRef:
    """The canary's image: the agent's repository at the canary's tag (no digest)."""
    assert agent.canary is not None
    return image.model_copy(update={"tag": agent.canary.tag, "digest": None})


def canary_pod_template(agent: AgentSpec, template: Mapping[str, Any]) -> dict[str, Any]:
    """The stable pod template as the canary runs it: its own name label (and spread over
    its own pods), track `canary`; the image is set by the caller's rendering."""
    labels = {
        **template["metadata"]["labels"],
        **canary_selector_labels(agent),
        TRACK_LABEL: "canary",
    }
    spec = dict(template["spec"])
    spec["topologySpreadConstraints"] = [
        {**c, "labelSelector": {"matchLabels": canary_selector_labels(agent)}}
        for c in spec["topologySpreadConstraints"]
    ]
    return {"metadata": {**template["metadata"], "labels": labels}, "spec": spec}


def canary_deployment_spec(agent: AgentSpec, template: Mapping[str, Any]) -> dict[str, Any]:
    """The canary's Deployment spec: its fixed replicas, the same rollout as the stable's."""
    assert agent.canary is not None
    return {
        "replicas": agent.canary.replicas,
        "selector": {"matchLabels": canary_selector_labels(agent)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": MAX_SURGE, "maxUnavailable": 0},
        },
        "template": dict(template),
    }


def deployment_spec(agent: AgentSpec, template: Mapping[str, Any]) -> dict[str, Any]:
    """The Deployment spec: `replicas.min` (the autoscaler moves it within the range),
    surge one pod before removing one so a rollout never lowers capacity."""
    return {
        "replicas": agent.replicas.min,
        "selector": {"matchLabels": selector_labels(agent)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": MAX_SURGE, "maxUnavailable": 0},
        },
        "template": dict(template),
    }


def service_spec(agent: AgentSpec) -> dict[str, Any]:
    return {
        "type": "ClusterIP",
        "selector": type_selector(agent),
        "ports": [
            {
                "name": WORKER_PORT_NAME,
                "port": WORKER_PORT,
                "targetPort": WORKER_PORT_NAME,
                "protocol": "TCP",
                "appProtocol": "http",
            }
        ],
    }


def _wire(spec: Mapping[str, Any]) -> Any:
    """A wire-form (camelCase) spec, passed untyped (the SDK's dict types are snake_case)."""
    return dict(spec)


@dataclass(frozen=True)
class AgentWorkloadArgs:
    spec: AgentSpec
    namespace: pulumi.Input[str]
    namespace_name: str
    image: ImageRef
    model: ModelTarget
    wiring: WorkerWiring
    cost_labels: CostLabels
    irsa: Irsa | None = None


class AgentWorkload(pulumi.ComponentResource):
    """One agent type's workers: ServiceAccount, Deployment, Service (http), PDB."""

    deployment: k8s.apps.v1.Deployment
    service: k8s.core.v1.Service | None
    pdb: k8s.policy.v1.PodDisruptionBudget
    role_arn: pulumi.Output[str] | None

    def __init__(
        self, name: str, args: AgentWorkloadArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("swarmstack:agents:Workload", name, None, opts)
        agent = args.spec
        labels = pod_labels(agent, args.cost_labels)
        metadata = k8s.meta.v1.ObjectMetaArgs(
            name=workload_name(agent), namespace=args.namespace, labels=labels
        )
        child = pulumi.ResourceOptions(parent=self)
        self.role_arn = None
        annotations: dict[str, pulumi.Input[str]] = {}
        if args.wiring.irsa_policy is not None and args.irsa is not None:
            role = irsa_role(
                args.irsa,
                role_name=f"{name}-role",
                policy_name=f"{name}-policy",
                namespace=args.namespace_name,
                service_account=workload_name(agent),
                policy=args.wiring.irsa_policy,
                description=f"Agent {agent.name}: its Kafka topics and group on MSK (IRSA)",
                tags=aws_tags(args.cost_labels.as_labels(), agent=agent.name),
                parent=self,
            )
            self.role_arn = role.arn
            annotations[ROLE_ANNOTATION] = role.arn
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=workload_name(agent),
                namespace=args.namespace,
                labels=labels,
                annotations=annotations,
            ),
            automount_service_account_token=False,
            opts=child,
        )
        worker = worker_container(agent, model=args.model, wiring=args.wiring)
        template = pod_template(
            agent, image=args.image, worker=worker, cost_labels=args.cost_labels
        )
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=metadata,
            spec=_wire(deployment_spec(agent, template)),
            # KEDA owns the replica count once the Deployment exists.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[account], ignore_changes=["spec.replicas"]
            ),
        )
        self.canary: k8s.apps.v1.Deployment | None = None
        if agent.canary is not None:
            canary_template = canary_pod_template(
                agent,
                pod_template(
                    agent,
                    image=canary_image(agent, args.image),
                    worker=worker,
                    cost_labels=args.cost_labels,
                ),
            )
            canary_meta = k8s.meta.v1.ObjectMetaArgs(
                name=canary_name(agent),
                namespace=args.namespace,
                labels={**labels, **canary_selector_labels(agent)},
            )
            self.canary = k8s.apps.v1.Deployment(
                f"{name}-canary-deployment",
                metadata=canary_meta,
                spec=_wire(canary_deployment_spec(agent, canary_template)),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[account]),
            )
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-canary-pdb",
                metadata=canary_meta,
                spec=_wire(
                    {
                        "maxUnavailable": 1,
                        "selector": {"matchLabels": canary_selector_labels(agent)},
                    }
                ),
                opts=child,
            )
        self.service = None
        if agent.mode == "http":
            self.service = k8s.core.v1.Service(
                f"{name}-service", metadata=metadata, spec=_wire(service_spec(agent)), opts=child
            )
        # Allows one disruption: maxUnavailable 0 would block every node drain; a drained
        # worker checkpoints its turns and another resumes them.
        self.pdb = k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=metadata,
            spec=_wire({"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(agent)}}),
            opts=child,
        )
        self.register_outputs(
            {
                "deployment": self.deployment.metadata.apply(lambda m: m.name),
                "roleArn": self.role_arn,
            }
        )


class AgentPriorityClasses(pulumi.ComponentResource):
    """The agents' PriorityClasses, declared once per cluster: interactive above batch."""

    names: dict[Tier, str]

    def __init__(
        self, name: str, cost_labels: CostLabels, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("swarmstack:agents:PriorityClasses", name, None, opts)
        self.names = declare_priority_classes(
            self, name, PRIORITY_CLASSES, "agent workers", cost_labels
        )
        self.register_outputs({"names": dict(self.names)})


def worker_repository(
    name: str,
    *,
    repository_name: str,
    kms_key_arn: pulumi.Input[str],
    cost_labels: CostLabels,
    opts: pulumi.ResourceOptions | None = None,
) -> aws.ecr.Repository:
    """The ECR repository the worker image is pushed to: scanned on push, tags immutable
    (a tag names one image for good), encrypted with the stack's KMS key."""
    return aws.ecr.Repository(
        name,
        name=repository_name,
        image_tag_mutability="IMMUTABLE",
        image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
            scan_on_push=True
        ),
        encryption_configurations=[
            aws.ecr.RepositoryEncryptionConfigurationArgs(
                encryption_type="KMS", kms_key=kms_key_arn
            )
        ],
        tags=aws_tags(cost_labels.as_labels(), component="agent-worker-image"),
        opts=opts,
    )
