"""Integration fixtures: the real Kafka broker, simulated worlds, topic readers, subprocesses.

The broker is the one ``infra/kafka/kafka.sh`` runs (started here, idempotently, once per
session). Every test works on its own topics (``test.<name>.<uuid>``), created through
:meth:`Kafka.new_topic` and deleted at the end of the session, so tests never see each other's
messages. Subprocesses (``shelfguard stream``, ``python -m bytewax.run``) are started through
the ``processes`` fixture, which kills whatever is still running when the test ends and prints
the tail of each log on failure.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pandas as pd
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from pipelines.events import Rejection, format_ts, parse_event
from pipelines.publish import (
    ProducerLike,
    ensure_topic,
    make_producer,
    message_key,
    publish_lines,
)
from pipelines.replay import Replay, iter_lines
from pipelines.simulator import simulate

REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP = "127.0.0.1:9092"
BIN = Path(sys.executable).parent
POSITIONS = ("on_hand", "reserved", "in_transit", "damaged", "quarantined", "returned_pending")

_json = msgspec.json.Decoder()


# ------------------------------------------------------------------------------------ broker


@pytest.fixture(scope="session")
def kafka() -> Iterator[Kafka]:
    """The running broker (``kafka.sh start`` is idempotent); test topics deleted at the end."""
    subprocess.run(
        ["bash", str(REPO / "infra" / "kafka" / "kafka.sh"), "start"], check=True, timeout=180
    )
    broker = Kafka(BOOTSTRAP)
    yield broker
    broker.delete_created_topics()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka: Kafka) -> str:
    return kafka.bootstrap


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes
    partition: int
    offset: int

    def json(self) -> Any:
        return _json.decode(self.value)


@dataclass
class Kafka:
    bootstrap: str
    created: list[str] = field(default_factory=list)
    _producer: ProducerLike | None = None

    def new_topic(self, name: str, partitions: int = 8) -> str:
        """Create ``test.<name>.<uuid>`` with ``partitions`` partitions; return its name."""
        topic = f"test.{name}.{uuid.uuid4().hex[:12]}"
        ensure_topic(self.bootstrap, topic, partitions)
        self.created.append(topic)
        return topic

    def delete_created_topics(self) -> None:
        if self.created:
            admin = AdminClient({"bootstrap.servers": self.bootstrap})
            for fut in admin.delete_topics(self.created, operation_timeout=30).values():
                try:
                    fut.result(timeout=30)
                except Exception:  # noqa: BLE001 - best-effort clean-up
                    pass

    # -- producing -------------------------------------------------------------------------
    def produce(self, topic: str, lines: Iterable[bytes]) -> int:
        """Publish lines as ``shelfguard publish`` does (key sku|location or none); flushed."""
        if self._producer is None:
            self._producer = make_producer(self.bootstrap)
        result = publish_lines(lines, self._producer, topic)
        assert result.failed == 0, result.errors
        return result.sent

    def produce_kcat(self, topic: str, lines: Iterable[bytes]) -> int:
        """Publish with ``kcat -P -K '\\t'``: one ``key\\tvalue`` line per message.

        Idempotent producer, as any publisher to ``inventory.events`` should be: without it
        librdkafka may reorder a partition's messages on retries, and per-key arrival order is
        what the flow (like any ledger) sees — rare float-level EWMA differences were seen.
        """
        payload = bytearray()
        sent = 0
        for line in lines:
            payload += (message_key(line) or b"") + b"\t" + line + b"\n"
            sent += 1
        done = subprocess.run(
            [
                "kcat",
                "-P",
                "-b",
                self.bootstrap,
                "-t",
                topic,
                "-K",
                "\t",
                "-X",
                "enable.idempotence=true",
            ],  # fmt: skip
            input=bytes(payload),
            capture_output=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr.decode()
        return sent

    # -- consuming -------------------------------------------------------------------------
    def reader(self, topic: str) -> TopicReader:
        return TopicReader(self.bootstrap, topic)

    def read_all(self, topic: str) -> list[Record]:
        reader = self.reader(topic)
        try:
            return reader.read_to_end()
        finally:
            reader.close()

    def count(self, topic: str) -> int:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "count"})
        try:
            parts = consumer.list_topics(topic, timeout=30).topics[topic].partitions
            total = 0
            for p in parts:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
                total += high - low
            return total
        finally:
            consumer.close()


class TopicReader:
    """Reads a topic from its beginning, incrementally: each call returns what is new."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"test-reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        parts = self.consumer.list_topics(topic, timeout=30).topics[topic].partitions
        self.partitions = sorted(parts)
        self.next_offset = dict.fromkeys(self.partitions, 0)
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self.partitions])
        self.records: list[Record] = []

    def high_watermarks(self) -> dict[int, int]:
        return {
            p: self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=30)[1]
            for p in self.partitions
        }

    def read_to_end(self, timeout: float = 60.0) -> list[Record]:
        """Every message up to the high watermarks as of this call (new ones only)."""
        target = self.high_watermarks()
        new: list[Record] = []
        deadline = time.monotonic() + timeout
        while any(self.next_offset[p] < target[p] for p in self.partitions):
            assert time.monotonic() < deadline, f"could not read {self.topic} to {target}"
            for msg in self.consumer.consume(10_000, 0.2):
                if msg.error() is not None:
                    continue
                record = Record(msg.key(), msg.value(), msg.partition(), msg.offset())
                self.next_offset[record.partition] = record.offset + 1
                new.append(record)
        self.records.extend(new)
        return new

    def close(self) -> None:
        self.consumer.close()


# ------------------------------------------------------------------------------------ worlds


@dataclass(frozen=True)
class World:
    """A simulated run on disk, with its lines split into valid and malformed."""

    dir: Path
    malformed_count: int  # as the simulator reports it
    duplicates_count: int  # as the simulator reports it

    @property
    def events(self) -> Path:
        return self.dir / "events.jsonl"

    def lines(self) -> list[bytes]:
        return list(iter_lines(self.events))

    def valid_lines(self) -> list[bytes]:
        return [line for line in self.lines() if not isinstance(parse_event(line), Rejection)]

    def malformed_lines(self) -> list[bytes]:
        return [line for line in self.lines() if isinstance(parse_event(line), Rejection)]

    def last_truth(self) -> pd.DataFrame:
        """The simulator's truth on the last day, indexed by (sku, location)."""
        truth = pd.read_parquet(self.dir / "truth.parquet")
        last = truth[truth["day"] == truth["day"].max()].copy()
        last["sku"] = last["sku"].astype(str)
        last["location"] = last["location"].astype(str)
        return last.set_index(["sku", "location"])


def make_world(directory: Path, *, seed: int, stores: int, skus: int, days: int) -> World:
    summary = simulate(directory, seed=seed, stores=stores, skus=skus, days=days, progress=False)
    return World(directory, summary.malformed, summary.duplicates)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """4 stores × 30 SKUs × 10 days (~1.5k lines, with duplicates and malformed lines)."""
    return make_world(tmp_path_factory.mktemp("small-world"), seed=11, stores=4, skus=30, days=10)


def resent_count(lines: Iterable[bytes]) -> int:
    """Valid lines whose event_id was already seen among earlier valid lines."""
    seen: set[str] = set()
    again = 0
    for line in lines:
        parsed = parse_event(line)
        if isinstance(parsed, Rejection):
            continue
        if parsed.event_id in seen:
            again += 1
        seen.add(parsed.event_id)
    return again


# ------------------------------------------------------------------------- reference and diff


def reference_replay(lines: Iterable[bytes]) -> Replay:
    replay = Replay()
    replay.feed(lines)
    return replay


def reference_snapshots(replay: Replay) -> dict[str, dict[str, Any]]:
    """What the stream emits last per key: the snapshot as of the key's own newest event."""
    out = {}
    for key, state in replay.states.items():
        snap = state.snapshot(state.last_event_ts)
        snap["duplicates"] = state.duplicates
        out[key] = snap
    return out


def no_op_sentinels(replay: Replay) -> list[bytes]:
    """Per key, a zero-unit sale at the key's newest event time: it changes no feature.

    It is a fresh event, so the stream emits the key's snapshot again, duplicates count
    included. Published after some other messages, its snapshot shows that everything before it
    in the key's partition has been consumed.
    """
    out = []
    for key, state in sorted(replay.states.items()):
        body = {
            "event_id": f"sentinel-{key}",
            "event_type": "sale",
            "occurred_at": format_ts(datetime.fromtimestamp(state.last_event_ts, UTC)),
            "sku": state.sku,
            "location": state.location,
            "quantity": 0,
            "source": "pos",
        }
        out.append(msgspec.json.encode(body))
    return out


def latest_by_key(records: Iterable[Record]) -> dict[str, dict[str, Any]]:
    """Newest JSON value per message key (records in partition order, as read)."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        assert record.key is not None, "feature snapshots must be keyed sku|location"
        latest[record.key.decode()] = record.json()
    return latest


def _same(a: Any, b: Any, rel: float, abs_: float) -> bool:
    a_missing = a is None or (isinstance(a, float) and math.isnan(a))
    b_missing = b is None or (isinstance(b, float) and math.isnan(b))
    if a_missing or b_missing:
        return a_missing and b_missing
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)
    return bool(a == b)


def snapshot_diff(
    actual: dict[str, dict[str, Any]],
    expected: dict[str, dict[str, Any]],
    columns: Iterable[str] | None = None,
    rel: float = 1e-9,
    abs_: float = 1e-9,
) -> list[str]:
    """Human-readable differences (missing/extra keys, per-column mismatches), at most 20."""
    problems: list[str] = []
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    if missing:
        problems.append(f"{len(missing)} keys missing, e.g. {missing[:5]}")
    if extra:
        problems.append(f"{len(extra)} unexpected keys, e.g. {extra[:5]}")
    for key in sorted(set(expected) & set(actual)):
        cols = columns if columns is not None else expected[key].keys()
        for col in cols:
            a, e = actual[key].get(col), expected[key].get(col)
            if not _same(a, e, rel, abs_):
                problems.append(f"{key} {col}: got {a!r}, expected {e!r}")
                if len(problems) >= 20:
                    return problems
    return problems


def truth_diff(positions: dict[str, dict[str, Any]], truth: pd.DataFrame) -> list[str]:
    """Positions per key against the simulator's ``recorded_*`` truth of the last day."""
    problems = []
    if len(positions) != len(truth):
        problems.append(f"{len(positions)} keys, truth has {len(truth)}")
    for (sku, location), row in truth.iterrows():
        got = positions.get(f"{sku}|{location}")
        if got is None:
            problems.append(f"{sku}|{location} missing")
            continue
        for col in POSITIONS:
            if got[col] != row[f"recorded_{col}"]:
                problems.append(f"{sku}|{location} {col}: {got[col]} != {row[f'recorded_{col}']}")
    return problems[:20]


# ---------------------------------------------------------------------------- subprocesses


def wait_until(
    condition: Callable[[], Any],
    timeout: float,
    interval: float = 0.5,
    what: str = "condition",
    explain: Callable[[], Any] | None = None,
) -> Any:
    """Poll ``condition`` until truthy and return its value; fail after ``timeout`` seconds
    with ``explain()`` (say, the remaining differences) in the message."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f": {explain()}" if explain is not None else ""
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


def wait_for_snapshots(
    reader: TopicReader, expected: dict[str, dict[str, Any]], timeout: float, what: str
) -> None:
    """Read ``reader`` until the newest snapshot per key equals ``expected``."""

    def matches() -> bool:
        reader.read_to_end()
        return not snapshot_diff(latest_by_key(reader.records), expected)

    wait_until(
        matches,
        timeout=timeout,
        what=what,
        explain=lambda: snapshot_diff(latest_by_key(reader.records), expected),
    )


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no final snapshot."""
        if self.alive:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Processes:
    """Starts subprocesses with their output in a log file; kills leftovers at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Proc] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.log_dir / f"{name}-{len(self.started)}.log"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with log.open("wb") as fh:
            popen = subprocess.Popen(  # noqa: S603
                argv, cwd=REPO, env=full_env, stdout=fh, stderr=subprocess.STDOUT
            )
        proc = Proc(name, popen, log)
        self.started.append(proc)
        return proc

    def shelfguard(self, name: str, *args: str, env: dict[str, str] | None = None) -> Proc:
        return self.start(name, [str(BIN / "shelfguard"), *args], env)

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.alive:
                proc.kill()

    def report(self) -> str:
        return "\n".join(
            f"--- {p.name} ({p.log}) rc={p.popen.poll()}\n{p.tail()}" for p in self.started
        )


@pytest.fixture
def processes(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(procs.report())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # noqa: ANN201
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``shelfguard ARGS`` to completion; fail with its output if it exits non-zero."""
    done = subprocess.run(  # noqa: S603
        [str(BIN / "shelfguard"), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, (
        f"shelfguard {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    )
    return done
