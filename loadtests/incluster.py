"""Locust inside the cluster, next to the stack's internal Services: manifests and reports.

A stack's model gateway is a ClusterIP Service behind STRICT mTLS, so a load test from
outside cannot reach it. `render_manifests` renders, from the stack's outputs
(`loadtests/stack_outputs.py`), a run of the load-test image (`images/loadtest`) in the
gateway's namespace:

- a master Job (one pod: `python -m loadtests.run --master ...`, which aggregates every
  worker's samples, judges them against the outputs' SLO and prints its reports between
  markers in its log) and a worker Job (`parallelism` = `completions` = workers; each
  worker exits when the master quits, which completes the Job);
- both bounded in time three ways: Locust's `-t` (`--run-time`), the runner's own bound
  (`-t` + `--stop-timeout` + 60 s, then it stops Locust), and the Jobs'
  `activeDeadlineSeconds` (that bound + `STARTUP_MARGIN_S` for scheduling, the image pull
  and the workers' connection), with `backoffLimit: 0` (a failed run is not repeated) and
  `ttlSecondsAfterFinished` (the finished Jobs and their pods are deleted);
- a ClusterIP Service for the master's port, a ServiceAccount without a token, the outputs
  the runner reads in a ConfigMap (only `NEEDED` of them: no secret), the API key from an
  existing Secret mounted as a file (`--api-key-secret`; it is never in an argument, the
  environment or a rendered manifest);
- NetworkPolicies in the namespace's default-deny: the load-test pods reach only the
  gateway's pods on its port and the master's port, and the master admits only the
  workers (DNS is the namespace's own `allow-dns`); an Istio AuthorizationPolicy adds the
  run's service account to the principals the gateway admits on its port (ALLOW policies
  add up, so the agents' own policy is unchanged).

The pods join the mesh like every pod of the namespace (the mesh runs native sidecars,
`ENABLE_NATIVE_SIDECARS`, so the proxy stops after Locust and the Jobs complete).

Nothing here runs on `pulumi up`: `swarmstack loadtest-manifests` renders the manifests
(and refuses them if the plan's schema checks or the policy pack's resource rules fail),
`python -m loadtests.incluster run` applies them with kubectl, waits for the master, reads
its log and writes the reports it printed (`summary.json`, Locust's CSVs) into `--out`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from loadtests.report import reports_from_log
from loadtests.run import WORKERS_WAIT_S
from loadtests.stack_outputs import (
    OutputsError,
    StackTarget,
    needed_outputs,
    read_outputs,
    target_from_outputs,
)

MASTER_PORT = 5557  # Locust's default master port (workers connect here)
OUTPUTS_DIR = "/etc/swarmstack/loadtest"
OUTPUTS_FILE = f"{OUTPUTS_DIR}/outputs.json"
KEY_DIR = "/etc/swarmstack/loadtest-key"
API_KEY_KEY = "api-key"  # the Secret key holding the gateway key (the agents' key Secrets')
REPORTS_DIR = "/reports"
RUN_AS = 10001  # the image's user (images/loadtest/Dockerfile)
STARTUP_MARGIN_S = 120  # scheduling, image pull, sidecar start
# loadtests.run stops Locust this long after -t + --stop-timeout (its own bound, with the
# master's wait for its workers).
RUNNER_MARGIN_S = 60 + WORKERS_WAIT_S
COMPONENT = "loadtest"
CONTAINER = "locust"

_CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
}
_POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS,
    "runAsGroup": RUN_AS,
    "fsGroup": RUN_AS,
    "seccompProfile": {"type": "RuntimeDefault"},
}


class RunSpecError(ValueError):
    """An in-cluster run that cannot be rendered as asked."""


@dataclass(frozen=True)
class RunSpec:
    """What to run: load, duration, workers, image and the Secret with the gateway key."""

    image: str  # the load-test image, registry/repository:tag
    api_key_secret: str  # a Secret in the gateway's namespace holding `api-key`
    name: str = "loadtest"
    model: str | None = None  # gateway model (default: the first with an SLO)
    users: int = 64
    spawn_rate: float = 4.0
    run_time_s: int = 600
    stop_timeout_s: int = 60
    workers: int = 2
    ttl_s: int = 3600  # ttlSecondsAfterFinished
    worker_cpu: str = "1"
    worker_memory: str = "1Gi"
    locust_options: tuple[str, ...] = field(default_factory=tuple[str, ...])

    def problems(self) -> list[str]:
        out: list[str] = []
        if not self.image or ":" not in self.image.rsplit("/", 1)[-1]:
            out.append(f"--image {self.image!r}: give registry/repository:tag (a pinned tag)")
        elif self.image.endswith(":latest"):
            out.append(f"--image {self.image!r}: `latest` is not a version; pin a tag")
        if not self.api_key_secret:
            out.append("--api-key-secret: name the Secret holding the gateway key")
        for label, value in (
            ("--users", self.users),
            ("--workers", self.workers),
            ("--run-time", self.run_time_s),
        ):
            if value < 1:
                out.append(f"{label} {value}: must be at least 1")
        if self.spawn_rate <= 0:
            out.append(f"--spawn-rate {self.spawn_rate:g}: must be above 0")
        if self.stop_timeout_s < 0 or self.ttl_s < 0:
            out.append("--stop-timeout and --ttl must not be negative")
        if (
            len(self.name) > 40
            or not self.name.replace("-", "").isalnum()
            or self.name != self.name.lower()
        ):
            out.append(f"--name {self.name!r}: lower-case letters, digits and '-', at most 40")
        return out

    @property
    def deadline_s(self) -> int:
        """activeDeadlineSeconds of both Jobs."""
        return self.run_time_s + self.stop_timeout_s + RUNNER_MARGIN_S + STARTUP_MARGIN_S


def runner_args(
    spec: RunSpec,
    target: StackTarget,
    *,
    outputs: str,
    api_key_file: str,
    out: str,
) -> list[str]:
    """The arguments of `python -m loadtests.run` for this run (local or the master's)."""
    args = [
        "--outputs", outputs,
        "--model", target.model,
        "-u", str(spec.users),
        "-r", f"{spec.spawn_rate:g}",
        "-t", str(spec.run_time_s),
        "--stop-timeout", str(spec.stop_timeout_s),
        "--api-key-file", api_key_file,
        "--out", out,
    ]  # fmt: skip
    return args + (["--", *spec.locust_options] if spec.locust_options else [])


def master_args(spec: RunSpec, target: StackTarget) -> list[str]:
    """The master's arguments: the local runner's, with the pod's paths, plus master mode."""
    local = runner_args(
        spec, target, outputs=OUTPUTS_FILE, api_key_file=f"{KEY_DIR}/{API_KEY_KEY}", out=REPORTS_DIR
    )
    head, sep, tail = _split_options(local)
    mode = [
        "--master", "--master-bind-host", "0.0.0.0",
        "--expect-workers", str(spec.workers), "--print-reports",
    ]  # fmt: skip
    return [*head, *mode, *sep, *tail]


def worker_args(spec: RunSpec, target: StackTarget) -> list[str]:
    """Each worker's: connect to the master's Service; the locustfile's own options (the
    model and the key file) as the master has them."""
    return [
        "--worker", "--master-host", master_service(spec), "--master-port", str(MASTER_PORT),
        "--", "--model-name", target.model, "--api-key-file", f"{KEY_DIR}/{API_KEY_KEY}",
        *spec.locust_options,
    ]  # fmt: skip


def _split_options(argv: list[str]) -> tuple[list[str], list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], ["--"], argv[i + 1 :]
    return argv, [], []


def master_service(spec: RunSpec) -> str:
    return f"{spec.name}-master"


def _labels(spec: RunSpec, target: StackTarget, role: str) -> dict[str, str]:
    return {
        **target.cost_labels,
        "app.kubernetes.io/name": spec.name,
        "app.kubernetes.io/component": COMPONENT,
        "app.kubernetes.io/part-of": "swarmstack",
        "swarmstack.io/loadtest-role": role,
    }


def _selector(spec: RunSpec, role: str | None = None) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/component": COMPONENT}
    if role is not None:
        labels["swarmstack.io/loadtest-role"] = role
    return {"matchLabels": labels}


def _container(
    spec: RunSpec, args: list[str], resources: dict[str, Any], ports: list[dict[str, Any]]
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": [
            {"name": "MPLCONFIGDIR", "value": "/tmp/matplotlib"},
            {"name": "HOME", "value": "/tmp"},
        ],
        "resources": resources,
        "securityContext": _CONTAINER_SECURITY,
        "volumeMounts": [
            {"name": "outputs", "mountPath": OUTPUTS_DIR, "readOnly": True},
            {"name": "api-key", "mountPath": KEY_DIR, "readOnly": True},
            {"name": "reports", "mountPath": REPORTS_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if ports:
        container["ports"] = ports
    return container


def _job(
    spec: RunSpec,
    target: StackTarget,
    role: str,
    container: dict[str, Any],
    *,
    pods: int,
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"{spec.name}-{role}",
            "namespace": target.namespace,
            "labels": _labels(spec, target, role),
        },
        "spec": {
            "parallelism": pods,
            "completions": pods,
            "backoffLimit": 0,
            "activeDeadlineSeconds": spec.deadline_s,
            "ttlSecondsAfterFinished": spec.ttl_s,
            "template": {
                "metadata": {"labels": _labels(spec, target, role)},
                "spec": {
                    "serviceAccountName": spec.name,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "restartPolicy": "Never",
                    "securityContext": _POD_SECURITY,
                    "containers": [container],
                    "volumes": [
                        {"name": "outputs", "configMap": {"name": f"{spec.name}-outputs"}},
                        {
                            "name": "api-key",
                            "secret": {
                                "secretName": spec.api_key_secret,
                                "defaultMode": 0o440,
                                "items": [{"key": API_KEY_KEY, "path": API_KEY_KEY}],
                            },
                        },
                        {"name": "reports", "emptyDir": {"sizeLimit": "1Gi"}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                    ],
                },
            },
        },
    }


def render_manifests(outputs: Mapping[str, Any], spec: RunSpec) -> list[dict[str, Any]]:
    """Every object of one in-cluster run, in the order `kubectl apply` should create them."""
    problems = spec.problems()
    if problems:
        raise RunSpecError("; ".join(problems))
    target = target_from_outputs(outputs, spec.model)
    ns = target.namespace
    meta = lambda name: {"name": name, "namespace": ns, "labels": _labels(spec, target, "run")}  # noqa: E731
    master_port = {"name": "tcp-locust", "containerPort": MASTER_PORT, "protocol": "TCP"}
    master = _container(
        spec,
        master_args(spec, target),
        {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "512Mi"}},
        [master_port],
    )
    # The workers' Service has endpoints only once the master listens.
    master["readinessProbe"] = {
        "tcpSocket": {"port": MASTER_PORT},
        "periodSeconds": 5,
        "failureThreshold": 3,
    }
    worker = _container(
        spec,
        worker_args(spec, target),
        {
            "requests": {"cpu": spec.worker_cpu, "memory": spec.worker_memory},
            "limits": {"memory": spec.worker_memory},
        },
        [],
    )
    loadtest_pods = _selector(spec)
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(spec.name),
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(f"{spec.name}-outputs"),
            "data": {"outputs.json": json.dumps(needed_outputs(outputs), sort_keys=True)},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta(f"allow-{spec.name}-to-gateway"),
            "spec": {
                "podSelector": loadtest_pods,
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{"podSelector": {"matchLabels": dict(target.pod_selector)}}],
                        "ports": [{"protocol": "TCP", "port": target.port}],
                    },
                    {
                        "to": [{"podSelector": _selector(spec, "master")}],
                        "ports": [{"protocol": "TCP", "port": MASTER_PORT}],
                    },
                ],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta(f"allow-{spec.name}-workers-to-master"),
            "spec": {
                "podSelector": _selector(spec, "master"),
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"podSelector": _selector(spec, "worker")}],
                        "ports": [{"protocol": "TCP", "port": MASTER_PORT}],
                    }
                ],
            },
        },
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": meta(f"{spec.name}-to-gateway"),
            "spec": {
                "selector": {"matchLabels": dict(target.pod_selector)},
                "action": "ALLOW",
                "rules": [
                    {
                        "from": [
                            {"source": {"principals": [f"cluster.local/ns/{ns}/sa/{spec.name}"]}}
                        ],
                        "to": [{"operation": {"ports": [str(target.port)]}}],
                    }
                ],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(master_service(spec)),
            # A ClusterIP, not headless: the name resolves from the start, so a worker that
            # starts before the master only waits for its connection (ZeroMQ retries)
            # instead of failing on a name that does not resolve yet.
            "spec": {
                "type": "ClusterIP",
                "selector": _selector(spec, "master")["matchLabels"],
                "ports": [
                    {
                        "name": "tcp-locust",
                        "port": MASTER_PORT,
                        "targetPort": MASTER_PORT,
                        "protocol": "TCP",
                        "appProtocol": "tcp",
                    }
                ],
            },
        },
        _job(spec, target, "master", master, pods=1),
        _job(spec, target, "worker", worker, pods=spec.workers),
    ]


def to_yaml(manifests: Sequence[Mapping[str, Any]]) -> str:
    return yaml.safe_dump_all(list(manifests), sort_keys=False)


# --------------------------------------------------------------------------- kubectl


def _kubectl(
    kubectl: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl, *args], input=stdin, capture_output=True, text=True, check=False
    )


def run_in_cluster(
    manifests: list[dict[str, Any]],
    spec: RunSpec,
    namespace: str,
    out: Path,
    *,
    kubectl: str = "kubectl",
    poll_s: float = 10.0,
) -> int:
    """Apply, wait for the master Job within its deadline, fetch its reports, clean up.

    Exit status: the master's (0 SLOs held, 1 an SLO failed, 2 the run failed)."""
    applied = _kubectl(kubectl, "apply", "-f", "-", stdin=to_yaml(manifests))
    if applied.returncode != 0:
        print(f"error: kubectl apply failed: {applied.stderr.strip()}", file=sys.stderr)
        return 2
    job = f"job/{spec.name}-master"
    code = 2
    try:
        deadline = time.monotonic() + spec.deadline_s + 60
        status = ""
        while time.monotonic() < deadline:
            got = _kubectl(
                kubectl, "get", job, "-n", namespace,
                "-o", "jsonpath={.status.succeeded}/{.status.failed}",
            )  # fmt: skip
            status = got.stdout.strip()
            if got.returncode == 0 and status not in ("", "/"):
                break
            time.sleep(poll_s)
        else:
            print(f"error: {job} did not finish within {spec.deadline_s + 60} s", file=sys.stderr)
        logs = _kubectl(kubectl, "logs", job, "-n", namespace, "-c", CONTAINER)
        out.mkdir(parents=True, exist_ok=True)
        (out / "master.log").write_text(logs.stdout)
        reports = reports_from_log(logs.stdout)
        for name, text in reports.items():
            (out / name).write_text(text)
        summary = reports.get("summary.json")
        if summary is not None:
            passed = bool(json.loads(summary).get("slo", {}).get("passed"))  # write_summary's
            code = 0 if passed else 1
        for line in logs.stdout.splitlines():
            if line.startswith(("SLO verdict", "  ok ", "  FAIL", "SLO FAILED")):
                print(line)
        print(f"reports: {', '.join(sorted(reports)) or 'none'} in {out} (master log: master.log)")
        if summary is None:
            print(f"error: the master printed no summary (status {status!r})", file=sys.stderr)
    finally:
        _kubectl(kubectl, "delete", "--ignore-not-found", "-f", "-", stdin=to_yaml(manifests))
    return code


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    return RunSpec(
        image=args.image,
        api_key_secret=args.api_key_secret,
        name=args.name,
        model=args.model,
        users=args.users,
        spawn_rate=args.spawn_rate,
        run_time_s=args.run_time,
        stop_timeout_s=args.stop_timeout,
        workers=args.workers,
        ttl_s=args.ttl,
        locust_options=tuple(args.locust_options),
    )


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--outputs", required=True, help="`pulumi stack output --json` as a file, or - (stdin)"
    )
    p.add_argument("--image", required=True, help="the load-test image (images/loadtest)")
    p.add_argument(
        "--api-key-secret",
        required=True,
        help=f"Secret in the gateway's namespace whose `{API_KEY_KEY}` is a gateway key "
        "(e.g. an agent's, model-gateway-agent-<agent>, to load as that agent)",
    )
    p.add_argument("--name", default="loadtest", help="name of the run's objects")
    p.add_argument("--model", help="gateway model to load (default: the first with an SLO)")
    p.add_argument("-u", "--users", type=int, default=64)
    p.add_argument("-r", "--spawn-rate", type=float, default=4.0)
    p.add_argument("-t", "--run-time", type=int, default=600, help="seconds of load")
    p.add_argument("--stop-timeout", type=int, default=60, help="s for in-flight requests")
    p.add_argument("--workers", type=int, default=2, help="Locust worker pods")
    p.add_argument("--ttl", type=int, default=3600, help="ttlSecondsAfterFinished of the Jobs")
    p.add_argument("locust_options", nargs="*", help="after --: options for the locustfile")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.incluster",
        description="Run the load test inside the cluster and fetch its reports.",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="apply, wait, fetch the reports, delete")
    add_run_options(p_run)
    p_run.add_argument("--out", type=Path, default=Path("out/loadtest-incluster"))
    p_run.add_argument("--kubectl", default=shutil.which("kubectl") or "kubectl")
    args = parser.parse_args(argv)
    try:
        outputs = read_outputs(args.outputs)
        spec = spec_from_args(args)
        manifests = render_manifests(outputs, spec)
        target = target_from_outputs(outputs, spec.model)
    except (OutputsError, RunSpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run_in_cluster(manifests, spec, target.namespace, args.out, kubectl=args.kubectl)


if __name__ == "__main__":
    raise SystemExit(main())
