"""The demo's accelerated replay: the event log, released on the paced clock into a file the
flow follows or a Kafka topic, with the wall time each event was released (for latency)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from pipelines.pacing import Pacing, paced_chunks
from pipelines.replay import iter_lines


class _EventKey(msgspec.Struct):
    sku: object = None
    location: object = None
    occurred_at: object = None


_event_key = msgspec.json.Decoder(_EventKey)


def parse_ts(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None


class ReleaseIndex:
    """When each event was released: (``sku|location``, whole event-time second) → wall time of
    its first release. Thread-safe; only well-formed events are indexed."""

    def __init__(self) -> None:
        self._released: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    def record(self, lines: list[bytes], wall: float) -> None:
        keys = []
        for line in lines:
            try:
                ev = _event_key.decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            ts = parse_ts(ev.occurred_at)
            if ts is not None and isinstance(ev.sku, str) and isinstance(ev.location, str):
                keys.append((f"{ev.sku}|{ev.location}", round(ts)))
        with self._lock:
            for key in keys:
                self._released.setdefault(key, wall)

    def release_of(self, key: str, event_ts: float) -> float | None:
        with self._lock:
            return self._released.get((key, round(event_ts)))


@dataclass
class ReplayProgress:
    released: int = 0
    sim_now: float = float("nan")
    done: bool = False


class Replayer(threading.Thread):
    """Releases the event log on the accelerated clock into ``sink`` (file append or Kafka)."""

    def __init__(
        self,
        events: Path,
        pacing: Pacing,
        sink: Callable[[list[bytes]], None],
        index: ReleaseIndex,
        stop: threading.Event,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name="replay", daemon=True)
        self.events, self.pacing, self.sink = events, pacing, sink
        self.index, self.stop, self.clock = index, stop, clock
        self.progress = ReplayProgress()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for chunk in paced_chunks(
                iter_lines(self.events),
                self.pacing,
                self.clock,
                self.stop.wait,
                stopped=self.stop.is_set,
            ):
                self.sink(chunk)
                released = self.clock()
                self.index.record(chunk, released)
                self.progress.released += len(chunk)
                self.progress.sim_now = self.pacing.sim_of(released)
            self.progress.done = not self.stop.is_set()
        except BaseException as exc:  # noqa: BLE001 - reported by the main loop
            self.error = exc


class FileAppender:
    """Appends released lines to the file the flow follows (whole lines, flushed)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = path.open("wb")

    def __call__(self, lines: list[bytes]) -> None:
        self.fh.write(b"\n".join(lines) + b"\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


class KafkaAppender:
    """Publishes released lines to the events topic, key ``sku|location``; waits for delivery."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from pipelines.publish import make_producer, message_key

        self.producer = make_producer(bootstrap)
        self.topic = topic
        self.key = message_key
        self.failed = 0

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed += 1

    def __call__(self, lines: list[bytes]) -> None:
        for line in lines:
            self.producer.produce(
                self.topic, value=line, key=self.key(line), on_delivery=self._delivered
            )
        self.producer.flush(30)

    def close(self) -> None:
        self.producer.flush(30)
