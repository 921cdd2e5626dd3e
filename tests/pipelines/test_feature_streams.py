"""What feature updates carry for scoring (as_of, trigger) and the follow-file source."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from bytewax.testing import TestingSink, TestingSource, run_main

from pipelines.connectors import FollowFileSource
from pipelines.dataflow import FeatureUpdate, build_flow

T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def event(n: int, minutes: int, kind: str = "sale", qty: int = 1, **extra: object) -> bytes:
    body = {
        "event_id": f"e{n}",
        "event_type": kind,
        "occurred_at": (T + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z"),
        "sku": "A",
        "location": "S1",
        "quantity": qty,
        "source": "pos",
        **extra,
    }
    return json.dumps(body).encode()


def run_updates(lines: list[bytes], batch_size: int) -> list[FeatureUpdate]:
    out: list[FeatureUpdate] = []
    flow = build_flow(
        TestingSource(lines, batch_size=batch_size), TestingSink([]), TestingSink(out)
    )
    run_main(flow, epoch_interval=timedelta(0))
    return out


def test_update_carries_as_of_and_the_last_changing_event_as_trigger() -> None:
    published = "2026-03-02T10:30:00Z"
    lines = [
        event(1, 0, "cycle_count", 10),
        event(2, 60, published_at=published),
        event(3, 30),  # arrives last but occurred earlier: the trigger, not the newest event
        event(2, 60, published_at=published),  # duplicate: changes nothing, triggers nothing
    ]
    updates = run_updates(lines, batch_size=4)
    assert len(updates) == 1
    update = updates[0]
    assert update.as_of_ts == (T + timedelta(minutes=60)).timestamp()  # the key's newest event
    assert update.trigger is not None
    assert update.trigger.event_id == "e3"
    assert update.trigger.occurred_ts == (T + timedelta(minutes=30)).timestamp()
    assert update.trigger.published_ts is None
    assert update.snapshot["on_hand"] == 8

    one_by_one = run_updates(lines, batch_size=1)
    assert [u.trigger.event_id for u in one_by_one if u.trigger] == ["e1", "e2", "e3"]
    assert one_by_one[1].trigger is not None
    assert one_by_one[1].trigger.published_ts == datetime.fromisoformat(published).timestamp()


def test_follow_source_reads_complete_lines_as_the_file_grows(tmp_path) -> None:
    path = tmp_path / "live.jsonl"
    now = datetime(2026, 3, 2, tzinfo=UTC)
    source = FollowFileSource(path, batch_size=2, poll_s=0.5, now=lambda: now)
    part = source.build_part("events", str(path), None)
    assert part.next_batch() == []  # the file does not exist yet
    assert part.next_awake() == now + timedelta(seconds=0.5)

    path.write_bytes(b'{"a":1}\n{"a":2}\n{"a":3}\n{"a":')  # the last line is half written
    assert part.next_batch() == [b'{"a":1}', b'{"a":2}']  # batch_size
    assert part.next_awake() is None
    assert part.next_batch() == [b'{"a":3}']
    assert part.next_batch() == []
    with path.open("ab") as fh:
        fh.write(b"4}\n")
    assert part.next_batch() == [b'{"a":4}']

    resumed = source.build_part("events", str(path), part.snapshot())
    with path.open("ab") as fh:
        fh.write(b'{"a":5}\n')
    assert resumed.next_batch() == [b'{"a":5}']  # nothing read twice after a resume
