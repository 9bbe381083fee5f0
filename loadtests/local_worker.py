"""The local target's agent worker, as a stack deploys it, and how it differs on one machine.

The worker runs with the command and environment the stack's `AgentWorkload` renders for
the stand-in agent type (`worker_container` in components/agents/workload.py): the offline
plan's program runs on the mock runtime and its Deployment's container is read back
(`rendered_worker`). `local_env` then lists, in this one place, every variable the local
target sets differently, drops or adds, and why; `local_command` does the same for the
command. Nothing else is added, changed or dropped, and nothing is inherited from the
launching shell: the process environment is exactly the rendering with these entries
applied (an e2e test reads it back from /proc/<pid>/environ).

`apply_local_env` refuses, with the variable named:
- a stale entry: a `set` or `drop` of a variable the rendering no longer has, an `add`
  of one it has;
- a rendered variable a pod does not get as a plain value, left without an entry: the
  path of a mounted Secret key (nothing is mounted here) or a downward-API field (no pod
  here). Each must be resolved explicitly (`set` to a local value, or `drop` with the
  reason the local service does without it), never silently passed through.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from components.agents.spec import WORKER_COMMAND, WORKER_PORT
from components.agents.workload import WorkerEnv
from components.data.contract import SecretRef
from loadtests import services
from loadtests.services import Service

ROOT = Path(__file__).resolve().parent.parent
WORKER_SOURCE = ROOT / "images" / "agent-worker"
DEPLOYMENT_TYPE = "kubernetes:apps/v1:Deployment"
WORKER_CONTAINER = "worker"  # components/agents/workload.py's container
_LABEL_FIELD = ("metadata.labels['", "']")


class LocalWorkerError(ValueError):
    """The local differences no longer fit the rendered worker."""


@dataclass(frozen=True)
class RenderedWorker:
    """One agent type's worker container as the stack's plan declares it."""

    agent: str
    command: tuple[str, ...]
    env: tuple[WorkerEnv, ...]
    pod_labels: Mapping[str, str]

    def literal(self, name: str) -> str:
        """A rendered plain value (a variable that is neither a Secret file nor a field)."""
        found = next((e for e in self.env if e.name == name), None)
        if found is None or not isinstance(found.value, str):
            raise LocalWorkerError(f"the rendered worker of {self.agent!r} has no value {name}")
        return found.value


@dataclass(frozen=True)
class LocalEnv:
    """One difference between the local worker's environment and the rendered one.

    `set` replaces a rendered variable's value, `drop` removes a rendered variable, `add`
    sets one the rendering does not have."""

    name: str
    action: Literal["set", "add", "drop"]
    value: str | None
    reason: str


@dataclass(frozen=True)
class LocalSite:
    """Where this machine's processes are: what the local worker is pointed at."""

    port: int
    gateway_url: str  # the local model gateway's scheme://host:port (loadtests/gateway.py)
    gateway_key_file: Path  # the key file the local gateway accepts
    redis_url: str
    qdrant_path: Path


def on_local_gateway(rendered_url: str, gateway_url: str) -> str:
    """`rendered_url` (a URL of the in-cluster gateway Service) with its scheme, host and
    port replaced by `gateway_url`'s; the path (`/v1`, the readiness path) stays as rendered."""
    local = urlsplit(gateway_url)
    if not local.scheme or not local.netloc or local.path not in ("", "/"):
        raise LocalWorkerError(f"the local gateway URL {gateway_url!r} is not scheme://host:port")
    return urlunsplit(urlsplit(rendered_url)._replace(scheme=local.scheme, netloc=local.netloc))


def _container(deployment: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    template = deployment["spec"]["template"]
    containers = [c for c in template["spec"]["containers"] if c["name"] == WORKER_CONTAINER]
    if len(containers) != 1:
        raise LocalWorkerError(f"the Deployment has no single {WORKER_CONTAINER!r} container")
    return containers[0], template


def _mounted_secrets(
    template: Mapping[str, Any], container: Mapping[str, Any], namespace: str
) -> dict[str, SecretRef]:
    """Path -> Secret key of every file the container mounts from a projected Secret."""
    volumes = {v["name"]: v for v in template["spec"].get("volumes") or []}
    files: dict[str, SecretRef] = {}
    for mount in container.get("volumeMounts") or []:
        projected = volumes.get(mount["name"], {}).get("projected")
        for source in (projected or {}).get("sources") or []:
            secret = source.get("secret")
            for item in (secret or {}).get("items") or []:
                path = f"{mount['mountPath'].rstrip('/')}/{item['path']}"
                files[path] = SecretRef(namespace, secret["name"], item["key"])
    return files


def worker_from_deployment(agent: str, deployment: Mapping[str, Any]) -> RenderedWorker:
    """The rendered worker container read back from its Deployment (wire form)."""
    container, template = _container(deployment)
    namespace = (deployment.get("metadata") or {}).get("namespace")
    secrets = _mounted_secrets(template, container, namespace if isinstance(namespace, str) else "")
    env: list[WorkerEnv] = []
    for item in container.get("env") or []:
        source = item.get("valueFrom")
        if source is not None:
            field = (source.get("fieldRef") or {}).get("fieldPath")
            if field is None:
                raise LocalWorkerError(f"{item['name']}: only fieldRef sources are rendered")
            env.append(WorkerEnv(item["name"], field_path=str(field)))
        else:
            value = str(item.get("value", ""))
            env.append(WorkerEnv(item["name"], value, secret=secrets.get(value)))
    return RenderedWorker(
        agent=agent,
        command=tuple(container.get("command") or ()),
        env=tuple(env),
        pod_labels=dict(template["metadata"].get("labels") or {}),
    )


def rendered_worker(agent: str, *, stack: str = "pilot", root: Path = ROOT) -> RenderedWorker:
    """What the stack's program declares for `agent`'s workers: the offline plan's program
    (stacks/plan/runner.py) on the mock runtime, its `agent-<agent>` Deployment read back."""
    from stacks.plan.runner import read_program_input, run_program  # noqa: PLC0415

    capture = run_program(read_program_input(root, stack))
    found = [
        r.inputs
        for r in capture.registrations
        if r.type == DEPLOYMENT_TYPE
        and r.inputs.get("metadata", {}).get("name") == f"agent-{agent}"
    ]
    if len(found) != 1:
        raise LocalWorkerError(f"stack {stack!r} declares no Deployment agent-{agent}")
    return worker_from_deployment(agent, found[0])


def local_env(site: LocalSite, rendered: RenderedWorker) -> tuple[LocalEnv, ...]:
    """Every variable the local worker gets differently from a pod, with its reason."""
    return (
        LocalEnv(
            "WORKER_HOST",
            "set",
            "127.0.0.1",
            "the local target listens on loopback only; a pod listens on every interface "
            "for its Service and the mesh",
        ),
        LocalEnv(
            "WORKER_PORT",
            "set",
            str(site.port),
            f"a free port of this machine (a pod has its own network namespace and "
            f"{WORKER_PORT}), so runs and tests can share it",
        ),
        LocalEnv(
            "MODEL_BASE_URL",
            "set",
            on_local_gateway(rendered.literal("MODEL_BASE_URL"), site.gateway_url),
            "the local model gateway (LiteLLM's proxy with the stack's rendered config, "
            "loadtests/gateway.py) on loopback instead of its in-cluster Service: only the "
            "host and port differ, the path is as rendered",
        ),
        LocalEnv(
            "MODEL_HEALTH_URL",
            "set",
            on_local_gateway(rendered.literal("MODEL_HEALTH_URL"), site.gateway_url),
            "the same local gateway's own readiness endpoint, as rendered but on loopback",
        ),
        LocalEnv(
            "MODEL_API_KEY_FILE",
            "set",
            str(site.gateway_key_file),
            "a pod mounts its agent's virtual key (HMAC-derived, applied by the key Job); "
            "virtual keys live in the gateway's Postgres, which cannot run here (Prisma "
            "fetches its engines from the internet), so the local gateway accepts only its "
            "master key, and this file (mode 0600) holds the run's master key",
        ),
        LocalEnv(
            "REDIS_URL",
            "set",
            site.redis_url,
            "the local redis-server (rendered redis.conf, services.start_redis) on loopback, "
            "without TLS, instead of the session store's in-cluster Service",
        ),
        LocalEnv(
            "REDIS_PASSWORD_FILE",
            "drop",
            None,
            "a mounted Secret key in a pod; the local redis-server serves only this "
            "machine's loopback and has no ACL user to authenticate as",
        ),
        LocalEnv(
            "REDIS_CA_FILE",
            "drop",
            None,
            "a mounted Secret key in a pod (the cert-manager CA); the local Redis speaks "
            "plain TCP on loopback",
        ),
        LocalEnv(
            "QDRANT_URL",
            "drop",
            None,
            "no Qdrant server binary installs here; the worker uses qdrant-client's "
            "in-process local mode (QDRANT_PATH) with the same collection and seed",
        ),
        LocalEnv(
            "QDRANT_API_KEY_FILE",
            "drop",
            None,
            "a mounted Secret key in a pod; the in-process Qdrant has no API key",
        ),
        LocalEnv(
            "QDRANT_CA_FILE",
            "drop",
            None,
            "a mounted Secret key in a pod (the cert-manager CA); the in-process Qdrant has no TLS",
        ),
        LocalEnv(
            "QDRANT_PATH",
            "add",
            str(site.qdrant_path),
            "the in-process Qdrant's folder, one per worker (local mode locks it)",
        ),
        LocalEnv(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "drop",
            None,
            "the local target runs no OpenTelemetry Collector; without an endpoint the "
            "worker exports no spans",
        ),
        LocalEnv(
            "AGENT_TEAM",
            "set",
            team_label(rendered),
            "a pod reads it from its own `team` label through the downward API; here it "
            "is that label of the rendered pod template",
        ),
        LocalEnv(
            "PYTHONPATH",
            "add",
            str(WORKER_SOURCE),
            "the image's ENV puts the worker package on the path (/opt/app); here it is "
            "the source folder",
        ),
        LocalEnv(
            "PYTHONUNBUFFERED",
            "add",
            "1",
            "the image's ENV sets it, so log lines reach the log file as they are written",
        ),
    )


def team_label(rendered: RenderedWorker) -> str:
    """The downward-API field AGENT_TEAM reads (`metadata.labels['team']`), resolved from
    the rendered pod template's labels."""
    (team,) = [e for e in rendered.env if e.name == "AGENT_TEAM"] or [None]
    if team is None or team.field_path is None:
        raise LocalWorkerError("AGENT_TEAM is not rendered from the downward API any more")
    prefix, suffix = _LABEL_FIELD
    field = team.field_path
    if not (field.startswith(prefix) and field.endswith(suffix)):
        raise LocalWorkerError(f"AGENT_TEAM reads {field}, which is not a pod label")
    label = field[len(prefix) : -len(suffix)]
    if label not in rendered.pod_labels:
        raise LocalWorkerError(f"AGENT_TEAM reads the label {label!r}, which the pod lacks")
    return rendered.pod_labels[label]


def apply_local_env(rendered: RenderedWorker, entries: Sequence[LocalEnv]) -> dict[str, str]:
    """The rendered environment with `entries` applied: the whole process environment.

    Raises LocalWorkerError on a stale entry or a Secret-file, downward-API or unknown
    (not yet computed) value left unresolved."""
    env: dict[str, WorkerEnv] = {e.name: e for e in rendered.env}
    out: dict[str, str] = {}
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise LocalWorkerError(f"{entry.name} is listed twice: keep one entry")
        seen.add(entry.name)
        if entry.action == "add":
            if entry.name in env:
                raise LocalWorkerError(
                    f"{entry.name} is rendered already ({_source(env[entry.name])}): 'set' it "
                    "instead of 'add'"
                )
        elif entry.name not in env:
            raise LocalWorkerError(
                f"stale local override: {entry.name} is not rendered for agent "
                f"{rendered.agent!r} any more: remove its '{entry.action}' entry"
            )
        if entry.action != "drop":
            if entry.value is None:
                raise LocalWorkerError(f"{entry.name}: '{entry.action}' needs a value")
            out[entry.name] = entry.value
    for name, item in env.items():
        if name in seen:
            continue
        if (
            item.field_path is not None
            or item.secret is not None
            or not isinstance(item.value, str)
        ):
            raise LocalWorkerError(
                f"{name} is {_source(item)} in a pod: the local target must resolve it "
                "explicitly ('set' a local value or 'drop' it, with the reason, in "
                "loadtests/local_worker.py local_env)"
            )
        out[name] = item.value
    return out


def _source(item: WorkerEnv) -> str:
    if item.field_path is not None:
        return f"from the downward API ({item.field_path})"
    if item.secret is not None:
        return (
            f"the path of a mounted Secret key ({item.secret.name}/{item.secret.key} at "
            f"{item.value})"
        )
    if not isinstance(item.value, str):
        return "a value known only once deployed"
    return f"{item.value!r}"


INTERPRETER_REASON = (
    "the image's `python` is its venv's (/opt/venv/bin on PATH); here it is the "
    "interpreter of this checkout's venv, which has the worker's requirements"
)


def local_command(rendered: RenderedWorker, python: str = sys.executable) -> list[str]:
    """The rendered command with its interpreter replaced (`INTERPRETER_REASON`); the
    rest stays as rendered."""
    if rendered.command != WORKER_COMMAND or not rendered.command:
        raise LocalWorkerError(
            f"the rendered worker command is {list(rendered.command)}, not "
            f"{list(WORKER_COMMAND)}: revisit local_command"
        )
    return [python, *rendered.command[1:]]


@dataclass(frozen=True)
class LocalWorker:
    """The local worker's whole launch: command, environment, and each difference."""

    command: list[str]
    env: dict[str, str]
    differences: tuple[LocalEnv, ...]


def local_worker(
    rendered: RenderedWorker, site: LocalSite, extra: Sequence[LocalEnv] = ()
) -> LocalWorker:
    """The rendered worker with the local differences (and a test's `extra` ones, each
    with its own reason) applied."""
    differences = (*local_env(site, rendered), *extra)
    return LocalWorker(
        command=local_command(rendered),
        env=apply_local_env(rendered, differences),
        differences=differences,
    )


def start_local_worker(
    rendered: RenderedWorker,
    site: LocalSite,
    *,
    workdir: Path,
    extra: Sequence[LocalEnv] = (),
    timeout_s: float = 60,
) -> tuple[Service, LocalWorker]:
    """The rendered worker on this machine at `site`; returns once /readyz answers 200."""
    launch = local_worker(rendered, site, extra)
    service = services.start_worker_process(
        launch.command, launch.env, port=site.port, workdir=workdir, timeout_s=timeout_s
    )
    return service, launch
