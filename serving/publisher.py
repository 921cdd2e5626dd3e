"""Where effects leave the service: a small :class:`Publisher` Protocol with a Kafka
implementation and an in-memory one (tests where Kafka is not the point; dev without a broker).

Contract of ``publish``: the message is durably accepted by the broker when it returns (the Kafka
publisher waits for the delivery report); any failure raises :class:`~serving.errors.EffectFailed`.
``publish_batch`` sends many messages with one wait and returns how many *from the start* were
delivered plus the first failure (``(len(messages), None)`` when all were), so a caller that
marks exactly that prefix as sent keeps the order and loses nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from serving.errors import EffectFailed

Message = tuple[str, str, bytes]  # (topic, key, value)


class Publisher(Protocol):
    def publish(self, topic: str, key: str, value: bytes) -> None: ...
    def publish_batch(self, messages: Sequence[Message]) -> tuple[int, str | None]: ...
    def ready(self) -> bool: ...
    def close(self) -> None: ...


@dataclass
class MemoryPublisher:
    """Keeps every message in ``sent`` as (topic, key, value). ``fail_topics`` simulate outages."""

    sent: list[tuple[str, str, bytes]] = field(default_factory=list)
    fail_topics: set[str] = field(default_factory=set)

    def publish(self, topic: str, key: str, value: bytes) -> None:
        if topic in self.fail_topics:
            raise EffectFailed(f"publishing to {topic} failed (simulated outage)")
        self.sent.append((topic, key, value))

    def publish_batch(self, messages: Sequence[Message]) -> tuple[int, str | None]:
        for done, (topic, key, value) in enumerate(messages):
            try:
                self.publish(topic, key, value)
            except EffectFailed as exc:
                return done, exc.detail
        return len(messages), None

    def on(self, topic: str) -> list[bytes]:
        return [v for t, _k, v in self.sent if t == topic]

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        return None


class KafkaPublisher:
    """Idempotent producer; each ``publish`` waits (up to ``timeout_s``) for its delivery report."""

    def __init__(self, bootstrap: str, timeout_s: float = 15.0) -> None:
        from pipelines.publish import make_producer

        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        self._producer: Any = make_producer(bootstrap)
        self._lock = threading.Lock()

    def publish(self, topic: str, key: str, value: bytes) -> None:
        delivered, error = self.publish_batch([(topic, key, value)])
        if not delivered:
            raise EffectFailed(f"publishing to {topic} failed: {error}")

    def publish_batch(self, messages: Sequence[Message]) -> tuple[int, str | None]:
        outcomes: list[Any] = [_PENDING] * len(messages)

        def on_delivery(index: int) -> Any:
            def delivered(err: Any, _msg: Any) -> None:
                outcomes[index] = err

            return delivered

        with self._lock:
            for i, (topic, key, value) in enumerate(messages):
                try:
                    self._producer.produce(
                        topic, value=value, key=key.encode(), on_delivery=on_delivery(i)
                    )
                except Exception as exc:  # noqa: BLE001 - KafkaException/BufferError
                    self._producer.flush(self.timeout_s)
                    return _prefix(outcomes, f"could not queue a message for {topic}: {exc}")
            self._producer.flush(self.timeout_s)
            result = _prefix(
                outcomes,
                f"no delivery report from Kafka at {self.bootstrap} within "
                f"{self.timeout_s:.0f} s; is the broker up?",
            )
            # what is still queued now would go out later as well as on the caller's retry
            self._producer.purge(in_queue=True, in_flight=False)
            self._producer.poll(0)
        return result

    def ready(self) -> bool:
        try:
            self._producer.list_topics(timeout=2)
            return True
        except Exception:  # noqa: BLE001 - readiness reports, never raises
            return False

    def close(self) -> None:
        self._producer.flush(self.timeout_s)


_PENDING = object()


def _prefix(outcomes: list[Any], timeout_reason: str) -> tuple[int, str | None]:
    """How many outcomes from the start are deliveries, and why the first other one is not."""
    for i, err in enumerate(outcomes):
        if err is _PENDING:
            return i, timeout_reason
        if err is not None:
            return i, f"Kafka refused a message: {err}"
    return len(outcomes), None
