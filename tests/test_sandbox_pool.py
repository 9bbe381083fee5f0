"""The gVisor sandbox pool: the node group, the user data its nodes boot with, and the
RuntimeClass that sends sandboxed pods there. The user data is read back with Python's
MIME parser and tomllib (what nodeadm and cloud-init read); ShellCheck judges the install
script in tests/e2e/test_sandbox_user_data.py."""

from __future__ import annotations

import base64
import copy
import email
import tomllib
from email.message import Message
from typing import Any

import pytest
import yaml

from components.compute.sandbox import (
    HANDLER,
    RUNTIME_CLASS,
    SANDBOX_LABEL,
    install_script,
    user_data,
)
from components.specs import ClusterSpec
from stacks.config import ConfigError, load
from stacks.plan.recorder import Capture
from tests.test_cluster import NAME, PILOT, cluster_spec, plan

SANDBOX = {"instanceType": "m7i.xlarge", "minSize": 0, "maxSize": 4}
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
RUNTIME_CLASS_TYPE = "kubernetes:node.k8s.io/v1:RuntimeClass"


@pytest.fixture(scope="module")
def sandboxed() -> Capture:
    return plan(cluster_spec(sandboxPool=SANDBOX))


def _parts(document: str) -> dict[str, str]:
    message = email.message_from_string(document)
    assert message.is_multipart()
    parts: list[Message] = list(message.get_payload())  # pyright: ignore[reportAssignmentType]
    return {part.get_content_type(): str(part.get_payload()) for part in parts}


def test_the_pool_is_tainted_labelled_and_boots_with_gvisor(sandboxed: Capture) -> None:
    group = sandboxed.named(f"{NAME}-sandbox").inputs
    assert group["labels"][SANDBOX_LABEL] == RUNTIME_CLASS
    assert group["taints"] == [{"key": SANDBOX_LABEL, "value": "gvisor", "effect": "NO_SCHEDULE"}]
    assert group["scalingConfig"]["minSize"] == 0 and group["scalingConfig"]["maxSize"] == 4
    assert group["amiType"] == "AL2023_x86_64_STANDARD"
    template = sandboxed.named(f"{NAME}-sandbox-lt").inputs
    document = base64.b64decode(template["userData"]).decode()
    assert document == user_data("20260928.0")
    # The hardening every node group has stays: IMDSv2 only.
    assert template["metadataOptions"]["httpTokens"] == "required"


def test_other_node_groups_carry_no_user_data(sandboxed: Capture) -> None:
    templates = [
        r for r in sandboxed.of_type("aws:ec2/launchTemplate:LaunchTemplate")
        if r.name != f"{NAME}-sandbox-lt"
    ]  # fmt: skip
    assert templates and all("userData" not in r.inputs for r in templates)


def test_nodeadm_gets_one_extra_containerd_runtime_in_the_portable_schema() -> None:
    parts = _parts(user_data("20260928.0"))
    assert set(parts) == {"application/node.eks.aws", "text/x-shellscript"}
    node_config: dict[str, Any] = yaml.safe_load(parts["application/node.eks.aws"])
    assert (node_config["apiVersion"], node_config["kind"]) == (
        "node.eks.aws/v1alpha1",
        "NodeConfig",
    )
    assert set(node_config["spec"]) == {"containerd"}  # EKS adds the cluster's own NodeConfig
    toml = tomllib.loads(node_config["spec"]["containerd"]["config"])
    # Version 2 keys: nodeadm merges them on containerd 1 and migrates them on containerd 2;
    # a version-3 key (io.containerd.cri.v1.runtime) fails on a containerd 1 AMI.
    assert toml["version"] == 2
    runtimes = toml["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
    assert runtimes == {HANDLER: {"runtime_type": "io.containerd.runsc.v1"}}


def test_the_script_installs_the_pinned_release_after_checking_it() -> None:
    script = install_script("20260928.0")
    url = "https://storage.googleapis.com/gvisor/releases/release/20260928.0/x86_64"
    assert f"{url}/gvisor.tar.bz2" in script and f"{url}/gvisor.tar.bz2.sha512" in script
    assert "latest" not in script
    lines = script.splitlines()
    check = lines.index("sha512sum --check --strict gvisor.tar.bz2.sha512")
    extract = next(i for i, line in enumerate(lines) if line.startswith("tar --extract"))
    assert check < extract  # nothing from the tarball runs before it is checked
    assert "set -euo pipefail" in lines  # a failed download or check fails the boot


def test_the_runtime_class_schedules_onto_the_pool(sandboxed: Capture) -> None:
    (runtime_class,) = sandboxed.of_type(RUNTIME_CLASS_TYPE)
    body = runtime_class.inputs
    assert body["metadata"]["name"] == RUNTIME_CLASS and body["handler"] == HANDLER
    assert body["scheduling"]["nodeSelector"] == {SANDBOX_LABEL: RUNTIME_CLASS}
    assert body["scheduling"]["tolerations"] == [
        {"key": SANDBOX_LABEL, "operator": "Equal", "value": "gvisor", "effect": "NoSchedule"}
    ]


def test_no_pool_no_runtime_class() -> None:
    capture = plan(cluster_spec())
    assert capture.of_type(RUNTIME_CLASS_TYPE) == []
    assert all(r.inputs["nodeGroupName"] != "sandbox" for r in capture.of_type(NODE_GROUP))


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"sandboxPool": {**SANDBOX, "gvisorRelease": "latest"}}, "gvisorRelease"),
        ({"sandboxPool": {**SANDBOX, "minSize": 5}}, "minSize 5 is above maxSize 4"),
        (
            {"sandboxPool": SANDBOX, "mode": "existing", "kubeconfigContext": "ctx"},
            "sandboxPool needs mode 'eks'",
        ),
    ],
    ids=["unpinned-release", "sizes", "existing-cluster"],
)
def test_bad_sandbox_pools_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClusterSpec.model_validate({**PILOT, **changes})


def test_a_gvisor_agent_needs_the_sandbox_pool_and_runs_there(pilot_raw: dict[str, Any]) -> None:
    raw = copy.deepcopy(pilot_raw)
    raw["agents"][0]["sandbox"] = "gvisor"
    with pytest.raises(ConfigError) as caught:
        load(raw, "us-east-1", "stacks/Pulumi.pilot.yaml")
    assert "agents[0].sandbox: 'gvisor' needs nodes that run it, but cluster.sandboxPool" in (
        str(caught.value)
    )
    raw["cluster"]["sandboxPool"] = SANDBOX
    config = load(raw, "us-east-1", "stacks/Pulumi.pilot.yaml")
    assert config.agents[0].sandbox == "gvisor"
