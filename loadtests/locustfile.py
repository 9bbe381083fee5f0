"""Locust scenarios that load a swarmstack target the way an agent swarm does.

Users:

- `AgentSessionUser` — an agent session against the worker's HTTP API: it opens a
  session, sends `--turns-per-session` turns with think time between them (Locust's
  wait time), then starts a new session. Every turn's prompt is distinct (random topics,
  numbers and references); every `--tool-every`-th turn names a tool (of `--tools`,
  default calculator, clock, retrieve, ledger, in turn), and the turn must show the
  worker's `tool_call` and the `tool_result` fed back to the model, or it counts as
  failed. Turns stream over SSE.
- `ModelUser` — OpenAI chat/completions streaming straight at the model endpoint
  (`--model-url`, default the host) with prompts of about `--prompt-tokens` tokens and
  `--output-tokens` output tokens (`ignore_eos`, so every request generates exactly that).

Locust times a streamed request only until its headers arrive, so each stream is also
reported as its own entries (vLLM's benchmark definitions, see `loadtests.metrics`):
request type `SSE` (agent turns) or `STREAM` (model calls), names `TTFT`, `ITL` (one entry
per gap between chunks), `TPOT` and `E2E`. The raw per-request samples are collected
too (shipped from workers to the master in distributed mode) and written as JSON lines
to `--samples-out` when the run ends; `loadtests.run` turns them into percentiles, the
SLO verdict and the PNG plot.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from pathlib import Path
from typing import Any

from agent_worker.sse import SSEMessage, SSEStream
from locust import HttpUser, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import WorkerRunner

from loadtests.metrics import RequestSample, inter_token_latencies, tpot
from loadtests.prompts import TOOLS, chat_prompt, filler_prompt, tool_prompt

# Samples of this process: a local run or the master keeps them all; a worker keeps
# them until its next report to the master.
_samples: list[dict[str, Any]] = []


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    group = parser.add_argument_group("swarmstack")
    group.add_argument("--samples-out", default="", help="write per-request samples (JSONL)")
    group.add_argument("--turns-per-session", type=int, default=4)
    group.add_argument("--think-min", type=float, default=1.0, help="think time, s")
    group.add_argument("--think-max", type=float, default=3.0, help="think time, s")
    group.add_argument("--tool-every", type=int, default=2, help="every Nth turn names a tool")
    group.add_argument(
        "--tools",
        default=",".join(TOOLS),
        help="the tools tool turns name, in turn (the agent's AGENT_TOOLS; `none`: no tool turns)",
    )
    group.add_argument("--turn-max-tokens", type=int, default=48)
    group.add_argument("--agent-name", default="", help="session's agent (default: worker's)")
    group.add_argument("--model-url", default="", help="ModelUser target (default: host)")
    group.add_argument("--model-name", default="", help="ModelUser model (default: first)")
    group.add_argument("--prompt-tokens", type=int, default=128)
    group.add_argument("--output-tokens", type=int, default=64)
    group.add_argument("--model-think-max", type=float, default=1.0, help="ModelUser wait, s")
    group.add_argument(
        "--api-key-file",
        default="",
        help="ModelUser: a file holding the API key sent as `Authorization: Bearer` (the "
        "model gateway's; in the cluster a mounted Secret, never an argument)",
    )


@events.report_to_master.add_listener
def _ship_samples(client_id: str, data: dict[str, Any]) -> None:
    data["swarmstack_samples"] = list(_samples)
    _samples.clear()


@events.worker_report.add_listener
def _receive_samples(client_id: str, data: dict[str, Any]) -> None:
    _samples.extend(data.get("swarmstack_samples", []))


@events.quitting.add_listener
def _write_samples(environment: Environment, **_kwargs: Any) -> None:
    out = getattr(environment.parsed_options, "samples_out", "")
    if not out or isinstance(environment.runner, WorkerRunner):
        return
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for sample in _samples:
            fh.write(json.dumps(sample) + "\n")


def record(environment: Environment, request_type: str, sample: RequestSample) -> None:
    """Keep the sample and report TTFT/ITL/TPOT/E2E as Locust entries of their own."""
    _samples.append(sample.to_json())
    fire = environment.events.request.fire
    if not sample.ok:
        fire(
            request_type=request_type,
            name="E2E",
            response_time=sample.e2e_s * 1000,
            response_length=sample.output_tokens,
            exception=RuntimeError(sample.error or "failed"),
            context={"kind": sample.kind},
        )
        return
    entries: list[tuple[str, float]] = []
    if sample.ttft_s is not None:
        entries.append(("TTFT", sample.ttft_s))
    entries += [("ITL", gap) for gap in inter_token_latencies(sample.chunk_offsets_s)]
    if (per_token := tpot(sample.e2e_s, sample.ttft_s, sample.output_tokens)) is not None:
        entries.append(("TPOT", per_token))
    entries.append(("E2E", sample.e2e_s))
    for name, seconds in entries:
        fire(
            request_type=request_type,
            name=name,
            response_time=seconds * 1000,
            response_length=sample.output_tokens if name == "E2E" else 0,
            exception=None,
            context={"kind": sample.kind},
        )


# --------------------------------------------------------------------------- streaming


def _stream(response: Any, parser: SSEStream) -> Any:
    """Yield (arrival offset from `time.perf_counter`, event) as the body streams in."""
    for chunk in response.iter_content(chunk_size=None):
        now = time.perf_counter()
        for event in parser.feed(chunk):
            yield now, event
    now = time.perf_counter()
    for event in parser.close():
        yield now, event


def agent_tools(option: str) -> tuple[str, ...]:
    """`--tools`: comma-separated tool names (as AGENT_TOOLS), `none`, or empty for all."""
    if not option.strip():
        return TOOLS
    if option.strip() == "none":
        return ()
    names = tuple(n.strip() for n in option.split(","))
    unknown = [n for n in names if n not in TOOLS]
    if unknown:
        raise ValueError(f"--tools: {', '.join(unknown)} not a tool (tools: {', '.join(TOOLS)})")
    return names


class AgentSessionUser(HttpUser):
    """Multi-turn agent sessions against the worker's HTTP API, streamed over SSE."""

    def wait_time(self) -> float:
        opts = self.environment.parsed_options
        return random.uniform(opts.think_min, opts.think_max) if opts else 1.0

    def on_start(self) -> None:
        self.rng = random.Random(uuid.uuid4().int)
        self.user_name = f"loadtest-{uuid.uuid4().hex[:8]}"
        self.session_id: str | None = None
        self.turns_done = 0
        self.tool_turns = self.rng.randrange(len(TOOLS))  # users start on different tools

    def _new_session(self) -> None:
        opts = self.environment.parsed_options
        body = {"user": self.user_name}
        if opts and opts.agent_name:
            body["agent"] = opts.agent_name
        with self.client.post(
            "/v1/sessions",
            json=body,
            name="POST /v1/sessions",
            catch_response=True,
        ) as response:
            if response.status_code != 201:
                response.failure(f"status {response.status_code}: {response.text[:200]}")
                self.session_id = None
                return
            self.session_id = str(response.json()["session_id"])
            self.turns_done = 0

    @task
    def turn(self) -> None:
        opts = self.environment.parsed_options
        per_session = opts.turns_per_session if opts else 4
        if self.session_id is None or self.turns_done >= per_session:
            self._new_session()
            if self.session_id is None:
                return
        tool_every = opts.tool_every if opts else 2
        tools = agent_tools(opts.tools if opts else "")
        tool: str | None = None
        if tools and tool_every > 0 and self.turns_done % tool_every == tool_every - 1:
            tool = tools[self.tool_turns % len(tools)]
            self.tool_turns += 1
        message = tool_prompt(tool, self.rng) if tool else chat_prompt(self.rng)
        body: dict[str, Any] = {
            "message": message,
            "tool": tool,
            "turn_id": uuid.uuid4().hex,
            "max_tokens": opts.turn_max_tokens if opts else 48,
        }
        self.turns_done += 1
        sample = self._stream_turn(body, tool)
        record(self.environment, "SSE", sample)

    def _stream_turn(self, body: dict[str, Any], tool: str | None) -> RequestSample:
        kind = "tool-turn" if tool else "agent-turn"
        started_at = time.time()
        t0 = time.perf_counter()
        ttft: float | None = None
        chunks: list[float] = []
        output_tokens = 0
        error: str | None = None
        saw_call = saw_result = done = False
        with self.client.post(
            f"/v1/sessions/{self.session_id}/turns",
            json=body,
            name="POST /v1/sessions/[id]/turns",
            stream=True,
            catch_response=True,
            headers={"accept": "text/event-stream"},
        ) as response:
            if response.status_code != 200:
                error = f"status {response.status_code}: {response.text[:200]}"
            else:
                for at, event in _stream(response, SSEStream()):
                    data = _json(event)
                    if event.event == "token" and data.get("text"):
                        offset = at - t0
                        ttft = offset if ttft is None else ttft
                        chunks.append(offset)
                    elif event.event == "tool_call":
                        saw_call = saw_call or data.get("name") == tool
                    elif event.event == "tool_result":
                        saw_result = saw_result or data.get("name") == tool
                    elif event.event == "done":
                        done = True
                        output_tokens = int(data.get("output_tokens") or len(chunks))
                    elif event.event == "error":
                        error = f"error event: {str(data.get('message', event.data))[:200]}"
                if error is None and not done:
                    error = "stream ended without a done event"
                if error is None and tool and not (saw_call and saw_result):
                    error = f"tool turn {tool}: tool_call={saw_call} tool_result={saw_result}"
            e2e = time.perf_counter() - t0
            if error:
                response.failure(error)
                if error.startswith("status 404"):
                    self.session_id = None  # the session is gone: start a new one
            else:
                response.success()
        return RequestSample(
            kind=kind,
            started_at=started_at,
            e2e_s=e2e,
            ttft_s=ttft,
            chunk_offsets_s=tuple(chunks),
            output_tokens=output_tokens,
            ok=error is None,
            error=error,
        )


def _json(event: SSEMessage) -> dict[str, Any]:
    try:
        value = json.loads(event.data)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


class ModelUser(HttpUser):
    """Streaming chat/completions straight at the OpenAI-compatible model endpoint."""

    def wait_time(self) -> float:
        opts = self.environment.parsed_options
        return random.uniform(0, opts.model_think_max) if opts else 0.5

    def on_start(self) -> None:
        self.rng = random.Random(uuid.uuid4().int)
        opts = self.environment.parsed_options
        base = (opts.model_url if opts and opts.model_url else self.host) or ""
        self.base = base.rstrip("/").removesuffix("/v1")
        self.model = opts.model_name if opts and opts.model_name else ""
        key_file = opts.api_key_file if opts else ""
        if key_file:
            key = Path(key_file).read_text().strip()
            self.client.headers["Authorization"] = f"Bearer {key}"
        if not self.model:
            with self.client.get(
                f"{self.base}/v1/models", name="GET /v1/models", catch_response=True
            ) as response:
                if response.status_code != 200:
                    response.failure(f"status {response.status_code}")
                    raise StopUser()
                self.model = str(response.json()["data"][0]["id"])

    @task
    def chat(self) -> None:
        opts = self.environment.parsed_options
        prompt_tokens = opts.prompt_tokens if opts else 128
        output_tokens = opts.output_tokens if opts else 64
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": filler_prompt(prompt_tokens, self.rng)}],
            "max_tokens": output_tokens,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        started_at = time.time()
        t0 = time.perf_counter()
        ttft: float | None = None
        chunks: list[float] = []
        usage_tokens: int | None = None
        error: str | None = None
        finished = False
        with self.client.post(
            f"{self.base}/v1/chat/completions",
            json=body,
            name="POST /v1/chat/completions",
            stream=True,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                error = f"status {response.status_code}: {response.text[:200]}"
            else:
                for at, event in _stream(response, SSEStream()):
                    if event.data == "[DONE]":
                        finished = True
                        continue
                    data = _json(event)
                    if "error" in data:
                        error = f"error: {str(data['error'])[:200]}"
                    for choice in data.get("choices") or []:
                        if (choice.get("delta") or {}).get("content"):
                            offset = at - t0
                            ttft = offset if ttft is None else ttft
                            chunks.append(offset)
                    if data.get("usage"):
                        usage_tokens = int(data["usage"].get("completion_tokens") or 0)
                if error is None and not finished:
                    error = "stream ended without [DONE]"
            e2e = time.perf_counter() - t0
            if error:
                response.failure(error)
            else:
                response.success()
        sample = RequestSample(
            kind="model",
            started_at=started_at,
            e2e_s=e2e,
            ttft_s=ttft,
            chunk_offsets_s=tuple(chunks),
            output_tokens=usage_tokens if usage_tokens is not None else len(chunks),
            ok=error is None,
            error=error,
        )
        record(self.environment, "STREAM", sample)
