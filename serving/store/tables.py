"""SQLAlchemy tables of the approval service. Schema changes go through Alembic
(``serving/migrations``); a test checks that the migrations produce exactly these tables.

All timestamps are :class:`UTCDateTime`: UTC-aware in Python, stored as UTC on every backend.
Money values are in the retailer's currency (``value`` = units × unit value).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Refuses naive datetimes on the way in; returns UTC-aware datetimes on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a UTC-aware datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    #: HMAC-SHA256(token_pepper, token) in hex; the token itself is never stored
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]


class Position(Base):
    """The service's latest view of a sku-location (from scores and counts)."""

    __tablename__ = "positions"
    sku: Mapped[str] = mapped_column(String(100), primary_key=True)
    location: Mapped[str] = mapped_column(String(100), primary_key=True)
    on_hand: Mapped[int]
    reserved: Mapped[int]
    safety_stock: Mapped[int] = mapped_column(default=0)
    unit_value: Mapped[float]
    as_of: Mapped[datetime]
    updated_at: Mapped[datetime]


class Alert(Base):
    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(100), index=True)
    location: Mapped[str] = mapped_column(String(100), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # phantom | stockout
    score: Mapped[float]
    severity: Mapped[str] = mapped_column(String(20))
    model: Mapped[str] = mapped_column(String(100))  # name:version
    explanation: Mapped[str] = mapped_column(Text)
    on_hand: Mapped[int]
    reserved: Mapped[int]
    atp: Mapped[int]
    as_of: Mapped[datetime]
    created_at: Mapped[datetime]
    #: open | confirmed_phantom | false_alarm
    status: Mapped[str] = mapped_column(String(30), default="open")
    resolved_at: Mapped[datetime | None]
    #: the feature snapshot the score was computed from (feature name → value, as of ``as_of``);
    #: None when the score came without one
    features: Mapped[dict[str, Any] | None]


class Recommendation(Base):
    __tablename__ = "recommendations"
    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"))
    action: Mapped[str] = mapped_column(String(40))
    mode: Mapped[str] = mapped_column(String(20))  # automatic | approval | recommend_only
    state: Mapped[str] = mapped_column(String(20), index=True)
    sku: Mapped[str] = mapped_column(String(100))
    location: Mapped[str] = mapped_column(String(100))
    units: Mapped[int]
    value_at_risk: Mapped[float]
    priority: Mapped[float]
    required_approvals: Mapped[int]
    params: Mapped[dict[str, Any]]
    requested_by: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)
    failure: Mapped[str | None] = mapped_column(Text)
    policy_version: Mapped[str] = mapped_column(String(50))
    model_version: Mapped[str | None] = mapped_column(String(100))
    erp_reference: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}


class Approval(Base):
    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("recommendation_id", "approver"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    recommendation_id: Mapped[int] = mapped_column(ForeignKey("recommendations.id"))
    approver: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime]


class Hold(Base):
    """A risk hold: ``units`` withheld from ATP at a location until expiry or release."""

    __tablename__ = "holds"
    id: Mapped[int] = mapped_column(primary_key=True)
    recommendation_id: Mapped[int] = mapped_column(ForeignKey("recommendations.id"), unique=True)
    sku: Mapped[str] = mapped_column(String(100), index=True)
    location: Mapped[str] = mapped_column(String(100), index=True)
    units: Mapped[int]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    released_at: Mapped[datetime | None]
    release_reason: Mapped[str | None] = mapped_column(String(50))
    #: set once the expiry has been published as an ATP update
    expiry_published: Mapped[bool] = mapped_column(Boolean, default=False)


class CountTask(Base):
    __tablename__ = "count_tasks"
    id: Mapped[int] = mapped_column(primary_key=True)
    recommendation_id: Mapped[int] = mapped_column(ForeignKey("recommendations.id"), unique=True)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"))
    sku: Mapped[str] = mapped_column(String(100))
    location: Mapped[str] = mapped_column(String(100))
    store: Mapped[str] = mapped_column(String(100), index=True)
    state: Mapped[str] = mapped_column(String(20), default="open")  # open | completed
    recorded_on_hand: Mapped[int]
    counted_quantity: Mapped[int | None]
    completed_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    event_id: Mapped[str | None] = mapped_column(String(100))


class CountLabel(Base):
    """Outcome of a cycle count as a training label.

    ``phantom`` is the service's outcome: 1 = confirmed phantom (the count found less than the
    record), 0 = false alarm. ``features`` and ``as_of`` are the alert's feature snapshot and its
    time, i.e. what the model judged; :mod:`serving.labels` turns a row into a training row.
    """

    __tablename__ = "count_labels"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("count_tasks.id"), unique=True)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"))
    sku: Mapped[str] = mapped_column(String(100))
    location: Mapped[str] = mapped_column(String(100))
    phantom: Mapped[int]
    recorded_on_hand: Mapped[int]
    counted_quantity: Mapped[int]
    score: Mapped[float | None]
    model: Mapped[str | None] = mapped_column(String(100))
    counted_at: Mapped[datetime]
    as_of: Mapped[datetime | None]
    features: Mapped[dict[str, Any] | None]


class AuditEntry(Base):
    """One link of the hash chain: ``hash = sha256(prev_hash || canonical JSON of the row)``."""

    __tablename__ = "audit_log"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(60))
    subject: Mapped[str] = mapped_column(String(100))
    policy_version: Mapped[str | None] = mapped_column(String(50))
    model_version: Mapped[str | None] = mapped_column(String(100))
    erp_reference: Mapped[str | None] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class ReconciliationException(Base):
    """A stock figure the stream and an external system (ERP, WMS) disagree on beyond tolerance.

    A database row (a business "exception"), not a Python exception. One row per
    (sku, location, source, as_of): re-running a reconciliation for the same extract adds
    nothing. ``difference`` = stream − source, with a missing figure counted as 0.
    """

    __tablename__ = "reconciliation_exceptions"
    __table_args__ = (UniqueConstraint("sku", "location", "source", "as_of"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(100), index=True)
    location: Mapped[str] = mapped_column(String(100), index=True)
    source: Mapped[str] = mapped_column(String(20))  # erp | wms
    as_of: Mapped[datetime]
    stream_on_hand: Mapped[int | None]
    source_on_hand: Mapped[int | None]
    difference: Mapped[int]
    #: {"absolute": units, "relative": fraction} in force when it was found
    tolerance: Mapped[dict[str, Any]]
    #: newest first: canonical events (``InventoryEvent.to_dict``) that touched the key by as_of
    last_events: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="open")
    detected_at: Mapped[datetime]
    detected_by: Mapped[str] = mapped_column(String(100))


class Webhook(Base):
    __tablename__ = "webhooks"
    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(500))
    #: the shared signing key (HMAC needs it in clear; it is the subscriber's, not ours)
    secret: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class WebhookDelivery(Base):
    """One payload to one webhook: the delivery log (attempts, last status, dead-lettered)."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id"), index=True)
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(20), default="pending")  # pending|delivered|dead
    attempts: Mapped[int] = mapped_column(default=0)
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


class IdempotentResponse(Base):
    """A stored response to a POST that carried ``Idempotency-Key`` (scoped to the caller)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("scope", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(64))  # hash of the Authorization credential
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int]
    body: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]


class DeadLetter(Base):
    """An input the service could not use (a bad score row or message), kept with its reason."""

    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(40))
    raw: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]


class OutboxMessage(Base):
    """A Kafka message written in the same transaction as the change it announces (alerts, ATP
    updates, ``cycle_count`` and write-off events) and published after the commit by
    :mod:`serving.outbox`; ``sent_at`` is null until the broker has it."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(primary_key=True)
    topic: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(300))
    value: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class OutboxLease(Base):
    """Who relays the outbox now (one row, ``name = "relay"``): one process at a time, so
    messages leave in id order across processes and none is sent twice by two relays."""

    __tablename__ = "outbox_lease"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(200))
    until: Mapped[datetime | None]


__all__ = [
    "Alert",
    "Approval",
    "AuditEntry",
    "Base",
    "CountLabel",
    "CountTask",
    "DeadLetter",
    "Hold",
    "IdempotentResponse",
    "OutboxLease",
    "OutboxMessage",
    "Position",
    "Recommendation",
    "ReconciliationException",
    "UTCDateTime",
    "User",
    "Webhook",
    "WebhookDelivery",
]
