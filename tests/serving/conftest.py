"""Fixtures of the approval-service tests: a settable clock, apps over SQLite or a real
PostgreSQL database (a fresh database per test), users with tokens, a real Kafka broker."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.api import create_app
from serving.auth import Role, create_user
from serving.publisher import MemoryPublisher, Publisher
from serving.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[2]
PG = REPO / "infra" / "postgres" / "pg.sh"
KAFKA = REPO / "infra" / "kafka" / "kafka.sh"
BOOTSTRAP = "127.0.0.1:9092"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now


@dataclass
class Service:
    """A running app with a TestClient and one token per role (+ a second approver)."""

    client: TestClient
    clock: FakeClock
    publisher: Publisher
    settings: ServiceSettings
    tokens: dict[str, str] = field(default_factory=dict)

    def as_(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def post(self, path: str, user: str, body: Any = None, **kw: Any) -> Any:
        return self.client.post(
            path, json=body, headers={**self.as_(user), **kw.pop("headers", {})}, **kw
        )

    def get(self, path: str, user: str, **kw: Any) -> Any:
        return self.client.get(path, headers=self.as_(user), **kw)

    @property
    def runtime(self) -> Any:
        return self.client.app.state.runtime  # type: ignore[attr-defined]


USERS = {
    "admin": Role.ADMIN,
    "olga": Role.OPS,
    "ana": Role.APPROVER,
    "bert": Role.APPROVER,
    "dana": Role.DATA_SCIENTIST,
}


def add_users(settings: ServiceSettings, runtime: Any, clock: FakeClock) -> dict[str, str]:
    tokens = {}
    with runtime.store.transaction() as session:
        for name, role in USERS.items():
            _user, token = create_user(
                session, name, role, settings.token_pepper.get_secret_value(), clock()
            )
            tokens[name] = token
    return tokens


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    clients: list[TestClient] = []

    def make(
        database_url: str | None = None,
        publisher: Publisher | None = None,
        clock: FakeClock | None = None,
        **overrides: Any,
    ) -> Service:
        clock = clock or FakeClock()
        publisher = publisher if publisher is not None else MemoryPublisher()
        settings = ServiceSettings(
            env="test",
            token_pepper="test-pepper-" + uuid.uuid4().hex,
            database_url=database_url
            or f"sqlite:///{tmp_path}/shelfguard-{uuid.uuid4().hex[:6]}.db",
            **{"background_interval_s": 0, **overrides},
        )
        client = TestClient(create_app(settings, clock, publisher), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        service = Service(client, clock, publisher, settings)
        service.tokens = add_users(settings, service.runtime, clock)
        return service

    yield make
    for client in clients:
        client.__exit__(None, None, None)


# ----------------------------------------------------------------------------- real services


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """Start the local PostgreSQL (idempotent) and return its admin DSN base."""
    subprocess.run(["bash", str(PG), "start"], check=True, timeout=180)
    dsn = subprocess.run(
        ["bash", str(PG), "dsn"], check=True, capture_output=True, text=True, timeout=30
    ).stdout.strip()
    return dsn


@pytest.fixture
def postgres_url(postgres_dsn: str) -> Iterator[str]:
    """A fresh, empty database owned by the app role; dropped after the test."""
    import psycopg

    host = postgres_dsn.split("@", 1)[1].split("/", 1)[0]
    name = f"sg_test_{uuid.uuid4().hex[:10]}"
    admin = f"postgresql://postgres@{host}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER shelfguard')
    yield f"postgresql+psycopg://shelfguard:shelfguard@{host}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def kafka_broker() -> str:
    subprocess.run(["bash", str(KAFKA), "start"], check=True, timeout=300)
    return BOOTSTRAP


@pytest.fixture
def kafka_topics(kafka_broker: str) -> Iterator[dict[str, str]]:
    """Per-test topic names for the service's outputs (created here, deleted after)."""
    from confluent_kafka.admin import AdminClient

    from pipelines.publish import ensure_topic

    suffix = uuid.uuid4().hex[:10]
    topics = {
        name: f"test.serving.{name}.{suffix}"
        for name in ("atp", "alerts", "events", "scores", "scores_dlq")
    }
    for topic in topics.values():
        ensure_topic(kafka_broker, topic, partitions=1)
    yield topics
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    for fut in admin.delete_topics(list(topics.values()), operation_timeout=30).values():
        try:
            fut.result(timeout=30)
        except Exception:  # noqa: BLE001 - best-effort clean-up
            pass


def read_topic(
    bootstrap: str, topic: str, expect: int, timeout: float = 30.0
) -> list[tuple[str, bytes]]:
    """Read a 1-partition topic from the start until ``expect`` messages (or the timeout)."""
    import time

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    out: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expect and time.monotonic() < deadline:
            for msg in consumer.consume(100, 0.3):
                if msg.error() is None:
                    out.append(((msg.key() or b"").decode(), msg.value()))
    finally:
        consumer.close()
    return out


def score_row(sku: str = "SKU-1", location: str = "S01", **kw: Any) -> dict[str, Any]:
    row = {
        "sku": sku,
        "location": location,
        "phantom_score": 0.7,
        "stockout_score": 0.1,
        "phantom_explanation": "no sales for 9 days where 2.1/day were expected; 3 pick shorts",
        "stockout_explanation": "",
        "on_hand": 40,
        "reserved": 5,
        "atp": 35,
        "as_of": "2026-03-02T08:00:00Z",
        "phantom_model": "phantom-inventory:3",
        "stockout_model": "stockout-risk:3",
        "unit_value": 10.0,
    }
    row.update(kw)
    return row


def csrf_token_of_page(client: TestClient, path: str = "/ui") -> str:
    """The CSRF token the UI put into its forms for this client's session."""
    import re

    page = client.get(path)
    assert page.status_code == 200, page.text
    match = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page.text)
    assert match, "no CSRF token in the page's forms"
    return match.group(1)


# ------------------------------------------------------- issue 6: streaming scoring and the demo


@pytest.fixture(scope="session")
def packaged_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local MLflow registry (``mlflow.db`` + ``mlruns/``) with the packaged models as
    ``champion`` v1, made once per session. Copy the ``mlflow.db`` it returns before moving
    aliases: the copy shares the artifacts, not the aliases."""
    import os

    import mlflow

    from training.registry import register_packaged

    root = tmp_path_factory.mktemp("registry")
    previous_uri, previous_cwd = mlflow.get_tracking_uri(), os.getcwd()
    os.chdir(root)  # artifacts go to <cwd>/mlruns
    try:
        register_packaged(f"sqlite:///{root / 'mlflow.db'}")
    finally:
        os.chdir(previous_cwd)
        mlflow.set_tracking_uri(previous_uri)
        mlflow.set_registry_uri(previous_uri)
    return root / "mlflow.db"
