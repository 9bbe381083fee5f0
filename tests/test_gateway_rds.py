"""The gateway's Postgres on RDS (`gateway.database.mode: rds`): its config, its URL and
what the pilot's plan declares with it (the stack file changed in a copy of the project)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from pydantic import ValidationError

from components.gateway import rds
from components.gateway.spec import GatewayDatabase, RdsDatabase
from stacks.cli import EXIT_CONFIG, main

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER_MARK = "REDACTED"


def _project(tmp_path: Path, mutate: Callable[[dict[str, Any]], None]) -> Path:
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copy(ROOT / "stacks" / "__main__.py", root / "stacks" / "__main__.py")
    shutil.copytree(ROOT / "policies", root / "policies")
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.pilot.yaml").read_text())
    mutate(doc["config"])
    (root / "stacks" / "Pulumi.pilot.yaml").write_text(yaml.safe_dump(doc))
    return root


def _on_rds(config: dict[str, Any]) -> None:
    config["swarmstack:gateway"]["database"] = {
        "mode": "rds",
        "rds": {"instanceClass": "db.m7g.large", "multiAz": True, "performanceInsights": True},
    }


def _manifests(out: Path) -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted((out / "manifests").glob("*.yaml"))]


@pytest.fixture(scope="module")
def rds_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("rds")
    out = tmp / "out"
    assert main(["plan", "pilot", "--root", str(_project(tmp, _on_rds)), "--out", str(out)]) == 0
    return out / "pilot"


def _aws(out: Path) -> dict[str, list[dict[str, Any]]]:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in yaml.safe_load((out / "aws-resources.yaml").read_text()):
        by_type.setdefault(r["type"], []).append(r)
    return by_type


# --------------------------------------------------------------------------- pure parts


def test_the_url_requires_tls_and_quotes_the_password() -> None:
    url = rds.database_url("pa/ss@word", "gw.abc.us-east-1.rds.amazonaws.com")
    parts = urlsplit(url)
    assert parts.hostname == "gw.abc.us-east-1.rds.amazonaws.com" and parts.port == 5432
    assert parts.password == "pa%2Fss%40word"
    assert parse_qs(parts.query) == {"sslmode": ["require"]}
    assert rds.parameters() == {"rds.force_ssl": "1"}


def test_the_pilot_default_stays_in_cluster() -> None:
    assert GatewayDatabase().mode == "inCluster"


def test_a_storage_ceiling_below_the_allocation_is_refused() -> None:
    with pytest.raises(ValidationError, match="maxAllocatedStorageGib 20 is below"):
        RdsDatabase(allocated_storage_gib=50, max_allocated_storage_gib=20)


def test_an_unknown_engine_version_names_the_valid_ones() -> None:
    with pytest.raises(ValidationError, match=r"'17\.7', '17\.8' or '17\.9'"):
        RdsDatabase.model_validate({"engineVersion": "17.4"})


def test_rds_on_an_existing_cluster_without_its_network_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def existing(config: dict[str, Any]) -> None:
        _on_rds(config)
        cluster = config["swarmstack:cluster"]
        cluster["mode"] = "existing"
        cluster["kubeconfigContext"] = "platform"

    root = _project(tmp_path, existing)
    code = main(["plan", "pilot", "--root", str(root), "--out", str(tmp_path / "out")])
    assert code == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "gateway.database.mode: 'rds' runs in AWS next to the cluster" in err
    assert "cluster.network is not set" in err


# --------------------------------------------------------------------------- the plan


def test_the_plan_declares_a_private_encrypted_tls_only_instance(rds_plan: Path) -> None:
    by_type = _aws(rds_plan)
    (instance,) = by_type["aws:rds/instance:Instance"]
    i = instance["inputs"]
    assert i["engine"] == "postgres" and i["engineVersion"] == "17.9"
    assert i["autoMinorVersionUpgrade"] is False
    assert i["storageEncrypted"] is True
    key = "arn:aws:kms:us-east-1:111122223333:key/cluster-secrets-id"  # the cluster's key
    assert i["kmsKeyId"] == key and i["performanceInsightsKmsKeyId"] == key
    assert i["publiclyAccessible"] is False
    assert i["multiAz"] is True and i["backupRetentionPeriod"] == 7
    assert i["deletionProtection"] is True and i["skipFinalSnapshot"] is False
    assert i["finalSnapshotIdentifier"] == "swarm-pilot-gateway-db-final"
    assert i["password"] == PLACEHOLDER_MARK
    (subnets,) = by_type["aws:rds/subnetGroup:SubnetGroup"]
    assert i["dbSubnetGroupName"] == subnets["inputs"]["name"]
    assert all("private" in s for s in subnets["inputs"]["subnetIds"])
    assert len(subnets["inputs"]["subnetIds"]) == 3
    (params,) = by_type["aws:rds/parameterGroup:ParameterGroup"]
    assert i["parameterGroupName"] == params["inputs"]["name"]
    assert params["inputs"]["family"] == "postgres17"
    assert [(p["name"], p["value"]) for p in params["inputs"]["parameters"]] == [
        ("rds.force_ssl", "1")
    ]
    groups = [
        g for g in by_type["aws:ec2/securityGroup:SecurityGroup"] if "gateway-db" in g["name"]
    ]
    assert [g["name"] for g in groups] == ["gateway-db-sg"]
    rules = [
        r["inputs"]
        for r in by_type["aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"]
        if r["inputs"]["securityGroupId"] == "gateway-db-sg-id"
    ]
    assert len(rules) == 1
    assert (rules[0]["fromPort"], rules[0]["toPort"], rules[0]["ipProtocol"]) == (5432, 5432, "tcp")
    assert "referencedSecurityGroupId" in rules[0] and "cidrIpv4" not in rules[0]


def test_with_rds_no_postgres_runs_in_the_cluster(rds_plan: Path) -> None:
    docs = _manifests(rds_plan)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert not {n for n in names if n[1] == "model-gateway-db"}
    images = json.dumps([d for d in docs if d["kind"] in ("StatefulSet", "Deployment")])
    assert "postgres-exporter" not in images and "library/postgres" not in images
    # The proxy still reads its DATABASE_URL from the Secret, whose values are redacted.
    (secret,) = [d for d in docs if d["metadata"]["name"] == "model-gateway-database"]
    values = secret.get("stringData") or secret.get("data")
    assert values == {"database-url": PLACEHOLDER_MARK, "password": PLACEHOLDER_MARK}


def test_the_mesh_and_network_policy_let_the_gateway_reach_rds(rds_plan: Path) -> None:
    docs = _manifests(rds_plan)
    agents = [d for d in docs if d["metadata"].get("namespace") == "swarmstack-agents"]
    (entry,) = [
        d for d in agents if d["kind"] == "ServiceEntry" and d["metadata"]["name"] == "managed-rds"
    ]
    assert entry["spec"]["hosts"] == ["*.us-east-1.rds.amazonaws.com"]
    assert entry["spec"]["ports"] == [{"number": 5432, "name": "tcp-postgres", "protocol": "TCP"}]
    (sidecar,) = [
        d for d in agents if d["kind"] == "Sidecar" and d["metadata"]["name"] == "model-gateway"
    ]
    hosts = sidecar["spec"]["egress"][0]["hosts"]
    assert "./*.us-east-1.rds.amazonaws.com" in hosts
    assert not [h for h in hosts if "model-gateway-db" in h]
    # The agents' own Sidecars do not see RDS: only the gateway dials it.
    for d in agents:
        if d["kind"] == "Sidecar" and d["metadata"]["name"] != "model-gateway":
            assert not [h for h in d["spec"]["egress"][0]["hosts"] if "rds" in h]
    policies = {d["metadata"]["name"]: d["spec"] for d in agents if d["kind"] == "NetworkPolicy"}
    assert policies["allow-model-gateway-to-rds"]["egress"] == [
        {
            "to": [{"ipBlock": {"cidr": "10.40.0.0/16"}}],
            "ports": [{"protocol": "TCP", "port": 5432}],
        }
    ]
    assert policies["allow-model-gateway-to-rds"]["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/component": "model-gateway"}
    }
    assert "allow-model-gateway-to-model-gateway-db" not in policies
    assert not [d for d in agents if d["metadata"]["name"] == "model-gateway-db-callers"]


def test_the_plan_has_no_mandatory_violation_and_no_secret(rds_plan: Path) -> None:
    violations = json.loads((rds_plan / "policy.json").read_text())
    assert [v["message"] for v in violations if v["level"] == "mandatory"] == []
    assert not [v for v in violations if v["rule"].startswith("rds-")]
    checks = json.loads((rds_plan / "checks.json").read_text())
    assert [c for c in checks if c["severity"] == "error"] == []
    # The plan's placeholder password never shows: no URL with credentials in any file.
    for path in rds_plan.rglob("*"):
        if path.is_file():
            assert "postgresql://" not in path.read_text(), path


def test_the_pack_sees_the_instance_in_the_plan(tmp_path: Path) -> None:
    def unprotected(config: dict[str, Any]) -> None:
        _on_rds(config)
        config["swarmstack:gateway"]["database"]["rds"]["deletionProtection"] = False

    out = tmp_path / "out"
    assert (
        main(["plan", "pilot", "--root", str(_project(tmp_path, unprotected)), "--out", str(out)])
        == 0
    )
    violations = json.loads((out / "pilot" / "policy.json").read_text())
    found = [v for v in violations if v["rule"].startswith("rds-")]
    assert [(v["rule"], v["level"], v["message"]) for v in found] == [
        (
            "rds-deletion-protection",
            "advisory",  # the pilot phase; production makes it mandatory
            "Instance gateway-db-instance: deletionProtection is not true: a `pulumi destroy` "
            "or a replacement deletes it",
        )
    ]
