"""Session state and the per-turn checkpoint state machine (pure functions, no I/O).

A session is a JSON document. A turn moves through checkpoints:

    accepted --model call--> model_done --tool call--> tool_done --model call--> model_done
        ... --> done

Each transition returns a new dict; the caller persists it before doing anything else.
`next_action` decides what the loop does next from the last checkpoint alone, which is
what makes a turn resumable on any worker.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

JSON = dict[str, Any]
Phase = Literal["accepted", "model_done", "tool_done", "done", "failed"]
PHASES: tuple[Phase, ...] = ("accepted", "model_done", "tool_done", "done", "failed")
TOOL_NAMES = ("calculator", "clock", "retrieve", "ledger")
HISTORY_MESSAGES = 8  # completed-turn messages sent back to the model


def new_session(session_id: str, user: str, agent: str, now: float) -> JSON:
    return {
        "session_id": session_id,
        "user": user,
        "agent": agent,
        "created_at": now,
        "updated_at": now,
        "checkpoints": 0,
        "history": [],
        "turns": [],
        "current": None,
        "tool_signatures": [],
        "usage": {"input_tokens": 0, "output_tokens": 0, "model_calls": 0, "tool_calls": 0},
    }


def idempotency_key(session_id: str, turn_id: str, step: int) -> str:
    return f"{session_id}:{turn_id}:{step}"


def tool_signature(name: str, arguments: str) -> str:
    """Identity of a tool call for loop detection: name + canonical arguments."""
    try:
        canonical = json.dumps(json.loads(arguments), sort_keys=True, separators=(",", ":"))
    except ValueError:
        canonical = arguments.strip()
    return hashlib.sha256(f"{name}\n{canonical}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TurnRequest:
    turn_id: str
    message: str
    tool: str | None
    max_tokens: int
    min_tokens: int = 0  # answer at least this long (0: the model may stop when it likes)


Start = Literal["new", "resume", "completed"]


def begin_turn(session: JSON, request: TurnRequest, now: float) -> tuple[JSON, Start]:
    """Accept a turn: a new one, the resumption of an unfinished one, or a finished one.

    A turn that is still current with the same id is resumed from its last checkpoint.
    A turn id already completed is answered from the record. An unfinished current turn
    with another id is abandoned (its client gave up); its messages never reach history.
    """
    s = copy.deepcopy(session)
    current: JSON | None = s.get("current")
    if current is not None and current["turn_id"] == request.turn_id:
        if current["phase"] in ("done", "failed"):
            return s, "completed"
        if current["message"] != request.message or current["tool"] != request.tool:
            raise TurnConflictError(
                f"turn_id {request.turn_id!r} was already used with another message or tool"
            )
        current["resumes"] = int(current.get("resumes", 0)) + 1
        return s, "resume"
    for turn in s["turns"]:
        if turn["turn_id"] == request.turn_id:
            return s, "completed"
    if current is not None and current["phase"] not in ("done", "failed"):
        s["turns"].append(_summary(current, outcome="abandoned"))
    s["current"] = {
        "turn_id": request.turn_id,
        "message": request.message,
        "tool": request.tool,
        "max_tokens": request.max_tokens,
        "min_tokens": request.min_tokens,
        "phase": "accepted",
        "steps": 0,
        "messages": [{"role": "user", "content": request.message}],
        "tool_results": [],
        "output_text": "",
        "output_tokens": 0,
        "input_tokens": 0,
        "started_at": now,
        "updated_at": now,
        "resumes": 0,
        "error": None,
    }
    return s, "new"


def degrade_turn(
    session: JSON,
    *,
    scope: str,
    used_ratio: float,
    max_steps: int,
    max_tokens: int,
    min_tokens: int,
    model: str | None = None,
) -> JSON:
    """Mark the current turn degraded by a budget: fewer model calls, a shorter answer
    and, when the agent has one, its cheaper `model`, kept in the checkpoint so a resumed
    turn stays degraded. A turn degraded after some of its steps keeps room for the next
    one."""
    s = copy.deepcopy(session)
    turn = s["current"]
    turn["max_steps"] = max(max_steps, int(turn["steps"]) + 1)
    turn["max_tokens"] = max_tokens
    turn["min_tokens"] = min_tokens
    turn["degraded"] = {"scope": scope, "used_ratio": round(used_ratio, 4)}
    if model is not None:
        turn["model"] = model
        turn["degraded"]["model"] = model
    return s


def turn_model(turn: JSON, default: str) -> str:
    """The model the turn calls: its cheaper one once degraded to it, else the agent's."""
    return str(turn.get("model") or default)


def turn_max_steps(turn: JSON, default: int) -> int:
    """The turn's own step limit (a degraded turn has a lower one), else the worker's."""
    return int(turn.get("max_steps") or default)


class TurnConflictError(ValueError):
    """A turn id reused for a different request."""


@dataclass(frozen=True)
class CallModel:
    step: int
    tool_choice: str | None  # tool name to force, or None for a plain answer


@dataclass(frozen=True)
class RunTool:
    step: int
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Finish:
    pass


@dataclass(frozen=True)
class Fail:
    reason: str


Action = CallModel | RunTool | Finish | Fail


def pending_tool_call(turn: JSON) -> JSON | None:
    """The last assistant message's tool call that has no result yet."""
    answered = {m.get("tool_call_id") for m in turn["messages"] if m["role"] == "tool"}
    for message in reversed(turn["messages"]):
        if message["role"] == "assistant":
            for call in message.get("tool_calls") or []:
                if call["id"] not in answered:
                    return call
            return None
    return None


def next_action(turn: JSON, max_steps: int) -> Action:
    """What to do after the turn's last checkpoint."""
    phase: Phase = turn["phase"]
    steps = int(turn["steps"])
    if phase in ("done", "failed"):
        return Finish()
    if phase == "accepted":
        return CallModel(step=1, tool_choice=turn["tool"])
    if phase == "model_done":
        call = pending_tool_call(turn)
        if call is None:
            return Finish()
        return RunTool(
            step=steps,
            call_id=call["id"],
            name=call["function"]["name"],
            arguments=call["function"]["arguments"],
        )
    # tool_done: feed the result back for a plain answer, if a step is left.
    if steps >= max_steps:
        return Fail(f"step limit of {max_steps} model calls reached")
    return CallModel(step=steps + 1, tool_choice=None)


def _touch(turn: JSON, phase: Phase, now: float) -> None:
    turn["phase"] = phase
    turn["updated_at"] = now


def record_model_call(
    session: JSON,
    *,
    step: int,
    content: str,
    tool_calls: list[JSON],
    input_tokens: int,
    output_tokens: int,
    now: float,
) -> JSON:
    """Checkpoint `model_done`: the assistant message of step `step` is final."""
    s = copy.deepcopy(session)
    turn = s["current"]
    if step != turn["steps"] + 1:
        raise ValueError(f"model step {step} does not follow step {turn['steps']}")
    message: JSON = {"role": "assistant", "content": content or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    turn["messages"].append(message)
    turn["steps"] = step
    turn["input_tokens"] += input_tokens
    turn["output_tokens"] += output_tokens
    if not tool_calls:
        turn["output_text"] = content
    usage = s["usage"]
    usage["input_tokens"] += input_tokens
    usage["output_tokens"] += output_tokens
    usage["model_calls"] += 1
    _touch(turn, "model_done", now)
    return s


def record_tool_result(
    session: JSON,
    *,
    call: RunTool,
    result: JSON,
    replayed: bool,
    key: str,
    now: float,
) -> tuple[JSON, bool]:
    """Checkpoint `tool_done`; returns (session, repeated) where repeated means an
    identical call (same tool, same arguments) was already made in this session."""
    s = copy.deepcopy(session)
    turn = s["current"]
    turn["messages"].append(
        {
            "role": "tool",
            "tool_call_id": call.call_id,
            "content": json.dumps(result, separators=(",", ":"), sort_keys=True),
        }
    )
    turn["tool_results"].append(
        {
            "name": call.name,
            "arguments": call.arguments,
            "idempotency_key": key,
            "result": result,
            "replayed": replayed,
        }
    )
    signature = tool_signature(call.name, call.arguments)
    repeated = signature in s["tool_signatures"]
    if not repeated:
        s["tool_signatures"].append(signature)
    s["usage"]["tool_calls"] += 1
    _touch(turn, "tool_done", now)
    return s, repeated


def _summary(turn: JSON, outcome: str) -> JSON:
    return {
        "turn_id": turn["turn_id"],
        "message": turn["message"],
        "tool": turn["tool"],
        "outcome": outcome,
        "output_text": turn["output_text"],
        "output_tokens": turn["output_tokens"],
        "input_tokens": turn["input_tokens"],
        "steps": turn["steps"],
        "tool_results": turn["tool_results"],
        "error": turn.get("error"),
        "degraded": turn.get("degraded"),
        "started_at": turn["started_at"],
        "finished_at": turn["updated_at"],
    }


def finish_turn(session: JSON, now: float) -> JSON:
    """Checkpoint `done`: the turn's messages join the history, its summary the turns."""
    s = copy.deepcopy(session)
    turn = s["current"]
    _touch(turn, "done", now)
    s["history"].extend(turn["messages"])
    s["turns"].append(_summary(turn, outcome="done"))
    s["current"] = None
    return s


def fail_turn(session: JSON, reason: str, now: float) -> JSON:
    """Checkpoint `failed`: kept in turns, never in history."""
    s = copy.deepcopy(session)
    turn = s["current"]
    turn["error"] = reason
    _touch(turn, "failed", now)
    s["turns"].append(_summary(turn, outcome="failed"))
    s["current"] = None
    return s


def find_turn(session: JSON, turn_id: str) -> JSON | None:
    for turn in session["turns"]:
        if turn["turn_id"] == turn_id:
            return turn
    return None


def model_messages(session: JSON, system_prompt: str) -> list[JSON]:
    """What the model sees: system prompt, recent history, the current turn so far."""
    history = session["history"][-HISTORY_MESSAGES:]
    # Never start the window inside a tool exchange (a `tool` message needs its call).
    while history and history[0]["role"] != "user":
        history = history[1:]
    turn = session["current"]
    return [
        {"role": "system", "content": system_prompt},
        *history,
        *(turn["messages"] if turn else []),
    ]
