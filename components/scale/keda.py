"""Workload autoscaling with KEDA: the operator release and one ScaledObject per model and
per agent type, each on the signal that says the workload is full.

- Models scale on their sequence slots: `vllm:num_requests_running +
  vllm:num_requests_waiting`, summed over the model's replicas, against `maxNumSeqs`
  times the tier's target utilisation per replica. `num_requests_waiting` alone stays at
  zero until every slot of every replica is taken, and by then new requests already
  queue for a slot and TTFT has broken; counting running sequences too lets an
  interactive model add a replica while slots are still free. A TTFT-derived threshold
  would need a histogram quantile, which lags by its rate window and is noisy at low
  traffic; the slot count moves with the load itself.
- Events agents scale on their consumer group's lag on their tasks topic (KEDA's kafka
  scaler, which never scales past the topic's partitions: `allowIdleConsumers` is left
  off, and the config keeps `replicas.max` within the partitions). The scaler reads the
  bus with the KafkaUser the data plane declares for it (`KEDA_USER`, Describe only)
  through a `TriggerAuthentication` in the agents' namespace: the password from the
  Secret Strimzi writes for that user, the CA from the stack's CA bundle Secret, the
  user name from a ConfigMap (no secret).
- On MSK (SASL/IAM on 9098) the same trigger signs OAUTHBEARER tokens with AWS credentials
  (`sasl: oauthbearer`, `saslTokenProvider: aws_msk_iam`, `awsRegion`, `tls: enable`, as
  the kafka scaler of the chart's KEDA release reads them). Its `TriggerAuthentication` holds
  no secret: `podIdentity.provider: aws` with `identityOwner: keda`, so the scaler uses the
  operator's own IRSA role (`podIdentity.aws.irsa.roleArn` of the chart), whose policy
  (`components.data.kafka.msk_lag_reader_policy`) describes the tasks topics and groups only.
- HTTP agents scale on the worker's `agent_active_sessions` per pod.

Interactive workloads (interactive models, and http agents until agent types declare a
tier) never scale to zero. Scale-down waits out a whole turn: the stabilisation window is
the longest turn a worker can be in (its model calls, each bounded by the timeout chain's
`worker_s`) plus a margin, and at most one pod goes per window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, field_validator

from components.agents.spec import AgentSpec, kafka_names, workload_name
from components.agents.workload import WORKER_CONTAINER
from components.compute.irsa import Irsa, irsa_role
from components.data.kafka import KEDA_USER, KafkaConnection
from components.observe.selection import MONITORING_RELEASE
from components.scale import keda_chart
from components.specs import CostLabels, ModelSpec, Spec
from components.traffic.timeouts import TimeoutChain

KEDA_API_VERSION = "keda.sh/v1alpha1"
# How many model calls one turn of the worker makes at most (its MAX_STEPS default): a turn
# lasts at most this many `worker_s` deadlines.
TURN_MODEL_CALLS = 4
# The kube-prometheus-stack chart names its Prometheus Service `<fullname>-prometheus`,
# fullname being `<release>-kube-prometheus-stack` cut to 26 characters; it serves 9090.
PROMETHEUS_PORT = 9090
KAFKA_USERNAME_CONFIG_MAP = f"{KEDA_USER}-username"
# The worker's environment variable with the bus's bootstrap (kafka_client_environment),
# and the kafka trigger's key that reads a scale target's variable.
BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP"
BOOTSTRAP_FROM_ENV = "bootstrapServersFromEnv"

Tier = Literal["interactive", "batch"]


class KedaSpec(Spec):
    """The KEDA release."""

    chart_version: str = Field(
        default=keda_chart.CHART_VERSION,
        description=f"keda chart version. Only {keda_chart.CHART_VERSION} is accepted: the "
        "Helm values swarmstack renders were checked against that release's chart.",
        json_schema_extra={"enum": [keda_chart.CHART_VERSION]},
    )
    namespace: str = Field(
        default="keda", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", description="Namespace."
    )

    @field_validator("chart_version")
    @classmethod
    def _checked_chart(cls, version: str) -> str:
        if version != keda_chart.CHART_VERSION:
            raise ValueError(
                f"{version!r} is not the keda chart version swarmstack's Helm values were "
                f"checked against ({keda_chart.CHART_VERSION}); another version needs its "
                "values.yaml read again and components/scale/keda_chart.py updated first"
            )
        return version


class AutoscalingSpec(Spec):
    """How workloads and nodes scale (`swarmstack:autoscaling`)."""

    keda: KedaSpec = Field(default_factory=KedaSpec, description="The KEDA release.")
    cluster_autoscaler_chart_version: str = Field(
        default="9.59.0",
        description="cluster-autoscaler chart version. Only 9.59.0 is accepted: the Helm "
        "values swarmstack renders were checked against that release's chart.",
        json_schema_extra={"enum": ["9.59.0"]},
    )
    polling_interval_s: int = Field(
        default=15, ge=5, le=300, description="How often KEDA reads each signal, s."
    )
    interactive_slot_utilization: float = Field(
        default=0.75,
        gt=0,
        le=1,
        description="Share of an interactive model replica's `maxNumSeqs` sequence slots "
        "(running + waiting) at which another replica is added: below 1 so a replica "
        "arrives before requests queue for a slot.",
    )
    batch_slot_utilization: float = Field(
        default=1.0,
        gt=0,
        le=4,
        description="The same for batch models; above 1 lets a short queue form first.",
    )
    sessions_per_worker: int = Field(
        default=20, ge=1, le=1000, description="Active sessions per http agent worker pod."
    )
    lag_per_worker: int = Field(
        default=10, ge=1, le=100_000, description="Waiting tasks per events agent worker pod."
    )
    scale_down_margin_s: int = Field(
        default=60,
        ge=0,
        le=3600,
        description="Seconds the scale-down stabilisation window adds to the longest turn.",
    )

    @field_validator("cluster_autoscaler_chart_version")
    @classmethod
    def _checked_ca_chart(cls, version: str) -> str:
        from components.scale.cluster_autoscaler_chart import CHART_VERSION  # noqa: PLC0415

        if version != CHART_VERSION:
            raise ValueError(
                f"{version!r} is not the cluster-autoscaler chart version swarmstack's Helm "
                f"values were checked against ({CHART_VERSION}); another version needs its "
                "values.yaml read again and components/scale/cluster_autoscaler_chart.py "
                "updated first"
            )
        return version


def agent_tier(agent: AgentSpec) -> Tier:
    """The latency tier of an agent type, as its config declares it."""
    return agent.tier


def prometheus_url(monitoring_namespace: str) -> str:
    """The in-cluster URL of the monitoring release's Prometheus."""
    fullname = f"{MONITORING_RELEASE}-kube-prometheus-stack"[:26].rstrip("-")
    return f"http://{fullname}-prometheus.{monitoring_namespace}.svc:{PROMETHEUS_PORT}"


def scale_down_window_s(chains: Sequence[TimeoutChain], margin_s: int) -> int:
    """Seconds a scale-down waits: the longest turn (TURN_MODEL_CALLS calls, each bounded by
    its chain's worker deadline) plus `margin_s`."""
    longest_call = max(c.worker_s for c in chains)
    return longest_call * TURN_MODEL_CALLS + margin_s


def replica_bounds(minimum: int, maximum: int, tier: Tier, where: str) -> tuple[int, int]:
    if tier == "interactive" and minimum < 1:
        raise ValueError(f"{where}: an interactive workload never scales to zero (min is 0)")
    return minimum, maximum


def _behavior(window_s: int) -> dict[str, Any]:
    return {
        "horizontalPodAutoscalerConfig": {
            "behavior": {
                "scaleDown": {
                    "stabilizationWindowSeconds": window_s,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": window_s}],
                }
            }
        }
    }


def _scaled_object(
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    bounds: tuple[int, int],
    polling_interval_s: int,
    window_s: int,
    triggers: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicaCount": bounds[0],
            "maxReplicaCount": bounds[1],
            "pollingInterval": polling_interval_s,
            "advanced": _behavior(window_s),
            "triggers": triggers,
        },
    }


def model_load_query(model: ModelSpec, namespace: str) -> str:
    """The sequences a model's replicas hold or queue, summed over its replicas."""
    match = f'namespace="{namespace}",service="{model.name}"'
    return f"sum(vllm:num_requests_running{{{match}}}) + sum(vllm:num_requests_waiting{{{match}}})"


def model_threshold(model: ModelSpec, spec: AutoscalingSpec) -> str:
    share = (
        spec.interactive_slot_utilization
        if model.slo.tier == "interactive"
        else spec.batch_slot_utilization
    )
    return str(max(1, round(model.vllm.max_num_seqs * share)))


def model_scaled_object(
    model: ModelSpec,
    *,
    namespace: str,
    monitoring_namespace: str,
    spec: AutoscalingSpec,
    chain: TimeoutChain,
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """A model Deployment's ScaledObject (the Deployment is named by the model)."""
    bounds = replica_bounds(
        model.replicas.min, model.replicas.max, model.slo.tier, f"model {model.name}"
    )
    trigger = {
        "type": "prometheus",
        "name": "sequence-slots",
        "metricType": "AverageValue",
        "metadata": {
            "serverAddress": prometheus_url(monitoring_namespace),
            "query": model_load_query(model, namespace),
            "threshold": model_threshold(model, spec),
        },
    }
    window = scale_down_window_s([chain], spec.scale_down_margin_s)
    return _scaled_object(
        name=model.name,
        namespace=namespace,
        labels=labels,
        bounds=bounds,
        polling_interval_s=spec.polling_interval_s,
        window_s=window,
        triggers=[trigger],
    )


def sessions_query(agent: AgentSpec, namespace: str) -> str:
    return f'sum(agent_active_sessions{{namespace="{namespace}",agent="{agent.name}"}})'


def kafka_trigger_authentication(
    namespace: str, connection: KafkaConnection, labels: Mapping[str, str]
) -> dict[str, Any]:
    """How KEDA's kafka scaler logs in: as SCRAM user KEDA_USER on Strimzi (references
    only, no value), or as the operator's IRSA role on MSK (`msk_trigger_authentication`)."""
    if connection.auth == "aws-msk-iam" and connection.tls:
        return msk_trigger_authentication(namespace, labels)
    if connection.auth != "scram-sha-512" or not connection.tls:
        raise ValueError(
            f"the kafka scaler reads the bus as SCRAM user {KEDA_USER} over TLS; this bus "
            f"uses auth {connection.auth} (tls {connection.tls})"
        )
    secrets: list[dict[str, str]] = [
        {"parameter": "password", "name": KEDA_USER, "key": "password"}
    ]
    if connection.ca is not None:
        secrets.append({"parameter": "ca", "name": connection.ca.name, "key": connection.ca.key})
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "TriggerAuthentication",
        "metadata": {"name": KEDA_USER, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "configMapTargetRef": [
                {"parameter": "username", "name": KAFKA_USERNAME_CONFIG_MAP, "key": "username"}
            ],
            "secretTargetRef": secrets,
        },
    }


def msk_trigger_authentication(namespace: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """The kafka scaler on MSK signs its IAM tokens with the KEDA operator's own identity
    (the IRSA role of its service account): no secret, no role to assume."""
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "TriggerAuthentication",
        "metadata": {"name": KEDA_USER, "namespace": namespace, "labels": dict(labels)},
        "spec": {"podIdentity": {"provider": "aws", "identityOwner": "keda"}},
    }


def kafka_auth_metadata(connection: KafkaConnection) -> dict[str, str]:
    """The kafka trigger's bootstrap, TLS and SASL metadata for the bus's client auth.

    MSK's bootstrap brokers exist only once the cluster does: the trigger reads them from
    the worker container's own `KAFKA_BOOTSTRAP` (`bootstrapServersFromEnv`, resolved by
    KEDA from the scale target's container), so the ScaledObject holds no unknown value
    and names the same brokers the worker dials."""
    if connection.auth == "scram-sha-512" and connection.tls:
        return {"sasl": "scram_sha512", "tls": "enable"}
    if connection.auth == "aws-msk-iam" and connection.tls:
        if connection.region is None:
            raise ValueError("the kafka scaler signs MSK IAM tokens for a region: none is set")
        return {
            "bootstrapServersFromEnv": BOOTSTRAP_ENV,
            "sasl": "oauthbearer",
            "saslTokenProvider": "aws_msk_iam",
            "awsRegion": connection.region,
            "tls": "enable",
        }
    raise ValueError(
        f"the kafka scaler reads the bus with SCRAM-SHA-512 or MSK IAM over TLS; this bus "
        f"uses auth {connection.auth} (tls {connection.tls})"
    )


def agent_scaled_object(
    agent: AgentSpec,
    *,
    namespace: str,
    monitoring_namespace: str,
    spec: AutoscalingSpec,
    chains: Sequence[TimeoutChain],
    labels: Mapping[str, str],
    bootstrap: Any = None,
    kafka_auth: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An agent type's ScaledObject (its Deployment is `workload_name(agent)`); events
    agents need the bus's `bootstrap` (pulumi.Input[str] on MSK) and its `kafka_auth`
    metadata (`kafka_auth_metadata`; default: SCRAM-SHA-512 over TLS)."""
    name = workload_name(agent)
    bounds = replica_bounds(
        agent.replicas.min, agent.replicas.max, agent_tier(agent), f"agent {agent.name}"
    )
    if agent.mode == "events":
        if bootstrap is None and BOOTSTRAP_FROM_ENV not in (kafka_auth or {}):
            raise ValueError(f"agent {agent.name} is mode events: the bus bootstrap is needed")
        names = kafka_names(agent)
        auth = dict(kafka_auth or {"sasl": "scram_sha512", "tls": "enable"})
        servers = {} if BOOTSTRAP_FROM_ENV in auth else {"bootstrapServers": bootstrap}
        trigger: dict[str, Any] = {
            "type": "kafka",
            "name": "consumer-lag",
            "metadata": {
                **servers,
                "consumerGroup": names.group,
                "topic": names.tasks,
                "lagThreshold": str(spec.lag_per_worker),
                "offsetResetPolicy": "earliest",
                "allowIdleConsumers": "false",
                **auth,
            },
            "authenticationRef": {"name": KEDA_USER},
        }
    else:
        trigger = {
            "type": "prometheus",
            "name": "active-sessions",
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": prometheus_url(monitoring_namespace),
                "query": sessions_query(agent, namespace),
                "threshold": str(spec.sessions_per_worker),
            },
        }
    window = scale_down_window_s(chains, spec.scale_down_margin_s)
    body = _scaled_object(
        name=name,
        namespace=namespace,
        labels=labels,
        bounds=bounds,
        polling_interval_s=spec.polling_interval_s,
        window_s=window,
        triggers=[trigger],
    )
    if BOOTSTRAP_FROM_ENV in trigger["metadata"]:
        body["spec"]["scaleTargetRef"]["envSourceContainerName"] = WORKER_CONTAINER
    return body


def keda_values(
    cost_labels: CostLabels, operator_role_arn: pulumi.Input[str] | None = None
) -> dict[str, Any]:
    """Helm values of the keda chart at keda_chart.CHART_VERSION; `operator_role_arn`: the
    IAM role the operator's service account assumes through IRSA (MSK's kafka scaler)."""
    labels = cost_labels.as_labels()
    values: dict[str, Any] = {
        "crds": {"install": True},
        "additionalLabels": labels,
        "podLabels": {"keda": labels, "metricsAdapter": labels, "webhooks": labels},
    }
    if operator_role_arn is not None:
        values["podIdentity"] = {"aws": {"irsa": {"enabled": True, "roleArn": operator_role_arn}}}
    return values


def keda_network_policies(
    *, keda_namespace: str, data_namespace: str, kafka_pods: Mapping[str, str], kafka_port: int
) -> dict[str, dict[str, Any]]:
    """The data namespace's opening for KEDA's operator (it runs the kafka scaler) to the
    brokers' client port. Prometheus sits in the monitoring namespace, which is not closed."""
    operator = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": keda_namespace}},
        "podSelector": {"matchLabels": dict(keda_chart.OPERATOR_POD_LABELS)},
    }
    return {
        "data-kafka-keda-ingress": {
            "namespace": data_namespace,
            "name": "allow-keda-to-kafka",
            "spec": {
                "podSelector": {"matchLabels": dict(kafka_pods)},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [operator],
                        "ports": [{"protocol": "TCP", "port": kafka_port}],
                    }
                ],
            },
        }
    }


# --------------------------------------------------------------------------- component


@dataclass(frozen=True)
class KedaOperatorRole:
    """An IAM role for the KEDA operator's service account (IRSA): what its AWS-signing
    scalers (the kafka scaler on MSK) may do."""

    irsa: Irsa
    policy: pulumi.Input[str]
    description: str
    tags: Mapping[str, str]


@dataclass(frozen=True)
class KedaArgs:
    spec: AutoscalingSpec
    cost_labels: CostLabels
    # Rendered ScaledObjects and TriggerAuthentications (keda_*), by resource suffix.
    objects: Mapping[str, Mapping[str, Any]]
    # ConfigMaps (namespace, name, data) the TriggerAuthentications read, by suffix.
    config_maps: Mapping[str, tuple[str, str, Mapping[str, str]]]
    # What each ScaledObject's target needs first (its Deployment), by resource suffix.
    targets: Mapping[str, Sequence[pulumi.Resource]]
    # The operator's IAM role, when a scaler signs with AWS credentials (MSK).
    operator_role: KedaOperatorRole | None = None


class Keda(pulumi.ComponentResource):
    """The KEDA operator (namespace, release and, for MSK, its IRSA role) and the stack's
    ScaledObjects."""

    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: KedaArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("swarmstack:scale:Keda", name, None, opts)
        labels = args.cost_labels.as_labels()
        keda = args.spec.keda
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=keda.namespace,
                labels={
                    **labels,
                    "app.kubernetes.io/part-of": "swarmstack",
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        role_arn: pulumi.Output[str] | None = None
        if args.operator_role is not None:
            role = irsa_role(
                args.operator_role.irsa,
                role_name=f"{name}-operator-role",
                policy_name=f"{name}-operator-policy",
                namespace=keda.namespace,
                service_account=keda_chart.OPERATOR_SERVICE_ACCOUNT,
                policy=args.operator_role.policy,
                description=args.operator_role.description,
                tags=dict(args.operator_role.tags),
                parent=self,
            )
            role_arn = role.arn
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            k8s.helm.v3.ReleaseArgs(
                name=keda_chart.RELEASE,
                chart=keda_chart.CHART,
                version=keda.chart_version,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=keda_chart.REPOSITORY),
                namespace=keda.namespace,
                values=keda_values(args.cost_labels, role_arn),
                cleanup_on_fail=True,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace]),
        )
        maps: list[pulumi.Resource] = [
            k8s.core.v1.ConfigMap(
                f"{name}-{suffix}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=cm_name, namespace=ns, labels=labels),
                data=dict(data),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for suffix, (ns, cm_name, data) in args.config_maps.items()
        ]
        auths: list[pulumi.Resource] = []
        for suffix, body in args.objects.items():
            if body["kind"] != "TriggerAuthentication":
                continue
            auths.append(self._custom(name, suffix, body, [self.release, *maps]))
        for suffix, body in args.objects.items():
            if body["kind"] != "ScaledObject":
                continue
            needs = [self.release, *auths, *args.targets.get(suffix, ())]
            self._custom(name, suffix, body, needs)
        self.register_outputs(
            {
                "namespace": keda.namespace,
                "chartVersion": self.release.version,
                "scaledObjects": sorted(
                    str(b["metadata"]["name"])
                    for b in args.objects.values()
                    if b["kind"] == "ScaledObject"
                ),
            }
        )

    def _custom(
        self, name: str, suffix: str, body: Mapping[str, Any], needs: Sequence[pulumi.Resource]
    ) -> k8s.apiextensions.CustomResource:
        meta = body["metadata"]
        return k8s.apiextensions.CustomResource(
            f"{name}-{suffix}",
            api_version=str(body["apiVersion"]),
            kind=str(body["kind"]),
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=meta["name"], namespace=meta["namespace"], labels=meta.get("labels")
            ),
            spec=body["spec"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(needs)),
        )
