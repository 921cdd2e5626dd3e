"""Sources and sinks of the feature dataflow: JSONL files and Kafka topics.

I/O lives here so that :mod:`pipelines.dataflow` stays a wiring of pure steps. Topic names are
contracts: ``inventory.events`` (in), ``inventory.events.dlq`` (rejects), ``inventory.features``
(snapshots).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from bytewax.connectors.files import FileSink
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from pipelines.events import Rejection

EVENTS_TOPIC = "inventory.events"
DLQ_TOPIC = "inventory.events.dlq"
FEATURES_TOPIC = "inventory.features"
SCORES_TOPIC = "inventory.scores"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

_json = msgspec.json.Encoder()


def rejection_line(rejection: Rejection) -> str:
    """One DLQ JSONL record: ``{"raw", "reason", "field", "detail"}``."""
    return _json.encode(rejection.to_dict()).decode()


def rejection_file_item(rejection: Rejection) -> tuple[str, str]:
    """A DLQ line routed to the single DLQ file partition (FileSink wants ``(key, line)``)."""
    return ("dlq", rejection_line(rejection))


def rejection_message(rejection: Rejection) -> KafkaSinkMessage[bytes | None, bytes]:
    return KafkaSinkMessage(key=None, value=_json.encode(rejection.to_dict()))


def update_message(update: Any) -> KafkaSinkMessage[bytes, bytes]:
    """A feature snapshot as a Kafka message keyed ``sku|location`` (newest per key wins)."""
    body = dict(update.snapshot)
    body["duplicates"] = update.duplicates
    return KafkaSinkMessage(key=update.key.encode(), value=_json.encode(body))


def file_source(path: Path, batch_size: int = 1000) -> JsonlFileSource:
    return JsonlFileSource(path, batch_size=batch_size)


class _LinesPartition(StatefulSourcePartition[bytes, int]):
    """Reads a file's lines as bytes from a byte offset to its end."""

    def __init__(self, path: Path, offset: int, batch_size: int) -> None:
        self._file = path.open("rb")
        self._file.seek(offset)
        self._batch_size = batch_size

    def next_batch(self) -> list[bytes]:
        lines: list[bytes] = []
        while len(lines) < self._batch_size:
            line = self._file.readline()
            if not line:
                break
            lines.append(line.rstrip(b"\r\n"))
        if not lines:
            raise StopIteration
        return lines

    def snapshot(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


class JsonlFileSource(FixedPartitionedSource[bytes, int]):
    """A JSONL file read once to its end, one partition, in the lines
    :func:`pipelines.replay.iter_lines` gives: split on ``\\n`` only, trailing ``\\r``/``\\n``
    removed, bytes left undecoded (the parser step skips blank ones).

    bytewax's ``FileSource`` reads text: a line that is not UTF-8 stopped the flow instead of
    being a ``not_json`` dead letter, a raw ``\\r`` (JSON whitespace) split an event in two, and
    a line of Unicode whitespace vanished instead of being dead-lettered. Resume state: the byte
    offset after the last emitted line; the partition keeps ``FileSource``'s name, so its
    snapshots still resume.
    """

    def __init__(self, path: Path, batch_size: int = 1000) -> None:
        self.path = Path(path)
        self.batch_size = batch_size

    def list_parts(self) -> list[str]:
        if not self.path.exists():
            return []
        return [f"{hex(self.path.parent.stat().st_dev)}::{self.path}"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _LinesPartition:
        offset = 0 if resume_state is None else resume_state
        return _LinesPartition(self.path, offset, self.batch_size)


class _FollowPartition(StatefulSourcePartition[bytes, int]):
    """Reads complete lines from a byte offset; polls for more at the end (never finishes)."""

    def __init__(
        self,
        path: Path,
        offset: int,
        batch_size: int,
        poll_s: float,
        now: Callable[[], datetime],
    ) -> None:
        self._path = path
        self._offset = offset
        self._batch_size = batch_size
        self._poll = timedelta(seconds=poll_s)
        self._now = now
        self._awake: datetime | None = None

    def next_batch(self) -> list[bytes]:
        lines: list[bytes] = []
        if self._path.exists():
            with self._path.open("rb") as fh:
                fh.seek(self._offset)
                while len(lines) < self._batch_size:
                    line = fh.readline()
                    if not line.endswith(b"\n"):  # end of file, or a line still being written
                        break
                    self._offset += len(line)
                    lines.append(line.rstrip(b"\r\n"))
        self._awake = None if lines else self._now() + self._poll
        return lines

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        return self._offset


class FollowFileSource(FixedPartitionedSource[bytes, int]):
    """A JSONL file that another process keeps appending to (``tail -f``), one partition.

    Emits each complete line (without its line ending) once; a trailing line without ``\\n`` is
    left until it is complete. At the end of the file it polls every ``poll_s`` seconds and
    never finishes: stop the flow to stop it. Resume state is the byte offset after the last
    emitted line. A missing file counts as empty until it appears.
    """

    def __init__(
        self,
        path: Path,
        batch_size: int = 1000,
        poll_s: float = 0.05,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.path = Path(path)
        self.batch_size = batch_size
        self.poll_s = poll_s
        self.now = now

    def list_parts(self) -> list[str]:
        return [str(self.path)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _FollowPartition:
        offset = 0 if resume_state is None else resume_state
        return _FollowPartition(self.path, offset, self.batch_size, self.poll_s, self.now)


def dlq_file_sink(path: Path) -> FileSink:
    """The dead-letter JSONL file; items are ``(key, line)`` (FileSink has one partition)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return FileSink(path)


def jsonl_file_sink(path: Path) -> FileSink:
    """A JSONL output file; items are ``(key, line)`` (one partition, resumable)."""
    return dlq_file_sink(path)


def kafka_source(
    bootstrap: str, topic: str = EVENTS_TOPIC, *, tail: bool = True, batch_size: int = 1000
) -> KafkaSource:
    """Read ``topic`` from the beginning; ``tail=False`` ends the flow at the topic's end."""
    return KafkaSource([bootstrap], [topic], tail=tail, batch_size=batch_size)


def kafka_sink(bootstrap: str, topic: str) -> KafkaSink:
    """An idempotent producer: librdkafka's own retries (e.g. while the broker restarts) never
    write a message twice (the kafka-restart fault test caught duplicated DLQ records without)."""
    return KafkaSink(
        [bootstrap], topic, add_config={"linger.ms": "5", "enable.idempotence": "true"}
    )


class _StatePartition(StatelessSinkPartition[bytes]):
    def __init__(self, path: Path) -> None:
        self._path = path
        path.unlink(missing_ok=True)

    def write_batch(self, items: list[bytes]) -> None:
        with self._path.open("ab") as fh:
            for blob in items:
                pickle.dump(blob, fh)


class StateDirSink(DynamicSink[bytes]):
    """Collects the final pickled key states, one file per worker, for the Parquet writer."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StatePartition:
        return _StatePartition(self.directory / f"states-{worker_index:03d}-of-{worker_count}.pkl")


def read_state_dir(directory: Path) -> list[Any]:
    """All key states written by :class:`StateDirSink` (unpickled :class:`KeyState` objects)."""
    states = []
    for part in sorted(directory.glob("states-*.pkl")):
        with part.open("rb") as fh:
            while True:
                try:
                    blob = pickle.load(fh)  # noqa: S301 - our own files
                except EOFError:
                    break
                states.append(pickle.loads(blob))  # noqa: S301
    return states
