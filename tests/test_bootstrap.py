"""stacks/bootstrap/bootstrap.sh run against a recording stand-in for the AWS CLI (said
here: no AWS account is involved): the state bucket refuses plain HTTP, the deploy role
gets the least-privilege policy of stacks/bootstrap/deploy-policy.json instead of
AdministratorAccess, and that policy covers what the stacks' plans declare, on the tag
every stack resource carries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacks.cli import main
from tests.test_data_plane import _managed, _project  # pyright: ignore[reportPrivateUsage]
from tests.test_gateway_rds import _on_rds  # pyright: ignore[reportPrivateUsage]

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "stacks" / "bootstrap" / "bootstrap.sh"
ACCOUNT = "210987654321"
REGION = "eu-west-1"
BUCKET = f"swarmstack-pulumi-state-{ACCOUNT}"
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
# pulumi_aws module -> the IAM service prefix of its API
SERVICE_OF_MODULE = {
    "ec2": "ec2",
    "vpc": "ec2",
    "eks": "eks",
    "ecr": "ecr",
    "cloudwatch": "logs",
    "rds": "rds",
    "elasticache": "elasticache",
    "msk": "kafka",
    "iam": "iam",
    "kms": "kms",
}
TAGGED_TYPES = (
    "aws:iam/role:Role",
    "aws:iam/policy:Policy",
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider",
    "aws:kms/key:Key",
)

# The stand-in `aws`: every call appended to $FAKE_AWS_LOG as a JSON list; the answers a
# first run gets (nothing exists yet), or a second run's with FAKE_AWS_EXISTING=1.
FAKE_AWS = f'''#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_AWS_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
existing = os.environ.get("FAKE_AWS_EXISTING") == "1"
call = tuple(args[:2])
if call == ("sts", "get-caller-identity"):
    print("{ACCOUNT}")
elif call in (("s3api", "head-bucket"), ("iam", "get-open-id-connect-provider"),
              ("iam", "get-role")):
    sys.exit(0 if existing else 254)
elif call == ("kms", "describe-key"):
    if not existing:
        sys.exit(254)
    print("{KEY_ID}")
elif call == ("kms", "create-key"):
    print("{KEY_ID}")
elif call == ("accessanalyzer", "validate-policy"):
    print(os.environ.get("FAKE_AWS_FINDINGS", ""))
elif call == ("iam", "list-attached-role-policies"):
    print(os.environ.get("FAKE_AWS_ATTACHED", ""))
'''


def _run(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "aws"
    fake.write_text(FAKE_AWS)
    fake.chmod(0o755)
    log = tmp_path / "aws-calls.jsonl"
    log.unlink(missing_ok=True)
    run = subprocess.run(
        ["bash", str(SCRIPT)],
        env={
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "GITHUB_REPO": "acme/swarm",
            "AWS_REGION": REGION,
            "FAKE_AWS_LOG": str(log),
            **env,
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return run, calls


def _option(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


def _calls(calls: list[list[str]], service: str, operation: str) -> list[list[str]]:
    return [c for c in calls if c[:2] == [service, operation]]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> list[list[str]]:
    run, calls = _run(tmp_path_factory.mktemp("bootstrap"))
    assert run.returncode == 0, run.stderr
    return calls


@pytest.fixture(scope="module")
def deploy_policy(first_run: list[list[str]]) -> dict[str, Any]:
    (put,) = [
        c
        for c in _calls(first_run, "iam", "put-role-policy")
        if _option(c, "--role-name") == "swarmstack-deploy"
        and _option(c, "--policy-name") == "swarmstack-deploy"
    ]
    return json.loads(_option(put, "--policy-document"))


def _statements(policy: dict[str, Any], effect: str = "Allow") -> list[dict[str, Any]]:
    return [s for s in policy["Statement"] if s["Effect"] == effect]


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def test_the_state_bucket_refuses_requests_without_tls(first_run: list[list[str]]) -> None:
    (put,) = _calls(first_run, "s3api", "put-bucket-policy")
    assert _option(put, "--bucket") == BUCKET
    policy = json.loads(_option(put, "--policy"))
    (deny,) = policy["Statement"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert sorted(deny["Resource"]) == [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # Access Analyzer checked this very document as a bucket policy before it was put.
    (check,) = [
        c
        for c in _calls(first_run, "accessanalyzer", "validate-policy")
        if _option(c, "--policy-type") == "RESOURCE_POLICY"
    ]
    assert _option(check, "--validate-policy-resource-type") == "AWS::S3::Bucket"
    assert json.loads(_option(check, "--policy-document")) == policy
    assert first_run.index(check) < first_run.index(put)


def test_the_deploy_role_gets_no_administrator_access(
    first_run: list[list[str]], deploy_policy: dict[str, Any]
) -> None:
    attached = _calls(first_run, "iam", "attach-role-policy")
    assert [
        _option(c, "--policy-arn")
        for c in attached
        if _option(c, "--role-name") == "swarmstack-deploy"
    ] == []
    text = json.dumps(deploy_policy)
    assert "@" not in text  # every placeholder filled in
    for statement in _statements(deploy_policy):
        assert "*" not in _listed(statement["Action"]), statement["Sid"]
        assert not any(a in ("iam:*", "s3:*", "sts:*") for a in _listed(statement["Action"]))
    # Access Analyzer checked this very document as an identity policy.
    checks = [
        json.loads(_option(c, "--policy-document"))
        for c in _calls(first_run, "accessanalyzer", "validate-policy")
        if _option(c, "--policy-type") == "IDENTITY_POLICY"
    ]
    assert deploy_policy in checks


def test_the_state_bucket_and_key_cannot_be_loosened_by_the_deploy_role(
    deploy_policy: dict[str, Any],
) -> None:
    denied = {r for s in _statements(deploy_policy, "Deny") for r in _listed(s["Resource"])}
    assert f"arn:aws:s3:::{BUCKET}" in denied
    assert f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{KEY_ID}" in denied
    assert f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/swarmstack-pulumi" in denied


def test_regional_services_are_allowed_in_the_stack_region_only(
    deploy_policy: dict[str, Any],
) -> None:
    for statement in _statements(deploy_policy):
        regional = [a for a in _listed(statement["Action"]) if a.split(":")[0] not in ("iam",)]
        if regional and statement["Resource"] == "*" and statement["Sid"] != "KmsListings":
            assert statement["Condition"]["StringEquals"]["aws:RequestedRegion"] == REGION


@pytest.fixture(scope="module")
def planned_aws(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The AWS resources of the pilot plan (golden) and of the pilot with MSK, ElastiCache
    and RDS: between them every AWS resource type the stacks can declare."""
    tmp = tmp_path_factory.mktemp("managed")

    def managed(config: dict[str, Any]) -> None:
        _managed(config)
        _on_rds(config)

    out = tmp / "out"
    assert main(["plan", "pilot", "--root", str(_project(tmp, managed)), "--out", str(out)]) == 0
    golden = yaml.safe_load(
        (ROOT / "tests" / "golden" / "pilot" / "aws-resources.yaml").read_text()
    )
    return [*golden, *yaml.safe_load((out / "pilot" / "aws-resources.yaml").read_text())]


def _allowed_prefixes(policy: dict[str, Any]) -> set[str]:
    return {a.split(":")[0] for s in _statements(policy) for a in _listed(s["Action"])}


def test_every_service_the_plans_declare_is_allowed(
    planned_aws: list[dict[str, Any]], deploy_policy: dict[str, Any]
) -> None:
    modules = {r["type"].split(":")[1].split("/")[0] for r in planned_aws}
    unknown = sorted(modules - set(SERVICE_OF_MODULE))
    assert unknown == [], (
        f"pulumi_aws modules with no service here (add to deploy-policy.json): {unknown}"
    )
    missing = {SERVICE_OF_MODULE[m] for m in modules} - _allowed_prefixes(deploy_policy)
    assert missing == set()


def test_the_roles_keys_and_policies_the_plans_create_carry_the_tag_the_policy_scopes_by(
    planned_aws: list[dict[str, Any]],
) -> None:
    found = [r for r in planned_aws if r["type"] in TAGGED_TYPES]
    assert {r["type"] for r in found} == set(TAGGED_TYPES)
    untagged = [
        r["name"]
        for r in found
        if (r["inputs"].get("tags") or {}).get("managed-by") != "swarmstack"
    ]
    assert untagged == []


def test_only_the_managed_policies_the_plans_attach_may_be_attached(
    planned_aws: list[dict[str, Any]], deploy_policy: dict[str, Any]
) -> None:
    attached = {
        r["inputs"]["policyArn"]
        for r in planned_aws
        if r["type"] == "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
    }
    (statement,) = [
        s for s in _statements(deploy_policy) if "iam:AttachRolePolicy" in _listed(s["Action"])
    ]
    allowed = set(statement["Condition"]["ArnEquals"]["iam:PolicyARN"])
    assert attached and attached <= allowed
    assert ADMIN not in allowed


def test_a_second_run_takes_administrator_access_away(tmp_path: Path) -> None:
    run, calls = _run(tmp_path, FAKE_AWS_EXISTING="1", FAKE_AWS_ATTACHED=ADMIN)
    assert run.returncode == 0, run.stderr
    detached = _calls(calls, "iam", "detach-role-policy")
    assert [(_option(c, "--role-name"), _option(c, "--policy-arn")) for c in detached] == [
        ("swarmstack-deploy", ADMIN)
    ]
    assert _calls(calls, "s3api", "create-bucket") == []


def test_a_policy_access_analyzer_refuses_is_not_put(tmp_path: Path) -> None:
    run, calls = _run(tmp_path, FAKE_AWS_FINDINGS="ERROR\tMISSING_VERSION\thttps://example")
    assert run.returncode == 1
    assert "IAM Access Analyzer refuses the policy" in run.stderr
    assert _calls(calls, "s3api", "put-bucket-policy") == []
    assert _calls(calls, "iam", "put-role-policy") == []


def test_a_security_warning_is_shown_and_the_run_goes_on(tmp_path: Path) -> None:
    run, calls = _run(
        tmp_path, FAKE_AWS_FINDINGS="SECURITY_WARNING\tPASS_ROLE_WITH_STAR\thttps://x"
    )
    assert run.returncode == 0, run.stderr
    assert "PASS_ROLE_WITH_STAR" in run.stderr
    assert _calls(calls, "iam", "put-role-policy") != []
