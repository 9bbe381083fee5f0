"""vLLM serving under Pulumi mocks: what the Deployment, Service and PDB declare."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.compute.irsa import Irsa
from components.serving.model_serving import (
    ModelServing,
    ModelServingArgs,
    Placement,
    pod_template,
    server_args,
)
from components.serving.vllm import SERVER_MODULE
from stacks.config import StackConfig, accelerator_resource, load, serving_placement
from stacks.plan.recorder import Capture, run


def _config(raw: dict[str, Any]) -> StackConfig:
    return load(raw, "us-east-1", "test")


def _serve(config: StackConfig, index: int, irsa: bool = True) -> Capture:
    model = config.models[index]
    resource, count = accelerator_resource(model, config)

    def program() -> None:
        ModelServing(
            f"model-{model.name}",
            ModelServingArgs(
                spec=model,
                namespace="swarmstack-models",
                namespace_name="swarmstack-models",
                image=config.images.vllm,
                placement=Placement(serving_placement(model, config).pool, resource, count),
                cost_labels=config.cost_labels,
                irsa=Irsa(
                    "arn:aws:iam::111122223333:oidc-provider/oidc.example/id/X", "oidc.example/id/X"
                )
                if irsa
                else None,
                hf_token_secret="huggingface-token"
                if model.weights.source == "huggingface"
                else None,
            ),
        )

    return run(program)


def _container(capture: Capture) -> dict[str, Any]:
    deployment = capture.of_type("kubernetes:apps/v1:Deployment")[0]
    return deployment.inputs["spec"]["template"]["spec"]["containers"][0]


def test_s3_model_declares_deployment_service_pdb_and_irsa_role(pilot_raw: dict[str, Any]) -> None:
    capture = _serve(_config(pilot_raw), 0)
    types = sorted(r.type for r in capture.registrations)
    assert types == [
        "aws:iam/role:Role",
        "aws:iam/rolePolicy:RolePolicy",
        "kubernetes:apps/v1:Deployment",
        "kubernetes:core/v1:Service",
        "kubernetes:core/v1:ServiceAccount",
        "kubernetes:policy/v1:PodDisruptionBudget",
        "swarmstack:serving:Model",
    ]
    component = capture.of_type("swarmstack:serving:Model")[0]
    assert all(r.parent == component.urn for r in capture.registrations if r is not component)

    role = capture.of_type("aws:iam/role:Role")[0]
    trust = json.loads(role.inputs["assumeRolePolicy"])
    condition = trust["Statement"][0]["Condition"]["StringEquals"]
    assert condition["oidc.example/id/X:sub"] == "system:serviceaccount:swarmstack-models:qwen25-7b"
    policy = json.loads(capture.of_type("aws:iam/rolePolicy:RolePolicy")[0].inputs["policy"])
    assert (
        policy["Statement"][0]["Resource"]
        == "arn:aws:s3:::swarm-pilot-models/qwen2.5-7b-instruct/*"
    )
    account = capture.of_type("kubernetes:core/v1:ServiceAccount")[0]
    assert account.inputs["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith(
        "arn:"
    )

    args = _container(capture)["args"]
    assert args[args.index("--model") + 1] == "s3://swarm-pilot-models/qwen2.5-7b-instruct"
    assert args[args.index("--load-format") + 1] == "runai_streamer"
    assert "--enable-prefix-caching" in args
    assert args[args.index("--tool-call-parser") - 1] == "--enable-auto-tool-choice"
    assert args[args.index("--tool-call-parser") + 1] == "hermes"
    assert args[args.index("--tool-strict-level") + 1] == "parameter"


def test_mig_slice_is_requested_exactly_once_with_limits_equal_requests(
    pilot_raw: dict[str, Any],
) -> None:
    resources = _container(_serve(_config(pilot_raw), 0))["resources"]
    assert resources["requests"]["nvidia.com/mig-3g.40gb"] == "1"
    assert resources["limits"]["nvidia.com/mig-3g.40gb"] == "1"
    assert not any(k == "nvidia.com/gpu" for k in resources["requests"])
    assert resources["limits"]["memory"] == resources["requests"]["memory"]


def test_pod_is_restricted_and_scheduled_on_its_pool(pilot_raw: dict[str, Any]) -> None:
    capture = _serve(_config(pilot_raw), 0)
    pod = capture.of_type("kubernetes:apps/v1:Deployment")[0].inputs["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = pod["containers"][0]["securityContext"]
    assert sc == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["nodeSelector"] == {"swarmstack.io/pool": "h100-mig"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}
    ]
    shm = next(v for v in pod["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"]["medium"] == "Memory"
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert {"/dev/shm", "/tmp", "/cache"} <= mounts


def test_probes_give_the_model_its_load_time(pilot_raw: dict[str, Any]) -> None:
    container = _container(_serve(_config(pilot_raw), 0))
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/health", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"


def test_slo_annotations_and_labels_for_policies(pilot_raw: dict[str, Any]) -> None:
    capture = _serve(_config(pilot_raw), 1)
    deployment = capture.of_type("kubernetes:apps/v1:Deployment")[0].inputs
    annotations = deployment["metadata"]["annotations"]
    assert annotations["swarmstack.io/latency-tier"] == "batch"
    assert annotations["swarmstack.io/slo-e2e-p99-s"] == "120"
    assert annotations["swarmstack.io/slo-ttft-p99-ms"] == "2500"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["cost-center"] == "cc-1042" and labels["team"] == "agent-platform"
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert deployment["spec"]["replicas"] == 1


def test_hub_model_reads_its_token_from_a_mounted_secret_file_and_gets_no_role(
    pilot_raw: dict[str, Any],
) -> None:
    capture = _serve(_config(pilot_raw), 1)
    assert not capture.of_type("aws:iam/role:Role")
    pod = capture.of_type("kubernetes:apps/v1:Deployment")[0].inputs["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    # A file, never an environment value: no variable of the pod reads a Secret.
    assert "HF_TOKEN" not in env
    assert not [e for e in container["env"] if "valueFrom" in e]
    volume = next(v for v in pod["volumes"] if "secret" in v)
    assert volume["secret"] == {
        "secretName": "huggingface-token",
        "items": [{"key": "token", "path": "token"}],
        "defaultMode": 0o440,
    }
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    assert mount["readOnly"] is True
    assert env["HF_TOKEN_PATH"] == {
        "name": "HF_TOKEN_PATH",
        "value": f"{mount['mountPath']}/token",
    }
    # Mode 0440 is root and the file's group; the kubelet gives the file the pod's fsGroup,
    # which is the group the server runs as.
    security = pod["securityContext"]
    assert security["fsGroup"] == security["runAsGroup"] == 2000


def test_s3_model_mounts_no_token(pilot_raw: dict[str, Any]) -> None:
    capture = _serve(_config(pilot_raw), 0)
    pod = capture.of_type("kubernetes:apps/v1:Deployment")[0].inputs["spec"]["template"]["spec"]
    assert not [v for v in pod["volumes"] if "secret" in v]
    assert "HF_TOKEN_PATH" not in {e["name"] for e in pod["containers"][0]["env"]}


def test_stock_image_runs_with_every_written_path_on_an_empty_dir(
    pilot_raw: dict[str, Any],
) -> None:
    """The pod sets what a custom image would have: command, user, writable paths."""
    capture = _serve(_config(pilot_raw), 1)
    pod = capture.of_type("kubernetes:apps/v1:Deployment")[0].inputs["spec"]["template"]["spec"]
    container = pod["containers"][0]
    # The stock image's entrypoint is `vllm serve`, run as root: both are replaced.
    assert container["command"] == ["python3", "-m", SERVER_MODULE]
    assert pod["securityContext"]["runAsUser"] == 2000
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    writable = [m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs]
    assert sorted(writable) == ["/cache", "/dev/shm", "/tmp"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    written = {
        name: env[name]
        for name in ("HOME", "HF_HOME", "VLLM_CACHE_ROOT", "XDG_CACHE_HOME", "TRITON_CACHE_DIR")
    }
    written["workingDir"] = container["workingDir"]
    for name, path in written.items():
        assert any(path == d or path.startswith(f"{d}/") for d in writable), (name, path)
    # HOME must exist in a fresh emptyDir: it is the mount itself, not a subfolder.
    assert env["HOME"] in writable
    assert env["VLLM_NO_USAGE_STATS"] == env["DO_NOT_TRACK"] == "1"
    assert env["HF_HUB_DISABLE_TELEMETRY"] == "1"


def test_pdb_allows_one_disruption(pilot_raw: dict[str, Any]) -> None:
    capture = _serve(_config(pilot_raw), 0)
    pdb = capture.of_type("kubernetes:policy/v1:PodDisruptionBudget")[0].inputs
    assert pdb["spec"]["maxUnavailable"] == 1


def test_full_gpu_replica_requests_its_tensor_parallel_gpus(pilot_raw: dict[str, Any]) -> None:
    pool = pilot_raw["gpuPools"][0]
    pool["instanceType"] = "g6e.12xlarge"
    del pool["mig"]
    for model in pilot_raw["models"]:
        model.pop("migProfile")
    pilot_raw["models"][0]["tensorParallelSize"] = 2
    config = _config(pilot_raw)
    model = config.models[0]
    resource, count = accelerator_resource(model, config)
    template = pod_template(
        model,
        image=config.images.vllm,
        placement=Placement(serving_placement(model, config).pool, resource, count),
        cost_labels=config.cost_labels,
        service_account=model.name,
        hf_token_secret=None,
    )
    resources = template["spec"]["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "2" == resources["requests"]["nvidia.com/gpu"]
    args = server_args(model)
    assert args[args.index("--tensor-parallel-size") + 1] == "2"


def test_volume_weights_mount_read_only(pilot_raw: dict[str, Any]) -> None:
    pilot_raw["models"][0]["weights"] = {"source": "pvc", "claimName": "weights", "path": "/qwen"}
    model = _config(pilot_raw).models[0]
    args = server_args(model)
    assert args[args.index("--model") + 1] == "/models/qwen"
    config = _config(pilot_raw)
    template = pod_template(
        model,
        image=config.images.vllm,
        placement=Placement("h100-mig", "nvidia.com/mig-3g.40gb", 1),
        cost_labels=config.cost_labels,
        service_account=model.name,
        hf_token_secret=None,
    )
    volume = next(v for v in template["spec"]["volumes"] if v["name"] == "weights")
    assert volume["persistentVolumeClaim"] == {"claimName": "weights", "readOnly": True}


def test_image_is_the_pinned_tag(pilot_raw: dict[str, Any]) -> None:
    assert (
        _container(_serve(_config(pilot_raw), 0))["image"] == "docker.io/vllm/vllm-openai:v0.32.0"
    )
    pilot_raw["images"]["vllm"]["digest"] = "sha256:" + "a" * 64
    image = _container(_serve(_config(pilot_raw), 0))["image"]
    assert image == "docker.io/vllm/vllm-openai:v0.32.0@sha256:" + "a" * 64


def test_no_resource_without_the_provider_it_was_given(pilot_raw: dict[str, Any]) -> None:
    config = _config(pilot_raw)
    model = config.models[1]

    def program() -> None:
        provider = k8s.Provider("k8s", kubeconfig="{}")
        ModelServing(
            "m",
            ModelServingArgs(
                spec=model,
                namespace="ns",
                namespace_name="ns",
                image=config.images.vllm,
                placement=Placement(
                    serving_placement(model, config).pool, "nvidia.com/mig-3g.40gb", 1
                ),
                cost_labels=config.cost_labels,
            ),
            opts=pulumi.ResourceOptions(providers=[provider]),
        )

    capture = run(program)
    provider = capture.of_type("pulumi:providers:kubernetes")[0]
    for r in capture.registrations:
        if r.type.startswith("kubernetes:"):
            assert r.provider.startswith(provider.urn), r.name
