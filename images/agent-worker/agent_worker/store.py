"""Redis persistence: sessions (checkpoints), turn leases, the tool journal, the ledger
and the task result ledger.

Keys of one session share the hash tag `{<session_id>}` so the scripts below stay valid on
a Redis Cluster:

    swarm:{sid}:session   JSON session document (TTL SESSION_TTL_S, refreshed per checkpoint)
    swarm:{sid}:lease     "<worker instance>:<turn_id>" while a worker runs a turn (PX lease)
    swarm:{sid}:journal   hash idempotency key -> JSON tool call record (replays read it)
    swarm:{sid}:ledger    list of ledger tool entries (the visible side effect)
    swarm:task:{task_id}  JSON event-mode result record (publish intent, then published)
    swarm:task:{task_id}:lease  held by the worker settling the task (PX lease)

Usage records and the budget counters share the slot of the stream `swarm:usage` (the
hash tag `{swarm:usage}` hashes like the stream's own name), so one script appends a
record and moves every counter at once, also on a Redis Cluster:

    swarm:usage                               stream, one record per finished turn
    {swarm:usage}:turn:{sid}:{turn_id}        marker: this turn's record is written
    {swarm:usage}:session:{sid}               tokens of the session
    {swarm:usage}:user:{user}:{YYYY-MM-DD}    tokens of the user that UTC day
    {swarm:usage}:agent:{agent}:{YYYY-MM-DD}  tokens of the agent type that UTC day
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from redis.credentials import CredentialProvider

JSON = dict[str, Any]

_CHECKPOINT = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('EXPIRE', KEYS[4], ARGV[3])
return 1
"""

_REFRESH_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Append a ledger entry and journal its result in one step: a replay of the same
# idempotency key returns the recorded result and appends nothing.
_LEDGER_APPEND = """
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then return {1, existing} end
local entry = cjson.decode(ARGV[2])
entry['entry_no'] = redis.call('LLEN', KEYS[2]) + 1
redis.call('RPUSH', KEYS[2], cjson.encode(entry))
local record = cjson.decode(ARGV[3])
record['result']['entry_no'] = entry['entry_no']
local encoded = cjson.encode(record)
redis.call('HSET', KEYS[1], ARGV[1], encoded)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return {0, encoded}
"""


# One usage record per turn: a replay of the same turn (a resume after a crash, another
# worker finishing it) finds the marker and appends nothing. Returns the record id (0 if
# it was already written) and the three counters after it.
_USAGE_RECORD = """
local function counters()
  return {redis.call('GET', KEYS[3]) or '0', redis.call('GET', KEYS[4]) or '0',
          redis.call('GET', KEYS[5]) or '0'}
end
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then
  local c = counters()
  return {'0', c[1], c[2], c[3]}
end
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(fields))
redis.call('INCRBY', KEYS[3], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('INCRBY', KEYS[4], ARGV[2])
redis.call('EXPIRE', KEYS[4], ARGV[4])
redis.call('INCRBY', KEYS[5], ARGV[2])
redis.call('EXPIRE', KEYS[5], ARGV[4])
local c = counters()
return {id, c[1], c[2], c[3]}
"""

USAGE_STREAM = "swarm:usage"
USAGE_FIELDS = (
    "ts",
    "agent",
    "session",
    "user",
    "team",
    "model",
    "input_tokens",
    "output_tokens",
    "tool_calls",
    "duration_s",
    "outcome",
)
DAY_COUNTER_TTL_S = 2 * 86400  # a day's counters outlive the day by one more


def usage_day(ts: float) -> str:
    """The UTC day a per-day budget counter belongs to."""
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def usage_turn_key(sid: str, turn_id: str) -> str:
    return f"{{{USAGE_STREAM}}}:turn:{sid}:{turn_id}"


def usage_session_key(sid: str) -> str:
    return f"{{{USAGE_STREAM}}}:session:{sid}"


def usage_user_key(user: str, day: str) -> str:
    return f"{{{USAGE_STREAM}}}:user:{user}:{day}"


def usage_agent_key(agent: str, day: str) -> str:
    return f"{{{USAGE_STREAM}}}:agent:{agent}:{day}"


@dataclass(frozen=True)
class Spent:
    """Tokens (input + output) recorded so far for the three budget scopes."""

    session: int
    user: int
    agent: int


def session_key(sid: str) -> str:
    return f"swarm:{{{sid}}}:session"


def lease_key(sid: str) -> str:
    return f"swarm:{{{sid}}}:lease"


def journal_key(sid: str) -> str:
    return f"swarm:{{{sid}}}:journal"


def ledger_key(sid: str) -> str:
    return f"swarm:{{{sid}}}:ledger"


def task_key(task_id: str) -> str:
    return f"swarm:task:{task_id}"


def task_lease_key(task_id: str) -> str:
    return f"swarm:task:{task_id}:lease"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class PasswordFile(CredentialProvider):
    """The password of Redis's default user, read from a mounted Secret file at every new
    connection, so a rotated password is picked up without a restart."""

    def __init__(self, path: str) -> None:
        self.path = path

    def get_credentials(self) -> tuple[str]:
        with open(self.path, encoding="utf-8") as handle:
            return (handle.read().strip(),)

    async def get_credentials_async(self) -> tuple[str]:
        return self.get_credentials()


class Store:
    def __init__(self, client: aioredis.Redis, ttl_s: int, usage_maxlen: int = 1_000_000) -> None:
        self.redis = client
        self.ttl_s = ttl_s
        self.usage_maxlen = usage_maxlen
        self._usage = client.register_script(_USAGE_RECORD)
        self._checkpoint = client.register_script(_CHECKPOINT)
        self._refresh = client.register_script(_REFRESH_LEASE)
        self._release = client.register_script(_RELEASE_LEASE)
        self._ledger = client.register_script(_LEDGER_APPEND)

    @classmethod
    def from_url(
        cls,
        url: str,
        ttl_s: int,
        *,
        password_file: str | None = None,
        ca_file: str | None = None,
        usage_maxlen: int = 1_000_000,
    ) -> Store:
        """A store on `url`; a rediss:// URL verifies the server against `ca_file` (or the
        system's CAs) and its host name; `password_file` authenticates the default user."""
        options: dict[str, Any] = {}
        if password_file is not None:
            options["credential_provider"] = PasswordFile(password_file)
        if ca_file is not None:
            options["ssl_ca_certs"] = ca_file
        client = aioredis.from_url(
            url,
            decode_responses=True,
            socket_timeout=5,
            socket_connect_timeout=3,
            health_check_interval=10,
            **options,
        )
        return cls(client, ttl_s, usage_maxlen)

    async def ping(self) -> None:
        await self.redis.ping()  # pyright: ignore[reportUnknownMemberType]

    async def close(self) -> None:
        await self.redis.aclose()

    # sessions ---------------------------------------------------------------------------
    async def create_session(self, session: JSON) -> bool:
        done = await self.redis.set(
            session_key(session["session_id"]), _dumps(session), ex=self.ttl_s, nx=True
        )
        return bool(done)

    async def load_session(self, sid: str) -> JSON | None:
        raw = await self.redis.get(session_key(sid))
        return None if raw is None else cast(JSON, json.loads(raw))

    async def checkpoint(self, session: JSON, lease_token: str) -> bool:
        """Write the session if this worker still holds the turn lease (fencing)."""
        sid = session["session_id"]
        session["checkpoints"] = int(session.get("checkpoints", 0)) + 1
        ok = await self._checkpoint(
            keys=[session_key(sid), lease_key(sid), journal_key(sid), ledger_key(sid)],
            args=[lease_token, _dumps(session), self.ttl_s],
        )
        return bool(ok)

    # leases (a session's turn lease, an event-mode task's lease) --------------------------
    async def acquire_lease(self, key: str, token: str, lease_ms: int) -> bool:
        return bool(await self.redis.set(key, token, px=lease_ms, nx=True))

    async def refresh_lease(self, key: str, token: str, lease_ms: int) -> bool:
        return bool(await self._refresh(keys=[key], args=[token, lease_ms]))

    async def release_lease(self, key: str, token: str) -> None:
        await self._release(keys=[key], args=[token])

    async def lease_ttl_ms(self, key: str) -> int:
        return int(await self.redis.pttl(key))

    # tool journal and ledger --------------------------------------------------------------
    async def journal_get(self, sid: str, key: str) -> JSON | None:
        raw = await self.redis.hget(journal_key(sid), key)  # pyright: ignore[reportGeneralTypeIssues]
        return None if raw is None else cast(JSON, json.loads(cast(str, raw)))

    async def journal_put(self, sid: str, key: str, record: JSON) -> JSON:
        """Record a tool result unless one exists; returns the record that holds."""
        jkey = journal_key(sid)
        created = await self.redis.hsetnx(jkey, key, _dumps(record))  # pyright: ignore[reportGeneralTypeIssues]
        await self.redis.expire(jkey, self.ttl_s)
        if created:
            return record
        existing = await self.journal_get(sid, key)
        return existing if existing is not None else record

    async def ledger_append(
        self, sid: str, key: str, entry: JSON, record: JSON
    ) -> tuple[bool, JSON]:
        """Append `entry` once per idempotency key; returns (replayed, journal record)."""
        replayed, raw = await self._ledger(
            keys=[journal_key(sid), ledger_key(sid)],
            args=[key, _dumps(entry), _dumps(record), self.ttl_s],
        )
        return bool(replayed), cast(JSON, json.loads(raw))

    async def ledger_entries(self, sid: str) -> list[JSON]:
        raw = await self.redis.lrange(ledger_key(sid), 0, -1)  # pyright: ignore[reportGeneralTypeIssues]
        return [cast(JSON, json.loads(item)) for item in cast(list[str], raw)]

    # event-mode result ledger -----------------------------------------------------------
    async def task_get(self, task_id: str) -> JSON | None:
        raw = await self.redis.get(task_key(task_id))
        return None if raw is None else cast(JSON, json.loads(raw))

    async def task_put(self, task_id: str, record: JSON) -> None:
        await self.redis.set(task_key(task_id), _dumps(record), ex=self.ttl_s)

    # usage records and budget counters ----------------------------------------------------
    async def record_usage(
        self, turn_id: str, record: dict[str, str | int | float]
    ) -> tuple[bool, Spent]:
        """Append the turn's usage record once (keyed by session and turn id) and add its
        tokens to the session's, the user's and the agent type's counters in the same
        script. Returns (written, counters after it); a replay writes nothing."""
        sid, user, agent = str(record["session"]), str(record["user"]), str(record["agent"])
        day = usage_day(float(record["ts"]))
        tokens = int(record["input_tokens"]) + int(record["output_tokens"])
        fields: list[str] = []
        for name in USAGE_FIELDS:
            fields += [name, str(record[name])]
        record_id, s, u, a = await self._usage(
            keys=[
                USAGE_STREAM,
                usage_turn_key(sid, turn_id),
                usage_session_key(sid),
                usage_user_key(user, day),
                usage_agent_key(agent, day),
            ],
            args=[self.usage_maxlen, tokens, self.ttl_s, DAY_COUNTER_TTL_S, *fields],
        )
        return str(record_id) != "0", Spent(int(s), int(u), int(a))

    async def spent(self, sid: str, user: str, agent: str, now: float) -> Spent:
        day = usage_day(now)
        raw = await self.redis.mget(
            [usage_session_key(sid), usage_user_key(user, day), usage_agent_key(agent, day)]
        )
        s, u, a = (int(v or 0) for v in cast(list[str | None], raw))
        return Spent(s, u, a)
