"""Worker configuration from environment variables, validated once at start.

Every problem is reported as a `ConfigError` whose message names the variable, so a
misconfigured pod fails fast with a line that says what to fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from agent_worker.budget import Budgets
from agent_worker.state import TOOL_NAMES

FAULTS = (
    "crash_before_checkpoint",
    "crash_mid_stream",
    "crash_after_model_call",
    "crash_after_publish",
    "hold_mid_stream",
    "hold_after_tool",
)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class ConfigError(ValueError):
    """A bad or missing environment variable; the message starts with its name."""


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "OAUTHBEARER")
# An AWS region name (us-east-1, eu-central-2, us-gov-west-1, ...).
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")


@dataclass(frozen=True)
class KafkaSecurity:
    """How the worker authenticates to Kafka and checks the brokers' certificates.

    SASL_PLAINTEXT is refused: it would send the password in clear. With SCRAM-SHA-512 the
    password is read from a mounted file (KAFKA_PASSWORD_FILE), never from the environment.
    With OAUTHBEARER (Amazon MSK with IAM client auth) each connection presents a token
    signed for `aws_region` with the default AWS credential chain (IRSA in a pod).
    """

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password_file: str | None = None
    ca_file: str | None = None
    enable_idempotence: bool = False
    aws_region: str | None = None


@dataclass(frozen=True)
class Settings:
    model_base_url: str
    model_name: str
    redis_url: str
    redis_password_file: str | None
    redis_ca_file: str | None
    qdrant_path: str | None
    qdrant_url: str | None
    qdrant_api_key: str | None
    qdrant_api_key_file: str | None
    qdrant_ca_file: str | None
    worker_host: str
    worker_port: int
    worker_mode: Literal["http", "events"]
    kafka_bootstrap: str | None
    task_topic: str | None
    result_topic: str | None
    consumer_group: str | None
    dead_letter_topic: str | None
    kafka: KafkaSecurity
    session_ttl_s: int
    max_steps: int
    max_message_bytes: int
    agent_name: str
    grace_period_s: float
    lease_s: float
    model_timeout_s: float
    default_max_tokens: int
    fault: str | None
    fault_after_tokens: int
    kafka_session_timeout_ms: int
    agent_team: str = "unassigned"
    usage_maxlen: int = 1_000_000
    budgets: Budgets = field(default_factory=Budgets)
    otel_endpoint: str | None = None
    tools: tuple[str, ...] = TOOL_NAMES
    health_url: str | None = None  # MODEL_HEALTH_URL; None: the model's own /health
    model_api_key_file: str | None = None
    degraded_model_name: str | None = None
    model_max_attempts: int = 3

    @property
    def model_health_url(self) -> str:
        """MODEL_HEALTH_URL when set (a gateway's own readiness), else the model's
        /health, which vLLM serves beside /v1, not under it."""
        if self.health_url is not None:
            return self.health_url
        base = self.model_base_url.rstrip("/")
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        return base + "/health"

    def model_api_key(self) -> str | None:
        """The key sent to the model endpoint (a gateway's per-agent key), read from its
        mounted file; None without one."""
        if self.model_api_key_file is None:
            return None
        return Path(self.model_api_key_file).read_text().strip() or None


def _str(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _required(env: Mapping[str, str], name: str, why: str = "") -> str:
    value = _str(env, name)
    if value is None:
        raise ConfigError(f"{name} is required{why}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = _str(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = _str(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo:g} and {hi:g}, got {value:g}")
    return value


def _url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not parsed.netloc:
        raise ConfigError(f"{name} must be a {'/'.join(schemes)} URL with a host, got {value!r}")
    return value


def _name(name: str, value: str) -> str:
    if not _NAME_RE.match(value):
        raise ConfigError(
            f"{name} must be 1-63 characters of letters, digits, '.', '_' or '-', got {value!r}"
        )
    return value


def _file(env: Mapping[str, str], name: str) -> str | None:
    """A path to a mounted secret or CA file; it must be a readable file at start."""
    path = _str(env, name)
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise ConfigError(
            f"{name} must name a readable file, got {path!r}: {exc.strerror}"
        ) from None
    return path


def load_settings(env: Mapping[str, str]) -> Settings:
    """Read and validate the worker's settings; raises ConfigError naming the variable."""
    model_base_url = _url(
        "MODEL_BASE_URL", _required(env, "MODEL_BASE_URL"), ("http", "https")
    ).rstrip("/")
    model_name = _required(env, "MODEL_NAME")
    health_url = _str(env, "MODEL_HEALTH_URL")
    if health_url is not None:
        _url("MODEL_HEALTH_URL", health_url, ("http", "https"))
    api_key_file = _file(env, "MODEL_API_KEY_FILE")
    if _str(env, "MODEL_API_KEY") is not None:
        raise ConfigError("MODEL_API_KEY is not read: mount the key and set MODEL_API_KEY_FILE")
    degraded_model = _str(env, "MODEL_DEGRADED_NAME")
    if degraded_model == model_name:
        raise ConfigError(
            f"MODEL_DEGRADED_NAME must name a cheaper model than MODEL_NAME, got the same "
            f"{degraded_model!r}"
        )
    redis_url = _url("REDIS_URL", _required(env, "REDIS_URL"), ("redis", "rediss", "unix"))
    redis_password_file = _file(env, "REDIS_PASSWORD_FILE")
    redis_ca_file = _file(env, "REDIS_CA_FILE")
    if redis_ca_file and urlparse(redis_url).scheme != "rediss":
        raise ConfigError("REDIS_CA_FILE is set but REDIS_URL is not a rediss:// (TLS) URL")
    if redis_password_file and urlparse(redis_url).password:
        raise ConfigError("REDIS_PASSWORD_FILE is set and REDIS_URL carries a password; use one")

    qdrant_path = _str(env, "QDRANT_PATH")
    qdrant_url = _str(env, "QDRANT_URL")
    qdrant_api_key = _str(env, "QDRANT_API_KEY")
    qdrant_api_key_file = _file(env, "QDRANT_API_KEY_FILE")
    qdrant_ca_file = _file(env, "QDRANT_CA_FILE")
    if qdrant_path and qdrant_url:
        raise ConfigError("QDRANT_PATH and QDRANT_URL are both set; set one of them")
    if qdrant_api_key and qdrant_api_key_file:
        raise ConfigError("QDRANT_API_KEY and QDRANT_API_KEY_FILE are both set; set one of them")
    if qdrant_url:
        _url("QDRANT_URL", qdrant_url, ("http", "https"))
        if qdrant_ca_file and urlparse(qdrant_url).scheme != "https":
            raise ConfigError("QDRANT_CA_FILE is set but QDRANT_URL is not an https:// URL")
    else:
        for name, value in (
            ("QDRANT_API_KEY", qdrant_api_key),
            ("QDRANT_API_KEY_FILE", qdrant_api_key_file),
            ("QDRANT_CA_FILE", qdrant_ca_file),
        ):
            if value:
                raise ConfigError(f"{name} is set but QDRANT_URL is not")
    if not qdrant_path and not qdrant_url:
        qdrant_path = ":memory:"

    host = _str(env, "WORKER_HOST", "127.0.0.1") or "127.0.0.1"
    port = _int(env, "WORKER_PORT", 8080, 1, 65535)
    mode = _str(env, "WORKER_MODE", "http")
    if mode not in ("http", "events"):
        raise ConfigError(f"WORKER_MODE must be 'http' or 'events', got {mode!r}")

    kafka_bootstrap = task_topic = result_topic = consumer_group = dead_letter_topic = None
    kafka = KafkaSecurity()
    if mode == "events":
        why = " when WORKER_MODE=events"
        kafka_bootstrap = _required(env, "KAFKA_BOOTSTRAP", why)
        for server in kafka_bootstrap.split(","):
            host_part, _, port_part = server.strip().rpartition(":")
            if not host_part or not port_part.isdigit():
                raise ConfigError(f"KAFKA_BOOTSTRAP must be host:port[,host:port], got {server!r}")
        task_topic = _name("TASK_TOPIC", _required(env, "TASK_TOPIC", why))
        result_topic = _name("RESULT_TOPIC", _required(env, "RESULT_TOPIC", why))
        consumer_group = _name("CONSUMER_GROUP", _required(env, "CONSUMER_GROUP", why))
        if task_topic == result_topic:
            raise ConfigError("RESULT_TOPIC must differ from TASK_TOPIC")
        dead_letter = _str(env, "DEAD_LETTER_TOPIC")
        if dead_letter is not None:
            dead_letter_topic = _name("DEAD_LETTER_TOPIC", dead_letter)
            if dead_letter_topic in (task_topic, result_topic):
                raise ConfigError("DEAD_LETTER_TOPIC must differ from TASK_TOPIC and RESULT_TOPIC")
        kafka = kafka_security(env)

    fault: str | None = None
    if _str(env, "SWARM_FAULT_HOOKS") == "1":
        fault = _str(env, "SWARM_FAULT")
        if fault is not None and fault not in FAULTS:
            raise ConfigError(f"SWARM_FAULT must be one of {', '.join(FAULTS)}, got {fault!r}")

    grace = _float(env, "GRACE_PERIOD_S", 25.0, 1.0, 3600.0)
    otel_endpoint = _str(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
    if otel_endpoint is not None:
        _url("OTEL_EXPORTER_OTLP_ENDPOINT", otel_endpoint, ("http", "https"))
    return Settings(
        model_base_url=model_base_url,
        model_name=model_name,
        redis_url=redis_url,
        redis_password_file=redis_password_file,
        redis_ca_file=redis_ca_file,
        qdrant_path=qdrant_path,
        qdrant_url=qdrant_url,
        qdrant_api_key=qdrant_api_key,
        qdrant_api_key_file=qdrant_api_key_file,
        qdrant_ca_file=qdrant_ca_file,
        worker_host=host,
        worker_port=port,
        worker_mode="events" if mode == "events" else "http",
        kafka_bootstrap=kafka_bootstrap,
        task_topic=task_topic,
        result_topic=result_topic,
        consumer_group=consumer_group,
        dead_letter_topic=dead_letter_topic,
        kafka=kafka,
        session_ttl_s=_int(env, "SESSION_TTL_S", 86400, 60, 30 * 86400),
        max_steps=_int(env, "MAX_STEPS", 4, 2, 32),
        max_message_bytes=_int(env, "MAX_MESSAGE_BYTES", 16384, 1, 1 << 20),
        agent_name=_name("AGENT_NAME", _str(env, "AGENT_NAME", "agent") or "agent"),
        grace_period_s=grace,
        lease_s=_float(env, "LEASE_S", 10.0, 1.0, 600.0),
        model_timeout_s=_float(env, "MODEL_TIMEOUT_S", 120.0, 1.0, 3600.0),
        default_max_tokens=_int(env, "DEFAULT_MAX_TOKENS", 128, 1, 4096),
        fault=fault,
        fault_after_tokens=_int(env, "SWARM_FAULT_AFTER_TOKENS", 3, 1, 10000),
        kafka_session_timeout_ms=_int(env, "KAFKA_SESSION_TIMEOUT_MS", 10000, 1000, 300000),
        agent_team=_name("AGENT_TEAM", _str(env, "AGENT_TEAM", "unassigned") or "unassigned"),
        usage_maxlen=_int(env, "USAGE_STREAM_MAXLEN", 1_000_000, 1000, 1_000_000_000),
        budgets=budgets(env),
        otel_endpoint=otel_endpoint,
        tools=agent_tools(env),
        health_url=health_url,
        model_api_key_file=api_key_file,
        degraded_model_name=degraded_model,
        model_max_attempts=_int(env, "MODEL_RATE_LIMIT_ATTEMPTS", 3, 1, 10),
    )


def agent_tools(env: Mapping[str, str]) -> tuple[str, ...]:
    """AGENT_TOOLS: the tools this agent's turns may call, comma-separated, or `none`;
    unset: every tool."""
    raw = _str(env, "AGENT_TOOLS")
    if raw is None:
        return TOOL_NAMES
    if raw == "none":
        return ()
    names = [n.strip() for n in raw.split(",")]
    for name in names:
        if name not in TOOL_NAMES:
            raise ConfigError(
                f"AGENT_TOOLS lists {name!r}, which is not a tool (tools: "
                f"{', '.join(TOOL_NAMES)}; or `none`)"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"AGENT_TOOLS lists a tool more than once, got {raw!r}")
    return tuple(names)


def _limit(env: Mapping[str, str], name: str) -> int | None:
    """A token budget: unset or 0 means none."""
    value = _int(env, name, 0, 0, 10**15)
    return value or None


def budgets(env: Mapping[str, str]) -> Budgets:
    """BUDGET_SESSION_TOKENS, BUDGET_USER_TOKENS_PER_DAY, BUDGET_AGENT_TOKENS_PER_DAY
    (input + output tokens; unset or 0: no budget) and BUDGET_DEGRADE_AT (0-1)."""
    degrade_at = _float(env, "BUDGET_DEGRADE_AT", 0.8, 0.0, 1.0)
    if degrade_at <= 0.0:
        raise ConfigError(f"BUDGET_DEGRADE_AT must be above 0 and at most 1, got {degrade_at:g}")
    return Budgets(
        session_tokens=_limit(env, "BUDGET_SESSION_TOKENS"),
        user_tokens_per_day=_limit(env, "BUDGET_USER_TOKENS_PER_DAY"),
        agent_tokens_per_day=_limit(env, "BUDGET_AGENT_TOKENS_PER_DAY"),
        degrade_at=degrade_at,
    )


def _existing_file(name: str, value: str) -> str:
    if not Path(value).is_file():
        raise ConfigError(f"{name} must name a readable file, {value!r} is not a file")
    return value


def kafka_security(env: Mapping[str, str]) -> KafkaSecurity:
    protocol = _str(env, "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT") or "PLAINTEXT"
    if protocol not in SECURITY_PROTOCOLS:
        raise ConfigError(
            f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(SECURITY_PROTOCOLS)}, got "
            f"{protocol!r} (SASL_PLAINTEXT would send the password in clear)"
        )
    mechanism = _str(env, "KAFKA_SASL_MECHANISM")
    username = _str(env, "KAFKA_USERNAME")
    password_file = _str(env, "KAFKA_PASSWORD_FILE")
    ca_file = _str(env, "KAFKA_CA_FILE")
    if _str(env, "KAFKA_PASSWORD") is not None:
        raise ConfigError(
            "KAFKA_PASSWORD is not read: mount the password and set KAFKA_PASSWORD_FILE"
        )
    aws_region: str | None = None
    if protocol == "SASL_SSL":
        if mechanism not in SASL_MECHANISMS:
            raise ConfigError(
                f"KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)} with "
                f"SASL_SSL, got {mechanism!r}"
            )
        if mechanism == "OAUTHBEARER":
            aws_region = _aws_region(env, username, password_file)
        else:
            if username is None:
                raise ConfigError(
                    "KAFKA_USERNAME is required when KAFKA_SECURITY_PROTOCOL=SASL_SSL"
                )
            if password_file is None:
                raise ConfigError(
                    "KAFKA_PASSWORD_FILE is required when KAFKA_SECURITY_PROTOCOL=SASL_SSL"
                )
            _existing_file("KAFKA_PASSWORD_FILE", password_file)
    elif mechanism or username or password_file:
        raise ConfigError(
            f"KAFKA_SASL_MECHANISM, KAFKA_USERNAME and KAFKA_PASSWORD_FILE need "
            f"KAFKA_SECURITY_PROTOCOL=SASL_SSL, got {protocol}"
        )
    if ca_file is not None:
        if protocol == "PLAINTEXT":
            raise ConfigError("KAFKA_CA_FILE is set but KAFKA_SECURITY_PROTOCOL is PLAINTEXT")
        _existing_file("KAFKA_CA_FILE", ca_file)
    idempotence = _str(env, "KAFKA_ENABLE_IDEMPOTENCE", "false")
    if idempotence not in ("true", "false"):
        raise ConfigError(f"KAFKA_ENABLE_IDEMPOTENCE must be true or false, got {idempotence!r}")
    return KafkaSecurity(
        security_protocol="SASL_SSL"
        if protocol == "SASL_SSL"
        else ("SSL" if protocol == "SSL" else "PLAINTEXT"),
        sasl_mechanism=mechanism,
        username=username,
        password_file=password_file,
        ca_file=ca_file,
        enable_idempotence=idempotence == "true",
        aws_region=aws_region,
    )


def _aws_region(env: Mapping[str, str], username: str | None, password_file: str | None) -> str:
    """OAUTHBEARER (MSK IAM): the region the token is signed for; no SCRAM credentials."""
    for name, value in (("KAFKA_USERNAME", username), ("KAFKA_PASSWORD_FILE", password_file)):
        if value is not None:
            raise ConfigError(
                f"{name} is set but KAFKA_SASL_MECHANISM=OAUTHBEARER authenticates with AWS "
                "IAM credentials, not a username and password: unset it"
            )
    region = _required(env, "AWS_REGION", " when KAFKA_SASL_MECHANISM=OAUTHBEARER (MSK IAM)")
    if not _REGION_RE.match(region):
        raise ConfigError(f"AWS_REGION must be an AWS region such as us-east-1, got {region!r}")
    return region
