"""OpenTelemetry traces: one span per turn, per model call and per tool call.

Attributes follow OpenTelemetry's GenAI semantic conventions (development status):
`gen_ai.operation.name` (`invoke_agent` for a turn, `chat` for a model call,
`execute_tool` for a tool call), `gen_ai.request.model`, `gen_ai.request.max_tokens`,
`gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`, `gen_ai.tool.name`,
`gen_ai.tool.call.id`, `gen_ai.agent.name` (the agent type), `gen_ai.conversation.id`
(the session id) and `user.id`. Span names are `<operation> <model|tool|agent>`.

With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are batched and exported over OTLP/gRPC
(the exporter reads the standard `OTEL_EXPORTER_OTLP_*` variables too); without it the
tracer is a no-op. Spans are per call, never per streamed token.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

TRACER_NAME = "agent_worker"
OPERATION = "gen_ai.operation.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
AGENT_NAME = "gen_ai.agent.name"
CONVERSATION_ID = "gen_ai.conversation.id"
USER_ID = "user.id"
ERROR_TYPE = "error.type"


def who(agent: str, session: str, user: str) -> dict[str, Any]:
    """The attributes every span of a turn carries."""
    return {AGENT_NAME: agent, CONVERSATION_ID: session, USER_ID: user}


def build_provider(agent: str, endpoint: str | None) -> TracerProvider | None:
    """A provider exporting to `endpoint` over OTLP/gRPC, or None (tracing off)."""
    if endpoint is None:
        return None
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    resource = Resource.create({"service.name": "agent-worker", "swarmstack.agent": agent})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def tracer_for(provider: trace.TracerProvider | None) -> trace.Tracer:
    if provider is None:
        return trace.NoOpTracer()
    return provider.get_tracer(TRACER_NAME)
