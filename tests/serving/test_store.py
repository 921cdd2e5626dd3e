"""The store: Alembic migrations produce exactly the SQLAlchemy tables, on SQLite and on a real
PostgreSQL server; timestamps come back UTC-aware; migrating twice is a no-op; the audit log
refuses UPDATE and DELETE at the database level."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from serving import audit
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
    check_audit_is_append_only(store)
    store.dispose()


def check_audit_is_append_only(store: Store) -> None:
    """The migration's trigger: appends work, UPDATE and DELETE are refused by the database."""
    with store.transaction() as session:
        audit.append(session, at=datetime.now(UTC), actor="t", action="test", subject="s")
        audit.append(session, at=datetime.now(UTC), actor="t", action="test", subject="s")
    statements = ["UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log WHERE seq = 2"]
    if store.engine.dialect.name == "postgresql":
        statements.append("TRUNCATE audit_log")
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(statement))
    with store.reader() as session:
        assert audit.verify(session).rows == 2 and audit.verify(session).ok


def test_sqlite_store(tmp_path) -> None:
    check_store(f"sqlite:///{tmp_path}/s.db")


@pytest.mark.integration
def test_postgresql_store(postgres_url) -> None:
    check_store(postgres_url)


def test_utc_now_is_aware() -> None:
    from serving.api import utc_now

    assert utc_now().tzinfo is UTC


def test_migrations_downgrade_and_upgrade_again(tmp_path) -> None:
    """Every revision's downgrade works (SQLite): down to the initial schema, then up to head,
    with the append-only triggers back in place."""
    from alembic import command

    from serving.store.db import alembic_config

    store = Store(f"sqlite:///{tmp_path}/d.db")
    store.migrate()
    with store.engine.begin() as connection:
        cfg = alembic_config(store.url)
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0001")
    assert not store.at_head()
    with store.engine.connect() as conn:
        triggers = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
        assert triggers.all() == []
    store.migrate()
    check_audit_is_append_only(store)
    store.dispose()


def check_position_upserts(url: str) -> None:
    """One statement per batch: newest row per key wins, older rows never roll a position
    back, a new key gets the default unit value, a row without one keeps the stored value."""
    from serving.store.positions import upsert_positions
    from serving.store.tables import Position

    store = Store(url)
    store.migrate()
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    now = t0 + timedelta(hours=1)
    later = t0 + timedelta(minutes=5)
    with store.transaction() as session:
        written = upsert_positions(
            session,
            [
                ("A", "S1", 5, 0, t0, None),
                ("A", "S1", 3, 1, later, None),  # same key, newer: wins within the batch
                ("B", "S1", 7, 2, t0, 12.5),
            ],
            default_unit_value=4.0,
            now=now,
        )
    assert written == 2
    with store.transaction() as session:
        upsert_positions(
            session,
            [
                ("A", "S1", 99, 0, t0, 50.0),  # older than stored: ignored entirely
                ("B", "S1", 6, 0, later, None),  # newer, no unit value: keeps 12.5
            ],
            default_unit_value=4.0,
            now=now,
        )
    with store.reader() as session:
        rows = {(p.sku, p.location): p for p in session.query(Position).all()}
    a, b = rows[("A", "S1")], rows[("B", "S1")]
    assert (a.on_hand, a.reserved, a.unit_value, a.as_of) == (3, 1, 4.0, later)
    assert (b.on_hand, b.reserved, b.unit_value, b.as_of) == (6, 0, 12.5, later)
    store.dispose()


def test_position_upserts_sqlite(tmp_path) -> None:
    check_position_upserts(f"sqlite:///{tmp_path}/p.db")


@pytest.mark.integration
def test_position_upserts_postgres(postgres_url) -> None:
    check_position_upserts(postgres_url)
