"""The event bus under the recording mock: what Strimzi and MSK mode declare."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate  # pyright: ignore[reportMissingTypeStubs]
import pytest
import yaml

from components.data.kafka import (
    STRIMZI_CHART_VERSION,
    EventBus,
    EventBusArgs,
    EventBusError,
    server_properties,
)
from stacks.plan.recorder import Capture, run
from tests.kafka_support import COST_LABELS, MSK, NAMESPACE, NETWORK, agents, kafka, msk

STRIMZI = "kubernetes:kafka.strimzi.io/v1:"


def _bus(**changes: Any) -> Capture:
    args: dict[str, Any] = {
        "spec": kafka(),
        "agents": agents(),
        "namespace": NAMESPACE,
        "cost_labels": COST_LABELS,
    }
    args.update(changes)
    return run(lambda: EventBus("bus", EventBusArgs(**args)))


def _manifest(r: Any) -> dict[str, Any]:
    kind = r.type.rsplit(":", 1)[-1]
    group = r.type.split(":")[1]
    api = group.replace("core/", "") if group.startswith("core/") else group
    return {"apiVersion": api, "kind": kind, **{k: v for k, v in r.inputs.items()}}


def test_strimzi_declares_operator_pools_cluster_topics_and_users() -> None:
    capture = _bus()
    counts: dict[str, int] = {}
    for r in capture.registrations:
        counts[r.type] = counts.get(r.type, 0) + 1
    assert counts == {
        "swarmstack:data:EventBus": 1,
        "kubernetes:helm.sh/v3:Release": 1,
        "kubernetes:core/v1:ConfigMap": 1,
        f"{STRIMZI}KafkaNodePool": 2,
        f"{STRIMZI}Kafka": 1,
        f"{STRIMZI}KafkaTopic": 3,
        f"{STRIMZI}KafkaUser": 2,  # the events agent and KEDA; the http agent has none
    }
    component = capture.of_type("swarmstack:data:EventBus")[0]
    assert all(r.parent == component.urn for r in capture.registrations if r is not component)

    release = capture.of_type("kubernetes:helm.sh/v3:Release")[0]
    assert release.inputs["chart"] == "strimzi-kafka-operator"
    assert release.inputs["version"] == STRIMZI_CHART_VERSION
    assert release.inputs["values"]["watchNamespaces"] == [NAMESPACE]
    crs = [r for r in capture.registrations if r.type.startswith(STRIMZI)]
    assert all(release.urn in r.dependencies for r in crs)

    kafka_cr = capture.of_type(f"{STRIMZI}Kafka")[0]
    spec = kafka_cr.inputs["spec"]["kafka"]
    assert spec["listeners"] == [
        {
            "name": "tls",
            "port": 9093,
            "type": "internal",
            "tls": True,
            "authentication": {"type": "scram-sha-512"},
        }
    ]
    assert spec["rack"] == {"topologyKey": "topology.kubernetes.io/zone"}
    assert spec["config"]["min.insync.replicas"] == 2
    assert spec["config"]["auto.create.topics.enable"] is False
    assert spec["template"]["kafkaContainer"]["securityContext"]["readOnlyRootFilesystem"]
    assert "annotations" not in kafka_cr.inputs["metadata"]  # ignored since Strimzi 0.48
    pools = {r.inputs["metadata"]["name"]: r for r in capture.of_type(f"{STRIMZI}KafkaNodePool")}
    assert all(p.urn in kafka_cr.dependencies for p in pools.values())
    broker = pools["broker"].inputs["spec"]
    assert broker["replicas"] == 3 and broker["roles"] == ["broker"]
    assert broker["storage"]["volumes"][0]["class"] == "gp3"
    assert broker["storage"]["volumes"][0]["size"] == "100Gi"

    users = {
        r.inputs["metadata"]["name"]: r.inputs["spec"]
        for r in capture.of_type(f"{STRIMZI}KafkaUser")
    }
    researcher = users["agent-researcher"]["authorization"]["acls"]
    assert {a["resource"]["name"] for a in researcher} == {
        "researcher.tasks",
        "researcher.results",
        "researcher.dead-letter",
        "researcher.workers",
    }
    ops = {a["resource"]["name"]: sorted(a["operations"]) for a in researcher}
    assert ops == {
        "researcher.tasks": ["Describe", "Read"],
        "researcher.results": ["Describe", "Read", "Write"],  # its recovery scanner reads it
        "researcher.dead-letter": ["Describe", "Write"],
        "researcher.workers": ["Describe", "Read"],
    }
    keda = users["keda-lag-reader"]["authorization"]["acls"]
    assert {op for a in keda for op in a["operations"]} == {"Describe"}

    metrics = capture.of_type("kubernetes:core/v1:ConfigMap")[0]
    rules = yaml.safe_load(metrics.inputs["data"]["kafka-metrics-config.yml"])
    assert rules["lowercaseOutputName"] is True and rules["rules"]
    kubernetes_validate.validate(_manifest(metrics), "1.33", strict=True)


def test_msk_declares_private_encrypted_iam_cluster_and_per_agent_policies() -> None:
    capture = _bus(spec=msk(), **MSK)
    types = sorted({r.type for r in capture.registrations})
    assert types == [
        "aws:cloudwatch/logGroup:LogGroup",
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:iam/policy:Policy",
        "aws:iam/role:Role",
        "aws:iam/rolePolicy:RolePolicy",
        "aws:msk/cluster:Cluster",
        "aws:msk/configuration:Configuration",
        "kubernetes:batch/v1:Job",
        "kubernetes:core/v1:ConfigMap",
        "kubernetes:core/v1:ServiceAccount",
        "swarmstack:data:EventBus",
    ]
    cluster = capture.of_type("aws:msk/cluster:Cluster")[0].inputs
    assert cluster["numberOfBrokerNodes"] == 3
    assert cluster["brokerNodeGroupInfo"]["clientSubnets"] == ["subnet-a", "subnet-b", "subnet-c"]
    transit = cluster["encryptionInfo"]["encryptionInTransit"]
    assert transit == {"clientBroker": "TLS", "inCluster": True}
    assert cluster["encryptionInfo"]["encryptionAtRestKmsKeyArn"] == NETWORK.kms_key_arn
    assert cluster["clientAuthentication"]["sasl"] == {"iam": True}
    assert cluster["openMonitoring"]["prometheus"]["jmxExporter"]["enabledInBroker"] is True
    assert cluster["loggingInfo"]["brokerLogs"]["cloudwatchLogs"]["enabled"] is True
    group = capture.of_type("aws:ec2/securityGroup:SecurityGroup")[0].inputs
    assert group["ingress"] == [
        {
            "description": "Kafka clients (TLS) from the cluster's nodes",
            "fromPort": 9098,
            "protocol": "tcp",
            "securityGroups": ["sg-nodes"],
            "toPort": 9098,
        }
    ]
    configuration = capture.of_type("aws:msk/configuration:Configuration")[0].inputs
    assert configuration["serverProperties"] == server_properties(msk())
    policy = json.loads(capture.of_type("aws:iam/policy:Policy")[0].inputs["policy"])
    topics = {r for s in policy["Statement"] for r in s["Resource"] if "topic/" in r}
    assert {t.rsplit("/", 1)[-1] for t in topics} == {
        "researcher.tasks",
        "researcher.results",
        "researcher.dead-letter",
    }
    job = capture.of_type("kubernetes:batch/v1:Job")[0]
    container = job.inputs["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][-1] == "/config/topics.json"
    kubernetes_validate.validate(_manifest(job), "1.33", strict=True)
    topics_map = capture.of_type("kubernetes:core/v1:ConfigMap")[0]
    assert (
        json.loads(topics_map.inputs["data"]["topics.json"])["topics"][0]["name"]
        == "researcher.tasks"
    )


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("topic_job_image", "set images.agentWorker"),
        ("irsa", "need the cluster's OIDC provider"),
    ],
)
def test_msk_without_the_topic_jobs_image_or_role_is_refused(missing: str, message: str) -> None:
    args = {**MSK, missing: None}
    with pytest.raises(EventBusError, match=message):
        EventBus("bus", EventBusArgs(msk(), agents(), NAMESPACE, COST_LABELS, **args))


def test_bad_spec_stops_before_anything_is_declared() -> None:
    errors: list[str] = []

    def program() -> None:
        try:
            EventBus(
                "bus", EventBusArgs(kafka(minInsyncReplicas=3), agents(), NAMESPACE, COST_LABELS)
            )
        except ValueError as exc:
            errors.append(str(exc))

    capture = run(program)
    assert capture.registrations == []
    assert errors[0].startswith("kafka.minInsyncReplicas: 3 is not below replicationFactor 3")
