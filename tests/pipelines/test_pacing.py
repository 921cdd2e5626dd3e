"""Accelerated replay: the event-time → wall-time map and the paced release of a log."""

from __future__ import annotations

import json

import pytest

from pipelines.pacing import DAY_S, Pacing, arrival_ts, paced_chunks

T0 = 1_790_000_000.0  # event time of the replay's origin (POSIX s)


def line(occurred: float, published: float | None = None, **extra: object) -> bytes:
    from datetime import UTC, datetime

    def iso(ts: float) -> str:
        return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")

    body: dict[str, object] = {"event_id": f"e{occurred}", "occurred_at": iso(occurred), **extra}
    if published is not None:
        body["published_at"] = iso(published)
    return json.dumps(body).encode()


class FakeTime:
    """A wall clock that only moves when the code under test sleeps."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_pacing_maps_days_to_seconds_both_ways() -> None:
    pacing = Pacing(sim_start=T0, wall_start=100.0, seconds_per_day=6.0)
    assert pacing.wall_of(T0) == 100.0
    assert pacing.wall_of(T0 + DAY_S) == pytest.approx(106.0)
    assert pacing.wall_of(T0 - DAY_S / 2) == pytest.approx(97.0)  # before the origin: the past
    assert pacing.sim_of(pacing.wall_of(T0 + 12_345.0)) == pytest.approx(T0 + 12_345.0)
    assert pacing.speed == pytest.approx(14_400.0)
    with pytest.raises(ValueError, match="seconds_per_day"):
        Pacing(T0, 0.0, 0.0)


def test_arrival_is_published_at_else_occurred_at_else_none() -> None:
    assert arrival_ts(line(T0, T0 + 30)) == pytest.approx(T0 + 30)
    assert arrival_ts(line(T0)) == pytest.approx(T0)
    assert arrival_ts(b"{not json") is None
    assert arrival_ts(b"[1, 2]") is None
    assert arrival_ts(b'{"occurred_at": "2026-03-02T10:00:00"}') is None  # no zone
    assert arrival_ts(b'{"occurred_at": 17}') is None


def test_lines_are_released_when_the_accelerated_clock_reaches_their_arrival() -> None:
    fake = FakeTime(1000.0)
    pacing = Pacing(sim_start=T0, wall_start=1000.0, seconds_per_day=8.64)  # 1 day = 8.64 s
    hour = 3600.0  # 0.36 s of wall time
    lines = [
        line(T0 - 5 * hour, T0 - 5 * hour),  # before the origin: at once
        line(T0, T0 + 1),  # at once (due 1000.0001 → first wake)
        b"{broken",  # malformed: goes with the line before it
        line(T0 + hour, T0 + 2 * hour),  # published 2 h later: due at 1000.72
        line(T0 + 10 * hour),  # no published_at: occurred_at, due at 1003.6
    ]
    released: list[tuple[float, list[bytes]]] = []
    for chunk in paced_chunks(lines, pacing, fake.clock, fake.sleep, tick_s=0.1):
        released.append((fake.now, chunk))
    assert [chunk for _t, chunk in released] == [[lines[0]], lines[1:3], [lines[3]], [lines[4]]]
    times = [t for t, _chunk in released]
    assert times[0] == 1000.0
    assert times[2] == pytest.approx(1000.72)
    assert times[3] == pytest.approx(1003.6)
    assert all(s > 0 for s in fake.sleeps)


def test_wakes_at_most_once_per_tick_and_stops_when_told() -> None:
    fake = FakeTime(0.0)
    pacing = Pacing(sim_start=T0, wall_start=0.0, seconds_per_day=DAY_S)  # real time
    lines = [line(T0 + i * 0.01) for i in range(1, 101)]  # one every 10 ms for 1 s
    chunks = list(paced_chunks(lines, pacing, fake.clock, fake.sleep, tick_s=0.25))
    assert sum(len(c) for c in chunks) == 100
    assert len(chunks) <= 5  # 1 s at one wake per 0.25 s, not one wake per line

    stop_after = FakeTime(0.0)
    seen = []
    gen = paced_chunks(
        lines, pacing, stop_after.clock, stop_after.sleep, stopped=lambda: len(seen) >= 1
    )
    for chunk in gen:
        seen.append(chunk)
    assert len(seen) == 1  # stopped: nothing more, no waiting out the rest of the log
    assert stop_after.now < 0.5
