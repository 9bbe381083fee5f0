"""The connection contract: how an agent reaches the data plane, whatever runs each store.

One typed object built from the three stores' connections (Strimzi or MSK, in-cluster
Redis/Valkey or ElastiCache, Qdrant): endpoints, the auth mechanism, the Secrets (name and
key) a pod mounts, the CA it trusts, the IAM policy its IRSA role needs. It holds
references only, never a value, so it is exported as the stack output `dataPlane` as is.

`worker_wiring` maps it to one agent type's worker environment and mounted files. The
variable names are exactly those images/agent-worker/agent_worker/config.py reads (a test
parses that module and fails on drift); secrets reach the pod as files, the variables
name their paths.

Every Secret the contract names lives in the agents' namespace, because a pod can mount
only Secrets of its own namespace and the plan cannot copy a value it never sees:
- Kafka (Strimzi): the User Operator watches the agents' namespace
  (`entityOperator.userOperator.watchedNamespace`), so the KafkaUsers are declared there
  and Strimzi writes each user's password Secret next to them. The TLS listener serves a
  certificate from the stack's cert-manager CA (`brokerCertChainAndKey`), so clients
  trust the CA bundle Secret cert-manager issues into the agents' namespace; Strimzi's own
  cluster CA Secret exists only in the data namespace and is not used by clients.
- Redis and Qdrant: their components write the client Secret into the agents' namespace
  from the Pulumi secrets; the CA is the same cert-manager bundle.
- MSK with IAM: no Secret; the agent type's IRSA role needs `irsa_policy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi

from components.agents.spec import AgentSpec
from components.data.kafka import (
    KAFKA_CA_FILE,
    KAFKA_PASSWORD_FILE,
    KafkaConnection,
    worker_environment,
)
from components.data.qdrant import (
    CLIENT_CA_PATH as QDRANT_CA_PATH,
)
from components.data.qdrant import (
    CLIENT_KEY_PATH as QDRANT_KEY_PATH,
)
from components.data.qdrant import (
    VectorStoreConnection,
)
from components.data.redis import (
    CLIENT_CA_PATH as REDIS_CA_PATH,
)
from components.data.redis import (
    CLIENT_PASSWORD_PATH as REDIS_PASSWORD_PATH,
)
from components.data.redis import (
    SessionStoreConnection,
)


@dataclass(frozen=True)
class SecretRef:
    """One key of a Kubernetes Secret: where a value is, never the value."""

    namespace: str
    name: str
    key: str

    def wire(self) -> dict[str, str]:
        return {"namespace": self.namespace, "name": self.name, "key": self.key}


@dataclass(frozen=True)
class MountedFile:
    """A Secret key a worker pod mounts read-only at `path`."""

    secret: SecretRef
    path: str


@dataclass(frozen=True)
class AgentBusAccess:
    agent: str
    tasks_topic: str
    results_topic: str
    dead_letter_topic: str
    group: str
    username: str | None
    password: SecretRef | None
    irsa_policy: pulumi.Input[str] | None  # IAM policy JSON (MSK IAM), a document, no secret


@dataclass(frozen=True)
class EventBusContract:
    mode: Literal["strimzi", "msk"]
    bootstrap: pulumi.Input[str]
    tls: bool
    auth: Literal["scram-sha-512", "aws-msk-iam", "none"]
    ca: SecretRef | None  # None: the system trust store (MSK)
    agents: tuple[AgentBusAccess, ...]
    # The component's own connection, which renders the worker's Kafka variables.
    connection: KafkaConnection = field(repr=False, compare=False)


@dataclass(frozen=True)
class SessionStoreContract:
    mode: Literal["inCluster", "elasticache"]
    url: pulumi.Input[str]
    tls: bool
    auth: Literal["password"]
    password: SecretRef
    ca: SecretRef | None
    connection: SessionStoreConnection = field(repr=False, compare=False)


@dataclass(frozen=True)
class VectorStoreContract:
    url: str
    tls: bool
    auth: Literal["api-key"]
    api_key: SecretRef
    read_only_api_key: SecretRef
    ca: SecretRef | None
    connection: VectorStoreConnection = field(repr=False, compare=False)


@dataclass(frozen=True)
class DataPlaneContract:
    """What the agents' namespace is given; a store that is not configured is None."""

    agents_namespace: str
    event_bus: EventBusContract | None
    session_store: SessionStoreContract | None
    vector_store: VectorStoreContract | None

    def as_output(self) -> dict[str, Any]:
        """The stack output: endpoints and references only (every value a Secret holds
        stays in its Secret)."""

        def ref(r: SecretRef | None) -> dict[str, str] | None:
            return None if r is None else r.wire()

        out: dict[str, Any] = {"agentsNamespace": self.agents_namespace}
        bus = self.event_bus
        out["eventBus"] = (
            None
            if bus is None
            else {
                "mode": bus.mode,
                "bootstrap": bus.bootstrap,
                "tls": bus.tls,
                "auth": bus.auth,
                "ca": ref(bus.ca),
                "agents": {
                    a.agent: {
                        "tasksTopic": a.tasks_topic,
                        "resultsTopic": a.results_topic,
                        "deadLetterTopic": a.dead_letter_topic,
                        "group": a.group,
                        "username": a.username,
                        "password": ref(a.password),
                        "irsaPolicy": a.irsa_policy,
                    }
                    for a in bus.agents
                },
            }
        )
        sessions = self.session_store
        out["sessionStore"] = (
            None
            if sessions is None
            else {
                "mode": sessions.mode,
                "url": sessions.url,
                "tls": sessions.tls,
                "auth": sessions.auth,
                "password": ref(sessions.password),
                "ca": ref(sessions.ca),
            }
        )
        vectors = self.vector_store
        out["vectorStore"] = (
            None
            if vectors is None
            else {
                "url": vectors.url,
                "tls": vectors.tls,
                "auth": vectors.auth,
                "apiKey": ref(vectors.api_key),
                "readOnlyApiKey": ref(vectors.read_only_api_key),
                "ca": ref(vectors.ca),
            }
        )
        return out


def _bus(connection: KafkaConnection, mode: Literal["strimzi", "msk"]) -> EventBusContract:
    def ref(r: Any) -> SecretRef | None:
        return None if r is None else SecretRef(r.namespace, r.name, r.key)

    return EventBusContract(
        mode=mode,
        bootstrap=connection.bootstrap,
        tls=connection.tls,
        auth=connection.auth,
        ca=ref(connection.ca),
        agents=tuple(
            AgentBusAccess(
                agent=a.agent,
                tasks_topic=a.tasks_topic,
                results_topic=a.results_topic,
                dead_letter_topic=a.dead_letter_topic,
                group=a.group,
                username=a.username,
                password=ref(a.password),
                irsa_policy=a.iam_policy,
            )
            for a in connection.agents
        ),
        connection=connection,
    )


def data_plane_contract(
    *,
    agents_namespace: str,
    kafka: tuple[KafkaConnection, Literal["strimzi", "msk"]] | None,
    redis: SessionStoreConnection | None,
    qdrant: VectorStoreConnection | None,
) -> DataPlaneContract:
    """The contract from the components' connections (whichever mode each runs)."""
    sessions: SessionStoreContract | None = None
    if redis is not None:
        scheme = "rediss" if redis.tls else "redis"
        url: pulumi.Input[str] = (
            f"{scheme}://{redis.host}:{redis.port}/0"
            if isinstance(redis.host, str)
            else pulumi.Output.concat(f"{scheme}://", redis.host, f":{redis.port}/0")
        )
        sessions = SessionStoreContract(
            mode=redis.mode,
            url=url,
            tls=redis.tls,
            auth=redis.auth,
            password=SecretRef(agents_namespace, redis.password.secret, redis.password.key),
            ca=None
            if redis.ca is None
            else SecretRef(agents_namespace, redis.ca.secret, redis.ca.key),
            connection=redis,
        )
    vectors: VectorStoreContract | None = None
    if qdrant is not None:
        vectors = VectorStoreContract(
            url=qdrant.url,
            tls=qdrant.tls,
            auth=qdrant.auth,
            api_key=SecretRef(agents_namespace, qdrant.api_key.secret, qdrant.api_key.key),
            read_only_api_key=SecretRef(
                agents_namespace, qdrant.read_only_api_key.secret, qdrant.read_only_api_key.key
            ),
            ca=None
            if qdrant.ca is None
            else SecretRef(agents_namespace, qdrant.ca.secret, qdrant.ca.key),
            connection=qdrant,
        )
    return DataPlaneContract(
        agents_namespace=agents_namespace,
        event_bus=None if kafka is None else _bus(*kafka),
        session_store=sessions,
        vector_store=vectors,
    )


@dataclass(frozen=True)
class WorkerWiring:
    """One agent type's worker: its environment, the files to mount, the IAM it needs."""

    env: dict[str, pulumi.Input[str]]
    files: tuple[MountedFile, ...]
    irsa_policy: pulumi.Input[str] | None = None


class ContractError(ValueError):
    """An agent needs a store the contract does not have."""


def worker_wiring(
    contract: DataPlaneContract, agent: AgentSpec, *, read_only_vectors: bool = False
) -> WorkerWiring:
    """Environment and mounted files of `agent`'s workers (pure: no resource is declared).

    Every agent checkpoints sessions in the session store and may retrieve from the vector
    store; events agents also get their topics, group and Kafka credentials."""
    env: dict[str, pulumi.Input[str]] = {"AGENT_NAME": agent.name, "WORKER_MODE": agent.mode}
    files: list[MountedFile] = []
    irsa: pulumi.Input[str] | None = None
    sessions = contract.session_store
    if sessions is None:
        raise ContractError(f"agent {agent.name!r}: the worker needs the session store (redis)")
    env["REDIS_URL"] = sessions.url
    env["REDIS_PASSWORD_FILE"] = REDIS_PASSWORD_PATH
    files.append(MountedFile(sessions.password, REDIS_PASSWORD_PATH))
    if sessions.ca is not None:
        env["REDIS_CA_FILE"] = REDIS_CA_PATH
        files.append(MountedFile(sessions.ca, REDIS_CA_PATH))
    vectors = contract.vector_store
    if vectors is not None:
        key = vectors.read_only_api_key if read_only_vectors else vectors.api_key
        env["QDRANT_URL"] = vectors.url
        env["QDRANT_API_KEY_FILE"] = QDRANT_KEY_PATH
        files.append(MountedFile(key, QDRANT_KEY_PATH))
        if vectors.ca is not None:
            env["QDRANT_CA_FILE"] = QDRANT_CA_PATH
            files.append(MountedFile(vectors.ca, QDRANT_CA_PATH))
    if agent.mode == "events":
        bus = contract.event_bus
        if bus is None:
            raise ContractError(f"agent {agent.name!r} is mode events: it needs the event bus")
        env.update(worker_environment(bus.connection, agent.name))
        access = next(a for a in bus.agents if a.agent == agent.name)
        if access.password is not None:
            files.append(MountedFile(access.password, KAFKA_PASSWORD_FILE))
        if bus.ca is not None:
            files.append(MountedFile(bus.ca, KAFKA_CA_FILE))
        irsa = access.irsa_policy
    return WorkerWiring(env=env, files=tuple(files), irsa_policy=irsa)
