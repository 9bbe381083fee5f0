"""The local gateway's pieces that need no service: the LiteLLM pin, the Makefile's venv,
a run's master key kept out of reprs, the pilot's gateway as the local target runs it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from components.gateway.proxy import RedisAccess, proxy_args, proxy_environment
from components.gateway.proxy import pod_template as proxy_pod_template
from components.gateway.spec import LITELLM_VERSION, GatewaySpec
from components.specs import CostLabels
from loadtests.gateway import (
    LocalGatewayError,
    local_proxy_config,
    local_proxy_env,
    stand_in_gateway,
    write_key_file,
)
from loadtests.services import GatewayService
from stacks.config import load_file

ROOT = Path(__file__).resolve().parent.parent


def test_the_local_proxy_is_the_release_the_stack_deploys() -> None:
    text = (ROOT / "loadtests" / "requirements-litellm.txt").read_text()
    pins = re.findall(r"^litellm==(\S+)$", text, flags=re.MULTILINE)
    assert pins == [LITELLM_VERSION]


def test_setup_serve_builds_the_litellm_venv() -> None:
    commands = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-n",
            "-W",
            "loadtests/requirements-litellm.txt",
            "setup-serve",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "-m venv .venv-litellm" in commands
    assert "-r loadtests/requirements-litellm.txt" in commands


def test_the_master_key_is_not_in_the_services_repr(tmp_path: Path) -> None:
    process = subprocess.Popen(["true"])
    process.wait()
    service = GatewayService(
        "litellm", "http://127.0.0.1:1", 1, process, tmp_path / "log", master_key="sk-secret"
    )
    assert "sk-secret" not in repr(service)


def test_affinity_places_every_call_of_a_session_on_one_replica() -> None:
    """The prefix-affinity benchmark's placement: a session's calls always land on the
    replica its id hashes to, and sessions spread over both replicas."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import prefix_affinity  # noqa: PLC0415  # pyright: ignore[reportMissingImports]

    placed = {sid: prefix_affinity.replica_for(sid, 2) for sid in (f"s-{i}" for i in range(64))}
    assert all(prefix_affinity.replica_for(sid, 2) == r for sid, r in placed.items())
    assert set(placed.values()) == {0, 1}
    assert 16 <= sum(placed.values()) <= 48  # neither replica takes (nearly) all of them


def test_the_local_proxy_env_is_the_pods_plain_settings_with_its_secrets_resolved() -> None:
    spec = GatewaySpec()
    env = local_proxy_env(spec, redis_port=6390, redis_password="local-pass")
    redis = RedisAccess(host="127.0.0.1", port=6390, password_secret="s", password_key="k")
    rendered = proxy_environment(spec, redis, database_enabled=False)
    plain = {e["name"]: e["value"] for e in rendered if "value" in e}
    assert {k: v for k, v in env.items() if k in plain} == plain
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"  # no cost-map fetch at start
    assert env["REDIS_PASSWORD"] == "local-pass"
    # Master and salt keys are generated per run by start_litellm, never set here.
    assert "LITELLM_MASTER_KEY" not in env and "LITELLM_SALT_KEY" not in env
    assert set(env) == set(plain) | {"REDIS_PASSWORD"}


def test_a_managed_model_key_has_no_local_value_and_is_refused_by_name() -> None:
    spec = GatewaySpec.model_validate(
        {"managedModels": [{"name": "gpt-4o-mini", "model": "openai/gpt-4o-mini"}]}
    )
    with pytest.raises(LocalGatewayError, match=r"OPENAI_API_KEY comes from a Secret"):
        local_proxy_env(spec, redis_port=6390, redis_password="x")


def test_the_local_proxy_runs_the_pods_arguments_on_loopback() -> None:
    pod = proxy_pod_template(
        GatewaySpec(),
        redis=RedisAccess(host="h", port=1, password_secret="s", password_key="k"),
        config_map="c",
        config_sha256="",
        cost_labels=CostLabels(team="t", cost_center="c", environment="e"),
    )
    assert pod["spec"]["containers"][0]["args"] == proxy_args("/etc/litellm/config.yaml")


def test_the_local_target_runs_the_pilots_gateway_without_its_managed_models() -> None:
    """The pilot's own gateway spec and model names, every model on the one local vLLM;
    only the managed models (a provider key from a Secret, an API on the internet) and
    the fallbacks to them are left out."""
    pilot = load_file(ROOT / "stacks" / "Pulumi.pilot.yaml")
    assert pilot.gateway is not None and pilot.gateway.managed_models
    spec, models = stand_in_gateway(pilot)
    assert [m.name for m in models] == [m.name for m in pilot.models]
    assert {m.model for m in models} == {"HuggingFaceTB/SmolLM2-135M-Instruct"}
    assert spec.managed_models == []
    assert spec.fallbacks() == {"qwen25-7b": ["llama31-8b"]}  # gpt-4o-mini left out
    assert spec.route("qwen25-7b").rpm == pilot.gateway.route("qwen25-7b").rpm
    assert spec.num_retries == pilot.gateway.num_retries
    config = local_proxy_config(
        spec, models, {m.name: "http://127.0.0.1:1/v1" for m in models}, pilot.timeouts
    )
    assert [d["model_name"] for d in config["model_list"]] == ["qwen25-7b", "llama31-8b"]
    assert "database_url" not in config["general_settings"]
    # Its environment has no Secret without a local value (the provider key is gone).
    assert "OPENAI_API_KEY" not in local_proxy_env(spec, redis_port=1, redis_password="p")


def test_the_agents_key_file_is_written_for_its_owner_only(tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "gw" / "agent-key", "sk-local")
    assert path.read_text() == "sk-local"
    assert path.stat().st_mode & 0o777 == 0o600
