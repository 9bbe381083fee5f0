"""Documentation placeholders: `pulumi up` refuses them, a preview and the plan warn.

The program runs on the SDK's mock runtime here because the Pulumi engine cannot
run on this machine: `preview=False` is what a real `pulumi up` hands the program,
`preview=True` what `pulumi preview` hands it, and the offline plan marks itself.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import runpy
import shutil
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from stacks.cli import EXIT_CONFIG, main
from stacks.config import ConfigError, load
from stacks.mode import current_mode, offline_plan
from stacks.placeholders import DOCUMENTATION_NETWORKS, documentation_values
from stacks.plan.recorder import Registration, run
from stacks.plan.runner import ProgramInput, read_program_input

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "stacks/Pulumi.pilot.yaml"
SHIPPED_KEYS = [
    "cluster.endpoint.publicAccessCidrs[0]",
    "cluster.adminRoleArns[0]",
    "images.agentWorker.repository",
    "models[0].weights.uri",
    "dataPlane.qdrant.snapshots.bucket",
]


def _paths(raw: dict[str, Any]) -> list[str]:
    return [p.path for p in documentation_values(load(raw, "us-east-1", SOURCE))]


def _own_values(config: dict[str, Any]) -> None:
    """What a team puts in place of the shipped placeholders."""
    cluster = config["swarmstack:cluster"]
    cluster["endpoint"]["publicAccessCidrs"] = ["100.24.7.0/24"]
    cluster["adminRoleArns"] = ["arn:aws:iam::210987654321:role/platform-admin"]
    config["swarmstack:models"][0]["weights"]["uri"] = "s3://acme-models/qwen2.5-7b-instruct"
    config["swarmstack:images"]["agentWorker"]["repository"] = (
        "210987654321.dkr.ecr.us-east-1.amazonaws.com/swarm-pilot/agent-worker"
    )
    snapshots = config["swarmstack:dataPlane"]["qdrant"]["snapshots"]
    snapshots["bucket"] = "acme-backups"
    config["swarmstack:external"] = {"s3Buckets": ["acme-models", "acme-backups"]}


# --------------------------------------------------------------------------- what is refused


def test_shipped_pilot_holds_exactly_its_five_placeholders(pilot_raw: dict[str, Any]) -> None:
    assert _paths(pilot_raw) == SHIPPED_KEYS


def test_each_finding_names_the_value_and_the_fix(pilot_raw: dict[str, Any]) -> None:
    found = map(str, documentation_values(load(pilot_raw, "us-east-1", SOURCE)))
    cidr, arn, registry, bucket, backups = found
    assert cidr == (
        "cluster.endpoint.publicAccessCidrs[0]: '203.0.113.0/24' is in 203.0.113.0/24 "
        "(RFC 5737 TEST-NET-3), an address range reserved for documentation: replace it with a "
        "network of yours"
    )
    assert arn.startswith(
        "cluster.adminRoleArns[0]: 'arn:aws:iam::111122223333:role/platform-admin' is in "
        "account 111122223333, an example account of AWS's documentation"
    )
    assert registry.startswith(
        "images.agentWorker.repository: '111122223333.dkr.ecr.us-east-1.amazonaws.com/"
        "swarm-pilot/agent-worker' is a registry of account 111122223333"
    )
    assert bucket.startswith(
        "models[0].weights.uri: bucket 'swarm-pilot-models' is neither created by this stack "
        "(it creates none) nor listed in external.s3Buckets"
    )
    assert backups.startswith(
        "dataPlane.qdrant.snapshots.bucket: bucket 'swarm-pilot-backups' is neither created by "
        "this stack (it creates none) nor listed in external.s3Buckets"
    )


@pytest.mark.parametrize(
    "cidr", ["192.0.2.0/24", "198.51.100.128/25", "203.0.113.7/32", "192.0.2.64/26"]
)
def test_any_cidr_inside_a_documentation_range_is_found(
    pilot_raw: dict[str, Any], cidr: str
) -> None:
    pilot_raw["cluster"]["endpoint"]["publicAccessCidrs"] = ["100.24.7.0/24", cidr]
    assert "cluster.endpoint.publicAccessCidrs[1]" in _paths(pilot_raw)
    assert "cluster.endpoint.publicAccessCidrs[0]" not in _paths(pilot_raw)


@pytest.mark.parametrize(
    "account", ["111122223333", "123456789012", "444455556666", "777788889999"]
)
def test_example_account_arns_are_found(pilot_raw: dict[str, Any], account: str) -> None:
    pilot_raw["cluster"]["adminRoleArns"] = [
        "arn:aws:iam::210987654321:role/platform-admin",
        f"arn:aws:iam::{account}:role/ci-deployer",
    ]
    assert "cluster.adminRoleArns[1]" in _paths(pilot_raw)
    assert "cluster.adminRoleArns[0]" not in _paths(pilot_raw)


@pytest.mark.parametrize(
    ("repository", "found"),
    [
        ("111122223333.dkr.ecr.us-east-1.amazonaws.com/swarmstack/agent-worker", True),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/agent-worker", True),
        ("210987654321.dkr.ecr.us-east-1.amazonaws.com/swarmstack/agent-worker", False),
        ("docker.io/library/python", False),
    ],
)
def test_an_image_in_an_example_accounts_registry_is_found(
    pilot_raw: dict[str, Any], repository: str, found: bool
) -> None:
    pilot_raw["images"]["agentWorker"] = {"repository": repository, "tag": "0.4.0"}
    assert ("images.agentWorker.repository" in _paths(pilot_raw)) is found


@pytest.mark.parametrize(
    ("endpoint", "domain"),
    [
        ("https://otlp.example.com:4317", "example.com"),
        ("https://EXAMPLE.org", "example.org"),
        ("https://traces.corp.example", ".example"),
        ("https://collector.invalid", ".invalid"),
    ],
)
def test_a_trace_backend_on_a_documentation_domain_is_found(
    pilot_raw: dict[str, Any], endpoint: str, domain: str
) -> None:
    pilot_raw["observability"]["tracing"] = {"backend": {"type": "otlp", "endpoint": endpoint}}
    found = [
        str(p)
        for p in documentation_values(load(pilot_raw, "us-east-1", "x"))
        if p.path == "observability.tracing.backend.endpoint"
    ]
    assert found == [
        f"observability.tracing.backend.endpoint: {endpoint!r} is in {domain}, a domain "
        "reserved for documentation: point it at your trace backend"
    ]


def test_a_trace_backend_of_ones_own_is_not_a_placeholder(pilot_raw: dict[str, Any]) -> None:
    for endpoint in ("https://otlp.eu.honeycomb.io", "https://notexample.com", "https://a.testing"):
        pilot_raw["observability"]["tracing"] = {"backend": {"type": "otlp", "endpoint": endpoint}}
        paths = [p.path for p in documentation_values(load(pilot_raw, "us-east-1", "x"))]
        assert "observability.tracing.backend.endpoint" not in paths, endpoint


def test_a_bucket_named_external_is_accepted(pilot_raw: dict[str, Any]) -> None:
    pilot_raw["external"] = {"s3Buckets": ["swarm-pilot-models"]}
    assert "models[0].weights.uri" not in _paths(pilot_raw)
    pilot_raw["external"] = {"s3Buckets": ["another-bucket"]}
    assert "models[0].weights.uri" in _paths(pilot_raw)


def test_external_buckets_are_typed(pilot_raw: dict[str, Any]) -> None:
    pilot_raw["external"] = {"s3Buckets": ["s3://with-scheme"]}
    with pytest.raises(ConfigError, match=r"external\.s3Buckets\[0\]: 's3://with-scheme'"):
        load(pilot_raw, "us-east-1", SOURCE)
    pilot_raw["external"] = {"s3Buckets": ["models", "models"]}
    with pytest.raises(ConfigError, match=r"external\.s3Buckets: .*models more than once"):
        load(pilot_raw, "us-east-1", SOURCE)


def test_own_values_hold_no_placeholder(pilot_raw: dict[str, Any]) -> None:
    config = {f"swarmstack:{k}": v for k, v in pilot_raw.items()}
    _own_values(config)
    assert _paths({k.split(":", 1)[1]: v for k, v in config.items()}) == []


_DOCS = sorted(n for n in DOCUMENTATION_NETWORKS if n.version == 4)


@settings(max_examples=200, deadline=None)
@given(
    doc=st.sampled_from(_DOCS),
    extra_bits=st.integers(min_value=0, max_value=8),
    index=st.integers(min_value=0, max_value=255),
)
def test_property_every_subnet_of_a_documentation_range_is_found(
    doc: ipaddress.IPv4Network, extra_bits: int, index: int
) -> None:
    subnets = list(doc.subnets(prefixlen_diff=extra_bits))
    subnet = subnets[index % len(subnets)]
    raw = _pilot_with_cidr(str(subnet))
    assert "cluster.endpoint.publicAccessCidrs[0]" in _paths(raw)


@settings(max_examples=200, deadline=None)
@given(address=st.integers(min_value=1 << 24, max_value=(223 << 24) - 1), prefix=st.integers(8, 32))
def test_property_networks_outside_them_are_not(address: int, prefix: int) -> None:
    net = ipaddress.ip_network((address, prefix), strict=False)
    assume(not any(net.overlaps(doc) for doc in _DOCS))  # rejects about 3 in a million
    assert "cluster.endpoint.publicAccessCidrs[0]" not in _paths(_pilot_with_cidr(str(net)))


_SHIPPED = yaml.safe_load((ROOT / SOURCE).read_text())["config"]


def _pilot_with_cidr(cidr: str) -> dict[str, Any]:
    raw = copy.deepcopy(
        {k.split(":", 1)[1]: v for k, v in _SHIPPED.items() if k.startswith("swarmstack:")}
    )
    raw["cluster"]["endpoint"]["publicAccessCidrs"] = [cidr]
    return raw


# --------------------------------------------------------------------------- up, preview, plan


def _project(tmp_path: Path, mutate: Any = None) -> Path:
    """A project root with the real Pulumi.yaml and program and a (changed) pilot stack file."""
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", root)
    shutil.copy(ROOT / "stacks" / "__main__.py", root / "stacks")
    doc = yaml.safe_load((ROOT / SOURCE).read_text())
    if mutate is not None:
        mutate(doc["config"])
    (root / SOURCE).write_text(yaml.safe_dump(doc))
    return root


def _program_input(tmp_path: Path, mutate: Any = None) -> ProgramInput:
    return read_program_input(_project(tmp_path, mutate), "pilot")


def _run_program(inp: ProgramInput, *, preview: bool, declared: list[Registration]) -> Any:
    """The program exactly as the engine runs it: Pulumi.yaml's `main` as __main__."""
    return run(
        lambda: runpy.run_path(str(inp.main), run_name="__main__"),
        project=inp.project,
        stack=inp.stack,
        config=inp.config,
        secret_keys=inp.secret_keys,
        region=inp.region,
        preview=preview,
        registrations=declared,
    )


def test_up_refuses_the_shipped_placeholders_before_declaring_anything(tmp_path: Path) -> None:
    declared: list[Registration] = []
    with pytest.raises(pulumi.RunError) as refused:
        _run_program(_program_input(tmp_path), preview=False, declared=declared)
    message = str(refused.value)
    assert message.startswith(
        "`pulumi up` refuses documentation placeholders (stacks/Pulumi.pilot.yaml):"
    )
    for key in SHIPPED_KEYS:
        assert f"\n  {key}: " in message
    assert declared == []


def test_up_with_own_values_deploys(tmp_path: Path) -> None:
    declared: list[Registration] = []
    capture = _run_program(_program_input(tmp_path, _own_values), preview=False, declared=declared)
    assert len(declared) > 50
    assert not any("refuses" in w for w in capture.warnings)


def test_preview_warns_with_each_key_and_declares_everything(tmp_path: Path) -> None:
    declared: list[Registration] = []
    capture = _run_program(_program_input(tmp_path), preview=True, declared=declared)
    refusals = [w for w in capture.warnings if w.endswith("(`pulumi up` refuses it)")]
    assert [w.split(":", 1)[0] for w in refusals] == SHIPPED_KEYS
    assert len(declared) > 50


def test_the_mode_comes_from_the_engine_unless_the_plan_marks_itself() -> None:
    seen: list[str] = []
    for preview in (False, True):
        run(lambda: seen.append(current_mode()), preview=preview)
        with offline_plan():
            run(lambda: seen.append(current_mode()), preview=preview)
    assert seen == ["up", "plan", "preview", "plan"]  # the mark does not outlive the plan


def test_plan_lists_each_placeholder_as_a_warning(tmp_path: Path) -> None:
    assert main(["plan", "pilot", "--root", str(ROOT), "--out", str(tmp_path)]) == 0
    warnings = json.loads((tmp_path / "pilot" / "summary.json").read_text())["warnings"]
    refusals = [w for w in warnings if w.endswith("(`pulumi up` refuses it)")]
    assert [w.removeprefix("[program] ").split(":", 1)[0] for w in refusals] == SHIPPED_KEYS


# --------------------------------------------------------------------------- the token


def test_plan_says_why_the_token_matters_and_that_up_needs_it(tmp_path: Path) -> None:
    assert main(["plan", "pilot", "--root", str(ROOT), "--out", str(tmp_path)]) == 0
    warnings = json.loads((tmp_path / "pilot" / "summary.json").read_text())["warnings"]
    (token,) = [w for w in warnings if w.startswith("swarmstack:huggingFaceToken")]
    assert token.startswith(
        "swarmstack:huggingFaceToken is not set in stacks/Pulumi.pilot.yaml, so `pulumi up` "
        "refuses to run: model llama31-8b (meta-llama/Llama-3.1-8B-Instruct) downloads its "
        "weights from the Hugging Face Hub with it"
    )
    assert "swarmstack plan pilot --unset-secret huggingFaceToken" in token


def test_an_encrypted_token_is_named_a_placeholder_with_its_purpose(tmp_path: Path) -> None:
    root, out = _project(tmp_path, _encrypted_token), tmp_path / "out"
    assert main(["plan", "pilot", "--root", str(root), "--out", str(out)]) == 0
    warnings = json.loads((out / "pilot" / "summary.json").read_text())["warnings"]
    (token,) = [w for w in warnings if w.startswith("swarmstack:huggingFaceToken")]
    assert token == (
        "swarmstack:huggingFaceToken is encrypted in stacks/Pulumi.pilot.yaml, which the plan "
        "cannot read; a redacted placeholder stood in for it: model llama31-8b "
        "(meta-llama/Llama-3.1-8B-Instruct) downloads its weights from the Hugging Face Hub "
        "with it (gated models refuse downloads without a token)"
    )


def _encrypted_token(config: dict[str, Any]) -> None:
    config["swarmstack:huggingFaceToken"] = {"secure": "AAABAHq1d5Zq4fQ9c2VjcmV0LXRva2Vu"}


@pytest.mark.parametrize("stack_file", ["without the token", "with an encrypted token"])
def test_plan_without_the_token_shows_the_refusal_and_leaves_out_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stack_file: str
) -> None:
    out = tmp_path / "out"
    (out / "pilot").mkdir(parents=True)
    (out / "pilot" / "summary.txt").write_text("previous plan\n")
    mutate = _encrypted_token if stack_file == "with an encrypted token" else None
    root = _project(tmp_path, mutate)
    argv = ["plan", "pilot", "--root", str(root), "--out", str(out)]
    assert main([*argv, "--unset-secret", "huggingFaceToken"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert (
        "  huggingFaceToken: not set, but model llama31-8b (meta-llama/Llama-3.1-8B-Instruct) "
        "downloads its weights from the Hugging Face Hub with it"
    ) in err
    assert "run `pulumi config set --secret huggingFaceToken <token>`" in err
    assert (out / "pilot" / "summary.txt").read_text() == "previous plan\n"
    assert sorted(p.name for p in out.rglob("*")) == ["pilot", "summary.txt"]


def test_unset_secret_names_the_secret_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["plan", "pilot", "--root", str(ROOT), "--out", str(tmp_path / "out")]
    assert main([*argv, "--unset-secret", "hfToken"]) == EXIT_CONFIG
    assert (
        "--unset-secret hfToken: not a secret config key (one of "
        "alertmanagerPagerdutyRoutingKey, alertmanagerSlackApiUrl, alertmanagerWebhookUrl, "
        "gatewayAgentKeySeed, gatewayAnthropicApiKey, gatewayDatabasePassword, "
        "gatewayGeminiApiKey, gatewayMasterKey, gatewayMistralApiKey, gatewayOpenaiApiKey, "
        "gatewaySaltKey, grafanaAdminPassword, huggingFaceToken, qdrantApiKey, "
        "qdrantReadOnlyApiKey, redisPassword, tracingBackendAuthHeader)" in capsys.readouterr().err
    )
    assert not (tmp_path / "out").exists()


def test_unsetting_a_token_no_model_needs_plans(tmp_path: Path) -> None:
    def no_hub(config: dict[str, Any]) -> None:
        config["swarmstack:models"] = config["swarmstack:models"][:1]
        for agent in config["swarmstack:agents"]:  # each agent calls a model the stack serves
            agent["model"] = config["swarmstack:models"][0]["name"]

    root, out = _project(tmp_path, no_hub), tmp_path / "out"
    argv = ["plan", "pilot", "--root", str(root), "--out", str(out)]
    assert main([*argv, "--unset-secret", "huggingFaceToken"]) == 0
    warnings = json.loads((out / "pilot" / "summary.json").read_text())["warnings"]
    assert not any("huggingFaceToken" in w for w in warnings)
