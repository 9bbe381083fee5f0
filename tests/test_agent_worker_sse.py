"""SSE framing (worker -> client) and parsing (model -> worker)."""

from __future__ import annotations

import json

import pytest
from agent_worker.sse import SSEParser, SSEStream, format_comment, format_event, parse_events
from hypothesis import given
from hypothesis import strategies as st


def test_frame_layout() -> None:
    frame = format_event("token", {"text": "hi\nthere"})
    assert frame == b'event: token\ndata: {"text":"hi\\nthere"}\n\n'


def test_rejects_bad_event_names() -> None:
    for name in ("", "a\nb", "a:b"):
        with pytest.raises(ValueError, match="invalid SSE event name"):
            format_event(name, {})


def test_parser_joins_data_lines_and_ignores_comments() -> None:
    parser = SSEParser()
    lines = [": keep-alive", "", "event: x", "data: a", "data: b", "", "data: [DONE]", ""]
    messages = [m for m in (parser.feed(line) for line in lines) if m is not None]
    assert [(m.event, m.data) for m in messages] == [("x", "a\nb"), ("message", "[DONE]")]


def test_parser_handles_crlf_and_trailing_message() -> None:
    parser = SSEParser()
    assert parser.feed("data: 1\r") is None
    msg = parser.close()
    assert msg is not None and msg.data == "1"


def test_comment_frame() -> None:
    assert format_comment("ping") == b": ping\n\n"
    assert parse_events(format_comment("ping").decode()) == []


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["token", "tool_call", "tool_result", "done", "error"]),
            st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=3),
        ),
        max_size=5,
    )
)
def test_round_trip(events: list[tuple[str, dict[str, str]]]) -> None:
    body = b"".join(format_event(name, data) for name, data in events).decode()
    assert parse_events(body) == [(name, json.loads(json.dumps(data))) for name, data in events]


def test_sse_parser_reads_worker_and_openai_streams() -> None:
    stream = (
        b'event: token\ndata: {"text": "Hi"}\n\n'
        b": keep-alive\n\n"
        b'event: done\r\ndata: {"output_tokens": 1}\r\n\r\n'
        b'data: {"choices": []}\n\n'
        b"data: [DONE]\n\n"
    )
    events = SSEStream().feed(stream)
    assert [(e.event, e.data) for e in events] == [
        ("token", '{"text": "Hi"}'),
        ("done", '{"output_tokens": 1}'),
        ("message", '{"choices": []}'),
        ("message", "[DONE]"),
    ]


@given(st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_sse_parser_does_not_depend_on_chunk_boundaries(cuts: list[int]) -> None:
    stream = (
        "".join(f'event: token\ndata: {{"text": "t{i}"}}\n\n' for i in range(5))
        + 'event: done\ndata: {"a":\ndata: 1}'
    )
    parser = SSEStream()
    events = []
    previous = 0
    for cut in sorted(c % (len(stream) + 1) for c in cuts):
        events += parser.feed(stream[previous:cut].encode())
        previous = cut
    events += parser.feed(stream[previous:].encode())
    events += parser.close()  # the last event has no blank line after it
    assert [e.event for e in events] == ["token"] * 5 + ["done"]
    assert events[-1].data == '{"a":\n1}'


def test_a_character_cut_between_two_reads_is_decoded_whole() -> None:
    frame = 'data: {"text": "né€"}\n\n'.encode()
    cut = frame.index("€".encode()) + 1  # inside the 3-byte euro sign
    parser = SSEStream()
    events = parser.feed(frame[:cut]) + parser.feed(frame[cut:])
    assert [e.data for e in events] == ['{"text": "né€"}']


def test_frames_match_the_documented_layout_for_every_event() -> None:
    data = {"text": "é\u2028", "n": 1, "nested": {"a": [1, None]}}
    for name in ("resumed", "token", "tool_call", "tool_result", "done", "error", "custom"):
        payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        assert format_event(name, data) == f"event: {name}\ndata: {payload}\n\n".encode()
