"""Accelerated replay: an event log released on a wall clock that runs faster than event time.

A simulated log spans days; a demo has minutes. :class:`Pacing` maps event time onto wall time
(``seconds_per_day`` wall seconds per simulated day) and :func:`paced_chunks` releases a log's
lines, in file (= arrival) order, when the accelerated clock reaches each line's arrival time.
Nothing here touches a file, a broker or bytewax: callers append the chunks to a file or publish
them to Kafka, and pass the clock and the sleep, so tests run without waiting.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

import msgspec

DAY_S = 86_400.0


@dataclass(frozen=True)
class Pacing:
    """Event time ``sim_start`` is released at wall time ``wall_start`` (both POSIX seconds,
    UTC); from there one simulated day takes ``seconds_per_day`` wall seconds. Event times
    before ``sim_start`` map to wall times before ``wall_start``: a replay that starts at
    ``wall_start`` releases them at once (a warm-up)."""

    sim_start: float
    wall_start: float
    seconds_per_day: float

    def __post_init__(self) -> None:
        if not (self.seconds_per_day > 0 and math.isfinite(self.seconds_per_day)):
            raise ValueError(f"seconds_per_day must be > 0, got {self.seconds_per_day}")

    @property
    def speed(self) -> float:
        """Simulated seconds per wall second."""
        return DAY_S / self.seconds_per_day

    def wall_of(self, sim_ts: float) -> float:
        return self.wall_start + (sim_ts - self.sim_start) / self.speed

    def sim_of(self, wall_ts: float) -> float:
        return self.sim_start + (wall_ts - self.wall_start) * self.speed


class _Times(msgspec.Struct):
    occurred_at: object = None
    published_at: object = None


_times = msgspec.json.Decoder(_Times)


def arrival_ts(line: bytes) -> float | None:
    """When an event line reached the platform, in event time (POSIX s): its ``published_at``,
    else its ``occurred_at``; None when neither is a zoned ISO-8601 timestamp (malformed)."""
    try:
        times = _times.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    for value in (times.published_at, times.occurred_at):
        if not isinstance(value, str):
            continue
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            continue
        if parsed.tzinfo is not None:
            return parsed.timestamp()
    return None


def paced_chunks(
    lines: Iterable[bytes],
    pacing: Pacing,
    clock: Callable[[], float],
    sleep: Callable[[float], object],
    *,
    tick_s: float = 0.1,
    max_chunk: int = 5000,
    stopped: Callable[[], bool] = lambda: False,
) -> Iterator[list[bytes]]:
    """Yield ``lines`` in order, in chunks, each as soon as the wall clock reaches its arrival.

    A line without a readable arrival time (a malformed line) goes with the line before it; a
    line that arrived before the one before it goes at once. The generator wakes at most every
    ``tick_s`` seconds, so a line is released up to ``tick_s`` after its due time: callers that
    measure latency take the release time from the clock once they have written the chunk.
    ``sleep`` may return early (e.g. ``threading.Event.wait``); the generator ends, without
    yielding what it holds, as soon as ``stopped()`` is true.
    """
    pending: list[bytes] = []
    last_ts = -math.inf
    last_wake = -math.inf
    for line in lines:
        ts = arrival_ts(line)
        last_ts = last_ts if ts is None else max(last_ts, ts)
        due = pacing.wall_of(last_ts)
        if len(pending) >= max_chunk:
            yield pending
            pending = []
        if due > clock():
            if pending:
                yield pending
                pending = []
            last_wake = max(due, last_wake + tick_s)
            while (now := clock()) < last_wake:
                if stopped():
                    return
                sleep(last_wake - now)
        if stopped():
            return
        pending.append(line)
    if pending:
        yield pending
