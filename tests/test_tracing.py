# pyright: strict
"""The trace collector: its typed config and errors, the collector config it renders held to
the pinned release, its pod, the component under mocks, and the wiring of the model
servers, the agent workers and the NetworkPolicies to it.

The real OpenTelemetry Collector cannot run here: no registry this machine reaches ships
the core distribution's binary (the one collector binary found in a PyPI wheel is an
unofficial 0.135 test build without the otlp receiver, the otlp_grpc exporter or the
health_check extension). The rendered config is therefore judged by
`components.observe.collector_release.config_problems`, which applies the loader's checks
for the release the image pins (component types of its manifest, config keys and value
types of each component, their Validate() rules, the service's references); the tests
below also show that judge refusing broken configs.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, cast

import pulumi
import pytest
import yaml

from components.observe.collector_release import (
    RELEASE,
    config_problems,
    env_references,
    file_references,
)
from components.observe.tracing import (
    BACKEND_AUTH_FILE,
    BACKEND_SECRET,
    COLLECTOR_RELEASE,
    HEALTH_PORT,
    NAME,
    OTLP_GRPC_PORT,
    OTLP_HTTP_PORT,
    TracingArgs,
    TracingCollector,
    TracingSpec,
    collector_config,
    network_policies,
    pod_template,
    render_collector_config,
    service_spec,
)
from components.serving.model_serving import server_args
from components.specs import CostLabels
from stacks.cli import main
from stacks.config import TRACING_AUTH_HEADER_KEY, ConfigError, load, secret_purposes
from stacks.observability import (
    WORKER_OTLP_VARIABLE,
    otlp_endpoint,
    tracing_network_policies,
    worker_tracing_env,
)
from stacks.plan.recorder import REDACTED, run
from tests.test_plan import make_root

COST = CostLabels(team="agents", cost_center="cc-1", environment="test")
HEADER_VALUE = "Bearer not-a-real-trace-token"
BACKENDS: dict[str, dict[str, Any]] = {
    "debug": {"type": "debug"},
    "none": {"type": "none"},
    "otlp": {"type": "otlp", "endpoint": "https://otlp.example.com:4317"},
    "otlp-auth": {
        "type": "otlp",
        "endpoint": "https://otlp.example.com",
        "authHeader": "authorization",
    },
    "otlp-plaintext": {"type": "otlp", "endpoint": "http://tempo.tracing:4317", "insecure": True},
    "otlphttp-auth": {
        "type": "otlphttp",
        "endpoint": "https://api.example.com/otlp",
        "authHeader": "x-api-key",
    },
    "otlphttp-plaintext": {
        "type": "otlphttp",
        "endpoint": "http://jaeger.tracing:4318",
        "insecure": True,
    },
}


def spec(backend: dict[str, Any] | None = None, **more: Any) -> TracingSpec:
    return TracingSpec.model_validate({"backend": backend or {"type": "debug"}, **more})


def specs() -> dict[str, TracingSpec]:
    return {name: spec(b) for name, b in BACKENDS.items()} | {"one replica": spec(replicas=1)}


def container(t: TracingSpec) -> dict[str, Any]:
    [c] = pod_template(t, COST)["spec"]["containers"]
    return c


# --------------------------------------------------------------------------- rendered config


@pytest.mark.parametrize("name", sorted(specs()))
def test_every_rendered_config_loads_in_the_pinned_release(name: str) -> None:
    rendered = yaml.safe_load(render_collector_config(specs()[name]))
    assert config_problems(rendered) == []


def test_the_image_is_the_release_the_config_was_checked_against() -> None:
    image = spec().image
    assert image.tag == COLLECTOR_RELEASE == RELEASE
    assert image.reference == f"docker.io/otel/opentelemetry-collector:{RELEASE}"


def test_the_pipeline_runs_otlp_through_memory_limiter_then_batch_to_the_backend() -> None:
    for name, t in specs().items():
        config = collector_config(t)
        traces = config["service"]["pipelines"]["traces"]
        assert traces["receivers"] == ["otlp"], name
        # The memory limiter must see data before anything buffers it.
        assert traces["processors"] == ["memory_limiter", "batch"], name
        exporter = {"debug": "debug", "none": "nop", "otlp": "otlp_grpc", "otlphttp": "otlp_http"}[
            t.backend.type
        ]
        assert traces["exporters"] == [exporter], name
        assert list(config["exporters"]) == [exporter], name
        assert config["service"]["extensions"] == ["health_check"]


def broken(change: Any) -> list[str]:
    config = copy.deepcopy(collector_config(spec(BACKENDS["otlp-auth"])))
    change(config)
    return config_problems(config)


def test_the_judge_refuses_what_the_collector_refuses() -> None:
    def unknown_key(c: dict[str, Any]) -> None:
        c["exporters"]["otlp_grpc"]["tls"] = {"insecur": True}

    def undeclared_exporter(c: dict[str, Any]) -> None:
        c["service"]["pipelines"]["traces"]["exporters"] = ["otlp_http"]

    def undeclared_extension(c: dict[str, Any]) -> None:
        c["service"]["extensions"] = ["health_check", "zpages"]

    def deprecated_alias(c: dict[str, Any]) -> None:
        c["exporters"] = {"otlp": c["exporters"]["otlp_grpc"]}

    def not_in_distribution(c: dict[str, Any]) -> None:
        c["processors"]["tail_sampling"] = {}

    def spike_above_limit(c: dict[str, Any]) -> None:
        c["processors"]["memory_limiter"]["spike_limit_percentage"] = 90

    def batch_max_below_size(c: dict[str, Any]) -> None:
        c["processors"]["batch"]["send_batch_max_size"] = 10

    def header_in_clear(c: dict[str, Any]) -> None:
        c["exporters"]["otlp_grpc"]["headers"] = {"authorization": "Bearer abc"}

    def bad_duration(c: dict[str, Any]) -> None:
        c["processors"]["batch"]["timeout"] = "1 second"

    def other_reference(c: dict[str, Any]) -> None:
        c["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] = "${vault:/ip}:4317"

    def no_receiver(c: dict[str, Any]) -> None:
        c["service"]["pipelines"]["traces"]["receivers"] = []

    cases = {
        unknown_key: "exporters.otlp_grpc.tls.insecur: not a config key of otlp_grpc at 0.159.0",
        undeclared_exporter: "references exporter 'otlp_http' which is not configured",
        undeclared_extension: "references extension 'zpages' which is not configured",
        deprecated_alias: "exporters.otlp: 'otlp' is a deprecated alias at 0.159.0",
        not_in_distribution: "has no processor 'tail_sampling'",
        spike_above_limit: "spike_limit_percentage must be below limit_percentage",
        batch_max_below_size: "send_batch_max_size must be greater or equal",
        header_in_clear: "has header values in clear (['authorization'])",
        bad_duration: "processors.batch.timeout: '1 second' is not a Go duration",
        other_reference: "${vault:/ip} is not an ${env:NAME} or ${file:/path} reference",
        no_receiver: "service.pipelines.traces: must have at least one receiver",
    }
    for change, expected in cases.items():
        problems = broken(change)
        assert any(expected in p for p in problems), (change.__name__, problems)


def test_the_auth_header_is_a_file_reference_to_the_mounted_secret() -> None:
    t = spec(BACKENDS["otlp-auth"])
    exporter = collector_config(t)["exporters"]["otlp_grpc"]
    assert exporter["headers"] == {"authorization": f"${{file:{BACKEND_AUTH_FILE}}}"}
    pod = pod_template(t, COST)["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    [mount] = [m for m in container(t)["volumeMounts"] if m["name"] == "backend-auth"]
    assert mount["readOnly"] is True
    assert volumes["backend-auth"]["secret"]["secretName"] == BACKEND_SECRET
    assert volumes["backend-auth"]["secret"]["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]
    # Never an environment value.
    assert all("valueFrom" not in e or "fieldRef" in e["valueFrom"] for e in container(t)["env"])


@pytest.mark.parametrize("name", sorted(specs()))
def test_every_reference_is_a_variable_or_a_mounted_file_of_the_container(name: str) -> None:
    t = specs()[name]
    c = container(t)
    volumes = {v["name"]: v for v in pod_template(t, COST)["spec"]["volumes"]}
    assert env_references(collector_config(t)) <= {e["name"] for e in c["env"]}
    for path in file_references(collector_config(t)):
        mounts = [m for m in c["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
        assert len(mounts) == 1, path
        [mount] = mounts
        volume = volumes[mount["name"]]
        key = path.removeprefix(mount["mountPath"] + "/")
        items = volume.get("secret", volume.get("configMap", {})).get("items", [])
        assert key in {i["path"] for i in items}, path
    if t.backend.auth_header is None:
        assert "backend-auth" not in volumes


def test_plaintext_is_only_what_was_asked_for() -> None:
    assert collector_config(spec(BACKENDS["otlp-plaintext"]))["exporters"]["otlp_grpc"]["tls"] == {
        "insecure": True
    }
    assert "tls" not in collector_config(spec(BACKENDS["otlp"]))["exporters"]["otlp_grpc"]


# --------------------------------------------------------------------------- pod and service


def test_listeners_ports_service_and_probes_agree() -> None:
    t = spec()
    config = collector_config(t)
    c = container(t)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(f":{ports['otlp-grpc']}")
    assert protocols["http"]["endpoint"].endswith(f":{ports['otlp-http']}")
    assert ports["otlp-grpc"] == OTLP_GRPC_PORT and ports["otlp-http"] == OTLP_HTTP_PORT
    health = config["extensions"]["health_check"]
    assert health["endpoint"].endswith(f":{ports['health']}") and ports["health"] == HEALTH_PORT
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": health["path"], "port": "health"}
    service = service_spec()
    assert {(p["port"], p["targetPort"]) for p in service["ports"]} == {
        (OTLP_GRPC_PORT, "otlp-grpc"),
        (OTLP_HTTP_PORT, "otlp-http"),
    }
    labels = pod_template(t, COST)["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()


def test_the_pod_is_restricted_with_resources_and_memory_limit_aligned() -> None:
    t = spec(resources={"memoryMib": 1000})
    pod = pod_template(t, COST)["spec"]
    c = container(t)
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["resources"]["limits"]["memory"] == "1000Mi"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["GOMEMLIMIT"] == "800MiB"


def test_a_new_config_rolls_the_pods() -> None:
    a = pod_template(spec(), COST)["metadata"]["annotations"]
    b = pod_template(spec(batch_size=10), COST)["metadata"]["annotations"]
    assert a != b


# --------------------------------------------------------------------------- typed config


def problems_of(pilot_raw: dict[str, Any], tracing: dict[str, Any]) -> list[str]:
    pilot_raw["observability"]["tracing"] = tracing
    with pytest.raises(ConfigError) as caught:
        load(pilot_raw, "us-east-1", "stacks/Pulumi.pilot.yaml")
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        (
            {"type": "otlp", "endpoint": "otlp.example.com:4317"},
            "observability.tracing.backend: endpoint 'otlp.example.com:4317' is not a URL",
        ),
        (
            {"type": "otlphttp"},
            "observability.tracing.backend: a otlphttp backend needs endpoint",
        ),
        (
            {"type": "debug", "endpoint": "https://otlp.example.com"},
            "observability.tracing.backend: endpoint is for otlp and otlphttp backends, "
            "not 'debug'",
        ),
        (
            {"type": "otlp", "endpoint": "http://tempo:4317"},
            "endpoint 'http://tempo:4317' is plaintext: use https, or set insecure: true",
        ),
        (
            {
                "type": "otlp",
                "endpoint": "http://tempo:4317",
                "insecure": True,
                "authHeader": "authorization",
            },
            "authHeader over the plaintext endpoint 'http://tempo:4317' would send the secret",
        ),
        (
            {"type": "otlp", "endpoint": "https://otlp.example.com/v1/traces"},
            "has a path, which an OTLP/gRPC endpoint does not take",
        ),
        (
            {"type": "otlp", "endpoint": "https://user:pw@otlp.example.com"},
            "carries credentials: put them in authHeader",
        ),
        (
            {"type": "otlp", "endpoint": "https://otlp.example.com", "authHeader": "Auth"},
            "observability.tracing.backend.authHeader: 'Auth' is not valid",
        ),
        (
            {"type": "jaeger"},
            "observability.tracing.backend.type: 'jaeger' is not valid",
        ),
    ],
)
def test_bad_backends_are_refused_naming_the_path(
    pilot_raw: dict[str, Any], backend: dict[str, Any], expected: str
) -> None:
    problems = problems_of(pilot_raw, {"backend": backend})
    assert any(expected in p for p in problems), problems


def test_another_collector_release_is_refused(pilot_raw: dict[str, Any]) -> None:
    image = {"repository": "docker.io/otel/opentelemetry-collector", "tag": "0.160.0"}
    [problem] = problems_of(pilot_raw, {"image": image})
    assert problem.startswith("observability.tracing: image.tag '0.160.0' is not the collector")


def test_the_auth_header_secret_is_asked_for_only_when_used(pilot_raw: dict[str, Any]) -> None:
    config = load(pilot_raw, "us-east-1", "x")
    assert TRACING_AUTH_HEADER_KEY not in secret_purposes(config)
    pilot_raw["observability"]["tracing"] = {"backend": BACKENDS["otlp-auth"]}
    config = load(pilot_raw, "us-east-1", "x")
    assert "header 'authorization'" in secret_purposes(config)[TRACING_AUTH_HEADER_KEY]


# --------------------------------------------------------------------------- component


def declare(t: TracingSpec, header: str | None = None) -> Any:
    def program() -> None:
        TracingCollector(
            "tracing",
            TracingArgs(
                spec=t,
                namespace="swarmstack-monitoring",
                namespace_name="swarmstack-monitoring",
                cost_labels=COST,
                auth_header=pulumi.Output.secret(header) if header is not None else None,
            ),
        )

    return run(program)


def test_component_declares_config_deployment_service_and_pdb() -> None:
    capture = declare(spec(replicas=2))
    [component] = capture.of_type("swarmstack:observe:TracingCollector")
    kinds = {r.type: r for r in capture.registrations if r.parent == component.urn}
    assert set(kinds) == {
        "kubernetes:core/v1:ConfigMap",
        "kubernetes:apps/v1:Deployment",
        "kubernetes:core/v1:Service",
        "kubernetes:policy/v1:PodDisruptionBudget",
    }
    config_map = kinds["kubernetes:core/v1:ConfigMap"].inputs
    assert yaml.safe_load(config_map["data"]["config.yaml"]) == collector_config(spec())
    deployment = kinds["kubernetes:apps/v1:Deployment"]
    assert deployment.inputs["spec"]["replicas"] == 2
    assert deployment.inputs["metadata"]["name"] == NAME
    assert kinds["kubernetes:core/v1:ConfigMap"].urn in deployment.dependencies
    pdb = kinds["kubernetes:policy/v1:PodDisruptionBudget"].inputs["spec"]
    assert pdb["maxUnavailable"] == 1


def test_one_replica_has_no_pdb() -> None:
    capture = declare(spec(replicas=1))
    assert capture.of_type("kubernetes:policy/v1:PodDisruptionBudget") == []
    assert capture.of_type("kubernetes:apps/v1:Deployment")[0].inputs["spec"]["replicas"] == 1


def test_the_auth_header_is_a_secret_and_never_in_clear() -> None:
    t = spec(BACKENDS["otlphttp-auth"])
    capture = declare(t, HEADER_VALUE)
    [secret] = capture.of_type("kubernetes:core/v1:Secret")
    assert secret.inputs["metadata"]["name"] == BACKEND_SECRET
    assert secret.inputs["stringData"] == {"auth-header": REDACTED}
    assert secret.has_secrets  # the engine keeps it encrypted in the state
    everything = json.dumps([r.inputs for r in capture.registrations])
    assert "not-a-real-trace-token" not in everything
    assert capture.of_type("kubernetes:core/v1:Secret")[0].urn in (
        capture.of_type("kubernetes:apps/v1:Deployment")[0].dependencies
    )


def test_without_an_auth_header_there_is_no_secret() -> None:
    assert declare(spec(BACKENDS["otlp"])).of_type("kubernetes:core/v1:Secret") == []


# --------------------------------------------------------------------------- wiring


def pilot(pilot_raw: dict[str, Any], tracing: dict[str, Any] | None = None) -> Any:
    if tracing is not None:
        pilot_raw["observability"]["tracing"] = tracing
    return load(pilot_raw, "us-east-1", "stacks/Pulumi.pilot.yaml")


def test_models_and_workers_export_to_the_collector_service(pilot_raw: dict[str, Any]) -> None:
    config = pilot(pilot_raw)
    url = "http://otel-collector.swarmstack-monitoring.svc.cluster.local:4317"
    assert otlp_endpoint(config) == url
    for model in config.models:
        argv = server_args(model, otlp_endpoint(config))
        assert argv[argv.index("--otlp-traces-endpoint") + 1] == url
    assert worker_tracing_env(config) == {"OTEL_EXPORTER_OTLP_ENDPOINT": url}


def test_the_worker_accepts_the_environment_the_stack_renders(pilot_raw: dict[str, Any]) -> None:
    from agent_worker.config import load_settings  # noqa: PLC0415

    env = {
        "MODEL_BASE_URL": "http://qwen25-7b.swarmstack-models.svc.cluster.local:8000/v1",
        "MODEL_NAME": "Qwen/Qwen2.5-7B-Instruct",
        "REDIS_URL": "redis://session-store.swarmstack-data.svc:6379/0",
        **worker_tracing_env(pilot(pilot_raw)),
    }
    settings = load_settings(env)
    assert settings.otel_endpoint == env[WORKER_OTLP_VARIABLE]


def test_tracing_off_means_no_endpoint_no_flag_no_policies(pilot_raw: dict[str, Any]) -> None:
    config = pilot(pilot_raw, {"enabled": False})
    assert otlp_endpoint(config) is None
    assert worker_tracing_env(config) == {}
    assert tracing_network_policies(config) == {}
    assert "--otlp-traces-endpoint" not in server_args(config.models[0], otlp_endpoint(config))


def ports(rule: dict[str, Any]) -> set[int]:
    return {int(p["port"]) for p in rule.get("ports", [])}


def test_senders_may_reach_the_collector_and_it_reaches_only_dns_and_its_backend() -> None:
    debug = network_policies(spec(), monitoring="mon", senders={"models": "m-ns", "agents": "a-ns"})
    for role, ns in (("models", "m-ns"), ("agents", "a-ns")):
        policy = debug[f"{role}-allow-trace-export"]
        assert policy["namespace"] == ns
        [rule] = policy["spec"]["egress"]
        assert ports(rule) == {OTLP_GRPC_PORT, OTLP_HTTP_PORT}
        [peer] = rule["to"]
        assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "mon"}
    collector = debug["monitoring-trace-collector"]
    assert collector["namespace"] == "mon"
    assert collector["spec"]["policyTypes"] == ["Ingress", "Egress"]
    senders, probes = collector["spec"]["ingress"]
    assert {
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for p in senders["from"]
    } == {"m-ns", "a-ns"}
    assert ports(probes) == {HEALTH_PORT}
    # debug: nothing to reach but DNS
    assert [ports(r) for r in collector["spec"]["egress"]] == [{53}]
    for backend, port in (("otlp", 4317), ("otlp-auth", 443), ("otlphttp-plaintext", 4318)):
        policies = network_policies(spec(BACKENDS[backend]), monitoring="mon", senders={})
        egress = cast(
            list[dict[str, Any]], policies["monitoring-trace-collector"]["spec"]["egress"]
        )
        assert [ports(r) for r in egress] == [{53}, {port}], backend


# --------------------------------------------------------------------------- the plan


def test_a_stack_with_an_authenticated_backend_plans_clean(tmp_path: Path) -> None:
    """The whole program with an OTLP backend behind an auth header: the plan's schema
    checks and the policy pack accept it, and the header's value appears nowhere."""
    encrypted = "AAABAJ3kq0tL7Rn2dHJhY2UtaGVhZGVyLXNlY3JldA=="

    def backend(config: dict[str, Any]) -> None:
        config["swarmstack:observability"]["tracing"] = {"backend": BACKENDS["otlp-auth"]}
        config[f"swarmstack:{TRACING_AUTH_HEADER_KEY}"] = {"secure": encrypted}

    root = make_root(tmp_path, backend)
    out = tmp_path / "out"
    assert main(["plan", "pilot", "--root", str(root), "--out", str(out)]) == 0
    plan = out / "pilot"
    texts = "".join(p.read_text() for p in plan.rglob("*") if p.is_file())
    assert encrypted not in texts
    findings = json.loads((plan / "policy.json").read_text())
    collector = [f for f in findings if "otel-collector" in f["message"]]
    assert [f["rule"] for f in collector] == ["image-digest-pinned"]  # advisory only
    manifests = {p.name: yaml.safe_load(p.read_text()) for p in (plan / "manifests").iterdir()}
    [secret] = [m for n, m in manifests.items() if n.endswith("secret-otel-collector-backend.yaml")]
    assert set(secret["stringData"]) == {"auth-header"}
    [policy] = [
        m
        for n, m in manifests.items()
        if n.endswith("monitoring-networkpolicy-otel-collector.yaml")
    ]
    assert [ports(r) for r in policy["spec"]["egress"]] == [{53}, {443}]
