"""The transactional outbox: Kafka messages are stored with the change they announce and
published after the commit.

Contract:
- :func:`enqueue` adds a message inside the caller's transaction; if that transaction rolls
  back, the message never existed — no ATP update or alert goes out for a change that was not
  stored.
- :meth:`Relay.run` publishes unsent messages in ``id`` order (one ``publish_batch`` per batch)
  and marks the delivered prefix sent. On a failure it stops at the failed message (order is
  kept; nothing after it overtakes it), records the attempt and the error on that row, and
  backs off (1, 2, 4 … 30 s) before the next unforced try. Nothing is lost while the broker is
  down; the sweeper (``serve``'s background thread, ``POST /admin/sweep``) forces a try each
  round.
- Delivery is at least once: a message whose delivery report was lost (or whose relay died
  after publishing and before marking it) can be sent twice. Every message is idempotent for
  its readers (ATP updates carry the whole figure; events carry a deterministic ``event_id``;
  alerts their id).
- One relay runs at a time per database: a relay first takes the lease (``outbox_lease``, renewed
  every batch, ``LEASE`` long, released when it stops); a call that finds the lease held by
  another process, or another relay running in this one, returns at once (the running one picks
  the new rows up before it stops). So messages leave in id order across processes too, and a
  relay that died holding the lease is replaced once the lease runs out.
- Sent rows are deleted after ``retention`` (:meth:`Relay.prune`, called by the sweep).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from serving.metrics import ServiceMetrics
from serving.publisher import Publisher
from serving.store.db import Store
from serving.store.tables import OutboxLease, OutboxMessage

log = logging.getLogger(__name__)
BATCH = 500
MAX_BACKOFF_S = 30.0
RETENTION = timedelta(days=7)
LEASE = timedelta(seconds=60)  # > one batch's publish timeout (15 s) with room to spare
LEASE_NAME = "relay"


def enqueue(session: Session, topic: str, key: str, value: bytes, now: datetime) -> None:
    """Store a message to publish once the caller's transaction commits."""
    session.add(OutboxMessage(topic=topic, key=key, value=value, created_at=now, attempts=0))


class Relay:
    def __init__(
        self,
        store: Store,
        publisher: Publisher,
        clock: Callable[[], datetime],
        metrics: ServiceMetrics,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.clock = clock
        self.metrics = metrics
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._failures = 0
        self._retry_at = 0.0
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def run(self, force: bool = False) -> int:
        """Publish what is pending; returns the number of messages sent. Never raises for a
        publishing failure (it is recorded and retried); ``force`` ignores the back-off."""
        if not force and self.monotonic() < self._retry_at:
            return 0
        if not self._lock.acquire(blocking=False):
            return 0
        sent, leased, drained = 0, False, False
        try:
            while True:
                leased, rows = self._claim()
                if not leased:
                    break  # another process relays; it will send these too
                if not rows:  # _claim released the lease with the empty read
                    self._failures, self._retry_at = 0, 0.0
                    leased, drained = False, True
                    break
                delivered, error = self.publisher.publish_batch(
                    [(r.topic, r.key, bytes(r.value)) for r in rows]
                )
                with self.store.transaction() as session:
                    if delivered:
                        session.execute(
                            update(OutboxMessage)
                            .where(OutboxMessage.id.in_([r.id for r in rows[:delivered]]))
                            .values(sent_at=self.clock())
                        )
                    if error is not None:
                        session.execute(
                            update(OutboxMessage)
                            .where(OutboxMessage.id == rows[delivered].id)
                            .values(attempts=OutboxMessage.attempts + 1, last_error=error[:2000])
                        )
                sent += delivered
                self.metrics.outbox_sent.inc(delivered)
                if error is not None:
                    self._back_off(error)
                    break
        finally:
            if leased:
                self._release_lease()
            self._lock.release()
            # drained: nothing is pending, no need to count
            self.metrics.outbox_pending.set(0 if drained else self.pending())
        return sent

    def _claim(self) -> tuple[bool, list[Any]]:
        """In one transaction: take or renew the relay lease (False while another holder's lease
        is valid) and read the next unsent batch; with nothing to send, release the lease."""
        with self.store.transaction() as session:
            if not self._take(session):
                return False, []
            rows = list(
                session.execute(
                    select(
                        OutboxMessage.id,
                        OutboxMessage.topic,
                        OutboxMessage.key,
                        OutboxMessage.value,
                    )
                    .where(OutboxMessage.sent_at.is_(None))
                    .order_by(OutboxMessage.id)
                    .limit(BATCH)
                ).all()
            )
            if not rows:
                self._release(session)
        return True, rows

    def _take_lease(self) -> bool:
        """Take or renew the relay lease on its own; False while another holder's is valid."""
        with self.store.transaction() as session:
            return self._take(session)

    def _take(self, session: Session) -> bool:
        now = self.clock()
        taken = session.execute(
            update(OutboxLease)
            .where(
                OutboxLease.name == LEASE_NAME,
                (OutboxLease.holder.is_(None))
                | (OutboxLease.holder == self.holder)
                | (OutboxLease.until < now),
            )
            .values(holder=self.holder, until=now + LEASE)
        )
        return bool(taken.rowcount)  # type: ignore[attr-defined]

    def _release_lease(self) -> None:
        with self.store.transaction() as session:
            self._release(session)

    def _release(self, session: Session) -> None:
        session.execute(
            update(OutboxLease)
            .where(OutboxLease.name == LEASE_NAME, OutboxLease.holder == self.holder)
            .values(holder=None, until=None)
        )

    def _back_off(self, error: str) -> None:
        self._failures += 1
        wait = min(MAX_BACKOFF_S, 2.0 ** (self._failures - 1))
        self._retry_at = self.monotonic() + wait
        self.metrics.outbox_failures.inc()
        log.warning("outbox: publishing failed (%s); next try in %.0f s", error, wait)

    def pending(self) -> int:
        with self.store.reader() as session:
            return (
                session.scalar(
                    select(func.count(OutboxMessage.id)).where(OutboxMessage.sent_at.is_(None))
                )
                or 0
            )

    def prune(self, retention: timedelta = RETENTION) -> int:
        """Delete messages sent longer than ``retention`` ago; returns how many."""
        cutoff = self.clock() - retention
        with self.store.transaction() as session:
            done = session.execute(delete(OutboxMessage).where(OutboxMessage.sent_at < cutoff))
        return int(done.rowcount or 0)  # type: ignore[attr-defined]
