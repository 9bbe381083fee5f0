"""Agent workloads: what the pilot's plan declares for each agent type, the pure pod
rendering, the worker accepting what is rendered, and the config rules of the runtime."""

from __future__ import annotations

import ast
import json
import posixpath
import re
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent_worker.config import load_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from components.agents.spec import TOOL_NAMES, WORKER_PORT, AgentSpec, selector_labels
from components.agents.workload import (
    GVISOR_RUNTIME_CLASS,
    ModelTarget,
    pod_template,
    worker_container,
)
from components.data.contract import MountedFile, SecretRef, WorkerWiring
from components.gateway.proxy_config import timeouts_of
from components.specs import CostLabels, ImageRef
from components.traffic.istio_chart import MERGED_METRICS_PORT
from components.traffic.tenancy import agent_network_policies
from components.traffic.timeouts import timeout_chain
from stacks.agents import managed_store_policies, model_target
from stacks.cli import main
from stacks.config import ConfigError, StackConfig, load

ROOT = Path(__file__).resolve().parent.parent
WORKER_STATE = ROOT / "images" / "agent-worker" / "agent_worker" / "state.py"
WORKER_DOCKERFILE = ROOT / "images" / "agent-worker" / "Dockerfile"
SOURCE = "stacks/Pulumi.pilot.yaml"
LABELS = CostLabels(team="agents", cost_center="cc-1", environment="test")
IMAGE = ImageRef(repository="registry.example.com/swarmstack/agent-worker", tag="0.1.0")
WIRING = WorkerWiring(
    env={"REDIS_URL": "rediss://store:6379/0", "REDIS_PASSWORD_FILE": "/etc/s/redis/password"},
    files=(
        MountedFile(SecretRef("agents", "redis-client", "password"), "/etc/s/redis/password"),
        MountedFile(SecretRef("agents", "ca-bundle", "ca.crt"), "/etc/s/redis/ca.crt"),
        MountedFile(SecretRef("agents", "qdrant-client", "api-key"), "/etc/s/qdrant/api-key"),
    ),
)
MODEL = ModelTarget("http://m.models.svc.cluster.local:8000/v1", "org/model", 90)


def _agent(**changes: Any) -> AgentSpec:
    raw: dict[str, Any] = {
        "name": "helper",
        "mode": "http",
        "replicas": {"min": 1, "max": 2},
        "tier": "interactive",
        "model": "m",
    }
    raw.update(changes)
    return AgentSpec.model_validate(raw)


def _pod(agent: AgentSpec) -> dict[str, Any]:
    worker = worker_container(agent, model=MODEL, wiring=WIRING)
    return pod_template(agent, image=IMAGE, worker=worker, cost_labels=LABELS)


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


# --------------------------------------------------------------------------- the pilot plan


@pytest.fixture(scope="module")
def plan_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plan")
    assert main(["plan", "pilot", "--root", str(ROOT), "--out", str(out)]) == 0
    return out / "pilot"


@pytest.fixture(scope="module")
def docs(plan_out: Path) -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted((plan_out / "manifests").glob("*.yaml"))]


@pytest.fixture(scope="module")
def pilot() -> StackConfig:
    doc = yaml.safe_load((ROOT / SOURCE).read_text())["config"]
    raw = {k.split(":", 1)[1]: v for k, v in doc.items() if k.startswith("swarmstack:")}
    return load(raw, "us-east-1", SOURCE)


def _of(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def test_each_pilot_agent_calls_the_gateway_by_model_name_within_the_gateway_chain(
    docs: list[dict[str, Any]], pilot: StackConfig
) -> None:
    """The pilot has a gateway: every agent's model endpoint is the gateway's Service, its
    model name is the gateway's name of its model (which the proxy config maps to the
    model's Service and served id), its health check is the gateway's readiness and its
    deadline the gateway chain's worker hop."""
    gateway_service = _of(docs, "Service", "model-gateway")
    port = gateway_service["spec"]["ports"][0]["port"]
    gateway = f"model-gateway.{gateway_service['metadata']['namespace']}.svc.cluster.local:{port}"
    config = yaml.safe_load(_of(docs, "ConfigMap", "model-gateway-config")["data"]["config.yaml"])
    deployments = {d["model_name"]: d["litellm_params"] for d in config["model_list"]}
    assert pilot.gateway is not None
    hops = timeouts_of(pilot.gateway, pilot.models, pilot.timeouts)
    for agent in pilot.agents:
        deployment = _of(docs, "Deployment", f"agent-{agent.name}")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = _env(container)
        assert env["MODEL_BASE_URL"] == f"http://{gateway}/v1"
        assert env["MODEL_HEALTH_URL"] == f"http://{gateway}/health/readiness"
        assert env["MODEL_NAME"] == agent.model
        model = next(m for m in pilot.models if m.name == agent.model)
        service = _of(docs, "Service", model.name)
        host = f"{model.name}.{service['metadata']['namespace']}.svc.cluster.local"
        upstream = deployments[agent.model]
        assert upstream["api_base"] == f"http://{host}:{service['spec']['ports'][0]['port']}/v1"
        (server,) = _of(docs, "Deployment", model.name)["spec"]["template"]["spec"]["containers"]
        args = server["args"]
        assert upstream["model"] == "hosted_vllm/" + args[args.index("--served-model-name") + 1]
        chain = hops.chains[model.name]
        assert int(env["MODEL_TIMEOUT_S"]) == chain.worker_s > hops.route_s
        assert chain.disorders() == []
        # The key: a file of the agent's own Secret, never an environment value.
        key_file = env["MODEL_API_KEY_FILE"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        (source,) = volumes[mounts[posixpath.dirname(key_file)]]["projected"]["sources"]
        assert source["secret"]["name"] == f"model-gateway-agent-{agent.name}"
        assert source["secret"]["items"] == [
            {"key": "api-key", "path": posixpath.basename(key_file)}
        ]
        assert env["AGENT_TOOLS"] == ",".join(agent.tools)
        assert env["AGENT_NAME"] == agent.name and env["WORKER_MODE"] == agent.mode


def test_without_a_gateway_an_agent_calls_its_model_service_within_its_chain(
    pilot: StackConfig,
) -> None:
    direct = pilot.model_copy(update={"gateway": None})
    for agent in direct.agents:
        model = next(m for m in direct.models if m.name == agent.model)
        target = model_target(direct, agent)
        assert target.base_url == (
            f"http://{model.name}.{direct.namespaces.models}.svc.cluster.local:8000/v1"
        )
        assert target.served_name == model.model
        chain = timeout_chain(model, direct.timeouts)
        assert target.timeout_s == chain.worker_s > chain.model_route_s > model.slo.e2e_p99_s


def test_pilot_agents_are_restricted_spread_prioritised_and_probed(
    docs: list[dict[str, Any]], pilot: StackConfig
) -> None:
    classes = {
        d["metadata"]["name"]: d["value"]
        for d in docs
        if d["kind"] == "PriorityClass" and d["metadata"]["name"].startswith("swarmstack-agent-")
    }
    assert len(classes) == 2  # created once, whatever the number of agents
    assert classes["swarmstack-agent-interactive"] > classes["swarmstack-agent-batch"]
    for agent in pilot.agents:
        pod = _of(docs, "Deployment", f"agent-{agent.name}")["spec"]["template"]["spec"]
        assert pod["priorityClassName"] == f"swarmstack-agent-{agent.tier}"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert "runtimeClassName" not in pod  # the pilot's agents run on runc
        (c,) = pod["containers"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert "startupProbe" in c
        keys = {t["topologyKey"] for t in pod["topologySpreadConstraints"]}
        assert "topology.kubernetes.io/zone" in keys
        for t in pod["topologySpreadConstraints"]:
            assert t["labelSelector"] == {"matchLabels": selector_labels(agent)}
        team = next(e for e in c["env"] if e["name"] == "AGENT_TEAM")
        assert team["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['team']"
        assert deployment_labels(docs, agent)["team"] == pilot.cost_labels.team


def deployment_labels(docs: list[dict[str, Any]], agent: AgentSpec) -> dict[str, str]:
    return _of(docs, "Deployment", f"agent-{agent.name}")["spec"]["template"]["metadata"]["labels"]


def test_pilot_agent_pdbs_allow_one_disruption_and_only_http_agents_get_a_service(
    docs: list[dict[str, Any]], pilot: StackConfig
) -> None:
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    for agent in pilot.agents:
        pdb = _of(docs, "PodDisruptionBudget", f"agent-{agent.name}")
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"] == {"matchLabels": selector_labels(agent)}
        assert (f"agent-{agent.name}" in services) == (agent.mode == "http")
    service = _of(docs, "Service", "agent-concierge")
    assert service["spec"]["ports"][0]["port"] == WORKER_PORT
    assert service["spec"]["selector"] == selector_labels(pilot.agents[1])


def test_every_mounted_secret_file_the_worker_reads_is_in_a_volume(
    docs: list[dict[str, Any]], pilot: StackConfig
) -> None:
    for agent in pilot.agents:
        pod = _of(docs, "Deployment", f"agent-{agent.name}")["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        files: set[str] = set()
        for mount in c["volumeMounts"]:
            volume = volumes[mount["name"]]
            assert mount.get("readOnly", False) or "emptyDir" in volume
            for source in volume.get("projected", {}).get("sources", []):
                for item in source["secret"]["items"]:
                    files.add(f"{mount['mountPath']}/{item['path']}")
        named = {v for k, v in _env(c).items() if k.endswith("_FILE")}
        assert named and named <= files, named - files


def test_the_worker_repository_is_scanned_immutable_and_kms_encrypted(plan_out: Path) -> None:
    aws = yaml.safe_load((plan_out / "aws-resources.yaml").read_text())
    (repo,) = [r for r in aws if r["type"] == "aws:ecr/repository:Repository"]
    inputs = repo["inputs"]
    assert inputs["name"] == "swarm-pilot/agent-worker"
    assert inputs["imageTagMutability"] == "IMMUTABLE"
    assert inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    assert inputs["encryptionConfigurations"][0]["encryptionType"] == "KMS"
    assert inputs["encryptionConfigurations"][0]["kmsKey"].startswith("arn:aws:kms:")
    outputs = json.loads((plan_out / "outputs.json").read_text())
    assert "agentWorkerRepository" in outputs


def test_strimzi_agents_get_no_aws_role(docs: list[dict[str, Any]], plan_out: Path) -> None:
    for name in ("agent-concierge", "agent-researcher"):
        account = _of(docs, "ServiceAccount", name)
        assert "eks.amazonaws.com/role-arn" not in (account["metadata"].get("annotations") or {})
    aws = yaml.safe_load((plan_out / "aws-resources.yaml").read_text())
    assert not [r for r in aws if r["type"].startswith("aws:iam/") and "agent-" in r["name"]]


# --------------------------------------------------------------------------- the worker accepts it


def test_the_worker_loads_the_environment_the_stack_renders(
    tmp_path: Path, docs: list[dict[str, Any]], pilot: StackConfig
) -> None:
    """The worker's own config loader, on what a pod's process sees: the image's ENV with
    each rendered env over it (secret files stand in at the same names under tmp_path,
    because they are mounted only in a pod)."""
    for agent in pilot.agents:
        (c,) = _of(docs, "Deployment", f"agent-{agent.name}")["spec"]["template"]["spec"][
            "containers"
        ]
        env = {**image_env(), **_env(c)}
        for key, path in list(env.items()):
            if key.endswith("_FILE"):
                local = tmp_path / agent.name / path.lstrip("/")
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_text("x")
                env[key] = str(local)
        env["AGENT_TEAM"] = deployment_labels(docs, agent)["team"]
        s = load_settings(env)
        model = next(m for m in pilot.models if m.name == agent.model)
        assert pilot.gateway is not None
        hops = timeouts_of(pilot.gateway, pilot.models, pilot.timeouts)
        assert s.model_timeout_s == hops.chains[model.name].worker_s
        assert s.tools == tuple(agent.tools)
        assert s.grace_period_s == agent.grace_period_s
        assert s.agent_team == pilot.cost_labels.team
        assert s.worker_mode == agent.mode and s.worker_port == WORKER_PORT
        b = agent.budgets
        assert (
            s.budgets.session_tokens,
            s.budgets.user_tokens_per_day,
            s.budgets.agent_tokens_per_day,
        ) == (b.session_tokens, b.user_tokens_per_day, b.agent_tokens_per_day)


def image_env() -> dict[str, str]:
    """The ENV of the worker image's runtime stage (what every container starts with)."""
    text = re.sub(r"\\\n", " ", WORKER_DOCKERFILE.read_text())
    runtime = text[text.rindex("\nFROM ") :]
    env: dict[str, str] = {}
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[len("ENV ") :]):
                key, _, value = pair.partition("=")
                env[key] = value
    assert "WORKER_PORT" in env, runtime
    return env


def test_the_stack_knows_the_worker_s_tools() -> None:
    tree = ast.parse(WORKER_STATE.read_text())
    (value,) = [
        n.value
        for n in tree.body
        if isinstance(n, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "TOOL_NAMES" for t in n.targets)
    ]
    assert tuple(ast.literal_eval(value)) == TOOL_NAMES


# --------------------------------------------------------------------------- shutdown


@settings(max_examples=100, deadline=None)
@given(grace=st.integers(min_value=5, max_value=600))
def test_termination_grace_period_covers_prestop_worker_grace_and_a_margin(grace: int) -> None:
    pod = _pod(_agent(gracePeriodS=grace))
    (c,) = pod["spec"]["containers"]
    prestop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    worker = int(_env(c)["GRACE_PERIOD_S"])
    assert worker == grace
    # preStop runs inside the grace period and the worker's own deadline starts after it;
    # what is left is the margin for the process to exit (README: 10 s).
    margin = pod["spec"]["terminationGracePeriodSeconds"] - prestop - worker
    assert margin >= 10
    assert prestop >= 1


# --------------------------------------------------------------------------- pure rendering


def test_gvisor_renders_its_runtime_class_and_runc_none() -> None:
    assert _pod(_agent(sandbox="gvisor"))["spec"]["runtimeClassName"] == GVISOR_RUNTIME_CLASS
    assert "runtimeClassName" not in _pod(_agent(sandbox="runc"))["spec"]


def test_secrets_are_files_grouped_by_folder_and_never_values() -> None:
    pod = _pod(_agent())
    (c,) = pod["spec"]["containers"]
    assert not any("secretKeyRef" in json.dumps(e) for e in c["env"])
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    redis = volumes[mounts["/etc/s/redis"]]["projected"]
    assert [s["secret"]["name"] for s in redis["sources"]] == ["redis-client", "ca-bundle"]
    assert redis["defaultMode"] == 0o440
    qdrant = volumes[mounts["/etc/s/qdrant"]]["projected"]["sources"]
    assert qdrant == [
        {"secret": {"name": "qdrant-client", "items": [{"key": "api-key", "path": "api-key"}]}}
    ]


def test_budgets_and_tools_reach_the_environment() -> None:
    agent = _agent(
        tools=["clock"], budgets={"sessionTokens": 1000, "degradeAt": 0.5}, team="research"
    )
    pod = _pod(agent)
    env = _env(pod["spec"]["containers"][0])
    assert env["AGENT_TOOLS"] == "clock"
    assert env["BUDGET_SESSION_TOKENS"] == "1000" and env["BUDGET_DEGRADE_AT"] == "0.5"
    assert "BUDGET_USER_TOKENS_PER_DAY" not in env
    assert pod["metadata"]["labels"]["team"] == "research"
    assert _env(_pod(_agent())["spec"]["containers"][0])["AGENT_TOOLS"] == "none"


def test_a_degraded_model_reaches_the_worker_which_accepts_it() -> None:
    env = _env(_pod(_agent(model="big", degradedModel="small"))["spec"]["containers"][0])
    assert env["MODEL_DEGRADED_NAME"] == "small"
    assert "MODEL_DEGRADED_NAME" not in _env(_pod(_agent())["spec"]["containers"][0])
    files = {k: "/dev/null" for k in env if k.endswith("_FILE")}
    settings = load_settings({**image_env(), **env, **files, "AGENT_TEAM": "agents"})
    assert settings.degraded_model_name == "small"


# --------------------------------------------------------------------------- network policy


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _egress_allowed(
    policies: dict[str, dict[str, Any]],
    source: tuple[str, dict[str, str]],
    target: tuple[str, dict[str, str], int],
) -> bool:
    """NetworkPolicy egress as Kubernetes reads it: some Egress policy that selects the
    source pod has a rule whose peer matches the target's namespace and labels and port."""
    ns, labels = source
    t_ns, t_labels, t_port = target
    for p in policies.values():
        spec = p["spec"]
        if p["namespace"] != ns or "Egress" not in spec["policyTypes"]:
            continue
        if not _selects(spec["podSelector"], labels):
            continue
        for rule in spec.get("egress", []):
            ports = [x["port"] for x in rule.get("ports", [])]
            if ports and t_port not in ports:
                continue
            for peer in rule.get("to", []):
                peer_ns = peer.get("namespaceSelector", {}).get("matchLabels", {})
                ns_ok = peer_ns.get("kubernetes.io/metadata.name", ns) == t_ns
                if ns_ok and _selects(peer.get("podSelector", {}), t_labels):
                    return True
    return False


def test_each_agent_reaches_its_own_model_port_and_no_other_model(pilot: StackConfig) -> None:
    policies = agent_network_policies(pilot.namespaces, pilot.agents)
    models_ns = pilot.namespaces.models
    for agent in pilot.agents:
        pod = {**selector_labels(agent), "app.kubernetes.io/component": "agent"}
        for model in pilot.models:
            server = {
                "app.kubernetes.io/name": model.name,
                "app.kubernetes.io/component": "model-server",
            }
            allowed = _egress_allowed(
                policies, (pilot.namespaces.agents, pod), (models_ns, server, 8000)
            )
            assert allowed == (model.name == agent.model), (agent.name, model.name)
            assert not _egress_allowed(
                policies, (pilot.namespaces.agents, pod), (models_ns, server, 9000)
            )


def test_prometheus_reaches_every_agent_on_the_merged_metrics_port_only(
    pilot: StackConfig,
) -> None:
    """Under STRICT mTLS Prometheus (outside the mesh) scrapes the sidecar's merged metrics,
    which the pod's prometheus.io annotations point at the worker's own /metrics."""
    policies = agent_network_policies(pilot.namespaces, pilot.agents)
    (scrape,) = [p for p in policies.values() if p["name"] == "allow-prometheus-to-agents"]
    (rule,) = scrape["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": MERGED_METRICS_PORT}]
    assert rule["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": pilot.namespaces.monitoring
    }
    for agent in pilot.agents:
        pod = {**selector_labels(agent), "app.kubernetes.io/component": "agent"}
        assert _selects(scrape["spec"]["podSelector"], pod)


# --------------------------------------------------------------------------- config rules


Mutate = Callable[[dict[str, Any]], None]


def _problems(pilot_raw: dict[str, Any], mutate: Mutate) -> list[str]:
    mutate(pilot_raw)
    with pytest.raises(ConfigError) as info:
        load(pilot_raw, "us-east-1", SOURCE)
    return [str(p) for p in info.value.problems]


def test_an_agent_calling_a_model_the_stack_does_not_serve_is_refused(
    pilot_raw: dict[str, Any],
) -> None:
    def unserved(raw: dict[str, Any]) -> None:
        raw["agents"][1]["model"] = "gpt-9"

    assert _problems(pilot_raw, unserved) == [
        "agents[1].model: 'gpt-9' is not a model this stack serves (one of qwen25-7b, llama31-8b)"
    ]


def test_an_interactive_agent_with_minimum_zero_is_refused(pilot_raw: dict[str, Any]) -> None:
    def idle(raw: dict[str, Any]) -> None:
        raw["agents"][1]["replicas"] = {"min": 0, "max": 4}

    assert _problems(pilot_raw, idle) == [
        "agents[1].replicas.min: 0 for interactive agent 'concierge': the first request after "
        "idle would wait for a pod to start; use at least 1, or tier batch"
    ]
    # a batch agent may scale to zero
    pilot_raw["agents"][1]["replicas"] = {"min": 1, "max": 4}
    pilot_raw["agents"][0]["replicas"] = {"min": 0, "max": 6}
    load(pilot_raw, "us-east-1", SOURCE)


def test_an_events_agent_above_its_task_partitions_is_refused(
    pilot_raw: dict[str, Any],
) -> None:
    def wide(raw: dict[str, Any]) -> None:
        raw["agents"][0]["replicas"] = {"min": 1, "max": 8}

    (problem,) = _problems(pilot_raw, wide)
    assert problem.startswith(
        "agents[0].topics.tasks.partitions: 6 partitions for up to 8 replicas of researcher"
    )


def test_an_agent_without_an_image_is_refused(pilot_raw: dict[str, Any]) -> None:
    def imageless(raw: dict[str, Any]) -> None:
        del raw["images"]["agentWorker"]

    problems = _problems(pilot_raw, imageless)
    assert problems[0].startswith("agents[0].image: is not set and neither is images.agentWorker")
    assert len(problems) == 2
    # its own image is enough
    pilot_raw["agents"][0]["image"] = {"repository": "registry.example.com/w", "tag": "1.0"}
    pilot_raw["agents"][1]["image"] = {"repository": "registry.example.com/w", "tag": "1.0"}
    load(pilot_raw, "us-east-1", SOURCE)


def test_retrieve_without_a_vector_store_and_agents_without_redis_are_refused(
    pilot_raw: dict[str, Any],
) -> None:
    def storeless(raw: dict[str, Any]) -> None:
        del raw["dataPlane"]["qdrant"]
        del raw["dataPlane"]["redis"]

    problems = _problems(pilot_raw, storeless)
    assert (
        "agents[0].tools: lists retrieve, which searches the vector store, but "
        "dataPlane.qdrant is not set: add it or remove retrieve"
    ) in problems
    assert (
        "agents[1]: agent 'concierge' checkpoints its sessions in the session store, but "
        "dataPlane.redis is not set: add it"
    ) in problems


def test_unknown_and_repeated_tools_are_refused_with_the_path(pilot_raw: dict[str, Any]) -> None:
    def shell(raw: dict[str, Any]) -> None:
        raw["agents"][1]["tools"] = ["calculator", "shell"]

    (problem,) = _problems(pilot_raw, shell)
    assert problem.startswith("agents[1].tools[1]: 'shell' is not valid")
    pilot_raw["agents"][1]["tools"] = ["clock", "clock"]
    with pytest.raises(ConfigError) as info:
        load(pilot_raw, "us-east-1", SOURCE)
    assert str(info.value.problems[0]) == "agents[1].tools: lists clock more than once"


# --------------------------------------------------------------------------- MSK with IAM


def _msk_project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copy(ROOT / "stacks" / "__main__.py", root / "stacks" / "__main__.py")
    shutil.copytree(ROOT / "policies", root / "policies")
    doc = yaml.safe_load((ROOT / SOURCE).read_text())
    doc["config"]["swarmstack:dataPlane"]["kafka"] = {
        "mode": "msk",
        "version": "4.1.x.kraft",
        "brokers": 3,
        "replicationFactor": 3,
        "minInsyncReplicas": 2,
        "storage": {"sizeGib": 200},
        "msk": {"brokerType": "kafka.m7g.large", "clientAuth": "iam"},
    }
    (root / "stacks" / "Pulumi.pilot.yaml").write_text(yaml.safe_dump(doc))
    return root


def test_an_msk_iam_events_agent_gets_a_role_for_its_topics_and_the_http_agent_none(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    assert main(["plan", "pilot", "--root", str(_msk_project(tmp_path)), "--out", str(out)]) == 0
    docs = [
        yaml.safe_load(p.read_text()) for p in sorted((out / "pilot" / "manifests").glob("*.yaml"))
    ]
    aws = yaml.safe_load((out / "pilot" / "aws-resources.yaml").read_text())
    roles = {r["name"]: r for r in aws if r["type"] == "aws:iam/role:Role"}
    policies = {r["name"]: r for r in aws if r["type"] == "aws:iam/rolePolicy:RolePolicy"}
    assert "agent-researcher-role" in roles and "agent-concierge-role" not in roles
    trust = json.loads(roles["agent-researcher-role"]["inputs"]["assumeRolePolicy"])
    subjects = json.dumps(trust)
    assert "system:serviceaccount:swarmstack-agents:agent-researcher" in subjects
    policy = json.loads(policies["agent-researcher-policy"]["inputs"]["policy"])
    actions = {
        a
        for s in policy["Statement"]
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert all(a.startswith("kafka-cluster:") for a in actions), actions
    resources = json.dumps([s["Resource"] for s in policy["Statement"]])
    assert "researcher.tasks" in resources and "concierge" not in resources
    researcher = _of(docs, "ServiceAccount", "agent-researcher")
    assert "eks.amazonaws.com/role-arn" in researcher["metadata"]["annotations"]
    concierge = _of(docs, "ServiceAccount", "agent-concierge")
    assert "eks.amazonaws.com/role-arn" not in (concierge["metadata"].get("annotations") or {})
    (c,) = _of(docs, "Deployment", "agent-researcher")["spec"]["template"]["spec"]["containers"]
    env = _env(c)
    assert env["KAFKA_SASL_MECHANISM"] == "OAUTHBEARER" and env["AWS_REGION"] == "us-east-1"
    assert "KAFKA_PASSWORD_FILE" not in env


def test_managed_stores_are_reached_through_the_vpc_cidr_on_their_client_ports(
    pilot_raw: dict[str, Any],
) -> None:
    data = pilot_raw["dataPlane"]
    data["kafka"] = {
        "mode": "msk",
        "version": "4.1.x.kraft",
        "brokers": 3,
        "replicationFactor": 3,
        "minInsyncReplicas": 2,
        "msk": {"brokerType": "kafka.m7g.large", "clientAuth": "iam"},
    }
    data["redis"] = {
        "mode": "elasticache",
        "engine": "valkey",
        "version": "8.1",
        "elasticache": {"nodeType": "cache.r7g.large", "nodes": 2},
    }
    config = load(pilot_raw, "us-east-1", SOURCE)
    policies = managed_store_policies(config)
    cidr = config.cluster.vpc_cidr

    def egress(agent: AgentSpec) -> set[int]:
        labels = {**selector_labels(agent), "app.kubernetes.io/component": "agent"}
        ports: set[int] = set()
        for p in policies.values():
            if p["namespace"] != config.namespaces.agents:
                continue
            if not _selects(p["spec"]["podSelector"], labels):
                continue
            for rule in p["spec"]["egress"]:
                assert rule["to"] == [{"ipBlock": {"cidr": cidr}}]
                ports |= {x["port"] for x in rule["ports"]}
        return ports

    researcher, concierge = config.agents
    assert egress(researcher) == {9098, 443, 6379}  # MSK IAM, STS endpoint, ElastiCache
    assert egress(concierge) == {6379}
    # an existing cluster's VPC CIDR is not in the config: nothing is guessed
    cluster = pilot_raw["cluster"]
    cluster.update(mode="existing", kubeconfigContext="admin@gpu")
    cluster["network"] = {
        "vpcId": "vpc-0123456789abcdef0",
        "privateSubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
        "nodeSecurityGroupId": "sg-0123456789abcdef0",
        "kmsKeyArn": "arn:aws:kms:us-east-1:210987654321:key/k",
    }
    data.pop("kafka")  # MSK needs an EKS cluster of the stack; ElastiCache does not
    pilot_raw["agents"] = pilot_raw["agents"][1:]  # the http agent alone
    pilot_raw.pop("demand")  # its shares name the agent left out
    pilot_raw["gateway"]["keys"] = [
        k for k in pilot_raw["gateway"]["keys"] if k["agent"] == "concierge"
    ]
    cluster.pop("vpcCidr", None)
    existing = load(pilot_raw, "us-east-1", SOURCE)
    assert existing.data_plane.redis is not None
    assert existing.data_plane.redis.mode == "elasticache"
    assert managed_store_policies(existing) == {}
