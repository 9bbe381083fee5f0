"""Frames from a running turn to its HTTP response.

The turn runs in its own task (a client that goes away does not stop it) and hands every
SSE frame to a `FrameRelay`; the response iterates `frames()`. Per frame this costs a
list append and, when the response is waiting, one future: no task, no timer. When the
response is waiting, the first frame is written at once; frames that arrived while it
was busy writing are joined into one write, in order. A keep-alive comment goes out on
a stream idle for `keepalive_s`, from one timer per stream that is re-armed at most once
per interval.

`written()` waits until every frame queued so far has been handed to the response; the
fault hooks use it so a crash "after N tokens" happens after the client has them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator


class FrameRelay:
    def __init__(self, keepalive_s: float, keepalive_frame: bytes) -> None:
        self._loop = asyncio.get_running_loop()
        self._keepalive_s = keepalive_s
        self._keepalive_frame = keepalive_frame
        self._frames: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._last_write = self._loop.time()
        self._writing = False
        self._written: list[asyncio.Future[None]] = []
        self.writes = 0  # batches handed to the response (fewer than frames when coalesced)

    def put(self, frame: bytes) -> None:
        """Queue one frame (never blocks; frames after close are dropped)."""
        if self._closed:
            return
        self._frames.append(frame)
        self._wake()

    def close(self) -> None:
        """No more frames: `frames()` ends once the queued ones are written."""
        self._closed = True
        self._wake()

    async def written(self) -> None:
        """Return once the frames queued so far are written (or the stream has ended)."""
        if not (self._frames or self._writing) or self._closed:
            return
        done = self._loop.create_future()
        self._written.append(done)
        await done

    def _settle(self) -> None:
        waiting, self._written = self._written, []
        for done in waiting:
            if not done.done():
                done.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _keepalive(self) -> None:
        self._timer = None
        if self._closed or self._frames:
            return
        due = self._last_write + self._keepalive_s
        if self._loop.time() >= due:
            self.put(self._keepalive_frame)
        else:  # something was written since the timer was armed: wait for the rest
            self._timer = self._loop.call_at(due, self._keepalive)

    async def frames(self) -> AsyncIterator[bytes]:
        """What to write, in order: each ready batch as one bytes object."""
        loop = self._loop
        try:
            while True:
                if self._frames:
                    ready, self._frames = self._frames, []
                    self.writes += 1
                    self._writing = True
                    yield ready[0] if len(ready) == 1 else b"".join(ready)
                    self._writing = False
                    self._last_write = loop.time()
                    if self._written and not self._frames:
                        self._settle()
                    continue
                if self._closed:
                    return
                if self._timer is None:
                    self._timer = loop.call_at(
                        self._last_write + self._keepalive_s, self._keepalive
                    )
                self._waiter = loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
        finally:
            self._writing = False
            self._settle()  # a response that stopped early releases its waiters
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
