"""The offline plan end to end: the program Pulumi.yaml names, on the mock runtime."""

from __future__ import annotations

import base64
import binascii
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

# kubernetes_validate ships no stubs or py.typed marker.
import kubernetes_validate  # pyright: ignore[reportMissingTypeStubs]
import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml
from pulumi.runtime import rpc

import components.serving.model_serving as serving
from components.compute.instances import PRICES_CHECKED_ON
from components.serving.model_serving import HF_TOKEN_KEY
from stacks.cli import EXIT_CHECKS, EXIT_CONFIG, main
from stacks.plan.checks import (
    check_scheduling,
    check_schemas,
    check_selectors,
    custom_resource_model,
)
from stacks.plan.mesh_checks import is_istio_object, istio_problems
from stacks.plan.model import Manifest, NodePool
from stacks.plan.monitoring_checks import is_monitoring_object, prometheus_operator_problems
from stacks.plan.recorder import REDACTED, Registration, decode_inputs, run
from stacks.plan.runner import PLACEHOLDER_PREFIX
from stacks.plan.scaling_checks import is_keda_object, keda_problems

ROOT = Path(__file__).resolve().parent.parent
rpc_sig = rpc._special_sig_key  # pyright: ignore[reportPrivateUsage]
rpc_secret = rpc._special_secret_sig  # pyright: ignore[reportPrivateUsage]
rpc_output = rpc._special_output_value_sig  # pyright: ignore[reportPrivateUsage]


def make_root(tmp_path: Path, mutate: Any = None, stack: str = "pilot") -> Path:
    """A project root with the real Pulumi.yaml and program and a (changed) stack file."""
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copy(ROOT / "stacks" / "__main__.py", root / "stacks" / "__main__.py")
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.pilot.yaml").read_text())
    if mutate is not None:
        mutate(doc["config"])
    (root / "stacks" / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(doc))
    return root


@pytest.fixture(scope="module")
def pilot_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plan")
    assert main(["plan", "pilot", "--root", str(ROOT), "--out", str(out)]) == 0
    return out / "pilot"


def test_plan_writes_every_artefact(pilot_out: Path) -> None:
    for name in ("aws-resources.yaml", "tree.json", "summary.txt", "summary.json", "checks.json"):
        assert (pilot_out / name).is_file(), name
    manifests = sorted((pilot_out / "manifests").glob("*.yaml"))
    kinds = [yaml.safe_load(p.read_text())["kind"] for p in manifests]
    assert kinds[:4] == ["Namespace"] * 4  # namespaces first: everything else lands in them
    # two model servers, two agent types, the collector, the gateway
    assert kinds.count("Deployment") == 6
    # 3 namespaces x (default deny + DNS) + the agents namespace into the model servers +
    # Prometheus to the model servers + their HTTPS egress; per agent type the gateway (2),
    # clients of the http one (1), Prometheus to the agents (1); the data plane's: kafka 6
    # (clients, 2 internal, 2 https, agents egress), redis 2, qdrant 5; traces 3 (models and
    # agents egress, the collector's own); the research team 2 (default deny, DNS); KEDA's
    # operator to the brokers 1; the mesh's: models and agents to istiod; the gateway's 4
    # (its clients, its egress to models and database, the database's ingress, the key Job).
    assert kinds.count("NetworkPolicy") == 9 + 4 + 6 + 2 + 5 + 3 + 2 + 1 + 2 + 4
    assert "StorageClass" in kinds
    helm = yaml.safe_load((pilot_out / "helm" / "gpu-operator.yaml").read_text())
    assert helm["chart"] == "gpu-operator" and helm["version"] == "v26.7.0"
    assert helm["values"]["driver"]["enabled"] is False


def test_numbers_are_integers_in_manifests(pilot_out: Path) -> None:
    text = "\n".join(p.read_text() for p in (pilot_out / "manifests").glob("*deployment*"))
    assert "containerPort: 8000\n" in text
    assert "8000.0" not in text


def test_summary_counts_gpus_slices_and_cost(pilot_out: Path) -> None:
    summary = json.loads((pilot_out / "summary.json").read_text())
    assert summary["min"]["gpus"] == 1 and summary["max"]["gpus"] == 2
    assert summary["min"]["accelerators"] == {"nvidia.com/mig-3g.40gb": 2}
    assert summary["max"]["accelerators"] == {"nvidia.com/mig-3g.40gb": 4}
    # p5.4xlarge x1 + m7i.xlarge x2 + EKS + one NAT gateway + 6 interface endpoints in 3 AZs
    fixed = 0.10 + 0.045 + 6 * 3 * 0.01
    assert summary["fixedUsdPerHour"] == round(fixed, 3)
    assert summary["min"]["usdPerHour"] == round(6.88 + 2 * 0.2016 + fixed, 2)
    assert summary["max"]["usdPerHour"] == round(2 * 6.88 + 3 * 0.2016 + fixed, 2)
    assert summary["modelReplicas"] == {
        "llama31-8b": {"min": 1, "max": 2},
        "qwen25-7b": {"min": 1, "max": 2},
    }
    assert summary["pricesCheckedOn"] == PRICES_CHECKED_ON
    text = (pilot_out / "summary.txt").read_text()
    assert "offline plan, nothing was deployed" in text
    assert "mig-3g.40gb" in text
    assert f"on-demand us-east-1 list prices of {PRICES_CHECKED_ON}" in text


def test_tree_records_parents_and_dependencies(pilot_out: Path) -> None:
    tree = json.loads((pilot_out / "tree.json").read_text())
    by_urn = {r["urn"]: r for r in tree}
    deployments = [r for r in tree if r["type"] == "kubernetes:apps/v1:Deployment"]
    parents = sorted(by_urn[d["parent"]]["type"] for d in deployments)
    assert parents == [
        *["swarmstack:agents:Workload"] * 2,
        "swarmstack:gateway:ModelGateway",
        "swarmstack:observe:TracingCollector",
        *["swarmstack:serving:Model"] * 2,
    ]
    for d in deployments:
        assert d["provider"], "Kubernetes resources are declared with the cluster's provider"
    node_groups = [r for r in tree if r["type"] == "aws:eks/nodeGroup:NodeGroup"]
    assert len(node_groups) == 2
    assert all(r["dependencies"] for r in node_groups)


def test_no_secret_value_anywhere_under_out(pilot_out: Path) -> None:
    texts = [p.read_text() for p in pilot_out.rglob("*") if p.is_file()]
    assert not any(PLACEHOLDER_PREFIX in t for t in texts)
    outputs = json.loads((pilot_out / "outputs.json").read_text())
    assert outputs["kubeconfig"] == REDACTED


def test_the_token_secret_keeps_its_key_and_never_its_value(pilot_out: Path) -> None:
    (path,) = (pilot_out / "manifests").glob("*-secret-huggingface-token.yaml")
    secret = yaml.safe_load(path.read_text())
    assert secret["stringData"] == {HF_TOKEN_KEY: REDACTED}
    assert "data" not in secret
    assert PLACEHOLDER_PREFIX not in path.read_text()


def test_every_written_manifest_passes_strict_validation(pilot_out: Path) -> None:
    """What a reviewer would `kubectl apply --dry-run=server`: the files, not the plan's model.

    Core kinds against the Kubernetes schemas; custom resources against their CRD models
    (stacks/plan/checks.py) or, for monitoring.coreos.com, the prometheus-operator CRD
    schemas' own validators; a manifest none of them can check fails the test."""
    stack = yaml.safe_load((ROOT / "stacks" / "Pulumi.pilot.yaml").read_text())["config"]
    version = stack["swarmstack:cluster"]["kubernetesVersion"]
    paths = sorted((pilot_out / "manifests").glob("*.yaml"))
    assert len(paths) >= 20 and any("-secret-" in p.name for p in paths)
    core: list[str] = []
    by_model: dict[str, list[str]] = {}
    docs = {path.name: yaml.safe_load(path.read_text()) for path in paths}
    monitoring = {n: d for n, d in docs.items() if is_monitoring_object(d)}
    found = prometheus_operator_problems(list(monitoring.values()))
    assert dict(zip(monitoring, found, strict=True)) == {n: [] for n in monitoring}
    by_model["prometheus-operator CRD schemas"] = [d["kind"] for d in monitoring.values()]
    keda = {n: d for n, d in docs.items() if is_keda_object(d)}
    found = keda_problems(list(keda.values()))
    assert dict(zip(keda, found, strict=True)) == {n: [] for n in keda}
    by_model["KEDA CRD schemas"] = [d["kind"] for d in keda.values()]
    mesh = {n: d for n, d in docs.items() if is_istio_object(d)}
    found = istio_problems(list(mesh.values()))
    assert dict(zip(mesh, found, strict=True)) == {n: [] for n in mesh}
    by_model["Istio CRD schemas"] = [d["kind"] for d in mesh.values()]
    for path in paths:
        doc = docs[path.name]
        if path.name in monitoring or path.name in keda or path.name in mesh:
            continue
        model = custom_resource_model(doc)
        if model is not None:
            problems = model.problems(doc)
            assert not problems, f"{path.name}: {problems} ({model.source})"
            by_model.setdefault(model.source, []).append(doc["kind"])
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name}: {exc.json_path}: {exc.message} (Kubernetes {version})")
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(
                f"{path.name}: {doc['apiVersion']}/{doc['kind']} has neither a schema nor a model"
            )
        core.append(doc["kind"])
        if doc["kind"] == "Secret":  # the API server decodes data as base64
            for key, value in (doc.get("data") or {}).items():
                try:
                    base64.b64decode(value, validate=True)
                except binascii.Error:
                    pytest.fail(f"{path.name}: data.{key} is not base64")
    assert len(core) + sum(map(len, by_model.values())) == len(paths)
    strimzi = next(v for k, v in by_model.items() if "strimzi" in k)
    cert_manager = next(v for k, v in by_model.items() if "cert-manager" in k)
    assert sorted(set(strimzi)) == ["Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"]
    assert sorted(set(cert_manager)) == ["Certificate", "ClusterIssuer"]
    # One ScaledObject per model and agent type, the events agent's TriggerAuthentication.
    assert sorted(by_model["KEDA CRD schemas"]) == ["ScaledObject"] * 4 + ["TriggerAuthentication"]
    assert sorted(by_model["prometheus-operator CRD schemas"]) == [
        *["PodMonitor"] * 7,
        *["PrometheusRule"] * 6,
    ]
    # Per model a route and a pool; the gateway's route, pool, callers, database callers,
    # Sidecar and egress entry; one Sidecar per agent type.
    assert sorted(by_model["Istio CRD schemas"]) == [
        *["AuthorizationPolicy"] * 3,
        *["DestinationRule"] * 3,
        *["PeerAuthentication"] * 2,
        *["ServiceEntry"] * 2,
        *["Sidecar"] * 3,
        *["VirtualService"] * 3,
    ]
    # PrometheusRules pass the stricter typed model too (it refuses unknown fields).
    for doc in monitoring.values():
        model = custom_resource_model(doc)
        if doc["kind"] == "PrometheusRule":
            assert model is not None and model.problems(doc) == []
        else:
            assert model is None
    print(
        f"{len(core)} core manifests validated; CRs checked by model: "
        + ", ".join(f"{len(v)} by {k}" for k, v in sorted(by_model.items()))
    )


def test_secret_maps_are_redacted_per_key_through_the_sdk() -> None:
    """pulumi-kubernetes sends `data` and `stringData` as one secret each: keys come from inside."""
    sentinel = "c2VudGluZWwtdmFsdWU="  # what must never reach the plan

    def program() -> None:
        k8s.core.v1.Secret(
            "creds",
            metadata={"name": "creds", "namespace": "apps"},
            data={"password": pulumi.Output.secret(sentinel), "user": sentinel},
            string_data={"plain": sentinel},
        )

    capture = run(program)
    inputs = capture.named("creds").inputs
    assert inputs["data"] == {"password": REDACTED, "user": REDACTED}
    assert inputs["stringData"] == {"plain": REDACTED}
    assert sentinel not in json.dumps(inputs)
    assert capture.named("creds").has_secrets
    base64.b64decode(REDACTED, validate=True)  # a valid `data` value


def test_encrypted_config_value_is_redacted(tmp_path: Path) -> None:
    def add_secret(config: dict[str, Any]) -> None:
        config["swarmstack:huggingFaceToken"] = {"secure": "AAABAHq1d5Zq4fQ9c2VjcmV0LXRva2Vu"}

    root = make_root(tmp_path, add_secret)
    out = tmp_path / "out"
    assert main(["plan", "pilot", "--root", str(root), "--out", str(out)]) == 0
    texts = "".join(p.read_text() for p in (out / "pilot").rglob("*") if p.is_file())
    assert "AAABAHq1d5Zq4fQ9c2VjcmV0LXRva2Vu" not in texts
    assert PLACEHOLDER_PREFIX not in texts


def test_clear_text_secret_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_root(tmp_path, lambda c: c.update({"swarmstack:huggingFaceToken": "hf_plain"}))
    assert main(["plan", "pilot", "--root", str(root), "--out", str(tmp_path / "o")]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "huggingFaceToken: is stored in clear" in err
    assert "hf_plain" not in err


BAD_CONFIGS = [
    (
        "wrong MIG profile",
        lambda c: c["swarmstack:gpuPools"][0]["mig"].update(profiles=["3g.40gb", "3g.45gb"]),
        "gpuPools[0].mig.profiles[1]: '3g.45gb' is not a MIG profile of H100-80GB",
    ),
    (
        "layout over budget",
        lambda c: c["swarmstack:gpuPools"][0]["mig"].update(
            profiles=["4g.40gb", "3g.40gb", "1g.10gb"]
        ),
        "needs 8 compute and 9 memory slices",
    ),
    (
        "MIG on a GPU without MIG",
        lambda c: c["swarmstack:gpuPools"][0].update(instanceType="g5.12xlarge"),
        "gpuPools[0].mig: g5.12xlarge has 4 x A10G-24GB, which does not support MIG",
    ),
    (
        "oversize model",
        lambda c: c["swarmstack:models"][0]["architecture"].update(parametersB=70),
        "models[0].architecture: Qwen/Qwen2.5-7B-Instruct does not fit a MIG 3g.40gb slice",
    ),
    (
        "tensor parallel on MIG",
        lambda c: c["swarmstack:models"][1].update(tensorParallelSize=4),
        "models[1].tensorParallelSize: 4 is not possible on MIG pool 'h100-mig'",
    ),
    (
        "unknown key",
        lambda c: c["swarmstack:cluster"].update(nodeCount=3),
        "cluster.nodeCount: unknown key (valid keys here: addonVersions"
        if False
        else "cluster.nodeCount: unknown key",
    ),
    (
        "wrong type",
        lambda c: c["swarmstack:cluster"].update(availabilityZones="several"),
        "cluster.availabilityZones: 'several' is not valid",
    ),
]


@pytest.mark.parametrize(
    "mutate,expected", [(m, e) for _, m, e in BAD_CONFIGS], ids=[n for n, _, _ in BAD_CONFIGS]
)
def test_bad_config_stops_the_plan_and_keeps_previous_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate: Any, expected: str
) -> None:
    out = tmp_path / "out"
    previous = out / "pilot"
    previous.mkdir(parents=True)
    (previous / "summary.txt").write_text("previous plan\n")
    root = make_root(tmp_path, mutate)
    assert main(["plan", "pilot", "--root", str(root), "--out", str(out)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert expected in err
    assert "stacks/Pulumi.pilot.yaml" in err
    assert (previous / "summary.txt").read_text() == "previous plan\n"
    assert sorted(p.name for p in out.iterdir()) == ["pilot"]


def test_unknown_stack_lists_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "nosuch", "--root", str(ROOT), "--out", "/nonexistent"]) == EXIT_CONFIG
    assert "no stack 'nosuch'" in capsys.readouterr().err


def test_a_successful_plan_replaces_the_previous_one(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "pilot").mkdir(parents=True)
    (out / "pilot" / "stale.yaml").write_text("old\n")
    assert main(["plan", "pilot", "--root", str(ROOT), "--out", str(out)]) == 0
    assert not (out / "pilot" / "stale.yaml").exists()
    assert sorted(p.name for p in out.iterdir()) == ["pilot"]


# --------------------------------------------------------------------------- checks


def _manifest(body: dict[str, Any], name: str = "r") -> Manifest:
    return Manifest(Registration("kubernetes:x", name, f"urn:{name}", "", True, "", [], body))


def test_schema_check_catches_snake_case_keys() -> None:
    bad = _manifest(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "s", "namespace": "n"},
            "spec": {"ports": [{"port": 80, "target_port": 8080}]},
        }
    )
    findings = check_schemas([bad], "1.33")
    assert len(findings) == 1
    assert findings[0].severity == "error"
    assert "target_port" in findings[0].message
    assert findings[0].resource == "Service n/s (r)"


def test_schema_check_refuses_secret_data_that_is_not_base64() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "n"}}
    bad = _manifest({**secret, "data": {"token": "[secret]", "ok": REDACTED}})
    findings = check_schemas([bad], "1.33")
    assert [str(f) for f in findings] == [
        "[schema] Secret n/s (r): $.data.token: not base64, which the API server refuses "
        "(Kubernetes 1.33)"
    ]
    assert check_schemas([_manifest({**secret, "stringData": {"token": "[x]"}})], "1.33") == []


def test_secret_maps_on_the_wire_keep_keys_in_every_wrapping() -> None:
    sentinel = "c2VudGluZWwtdmFsdWU="
    secret = {rpc_sig: rpc_secret, "value": {"a": sentinel}}
    output = {rpc_sig: rpc_output, "secret": True, "value": {"b": sentinel}}
    inputs, has_secret = decode_inputs(
        "kubernetes:core/v1:Secret",
        {"kind": "Secret", "data": secret, "stringData": {"c": sentinel, "d": output}},
    )
    assert inputs["data"] == {"a": REDACTED}
    assert inputs["stringData"] == {"c": REDACTED, "d": REDACTED}  # plain values too
    assert has_secret and sentinel not in json.dumps(inputs)
    unknown = {rpc_sig: rpc_output, "secret": True}  # no value yet: no keys to show
    assert decode_inputs("kubernetes:core/v1:Secret", {"data": unknown})[0]["data"] == REDACTED
    config_map, _ = decode_inputs("kubernetes:core/v1:ConfigMap", {"data": {"k": "v"}})
    assert config_map["data"] == {"k": "v"}


def _deployment(labels: dict[str, str], selector: dict[str, str], pod: dict[str, Any]) -> Manifest:
    return _manifest(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "n"},
            "spec": {
                "selector": {"matchLabels": selector},
                "template": {"metadata": {"labels": labels}, "spec": pod},
            },
        },
        "d",
    )


def test_selector_check() -> None:
    pod = {"containers": [{"name": "c", "image": "i:1"}]}
    ok = _deployment({"app": "a"}, {"app": "a"}, pod)
    bad = _deployment({"app": "a"}, {"app": "b"}, pod)
    service = _manifest(
        {
            "kind": "Service",
            "metadata": {"name": "s", "namespace": "n"},
            "spec": {"selector": {"app": "z"}},
        }
    )
    assert check_selectors([ok]) == []
    messages = [str(f) for f in check_selectors([bad, service])]
    assert any("does not match its pod template labels" in m for m in messages)
    assert any("Service n/s" in m and "matches no pod template" in m for m in messages)
    # A Job's selector is written by Kubernetes: an empty one is right; a Deployment's is not.
    job = _manifest(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "j", "namespace": "n"},
            "spec": {"template": {"metadata": {"labels": {"app": "j"}}, "spec": pod}},
        },
        "j",
    )
    assert check_selectors([job]) == []
    unselected = _deployment({"app": "a"}, {}, pod)
    assert [f.message for f in check_selectors([unselected])] == [
        "spec.selector.matchLabels is empty"
    ]


def test_scheduling_and_accelerator_checks() -> None:
    pool = NodePool(
        "gpu",
        "p5.4xlarge",
        1,
        2,
        {"swarmstack.io/pool": "gpu"},
        [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
        Counter({"nvidia.com/mig-3g.40gb": 2}),
    )
    system = NodePool("system", "m7i.xlarge", 2, 3, {"swarmstack.io/pool": "system"}, [], Counter())
    toleration = {
        "key": "nvidia.com/gpu",
        "operator": "Equal",
        "value": "present",
        "effect": "NoSchedule",
    }

    def pod(selector: dict[str, str], tolerations: list[dict[str, str]], resource: str) -> Manifest:
        return _deployment(
            {"a": "b"},
            {"a": "b"},
            {
                "nodeSelector": selector,
                "tolerations": tolerations,
                "containers": [{"name": "c", "resources": {"limits": {resource: "1"}}}],
            },
        )

    good = pod({"swarmstack.io/pool": "gpu"}, [toleration], "nvidia.com/mig-3g.40gb")
    assert check_scheduling([good], [pool, system]) == []
    untolerated = pod({"swarmstack.io/pool": "gpu"}, [], "nvidia.com/mig-3g.40gb")
    assert "no node pool accepts it" in str(check_scheduling([untolerated], [pool, system])[0])
    wrong_slice = pod({"swarmstack.io/pool": "gpu"}, [toleration], "nvidia.com/mig-1g.10gb")
    finding = check_scheduling([wrong_slice], [pool, system])[0]
    assert finding.check == "accelerators" and "nvidia.com/mig-1g.10gb" in finding.message
    stray = pod({"swarmstack.io/pool": "system"}, [{**toleration, "key": "other"}], "cpu")
    assert "matches no taint of any node pool" in str(check_scheduling([stray], [pool, system])[0])


def test_scheduling_check_reads_required_node_affinity() -> None:
    """A pod placed by node affinity (a model that may overflow onto another pool) is
    matched against the pools its required terms admit, not every pool it tolerates."""
    taint = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    a100 = NodePool(
        "a100",
        "p4de.24xlarge",
        1,
        1,
        {"swarmstack.io/pool": "a100"},
        taint,
        Counter({"nvidia.com/mig-1g.10gb": 16}),
    )
    h100 = NodePool(
        "h100",
        "p5.48xlarge",
        1,
        1,
        {"swarmstack.io/pool": "h100"},
        taint,
        Counter({"nvidia.com/gpu": 8}),
    )
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

    def pod(pools: list[str]) -> Manifest:
        term = {
            "matchExpressions": [{"key": "swarmstack.io/pool", "operator": "In", "values": pools}]
        }
        return _deployment(
            {"a": "b"},
            {"a": "b"},
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [term]
                        }
                    }
                },
                "tolerations": [toleration],
                "containers": [
                    {"name": "c", "resources": {"limits": {"nvidia.com/mig-1g.10gb": "1"}}}
                ],
            },
        )

    assert check_scheduling([pod(["a100", "h100"])], [a100, h100]) == []
    # Only the H100 pool admitted: it offers no 1g.10gb slice.
    (finding,) = check_scheduling([pod(["h100"])], [a100, h100])
    assert finding.check == "accelerators" and "'h100'" in finding.message
    (finding,) = check_scheduling([pod(["l4"])], [a100, h100])
    assert "no node pool accepts it" in finding.message


def test_a_check_failure_fails_the_plan_and_keeps_previous_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = serving.pod_template

    def off_pool(*args: Any, **kwargs: Any) -> dict[str, Any]:
        template = original(*args, **kwargs)
        template["spec"]["nodeSelector"] = {"swarmstack.io/pool": "missing"}
        return template

    monkeypatch.setattr(serving, "pod_template", off_pool)
    out = tmp_path / "out"
    (out / "pilot").mkdir(parents=True)
    (out / "pilot" / "summary.txt").write_text("previous\n")
    assert main(["plan", "pilot", "--root", str(ROOT), "--out", str(out)]) == EXIT_CHECKS
    err = capsys.readouterr().err
    assert "[scheduling] Deployment swarmstack-models/qwen25-7b" in err
    assert (out / "pilot" / "summary.txt").read_text() == "previous\n"
