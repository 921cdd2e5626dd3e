"""The store: Alembic migrations produce exactly the SQLAlchemy tables, on SQLite and on a real
PostgreSQL server; timestamps come back UTC-aware; migrating twice is a no-op."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from serving.store import Store
from serving.store.tables import Base, DeadLetter


def check_store(url: str) -> None:
    store = Store(url)
    store.migrate()
    store.migrate()
    assert store.ready()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    local = datetime(2026, 3, 2, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    with store.transaction() as session:
        session.add(DeadLetter(source="t", raw="x", reason="y", at=local))
    with store.reader() as session:
        back = session.query(DeadLetter).one().at
    assert back == local and back.tzinfo is not None and back.utcoffset() == timedelta(0)
    with pytest.raises(Exception, match="naive"), store.transaction() as session:
        session.add(DeadLetter(source="t", raw="x", reason="y", at=datetime(2026, 1, 1)))  # noqa: DTZ001
    store.dispose()


def test_sqlite_store(tmp_path) -> None:
    check_store(f"sqlite:///{tmp_path}/s.db")


@pytest.mark.integration
def test_postgresql_store(postgres_url) -> None:
    check_store(postgres_url)


def test_utc_now_is_aware() -> None:
    from serving.api import utc_now

    assert utc_now().tzinfo is UTC
