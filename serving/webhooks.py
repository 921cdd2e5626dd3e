"""Webhooks: HMAC-signed POSTs of alerts, retried with exponential backoff, with a delivery log.

Signature contract (what a subscriber checks): headers ``X-Shelfguard-Timestamp`` (POSIX
seconds, integer) and ``X-Shelfguard-Signature: sha256=<hex>`` where hex is
HMAC-SHA256(secret, ``"<timestamp>.<raw body>"``). The body is JSON; ``X-Shelfguard-Event``
names its kind and ``X-Shelfguard-Delivery`` is the delivery id (the same on every retry, so
subscribers can dedupe).

Delivery contract: :func:`enqueue` writes one ``pending`` delivery per active webhook in the
caller's transaction (so an alert and its deliveries commit together). :func:`deliver_due` sends
every delivery whose ``next_attempt_at`` has come: a 2xx marks it ``delivered``; anything else
(status, timeout, refused connection) counts an attempt and schedules the next one
``backoff × 2^(attempts−1)`` later; after ``max_attempts`` it is ``dead`` (dead-lettered).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.metrics import ServiceMetrics
from serving.settings import ServiceSettings
from serving.store.db import Store
from serving.store.tables import Webhook, WebhookDelivery


class WebhookSender(Protocol):
    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int: ...


class HttpxSender:
    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        import httpx

        return httpx.post(url, content=body, headers=headers, timeout=timeout).status_code


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def enqueue(session: Session, event: str, payload: dict[str, Any], now: datetime) -> int:
    hooks = session.scalars(select(Webhook).where(Webhook.active.is_(True))).all()
    for hook in hooks:
        session.add(
            WebhookDelivery(
                webhook_id=hook.id,
                event=event,
                payload=payload,
                created_at=now,
                next_attempt_at=now,
            )
        )
    return len(hooks)


def deliver_due(
    store: Store,
    sender: WebhookSender,
    settings: ServiceSettings,
    metrics: ServiceMetrics,
    clock: Callable[[], datetime],
) -> int:
    """One pass over the due deliveries; returns the number of attempts made."""
    now = clock()
    with store.reader() as session:
        due = session.execute(
            select(WebhookDelivery.id, Webhook.url, Webhook.secret)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.id)
            .limit(100)
        ).all()
    attempts = 0
    for delivery_id, url, secret in due:
        with store.transaction() as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None or delivery.state != "pending":
                continue
            body = json.dumps(delivery.payload, sort_keys=True).encode()
            stamp = int(now.timestamp())
            headers = {
                "Content-Type": "application/json",
                "X-Shelfguard-Event": delivery.event,
                "X-Shelfguard-Delivery": str(delivery.id),
                "X-Shelfguard-Timestamp": str(stamp),
                "X-Shelfguard-Signature": signature(secret, stamp, body),
            }
            attempts += 1
            delivery.attempts += 1
            try:
                status = sender.post(url, body, headers, settings.webhook_timeout_s)
                error = None if 200 <= status < 300 else f"HTTP {status}"
            except Exception as exc:  # noqa: BLE001 - any transport error is a failed attempt
                status, error = None, f"{type(exc).__name__}: {exc}"[:500]
            delivery.last_status = status
            delivery.last_error = error
            if error is None:
                delivery.state = "delivered"
                delivery.delivered_at = now
                continue
            metrics.webhook_failures.inc()
            if delivery.attempts >= settings.webhook_max_attempts:
                delivery.state = "dead"
                metrics.dead_letters.labels("webhook").inc()
            else:
                wait = settings.webhook_backoff_s * 2 ** (delivery.attempts - 1)
                delivery.next_attempt_at = now + timedelta(seconds=wait)
    return attempts
