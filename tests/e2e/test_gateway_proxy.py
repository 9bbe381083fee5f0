"""The agent worker through LiteLLM's real proxy to the real vLLM on CPU.

One proxy for the whole test session (`gateway` below), started from the config the
gateway component renders (`loadtests.gateway.local_proxy_config`, i.e.
`render_proxy_config` with 127.0.0.1 upstreams and no database) on a real Redis, in
front of the session's vLLM. Its gateway models are the local model under several names,
each with the route a test needs:

- `smollm2-down`: its upstream is a port nothing listens on (a vLLM replica that is
  gone: the proxy sees the connection refused, as from a stopped server); its route falls
  back to `smollm2-135m-instruct`, the real vLLM. The second upstream here is the real
  vLLM under another gateway name, standing for a managed API (no managed API is
  reachable from this machine).
- `smollm2-limited`: the real vLLM at 1 request per minute (a per-deployment rpm limit).
- `smollm2-budgeted` and its cheaper `smollm2-cheap`: the real vLLM with a deployment
  budget that one call uses up.

One setting is added to the rendering here (`renderer_gaps`): a config-only model budget
(`litellm_params.max_budget`/`budget_duration` with a cost per token), the offline
stand-in for the per-key budgets, which need Postgres through Prisma (loadtests/README.md,
"Gateway"). The rendering's own `optional_pre_call_checks: [enforce_model_rate_limits]`
is what makes the proxy refuse a deployment over its rpm (without it LiteLLM 1.110.2
only uses rpm/tpm as a routing weight under `simple-shuffle`).

The worker is the real process (`services.start_worker`), configured as a stack
configures it behind a gateway: `MODEL_BASE_URL` the proxy, `MODEL_HEALTH_URL` its own
readiness, `MODEL_API_KEY_FILE` a mounted key (the run's master key: no virtual keys
without a database).
"""

from __future__ import annotations

import copy
import datetime
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from components.gateway.proxy_config import READINESS_PATH, timeouts_of
from components.gateway.spec import GatewaySpec
from components.traffic.timeouts import TimeoutSpec
from loadtests import gateway as local_gateway
from loadtests import services
from loadtests.local_model import LOCAL_MODEL
from loadtests.services import GatewayService, Service
from tests.e2e.conftest import WorkerFactory
from tests.e2e.worker_client import create_session, metric_value, metrics_text, post_turn

DOWN = "smollm2-down"
LIMITED = "smollm2-limited"
BUDGETED = "smollm2-budgeted"
CHEAP = "smollm2-cheap"
SPEC = GatewaySpec.model_validate(
    {
        "routes": [
            {"model": DOWN, "fallbacks": [LOCAL_MODEL.name]},
            {"model": LIMITED, "rpm": 1},
        ]
    }
)
MODELS = [LOCAL_MODEL, *(local_gateway.local_model(n) for n in (DOWN, LIMITED, BUDGETED, CHEAP))]
BUDGET_USD = 0.001  # one call of about 60 tokens at 0.001 USD a token spends it
COST_PER_TOKEN_USD = 0.001
TURN = {"message": "Say hello.", "max_tokens": 8}


def renderer_gaps(config: dict[str, Any]) -> dict[str, Any]:
    """The config-only model budget that stands in for per-key budgets offline (see the
    module's docstring)."""
    out = copy.deepcopy(config)
    for deployment in out["model_list"]:
        if deployment["model_name"] in (BUDGETED, CHEAP):
            deployment["litellm_params"].update(max_budget=BUDGET_USD, budget_duration="1d")
            deployment["model_info"].update(
                input_cost_per_token=COST_PER_TOKEN_USD, output_cost_per_token=COST_PER_TOKEN_USD
            )
    return out


@dataclass
class Gateway:
    proxy: GatewayService
    redis: Service
    key_file: Path
    worker_timeout_s: int  # the timeout chain's worker hop for these models

    def env(self, model: str, **extra: str) -> dict[str, str]:
        """The worker's model connection through the gateway."""
        return {
            "MODEL_BASE_URL": f"{self.proxy.url}/v1",
            "MODEL_HEALTH_URL": f"{self.proxy.url}{READINESS_PATH}",
            "MODEL_API_KEY_FILE": str(self.key_file),
            "MODEL_NAME": model,
            "MODEL_TIMEOUT_S": str(self.worker_timeout_s),
            **extra,
        }

    def chat_statuses(self) -> list[int]:
        """The status of every chat request the proxy answered, in order (its access log)."""
        text = self.proxy.log_path.read_text(errors="replace")
        return [int(s) for s in re.findall(r'POST /v1/chat/completions HTTP/1.1\\" (\d{3})', text)]


@pytest.fixture(scope="session")
def gateway(vllm: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    base = tmp_path_factory.mktemp("gateway")
    dead = f"http://127.0.0.1:{services.free_port()}/v1"  # nothing listens there
    live = f"{vllm.url}/v1"
    upstreams = {m.name: live for m in MODELS} | {DOWN: dead}
    config = renderer_gaps(local_gateway.local_proxy_config(SPEC, MODELS, upstreams))
    proxy, redis = local_gateway.start_gateway(SPEC, config, workdir=base)
    key_file = base / "agent-key"
    key_file.write_text(proxy.master_key)
    key_file.chmod(0o600)
    chain = timeouts_of(SPEC, MODELS, TimeoutSpec())
    try:
        yield Gateway(proxy, redis, key_file, chain.worker_s)
    finally:
        proxy.stop()
        redis.stop()
        assert proxy.master_key not in proxy.log_path.read_text(errors="replace")


def vllm_requests(vllm: Service) -> float:
    return metric_value(metrics_text(vllm.url), "vllm:request_success_total")


def test_a_model_that_is_down_falls_back_through_the_gateway(
    gateway: Gateway, vllm: Service, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(gateway.env(DOWN))
    # Ready: it probes the gateway's own readiness, not a model. The proxy's /health,
    # which the worker would probe without MODEL_HEALTH_URL, wants a key and calls models.
    assert httpx.get(f"{worker.url}/readyz", timeout=10).status_code == 200
    assert httpx.get(f"{gateway.proxy.url}/health", timeout=10).status_code == 401

    before_vllm, before_proxy = vllm_requests(vllm), len(gateway.chat_statuses())
    stream = post_turn(worker.url, create_session(worker.url), TURN)
    assert stream.names()[-1] == "done", stream.events
    assert "".join(e["text"] for e in stream.all("token"))  # the fallback model's answer
    assert gateway.chat_statuses()[before_proxy:] == [200]  # one call, answered
    assert vllm_requests(vllm) - before_vllm == 1  # by the real vLLM behind the fallback


def _start_of_a_minute() -> None:
    """The rpm window is the wall-clock minute: start where the next steps fit in it."""
    second = datetime.datetime.now(datetime.UTC).second
    if second > 35:
        time.sleep(60.5 - second)


def test_a_rate_limit_is_waited_out_as_retry_after_says_and_never_stormed(
    gateway: Gateway, worker_factory: WorkerFactory
) -> None:
    """rpm 1: the second call of a minute gets LiteLLM's 429 with
    `llm_provider-retry-after: 60`. A worker with 20 s per call does not send again (60 s
    would pass its deadline) and says when to come back; a worker on the timeout chain's
    deadline waits the 60 s and gets through, with one 429 and one 200 at the proxy."""
    impatient = worker_factory(gateway.env(LIMITED, MODEL_TIMEOUT_S="20"))
    patient = worker_factory(gateway.env(LIMITED, QDRANT_PATH=":memory:"))
    _start_of_a_minute()
    seen = len(gateway.chat_statuses())
    first = post_turn(impatient.url, create_session(impatient.url), TURN)
    assert first.names()[-1] == "done", first.events

    started = time.monotonic()
    refused = post_turn(impatient.url, create_session(impatient.url), TURN)
    assert time.monotonic() - started < 20  # gave up at once: no 60 s wait it could not finish
    error = refused.first("error")
    assert error["retryable"] is True and error["retry_after_s"] == 60
    assert "rate limited" in error["message"] and "deadline" in error["message"]
    assert gateway.chat_statuses()[seen:] == [200, 429]
    text = metrics_text(impatient.url)
    assert metric_value(text, "agent_model_rate_limited_total", outcome="gave_up") == 1
    assert metric_value(text, "agent_model_rate_limited_total", outcome="retried") == 0

    started = time.monotonic()
    waited = post_turn(patient.url, create_session(patient.url), TURN, timeout_s=150)
    elapsed = time.monotonic() - started
    assert waited.names()[-1] == "done", waited.events
    assert 60 <= elapsed < 105  # Retry-After, plus jitter and the answer (2 shared cores)
    assert gateway.chat_statuses()[seen:] == [200, 429, 429, 200]  # no storm
    text = metrics_text(patient.url)
    assert metric_value(text, "agent_model_rate_limited_total", outcome="retried") == 1
    assert 60 <= metric_value(text, "agent_model_backoff_seconds_total") <= 60.3


def test_a_spent_budget_degrades_to_the_cheaper_model_then_fails_clearly(
    gateway: Gateway, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory(gateway.env(BUDGETED, MODEL_DEGRADED_NAME=CHEAP))
    sid = create_session(worker.url)
    seen = len(gateway.chat_statuses())
    first = post_turn(worker.url, sid, TURN)
    assert first.names()[-1] == "done" and "degraded" not in first.names()
    time.sleep(2)  # the proxy books a stream's spend just after it ends

    second = post_turn(worker.url, sid, {**TURN, "message": "And again."})
    assert second.names()[0] == "degraded" and second.names()[-1] == "done", second.events
    assert second.first("degraded") == {
        "scope": "gateway",
        "used_ratio": 1.0,
        "model": CHEAP,
        "max_steps": 2,
        "max_tokens": 4,
    }
    time.sleep(2)

    third = post_turn(worker.url, sid, {**TURN, "message": "Once more."})
    message = third.first("error")["message"]
    assert message.startswith(
        f"model budget exhausted at the gateway for {BUDGETED!r} and the cheaper {CHEAP!r}"
    )
    assert "crossed budget" in message  # the gateway's own reason, passed on
    assert "retryable" not in third.first("error")
    # budgeted 200, budgeted 429 + cheap 200, budgeted 429 + cheap 429: nothing retried.
    assert gateway.chat_statuses()[seen:] == [200, 429, 200, 429, 429]
    text = metrics_text(worker.url)
    gw = "agent_gateway_budget_actions_total"
    assert metric_value(text, gw, model=BUDGETED, action="degraded") == 2
    assert metric_value(text, gw, model=CHEAP, action="refused") == 1
