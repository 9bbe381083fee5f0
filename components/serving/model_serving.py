"""One model served by vLLM: Deployment, Service, PodDisruptionBudget (+ IRSA role for S3),
and, when the model declares a canary, a second Deployment and PDB `<name>-canary` running
the canary's image or vLLM settings (its pods carry their own `app.kubernetes.io/instance`,
so neither Deployment adopts the other's pods; the Service then selects both and the mesh
splits requests by weight, components/traffic/mesh.py).

The pod is built by `pod_template`, a pure function, so what a model server
looks like can be read and tested without Pulumi. It runs the stock
`vllm/vllm-openai` image as a restricted pod: non-root (uid/gid 2000), no
privilege escalation, all capabilities dropped, seccomp RuntimeDefault and a
read-only root filesystem. Everything vLLM, Hugging Face, Triton and torch write
goes to emptyDirs, pointed at through the environment:

    /cache     HOME, HF_HOME (hub downloads), VLLM_CACHE_ROOT, TRITON_CACHE_DIR
    /tmp       scratch and vLLM's IPC sockets (VLLM_RPC_BASE_PATH defaults to it)
    /dev/shm   (memory) shared memory between tensor-parallel workers

The stock image runs as root by default and starts `vllm serve`; the pod sets
the command, the user, the working directory and every writable path itself, so
it relies on the image for its software and its PATH/CUDA environment only.

A Hugging Face token, when the model needs one, is a file mounted from its
Secret (read-only, mode 0440: group 2000 through fsGroup) and named by
HF_TOKEN_PATH, which huggingface_hub reads; it is never an environment value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.compute.irsa import ROLE_ANNOTATION, Irsa, irsa_role
from components.compute.nodes import GPU_TAINT, POOL_LABEL, aws_tags
from components.pod_security import restricted_container, restricted_pod
from components.priority import declare_priority_classes
from components.serving.vllm import (
    SERVER_MODULE,
    ServerArgs,
    render_server_args,
    startup_probe_failure_threshold,
)
from components.specs import CostLabels, ImageRef, ModelSpec, S3Weights, VolumeWeights
from components.traffic.istio_chart import merged_metrics_container_port
from components.traffic.tenancy import MODEL_PORT, MODEL_SERVER_COMPONENT

RUN_AS_USER = 2000
CACHE_DIR = "/cache"
WEIGHTS_DIR = "/models"
PROBE_PERIOD_S = 10
HF_TOKEN_KEY = "token"
HF_TOKEN_DIR = "/var/run/secrets/huggingface"
HF_TOKEN_FILE_MODE = 0o440  # owner root and group 2000 (fsGroup) read; nobody writes

ANNOTATION_PREFIX = "swarmstack.io/"
# Surge would need a spare GPU slice; replace one replica at a time instead.
MAX_SURGE = 0


def slo_annotations(spec: ModelSpec) -> dict[str, str]:
    """Annotations that policies and dashboards read a model's objectives from."""
    return {
        f"{ANNOTATION_PREFIX}model": spec.model,
        f"{ANNOTATION_PREFIX}latency-tier": spec.slo.tier,
        f"{ANNOTATION_PREFIX}slo-ttft-p99-ms": str(spec.slo.ttft_p99_ms),
        f"{ANNOTATION_PREFIX}slo-itl-p99-ms": str(spec.slo.itl_p99_ms),
        f"{ANNOTATION_PREFIX}slo-e2e-p99-s": str(spec.slo.e2e_p99_s),
        f"{ANNOTATION_PREFIX}replicas-min": str(spec.replicas.min),
        f"{ANNOTATION_PREFIX}replicas-max": str(spec.replicas.max),
    }


def metrics_annotations() -> dict[str, str]:
    """Where vLLM's metrics are: Istio's injector moves these into the sidecar's agent,
    which serves them merged with Envoy's on its own port (components/traffic/mesh.py)."""
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(MODEL_PORT),
        "prometheus.io/path": "/metrics",
    }


def selector_labels(spec: ModelSpec) -> dict[str, str]:
    return {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/instance": spec.name}


CANARY_SUFFIX = "-canary"
# Every model pod's version: `stable`, or `canary` on a canary's pods. The model servers'
# PodMonitor copies it into every series as `track`, so the SLO rules judge each version
# on its own requests.
TRACK_LABEL = f"{ANNOTATION_PREFIX}track"
SERIES_TRACK_LABEL = "track"


def canary_selector_labels(spec: ModelSpec) -> dict[str, str]:
    """The canary's pods: same name, their own instance, so neither Deployment's selector
    matches the other's pods."""
    return {
        "app.kubernetes.io/name": spec.name,
        "app.kubernetes.io/instance": spec.name + CANARY_SUFFIX,
    }


def service_selector(spec: ModelSpec) -> dict[str, str]:
    """The model Service's selector: both versions when there is a canary (the mesh's
    weighted route then splits by subset), else the stable pods as before."""
    if spec.canary is None:
        return selector_labels(spec)
    return {"app.kubernetes.io/name": spec.name}


def canary_spec(spec: ModelSpec) -> ModelSpec:
    """The model as its canary runs it: the canary's vLLM settings, if it has its own."""
    assert spec.canary is not None
    return spec.model_copy(update={"vllm": spec.canary.vllm or spec.vllm})


def workload_labels(spec: ModelSpec, cost_labels: CostLabels) -> dict[str, str]:
    return {
        **selector_labels(spec),
        **cost_labels.as_labels(),
        "app.kubernetes.io/component": MODEL_SERVER_COMPONENT,
        "app.kubernetes.io/part-of": "swarmstack",
        f"{ANNOTATION_PREFIX}latency-tier": spec.slo.tier,
    }


def server_args(spec: ModelSpec, otlp_traces_endpoint: str | None = None) -> list[str]:
    """vLLM's command line for this model, from its typed config; with the trace
    collector's OTLP/gRPC URL, vLLM exports a span per request there."""
    weights = spec.weights
    model_path, load_format = spec.model, None
    download_dir: str | None = f"{CACHE_DIR}/huggingface"
    if isinstance(weights, S3Weights):
        model_path, load_format, download_dir = weights.uri, "runai_streamer", None
    elif isinstance(weights, VolumeWeights):
        model_path = f"{WEIGHTS_DIR}/{weights.path.strip('/')}".rstrip("/")
        download_dir = None
    return render_server_args(
        ServerArgs(
            model=model_path,
            served_model_name=spec.model,
            port=MODEL_PORT,
            tensor_parallel_size=spec.tensor_parallel_size,
            max_num_seqs=spec.vllm.max_num_seqs,
            max_model_len=spec.vllm.max_model_len,
            gpu_memory_utilization=spec.vllm.gpu_memory_utilization,
            enable_prefix_caching=spec.vllm.enable_prefix_caching,
            dtype=spec.architecture.dtype,
            kv_cache_dtype=spec.vllm.kv_cache_dtype,
            load_format=load_format,
            download_dir=download_dir,
            tool_call_parser=spec.vllm.tool_call_parser,
            tool_strict_level=spec.vllm.tool_strict_level,
            otlp_traces_endpoint=otlp_traces_endpoint,
        )
    )


@dataclass(frozen=True)
class Placement:
    """Where a replica runs and what accelerator it takes; `overflow`: the other pools that
    offer the same accelerator and hold the model (components/compute/placement.py)."""

    pool: str
    resource: str  # nvidia.com/gpu or nvidia.com/mig-<profile>
    count: int
    overflow: tuple[str, ...] = ()


# Interactive models preempt batch ones when no slice is free, never the other way round
# (the scheduler evicts a batch replica, whose pod then waits for a node the Cluster
# Autoscaler starts); the agents' classes (components/agents/workload.py) are separate, as
# model servers and agent workers never compete for the same nodes.
MODEL_PRIORITY_CLASSES: dict[str, tuple[str, int]] = {
    "interactive": ("swarmstack-model-interactive", 100_000),
    "batch": ("swarmstack-model-batch", 10_000),
}
# The scheduler's preference for the planned pool over the overflow pools (1-100).
PLANNED_POOL_WEIGHT = 100


def node_placement(placement: Placement) -> dict[str, Any]:
    """The pod spec's node constraints: the pool's label, or, with overflow pools, a node
    affinity that requires one of the pools and prefers the planned one."""
    if not placement.overflow:
        return {"nodeSelector": {POOL_LABEL: placement.pool}}
    pools = [placement.pool, *placement.overflow]
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": POOL_LABEL, "operator": "In", "values": pools}
                            ]
                        }
                    ]
                },
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": PLANNED_POOL_WEIGHT,
                        "preference": {
                            "matchExpressions": [
                                {"key": POOL_LABEL, "operator": "In", "values": [placement.pool]}
                            ]
                        },
                    }
                ],
            }
        }
    }


def pod_template(
    spec: ModelSpec,
    *,
    image: ImageRef,
    placement: Placement,
    cost_labels: CostLabels,
    service_account: str,
    hf_token_secret: str | None,
    otlp_traces_endpoint: str | None = None,
) -> dict[str, Any]:
    """The vLLM pod template (Kubernetes wire form, camelCase)."""
    volumes: list[dict[str, Any]] = [
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{spec.shm_gib}Gi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
        {"name": "cache", "emptyDir": {"sizeLimit": "200Gi"}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "shm", "mountPath": "/dev/shm"},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "cache", "mountPath": CACHE_DIR},
    ]
    if isinstance(spec.weights, VolumeWeights):
        volumes.append(
            {
                "name": "weights",
                "persistentVolumeClaim": {"claimName": spec.weights.claim_name, "readOnly": True},
            }
        )
        mounts.append({"name": "weights", "mountPath": WEIGHTS_DIR, "readOnly": True})
    env: list[dict[str, Any]] = [
        # The emptyDir itself: a subfolder would not exist in a fresh emptyDir.
        {"name": "HOME", "value": CACHE_DIR},
        {"name": "HF_HOME", "value": f"{CACHE_DIR}/huggingface"},
        {"name": "VLLM_CACHE_ROOT", "value": f"{CACHE_DIR}/vllm"},
        {"name": "XDG_CACHE_HOME", "value": CACHE_DIR},
        {"name": "TRITON_CACHE_DIR", "value": f"{CACHE_DIR}/triton"},
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
        {"name": "DO_NOT_TRACK", "value": "1"},
        {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},  # logs reach `kubectl logs` at once
    ]
    if hf_token_secret is not None:
        volumes.append(
            {
                "name": "hf-token",
                "secret": {
                    "secretName": hf_token_secret,
                    "items": [{"key": HF_TOKEN_KEY, "path": HF_TOKEN_KEY}],
                    "defaultMode": HF_TOKEN_FILE_MODE,
                },
            }
        )
        mounts.append({"name": "hf-token", "mountPath": HF_TOKEN_DIR, "readOnly": True})
        env.append({"name": "HF_TOKEN_PATH", "value": f"{HF_TOKEN_DIR}/{HF_TOKEN_KEY}"})
    accelerator = {placement.resource: str(placement.count)}
    container: dict[str, Any] = {
        "name": "vllm",
        "image": image.reference,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python3", "-m", SERVER_MODULE],
        "args": server_args(spec, otlp_traces_endpoint),
        "workingDir": CACHE_DIR,
        "ports": [
            {"name": "http", "containerPort": MODEL_PORT, "protocol": "TCP"},
            merged_metrics_container_port(),
        ],
        "env": env,
        "resources": {
            "requests": {"cpu": spec.cpu, "memory": f"{spec.memory_gib}Gi", **accelerator},
            "limits": {"memory": f"{spec.memory_gib}Gi", **accelerator},
        },
        "startupProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": PROBE_PERIOD_S,
            "failureThreshold": startup_probe_failure_threshold(
                spec.model_load_timeout_s, PROBE_PERIOD_S
            ),
        },
        "readinessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": PROBE_PERIOD_S,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": 15,
            "timeoutSeconds": 5,
            "failureThreshold": 4,
        },
        "securityContext": restricted_container(),
        "volumeMounts": mounts,
    }
    return {
        "metadata": {
            "labels": {**workload_labels(spec, cost_labels), TRACK_LABEL: "stable"},
            "annotations": {**slo_annotations(spec), **metrics_annotations()},
        },
        "spec": {
            "serviceAccountName": service_account,
            "automountServiceAccountToken": False,
            # In-flight generations get the model's P99 end-to-end time to finish.
            "terminationGracePeriodSeconds": spec.slo.e2e_p99_s + 15,
            "securityContext": restricted_pod(RUN_AS_USER, fs_group=RUN_AS_USER),
            "priorityClassName": MODEL_PRIORITY_CLASSES[spec.slo.tier][0],
            **node_placement(placement),
            "tolerations": [
                {
                    "key": GPU_TAINT.key,
                    "operator": "Equal",
                    "value": GPU_TAINT.value,
                    "effect": GPU_TAINT.kubernetes_effect,
                }
            ],
            "containers": [container],
            "volumes": volumes,
        },
    }


class ModelPriorityClasses(pulumi.ComponentResource):
    """The model servers' PriorityClasses, declared once per cluster: interactive above
    batch."""

    names: dict[str, str]

    def __init__(
        self, name: str, cost_labels: CostLabels, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("swarmstack:serving:PriorityClasses", name, None, opts)
        self.names = declare_priority_classes(
            self, name, MODEL_PRIORITY_CLASSES, "model servers", cost_labels
        )
        self.register_outputs({"names": dict(self.names)})


def _wire_form(spec: dict[str, Any]) -> Any:
    """A spec in Kubernetes wire form (camelCase keys), which the SDK sends as written.

    The SDK's `*SpecArgsDict` types spell their keys in snake_case, so a wire-form
    dict is passed untyped rather than checked against them.
    """
    return spec


def s3_read_policy(uri: str) -> str:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    objects = f"arn:aws:s3:::{bucket}/{prefix}/*" if prefix else f"arn:aws:s3:::{bucket}/*"
    list_statement: dict[str, Any] = {
        "Effect": "Allow",
        "Action": ["s3:ListBucket"],
        "Resource": f"arn:aws:s3:::{bucket}",
    }
    if prefix:
        list_statement["Condition"] = {"StringLike": {"s3:prefix": [f"{prefix}/*", prefix]}}
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": objects},
                list_statement,
            ],
        },
        sort_keys=True,
    )


@dataclass(frozen=True)
class ModelServingArgs:
    spec: ModelSpec
    namespace: pulumi.Input[str]
    namespace_name: str
    image: ImageRef
    placement: Placement
    cost_labels: CostLabels
    irsa: Irsa | None = None
    hf_token_secret: str | None = None
    otlp_traces_endpoint: str | None = None  # the trace collector (None: no tracing)


class ModelServing(pulumi.ComponentResource):
    """vLLM for one model: Deployment, Service, PodDisruptionBudget and its identity."""

    deployment: k8s.apps.v1.Deployment
    service: k8s.core.v1.Service
    pdb: k8s.policy.v1.PodDisruptionBudget
    endpoint: pulumi.Output[str]
    role_arn: pulumi.Output[str] | None

    def __init__(
        self, name: str, args: ModelServingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("swarmstack:serving:Model", name, None, opts)
        spec = args.spec
        labels = workload_labels(spec, args.cost_labels)
        metadata = k8s.meta.v1.ObjectMetaArgs(
            name=spec.name,
            namespace=args.namespace,
            labels=labels,
            annotations=slo_annotations(spec),
        )
        child = pulumi.ResourceOptions(parent=self)

        self.role_arn = None
        account_annotations: dict[str, pulumi.Input[str]] = {}
        if isinstance(spec.weights, S3Weights) and args.irsa is not None:
            self.role_arn = self._weights_role(name, args, args.irsa, spec.weights)
            account_annotations[ROLE_ANNOTATION] = self.role_arn
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=spec.name,
                namespace=args.namespace,
                labels=labels,
                annotations=account_annotations,
            ),
            automount_service_account_token=False,
            opts=child,
        )
        template = pod_template(
            spec,
            image=args.image,
            placement=args.placement,
            cost_labels=args.cost_labels,
            service_account=spec.name,
            hf_token_secret=args.hf_token_secret,
            otlp_traces_endpoint=args.otlp_traces_endpoint,
        )
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=metadata,
            spec=_wire_form(
                {
                    "replicas": spec.replicas.min,
                    "selector": {"matchLabels": selector_labels(spec)},
                    "strategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": MAX_SURGE, "maxUnavailable": 1},
                    },
                    "progressDeadlineSeconds": spec.model_load_timeout_s + 300,
                    "template": template,
                }
            ),
            # KEDA owns the replica count between replicas.min and max: `pulumi up` sets it
            # on creation only, and never resets a scaled Deployment to the minimum.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[account], ignore_changes=["spec.replicas"]
            ),
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=metadata,
            spec=_wire_form(
                {
                    "type": "ClusterIP",
                    "selector": service_selector(spec),
                    "ports": [
                        {
                            "name": "http",
                            "port": MODEL_PORT,
                            "targetPort": "http",
                            "protocol": "TCP",
                            "appProtocol": "http",
                        }
                    ],
                }
            ),
            opts=child,
        )
        # Allows one disruption: maxUnavailable 0 would block every node drain.
        self.pdb = k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=metadata,
            spec=_wire_form(
                {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(spec)}}
            ),
            opts=child,
        )
        self.canary: k8s.apps.v1.Deployment | None = None
        if spec.canary is not None:
            self.canary = self._canary(name, args, account)
        self.endpoint = pulumi.Output.from_input(args.namespace).apply(
            lambda ns: f"http://{spec.name}.{ns}.svc.cluster.local:{MODEL_PORT}/v1"
        )
        self.register_outputs(
            {
                "endpoint": self.endpoint,
                "deployment": self.deployment.metadata.apply(lambda m: m.name),
                "weightsRoleArn": self.role_arn,
            }
        )

    def _canary(
        self, name: str, args: ModelServingArgs, account: k8s.core.v1.ServiceAccount
    ) -> k8s.apps.v1.Deployment:
        """The canary's Deployment and PDB, next to the stable version's."""
        spec = args.spec
        assert spec.canary is not None
        canary = canary_spec(spec)
        template = pod_template(
            canary,
            image=spec.canary.image or args.image,
            placement=args.placement,
            cost_labels=args.cost_labels,
            service_account=spec.name,
            hf_token_secret=args.hf_token_secret,
        )
        labels = {**template["metadata"]["labels"], **canary_selector_labels(spec)}
        labels[TRACK_LABEL] = "canary"
        template["metadata"]["labels"] = labels
        metadata = k8s.meta.v1.ObjectMetaArgs(
            name=spec.name + CANARY_SUFFIX,
            namespace=args.namespace,
            labels=labels,
            annotations=slo_annotations(spec),
        )
        selector = {"matchLabels": canary_selector_labels(spec)}
        deployment = k8s.apps.v1.Deployment(
            f"{name}-canary-deployment",
            metadata=metadata,
            spec=_wire_form(
                {
                    "replicas": spec.canary.replicas,
                    "selector": selector,
                    "strategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
                    },
                    "progressDeadlineSeconds": spec.model_load_timeout_s + 300,
                    "template": template,
                }
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account]),
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-canary-pdb",
            metadata=metadata,
            spec=_wire_form({"maxUnavailable": 1, "selector": selector}),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return deployment

    def _weights_role(
        self, name: str, args: ModelServingArgs, irsa: Irsa, weights: S3Weights
    ) -> pulumi.Output[str]:
        role = irsa_role(
            irsa,
            role_name=f"{name}-weights-role",
            policy_name=f"{name}-weights-read",
            namespace=args.namespace_name,
            service_account=args.spec.name,
            policy=s3_read_policy(weights.uri),
            description=f"Read {weights.uri} for model {args.spec.name} (IRSA)",
            tags=aws_tags(args.cost_labels.as_labels(), model=args.spec.name),
            parent=self,
        )
        return role.arn
