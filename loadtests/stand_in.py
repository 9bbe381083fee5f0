"""Which pilot workloads the local target's processes stand for, and the labels that say so.

The local Prometheus evaluates the pilot's own rule file (`render_rule_file`), and those
rules and the dashboards select models by identity:

- the SLO windows, the dashboards' model panels: `vllm:*{model_name="<models[].model>"}`;
- the cost rules: vLLM's `model_name` copied to `model` (`label_replace`), counted
  `by (model_name, namespace, pod)` for replicas, priced per `models[].model`, and joined
  `on (model)` with the workers' `agent_model_*_tokens_total{agent, model}`;
- the agents' rules and panels: `agent`, the worker's AGENT_NAME.

The local vLLM serves the small CPU model under its own id (`services.MODEL_NAME`): the
worker, the e2e tests and the benchmarks call it by that name, and its command line stays
the rendered `LOCAL_MODEL` one. So the local vLLM stands for ONE pilot model,
`STAND_IN_MODEL`, by a metric relabelling of the scrape: `model_name` (vLLM's series) and
`model` (the worker's token counters) become that model's `models[].model`. The worker
runs as the pilot's HTTP agent `STAND_IN_AGENT` (the local worker serves sessions over
HTTP, as that agent does). The usage records keep the served name, so `swarmstack cost`
prices it as the stand-in model (`--price-as`). The local target's worker calls its model
through the local gateway under the rendered gateway name (`qwen25-7b`), so its records
and series carry that name, which needs neither renaming nor `--price-as`; the rename
still serves workers started against vLLM directly (the e2e tests).

The target labels are the ones the Prometheus operator gives the pilot's monitors, both
PodMonitors on Istio's merged metrics port (`stacks/observability.py`): `model-servers`
(namespace `namespaces.models`, container `vllm`) and `agents` (namespace
`namespaces.agents`, container `worker`) give `job` `<namespace>/<monitor>`, `endpoint`
the port number, and no `service` (a PodMonitor's targets have none).

The gateway's LiteLLM proxy (when the local target runs it) is scraped with the labels of
the stack's `model-gateway` PodMonitor, taken from the monitor the stack renders
(`stacks.observability.monitor_targets`).

The pilot's other model has no local process: its series do not exist here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from components.data import redis as redis_store
from components.gateway import proxy as gateway_proxy
from components.gateway.proxy_config import METRICS_PATH as GATEWAY_METRICS_PATH
from components.specs import ModelSpec
from components.traffic.istio_chart import MERGED_METRICS_PORT
from loadtests.prometheus import LabelRename, ScrapeTarget
from loadtests.services import MODEL_NAME
from stacks.config import StackConfig, load_file
from stacks.observability import monitor_targets

ROOT = Path(__file__).resolve().parent.parent
STACK = "pilot"
STAND_IN_MODEL = "qwen25-7b"  # the pilot's models[].name the local vLLM stands for
STAND_IN_AGENT = "concierge"  # the pilot's HTTP agent the local worker runs as
LOCAL_POD_SUFFIX = "local-0"  # where a pod name would end in its ReplicaSet's hash
MODEL_CONTAINER = "vllm"  # components/serving/model_serving.py's container
WORKER_CONTAINER = "worker"  # components/agents/workload.py's container
AGENTS_MONITOR = "agents"  # the agents' PodMonitor (stacks/observability.py)
MODELS_MONITOR = "model-servers"  # the model servers' PodMonitor
# Both monitors scrape Istio's merged metrics by port number, which the operator writes as
# the `endpoint` label; locally the process's own /metrics stands for what the sidecar
# merges (the app's series are the same).
MERGED_ENDPOINT = str(MERGED_METRICS_PORT)


@dataclass(frozen=True)
class StandIn:
    """The pilot config and the pilot model and agent the local processes stand for."""

    config: StackConfig
    model: ModelSpec
    agent: str
    served: str = MODEL_NAME  # what the local vLLM serves and the worker asks for

    def renames(self, label: str) -> tuple[LabelRename, ...]:
        return (LabelRename(label, self.served, self.model.model),)

    def vllm_target(self, address: str) -> ScrapeTarget:
        return ScrapeTarget(
            job=f"{self.config.namespaces.models}/{MODELS_MONITOR}",
            address=address,
            namespace=self.config.namespaces.models,
            service=None,
            pod=f"{self.model.name}-{LOCAL_POD_SUFFIX}",
            container=MODEL_CONTAINER,
            endpoint=MERGED_ENDPOINT,
            renames=self.renames("model_name"),
        )

    def worker_target(self, address: str) -> ScrapeTarget:
        return ScrapeTarget(
            job=f"{self.config.namespaces.agents}/{AGENTS_MONITOR}",
            address=address,
            namespace=self.config.namespaces.agents,
            service=None,
            pod=f"{self.agent}-{LOCAL_POD_SUFFIX}",
            container=WORKER_CONTAINER,
            endpoint=MERGED_ENDPOINT,
            renames=self.renames("model"),
        )

    def redis_exporter_target(self, address: str) -> ScrapeTarget:
        namespace = self.config.namespaces.data
        return ScrapeTarget(
            job=f"{namespace}/{redis_store.NAME}",
            address=address,
            namespace=namespace,
            service=None,
            pod=f"{redis_store.NAME}-0",
            container="exporter",
            endpoint="metrics",
        )

    def gateway_target(self, address: str) -> ScrapeTarget:
        """The gateway's LiteLLM proxy, labelled from the monitor the stack renders for it
        (`stacks.observability.monitor_targets`, a PodMonitor on the merged metrics port):
        locally the proxy's own /metrics stands for what the sidecar merges."""
        monitor = next(
            (t for t in monitor_targets(self.config) if t.name == gateway_proxy.NAME), None
        )
        if monitor is None:
            raise ValueError(
                f"stacks/Pulumi.{STACK}.yaml: the stack renders no {gateway_proxy.NAME} "
                "monitor (no gateway is configured)"
            )
        (endpoint,) = monitor.endpoints
        port = endpoint.port if endpoint.port_number is None else str(endpoint.port_number)
        return ScrapeTarget(
            job=f"{monitor.namespace}/{monitor.name}",
            address=address,
            namespace=monitor.namespace,
            service=None,
            pod=f"{gateway_proxy.NAME}-{LOCAL_POD_SUFFIX}",
            container=gateway_proxy.CONTAINER,
            endpoint=port,
            metrics_path=GATEWAY_METRICS_PATH,
        )

    def targets(
        self, *, vllm: str, worker: str, redis_exporter: str, gateway: str | None = None
    ) -> list[ScrapeTarget]:
        """Every local process the local Prometheus scrapes (host:port each); the gateway
        when the local target runs one."""
        found = [
            self.vllm_target(vllm),
            self.worker_target(worker),
            self.redis_exporter_target(redis_exporter),
        ]
        if gateway is not None:
            found.append(self.gateway_target(gateway))
        return found

    def price_as(self) -> dict[str, str]:
        """`swarmstack cost --price-as`: the served name priced as the stand-in model."""
        return {self.served: self.model.name}


def pilot_stand_in(root: Path = ROOT) -> StandIn:
    config = load_file(root / "stacks" / f"Pulumi.{STACK}.yaml")
    model = next((m for m in config.models if m.name == STAND_IN_MODEL), None)
    if model is None:
        raise ValueError(f"stacks/Pulumi.{STACK}.yaml: models[] has no {STAND_IN_MODEL!r}")
    if not any(a.name == STAND_IN_AGENT and a.mode == "http" for a in config.agents):
        raise ValueError(f"stacks/Pulumi.{STACK}.yaml: agents[] has no http {STAND_IN_AGENT!r}")
    return StandIn(config, model, STAND_IN_AGENT)
