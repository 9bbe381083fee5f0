"""The worker's Kafka TLS/SASL settings: what it accepts, what it refuses, and the aiokafka
options it builds (SCRAM-SHA-512 over TLS, password from a file, CA from a file)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from agent_worker.config import ConfigError, load_settings
from agent_worker.events import client_options

BASE = {
    "MODEL_BASE_URL": "http://127.0.0.1:8000/v1",
    "MODEL_NAME": "m",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "WORKER_MODE": "events",
    "KAFKA_BOOTSTRAP": "events-kafka-bootstrap.data.svc:9093",
    "TASK_TOPIC": "researcher.tasks",
    "RESULT_TOPIC": "researcher.results",
    "DEAD_LETTER_TOPIC": "researcher.dead-letter",
    "CONSUMER_GROUP": "researcher.workers",
}


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    """A throwaway self-signed CA made for this test."""
    key, cert = tmp_path / "ca.key", tmp_path / "ca.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=swarmstack-test-ca"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert


def _scram(tmp_path: Path, ca: Path) -> dict[str, str]:
    password = tmp_path / "password"
    password.write_text("s3cr3t-from-file\n")
    return {
        **BASE,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_USERNAME": "agent-researcher",
        "KAFKA_PASSWORD_FILE": str(password),
        "KAFKA_CA_FILE": str(ca),
    }


def test_scram_over_tls_builds_aiokafka_options(tmp_path: Path, ca_file: Path) -> None:
    settings = load_settings(_scram(tmp_path, ca_file))
    assert settings.dead_letter_topic == "researcher.dead-letter"
    options = client_options(settings.kafka)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "agent-researcher"
    assert options["sasl_plain_password"] == "s3cr3t-from-file"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    subjects = [str(c["subject"]) for c in context.get_ca_certs()]
    assert any("swarmstack-test-ca" in s for s in subjects), subjects


def test_plaintext_is_the_default_and_has_no_tls_or_sasl() -> None:
    options = client_options(load_settings(BASE).kafka)
    assert options == {"security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "would send the password in clear"),
        ({"KAFKA_SASL_MECHANISM": "PLAIN"}, "KAFKA_SASL_MECHANISM must be one of SCRAM-SHA-512"),
        ({"KAFKA_USERNAME": ""}, "KAFKA_USERNAME is required"),
        ({"KAFKA_PASSWORD_FILE": "/nonexistent/password"}, "KAFKA_PASSWORD_FILE must name"),
        ({"KAFKA_CA_FILE": "/nonexistent/ca.crt"}, "KAFKA_CA_FILE must name"),
        ({"KAFKA_PASSWORD": "inline"}, "KAFKA_PASSWORD is not read"),
        ({"DEAD_LETTER_TOPIC": "researcher.tasks"}, "DEAD_LETTER_TOPIC must differ"),
        ({"KAFKA_ENABLE_IDEMPOTENCE": "yes"}, "KAFKA_ENABLE_IDEMPOTENCE must be true or false"),
    ],
)
def test_bad_security_settings_name_the_variable(
    tmp_path: Path, ca_file: Path, changes: dict[str, str], message: str
) -> None:
    env = {**_scram(tmp_path, ca_file), **changes}
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_sasl_settings_without_sasl_ssl_are_refused() -> None:
    with pytest.raises(ConfigError, match="need KAFKA_SECURITY_PROTOCOL=SASL_SSL"):
        load_settings({**BASE, "KAFKA_USERNAME": "agent-researcher"})
