"""Event-mode task parsing and result documents (pure parts of the consumer)."""

from __future__ import annotations

import json

from agent_worker.events import Task, error_document, parse_task, partition_for, result_document


def test_valid_task_gets_a_deterministic_session() -> None:
    raw = json.dumps({"task_id": "t-1", "message": "hi", "tool": "clock"}).encode()
    task, task_id, problem = parse_task(raw)
    assert problem is None and task_id == "t-1" and task is not None
    again, _, _ = parse_task(raw)
    assert again == task and len(task.session_id) == 32  # redelivery -> same session
    assert task.tool == "clock" and task.user == "events"


def test_task_with_session() -> None:
    sid = "ab" * 16
    task, _, _ = parse_task(
        json.dumps({"task_id": "x", "session_id": sid, "message": "m"}).encode()
    )
    assert task is not None and task.session_id == sid and task.tool is None


def test_invalid_tasks() -> None:
    assert parse_task(b"nope") == (None, None, "task is not valid JSON")
    assert parse_task(b"[]")[2] == "task must be a JSON object"
    assert parse_task(b'{"message": "m"}')[1] is None
    for body, problem in [
        ({"task_id": "t", "message": ""}, "message"),
        ({"task_id": "t", "message": "m", "tool": "rm"}, "unknown tool"),
        ({"task_id": "t", "message": "m", "session_id": "../x"}, "session_id"),
    ]:
        task, task_id, why = parse_task(json.dumps(body).encode())
        assert task is None and task_id == "t" and why is not None and problem in why


def test_partition_is_stable_and_in_range() -> None:
    ids = [f"task-{i}" for i in range(200)]
    parts = [partition_for(t, 3) for t in ids]
    assert parts == [partition_for(t, 3) for t in ids]
    assert set(parts) == {0, 1, 2}


def test_result_documents() -> None:
    task = Task("t1", "cd" * 16, "m", "ledger", "u")
    session = {
        "turns": [
            {
                "turn_id": "task-t1",
                "outcome": "done",
                "output_text": "answer",
                "tool_results": [
                    {
                        "name": "ledger",
                        "arguments": "{}",
                        "idempotency_key": "k",
                        "result": {},
                        "replayed": False,
                    }
                ],
                "output_tokens": 9,
                "steps": 2,
            }
        ]
    }
    doc = result_document(task, session, "w1")
    assert doc["status"] == "ok" and doc["output"] == "answer" and doc["error"] is None
    assert doc["tool_calls"] == [
        {"name": "ledger", "arguments": "{}", "idempotency_key": "k", "result": {}}
    ]
    err = error_document("t2", None, "bad", "w1")
    assert err["status"] == "error" and err["error"] == "bad"


def test_a_task_for_a_tool_outside_agent_tools_is_refused_with_its_id() -> None:
    raw = json.dumps({"task_id": "t-9", "message": "sum", "tool": "calculator"}).encode()
    assert parse_task(raw, ("clock",)) == (
        None,
        "t-9",
        "tool 'calculator' is not enabled for this agent (AGENT_TOOLS)",
    )
    task, _, problem = parse_task(raw, ("calculator",))
    assert problem is None and task is not None and task.tool == "calculator"
