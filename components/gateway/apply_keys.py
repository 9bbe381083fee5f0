"""Registers every agent type's key with the gateway: the key Job's program.

It runs in the gateway's own image (Python's standard library only) after each deploy that
changes the keys, and is idempotent: for each agent it looks its key up by hash
(`/key/info`); a live key gets the configured limits again (`/key/update`), a missing one
is created with the agent's pre-derived value (`/key/generate`) after any older key under
the same alias (a previous `keyVersion`) is revoked (`/key/delete`). Any other answer
fails the Job, and with it the deploy.

Inputs, all mounted by the Job: `GATEWAY_URL`, `MASTER_KEY_FILE`, `KEYS_DIR` (one file
per agent type, named by the agent, holding its key) and `REQUESTS_FILE` (JSON from
components/gateway/keys.py `key_requests`, without keys). It prints agent names and
actions, never a key.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, cast

READY_PATH = "/health/readiness"
READY_ATTEMPTS = 60
READY_WAIT_S = 5.0
TIMEOUT_S = 30.0


class GatewayError(RuntimeError):
    pass


def call(
    base: str, master: str, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base.rstrip("/") + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {master}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        text = error.read().decode(errors="replace")
        try:
            return error.code, json.loads(text)
        except json.JSONDecodeError:
            return error.code, text


def wait_ready(base: str, attempts: int = READY_ATTEMPTS, wait_s: float = READY_WAIT_S) -> None:
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(base.rstrip("/") + READY_PATH, timeout=TIMEOUT_S):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(wait_s)
    raise GatewayError(f"{base}{READY_PATH} did not answer after {attempts} attempts")


def is_live(status: int, info: Any) -> bool:
    """A 200 for a key that is not deleted, revoked or expired (`info.status`)."""
    if status != 200 or not isinstance(info, dict):
        return False
    answer = cast(dict[str, Any], info)
    details = answer.get("info")
    if not isinstance(details, dict):
        return True
    return cast(dict[str, Any], details).get("status", "active") == "active"


def apply_key(base: str, master: str, agent: str, key: str, request: dict[str, Any]) -> str:
    """Makes the gateway hold `key` for `agent` with `request`'s limits; says what it did."""
    hashed = hashlib.sha256(key.encode()).hexdigest()
    status, info = call(base, master, "GET", "/key/info?" + urllib.parse.urlencode({"key": hashed}))
    if is_live(status, info):
        status, answer = call(base, master, "POST", "/key/update", {**request, "key": key})
        if status != 200:
            raise GatewayError(f"{agent}: /key/update answered {status}: {answer}")
        return "updated"
    if status not in (200, 400, 404):
        raise GatewayError(f"{agent}: /key/info answered {status}: {info}")
    alias = request["key_alias"]
    status, answer = call(base, master, "POST", "/key/delete", {"key_aliases": [alias]})
    if status not in (200, 400, 404):
        raise GatewayError(f"{agent}: /key/delete answered {status}: {answer}")
    status, answer = call(base, master, "POST", "/key/generate", {**request, "key": key})
    if status != 200:
        raise GatewayError(f"{agent}: /key/generate answered {status}: {answer}")
    return "created"


def main(env: dict[str, str]) -> int:
    base = env["GATEWAY_URL"]
    master = Path(env["MASTER_KEY_FILE"]).read_text().strip()
    keys_dir = Path(env["KEYS_DIR"])
    requests = json.loads(Path(env["REQUESTS_FILE"]).read_text())
    wait_ready(base)
    for entry in requests:
        agent = entry["agent"]
        key = (keys_dir / agent).read_text().strip()
        action = apply_key(base, master, agent, key, entry["request"])
        print(f"agent {agent}: key {action}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(dict(os.environ)))
    except GatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
