"""Restart the Kafka broker (``kafka.sh restart``: clean stop, start, data kept) while
``shelfguard stream`` consumes and a producer publishes.

The stream and the producer ride through the outage (their clients reconnect); afterwards every
key's latest snapshot equals the pure replay of everything published (nothing lost, nothing
counted twice: positions, features and duplicate counts), and every malformed line was
dead-lettered exactly once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

import pytest
from confluent_kafka import Producer

from pipelines.events import Rejection, parse_event
from pipelines.publish import message_key
from tests.chaos.figures import report
from tests.integration.conftest import (
    POSITIONS,
    latest_by_key,
    make_world,
    no_op_sentinels,
    reference_replay,
    reference_snapshots,
    snapshot_diff,
    truth_diff,
    wait_until,
)

# ~50 s with the private broker's start: only under `make chaos` (see tests/chaos/conftest.py)
pytestmark = [pytest.mark.chaos(long=True), pytest.mark.integration]

CHUNK = 500
PAUSE_S = 0.1  # ~5k lines/s offered while the stream runs

# librdkafka's connection errors while the broker is down are expected: keep them out of the
# test output (the delivery reports below are what counts).
_quiet = logging.getLogger("tests.chaos.rdkafka")
_quiet.setLevel(logging.CRITICAL + 1)
_quiet.propagate = False


def paced_producer(bootstrap: str) -> Producer:
    """Like ``shelfguard publish``'s producer (idempotent), but never flushed between chunks:
    what is produced while the broker is down waits in the client's queue and is retried."""
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 20,
            "compression.type": "lz4",
        },
        logger=_quiet,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """8 stores × 100 SKUs × 20 days: ~17k lines with duplicates and malformed lines."""
    return make_world(tmp_path_factory.mktemp("kafka-restart"), seed=7, stores=8, skus=100, days=20)


def test_broker_restart_mid_stream_loses_and_doubles_nothing(private_broker, world, processes):
    started = time.monotonic()
    kafka = private_broker.kafka
    events, dlq, features = (
        kafka.new_topic("events"),
        kafka.new_topic("dlq", partitions=2),
        kafka.new_topic("features", partitions=4),
    )
    stream = processes.shelfguard(
        "stream",
        "stream",
        "--bootstrap", kafka.bootstrap,
        "--topic", events,
        "--dlq-topic", dlq,
        "--features-topic", features,
    )  # fmt: skip
    lines = world.lines()
    malformed = sum(isinstance(parse_event(line), Rejection) for line in lines)
    reference = reference_replay(lines)
    sentinels = no_op_sentinels(reference)
    reference.feed(sentinels)
    expected = reference_snapshots(reference)

    producer = paced_producer(kafka.bootstrap)
    sent = 0
    delivered: list[int] = [0, 0]  # ok, failed
    failures: list[str] = []
    producer_errors: list[BaseException] = []

    def on_delivery(err, _msg) -> None:  # noqa: ANN001
        delivered[err is not None] += 1
        if err is not None and len(failures) < 10:
            failures.append(str(err))

    def produce() -> None:
        nonlocal sent
        try:
            for start in range(0, len(lines), CHUNK):
                for line in lines[start : start + CHUNK]:
                    producer.produce(events, line, message_key(line), on_delivery=on_delivery)
                    sent += 1
                producer.poll(0)
                time.sleep(PAUSE_S)
            producer.flush(180)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            producer_errors.append(exc)

    thread = threading.Thread(target=produce, name="producer")
    thread.start()
    wait_until(lambda: sent >= 0.4 * len(lines), timeout=60, what="40 % produced")
    sent_at_restart, delivered_at_restart = sent, delivered[0]
    outage_s = private_broker.script("restart")
    sent_during = sent - sent_at_restart
    assert stream.alive, f"the stream died with the broker:\n{stream.tail()}"
    thread.join(timeout=240)
    assert not thread.is_alive() and not producer_errors, producer_errors
    assert sent == len(lines) and delivered == [len(lines), 0], (delivered, failures)
    published_at = time.monotonic()
    for line in sentinels:
        producer.produce(events, line, message_key(line), on_delivery=on_delivery)
    assert producer.flush(60) == 0 and delivered[1] == 0, failures

    out, dead = kafka.reader(features), kafka.reader(dlq)

    def caught_up() -> bool:
        out.read_to_end()
        dead.read_to_end()
        return len(dead.records) >= malformed and not snapshot_diff(
            latest_by_key(out.records), expected
        )

    wait_until(
        caught_up,
        timeout=120,
        what="the stream to catch up after the broker restart",
        explain=lambda: (len(dead.records), snapshot_diff(latest_by_key(out.records), expected)),
    )
    catch_up_s = time.monotonic() - published_at
    time.sleep(2)  # late duplicates in the DLQ, if any, would show up now
    dead.read_to_end()
    out.read_to_end()
    assert stream.alive, stream.tail()

    final = latest_by_key(out.records)
    diff = snapshot_diff(final, expected, rel=1e-12, abs_=1e-9)
    truth = truth_diff(final, world.last_truth())
    dead_raw = Counter(r.json()["raw"] for r in dead.records)
    expected_raw = Counter(
        line.decode("utf-8", errors="replace")
        for line in lines
        if isinstance(parse_event(line), Rejection)
    )
    events_in_topic = kafka.count(events)
    figures = {
        "lines published": len(lines),
        "produced before the restart (acknowledged) / while it ran": f"{sent_at_restart} "
        f"({delivered_at_restart}) / {sent_during}",
        "broker restart (stop + start) s": round(outage_s, 1),
        "messages in the events topic (lines + sentinels)": events_in_topic,
        "producer deliveries ok / failed (lines + sentinels)": f"{delivered[0]} / {delivered[1]}",
        "keys: expected / got / differing": f"{len(expected)} / {len(final)} / {len(diff)}",
        "keys whose positions differ from the simulator's truth": len(truth),
        "duplicates counted: expected / got": f"{reference.duplicates} / "
        f"{sum(s['duplicates'] for s in final.values())}",
        "dead letters: malformed lines / DLQ records": f"{malformed} / {len(dead.records)}",
        "dead letters twice / missing": f"{sum((dead_raw - expected_raw).values())} / "
        f"{sum((expected_raw - dead_raw).values())}",
        "stream process restarted": "no" if stream.alive else "DIED",
        "catch-up after the last publish s": round(catch_up_s, 1),
        "test wall time s": round(time.monotonic() - started, 1),
    }
    report("kafka_broker_restart", "kafka.sh restart while streaming and publishing", figures)
    assert events_in_topic == len(lines) + len(sentinels)  # the idempotent producer: no dupes
    assert diff == [] and truth == []
    assert sum(s["duplicates"] for s in final.values()) == reference.duplicates
    assert set(POSITIONS) <= set(next(iter(final.values())))
    assert dead_raw == expected_raw and len(dead.records) == malformed
    out.close()
    dead.close()
