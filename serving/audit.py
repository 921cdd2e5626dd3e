"""The append-only, tamper-evident audit log.

Each row's ``hash`` is SHA-256 over the previous row's hash and the canonical JSON of this row's
fields (sorted keys, no whitespace, datetimes as ISO-8601 UTC). The first row's ``prev_hash`` is
:data:`GENESIS`. :func:`verify` recomputes the chain in ``seq`` order: changing, deleting or
reordering any row breaks it at that row. The application only ever appends; ``prev_hash`` is
unique, so two writers can never fork the chain (the loser's transaction fails), and on
PostgreSQL appends are serialised by a transaction-scoped advisory lock.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from serving.store.tables import AuditEntry

GENESIS = "0" * 64
_ADVISORY_LOCK_ID = 5_240_301  # arbitrary, constant: "the audit chain"


def _canonical(entry: AuditEntry) -> bytes:
    body = {
        "at": entry.at.astimezone(UTC).isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "subject": entry.subject,
        "policy_version": entry.policy_version,
        "model_version": entry.model_version,
        "erp_reference": entry.erp_reference,
        "payload": entry.payload,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def chain_hash(prev_hash: str, entry: AuditEntry) -> str:
    return hashlib.sha256(prev_hash.encode() + _canonical(entry)).hexdigest()


def append(
    session: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    policy_version: str | None = None,
    model_version: str | None = None,
    erp_reference: str | None = None,
    payload: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one row in the caller's transaction (it commits or rolls back with the decision)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
    last = session.scalar(select(AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1))
    entry = AuditEntry(
        at=at,
        actor=actor,
        action=action,
        subject=subject,
        policy_version=policy_version,
        model_version=model_version,
        erp_reference=erp_reference,
        payload=json.loads(json.dumps(payload or {}, default=str)),
        prev_hash=last or GENESIS,
    )
    entry.hash = chain_hash(entry.prev_hash, entry)
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    rows: int
    first_bad_seq: int | None = None
    problem: str | None = None


def verify(session: Session) -> Verification:
    """Walk the chain from the first row; report the first row that does not fit."""
    prev = GENESIS
    rows = 0
    for entry in session.scalars(select(AuditEntry).order_by(AuditEntry.seq)):
        rows += 1
        if entry.prev_hash != prev:
            return Verification(False, rows, entry.seq, "prev_hash does not match the row before")
        if chain_hash(prev, entry) != entry.hash:
            return Verification(False, rows, entry.seq, "row content does not match its hash")
        prev = entry.hash
    return Verification(True, rows)
