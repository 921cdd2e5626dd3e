"""Set-based writes of the ``positions`` table: one statement per batch of scores, not one ORM
round trip per row (the score consumer's hot path).

Contract of :func:`upsert_positions`:
- ``rows`` are ``(sku, location, on_hand, reserved, as_of, unit_value | None)``; several rows for
  one key collapse to the one with the newest ``as_of`` (the later row on a tie).
- A new key is inserted with ``unit_value`` or ``default_unit_value`` and safety stock 0.
- An existing key takes the row's figures only when the row is not older than what is stored
  (``as_of >=``), so a late or replayed score never rolls a position back; its unit value
  changes only when the row carries one.
- Runs inside the caller's transaction; works on SQLite and PostgreSQL (``INSERT … ON CONFLICT
  DO UPDATE … WHERE``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from serving.store.tables import Position

#: dialect → its INSERT (both have ``excluded`` and ``on_conflict_do_update``)
_INSERTS: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
PositionRow = tuple[str, str, int, int, datetime, float | None]


def newest_per_key(rows: Iterable[PositionRow]) -> dict[tuple[str, str], PositionRow]:
    newest: dict[tuple[str, str], PositionRow] = {}
    for row in rows:
        key = (row[0], row[1])
        held = newest.get(key)
        if held is None or row[4] >= held[4]:
            newest[key] = row
    return newest


def upsert_positions(
    session: Session, rows: Iterable[PositionRow], default_unit_value: float, now: datetime
) -> int:
    """Insert or advance the positions of ``rows``; returns the number of keys written."""
    newest = newest_per_key(rows)
    if not newest:
        return 0
    with_value: list[dict] = []
    without_value: list[dict] = []
    for sku, location, on_hand, reserved, as_of, unit_value in newest.values():
        values = {
            "sku": sku,
            "location": location,
            "on_hand": on_hand,
            "reserved": reserved,
            "safety_stock": 0,
            "unit_value": unit_value or default_unit_value,
            "as_of": as_of,
            "updated_at": now,
        }
        (with_value if unit_value else without_value).append(values)
    for batch, keep_value in ((with_value, False), (without_value, True)):
        if batch:
            session.execute(_statement(session, keep_value), batch)
    return len(newest)


def _statement(session: Session, keep_unit_value: bool):  # noqa: ANN202 - dialect Insert
    dialect = session.get_bind().dialect.name
    if dialect not in _INSERTS:
        raise NotImplementedError(f"positions upsert supports SQLite and PostgreSQL, not {dialect}")
    insert = _INSERTS[dialect]
    stmt = insert(Position)
    fresh = stmt.excluded
    updates = {
        "on_hand": fresh.on_hand,
        "reserved": fresh.reserved,
        "as_of": fresh.as_of,
        "updated_at": fresh.updated_at,
    }
    if not keep_unit_value:
        updates["unit_value"] = fresh.unit_value
    return stmt.on_conflict_do_update(
        index_elements=[Position.sku, Position.location],
        set_=updates,
        where=fresh.as_of >= Position.as_of,
    )
