"""Traces of the tool loop: one span per turn, model call and tool call, with the GenAI
semantic-convention attributes, captured by the OpenTelemetry SDK's InMemorySpanExporter.

The turn runs on the worker's own Store over a real redis-server with the scripted model
of test_worker_loop (exact token counts, so the attributes can be checked exactly).
"""

from __future__ import annotations

from typing import Any

from agent_worker import tracing
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

from tests.e2e.test_worker_loop import (
    SID,
    RecordingStore,
    ScriptedModel,
    make_agent,
    opened,
    run_turn,
    store,  # noqa: F401  (the fixture)
)

WHO = {"gen_ai.agent.name": "test-agent", "gen_ai.conversation.id": SID, "user.id": "u"}


def context(span: ReadableSpan) -> SpanContext:
    found = span.get_span_context()
    assert found is not None
    return found


def traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_a_tool_turn_is_one_trace_of_turn_model_and_tool_spans(store: RecordingStore) -> None:  # noqa: F811
    provider, exporter = traced()
    agent, _ = make_agent(store, ScriptedModel(), tracer=tracing.tracer_for(provider))
    events = run_turn(store, agent, opened(store), "new")
    assert events[-1][0] == "done"

    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == [
        "chat m",
        "execute_tool ledger",
        "chat m",
        "invoke_agent test-agent",
    ]
    first, tool, answer, turn = spans
    attributes: list[dict[str, Any]] = [dict(s.attributes or {}) for s in spans]
    assert attributes[0] == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "m",
        "gen_ai.request.max_tokens": 96,  # the forced tool call's envelope
        "gen_ai.usage.input_tokens": 20,
        "gen_ai.usage.output_tokens": 9,
        **WHO,
    }
    assert attributes[1] == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "ledger",
        "gen_ai.tool.call.id": "call_t1_1_0",
        "swarmstack.tool.replayed": False,
        **WHO,
    }
    assert attributes[2]["gen_ai.usage.output_tokens"] == 3
    assert attributes[2]["gen_ai.request.max_tokens"] == 16
    assert attributes[3] == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.request.model": "m",
        "gen_ai.usage.input_tokens": 50,
        "gen_ai.usage.output_tokens": 12,
        **WHO,
    }
    assert first.kind == SpanKind.CLIENT and turn.kind == SpanKind.INTERNAL
    # One trace: the calls are children of the turn's span.
    turn_context = turn.get_span_context()
    assert turn_context is not None
    assert {context(s).trace_id for s in spans} == {turn_context.trace_id}
    for child in (first, tool, answer):
        assert child.parent is not None and child.parent.span_id == turn_context.span_id
    assert all(s.status.status_code != StatusCode.ERROR for s in spans)


def test_a_tool_error_marks_its_span(store: RecordingStore) -> None:  # noqa: F811
    provider, exporter = traced()
    model = ScriptedModel(arguments='{"expression":"1/0"}')
    agent, _ = make_agent(store, model, tracer=tracing.tracer_for(provider))
    run_turn(store, agent, opened(store, "calculator"), "new")
    tool = next(s for s in exporter.get_finished_spans() if s.name == "execute_tool calculator")
    assert tool.status.status_code == StatusCode.ERROR
    assert tool.status.description == "calculator: division by zero"
    assert (tool.attributes or {})["error.type"] == "tool_error"


def test_without_an_endpoint_the_tracer_records_nothing() -> None:
    assert tracing.build_provider("a", None) is None
    span = tracing.tracer_for(None).start_span("x")
    assert not span.is_recording()


def test_an_endpoint_builds_an_otlp_exporting_provider() -> None:
    provider = tracing.build_provider("researcher", "http://127.0.0.1:4317")
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "agent-worker"
    assert provider.resource.attributes["swarmstack.agent"] == "researcher"
    assert tracing.tracer_for(provider).start_span("x").is_recording()
    provider.shutdown()  # nothing was ended, so nothing is sent
