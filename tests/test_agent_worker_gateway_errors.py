"""How the worker's model client reads a gateway's refusals: a spent budget (no retry),
a rate limit (wait for Retry-After, bounded by attempts and the call's deadline), and the
per-agent key it sends.

The error bodies and headers are the ones LiteLLM 1.110.2's proxy sends (seen from the
real proxy in tests/e2e/test_gateway_proxy.py, which runs them end to end): a deployment
rate limit is a 429 `throttling_error` with `llm_provider-retry-after: 60` and no
`Retry-After`; a router cooldown a 429 with `retry-after`; a key, user, team or proxy
budget a `budget_exceeded` error (422 by default in 1.110); a deployment budget a 429
`No deployments available - crossed budget`. The HTTP exchanges here go through httpx's
MockTransport: what is tested is the client's reading and its timing, not a server.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

import httpx
import pytest
from agent_worker.model import (
    SESSION_HEADER,
    GatewayBudgetError,
    ModelClient,
    ModelResult,
    RateLimitedError,
    backoff_s,
    classify_refusal,
    retry_after_s,
)

LITELLM_RPM = json.dumps(
    {
        "error": {
            "message": "litellm.RateLimitError: Model rate limit exceeded. RPM limit=1, "
            "current usage=2\n\nLiteLLM: model group 'smol' failed with the error above.",
            "type": "throttling_error",
            "param": None,
            "code": "429",
        }
    }
)
LITELLM_KEY_BUDGET = json.dumps(
    {
        "error": {
            "message": "Budget has been exceeded! Current cost: 0.02, Max budget: 0.01",
            "type": "budget_exceeded",
            "param": None,
            "code": "422",
        }
    }
)
LITELLM_DEPLOYMENT_BUDGET = json.dumps(
    {
        "error": {
            "message": "No deployments available - crossed budget: Exceeded budget for "
            "deployment model_name: big, litellm_params.model: openai/big: 0.007 >= 1d\n",
            "type": "internal_server_error",
            "param": None,
            "code": "429",
        }
    }
)
STREAM = (
    b'data: {"choices":[{"index":0,"delta":{"content":"ok"}}]}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n'
    b"data: [DONE]\n\n"
)


def test_budget_markers_on_400_422_and_429_are_budgets() -> None:
    assert classify_refusal(422, LITELLM_KEY_BUDGET) == "budget"
    assert classify_refusal(400, LITELLM_KEY_BUDGET) == "budget"
    assert classify_refusal(429, LITELLM_KEY_BUDGET) == "budget"
    assert classify_refusal(429, LITELLM_DEPLOYMENT_BUDGET) == "budget"
    # The marker in the message alone counts too (a gateway that puts it there).
    assert classify_refusal(400, '{"error": {"message": "budget_exceeded: key k"}}') == "budget"


def test_a_429_without_a_budget_marker_is_a_rate_limit_and_other_errors_neither() -> None:
    assert classify_refusal(429, LITELLM_RPM) == "rate_limit"
    assert classify_refusal(429, "too many requests") == "rate_limit"  # not JSON
    assert classify_refusal(400, '{"error": {"message": "bad tool_choice"}}') is None
    assert classify_refusal(500, LITELLM_KEY_BUDGET) is None  # a server error, not a refusal


def test_retry_after_reads_seconds_dates_milliseconds_and_litellms_copy() -> None:
    now = 1_000_000.0
    assert retry_after_s({"Retry-After": "7"}, now) == 7.0
    date = "Mon, 12 Jan 1970 13:46:50 GMT"  # 1_000_010 s after the epoch
    assert retry_after_s({"retry-after": date}, now) == pytest.approx(10.0)
    assert retry_after_s({"retry-after-ms": "250"}, now) == 0.25
    assert retry_after_s({"llm_provider-retry-after": "60"}, now) == 60.0
    assert retry_after_s({"Retry-After": "2", "llm_provider-retry-after": "60"}, now) == 2.0
    assert retry_after_s({"Retry-After": "soon"}, now) is None
    assert retry_after_s({"Retry-After": "-3"}, now) == 0.0
    assert retry_after_s({}, now) is None


def test_waits_honour_retry_after_and_spread_without_it() -> None:
    rng = random.Random(7)
    for _ in range(200):
        wait = backoff_s(1, 2.0, rng)
        assert 2.0 <= wait <= 2.0 + 0.21  # never earlier than asked, jitter at most 10%
        assert 60.0 <= backoff_s(1, 60.0, rng) <= 60.25
        assert 0.25 <= backoff_s(1, None, rng) <= 0.5
        assert 0.5 <= backoff_s(2, None, rng) <= 1.0
        assert 4.0 <= backoff_s(9, None, rng) <= 8.0  # capped
    # Two callers refused together do not come back together.
    waits = {round(backoff_s(1, 1.0, random.Random(seed)), 6) for seed in range(20)}
    assert len(waits) == 20


class Gateway:
    """Answers each chat request with the next scripted (status, headers, body)."""

    def __init__(self, *answers: tuple[int, dict[str, str], str | bytes]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[float, httpx.Request]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((time.monotonic(), request))
        if request.url.path.endswith("/health/readiness"):
            return httpx.Response(200, json={"status": "healthy"})
        status, headers, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if status == 200:
            headers = {"content-type": "text/event-stream", **headers}
        return httpx.Response(status, headers=headers, content=body)

    def client(
        self, *, timeout_s: float = 10.0, attempts: int = 3, key: str | None = None
    ) -> ModelClient:
        client = ModelClient(
            "http://gateway.test/v1",
            "m",
            "http://gateway.test/health/readiness",
            timeout_s,
            api_key=key,
            max_attempts=attempts,
            rng=random.Random(1),
        )
        client._http = httpx.AsyncClient(  # pyright: ignore[reportPrivateUsage]
            base_url="http://gateway.test/v1/", transport=httpx.MockTransport(self.handler)
        )
        return client


def chat(client: ModelClient) -> tuple[ModelResult, list[str]]:
    texts: list[str] = []

    async def on_text(text: str) -> None:
        texts.append(text)

    async def go() -> ModelResult:
        try:
            return await client.chat({"model": "m", "messages": []}, on_text)
        finally:
            await client.close()

    return asyncio.run(go()), texts


def test_a_rate_limited_call_waits_for_retry_after_then_goes_through() -> None:
    gateway = Gateway((429, {"retry-after": "0.3"}, LITELLM_RPM), (200, {}, STREAM))
    result, texts = chat(gateway.client())
    assert texts == ["ok"] and result.output_tokens == 1
    (first, _), (second, _) = gateway.requests
    assert 0.3 <= second - first < 0.6  # waited what it was told, plus jitter
    assert len(result.rate_limit_waits) == 1 and 0.3 <= result.rate_limit_waits[0] <= 0.34
    assert result.ttft_s is not None and result.ttft_s >= 0.3  # the user waited too


def test_litellms_forwarded_retry_after_is_honoured() -> None:
    gateway = Gateway((429, {"llm_provider-retry-after": "0.2"}, LITELLM_RPM), (200, {}, STREAM))
    result, _ = chat(gateway.client())
    (first, _), (second, _) = gateway.requests
    assert second - first >= 0.2 and result.rate_limit_waits[0] >= 0.2


def test_a_retry_after_past_the_deadline_is_not_waited_for() -> None:
    """LiteLLM's deployment limits ask for 60 s: with 2 s left the call gives up at once,
    sends nothing more and says why, with what the gateway asked for."""
    gateway = Gateway((429, {"llm_provider-retry-after": "60"}, LITELLM_RPM))
    started = time.monotonic()
    with pytest.raises(RateLimitedError, match="would pass the call's deadline") as caught:
        chat(gateway.client(timeout_s=2.0))
    assert time.monotonic() - started < 1.0
    assert len(gateway.requests) == 1
    assert caught.value.retry_after_s == 60.0 and caught.value.status == 429
    assert not caught.value.rejected  # the turn stays resumable
    assert "retry after 60 s" in str(caught.value) and "RPM limit=1" in str(caught.value)


def test_attempts_are_capped_so_a_refusing_gateway_sees_no_storm() -> None:
    gateway = Gateway((429, {}, LITELLM_RPM))  # always 429, never says when
    with pytest.raises(RateLimitedError, match="after 3 attempts") as caught:
        chat(gateway.client(attempts=3))
    assert len(gateway.requests) == 3
    gaps = [b - a for (a, _), (b, _) in zip(gateway.requests, gateway.requests[1:], strict=False)]
    assert 0.25 <= gaps[0] <= 0.6 and 0.5 <= gaps[1] <= 1.1  # exponential, jittered
    assert len(caught.value.waits) == 2


def test_a_spent_budget_is_not_retried() -> None:
    for status, body in ((422, LITELLM_KEY_BUDGET), (429, LITELLM_DEPLOYMENT_BUDGET)):
        gateway = Gateway((status, {"retry-after": "0.1"}, body))
        with pytest.raises(GatewayBudgetError, match="budget exhausted") as caught:
            chat(gateway.client())
        assert len(gateway.requests) == 1
        assert caught.value.status == status
        assert "exceeded" in caught.value.detail.lower()


def test_other_refusals_keep_their_status_and_are_not_retried() -> None:
    gateway = Gateway((400, {}, '{"error": {"message": "bad request"}}'))
    with pytest.raises(Exception, match="model answered 400") as caught:
        chat(gateway.client())
    assert len(gateway.requests) == 1
    assert getattr(caught.value, "rejected", False)


def test_the_agent_key_goes_with_chat_calls_only() -> None:
    gateway = Gateway((200, {}, STREAM))
    client = gateway.client(key="sk-agent-key")

    async def go() -> None:
        await client.health()

        async def on_text(text: str) -> None:
            del text

        await client.chat({"model": "m", "messages": []}, on_text)
        await client.close()

    asyncio.run(go())
    health, chat_request = (r for _, r in gateway.requests)
    assert health.url == httpx.URL("http://gateway.test/health/readiness")
    assert "authorization" not in health.headers
    assert chat_request.headers["authorization"] == "Bearer sk-agent-key"


def test_every_send_of_a_chat_call_names_its_session_and_the_health_check_none() -> None:
    """The session header (what the mesh hashes replicas on) goes with each send of a
    call, a rate-limited re-send included, beside the key; a call without a session sends
    no header at all rather than an empty one (which would hash every such call alike)."""
    gateway = Gateway((429, {"Retry-After": "0"}, LITELLM_RPM), (200, {}, STREAM))
    client = gateway.client(key="sk-agent-key")

    async def go() -> None:
        await client.health()

        async def on_text(text: str) -> None:
            del text

        await client.chat({"model": "m", "messages": []}, on_text, session_id="a1b2c3d4e5f6")
        await client.chat({"model": "m", "messages": []}, on_text)
        await client.close()

    asyncio.run(go())
    health, limited, sent, anonymous = (r for _, r in gateway.requests)
    assert SESSION_HEADER not in health.headers
    assert limited.headers[SESSION_HEADER] == sent.headers[SESSION_HEADER] == "a1b2c3d4e5f6"
    assert sent.headers["authorization"] == "Bearer sk-agent-key"
    assert SESSION_HEADER not in anonymous.headers
    assert anonymous.headers["authorization"] == "Bearer sk-agent-key"
