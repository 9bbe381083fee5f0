"""Built-in tools: JSON schemas for forced tool calls, and their implementations.

`calculator`, `clock` and `retrieve` have no side effects; their results are journaled so
a replay returns what the first run returned. `ledger` has a visible side effect: it
appends an entry to the session's Redis ledger, atomically with its journal record.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from agent_worker.calculator import CalculatorError, evaluate, format_number
from agent_worker.retrieval import VectorStore
from agent_worker.state import TOOL_NAMES
from agent_worker.store import Store

JSON = dict[str, Any]

SCHEMAS: dict[str, JSON] = {
    "calculator": {
        "description": "Evaluate an arithmetic expression (+ - * / // % ** and parentheses).",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string", "minLength": 1, "maxLength": 64}},
            "required": ["expression"],
            "additionalProperties": False,
        },
    },
    "clock": {
        "description": "Current date and time, at a UTC offset in whole hours.",
        "parameters": {
            "type": "object",
            "properties": {"utc_offset_hours": {"type": "integer", "minimum": -12, "maximum": 14}},
            "required": ["utc_offset_hours"],
            "additionalProperties": False,
        },
    },
    "retrieve": {
        "description": "Search the platform knowledge base for documents about a topic.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "minLength": 1, "maxLength": 64}},
            "required": ["query"],
            "additionalProperties": False,
        },
    },
    "ledger": {
        "description": "Record an entry in the session ledger.",
        "parameters": {
            "type": "object",
            "properties": {"entry": {"type": "string", "minLength": 1, "maxLength": 48}},
            "required": ["entry"],
            "additionalProperties": False,
        },
    },
}
assert tuple(SCHEMAS) == TOOL_NAMES

RETRIEVE_LIMIT = 2


class ToolError(Exception):
    """The tool ran and failed (bad arguments, bad expression); the model sees the error."""


def openai_tool(name: str) -> JSON:
    """The `tools` entry of a chat request for one tool.

    `strict: true` makes vLLM pin the arguments to the schema with guided decoding (without
    it vLLM 0.32 only constrains the call envelope and a small model writes anything).
    """
    spec = SCHEMAS[name]
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": spec["description"],
            "parameters": spec["parameters"],
            "strict": True,
        },
    }


def parse_arguments(name: str, arguments: str) -> JSON:
    """Decode and check arguments against the tool's schema (the subset used here)."""
    try:
        value = json.loads(arguments)
    except ValueError:
        raise ToolError(f"{name}: arguments are not JSON") from None
    if not isinstance(value, dict):
        raise ToolError(f"{name}: arguments must be a JSON object")
    args: JSON = value
    schema = SCHEMAS[name]["parameters"]
    props: JSON = schema["properties"]
    for key in schema["required"]:
        if key not in args:
            raise ToolError(f"{name}: missing argument {key!r}")
    for key, val in args.items():
        if key not in props:
            raise ToolError(f"{name}: unknown argument {key!r}")
        kind = props[key]["type"]
        if kind == "string" and not (isinstance(val, str) and val.strip()):
            raise ToolError(f"{name}: {key!r} must be a non-empty string")
        if kind == "integer" and not (isinstance(val, int) and not isinstance(val, bool)):
            raise ToolError(f"{name}: {key!r} must be an integer")
        if kind == "integer" and not props[key]["minimum"] <= val <= props[key]["maximum"]:
            raise ToolError(f"{name}: {key!r} out of range")
    return args


def run_calculator(args: JSON) -> JSON:
    try:
        return {
            "expression": args["expression"],
            "value": format_number(evaluate(args["expression"])),
        }
    except CalculatorError as exc:
        raise ToolError(f"calculator: {exc}") from None


def run_clock(args: JSON, now: float | None = None) -> JSON:
    offset = int(args["utc_offset_hours"])
    moment = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
    local = moment.astimezone(timezone(timedelta(hours=offset)))
    return {"iso8601": local.isoformat(timespec="seconds"), "unix": int(moment.timestamp())}


async def run_retrieve(args: JSON, vectors: VectorStore) -> JSON:
    try:
        hits = await vectors.search(args["query"], RETRIEVE_LIMIT)
    except ValueError as exc:
        raise ToolError(f"retrieve: {exc}") from None
    return {
        "documents": [
            {"id": h.doc_id, "title": h.title, "text": h.text, "score": h.score} for h in hits
        ]
    }


class ToolRunner:
    """Runs a tool call at most once per idempotency key.

    Returns (result, replayed, is_error). The journal is consulted first; a recorded
    result is returned as a replay. Errors are journaled too, so a replay is faithful.
    """

    def __init__(self, store: Store, vectors: VectorStore, worker_id: str) -> None:
        self.store = store
        self.vectors = vectors
        self.worker_id = worker_id

    async def run(self, sid: str, key: str, name: str, arguments: str) -> tuple[JSON, bool, bool]:
        recorded = await self.store.journal_get(sid, key)
        if recorded is not None:
            return recorded["result"], True, bool(recorded.get("error"))
        record: JSON = {
            "name": name,
            "arguments": arguments,
            "at": time.time(),
            "worker": self.worker_id,
            "error": False,
        }
        try:
            args = parse_arguments(name, arguments)
            if name == "ledger":
                entry = {
                    "idempotency_key": key,
                    "entry": args["entry"],
                    "at": record["at"],
                    "worker": self.worker_id,
                }
                record["result"] = {"recorded": True, "entry": args["entry"]}
                replayed, held = await self.store.ledger_append(sid, key, entry, record)
                return held["result"], replayed, bool(held.get("error"))
            if name == "calculator":
                result = run_calculator(args)
            elif name == "clock":
                result = run_clock(args)
            else:
                result = await run_retrieve(args, self.vectors)
        except ToolError as exc:
            record["error"] = True
            record["result"] = {"error": str(exc)}
        else:
            record["result"] = result
        held = await self.store.journal_put(sid, key, record)
        replayed = held is not record
        return held["result"], replayed, bool(held.get("error"))
