"""The turn -> response relay: order kept, the first frame written at once, frames that
arrive together coalesced into one write, keep-alive comments only on an idle stream."""

from __future__ import annotations

import asyncio

from agent_worker.relay import FrameRelay
from agent_worker.sse import format_event, parse_events
from hypothesis import given, settings
from hypothesis import strategies as st

KEEPALIVE = b": keep-alive\n\n"


async def _collect(relay: FrameRelay, into: list[bytes]) -> None:
    async for batch in relay.frames():
        into.append(batch)


def test_first_frame_is_written_without_waiting_for_more() -> None:
    async def scenario() -> list[bytes]:
        relay = FrameRelay(60.0, KEEPALIVE)
        writes: list[bytes] = []
        reader = asyncio.create_task(_collect(relay, writes))
        await asyncio.sleep(0)  # the response is now waiting for a frame
        relay.put(b"a")
        for _ in range(3):  # a few loop iterations, no further frame, no timer
            await asyncio.sleep(0)
        assert writes == [b"a"]
        relay.close()
        await reader
        return writes

    assert asyncio.run(scenario()) == [b"a"]


def test_frames_ready_together_go_out_as_one_write_in_order() -> None:
    async def scenario() -> tuple[list[bytes], int]:
        relay = FrameRelay(60.0, KEEPALIVE)
        writes: list[bytes] = []
        reader = asyncio.create_task(_collect(relay, writes))
        await asyncio.sleep(0)
        relay.put(b"1")
        relay.put(b"2")  # the response has not run yet: joins the first
        relay.put(b"3")
        await asyncio.sleep(0)
        relay.put(b"4")
        relay.close()
        await reader
        return writes, relay.writes

    writes, count = asyncio.run(scenario())
    assert writes == [b"123", b"4"]
    assert count == 2


def test_frames_put_before_close_are_all_written() -> None:
    async def scenario() -> list[bytes]:
        relay = FrameRelay(60.0, KEEPALIVE)
        relay.put(b"x")
        relay.close()
        relay.put(b"late")  # after close: dropped
        writes: list[bytes] = []
        await _collect(relay, writes)
        return writes

    assert asyncio.run(scenario()) == [b"x"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.text(max_size=6)), max_size=30))
def test_any_interleaving_keeps_every_event_in_order(steps: list[tuple[int, str]]) -> None:
    async def scenario() -> str:
        relay = FrameRelay(60.0, KEEPALIVE)
        writes: list[bytes] = []
        reader = asyncio.create_task(_collect(relay, writes))
        for yields, text in steps:
            relay.put(format_event("token", {"text": text}))
            for _ in range(yields):
                await asyncio.sleep(0)
        relay.close()
        await reader
        return b"".join(writes).decode()

    body = asyncio.run(scenario())
    assert parse_events(body) == [("token", {"text": text}) for _, text in steps]


def test_keepalive_only_when_idle() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        busy = FrameRelay(0.5, KEEPALIVE)
        busy_writes: list[bytes] = []
        reader = asyncio.create_task(_collect(busy, busy_writes))
        for _ in range(60):  # a frame every 20 ms for over a second: never idle for 0.5 s
            busy.put(b"t")
            await asyncio.sleep(0.02)
        busy.close()
        await reader

        idle = FrameRelay(0.1, KEEPALIVE)
        idle_writes: list[bytes] = []
        reader = asyncio.create_task(_collect(idle, idle_writes))
        await asyncio.sleep(0.45)  # four idle intervals
        idle.put(b"t")
        idle.close()
        await reader
        return busy_writes, idle_writes

    busy_writes, idle_writes = asyncio.run(scenario())
    assert KEEPALIVE not in busy_writes
    assert set(busy_writes) == {b"t"}
    assert 2 <= idle_writes.count(KEEPALIVE) <= 4  # fewer if timers run late
    assert idle_writes[-1] == b"t"


def test_a_closed_stream_leaves_no_timer_behind() -> None:
    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        relay = FrameRelay(30.0, KEEPALIVE)
        writes: list[bytes] = []
        reader = asyncio.create_task(_collect(relay, writes))
        for _ in range(200):
            relay.put(b"t")
            await asyncio.sleep(0)
        pending = sum(1 for h in loop._scheduled if not h.cancelled())  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType, reportUnknownArgumentType]
        assert pending <= 1  # one keep-alive timer for the stream, not one per frame
        relay.close()
        await reader
        return sum(1 for h in loop._scheduled if not h.cancelled())  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType, reportUnknownArgumentType]

    assert asyncio.run(scenario()) == 0


def test_written_returns_only_after_the_response_has_taken_the_frame() -> None:
    async def scenario() -> list[str]:
        relay = FrameRelay(60.0, KEEPALIVE)
        seen: list[str] = []
        gate = asyncio.Event()

        async def slow_reader() -> None:
            async for batch in relay.frames():
                await gate.wait()  # the socket write is still in progress
                seen.append(f"wrote {batch.decode()}")

        reader = asyncio.create_task(slow_reader())
        await asyncio.sleep(0)
        relay.put(b"a")
        waiter = asyncio.create_task(relay.written())
        for _ in range(3):
            await asyncio.sleep(0)
        assert not waiter.done(), "written() returned before the frame was written"
        gate.set()
        await waiter
        seen.append("written() returned")
        relay.close()
        await reader
        return seen

    assert asyncio.run(scenario()) == ["wrote a", "written() returned"]
