"""Effects of applied recommendations and completed counts, and the ATP they change.

Every effect is idempotent: a hold or a count task is unique per recommendation, and events
emitted into the event stream carry a deterministic ``event_id`` (``shelfguard-count-<task>``,
``shelfguard-writeoff-<rec>``), so the ledger drops a re-sent one as a duplicate.

ATP is the ledger's rule (:meth:`pipelines.ledger.Position.available_to_promise`) over the
service's position with ``risk_hold`` = the units of the location's active holds (created, not
released, not past ``expires_at``) at the given instant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipelines.events import EventType, InventoryEvent, Source, encode_event, format_ts
from pipelines.ledger import Position as LedgerPosition
from serving import outbox
from serving.errors import NotFound
from serving.policy import ActionType, Policy
from serving.settings import ServiceSettings
from serving.store.tables import CountTask, Hold, Position, Recommendation


@dataclass(frozen=True, slots=True)
class Atp:
    sku: str
    location: str
    on_hand: int
    reserved: int
    risk_hold: int
    safety_stock: int
    atp: int
    as_of: datetime

    def message(self, reason: str) -> bytes:
        """The ``inventory.atp`` message value (key ``sku|location``)."""
        body = {
            "sku": self.sku,
            "location": self.location,
            "atp": self.atp,
            "on_hand": self.on_hand,
            "reserved": self.reserved,
            "risk_hold": self.risk_hold,
            "safety_stock": self.safety_stock,
            "as_of": format_ts(self.as_of),
            "reason": reason,
        }
        return json.dumps(body, sort_keys=True).encode()


def active_hold_units(session: Session, sku: str, location: str, now: datetime) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(Hold.units), 0)).where(
            Hold.sku == sku,
            Hold.location == location,
            Hold.released_at.is_(None),
            Hold.expires_at > now,
        )
    )
    return int(total or 0)


def current_atp(session: Session, sku: str, location: str, now: datetime) -> Atp:
    """ATP of a sku-location as of ``now``; 404 when the service has never seen it."""
    position = session.get(Position, (sku, location))
    if position is None:
        raise NotFound(f"no position for sku {sku!r} at {location!r}; ingest its scores first")
    ledger = LedgerPosition()
    ledger.on_hand = position.on_hand
    ledger.reserved = position.reserved
    ledger.safety_stock = position.safety_stock
    ledger.risk_hold = active_hold_units(session, sku, location, now)
    return Atp(
        sku,
        location,
        ledger.on_hand,
        ledger.reserved,
        ledger.risk_hold,
        ledger.safety_stock,
        ledger.available_to_promise(),
        now,
    )


class Effects:
    """Carries out effects inside the caller's transaction. Messages for other systems go to
    the outbox (:mod:`serving.outbox`) in that transaction and leave after its commit; an effect
    that cannot be carried out raises :class:`~serving.errors.EffectFailed` and leaves the
    caller to mark the recommendation."""

    def __init__(self, settings: ServiceSettings, policy: Policy) -> None:
        self.settings = settings
        self.policy = policy

    def publish_atp(
        self, session: Session, sku: str, location: str, now: datetime, why: str
    ) -> Atp:
        atp = current_atp(session, sku, location, now)
        outbox.enqueue(session, self.settings.atp_topic, f"{sku}|{location}", atp.message(why), now)
        return atp

    def apply(self, session: Session, rec: Recommendation, now: datetime) -> dict:
        """Apply an approved recommendation; returns what was done (for the audit row)."""
        action = ActionType(rec.action)
        if action is ActionType.LOWER_ATP_EXPOSURE:
            hold = session.scalar(select(Hold).where(Hold.recommendation_id == rec.id))
            if hold is None:
                ttl = timedelta(hours=self.policy.actions.lower_atp_exposure.hold_ttl_hours)
                hold = Hold(
                    recommendation_id=rec.id,
                    sku=rec.sku,
                    location=rec.location,
                    units=rec.units,
                    created_at=now,
                    expires_at=now + ttl,
                )
                session.add(hold)
                session.flush()
            atp = self.publish_atp(session, rec.sku, rec.location, now, f"risk_hold:{hold.id}")
            return {"hold_id": hold.id, "units": hold.units, "atp": atp.atp}
        if action is ActionType.OPEN_CYCLE_COUNT:
            task = session.scalar(select(CountTask).where(CountTask.recommendation_id == rec.id))
            if task is None:
                position = session.get(Position, (rec.sku, rec.location))
                task = CountTask(
                    recommendation_id=rec.id,
                    alert_id=rec.alert_id,
                    sku=rec.sku,
                    location=rec.location,
                    store=rec.location,
                    recorded_on_hand=position.on_hand if position else 0,
                    created_at=now,
                )
                session.add(task)
                session.flush()
            return {"task_id": task.id, "store": task.store}
        if action is ActionType.INVENTORY_WRITE_OFF:
            event = InventoryEvent(
                event_id=f"shelfguard-writeoff-{rec.id}",
                event_type=EventType.ADJUSTMENT,
                occurred_at=now,
                sku=rec.sku,
                location=rec.location,
                quantity=-rec.units,
                source=Source.ERP,
                reference=rec.erp_reference,
                reason="write_off",
            )
            outbox.enqueue(session, self.settings.events_topic, event.key, encode_event(event), now)
            position = session.get(Position, (rec.sku, rec.location))
            if position is not None:
                position.on_hand -= rec.units
                position.updated_at = now
                self.publish_atp(session, rec.sku, rec.location, now, f"write_off:{rec.id}")
            return {"event_id": event.event_id, "units": rec.units}
        # route_to_alternate_node: advice for the order management system; nothing to change here
        return {"advice": "route orders for this sku away from the location"}

    def emit_count(
        self, session: Session, task: CountTask, counted: int, now: datetime, reference: str
    ) -> str:
        """Emit the count as a ``cycle_count`` event; returns its (deterministic) event id."""
        event = InventoryEvent(
            event_id=f"shelfguard-count-{task.id}",
            event_type=EventType.CYCLE_COUNT,
            occurred_at=now,
            sku=task.sku,
            location=task.location,
            quantity=counted,
            source=Source.STORE_OPS,
            reference=reference,
        )
        outbox.enqueue(session, self.settings.events_topic, event.key, encode_event(event), now)
        return event.event_id
