"""The gateway as the pilot declares it: LiteLLM's proxy with restricted pods and its own
probes, Postgres, the schema and key Jobs in order, Secrets that never show a value, the
agents pointed at it, the mesh and network openings it needs and nothing more."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from components.gateway import apply_keys
from components.gateway.keys import (
    derive_agent_key,
    key_requests,
    salt_key_fingerprint,
    salt_key_problems,
)
from components.gateway.proxy import (
    RedisAccess,
    pod_template,
    proxy_environment,
)
from components.gateway.proxy_config import timeouts_of
from components.gateway.spec import GatewaySpec
from components.specs import CostLabels
from components.traffic.mesh import GatewayTraffic, agent_sidecar, mesh_resources
from components.traffic.timeouts import timeout_chain
from stacks.cli import main
from stacks.config import StackConfig, load
from stacks.plan.model import Plan
from stacks.plan.recorder import Capture
from stacks.plan.runner import read_program_input, run_program
from stacks.program import gateway_secret_problems

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "stacks/Pulumi.pilot.yaml"
LABELS = CostLabels(team="agents", cost_center="cc-1", environment="test")
REDIS = RedisAccess("session-store.data.svc", 6379, "redis-client", "password", "ca", "ca.crt")
SALT = "sk-" + "0123456789abcdef" * 4


@pytest.fixture(scope="module")
def plan_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plan")
    assert main(["plan", "pilot", "--root", str(ROOT), "--out", str(out)]) == 0
    return out / "pilot"


@pytest.fixture(scope="module")
def docs(plan_out: Path) -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted((plan_out / "manifests").glob("*.yaml"))]


@pytest.fixture(scope="module")
def capture() -> Capture:
    return run_program(read_program_input(ROOT, "pilot"))


@pytest.fixture(scope="module")
def pilot() -> StackConfig:
    doc = yaml.safe_load((ROOT / SOURCE).read_text())["config"]
    raw = {k.split(":", 1)[1]: v for k, v in doc.items() if k.startswith("swarmstack:")}
    return load(raw, "us-east-1", SOURCE)


def of(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The one `kind` named `name` (a Job: named `name-<hash of what it does>`)."""
    (found,) = [
        d
        for d in docs
        if d["kind"] == kind
        and (
            d["metadata"]["name"] == name
            or (kind == "Job" and d["metadata"]["name"].startswith(f"{name}-"))
        )
    ]
    return found


# --------------------------------------------------------------------------- the proxy pods


def test_the_proxy_runs_restricted_with_scratch_where_it_writes(docs: list[dict[str, Any]]) -> None:
    deployment = of(docs, "Deployment", "model-gateway")
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65534
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (proxy,) = pod["containers"]
    assert proxy["image"] == "ghcr.io/berriai/litellm-non_root:v1.110.2"
    security = proxy["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in proxy["volumeMounts"]}
    for path in ("/tmp", "/app/.cache/npm"):
        assert "emptyDir" in volumes[mounts[path]], path
    # The Prisma engines the image ships stay visible: the cache folder itself is not hidden.
    assert "/app/.cache" not in mounts
    assert volumes[mounts["/etc/litellm"]]["configMap"]["name"] == "model-gateway-config"


def test_the_probes_use_the_proxys_own_endpoints_never_health(docs: list[dict[str, Any]]) -> None:
    (proxy,) = of(docs, "Deployment", "model-gateway")["spec"]["template"]["spec"]["containers"]
    paths = {
        p: proxy[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert paths == {
        "startupProbe": "/health/liveliness",
        "readinessProbe": "/health/readiness",
        "livenessProbe": "/health/liveliness",
    }


def test_a_pdb_lets_one_proxy_go_and_the_service_serves_its_port(
    docs: list[dict[str, Any]],
) -> None:
    pdb = of(docs, "PodDisruptionBudget", "model-gateway")
    assert pdb["spec"]["maxUnavailable"] == 1
    service = of(docs, "Service", "model-gateway")
    assert service["spec"]["ports"][0]["port"] == 4000
    assert service["spec"]["selector"] == pdb["spec"]["selector"]["matchLabels"]


def test_every_credential_comes_from_a_secret_key_ref() -> None:
    spec = GatewaySpec.model_validate(
        {"managedModels": [{"name": "mini", "model": "openai/gpt-4o-mini"}]}
    )
    env = {e["name"]: e for e in proxy_environment(spec, REDIS)}
    for name in (
        "LITELLM_MASTER_KEY",
        "LITELLM_SALT_KEY",
        "DATABASE_URL",
        "REDIS_PASSWORD",
        "OPENAI_API_KEY",
    ):
        assert "value" not in env[name], name
        assert "secretKeyRef" in env[name]["valueFrom"], name
    assert env["LITELLM_SALT_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "model-gateway-salt-key"
    assert env["REDIS_SSL"]["value"] == "true"
    assert env["REDIS_SSL_CA_CERTS"]["value"] == "/etc/swarmstack/redis/ca.crt"
    assert env["DISABLE_SCHEMA_UPDATE"]["value"] == "true"


def test_a_config_change_rolls_the_proxy() -> None:
    spec = GatewaySpec()
    one = pod_template(spec, redis=REDIS, config_map="c", config_sha256="a", cost_labels=LABELS)
    two = pod_template(spec, redis=REDIS, config_map="c", config_sha256="b", cost_labels=LABELS)
    assert one["metadata"]["annotations"] != two["metadata"]["annotations"]


# --------------------------------------------------------------------------- config and secrets


def test_the_config_map_is_the_rendered_config_without_a_secret(
    docs: list[dict[str, Any]], pilot: StackConfig
) -> None:
    from stacks.gateway import cluster_proxy_config  # noqa: PLC0415 (the composition module)

    text = of(docs, "ConfigMap", "model-gateway-config")["data"]["config.yaml"]
    assert yaml.safe_load(text) == cluster_proxy_config(pilot)
    assert "REDACTED" not in text and "sk-" not in text


def test_secrets_show_their_keys_never_their_values(docs: list[dict[str, Any]]) -> None:
    secrets = [
        d
        for d in docs
        if d["kind"] == "Secret" and d["metadata"]["name"].startswith("model-gateway")
    ]
    names = {s["metadata"]["name"] for s in secrets}
    assert {
        "model-gateway-master-key",
        "model-gateway-salt-key",
        "model-gateway-database",
        "model-gateway-provider-keys",
        "model-gateway-agent-concierge",
        "model-gateway-agent-researcher",
    } <= names
    for s in secrets:
        assert set(s["stringData"].values()) == {"REDACTED"}, s["metadata"]["name"]


def test_the_salt_key_secret_is_created_once_and_kept(capture: Capture) -> None:
    salt = capture.named("gateway-salt-key")
    assert salt.protect is True
    assert salt.retain_on_delete is True
    assert {"stringData", "data"} <= set(salt.ignore_changes)
    # Nothing else of the gateway is protected: a rename of the master key is an update.
    assert capture.named("gateway-master-key").protect is False


def test_schema_then_proxy_then_keys(capture: Capture) -> None:
    by_name = {r.name: r for r in capture.registrations}
    deployment, migrate, keys = (
        by_name["gateway-deployment"],
        by_name["gateway-migrate"],
        by_name["gateway-keys"],
    )
    assert migrate.urn in deployment.dependencies
    assert by_name["gateway-db"].urn in migrate.dependencies
    assert deployment.urn in keys.dependencies
    for agent in ("agent-concierge", "agent-researcher"):
        # The agents start once the gateway is done, its key Job included (a component in
        # depends_on stands for its children).
        assert keys.urn in by_name[agent].dependencies


def test_the_migration_job_runs_the_schema_and_exits(docs: list[dict[str, Any]]) -> None:
    job = of(docs, "Job", "model-gateway-migrate")
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert "--skip_server_startup" in c["args"]
    assert "DISABLE_SCHEMA_UPDATE" not in {e["name"] for e in c["env"]}
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_the_key_job_mounts_keys_and_its_config_holds_none(
    docs: list[dict[str, Any]], pilot: StackConfig
) -> None:
    job = of(docs, "Job", "model-gateway-keys")
    pod = job["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    sources = volumes["agent-keys"]["projected"]["sources"]
    assert [s["secret"]["name"] for s in sources] == [
        f"model-gateway-agent-{a.name}" for a in pilot.agents
    ]
    scripts = of(docs, "ConfigMap", "model-gateway-key-job")["data"]
    assert scripts["apply_keys.py"] == Path(apply_keys.__file__).read_text()
    assert pilot.gateway is not None
    requests = json.loads(scripts["requests.json"])
    assert requests == key_requests(pilot.gateway, [(a.name, a.model) for a in pilot.agents])
    assert "sk-" not in scripts["requests.json"]
    concierge = next(r["request"] for r in requests if r["agent"] == "concierge")
    assert concierge["models"] == ["qwen25-7b", "llama31-8b", "gpt-4o-mini"]
    assert (concierge["max_budget"], concierge["budget_duration"]) == (20, "1d")
    assert (concierge["rpm_limit"], concierge["tpm_limit"]) == (600, 1000000)
    assert concierge["max_parallel_requests"] == 32


# --------------------------------------------------------------------------- agent keys


def test_agent_keys_derive_per_agent_and_version() -> None:
    seed = "s" * 40
    key = derive_agent_key(seed, "concierge", 1)
    assert key.startswith("sk-") and len(key) == 3 + 64
    assert key == derive_agent_key(seed, "concierge", 1)
    assert key != derive_agent_key(seed, "concierge", 2)
    assert key != derive_agent_key(seed, "researcher", 1)
    assert key != derive_agent_key("t" * 40, "concierge", 1)


def test_a_short_seed_is_refused() -> None:
    with pytest.raises(ValueError, match="gatewayAgentKeySeed has 8 characters"):
        derive_agent_key("x" * 8, "concierge", 1)


class StandIn(BaseHTTPRequestHandler):
    """A stand-in for the proxy's /key/* API (LiteLLM's key endpoints need Postgres, which
    this machine's tests do not run): it keeps keys by hash and alias as the proxy does."""

    keys: ClassVar[dict[str, dict[str, Any]]] = {}
    calls: ClassVar[list[str]] = []
    master = "sk-master-0123456789"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/health/readiness":
            return self._answer(200, {"status": "healthy"})
        if self.headers.get("Authorization") != f"Bearer {self.master}":
            return self._answer(401, {"error": "no"})
        self.calls.append(f"GET {url.path}")
        hashed = parse_qs(url.query)["key"][0]
        if hashed in self.keys:
            return self._answer(200, {"key": hashed, "info": {"status": "active"}})
        return self._answer(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {self.master}":
            return self._answer(401, {"error": "no"})
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.calls.append(f"POST {self.path}")
        if self.path == "/key/delete":
            gone = [h for h, k in self.keys.items() if k["key_alias"] in body["key_aliases"]]
            for h in gone:
                del self.keys[h]
            return self._answer(200 if gone else 404, {"deleted": gone})
        hashed = hashlib.sha256(body["key"].encode()).hexdigest()
        if self.path == "/key/generate":
            if any(k["key_alias"] == body["key_alias"] for k in self.keys.values()):
                return self._answer(400, {"error": "alias taken"})
            self.keys[hashed] = body
            return self._answer(200, {"key": body["key"]})
        if self.path == "/key/update" and hashed in self.keys:
            self.keys[hashed] = body
            return self._answer(200, {"key": hashed})
        return self._answer(404, {"error": "unknown"})


@pytest.fixture
def stand_in() -> Iterator[str]:
    StandIn.keys, StandIn.calls = {}, []
    server = HTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_the_key_job_creates_then_updates_then_rotates(stand_in: str) -> None:
    master, request = StandIn.master, {"key_alias": "agent-concierge", "models": ["m"]}
    first = derive_agent_key("s" * 40, "concierge", 1)
    assert apply_keys.apply_key(stand_in, master, "concierge", first, request) == "created"
    assert (
        apply_keys.apply_key(stand_in, master, "concierge", first, {**request, "rpm_limit": 5})
        == "updated"
    )
    assert StandIn.keys[hashlib.sha256(first.encode()).hexdigest()]["rpm_limit"] == 5
    second = derive_agent_key("s" * 40, "concierge", 2)
    assert apply_keys.apply_key(stand_in, master, "concierge", second, request) == "created"
    # The rotation revoked the first key: one live key per agent.
    assert list(StandIn.keys) == [hashlib.sha256(second.encode()).hexdigest()]
    assert "POST /key/delete" in StandIn.calls


def test_the_key_job_fails_when_the_proxy_refuses(stand_in: str) -> None:
    with pytest.raises(apply_keys.GatewayError, match="concierge: /key/info answered 401"):
        apply_keys.apply_key(stand_in, "sk-wrong-master-key", "concierge", "sk-x" * 5, {})


def test_the_key_job_reads_keys_from_files_and_prints_no_key(
    stand_in: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "keys").mkdir()
    key = derive_agent_key("s" * 40, "concierge", 1)
    (tmp_path / "keys" / "concierge").write_text(key + "\n")
    (tmp_path / "master").write_text(StandIn.master)
    requests = [{"agent": "concierge", "request": {"key_alias": "agent-concierge"}}]
    (tmp_path / "requests.json").write_text(json.dumps(requests))
    env = {
        "GATEWAY_URL": stand_in,
        "MASTER_KEY_FILE": str(tmp_path / "master"),
        "KEYS_DIR": str(tmp_path / "keys"),
        "REQUESTS_FILE": str(tmp_path / "requests.json"),
    }
    assert apply_keys.main(env) == 0
    out = capsys.readouterr()
    assert out.out == "agent concierge: key created\n"
    assert key not in out.out + out.err


# --------------------------------------------------------------------------- the salt key check


def test_the_salt_key_fingerprint_pins_the_first_deploys_key() -> None:
    fingerprint = salt_key_fingerprint(SALT)
    assert len(fingerprint) == 16
    assert salt_key_problems(SALT, fingerprint, require_fingerprint=True) == []
    other = "sk-" + "f" * 64
    (problem,) = salt_key_problems(other, fingerprint, require_fingerprint=True)
    assert problem.startswith(
        f"has fingerprint {salt_key_fingerprint(other)}, not the {fingerprint} recorded"
    )
    (problem,) = salt_key_problems(SALT, None, require_fingerprint=True)
    assert f"saltKeyFingerprint: {fingerprint}" in problem
    assert salt_key_problems(SALT, None, require_fingerprint=False) == []
    (problem,) = salt_key_problems("short", None, require_fingerprint=False)
    assert "32 bytes of hex" in problem


def test_up_refuses_a_changed_salt_key_and_the_plan_checks_none(pilot: StackConfig) -> None:
    assert pilot.gateway is not None
    pinned = pilot.model_copy(
        update={
            "gateway": pilot.gateway.model_copy(
                update={"salt_key_fingerprint": salt_key_fingerprint(SALT)}
            )
        }
    )
    values = {"gatewaySaltKey": SALT, "gatewayAgentKeySeed": "s" * 40}

    def read(key: str) -> str | None:
        return values.get(key.split(":", 1)[1])

    assert gateway_secret_problems(pinned, "up", read) == []
    values["gatewaySaltKey"] = "sk-" + "e" * 64
    (problem,) = gateway_secret_problems(pinned, "up", read)
    assert problem.path == "gatewaySaltKey" and "the salt key changed" in problem.message
    assert gateway_secret_problems(pinned, "plan", read) == []
    values["gatewayAgentKeySeed"] = "short"
    assert [p.path for p in gateway_secret_problems(pinned, "preview", read)] == [
        "gatewaySaltKey",
        "gatewayAgentKeySeed",
    ]


# --------------------------------------------------------------------------- agents and the mesh


def test_agents_see_the_gateway_and_the_gateway_sees_the_models(
    docs: list[dict[str, Any]], pilot: StackConfig
) -> None:
    ns = pilot.namespaces
    for agent in pilot.agents:
        hosts = of(docs, "Sidecar", f"agent-{agent.name}")["spec"]["egress"][0]["hosts"]
        assert f"./model-gateway.{ns.agents}.svc.cluster.local" in hosts
        assert f"{ns.models}/*" not in hosts
    gateway_hosts = of(docs, "Sidecar", "model-gateway")["spec"]["egress"][0]["hosts"]
    assert f"{ns.models}/*" in gateway_hosts and "./api.openai.com" in gateway_hosts
    entry = of(docs, "ServiceEntry", "model-gateway-egress")["spec"]
    assert entry["hosts"] == ["api.openai.com"] and entry["exportTo"] == ["."]


def test_models_admit_only_the_gateway_and_the_gateway_admits_the_agents(
    docs: list[dict[str, Any]], pilot: StackConfig
) -> None:
    ns = pilot.namespaces
    models = of(docs, "AuthorizationPolicy", "model-servers-agent-callers")["spec"]
    (rule,) = models["rules"]
    assert rule["from"][0]["source"]["principals"] == [
        f"cluster.local/ns/{ns.agents}/sa/model-gateway"
    ]
    gateway = of(docs, "AuthorizationPolicy", "model-gateway-callers")["spec"]
    principals = gateway["rules"][0]["from"][0]["source"]["principals"]
    assert sorted(principals) == sorted(
        [f"cluster.local/ns/{ns.agents}/sa/agent-{a.name}" for a in pilot.agents]
        + [f"cluster.local/ns/{ns.agents}/sa/model-gateway-keys"]
    )
    assert gateway["rules"][0]["to"] == [
        {"operation": {"ports": ["4000"], "notPaths": ["/metrics", "/metrics/*"]}}
    ]
    db = of(docs, "AuthorizationPolicy", "model-gateway-db-callers")["spec"]
    assert db["rules"][0]["from"][0]["source"]["principals"] == [
        f"cluster.local/ns/{ns.agents}/sa/model-gateway"
    ]


def test_the_agents_route_to_the_gateway_waits_for_the_longest_fallback_chain(
    docs: list[dict[str, Any]], pilot: StackConfig
) -> None:
    assert pilot.gateway is not None
    hops = timeouts_of(pilot.gateway, pilot.models, pilot.timeouts)
    route = of(docs, "VirtualService", "model-gateway")["spec"]["http"][0]
    assert route["timeout"] == f"{hops.route_s}s"
    assert route["retries"]["retryOn"] == "connect-failure,refused-stream,reset-before-request"
    # The model routes the gateway's own proxy applies are unchanged by it.
    for model in pilot.models:
        model_route = of(docs, "VirtualService", model.name)["spec"]["http"][0]
        assert model_route["timeout"] == f"{timeout_chain(model, pilot.timeouts).model_route_s}s"
        assert hops.upstream_s[model.name] > timeout_chain(model, pilot.timeouts).model_route_s


def test_agents_network_egress_goes_to_the_gateway_only(docs: list[dict[str, Any]]) -> None:
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "NetworkPolicy"}
    assert "allow-agent-concierge-to-gateway" in names
    assert not [n for n in names if n.startswith("allow-agent-") and n.endswith(("-7b", "-8b"))]
    egress = of(docs, "NetworkPolicy", "allow-agent-concierge-to-gateway")["spec"]["egress"]
    assert egress == [
        {
            "to": [
                {
                    "podSelector": {
                        "matchLabels": {
                            "app.kubernetes.io/component": "model-gateway",
                            "app.kubernetes.io/name": "model-gateway",
                        }
                    }
                }
            ],
            "ports": [{"protocol": "TCP", "port": 4000}],
        }
    ]


def test_without_a_gateway_the_mesh_is_unchanged(pilot: StackConfig) -> None:
    agent = pilot.agents[0]
    assert agent_sidecar(agent, pilot.namespaces) == agent_sidecar(
        agent, pilot.namespaces, None, None
    )
    with_gateway = agent_sidecar(agent, pilot.namespaces, gateway=GatewayTraffic(route_s=100))
    assert with_gateway != agent_sidecar(agent, pilot.namespaces)
    chains = [(m, timeout_chain(m, pilot.timeouts)) for m in pilot.models]
    kinds = [r.kind for r in mesh_resources(chains, pilot.agents, pilot.namespaces, "us-east-1")]
    assert "Sidecar" in kinds and kinds.count("AuthorizationPolicy") == 1


def test_the_gateway_is_monitored_through_the_merged_port(docs: list[dict[str, Any]]) -> None:
    monitor = of(docs, "PodMonitor", "model-gateway")["spec"]
    assert monitor["selector"]["matchLabels"]["app.kubernetes.io/component"] == "model-gateway"
    (endpoint,) = monitor["podMetricsEndpoints"]
    assert endpoint["portNumber"] == 15020
    annotations = of(docs, "Deployment", "model-gateway")["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == (
        "4000",
        "/metrics",
    )


def test_a_degraded_model_reaches_the_worker_and_the_agents_key(pilot_raw: dict[str, Any]) -> None:
    """`agents[].degradedModel` through the whole program: the worker's
    MODEL_DEGRADED_NAME, and the key Job registers the key with it among its models."""
    pilot_raw["agents"][0]["degradedModel"] = "qwen25-7b"  # researcher, on llama31-8b
    config = load(pilot_raw, "us-east-1", "Pulumi.pilot.yaml")
    inp = read_program_input(ROOT, "pilot")
    agents = [a.model_dump(by_alias=True, exclude_none=True, mode="json") for a in config.agents]
    doc = {**inp.config, "swarmstack:agents": json.dumps(agents)}
    plan = Plan.from_capture(run_program(dataclasses.replace(inp, config=doc)))
    bodies = {(m.kind, m.name): m.body for m in plan.manifests}
    researcher = bodies[("Deployment", "agent-researcher")]["spec"]["template"]["spec"]
    [worker] = [c for c in researcher["containers"] if c["name"] == "worker"]
    assert {"name": "MODEL_DEGRADED_NAME", "value": "qwen25-7b"} in worker["env"]
    concierge = bodies[("Deployment", "agent-concierge")]["spec"]["template"]["spec"]
    [other] = [c for c in concierge["containers"] if c["name"] == "worker"]
    assert "MODEL_DEGRADED_NAME" not in {e["name"] for e in other["env"]}
    requests = json.loads(bodies[("ConfigMap", "model-gateway-key-job")]["data"]["requests.json"])
    models = {r["agent"]: r["request"]["models"] for r in requests}
    # qwen25-7b's own fallbacks come with it, after the agent's model.
    assert models["researcher"] == ["llama31-8b", "qwen25-7b", "gpt-4o-mini"]
    assert models["concierge"] == ["qwen25-7b", "llama31-8b", "gpt-4o-mini"]
