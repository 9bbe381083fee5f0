"""The worker's Kafka TLS/SASL settings: what it accepts, what it refuses, and the aiokafka
options it builds (SCRAM-SHA-512 over TLS, password from a file, CA from a file; MSK IAM
over OAUTHBEARER with tokens signed by the AWS MSK IAM signer)."""

from __future__ import annotations

import asyncio
import base64
import ssl
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from agent_worker import msk_iam
from agent_worker.config import ConfigError, load_settings
from agent_worker.events import client_options
from agent_worker.msk_iam import MskIamTokenProvider
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import AbstractTokenProvider
from aiokafka.conn import OAuthAuthenticator

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
        (
            {"KAFKA_SASL_MECHANISM": "PLAIN"},
            "must be one of SCRAM-SHA-512, OAUTHBEARER",
        ),
        ({"KAFKA_USERNAME": ""}, "KAFKA_USERNAME is required"),
        ({"KAFKA_PASSWORD_FILE": ""}, "KAFKA_PASSWORD_FILE is required"),
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


# --------------------------------------------------------------------------- MSK IAM

MSK_IAM = {
    **BASE,
    "KAFKA_BOOTSTRAP": "b-1.events.abc123.c2.kafka.eu-west-1.amazonaws.com:9098",
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "OAUTHBEARER",
    "AWS_REGION": "eu-west-1",
}
FAKE_KEY_ID = "AKIAFAKEFAKEFAKEFAKE"


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Obviously fake static credentials in the environment, first in the default chain;
    no config files, profiles or instance metadata, so nothing reaches the network."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key-for-tests-only")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _presigned_url(token: str) -> str:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"AWS_REGION": ""}, "AWS_REGION is required when KAFKA_SASL_MECHANISM=OAUTHBEARER"),
        ({"AWS_REGION": "Ireland"}, "AWS_REGION must be an AWS region such as us-east-1"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL"}, "need KAFKA_SECURITY_PROTOCOL=SASL_SSL, got SSL"),
        ({"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}, "need KAFKA_SECURITY_PROTOCOL=SASL_SSL"),
        ({"KAFKA_USERNAME": "agent-researcher"}, "KAFKA_USERNAME is set but KAFKA_SASL_MECHANISM"),
    ],
)
def test_msk_iam_settings_are_checked(changes: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({**MSK_IAM, **changes})


def test_msk_iam_needs_no_password_file() -> None:
    security = load_settings(MSK_IAM).kafka
    assert security.sasl_mechanism == "OAUTHBEARER" and security.aws_region == "eu-west-1"
    assert security.password_file is None and security.username is None


@pytest.mark.usefixtures("fake_aws")
def test_msk_iam_token_is_a_presigned_connect_url_for_the_region() -> None:
    """The real signer, with static fake credentials: it presigns locally, no network."""
    provider = MskIamTokenProvider("eu-west-1")
    token = asyncio.run(provider.token())
    assert "=" not in token and "+" not in token and "/" not in token  # base64url, unpadded
    url = urlparse(_presigned_url(token))
    assert (url.scheme, url.netloc, url.path) == ("https", "kafka.eu-west-1.amazonaws.com", "/")
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query["Action"] == "kafka-cluster:Connect"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    key_id, _day, region, service, _ = query["X-Amz-Credential"].split("/")
    assert (key_id, region, service) == (FAKE_KEY_ID, "eu-west-1", "kafka-cluster")
    assert len(query["X-Amz-Signature"]) == 64
    signed = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    expires = signed.timestamp() + int(query["X-Amz-Expires"])
    assert expires > time.time() + 60


def test_msk_iam_token_is_reused_while_fresh(
    fake_aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections made while the token has over a minute left share it (one signature)."""
    signed: list[str] = []
    real = msk_iam.sign_token

    def counting(region: str) -> tuple[str, int]:
        signed.append(region)
        return real(region)

    monkeypatch.setattr(msk_iam, "sign_token", counting)
    provider = MskIamTokenProvider("eu-west-1")

    async def connect_three() -> list[str]:
        return list(await asyncio.gather(*(provider.token() for _ in range(3))))

    assert len(set(asyncio.run(connect_three()))) == 1
    assert signed == ["eu-west-1"]


def test_msk_iam_token_depends_on_the_secret_key(
    fake_aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _presigned_url(asyncio.run(MskIamTokenProvider("eu-west-1").token()))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "another-fake-secret-key")
    second = _presigned_url(asyncio.run(MskIamTokenProvider("eu-west-1").token()))
    signature = {u: parse_qs(urlparse(u).query)["X-Amz-Signature"][0] for u in (first, second)}
    assert signature[first] != signature[second]


@pytest.mark.usefixtures("fake_aws")
def test_msk_iam_builds_aiokafka_clients_with_the_token_provider() -> None:
    options = client_options(load_settings(MSK_IAM).kafka)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "OAUTHBEARER"
    provider = options["sasl_oauth_token_provider"]
    assert isinstance(provider, AbstractTokenProvider)
    assert isinstance(provider, MskIamTokenProvider) and provider.region == "eu-west-1"
    assert "sasl_plain_password" not in options and "sasl_plain_username" not in options
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED

    async def build() -> bytes:
        bootstrap = MSK_IAM["KAFKA_BOOTSTRAP"]
        consumer = AIOKafkaConsumer("researcher.tasks", **options, bootstrap_servers=bootstrap)
        producer = AIOKafkaProducer(**options, bootstrap_servers=bootstrap, acks="all")
        for client in (consumer._client, producer.client):  # pyright: ignore[reportPrivateUsage]
            assert client._sasl_mechanism == "OAUTHBEARER"  # pyright: ignore[reportPrivateUsage]
            assert client._sasl_oauth_token_provider is provider  # pyright: ignore[reportPrivateUsage]
        # What aiokafka sends in the SASL handshake: the signed token as the bearer.
        step = await OAuthAuthenticator(sasl_oauth_token_provider=provider).step(None)
        assert step is not None
        return step[0]

    message = asyncio.run(build()).decode()
    assert message.startswith("n,,\x01auth=Bearer ") and message.endswith("\x01\x01")
    bearer = message.removeprefix("n,,\x01auth=Bearer ").removesuffix("\x01\x01")
    assert "Action=kafka-cluster%3AConnect" in _presigned_url(bearer)
