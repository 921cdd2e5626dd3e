"""Publish a JSONL event file to Kafka, one message per line, keyed ``sku|location``.

Lines are sent as they are (malformed ones too: the dataflow dead-letters them with a reason);
the key is taken from the line when it parses as an object with ``sku`` and ``location``,
otherwise the message has no key. The producer is idempotent (``enable.idempotence``), so its
own retries never duplicate a message; delivery errors are counted and reported, not raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from pipelines.connectors import DEFAULT_BOOTSTRAP, EVENTS_TOPIC

DEFAULT_PARTITIONS = 8
_decoder = msgspec.json.Decoder()


class ProducerLike(Protocol):
    """The part of ``confluent_kafka.Producer`` we use (tests may pass a fake)."""

    def produce(self, topic: str, value: Any = ..., key: Any = ..., **kwargs: Any) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...


@dataclass
class PublishResult:
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def message_key(line: bytes) -> bytes | None:
    """``b"sku|location"`` when the line is an object carrying both, else ``None``."""
    try:
        obj = _decoder.decode(line)
    except msgspec.DecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    sku, location = obj.get("sku"), obj.get("location")
    if isinstance(sku, str) and isinstance(location, str) and sku and location:
        return f"{sku}|{location}".encode()
    return None


def ensure_topic(bootstrap: str, topic: str, partitions: int = DEFAULT_PARTITIONS) -> None:
    """Create ``topic`` with ``partitions`` partitions if it does not exist yet."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic in admin.list_topics(timeout=30).topics:
        return
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions)])
    for fut in futures.values():
        try:
            fut.result(timeout=30)
        except Exception as exc:  # noqa: BLE001 - TOPIC_ALREADY_EXISTS races are fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def make_producer(bootstrap: str) -> ProducerLike:
    from confluent_kafka import Producer

    producer: Any = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "compression.type": "lz4",
        }
    )
    return producer


def publish_lines(
    lines: Iterable[bytes],
    producer: ProducerLike,
    topic: str = EVENTS_TOPIC,
    on_progress: Callable[[int], None] | None = None,
) -> PublishResult:
    result = PublishResult()
    started = time.perf_counter()

    def delivered(err: Any, _msg: Any) -> None:
        if err is None:
            result.delivered += 1
        else:
            result.failed += 1
            if len(result.errors) < 20:
                result.errors.append(str(err))

    for line in lines:
        while True:
            try:
                producer.produce(topic, value=line, key=message_key(line), on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)  # local queue full: let deliveries drain
        result.sent += 1
        if result.sent % 5000 == 0:
            producer.poll(0)
            if on_progress:
                on_progress(5000)
    remaining = producer.flush(60)
    if remaining:
        result.failed += remaining
        result.errors.append(f"{remaining} messages still undelivered after 60 s flush")
    if on_progress:
        on_progress(result.sent % 5000)
    result.seconds = time.perf_counter() - started
    return result


def publish_file(
    path, bootstrap: str = DEFAULT_BOOTSTRAP, topic: str = EVENTS_TOPIC, progress: bool = True
) -> PublishResult:  # noqa: ANN001
    from pathlib import Path

    from pipelines.replay import iter_lines

    path = Path(path)
    ensure_topic(bootstrap, topic)
    producer = make_producer(bootstrap)
    if not progress:
        return publish_lines(iter_lines(path), producer, topic)
    from rich.progress import Progress

    total = sum(1 for _ in iter_lines(path))
    with Progress() as bar:
        task = bar.add_task(f"publishing to {topic}", total=total)
        return publish_lines(iter_lines(path), producer, topic, lambda n: bar.advance(task, n))
