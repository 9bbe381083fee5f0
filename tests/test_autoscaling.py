# pyright: strict
"""Autoscaling: KEDA's ScaledObjects (models on sequence slots, events agents on consumer
lag, http agents on sessions), the KEDA and Cluster Autoscaler releases, the node-template
tags a MIG pool scales from zero with, and the plan's KEDA checks (the published CRD
schemas run by Node, targets, metrics contracts, sources reachable under the stack's
NetworkPolicies)."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.agents.spec import AgentSpec, kafka_names
from components.compute.gpu_node_pool import NODE_TEMPLATE_RESOURCES, node_template_tags
from components.data.certs import CA_BUNDLE_KEY, CA_BUNDLE_SECRET
from components.data.kafka import (
    KEDA_USER,
    MSK_IAM_PORT,
    AgentKafkaAccess,
    KafkaConnection,
    SecretKeyRef,
    msk_lag_reader_policy,
    strimzi_connection,
)
from components.observe.catalogue import unknown_labels, unknown_metrics
from components.scale import cluster_autoscaler_chart, keda_chart
from components.scale.cluster_autoscaler import cluster_autoscaler_policy, cluster_autoscaler_values
from components.scale.keda import (
    KAFKA_USERNAME_CONFIG_MAP,
    agent_scaled_object,
    agent_tier,
    keda_values,
    prometheus_url,
    scale_down_window_s,
)
from components.specs import GpuPoolSpec
from components.traffic.timeouts import timeout_chain
from policies.framework import selects
from stacks.autoscaling import scaling_network_policies, scaling_objects
from stacks.config import ConfigError, StackConfig, load, load_file
from stacks.plan.model import NODE_GROUP, Manifest, Plan
from stacks.plan.recorder import Capture, Registration
from stacks.plan.runner import read_program_input, run_program
from stacks.plan.scaling_checks import (
    check_keda_schemas,
    check_scaled_object_sources,
    check_scaled_objects,
    keda_problems,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pilot() -> StackConfig:
    return load_file(ROOT / "stacks" / "Pulumi.pilot.yaml")


@pytest.fixture(scope="module")
def pilot_plan() -> Plan:
    return Plan.from_capture(run_program(read_program_input(ROOT, "pilot")))


def _bus(config: StackConfig) -> Any:
    ns = config.namespaces
    return strimzi_connection(
        "events",
        ns.data,
        config.agents,
        users_namespace=ns.agents,
        ca=SecretKeyRef(ns.agents, CA_BUNDLE_SECRET, CA_BUNDLE_KEY),
    )


CLUSTER_ARN = "arn:aws:kafka:us-east-1:111122223333:cluster/events/0b7e-uuid-1"


def _msk_bus(config: StackConfig) -> KafkaConnection:
    """The connection EventBus builds for MSK (IAM over TLS, Amazon's certificates)."""
    access = tuple(
        AgentKafkaAccess(
            agent=a.name,
            tasks_topic=kafka_names(a).tasks,
            results_topic=kafka_names(a).results,
            dead_letter_topic=kafka_names(a).dead_letter,
            group=kafka_names(a).group,
            username=None,
            password=None,
        )
        for a in config.agents
        if a.mode == "events"
    )
    return KafkaConnection(
        bootstrap="b-1.events.abc.c2.kafka.us-east-1.amazonaws.com:9098",
        tls=True,
        ca=None,
        auth="aws-msk-iam",
        agents=access,
        region="us-east-1",
        cluster_arn=CLUSTER_ARN,
    )


# --------------------------------------------------------------------------- models


def test_each_model_scales_on_its_sequence_slots(pilot: StackConfig) -> None:
    objects = scaling_objects(pilot, [], None).objects
    qwen = objects["model-qwen25-7b"]
    assert qwen["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "qwen25-7b",
    }
    assert (qwen["spec"]["minReplicaCount"], qwen["spec"]["maxReplicaCount"]) == (1, 2)
    [trigger] = qwen["spec"]["triggers"]
    match = 'namespace="swarmstack-models",service="qwen25-7b"'
    assert trigger["metadata"] == {
        "serverAddress": "http://monitoring-kube-prometheus-prometheus.swarmstack-monitoring.svc:9090",
        "query": f"sum(vllm:num_requests_running{{{match}}}) "
        f"+ sum(vllm:num_requests_waiting{{{match}}})",
        # 64 slots, interactive: a replica is added at 75 % of them, before requests queue.
        "threshold": "48",
    }
    assert trigger["metricType"] == "AverageValue"
    # Batch: the whole 32 slots.
    llama = objects["model-llama31-8b"]["spec"]["triggers"][0]["metadata"]
    assert llama["threshold"] == "32"


def test_every_query_names_metrics_and_labels_of_the_contracts(pilot: StackConfig) -> None:
    agents = [*pilot.agents]
    objects = scaling_objects(pilot, agents, _bus(pilot)).objects
    queries = [
        t["metadata"]["query"]
        for o in objects.values()
        if o["kind"] == "ScaledObject"
        for t in o["spec"]["triggers"]
        if t["type"] == "prometheus"
    ]
    assert len(queries) == 3  # two models, one http agent
    for query in queries:
        assert unknown_metrics(query) == set(), query
        assert unknown_labels(query) == {}, query


def test_prometheus_url_follows_the_charts_fullname() -> None:
    # kube-prometheus-stack: `<release>-kube-prometheus-stack` cut to 26 characters.
    assert prometheus_url("mon") == "http://monitoring-kube-prometheus-prometheus.mon.svc:9090"


def test_scale_down_waits_longer_than_a_turn(pilot: StackConfig) -> None:
    objects = scaling_objects(pilot, [], None).objects
    for model in pilot.models:
        chain = timeout_chain(model, pilot.timeouts)
        behavior = objects[f"model-{model.name}"]["spec"]["advanced"][
            "horizontalPodAutoscalerConfig"
        ]["behavior"]["scaleDown"]
        window = behavior["stabilizationWindowSeconds"]
        # A turn makes up to four model calls, each bounded by the worker's deadline.
        assert window == 4 * chain.worker_s + pilot.autoscaling.scale_down_margin_s
        assert window > 4 * chain.worker_s
        assert behavior["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": window}]
    assert scale_down_window_s([timeout_chain(pilot.models[0], pilot.timeouts)], 0) == 4 * 90


# --------------------------------------------------------------------------- agents


def test_events_agents_scale_on_consumer_lag_within_the_partitions(pilot: StackConfig) -> None:
    researcher = next(a for a in pilot.agents if a.name == "researcher")
    rendered = scaling_objects(pilot, [researcher], _bus(pilot))
    so = rendered.objects["agent-researcher"]
    assert so["spec"]["scaleTargetRef"]["name"] == "agent-researcher"
    assert so["metadata"]["namespace"] == "swarmstack-agents"
    [trigger] = so["spec"]["triggers"]
    names = kafka_names(researcher)
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["bootstrapServers"] == (
        "events-kafka-bootstrap.swarmstack-data.svc:9093"
    )
    assert trigger["metadata"]["topic"] == names.tasks
    assert trigger["metadata"]["consumerGroup"] == names.group
    assert trigger["metadata"]["allowIdleConsumers"] == "false"
    assert researcher.topics is not None
    assert so["spec"]["maxReplicaCount"] <= researcher.topics.tasks.partitions
    assert trigger["authenticationRef"] == {"name": KEDA_USER}
    auth = rendered.objects["kafka-auth"]
    assert auth["metadata"] == {
        "name": KEDA_USER,
        "namespace": "swarmstack-agents",
        "labels": pilot.cost_labels.as_labels(),
    }
    assert auth["spec"] == {
        "configMapTargetRef": [
            {"parameter": "username", "name": KAFKA_USERNAME_CONFIG_MAP, "key": "username"}
        ],
        "secretTargetRef": [
            {"parameter": "password", "name": KEDA_USER, "key": "password"},
            {"parameter": "ca", "name": CA_BUNDLE_SECRET, "key": CA_BUNDLE_KEY},
        ],
    }
    assert rendered.config_maps["kafka-username"] == (
        "swarmstack-agents",
        KAFKA_USERNAME_CONFIG_MAP,
        {"username": KEDA_USER},
    )


def test_events_agents_on_a_bus_the_scaler_cannot_read_are_left_out_with_a_reason(
    pilot: StackConfig,
) -> None:
    researcher = next(a for a in pilot.agents if a.name == "researcher")
    rendered = scaling_objects(pilot, [researcher], None)
    assert "agent-researcher" not in rendered.objects
    assert rendered.skipped == ["agent researcher: no ScaledObject, the stack has no event bus"]
    plaintext = dataclasses.replace(_bus(pilot), tls=False, auth="none", ca=None)
    rendered = scaling_objects(pilot, [researcher], plaintext)
    assert "agent-researcher" not in rendered.objects
    assert "kafka-auth" not in rendered.objects
    assert rendered.skipped == [
        "agent researcher: no ScaledObject, the kafka scaler is wired for SCRAM-SHA-512 "
        "(Strimzi) and IAM (MSK) over TLS only, this bus uses auth none (tls False)"
    ]
    # MSK's IAM tokens are signed with the operator's IRSA role: no OIDC provider, no role.
    rendered = scaling_objects(pilot, [researcher], _msk_bus(pilot), irsa=False)
    assert "agent-researcher" not in rendered.objects
    assert rendered.skipped == [
        "agent researcher: no ScaledObject, the kafka scaler signs MSK IAM tokens with an "
        "IRSA role, which needs the cluster's OIDC provider (cluster.mode: eks)"
    ]


def test_http_agents_scale_on_active_sessions_and_never_to_zero(pilot: StackConfig) -> None:
    concierge = next(a for a in pilot.agents if a.name == "concierge")
    assert agent_tier(concierge) == "interactive"
    so = scaling_objects(pilot, [concierge], None).objects["agent-concierge"]
    [trigger] = so["spec"]["triggers"]
    assert trigger["metadata"]["query"] == (
        'sum(agent_active_sessions{namespace="swarmstack-agents",agent="concierge"})'
    )
    assert trigger["metadata"]["threshold"] == "20"
    zero = concierge.model_copy(
        update={"replicas": concierge.replicas.model_copy(update={"min": 0})}
    )
    with pytest.raises(ValueError, match="interactive workload never scales to zero"):
        agent_scaled_object(
            zero,
            namespace="a",
            monitoring_namespace="m",
            spec=pilot.autoscaling,
            chains=[timeout_chain(pilot.models[0], pilot.timeouts)],
            labels={},
        )


def _raw_pilot() -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for key, value in yaml.safe_load((ROOT / "stacks" / "Pulumi.pilot.yaml").read_text())[
        "config"
    ].items():
        ns, _, name = str(key).partition(":")
        if ns == "swarmstack":
            raw[name] = value
    return raw


def test_an_interactive_model_or_http_agent_with_min_zero_is_refused() -> None:
    raw = _raw_pilot()
    raw["models"][0]["replicas"]["min"] = 0
    raw["agents"][1]["replicas"]["min"] = 0
    raw["autoscaling"] = {"keda": {"namespace": "swarmstack-data"}}
    with pytest.raises(ConfigError) as err:
        load(copy.deepcopy(raw), "us-east-1", "stacks/Pulumi.pilot.yaml")
    text = str(err.value)
    assert "models[0].replicas.min: 0 for interactive model 'qwen25-7b'" in text
    assert "agents[1].replicas.min: 0 for interactive agent 'concierge'" in text
    assert "autoscaling.keda.namespace: 'swarmstack-data' is already used" in text


def test_a_chart_version_other_than_the_checked_one_is_refused() -> None:
    raw = _raw_pilot()
    raw["autoscaling"] = {"keda": {"chartVersion": "2.19.0"}}
    with pytest.raises(ConfigError, match=r"autoscaling.keda.chartVersion.*2\.20\.2"):
        load(raw, "us-east-1", "stacks/Pulumi.pilot.yaml")


# --------------------------------------------------------------------------- releases


def test_keda_values_set_only_recorded_keys() -> None:
    values = keda_values(load_file(ROOT / "stacks" / "Pulumi.pilot.yaml").cost_labels)
    assert keda_chart.unchecked_value_paths(values) == []
    assert keda_chart.unchecked_value_paths({**values, "operator": {"replicaCount": 2}}) == [
        "operator.replicaCount"
    ]


def test_cluster_autoscaler_values_set_only_recorded_keys(pilot: StackConfig) -> None:
    values = cluster_autoscaler_values(
        cluster_name="c",
        region="us-east-1",
        kubernetes_version="1.33",
        role_arn="arn:aws:iam::111122223333:role/r",
        cost_labels=pilot.cost_labels,
    )
    assert cluster_autoscaler_chart.unchecked_value_paths(values) == []
    assert cluster_autoscaler_chart.unchecked_value_paths({**values, "replicaCount": 2}) == [
        "replicaCount"
    ]
    # The autoscaler's minor follows the cluster's.
    assert values["image"] == {"tag": "v1.33.6"}
    with pytest.raises(
        ValueError, match=r"no Cluster Autoscaler release is recorded for Kubernetes 1\.29"
    ):
        cluster_autoscaler_values(
            cluster_name="c",
            region="r",
            kubernetes_version="1.29",
            role_arn="a",
            cost_labels=pilot.cost_labels,
        )


def test_cluster_autoscaler_role_scales_only_this_clusters_groups() -> None:
    policy = json.loads(cluster_autoscaler_policy("swarm-pilot"))
    describe, scale = policy["Statement"]
    assert "eks:DescribeNodegroup" in describe["Action"]
    assert "autoscaling:DescribeAutoScalingGroups" in describe["Action"]
    assert scale["Action"] == [
        "autoscaling:SetDesiredCapacity",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
    ]
    assert scale["Condition"] == {
        "StringEquals": {
            "aws:ResourceTag/k8s.io/cluster-autoscaler/swarm-pilot": "owned",
            "aws:ResourceTag/k8s.io/cluster-autoscaler/enabled": "true",
        }
    }


def test_the_pilot_declares_keda_the_autoscaler_and_a_scaled_object_per_model(
    pilot_plan: Plan, pilot: StackConfig
) -> None:
    releases = {r.document()["release"]: r.document() for r in pilot_plan.releases}
    assert releases["keda"]["version"] == keda_chart.CHART_VERSION
    assert releases["keda"]["namespace"] == "keda"
    ca = releases["cluster-autoscaler"]
    assert ca["version"] == cluster_autoscaler_chart.CHART_VERSION
    assert ca["values"]["autoDiscovery"] == {"clusterName": pilot.cluster.name}
    assert ca["values"]["rbac"]["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"]
    scaled = sorted(m.name for m in pilot_plan.manifests if m.kind == "ScaledObject")
    assert scaled == sorted(
        [*(m.name for m in pilot.models), *(f"agent-{a.name}" for a in pilot.agents)]
    )


def test_nothing_pulumi_applies_fights_the_autoscalers(pilot_plan: Plan) -> None:
    registrations = pilot_plan.capture.registrations
    deployments = [r for r in registrations if r.type == "kubernetes:apps/v1:Deployment"]
    scaled = {"qwen25-7b", "llama31-8b", "agent-concierge", "agent-researcher"}
    # The gateway keeps its configured replicas: nothing scales it.
    assert {r.inputs["metadata"]["name"] for r in deployments} == {
        *scaled,
        "otel-collector",
        "model-gateway",
    }
    # KEDA sets the replicas, the Cluster Autoscaler the desired node count.
    assert all(
        "spec.replicas" in r.ignore_changes
        for r in deployments
        if r.inputs["metadata"]["name"] in scaled
    )
    groups = [r for r in registrations if r.type == NODE_GROUP]
    assert groups and all("scalingConfig.desiredSize" in r.ignore_changes for r in groups)
    # No HorizontalPodAutoscaler of the stack's own competes with KEDA's.
    assert not [r for r in registrations if "HorizontalPodAutoscaler" in r.type]


def test_a_mig_pool_carries_its_node_template_resource_tags(pilot_plan: Plan) -> None:
    [group] = [
        r
        for r in pilot_plan.capture.registrations
        if r.type == NODE_GROUP and r.inputs.get("nodeGroupName") == "h100-mig"
    ]
    tags = group.inputs["tags"]
    # p5.4xlarge: one H100 split into two 3g.40gb slices; `mixed` offers no whole GPU.
    assert tags[f"{NODE_TEMPLATE_RESOURCES}nvidia.com/mig-3g.40gb"] == "2"
    assert tags[f"{NODE_TEMPLATE_RESOURCES}nvidia.com/gpu"] == "0"
    # Labels and taints come from the node group itself (eks:DescribeNodegroup).
    assert group.inputs["labels"]["nvidia.com/mig.config"] == "swarmstack-h100-mig"
    assert group.inputs["taints"]


def test_node_template_tags_per_strategy_and_for_whole_gpus(pilot: StackConfig) -> None:
    pool = pilot.gpu_pools[0]
    assert node_template_tags(pool, "single") == {f"{NODE_TEMPLATE_RESOURCES}nvidia.com/gpu": "2"}
    whole = GpuPoolSpec.model_validate(
        {"name": "whole", "instanceType": "p5.4xlarge", "minSize": 0, "maxSize": 2}
    )
    assert node_template_tags(whole, "mixed") == {}
    # Counts are per node: eight H100s of a p5.48xlarge, each split the same way.
    eight = pool.model_copy(update={"instance_type": "p5.48xlarge"})
    assert node_template_tags(eight, "mixed") == {
        f"{NODE_TEMPLATE_RESOURCES}nvidia.com/mig-3g.40gb": "16",
        f"{NODE_TEMPLATE_RESOURCES}nvidia.com/gpu": "0",
    }


# --------------------------------------------------------------------------- network


def test_keda_operator_may_reach_the_brokers(pilot: StackConfig) -> None:
    [policy] = scaling_network_policies(pilot).values()
    assert policy["namespace"] == pilot.namespaces.data
    spec = policy["spec"]
    assert selects(spec["podSelector"], {"strimzi.io/cluster": "events", "x": "y"})
    [rule] = spec["ingress"]
    [peer] = rule["from"]
    assert selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": "keda"})
    assert selects(peer["podSelector"], keda_chart.OPERATOR_POD_LABELS)
    assert rule["ports"] == [{"protocol": "TCP", "port": 9093}]


# --------------------------------------------------------------------------- plan checks


def test_rendered_keda_objects_pass_the_published_schemas(pilot: StackConfig) -> None:
    objects = list(scaling_objects(pilot, list(pilot.agents), _bus(pilot)).objects.values())
    assert {o["kind"] for o in objects} == {"ScaledObject", "TriggerAuthentication"}
    assert keda_problems(objects) == [[] for _ in objects]
    bad = copy.deepcopy(objects[0])
    bad["spec"]["minReplicaCount"] = "one"
    [found] = keda_problems([bad])
    assert any("/spec/minReplicaCount" in p for p in found), found


def _with(plan: Plan, kind: str, name: str, body: dict[str, Any] | None) -> Plan:
    registrations: list[Registration] = []
    for r in plan.capture.registrations:
        if r.custom and r.type.startswith("kubernetes:"):
            m = Manifest(r)
            if m.kind == kind and m.name == name:
                if body is None:
                    continue
                registrations.append(dataclasses.replace(r, inputs=body))
                continue
        registrations.append(r)
    return Plan.from_capture(Capture(registrations=registrations))


def _scaled(plan: Plan, name: str) -> Manifest:
    return next(m for m in plan.manifests if m.kind == "ScaledObject" and m.name == name)


def test_the_pilot_scaled_objects_pass_the_plan_checks(pilot_plan: Plan) -> None:
    assert check_keda_schemas(pilot_plan.manifests) == []
    assert check_scaled_objects(pilot_plan) == []


def test_a_scaled_object_without_its_deployment_fails(pilot_plan: Plan) -> None:
    plan = _with(pilot_plan, "Deployment", "qwen25-7b", None)
    [finding] = check_scaled_objects(plan)
    assert finding.check == "scaling-target"
    assert finding.message == (
        "scaleTargetRef Deployment swarmstack-models/qwen25-7b is not a Deployment of the stack"
    )


def test_a_query_outside_the_metrics_contracts_fails(pilot_plan: Plan) -> None:
    body = copy.deepcopy(_scaled(pilot_plan, "qwen25-7b").body)
    meta = body["spec"]["triggers"][0]["metadata"]
    meta["query"] = meta["query"].replace("vllm:num_requests_waiting", "vllm:num_requests_queued")
    [finding] = check_scaled_objects(_with(pilot_plan, "ScaledObject", "qwen25-7b", body))
    assert finding.check == "scaling-signal"
    assert "vllm:num_requests_queued, which no metrics contract" in finding.message
    meta["query"] = 'sum(vllm:num_requests_running{model="x"})'
    [finding] = check_scaled_objects(_with(pilot_plan, "ScaledObject", "qwen25-7b", body))
    assert finding.message == (
        "prometheus trigger selects vllm:num_requests_running by model, which that metric "
        "does not carry"
    )


def test_a_kafka_trigger_on_an_unknown_topic_or_authentication_fails(
    pilot_plan: Plan, pilot: StackConfig
) -> None:
    researcher: AgentSpec = next(a for a in pilot.agents if a.name == "researcher")
    so = agent_scaled_object(
        researcher,
        namespace="swarmstack-models",
        monitoring_namespace="m",
        spec=pilot.autoscaling,
        chains=[timeout_chain(pilot.models[0], pilot.timeouts)],
        labels={},
        bootstrap="b:9093",
    )
    so["metadata"]["name"] = so["spec"]["scaleTargetRef"]["name"] = "qwen25-7b"
    so["spec"]["triggers"][0]["metadata"]["topic"] = "nope"
    findings = check_scaled_objects(_with(pilot_plan, "ScaledObject", "qwen25-7b", so))
    assert [f.message for f in findings] == [
        "kafka trigger topic 'nope' is not a KafkaTopic or MSK topic of the stack",
        f"authenticationRef TriggerAuthentication {KEDA_USER} is not declared by the stack "
        "in namespace swarmstack-models",
    ]


# --------------------------------------------------------------------------- sources


def _adding_policy(plan: Plan, name: str, namespace: str, spec: dict[str, Any]) -> Plan:
    """The plan with one more NetworkPolicy (registered like the stack's own)."""
    like = next(
        r for r in plan.capture.registrations if r.type.endswith("NetworkPolicy") and r.custom
    )
    body = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    extra = dataclasses.replace(like, name=f"test-{name}", urn=f"{like.urn}-{name}", inputs=body)
    return Plan.from_capture(Capture(registrations=[*plan.capture.registrations, extra]))


def test_the_pilots_keda_operator_reaches_every_trigger_source(pilot_plan: Plan) -> None:
    assert check_scaled_object_sources(pilot_plan) == []


def test_closing_the_brokers_to_keda_fails_with_the_source_and_port(pilot_plan: Plan) -> None:
    """The data namespace denies all ingress by default; without allow-keda-to-kafka the
    operator's kafka scaler cannot reach the bootstrap."""
    [finding] = check_scaled_object_sources(
        _with(pilot_plan, "NetworkPolicy", "allow-keda-to-kafka", None)
    )
    assert finding.check == "scaling-source-reachable"
    assert finding.resource.startswith("ScaledObject swarmstack-agents/agent-researcher")
    assert finding.message == (
        "kafka trigger consumer-lag: the NetworkPolicies of namespace 'swarmstack-data' do "
        "not let KEDA's operator (pods {'cost-center': 'cc-1042', 'environment': 'pilot', "
        "'team': 'agent-platform', 'app.kubernetes.io/name': 'keda-operator'} of namespace "
        "'keda') reach its source events-kafka-bootstrap.swarmstack-data.svc:9093 (pods "
        "{'strimzi.io/cluster': 'events', 'strimzi.io/kind': 'Kafka', 'strimzi.io/broker-role':"
        " 'true'} of namespace 'swarmstack-data') on port 9093"
    )


def test_prometheus_behind_a_default_deny_fails_each_prometheus_trigger(
    pilot_plan: Plan,
) -> None:
    closed = _adding_policy(
        pilot_plan, "default-deny", "swarmstack-monitoring", {"podSelector": {}}
    )
    findings = check_scaled_object_sources(closed)
    assert sorted(f.resource.split(" (")[0] for f in findings) == [
        "ScaledObject swarmstack-agents/agent-concierge",
        "ScaledObject swarmstack-models/llama31-8b",
        "ScaledObject swarmstack-models/qwen25-7b",
    ]
    assert all(
        "namespace 'swarmstack-monitoring' do not let KEDA's operator" in f.message
        and "its source monitoring-kube-prometheus-prometheus.swarmstack-monitoring.svc:9090"
        in f.message
        and f.message.endswith("on port 9090 (web)")
        for f in findings
    )
    # An opening for the operator on Prometheus's port puts it right.
    opened = _adding_policy(
        closed,
        "allow-keda-to-prometheus",
        "swarmstack-monitoring",
        {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "keda"}
                            },
                            "podSelector": {"matchLabels": keda_chart.OPERATOR_POD_LABELS},
                        }
                    ],
                    "ports": [{"port": 9090}],
                }
            ],
        },
    )
    assert check_scaled_object_sources(opened) == []


def test_an_egress_default_deny_in_kedas_namespace_fails_every_trigger(pilot_plan: Plan) -> None:
    closed = _adding_policy(
        pilot_plan, "deny-egress", "keda", {"podSelector": {}, "policyTypes": ["Egress"]}
    )
    findings = check_scaled_object_sources(closed)
    assert len(findings) == 4  # three prometheus triggers, one kafka trigger
    assert all("the NetworkPolicies of namespace 'keda' do not let" in f.message for f in findings)


def test_a_source_the_stack_does_not_run_fails(pilot_plan: Plan) -> None:
    body = copy.deepcopy(_scaled(pilot_plan, "qwen25-7b").body)
    body["spec"]["triggers"][0]["metadata"]["serverAddress"] = (
        "http://thanos.swarmstack-monitoring.svc:9090"
    )
    [finding] = check_scaled_object_sources(_with(pilot_plan, "ScaledObject", "qwen25-7b", body))
    assert finding.check == "scaling-source"
    assert "source thanos.swarmstack-monitoring.svc:9090 is not a Service" in finding.message


# --------------------------------------------------------------------------- MSK (IAM)


@pytest.fixture(scope="module")
def production() -> StackConfig:
    return load_file(ROOT / "stacks" / "Pulumi.production.yaml")


@pytest.fixture(scope="module")
def production_plan() -> Plan:
    return Plan.from_capture(run_program(read_program_input(ROOT, "production")))


def test_events_agents_on_msk_scale_on_lag_as_the_operators_iam_role(
    production: StackConfig,
) -> None:
    researcher = next(a for a in production.agents if a.name == "researcher")
    rendered = scaling_objects(production, [researcher], _msk_bus(production))
    assert rendered.skipped == []
    so = rendered.objects["agent-researcher"]
    names = kafka_names(researcher)
    assert so["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "agent-researcher",
        # KEDA resolves bootstrapServersFromEnv in this container's environment.
        "envSourceContainerName": "worker",
    }
    [trigger] = so["spec"]["triggers"]
    assert trigger == {
        "type": "kafka",
        "name": "consumer-lag",
        "metadata": {
            "bootstrapServersFromEnv": "KAFKA_BOOTSTRAP",
            "consumerGroup": names.group,
            "topic": names.tasks,
            "lagThreshold": str(production.autoscaling.lag_per_worker),
            "offsetResetPolicy": "earliest",
            "allowIdleConsumers": "false",
            "sasl": "oauthbearer",
            "saslTokenProvider": "aws_msk_iam",
            "awsRegion": "us-east-1",
            "tls": "enable",
        },
        "authenticationRef": {"name": KEDA_USER},
    }
    # The same lag threshold, group, topic and bounds as on the in-cluster bus.
    strimzi = scaling_objects(production, [researcher], _bus(production))
    strimzi_so = strimzi.objects["agent-researcher"]
    [strimzi_trigger] = strimzi_so["spec"]["triggers"]
    common = ("consumerGroup", "topic", "lagThreshold", "offsetResetPolicy", "allowIdleConsumers")
    assert {k: trigger["metadata"][k] for k in common} == {
        k: strimzi_trigger["metadata"][k] for k in common
    }
    for key in ("minReplicaCount", "maxReplicaCount", "advanced", "pollingInterval"):
        assert so["spec"][key] == strimzi_so["spec"][key]
    # No secret, no user name: the operator's own identity signs the IAM tokens.
    assert rendered.objects["kafka-auth"]["spec"] == {
        "podIdentity": {"provider": "aws", "identityOwner": "keda"}
    }
    assert rendered.config_maps == {}
    objects = list(rendered.objects.values())
    assert keda_problems(objects) == [[] for _ in objects]


def test_the_msk_trigger_refuses_a_bus_without_a_region(production: StackConfig) -> None:
    researcher = next(a for a in production.agents if a.name == "researcher")
    bus = dataclasses.replace(_msk_bus(production), region=None)
    with pytest.raises(ValueError, match="signs MSK IAM tokens for a region: none is set"):
        scaling_objects(production, [researcher], bus)


def test_the_operators_msk_policy_describes_the_agents_topics_and_groups_only(
    production: StackConfig,
) -> None:
    second = production.agents[0].model_copy(update={"name": "summarizer"})
    agents = [*production.agents, second]
    policy = json.loads(msk_lag_reader_policy(CLUSTER_ARN, agents))
    topic = "arn:aws:kafka:us-east-1:111122223333:topic/events/0b7e-uuid-1"
    group = "arn:aws:kafka:us-east-1:111122223333:group/events/0b7e-uuid-1"
    assert policy["Statement"] == [
        {
            "Sid": "Connect",
            "Effect": "Allow",
            "Action": ["kafka-cluster:Connect"],
            "Resource": CLUSTER_ARN,
        },
        {
            "Sid": "DescribeTasksTopics",
            "Effect": "Allow",
            "Action": ["kafka-cluster:DescribeTopic"],
            "Resource": [f"{topic}/researcher.tasks", f"{topic}/summarizer.tasks"],
        },
        {
            "Sid": "DescribeConsumerGroups",
            "Effect": "Allow",
            "Action": ["kafka-cluster:DescribeGroup"],
            "Resource": [f"{group}/researcher.workers", f"{group}/summarizer.workers"],
        },
    ]
    actions = {a for st in policy["Statement"] for a in st["Action"]}
    assert not actions & {
        "kafka-cluster:ReadData",
        "kafka-cluster:WriteData",
        "kafka-cluster:AlterGroup",
        "kafka-cluster:DescribeCluster",
    }
    resources: list[str] = []
    for st in policy["Statement"]:
        found: str | list[str] = st["Resource"]
        resources += [found] if isinstance(found, str) else found
    assert "*" not in resources and all("concierge" not in r for r in resources)


def _registration(plan: Plan, type_: str, name: str) -> Registration:
    return next(r for r in plan.capture.registrations if r.type == type_ and r.name == name)


def test_production_scales_the_researcher_on_msk_as_an_irsa_role(
    production_plan: Plan,
) -> None:
    so = _scaled(production_plan, "agent-researcher")
    [trigger] = so.body["spec"]["triggers"]
    assert trigger["metadata"]["saslTokenProvider"] == "aws_msk_iam"
    assert trigger["metadata"]["topic"] == "researcher.tasks"
    [auth] = [m for m in production_plan.manifests if m.kind == "TriggerAuthentication"]
    assert (auth.namespace, auth.name) == ("swarmstack-agents", KEDA_USER)
    assert auth.body["spec"] == {"podIdentity": {"provider": "aws", "identityOwner": "keda"}}
    # No SCRAM user name ConfigMap on MSK.
    assert not any(m.name == KAFKA_USERNAME_CONFIG_MAP for m in production_plan.manifests)
    # The operator's service account carries the role, which trusts only that account.
    role = _registration(production_plan, "aws:iam/role:Role", "keda-operator-role")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    [statement] = trust["Statement"]
    assert (
        "system:serviceaccount:keda:keda-operator"
        in statement["Condition"]["StringEquals"].values()
    )
    keda = next(r.document() for r in production_plan.releases if r.document()["chart"] == "keda")
    irsa = keda["values"]["podIdentity"]["aws"]["irsa"]
    assert irsa["enabled"] is True
    assert irsa["roleArn"].endswith(":role/keda-operator-role-id")
    assert keda_chart.unchecked_value_paths(keda["values"]) == []
    policy = _registration(production_plan, "aws:iam/rolePolicy:RolePolicy", "keda-operator-policy")
    assert policy.inputs["role"] == "keda-operator-role-id"
    statements = json.loads(policy.inputs["policy"])["Statement"]
    assert [s["Action"] for s in statements] == [
        ["kafka-cluster:Connect"],
        ["kafka-cluster:DescribeTopic"],
        ["kafka-cluster:DescribeGroup"],
    ]
    cluster_arn = statements[0]["Resource"]
    assert statements[1]["Resource"] == [
        cluster_arn.replace(":cluster/", ":topic/") + "/researcher.tasks"
    ]
    assert statements[2]["Resource"] == [
        cluster_arn.replace(":cluster/", ":group/") + "/researcher.workers"
    ]


def test_production_keda_objects_pass_the_plan_checks(production_plan: Plan) -> None:
    assert check_keda_schemas(production_plan.manifests) == []
    assert check_scaled_objects(production_plan) == []
    assert check_scaled_object_sources(production_plan) == []


def test_the_msk_brokers_admit_the_nodes_kedas_operator_runs_on(production_plan: Plan) -> None:
    """The operator's pods take their node's security group (the VPC CNI, no pod security
    groups): the brokers' group admits it on the IAM port."""
    group = _registration(
        production_plan, "aws:ec2/securityGroup:SecurityGroup", "event-bus-brokers"
    )
    [rule] = group.inputs["ingress"]
    assert (rule["fromPort"], rule["toPort"], rule["protocol"]) == (
        MSK_IAM_PORT,
        MSK_IAM_PORT,
        "tcp",
    )
    assert len(rule["securityGroups"]) == 1
    assert not any(
        r.type.endswith("SecurityGroupPolicy") for r in production_plan.capture.registrations
    )
    # No launch template replaces the EKS cluster security group on the nodes.
    templates = [
        r for r in production_plan.capture.registrations if r.type.endswith("LaunchTemplate")
    ]
    assert templates and not any(
        r.inputs.get("vpcSecurityGroupIds") or r.inputs.get("networkInterfaces") for r in templates
    )


def test_an_egress_default_deny_in_kedas_namespace_cuts_the_msk_trigger(
    production_plan: Plan,
) -> None:
    closed = _adding_policy(
        production_plan, "deny-egress", "keda", {"podSelector": {}, "policyTypes": ["Egress"]}
    )
    kafka = [
        f
        for f in check_scaled_object_sources(closed)
        if f.resource.startswith("ScaledObject swarmstack-agents/agent-researcher")
    ]
    [finding] = kafka
    assert finding.message.endswith(
        f"reach its source MSK brokers:{MSK_IAM_PORT} (outside the cluster) on port {MSK_IAM_PORT}"
    )
    opened = _adding_policy(
        closed,
        "allow-keda-to-msk",
        "keda",
        {
            "podSelector": {"matchLabels": keda_chart.OPERATOR_POD_LABELS},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"ipBlock": {"cidr": "10.50.0.0/16"}}],
                    "ports": [{"protocol": "TCP", "port": MSK_IAM_PORT}],
                }
            ],
        },
    )
    assert not [f for f in check_scaled_object_sources(opened) if "agent-researcher" in f.resource]


def test_a_msk_trigger_on_a_topic_off_the_topic_list_fails(production_plan: Plan) -> None:
    body = copy.deepcopy(_scaled(production_plan, "agent-researcher").body)
    body["spec"]["triggers"][0]["metadata"]["topic"] = "researcher.tasks-v2"
    [finding] = check_scaled_objects(
        _with(production_plan, "ScaledObject", "agent-researcher", body)
    )
    assert finding.message == (
        "kafka trigger topic 'researcher.tasks-v2' is not a KafkaTopic or MSK topic of the stack"
    )


def test_a_msk_trigger_reading_a_variable_the_worker_lacks_fails(production_plan: Plan) -> None:
    body = copy.deepcopy(_scaled(production_plan, "agent-researcher").body)
    body["spec"]["triggers"][0]["metadata"]["bootstrapServersFromEnv"] = "BROKERS"
    plan = _with(production_plan, "ScaledObject", "agent-researcher", body)
    [finding] = check_scaled_object_sources(plan)
    assert finding.check == "scaling-source"
    assert "source ${BROKERS} (not in the scale target's env)" in finding.message


def test_production_plans_without_the_scaled_object_warning_and_no_violations(
    tmp_path: Path,
) -> None:
    from stacks.cli import main  # noqa: PLC0415

    assert main(["plan", "production", "--root", str(ROOT), "--out", str(tmp_path)]) == 0
    out = tmp_path / "production"
    assert json.loads((out / "policy.json").read_text()) == []
    summary = (out / "summary.txt").read_text()
    assert "no ScaledObject" not in summary
    assert "kubernetes:keda.sh/v1alpha1:TriggerAuthentication          1" in summary
