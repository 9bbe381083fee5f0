"""Agent worker configuration: defaults, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_worker.config import ConfigError, load_settings

BASE = {
    "MODEL_BASE_URL": "http://127.0.0.1:8000/v1",
    "MODEL_NAME": "smollm2-135m-instruct",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}
EVENTS = {
    **BASE,
    "WORKER_MODE": "events",
    "KAFKA_BOOTSTRAP": "127.0.0.1:9092",
    "TASK_TOPIC": "agent-tasks",
    "RESULT_TOPIC": "agent-results",
    "CONSUMER_GROUP": "agents",
}


def test_defaults() -> None:
    s = load_settings(BASE)
    assert (s.worker_host, s.worker_port, s.worker_mode) == ("127.0.0.1", 8080, "http")
    assert (s.session_ttl_s, s.max_steps, s.max_message_bytes) == (86400, 4, 16384)
    assert s.grace_period_s == 25.0
    assert s.qdrant_path == ":memory:" and s.qdrant_url is None
    assert s.fault is None
    assert s.model_health_url == "http://127.0.0.1:8000/health"


def test_events_mode() -> None:
    s = load_settings(EVENTS)
    assert s.worker_mode == "events"
    assert (s.task_topic, s.result_topic, s.consumer_group) == (
        "agent-tasks",
        "agent-results",
        "agents",
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({**BASE, "MODEL_BASE_URL": ""}, "MODEL_BASE_URL"),
        ({**BASE, "MODEL_BASE_URL": "ftp://x"}, "MODEL_BASE_URL"),
        ({k: v for k, v in BASE.items() if k != "MODEL_NAME"}, "MODEL_NAME"),
        ({**BASE, "REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({**BASE, "WORKER_PORT": "eighty"}, "WORKER_PORT"),
        ({**BASE, "WORKER_PORT": "70000"}, "WORKER_PORT"),
        ({**BASE, "WORKER_MODE": "grpc"}, "WORKER_MODE"),
        ({**BASE, "SESSION_TTL_S": "-1"}, "SESSION_TTL_S"),
        ({**BASE, "MAX_STEPS": "1"}, "MAX_STEPS"),
        ({**BASE, "MAX_MESSAGE_BYTES": "0"}, "MAX_MESSAGE_BYTES"),
        ({**BASE, "GRACE_PERIOD_S": "soon"}, "GRACE_PERIOD_S"),
        ({**BASE, "AGENT_NAME": "bad name!"}, "AGENT_NAME"),
        ({**BASE, "QDRANT_PATH": "/tmp/q", "QDRANT_URL": "http://q:6333"}, "QDRANT_PATH"),
        ({**BASE, "QDRANT_API_KEY": "k"}, "QDRANT_API_KEY"),
        ({**BASE, "WORKER_MODE": "events"}, "KAFKA_BOOTSTRAP"),
        ({**EVENTS, "KAFKA_BOOTSTRAP": "nohostport"}, "KAFKA_BOOTSTRAP"),
        ({**EVENTS, "TASK_TOPIC": ""}, "TASK_TOPIC"),
        ({**EVENTS, "RESULT_TOPIC": "agent-tasks"}, "RESULT_TOPIC"),
        ({**BASE, "SWARM_FAULT_HOOKS": "1", "SWARM_FAULT": "explode"}, "SWARM_FAULT"),
        ({**BASE, "MODEL_HEALTH_URL": "/health/readiness"}, "MODEL_HEALTH_URL"),
        ({**BASE, "MODEL_API_KEY": "sk-in-the-env"}, "MODEL_API_KEY"),
        ({**BASE, "MODEL_API_KEY_FILE": "/nonexistent/key"}, "MODEL_API_KEY_FILE"),
        ({**BASE, "MODEL_DEGRADED_NAME": BASE["MODEL_NAME"]}, "MODEL_DEGRADED_NAME"),
        ({**BASE, "MODEL_RATE_LIMIT_ATTEMPTS": "0"}, "MODEL_RATE_LIMIT_ATTEMPTS"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert str(info.value).startswith(variable)


@pytest.mark.parametrize("fault", ["crash_mid_stream", "hold_mid_stream", "hold_after_tool"])
def test_fault_hooks_are_off_unless_enabled(fault: str) -> None:
    assert load_settings({**BASE, "SWARM_FAULT": fault}).fault is None
    assert load_settings({**BASE, "SWARM_FAULT_HOOKS": "0", "SWARM_FAULT": fault}).fault is None
    on = load_settings({**BASE, "SWARM_FAULT_HOOKS": "1", "SWARM_FAULT": fault})
    assert on.fault == fault


def test_remote_qdrant() -> None:
    s = load_settings({**BASE, "QDRANT_URL": "https://qdrant:6333", "QDRANT_API_KEY": "k"})
    assert (s.qdrant_path, s.qdrant_url, s.qdrant_api_key) == (None, "https://qdrant:6333", "k")


def test_redis_password_and_ca_files(tmp_path: Path) -> None:
    password, ca = tmp_path / "password", tmp_path / "ca.crt"
    password.write_text("pw")
    ca.write_text("-----BEGIN CERTIFICATE-----")
    tls = {**BASE, "REDIS_URL": "rediss://session-store:6379/0"}
    s = load_settings({**tls, "REDIS_PASSWORD_FILE": str(password), "REDIS_CA_FILE": str(ca)})
    assert (s.redis_password_file, s.redis_ca_file) == (str(password), str(ca))
    assert load_settings(BASE).redis_password_file is None
    with pytest.raises(ConfigError, match=r"^REDIS_PASSWORD_FILE must name a readable file"):
        load_settings({**tls, "REDIS_PASSWORD_FILE": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match=r"^REDIS_CA_FILE is set but REDIS_URL is not a rediss"):
        load_settings({**BASE, "REDIS_CA_FILE": str(ca)})
    with pytest.raises(ConfigError, match=r"^REDIS_PASSWORD_FILE is set and REDIS_URL carries"):
        load_settings(
            {**BASE, "REDIS_URL": "redis://:pw@r:6379/0", "REDIS_PASSWORD_FILE": str(password)}
        )


def test_agent_tools_unset_is_every_tool_none_is_no_tool_and_a_list_is_kept() -> None:
    assert load_settings(BASE).tools == ("calculator", "clock", "retrieve", "ledger")
    assert load_settings({**BASE, "AGENT_TOOLS": "none"}).tools == ()
    assert load_settings({**BASE, "AGENT_TOOLS": "retrieve, calculator"}).tools == (
        "retrieve",
        "calculator",
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("calculator,shell", "AGENT_TOOLS lists 'shell', which is not a tool"),
        ("clock,clock", "AGENT_TOOLS lists a tool more than once, got 'clock,clock'"),
    ],
)
def test_agent_tools_refuses_unknown_and_repeated_names(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({**BASE, "AGENT_TOOLS": value})


def test_a_gateway_connection_health_url_key_file_and_cheaper_model(tmp_path: Path) -> None:
    """Behind a gateway the worker probes the gateway's own readiness (MODEL_HEALTH_URL),
    not the model's /health, sends the agent's key from its mounted file, and knows its
    cheaper model."""
    key = tmp_path / "key"
    key.write_text("sk-agent-concierge\n")
    s = load_settings(
        {
            **BASE,
            "MODEL_BASE_URL": "http://gateway.gateway.svc:4000/v1",
            "MODEL_HEALTH_URL": "http://gateway.gateway.svc:4000/health/readiness",
            "MODEL_API_KEY_FILE": str(key),
            "MODEL_DEGRADED_NAME": "small-model",
            "MODEL_RATE_LIMIT_ATTEMPTS": "2",
        }
    )
    assert s.model_health_url == "http://gateway.gateway.svc:4000/health/readiness"
    assert s.model_api_key() == "sk-agent-concierge"
    assert (s.degraded_model_name, s.model_max_attempts) == ("small-model", 2)
    plain = load_settings(BASE)
    assert plain.model_api_key() is None and plain.degraded_model_name is None
    assert plain.model_max_attempts == 3
