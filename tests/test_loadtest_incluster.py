"""Load tests against a deployed stack, from its outputs: the runner's target and SLOs, the
in-cluster run's manifests (Job args, time bounds, checks, policy verdicts) and the reports
read back from the master's log.

The outputs file is the pilot's planned `outputs.json` (tests/golden/pilot, which
tests/test_golden.py holds equal to `swarmstack plan pilot`): the document
`pulumi stack output --json` prints for the deployed stack.
"""

from __future__ import annotations

import copy
import io
import json
import os
import stat
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtests import incluster
from loadtests.incluster import (
    API_KEY_KEY,
    KEY_DIR,
    OUTPUTS_FILE,
    REPORTS_DIR,
    RunSpec,
    RunSpecError,
    master_args,
    render_manifests,
    run_in_cluster,
    runner_args,
)
from loadtests.metrics import RequestSample, summarize
from loadtests.report import BEGIN, END, print_reports, reports_from_log, write_summary
from loadtests.run import ArgumentError, RunConfig, config_from_args, locust_argv, parser
from loadtests.slo import evaluate
from loadtests.stack_outputs import OutputsError, read_outputs, target_from_outputs
from stacks.cli import main as swarmstack
from stacks.loadtest import check_manifests

ROOT = Path(__file__).resolve().parent.parent
OUTPUTS = ROOT / "tests" / "golden" / "pilot" / "outputs.json"
IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/swarm-pilot/loadtest:0.1.0"
KEY_SECRET = "model-gateway-agent-concierge"


@pytest.fixture(scope="module")
def outputs() -> dict[str, Any]:
    return read_outputs(OUTPUTS)


def spec(**changes: Any) -> RunSpec:
    base: dict[str, Any] = {
        "image": IMAGE,
        "api_key_secret": KEY_SECRET,
        "users": 32,
        "spawn_rate": 2.0,
        "run_time_s": 300,
        "stop_timeout_s": 30,
        "workers": 3,
        "locust_options": ("--prompt-tokens", "512"),
    }
    base.update(changes)
    return RunSpec(**base)


def by_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


def job(manifests: list[dict[str, Any]], role: str) -> dict[str, Any]:
    (found,) = [m for m in by_kind(manifests, "Job") if m["metadata"]["name"].endswith(role)]
    return found


def container(job_doc: dict[str, Any]) -> dict[str, Any]:
    (c,) = job_doc["spec"]["template"]["spec"]["containers"]
    return c


# --------------------------------------------------------------------------- target and SLOs


def test_the_pilots_outputs_name_the_gateway_its_models_and_their_slos(
    outputs: dict[str, Any],
) -> None:
    target = target_from_outputs(outputs)
    assert target.base_url == "http://model-gateway.swarmstack-agents.svc.cluster.local:4000/v1"
    assert target.host == "http://model-gateway.swarmstack-agents.svc.cluster.local:4000"
    assert target.model == "qwen25-7b"  # the first gateway model with an SLO
    assert target.models == ("qwen25-7b", "llama31-8b", "gpt-4o-mini")
    assert (target.slo.ttft_p99_ms, target.slo.itl_p99_ms, target.slo.e2e_p99_s) == (500, 50, 60)
    assert target.slo.error_rate == 0.01  # slo_profiles.yaml defaults
    assert target.namespace == "swarmstack-agents" and target.port == 4000
    assert target.cost_labels == outputs["costLabels"]
    batch = target_from_outputs(outputs, "llama31-8b").slo
    assert (batch.ttft_p99_ms, batch.itl_p99_ms, batch.e2e_p99_s) == (2500, 100, 120)


def test_the_runner_takes_target_and_slo_from_the_outputs_file(tmp_path: Path) -> None:
    args = parser().parse_args(
        ["--outputs", str(OUTPUTS), "--model", "llama31-8b", "--api-key-file", "/k", "-t", "30"]
    )
    config = config_from_args(args)
    assert config.host == "http://model-gateway.swarmstack-agents.svc.cluster.local:4000"
    assert config.user_classes == ("ModelUser",)
    assert config.slo_value is not None and config.slo_value.ttft_p99_ms == 2500
    assert "slos.llama31-8b" in config.slo_value.source
    assert config.locust_options == ["--model-name", "llama31-8b", "--api-key-file", "/k"]
    argv = locust_argv(config)
    assert argv[argv.index("--host") + 1] == config.host and argv[-1] == "ModelUser"


def test_the_runner_reads_the_outputs_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(OUTPUTS.read_text()))
    config = config_from_args(parser().parse_args(["--outputs", "-", "--slo-set", "e2eP99S=9"]))
    assert config.slo_value is not None and config.slo_value.e2e_p99_s == 60  # overridden later
    assert config.slo_overrides == {"e2eP99S": 9.0}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda o: o.pop("gateway"), "exports no `gateway` output"),
        (lambda o: o["gateway"].pop("baseUrl"), "gateway.baseUrl: expected a non-empty string"),
        (lambda o: o["gateway"].update(port="4000"), "gateway.port: expected a TCP port"),
        (lambda o: o["slos"]["qwen25-7b"].update(ttftP99Ms=0), "slos.qwen25-7b.ttftP99Ms"),
        (lambda o: o.update(slos={}), "no SLO for any gateway model"),
    ],
)
def test_outputs_that_lack_what_a_run_needs_are_named(
    outputs: dict[str, Any], change: Any, message: str
) -> None:
    broken = copy.deepcopy(outputs)
    change(broken)
    with pytest.raises(OutputsError, match=message):
        target_from_outputs(broken)


def test_a_model_without_slo_or_not_routed_is_refused(outputs: dict[str, Any]) -> None:
    with pytest.raises(OutputsError, match=r"'gpt-4o-mini' has no SLO .*qwen25-7b, llama31-8b"):
        target_from_outputs(outputs, "gpt-4o-mini")
    with pytest.raises(OutputsError, match=r"'mistral': not a gateway model"):
        target_from_outputs(outputs, "mistral")


def test_the_runner_refuses_two_slo_sources_and_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ArgumentError, match="--slo and --outputs"):
        config_from_args(parser().parse_args(["--outputs", str(OUTPUTS), "--slo", "local"]))
    with pytest.raises(ArgumentError, match="no such file"):
        config_from_args(parser().parse_args(["--outputs", str(tmp_path / "none.json")]))


# --------------------------------------------------------------------------- manifests


def test_the_masters_args_are_the_local_runners_with_the_pods_paths_and_master_mode(
    outputs: dict[str, Any],
) -> None:
    s = spec()
    target = target_from_outputs(outputs)
    manifests = render_manifests(outputs, s)
    master = container(job(manifests, "master"))
    local = runner_args(
        s, target, outputs=OUTPUTS_FILE, api_key_file=f"{KEY_DIR}/{API_KEY_KEY}", out=REPORTS_DIR
    )
    mode = ["--master", "--master-bind-host", "0.0.0.0", "--expect-workers", "3"]
    sep = local.index("--")
    assert master["args"] == [*local[:sep], *mode, "--print-reports", *local[sep:]]
    assert master["args"] == master_args(s, target)
    # Parsed by the runner, the Job's args and the local argv ask for the same run.
    local_config = config_from_args(parser().parse_args(
        runner_args(s, target, outputs=str(OUTPUTS), api_key_file="/k", out="out/lt")
    ))  # fmt: skip
    pod_config = _with_pod_files(master["args"], outputs)
    differs = {"out", "master", "master_bind_host", "expect_workers", "locust_options"}
    for name in RunConfig.__dataclass_fields__:
        if name not in differs:
            assert getattr(pod_config, name) == getattr(local_config, name), name
    assert pod_config.master and pod_config.expect_workers == 3
    assert (pod_config.duration_s, pod_config.stop_timeout_s, pod_config.users) == (300, 30, 32)
    assert local_config.locust_options == [
        "--prompt-tokens", "512", "--model-name", "qwen25-7b", "--api-key-file", "/k",
    ]  # fmt: skip


def _with_pod_files(args: list[str], outputs: dict[str, Any]) -> RunConfig:
    """The Job's args parsed with the pod's outputs file read from the ConfigMap."""
    manifests = render_manifests(outputs, spec())
    (config_map,) = by_kind(manifests, "ConfigMap")
    mounted = json.loads(config_map["data"]["outputs.json"])
    assert set(mounted) == {"gateway", "slos", "costLabels", "phase"}  # no kubeconfig, no secret
    path = Path(os.environ.get("TMPDIR", "/tmp")) / "swarmstack-loadtest-outputs.json"
    path.write_text(json.dumps(mounted))
    swapped = [str(path) if a == OUTPUTS_FILE else a for a in args]
    return config_from_args(parser().parse_args(swapped))


def test_workers_connect_to_the_masters_service_with_the_same_locustfile_options(
    outputs: dict[str, Any],
) -> None:
    manifests = render_manifests(outputs, spec())
    worker = job(manifests, "worker")
    assert container(worker)["args"] == [
        "--worker", "--master-host", "loadtest-master", "--master-port", "5557",
        "--", "--model-name", "qwen25-7b", "--api-key-file", f"{KEY_DIR}/{API_KEY_KEY}",
        "--prompt-tokens", "512",
    ]  # fmt: skip
    assert worker["spec"]["parallelism"] == worker["spec"]["completions"] == 3
    (service,) = by_kind(manifests, "Service")
    assert service["metadata"]["name"] == "loadtest-master"
    assert service["spec"]["type"] == "ClusterIP"  # resolves before the master is ready
    assert service["spec"]["selector"]["swarmstack.io/loadtest-role"] == "master"
    master_labels = job(manifests, "master")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= master_labels.items()


def test_both_jobs_are_bounded_in_time_and_cleaned_up(outputs: dict[str, Any]) -> None:
    manifests = render_manifests(outputs, spec(run_time_s=300, stop_timeout_s=30, ttl_s=600))
    for role in ("master", "worker"):
        s = job(manifests, role)["spec"]
        # -t + --stop-timeout + the runner's own margin (60 s + the wait for workers, 180 s)
        # + 120 s to schedule, pull and start.
        assert s["activeDeadlineSeconds"] == 300 + 30 + 60 + 180 + 120
        assert s["ttlSecondsAfterFinished"] == 600
        assert s["backoffLimit"] == 0
        assert s["template"]["spec"]["restartPolicy"] == "Never"
    args = container(job(manifests, "master"))["args"]
    assert args[args.index("-t") + 1] == "300"


def test_the_api_key_comes_from_the_secret_as_a_file_never_in_clear(
    outputs: dict[str, Any],
) -> None:
    manifests = render_manifests(outputs, spec())
    text = yaml.safe_dump_all(manifests)
    assert not by_kind(manifests, "Secret")
    pod = job(manifests, "master")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "api-key"]
    assert volume["secret"]["secretName"] == KEY_SECRET
    assert "sk-" not in text and "REDACTED" not in text


def test_network_and_mesh_policies_open_only_the_gateway_and_the_masters_port(
    outputs: dict[str, Any],
) -> None:
    manifests = render_manifests(outputs, spec())
    policies = {m["metadata"]["name"]: m["spec"] for m in by_kind(manifests, "NetworkPolicy")}
    egress = policies["allow-loadtest-to-gateway"]["egress"]
    assert [rule["to"][0]["podSelector"]["matchLabels"] for rule in egress] == [
        outputs["gateway"]["podSelector"],
        {
            "app.kubernetes.io/name": "loadtest",
            "app.kubernetes.io/component": "loadtest",
            "swarmstack.io/loadtest-role": "master",
        },
    ]
    assert [rule["ports"] for rule in egress] == [
        [{"protocol": "TCP", "port": 4000}],
        [{"protocol": "TCP", "port": 5557}],
    ]
    ingress = policies["allow-loadtest-workers-to-master"]["ingress"]
    assert ingress[0]["from"][0]["podSelector"]["matchLabels"]["swarmstack.io/loadtest-role"] == (
        "worker"
    )
    (authz,) = by_kind(manifests, "AuthorizationPolicy")
    rule = authz["spec"]["rules"][0]
    assert rule["from"][0]["source"]["principals"] == [
        "cluster.local/ns/swarmstack-agents/sa/loadtest"
    ]
    assert rule["to"][0]["operation"]["ports"] == ["4000"]


def test_the_manifests_pass_the_plans_schema_checks_and_the_packs_resource_rules(
    outputs: dict[str, Any],
) -> None:
    verdict = check_manifests(render_manifests(outputs, spec()), phase="pilot", policy_config={})
    assert [f for f in verdict.findings if f.severity == "error"] == []
    assert verdict.blocking == []
    # Production: every rule mandatory; only the digest pin is left to the image's push.
    strict = check_manifests(
        render_manifests(outputs, spec()), phase="production", policy_config={}
    )
    assert {v.rule for v in strict.violations} == {"image-digest-pinned"}
    digest = f"{IMAGE}@sha256:{'a' * 64}"
    pinned = check_manifests(
        render_manifests(outputs, spec(image=digest)), phase="production", policy_config={}
    )
    assert pinned.blocking == []


def test_a_broken_manifest_fails_the_schema_check_and_the_pod_rules(
    outputs: dict[str, Any],
) -> None:
    manifests = render_manifests(outputs, spec())
    master = container(job(manifests, "master"))
    master["securityContext"] = {"runAsNonRoot": False, "runAsUser": 0}
    master["resource"] = master.pop("resources")  # a typo the schema refuses
    (authz,) = by_kind(manifests, "AuthorizationPolicy")
    authz["spec"]["action"] = "PERMIT"
    verdict = check_manifests(manifests, phase="pilot", policy_config={})
    text = "\n".join(verdict.blocking)
    assert "AuthorizationPolicy swarmstack-agents/loadtest-to-gateway" in text
    assert "/spec/action: must be one of" in text  # Istio's CRD schema
    assert "Job swarmstack-agents/loadtest-master" in text
    assert "resource" in text and "schema" in text
    rules = {v.rule for v in verdict.violations if v.level == "mandatory"}
    assert {
        "container-resources",
        "run-as-non-root",
        "read-only-root-filesystem",
        "drop-all-capabilities",
        "no-privilege-escalation",
    } <= rules


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image": "loadtest"}, "pinned tag"),
        ({"image": "registry.example.com/loadtest:latest"}, "`latest` is not a version"),
        ({"workers": 0}, "--workers 0"),
        ({"name": "Load_Test"}, "--name 'Load_Test'"),
    ],
)
def test_a_run_that_cannot_be_rendered_is_refused(
    outputs: dict[str, Any], changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(RunSpecError, match=message):
        render_manifests(outputs, spec(**changes))


def test_the_cli_prints_checked_manifests_and_refuses_an_unknown_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = [
        "loadtest-manifests", "pilot", "--outputs", str(OUTPUTS), "--root", str(ROOT),
        "--api-key-secret", KEY_SECRET, "-t", "120",
    ]  # fmt: skip
    out = tmp_path / "loadtest.yaml"
    assert swarmstack([*common, "--image", IMAGE, "--output", str(out)]) == 0
    kinds = [d["kind"] for d in yaml.safe_load_all(out.read_text())]
    assert kinds == [
        "ServiceAccount", "ConfigMap", "NetworkPolicy", "NetworkPolicy",
        "AuthorizationPolicy", "Service", "Job", "Job",
    ]  # fmt: skip
    capsys.readouterr()
    assert swarmstack([*common, "--image", "registry.example.com/someone/locust:2.47.0"]) == 1
    err = capsys.readouterr().err
    assert "image-registry-allowed" in err and "registry.example.com" in err


# --------------------------------------------------------------------------- reports


def test_the_reports_the_master_prints_are_read_back_from_its_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = {"slo": {"passed": False}, "requests": 12}
    (tmp_path / "summary.json").write_text(json.dumps(summary) + "\n")
    (tmp_path / "locust_stats.csv").write_text("Type,Name\nSTREAM,TTFT\n")
    print_reports(tmp_path)
    log = "locust starting\n" + capsys.readouterr().out + "bye\n"
    assert BEGIN.format(name="summary.json") in log and END.format(name="summary.json") in log
    reports = reports_from_log(log)
    assert json.loads(reports["summary.json"]) == summary
    assert reports["locust_stats.csv"] == "Type,Name\nSTREAM,TTFT\n"
    assert "locust_failures.csv" not in reports


@pytest.mark.parametrize(("passed", "code"), [(True, 0), (False, 1)])
def test_run_in_cluster_applies_waits_fetches_and_deletes(
    outputs: dict[str, Any], tmp_path: Path, passed: bool, code: int
) -> None:
    """Against a stand-in kubectl that records its calls and plays a finished master whose
    summary.json is the runner's own (`write_summary`: the verdict under `slo`)."""
    calls = tmp_path / "calls.txt"
    summary = json.dumps(_summary(passed))
    log = "\n".join([
        "SLO verdict (stack outputs, model qwen25-7b (slos.qwen25-7b)): PASS",
        BEGIN.format(name="summary.json"), summary, END.format(name="summary.json"),
    ])  # fmt: skip
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        'case "$1" in\n'
        f"  apply|delete) cat > {tmp_path}/$1.yaml ;;\n"
        "  get) printf '1/' ;;\n"
        f"  logs) cat <<'EOF'\n{log}\nEOF\n ;;\n"
        "esac\n"
    )
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IEXEC)
    s = spec()
    manifests = render_manifests(outputs, s)
    out = tmp_path / "reports"
    got = run_in_cluster(manifests, s, "swarmstack-agents", out, kubectl=str(kubectl), poll_s=0)
    assert got == code
    assert json.loads((out / "summary.json").read_text()) == _summary(passed)
    lines = calls.read_text().splitlines()
    assert lines[0] == "apply -f -"
    assert lines[1].startswith("get job/loadtest-master -n swarmstack-agents")
    assert lines[2] == "logs job/loadtest-master -n swarmstack-agents -c locust"
    assert lines[3] == "delete --ignore-not-found -f -"
    applied = list(yaml.safe_load_all((tmp_path / "apply.yaml").read_text()))
    assert applied == manifests


def _summary(passed: bool) -> dict[str, Any]:
    """A summary.json as the runner writes it, from one sample judged against the pilot's
    qwen25-7b SLO (500 ms TTFT): 0.1 s passes, 0.9 s fails."""
    ttft = 0.1 if passed else 0.9
    sample = RequestSample(
        kind="model",
        started_at=0.0,
        e2e_s=ttft + 0.1,
        ttft_s=ttft,
        chunk_offsets_s=(ttft, ttft + 0.01, ttft + 0.02),
        output_tokens=3,
        ok=True,
        error=None,
    )
    slo = target_from_outputs(read_outputs(OUTPUTS)).slo
    summary = summarize([sample])
    path = Path(tempfile.mkdtemp()) / "summary.json"
    write_summary(summary, evaluate(summary, [sample], slo), path)
    doc: dict[str, Any] = json.loads(path.read_text())
    assert doc["slo"]["passed"] is passed
    return doc


def test_the_runner_imports_no_stack_code_as_in_the_image() -> None:
    """The image carries loadtests/ and the worker's SSE parser only (images/loadtest)."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('stacks', 'components', 'policies', 'pulumi'):\n"
        "            raise ImportError(f'{name} is not in the load-test image')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import loadtests.run, loadtests.stack_outputs, loadtests.prompts, agent_worker.sse\n"
        f"from loadtests.run import config_from_args, parser\n"
        f"c = config_from_args(parser().parse_args(['--outputs', {str(OUTPUTS)!r}]))\n"
        "print(c.host)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(":4000")


def test_incluster_main_names_a_bad_outputs_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "outputs.json"
    bad.write_text("{not json")
    code = incluster.main(
        ["run", "--outputs", str(bad), "--image", IMAGE, "--api-key-secret", KEY_SECRET]
    )
    assert code == 2
    assert f"{bad}: not JSON" in capsys.readouterr().err


def test_the_image_runs_the_runner_with_the_pins_the_tests_run() -> None:
    dockerfile = ROOT / "images" / "loadtest" / "Dockerfile"
    steps = [line for line in dockerfile.read_text().splitlines() if line.startswith("ENTRYPOINT")]
    assert steps == ['ENTRYPOINT ["python", "-m", "loadtests.run"]']
    pins = dict(
        line.split("==")
        for line in (ROOT / "images" / "loadtest" / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    serve = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["serve"]
    for requirement in serve:
        name, _, version = requirement.partition("==")
        if name in ("locust", "matplotlib"):
            assert pins[name] == version, (name, pins.get(name), version)
