"""Fault hooks for crash and shutdown tests: off unless SWARM_FAULT_HOOKS=1 and SWARM_FAULT
names one.

Each crash hook fires once, at the first point of its kind, with `os._exit(137)`: no
cleanup, no flush, no lease release, the same as the kernel's kill -9 as far as Redis and
Kafka see.

    crash_before_checkpoint  a tool has run (journal/ledger written), its tool_done checkpoint
                             is not; in a turn without a tool, before the first model_done
    crash_mid_stream         SWARM_FAULT_AFTER_TOKENS token events of the final answer have
                             been sent to the client (or the stream ended sooner)
    crash_after_model_call   right after the first model_done checkpoint
    crash_after_publish      event mode: a result is acknowledged by the broker, its ledger
                             mark and its offset commit are not

The hold hooks keep a turn in flight instead, so a shutdown test knows it sends SIGTERM
while the turn runs (the drain must interrupt it, whatever the model's answer length):

    hold_mid_stream          after SWARM_FAULT_AFTER_TOKENS token events of the first final
                             answer (or when that answer ended sooner, before its
                             model_done checkpoint) the turn waits until it is cancelled;
                             the worker logs "fault hook hold_mid_stream: holding" first
    hold_after_tool          after the first tool call's tool_done checkpoint, once its
                             tool_result event is sent, before the model call for the
                             answer; logs "fault hook hold_after_tool: holding" first
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

log = logging.getLogger("agent_worker.faults")
EXIT_CODE = 137


class Faults:
    def __init__(self, fault: str | None) -> None:
        self.fault = fault
        self.held = False
        if fault:
            log.warning("fault hook armed: %s", fault)

    def armed(self, name: str) -> bool:
        return self.fault == name

    def hit(self, name: str) -> None:
        if self.fault == name:
            log.error("fault hook %s: exiting with %d", name, EXIT_CODE)
            sys.stderr.flush()
            os._exit(EXIT_CODE)

    async def hold(self, name: str) -> None:
        """Wait until cancelled, the first time it is reached with `name` armed."""
        if self.fault != name or self.held:
            return
        self.held = True
        log.warning("fault hook %s: holding the turn until it is cancelled", name)
        await asyncio.Event().wait()
