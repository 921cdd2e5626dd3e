"""``shelfguard stream`` (tail mode) outlives a flood of malformed events and a duplicate storm."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from pipelines.events import Rejection, RejectReason, parse_event
from pipelines.features import FEATURE_NAMES
from tests.chaos.figures import report
from tests.integration.conftest import (
    POSITIONS,
    latest_by_key,
    no_op_sentinels,
    reference_replay,
    reference_snapshots,
    snapshot_diff,
    wait_for_snapshots,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

FLOOD = 2_000
# the duplicates count is only re-emitted with a key's next applied event: compare features
FEATURES = ("sku", "location", *FEATURE_NAMES)


def malformed_flood(n: int) -> list[bytes]:
    """``n`` distinct payloads, each refused by the contract for one of several reasons."""
    ok = {
        "event_type": "sale",
        "occurred_at": "2026-03-05T10:00:00Z",
        "sku": "SKU-FLOOD",
        "location": "S001",
        "quantity": 1,
        "source": "pos",
    }
    kinds = [
        lambda i: f"garbage line {i} {{".encode(),
        lambda i: json.dumps([i, "not an object"]).encode(),
        lambda i: json.dumps({**ok, "event_id": f"flood-{i}", "sku": None}).encode(),
        lambda i: json.dumps({**ok, "event_id": f"flood-{i}", "occurred_at": "2026-03-05 10:00"}),
        lambda i: json.dumps({**ok, "event_id": f"flood-{i}", "occurred_at": "2026-03-05T10:00"}),
        lambda i: json.dumps({**ok, "event_id": f"flood-{i}", "event_type": "teleport"}),
        lambda i: json.dumps({**ok, "event_id": f"flood-{i}", "quantity": -3}),
        lambda i: json.dumps({**ok, "event_id": f"flood-{i}", "quantity": 1.5}),
        lambda i: json.dumps({**ok, "event_id": f"flood-{i}", "source": "fax"}),
        lambda i: json.dumps({**ok, "event_id": f"flood-{i}", "location": " "}),
    ]
    out = []
    for i in range(n):
        payload = kinds[i % len(kinds)](i)
        out.append(payload if isinstance(payload, bytes) else payload.encode())
    return out


def test_stream_dead_letters_a_flood_and_ignores_a_duplicate_storm(kafka, small_world, processes):
    started = time.monotonic()
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
    valid = small_world.valid_lines()
    first, later = valid[: len(valid) // 2], valid[len(valid) // 2 :]
    flood = malformed_flood(FLOOD)
    assert all(isinstance(parse_event(p), Rejection) for p in flood)

    kafka.produce(events, first)
    flood_at = time.monotonic()
    kafka.produce(events, flood)
    kafka.produce(events, later)

    reference = reference_replay(valid)
    expected = reference_snapshots(reference)
    out = kafka.reader(features)
    dlq_reader = kafka.reader(dlq)

    def caught_up():
        out.read_to_end()
        dlq_reader.read_to_end()
        got = latest_by_key(out.records)
        return len(dlq_reader.records) >= FLOOD and not snapshot_diff(got, expected, FEATURES)

    wait_until(
        caught_up,
        timeout=90,
        what="the stream to process all valid events and the flood",
        explain=lambda: (
            len(dlq_reader.records),
            snapshot_diff(latest_by_key(out.records), expected, FEATURES),
        ),
    )
    flood_s = time.monotonic() - flood_at
    assert stream.alive, stream.tail()

    # Exactly the flood is dead-lettered, each record with its reason and the raw payload.
    dlq_reader.read_to_end()
    records = [r.json() for r in dlq_reader.records]
    got = latest_by_key(out.records)
    report(
        "malformed_flood",
        f"{FLOOD} malformed messages (10 kinds of defect) amid valid events",
        {
            "valid lines before / flood / valid lines after": f"{len(first)} / {FLOOD} / "
            f"{len(later)}",
            "dead-lettered: expected / got": f"{FLOOD} / {len(records)}",
            "dead letters by reason": dict(Counter(r["reason"] for r in records)),
            "valid events dead-lettered": sum(
                not isinstance(parse_event(r["raw"].encode()), Rejection) for r in records
            ),
            "keys: expected / got / differing": f"{len(expected)} / {len(got)} / "
            f"{len(snapshot_diff(got, expected, FEATURES))}",
            "stream process": "alive, never restarted" if stream.alive else "DIED",
            "flood published to all processed s": round(flood_s, 1),
        },
    )
    assert len(records) == FLOOD
    assert Counter((r["raw"], r["reason"]) for r in records) == Counter(
        (p.decode(), parse_event(p).reason.value) for p in flood
    )
    assert len({r["reason"] for r in records}) == 10  # one reason per kind of defect
    assert all(r["reason"] in set(RejectReason) for r in records)

    # The events published after the flood were processed: their keys' snapshots moved on.
    before_flood = reference_snapshots(reference_replay(first))
    later_keys = {parse_event(line).key for line in later}
    moved = {k for k in later_keys if snapshot_diff({k: before_flood.get(k, {})}, {k: expected[k]})}
    assert len(moved) > len(later_keys) // 2
    got = latest_by_key(out.records)
    assert (
        snapshot_diff({k: got[k] for k in moved}, {k: expected[k] for k in moved}, FEATURES) == []
    )

    # Duplicate storm: every valid event three more times, then one no-op sentinel per key.
    settled = latest_by_key(out.records)
    storm = valid * 3
    sentinels = no_op_sentinels(reference)
    storm_at = time.monotonic()
    kafka.produce(events, storm)
    kafka.produce(events, sentinels)
    after = reference_replay(valid + storm + sentinels)
    expected_after = reference_snapshots(after)
    assert after.duplicates == reference.duplicates + len(storm)

    wait_for_snapshots(
        out, expected_after, timeout=90, what="the duplicate storm and the sentinels"
    )
    storm_s = time.monotonic() - storm_at
    assert stream.alive, stream.tail()
    final = latest_by_key(out.records)
    per_key = Counter(parse_event(line).key for line in valid)
    dlq_reader.read_to_end()
    report(
        "duplicate_storm",
        "every valid event re-sent 3 more times (byte-identical copies)",
        {
            "valid events / re-sent copies": f"{len(valid)} / {len(storm)}",
            "keys whose positions or features moved": len(snapshot_diff(final, settled, FEATURES)),
            "keys whose duplicate count is not exact": sum(
                final[k]["duplicates"] != reference.states[k].duplicates + 3 * n
                for k, n in per_key.items()
            ),
            "duplicates counted: expected / got": f"{after.duplicates} / "
            f"{sum(s['duplicates'] for s in final.values())}",
            "dead letters added by the storm": len(dlq_reader.records) - FLOOD,
            "stream process": "alive, never restarted" if stream.alive else "DIED",
            "storm published to all processed s": round(storm_s, 1),
            "test wall time (flood + storm) s": round(time.monotonic() - started, 1),
        },
    )
    # Nothing moved: positions and every feature are what they were before the storm ...
    assert snapshot_diff(final, settled, FEATURES) == []
    assert snapshot_diff(final, expected, POSITIONS) == []
    # ... and each key counted exactly three re-sent copies of each of its valid lines.
    for key, n in per_key.items():
        assert final[key]["duplicates"] == reference.states[key].duplicates + 3 * n, key
    dlq_reader.read_to_end()
    assert len(dlq_reader.records) == FLOOD
    out.close()
    dlq_reader.close()
