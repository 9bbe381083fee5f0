# pyright: strict
"""The agent worker's spans reach an OTLP/gRPC endpoint over the wire.

The worker's own provider (`agent_worker.tracing.build_provider`, the real OpenTelemetry
SDK and its OTLP/gRPC exporter) exports to a local gRPC server implementing OTLP's
TraceService from `opentelemetry-proto`, which decodes each request as the collector's
otlp receiver does. The collector itself cannot run here (see tests/test_tracing.py); the
endpoint has the form the stack gives the workers (`http://<host>:4317`, plaintext gRPC
inside the cluster).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from agent_worker import tracing
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    def Export(  # noqa: N802  (the generated service's method name)
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = Receiver()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)  # pyright: ignore[reportUnknownMemberType]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, port
    finally:
        server.stop(grace=None)


def value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attributes(kvs: Any) -> dict[str, Any]:
    items: list[KeyValue] = list(kvs)
    return {kv.key: value(kv.value) for kv in items}


def test_worker_spans_arrive_at_an_otlp_grpc_endpoint(receiver: tuple[Receiver, int]) -> None:
    servicer, port = receiver
    provider = tracing.build_provider("researcher", f"http://127.0.0.1:{port}")
    assert provider is not None
    tracer = tracing.tracer_for(provider)
    who = tracing.who("researcher", "session-1", "user-7")
    chat = {
        **who,
        tracing.OPERATION: "chat",
        tracing.REQUEST_MODEL: "m",
        tracing.INPUT_TOKENS: 20,
        tracing.OUTPUT_TOKENS: 9,
    }
    with (
        tracer.start_as_current_span("invoke_agent researcher", attributes=who),
        tracer.start_as_current_span("chat m", attributes=chat),
    ):
        pass
    assert provider.force_flush(timeout_millis=10_000)
    provider.shutdown()

    spans = [
        (attributes(rs.resource.attributes), span)
        for request in servicer.requests
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    assert sorted(s.name for _, s in spans) == ["chat m", "invoke_agent researcher"]
    resource, _ = spans[0]
    assert resource["service.name"] == "agent-worker"
    assert resource["swarmstack.agent"] == "researcher"
    by_name = {s.name: s for _, s in spans}
    assert attributes(by_name["chat m"].attributes) == {
        "gen_ai.agent.name": "researcher",
        "gen_ai.conversation.id": "session-1",
        "user.id": "user-7",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "m",
        "gen_ai.usage.input_tokens": 20,
        "gen_ai.usage.output_tokens": 9,
    }
    turn = by_name["invoke_agent researcher"]
    assert by_name["chat m"].parent_span_id == turn.span_id
    assert by_name["chat m"].trace_id == turn.trace_id
