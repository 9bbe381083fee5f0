"""How the program is being run: a real `pulumi up`, a `pulumi preview`, or the offline plan.

The three differ in what they do with values that must not reach AWS (the
shipped documentation placeholders): `up` refuses them, `preview` and the plan
warn. The engine says which of `up` and `preview` it is (`is_dry_run()` is true
for a preview). The offline plan runs on the SDK's mock runtime with
`preview=False`, which looks like an `up` to the program, so the plan marks
itself: the runner calls the program inside `offline_plan()`, an in-process
flag. A real engine starts the program in a fresh process where nothing sets it,
and neither an environment variable nor a config key can switch it on, so no
stray setting turns an `up` into a run that lets placeholders through.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from contextvars import ContextVar
from typing import Literal

import pulumi

Mode = Literal["up", "preview", "plan"]

_OFFLINE_PLAN: ContextVar[bool] = ContextVar("swarmstack_offline_plan", default=False)


@contextlib.contextmanager
def offline_plan() -> Generator[None, None, None]:
    """Run the program as the offline plan inside this block."""
    token = _OFFLINE_PLAN.set(True)
    try:
        yield
    finally:
        _OFFLINE_PLAN.reset(token)


def current_mode() -> Mode:
    if _OFFLINE_PLAN.get():
        return "plan"
    return "preview" if pulumi.runtime.is_dry_run() else "up"
