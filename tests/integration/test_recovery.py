"""Kill ``shelfguard stream`` with SIGKILL mid-stream and restart it on the same recovery dir.

The restarted process must resume from the last committed snapshot (source offsets and keyed
state together): its latest snapshot per key equals the pure replay of the whole topic, positions
equal the simulator's truth (nothing double counted), every key's duplicate count is exact, and it
re-reads only the input after the committed offsets.
"""

from __future__ import annotations

import pickle
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from pipelines.events import Rejection, parse_event
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
    wait_for_snapshots,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

CHUNK = 2_000  # lines per publish while the stream runs (~8k lines/s with the pause below)
PAUSE_S = 0.2


def _query(recovery_dir: Path, sql: str, *args: object) -> list[tuple]:
    """Rows of ``sql`` over every recovery partition (bytewax shards its tables over them)."""
    rows: list[tuple] = []
    for db in sorted(recovery_dir.glob("part-*.sqlite3")):
        with sqlite3.connect(db) as con:
            rows += con.execute(sql, args).fetchall()
    return rows


def resume_epoch(recovery_dir: Path) -> int:
    """The epoch a restart resumes from, computed as bytewax 0.21 does (0: nothing recorded).

    Latest execution; per worker, the larger of its recorded frontier and the execution's own
    resume epoch; the smallest over workers. State comes from snapshots taken before it.
    """
    executions = _query(recovery_dir, "SELECT ex_num, worker_count, resume_epoch FROM exs")
    if not executions:
        return 0
    ex_num, workers, start = max(executions)
    fronts = _query(
        recovery_dir, "SELECT worker_index, worker_frontier FROM fronts WHERE ex_num = ?", ex_num
    )
    reached = {w: start for w in range(workers)}
    for worker, frontier in fronts:
        reached[worker] = max(reached[worker], frontier)
    return min(reached.values())


def resume_offsets(recovery_dir: Path, topic: str) -> dict[int, int]:
    """Per input partition of ``topic``, the offset a restart resumes reading at."""
    before = resume_epoch(recovery_dir)
    best: dict[int, tuple[int, int]] = {}
    rows = _query(
        recovery_dir,
        "SELECT state_key, snap_epoch, ser_change FROM snaps"
        " WHERE step_id LIKE ? AND snap_epoch < ?",
        "%.events",
        before,
    )
    for state_key, epoch, blob in rows:
        part, _, name = state_key.partition("-")
        if (
            name == topic
            and blob is not None
            and (int(part) not in best or epoch > best[int(part)][0])
        ):
            best[int(part)] = (epoch, pickle.loads(blob))  # noqa: S301 - bytewax's own DB
    return {part: max(offset, 0) for part, (_, offset) in best.items()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """8 stores × 100 SKUs × 30 days: ~26k lines."""
    return make_world(
        tmp_path_factory.mktemp("recovery-world"), seed=5, stores=8, skus=100, days=30
    )


def test_sigkill_and_restart_resumes_exactly(kafka, world, processes, tmp_path):
    started = time.monotonic()
    events, dlq, features = (
        kafka.new_topic("events"),
        kafka.new_topic("dlq", partitions=2),
        kafka.new_topic("features", partitions=4),
    )
    recovery = tmp_path / "recovery"
    argv = [
        "stream",
        "--bootstrap", kafka.bootstrap,
        "--topic", events,
        "--dlq-topic", dlq,
        "--features-topic", features,
        "--recovery-dir", str(recovery),
        "--snapshot-seconds", "1",
    ]  # fmt: skip
    lines = world.lines()
    assert 20_000 <= len(lines) <= 50_000
    reference = reference_replay(lines)
    sentinels = no_op_sentinels(reference)
    reference.feed(sentinels)
    expected = reference_snapshots(reference)
    out = kafka.reader(features)

    # First run: publish while it consumes, until it has committed a snapshot of processed input.
    run = processes.shelfguard("stream-1", *argv)
    sent = 0
    while sent < len(lines) // 2 or not sum(resume_offsets(recovery, events).values()):
        assert sent < len(lines), "no snapshot was committed while half the input was published"
        kafka.produce(events, lines[sent : sent + CHUNK])
        sent += CHUNK
        time.sleep(PAUSE_S)
        assert run.alive, run.tail()
    # Publish one more chunk, give the run time to process it, and SIGKILL it while the
    # chunk is not committed yet (checked in the recovery DB right before the kill): the restart
    # must replay it. Should a commit slip in between check and kill, restart and try again.
    for attempt in range(2, 5):
        while True:
            assert sent + CHUNK < len(lines), "could not catch the run between two commits"
            kafka.produce(events, lines[sent : sent + CHUNK])
            sent += CHUNK
            time.sleep(0.3)
            if sum(resume_offsets(recovery, events).values()) < sent:
                break
        run.kill()
        resume_at = resume_offsets(recovery, events)
        if sum(resume_at.values()) < sent:
            break
        run = processes.shelfguard(f"stream-{attempt}", *argv)
    else:
        pytest.fail("every kill landed after the last chunk was committed")
    print(
        f"killed after {sent} of {len(lines)} lines, attempt {attempt - 1}; "
        f"resuming at {sum(resume_at.values())}"
    )
    assert 0 < sum(resume_at.values()) < sent < len(lines)
    dead = kafka.reader(dlq)
    dead.read_to_end()  # what the killed run dead-lettered

    # The rest arrives while the stream is down; the restart must catch up and end exact.
    kafka.produce(events, lines[sent:])
    kafka.produce(events, sentinels)
    restarted_at = time.monotonic()
    second = processes.shelfguard("stream-restarted", *argv)

    wait_for_snapshots(out, expected, timeout=120, what="the restarted stream to catch up")
    caught_up_s = time.monotonic() - restarted_at
    assert second.alive, second.tail()

    final = latest_by_key(out.records)
    located = kafka.read_all(events)
    # The restart re-read only what followed the committed offsets: its dead letters are the
    # malformed messages at or after them, each exactly once.
    replayed = Counter(
        r.value.decode("utf-8", errors="replace")
        for r in located
        if r.offset >= resume_at.get(r.partition, 0) and isinstance(parse_event(r.value), Rejection)
    )
    before_kill = Counter(r.json()["raw"] for r in dead.records)
    after_restart = Counter(r.json()["raw"] for r in dead.read_to_end())
    diff = snapshot_diff(final, expected, rel=1e-12, abs_=1e-9)
    truth = truth_diff(final, world.last_truth())
    duplicates = sum(s["duplicates"] for s in final.values())
    report(
        "sigkill_dataflow",
        "SIGKILL `shelfguard stream --recovery-dir` mid-stream, restart on the same directory",
        {
            "lines published": len(lines),
            "lines published when killed / committed offset": f"{sent} / {sum(resume_at.values())}",
            "lines processed twice (replayed from the snapshot)": sent - sum(resume_at.values()),
            "keys: expected / got / differing": f"{len(expected)} / {len(final)} / {len(diff)}",
            "keys whose positions differ from the simulator's truth": len(truth),
            "duplicates counted: expected / got": f"{reference.duplicates} / {duplicates}",
            "malformed lines / re-dead-lettered by the restart / expected": " / ".join(
                map(str, (world.malformed_count, after_restart.total(), replayed.total()))
            ),
            "dead letters written twice (killed run + replay: at-least-once)": (
                before_kill & replayed
            ).total(),
            "restart to caught up s": round(caught_up_s, 1),
            "test wall time s": round(time.monotonic() - started, 1),
        },
    )
    # Positions AND features, tight tolerance; duplicates counted once per re-sent line.
    assert diff == [] and truth == []
    assert duplicates == reference.duplicates
    assert set(POSITIONS) <= set(next(iter(final.values())))
    print(
        f"re-dead-lettered {sum(replayed.values())} of {world.malformed_count} malformed, "
        f"{sum((before_kill & replayed).values())} of them already by the killed run"
    )
    assert after_restart == replayed
    assert 0 < sum(replayed.values()) < world.malformed_count
    out.close()
    dead.close()
