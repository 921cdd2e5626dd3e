"""The feature dataflow end to end with bytewax's testing source and sink (no Kafka)."""

from __future__ import annotations

import csv
import json
import pickle
from datetime import timedelta

import bytewax.operators as op
import pandas as pd
import pytest
from bytewax.operators import StatefulBatchLogic
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from pipelines.dataflow import FeatureUpdate, RecoveryFormatError, build_flow
from pipelines.events import Rejection
from pipelines.feature_job import run_features
from pipelines.features import KeyState
from pipelines.replay import Replay, feature_table, iter_lines, replay_file
from pipelines.simulator import simulate


def run_flow(lines, *, emit="final", workers=1, batch_size=10, recovery=None):
    """Run the flow over ``lines``; return (outputs, dead letters)."""
    out, dlq = [], []
    flow = build_flow(
        TestingSource(lines, batch_size=batch_size), TestingSink(dlq), TestingSink(out), emit=emit
    )
    if workers == 1:
        run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)
    else:
        cluster_main(
            flow,
            [],
            0,
            worker_count_per_proc=workers,
            epoch_interval=timedelta(0),
            recovery_config=recovery,
        )
    return out, dlq


def final_states(out) -> dict[str, KeyState]:
    states = [pickle.loads(blob) for blob in out]
    return {f"{s.sku}|{s.location}": s for s in states}


def table(states: dict[str, KeyState]) -> pd.DataFrame:
    as_of = max(s.last_event_ts for s in states.values())
    return feature_table(states.values(), as_of)


@pytest.fixture(scope="module")
def conformance_lines(conformance_dir):
    return list(iter_lines(conformance_dir / "events.jsonl"))


@pytest.fixture(scope="module")
def expected_positions(conformance_dir):
    with (conformance_dir / "expected.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    simulate(out, seed=3, stores=4, skus=30, days=10, progress=False)
    return out / "events.jsonl"


def test_conformance_positions_and_nine_dead_letters(conformance_lines, expected_positions):
    out, dlq = run_flow(conformance_lines)
    states = final_states(out)
    for row in expected_positions:
        pos = states[f"{row['sku']}|{row['location']}"].position
        for column in ("on_hand", "reserved", "damaged", "quarantined"):
            assert getattr(pos, column) == int(row[column]), (row, column)
    assert states["SKU-2|S1"].position.in_transit == 0  # settled by the transfer_in at S3
    assert states["SKU-3|S1"].position.anomalies == 1
    assert sum(s.duplicates for s in states.values()) == 1
    assert len(dlq) == 9
    assert all(isinstance(r, Rejection) for r in dlq)
    assert len({r.reason for r in dlq}) == 9


def test_conformance_updates_end_at_the_final_positions(conformance_lines, expected_positions):
    out, dlq = run_flow(conformance_lines, emit="updates", batch_size=1)
    assert all(isinstance(u, FeatureUpdate) for u in out)
    latest = {u.key: u.snapshot for u in out}
    for row in expected_positions:
        snap = latest[f"{row['sku']}|{row['location']}"]
        for column in ("on_hand", "reserved", "damaged", "quarantined"):
            assert snap[column] == int(row[column]), (row, column)
    assert len(dlq) == 9


def test_two_workers_give_the_same_states(conformance_lines):
    one, dlq_one = run_flow(conformance_lines)
    two, dlq_two = run_flow(conformance_lines, workers=2)
    pd.testing.assert_frame_equal(table(final_states(two)), table(final_states(one)))
    assert sorted(r.raw for r in dlq_two) == sorted(r.raw for r in dlq_one)


def _transfer(eid, etype, sku, location, hour, ref="T1", qty=4):
    return json.dumps(
        {
            "event_id": eid,
            "event_type": etype,
            "occurred_at": f"2026-03-02T{hour:02d}:00:00Z",
            "sku": sku,
            "location": location,
            "quantity": qty,
            "source": "wms",
            "reference": ref,
        }
    )


def test_settlement_never_overtakes_its_transfer_out_on_two_workers():
    """transfer_in arrives first, so the settlement races its own transfer_out to the key."""
    lines = []
    for i in range(50):
        sku = f"SKU-{i}"
        lines += [
            _transfer(f"c{i}", "cycle_count", sku, "S1", 0, ref="OPENING", qty=10),
            _transfer(f"in{i}", "transfer_in", sku, "S3", 9),
            _transfer(f"out{i}", "transfer_out", sku, "S1", 8),
        ]
    for batch_size in (1, 1000):
        out, _ = run_flow(lines, workers=2, batch_size=batch_size)
        states = final_states(out)
        assert sum(s.position.anomalies for s in states.values()) == 0
        assert all(states[f"SKU-{i}|S1"].position.in_transit == 0 for i in range(50))
        assert all(states[f"SKU-{i}|S1"].position.on_hand == 6 for i in range(50))


def test_a_sku_with_the_key_separator_keeps_its_own_ledger():
    """("A|B", "C") and ("A", "B|C") both concatenate to "A|B|C"; they must stay two keys, with
    their transfers matched per sku, in the flow (1 and 2 workers) and in the replay."""
    lines = [
        _transfer("c1", "cycle_count", "A|B", "C", 0, ref="OPEN-1", qty=10),
        _transfer("c2", "cycle_count", "A", "B|C", 0, ref="OPEN-2", qty=3),
        _transfer("s1", "sale", "A|B", "C", 1, qty=2),
        # the same reference text for both skus: "A|B" + "T|1" vs "A" + "B|T|1" and so on
        _transfer("o1", "transfer_out", "A|B", "C", 2, ref="T|1", qty=4),
        _transfer("o2", "transfer_out", "A", "B|C", 2, ref="B|T|1", qty=1),
        _transfer("i1", "transfer_in", "A|B", "D", 3, ref="T|1", qty=4),
    ]
    for workers in (1, 2):
        out, dlq = run_flow(lines, workers=workers, batch_size=2)
        assert dlq == []
        states = {(s.sku, s.location): s.position for s in map(pickle.loads, out)}
        assert set(states) == {("A|B", "C"), ("A", "B|C"), ("A|B", "D")}
        assert (states[("A|B", "C")].on_hand, states[("A|B", "C")].in_transit) == (4, 0)
        assert (states[("A", "B|C")].on_hand, states[("A", "B|C")].in_transit) == (2, 1)
        assert states[("A|B", "D")].on_hand == 4
    from pipelines.replay import Replay

    replay = Replay()
    replay.feed(lines)
    by_pair = {(s.sku, s.location): s.position for s in replay.states.values()}
    assert {k: (p.on_hand, p.in_transit) for k, p in by_pair.items()} == {
        k: (p.on_hand, p.in_transit) for k, p in states.items()
    }


def test_file_job_equals_replay_on_a_simulated_world(world, tmp_path):
    result = run_features(tmp_path / "one.parquet", events=world)
    got = pd.read_parquet(tmp_path / "one.parquet")
    reference = replay_file(world)
    pd.testing.assert_frame_equal(got, reference.feature_table(), check_exact=True)
    assert result.duplicates == reference.duplicates > 0
    assert result.rejected == len(reference.rejections) > 0

    run_features(tmp_path / "two.parquet", events=world, workers=2)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "two.parquet"), got, check_exact=True)


def test_resume_after_abort_equals_uninterrupted_run(world, tmp_path):
    """Abort mid-input, resume from the recovery partitions: same states as no interruption."""
    lines = list(iter_lines(world))
    half = len(lines) // 2
    init_db_dir(tmp_path, 2)
    recovery = RecoveryConfig(str(tmp_path))
    out, dlq = [], []
    source = TestingSource([*lines[:half], TestingSource.ABORT(), *lines[half:]], batch_size=50)
    flow = build_flow(source, TestingSink(dlq), TestingSink(out), emit="final")
    run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)
    assert out == []  # aborted before the end of input
    run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)
    resumed = table(final_states(out))
    pd.testing.assert_frame_equal(resumed, replay_file(world).feature_table(), check_exact=True)


class _PerLocationLedger(StatefulBatchLogic):
    """The ledger step of the earlier layout: one state per sku|location, snapshots
    ``(KeyState state, held settlements)``."""

    def __init__(self, resume):
        self.state = None

    def on_batch(self, values):
        if self.state is None:
            self.state = KeyState(values[0].sku, values[0].location)
        for event in values:
            self.state.apply(event)
        return [], self.RETAIN

    def snapshot(self):
        return (self.state.__getstate__(), ())


def test_a_recovery_store_of_the_per_location_layout_is_refused(world, tmp_path):
    """Its states are keyed sku|location; events now route by sku, so resuming would silently
    start every ledger from zero while the input continues where it stopped."""
    from bytewax.dataflow import Dataflow

    from pipelines.events import parse_event

    lines = list(iter_lines(world))[:200]
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(str(tmp_path))
    old = Dataflow("shelfguard_features")
    raw = op.input("events", old, TestingSource([*lines, TestingSource.ABORT()], batch_size=50))
    parsed = op.map("parse", raw, parse_event)
    events = op.filter("valid", parsed, lambda e: type(e) is not Rejection)
    keyed = op.key_on("key", events, lambda e: f"{e.sku}|{e.location}")
    op.output("out", op.stateful_batch("ledger", keyed, _PerLocationLedger), TestingSink([]))
    run_main(old, epoch_interval=timedelta(0), recovery_config=recovery)

    flow = build_flow(TestingSource(lines), TestingSink([]), TestingSink([]), emit="final")
    with pytest.raises(RecoveryFormatError, match="earlier layout"):
        run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)


def test_book_snapshots_round_trip_through_pickle(world):
    """A sku's recovery snapshot restores every location and every open transfer."""
    from pipelines.features import Book

    reference = replay_file(world)
    restored = Book.from_state(pickle.loads(pickle.dumps(reference.book.__getstate__())))
    pd.testing.assert_frame_equal(
        feature_table(restored.states.values(), reference.as_of),
        reference.feature_table(),
        check_exact=True,
    )
    assert {k: s.position.__getstate__() for k, s in restored.states.items()} == {
        k: s.position.__getstate__() for k, s in reference.states.items()
    }
    assert {k: m.__getstate__() for k, m in restored.matchers.items()} == {
        k: m.__getstate__() for k, m in reference.matchers.items()
    }
    assert len(restored.matchers) > 0
    with pytest.raises(ValueError, match="book-v2"):
        Book.from_state((KeyState("A", "S1").__getstate__(), ()))


@pytest.mark.parametrize("workers", [1, 2])
def test_file_job_reads_the_lines_the_replay_reads(tmp_path, workers):
    """Bytes the replay takes line by line: a raw CR inside an event (JSON whitespace), a line
    that is not UTF-8, lines of Unicode whitespace. The flow read the file as text: it split
    the first event in two, stopped on the second and silently skipped the last two."""
    event = {
        "event_id": "e1",
        "event_type": "receipt",
        "occurred_at": "2026-03-01T10:00:00Z",
        "sku": "A",
        "location": "S1",
        "quantity": 5,
        "source": "erp",
    }
    events = tmp_path / "events.jsonl"
    events.write_bytes(
        json.dumps(event).replace(', "sku"', ',\r"sku"').encode()
        + b"\n"
        + b'{"event_id": "\xff"}\r\n'
        + "\u00a0\n\x1c\n".encode()
    )
    result = run_features(
        tmp_path / "out.parquet", events=events, dlq=tmp_path / "dlq.jsonl", workers=workers
    )
    reference = replay_file(events)
    got = pd.read_parquet(tmp_path / "out.parquet")
    pd.testing.assert_frame_equal(got, reference.feature_table(), check_exact=True)
    assert got["on_hand"].tolist() == [5]
    dead = [json.loads(line) for line in (tmp_path / "dlq.jsonl").read_text().splitlines()]
    assert sorted(d["raw"] for d in dead) == sorted(r.raw for r in reference.rejections)
    assert result.rejected == len(reference.rejections) == 3


def test_flow_and_replay_agree_when_a_transfer_reuses_an_id_its_key_applied():
    """Ids are unique per business transaction by contract; when a source breaks that, the
    replay and the stream must still agree (the stream's matcher sees every transfer)."""
    from pipelines.replay import Replay

    def line(eid, etype, loc, q, hour, ref=None):
        body = {
            "event_id": eid,
            "event_type": etype,
            "occurred_at": f"2026-03-01T{hour:02d}:00:00Z",
            "sku": "A",
            "location": loc,
            "quantity": q,
            "source": "wms",
        }
        if ref is not None:
            body["reference"] = ref
        return json.dumps(body)

    lines = [
        line("X", "receipt", "DC", 10, 1),
        line("X", "transfer_out", "DC", 4, 2, ref="R1"),  # the ledger saw id X: not applied
        line("in-1", "transfer_in", "S1", 4, 5, ref="R1"),
    ]
    replay = Replay()
    replay.feed(lines)
    for workers in (1, 2):
        out, dlq = run_flow(lines, workers=workers)
        assert dlq == []
        got = table(final_states(out))
        pd.testing.assert_frame_equal(got, replay.feature_table(), check_exact=True)
    dc = replay.states["A|DC"].position
    assert (dc.on_hand, dc.in_transit) == (10, -4)  # settled against a transfer_out never applied


@pytest.mark.parametrize("workers", [1, 2])
def test_an_over_receipt_settles_on_arrival_in_flow_and_replay(workers):
    """More received than shipped under one reference drives in-transit below zero at once (a
    ``ledger_anomalies``), before the source's next transfer refills it. The per-location flow
    applied the settlement after the source key's batch and counted none (fuzz finding)."""
    lines = [
        _transfer("in-1", "transfer_in", "A", "S1", 1, ref="R1", qty=6),
        _transfer("rc", "receipt", "A", "DC", 2, ref="PO", qty=20),
        _transfer("out-1", "transfer_out", "A", "DC", 3, ref="R1", qty=4),
        _transfer("out-2", "transfer_out", "A", "DC", 4, ref="R2", qty=5),
    ]
    replay = Replay()
    replay.feed(lines)
    dc = replay.states["A|DC"].position
    assert (dc.in_transit, dc.anomalies) == (3, 1)
    for batch_size in (1, 100):
        out, _ = run_flow(lines, workers=workers, batch_size=batch_size)
        got = table(final_states(out))
        pd.testing.assert_frame_equal(got, replay.feature_table(), check_exact=True)


def _at(eid, etype, location, day, ref, qty=4):
    return json.dumps(
        {
            "event_id": eid,
            "event_type": etype,
            "occurred_at": (
                pd.Timestamp("2026-01-01T08:00:00Z") + pd.Timedelta(days=day)
            ).isoformat(),
            "sku": "A",
            "location": location,
            "quantity": qty,
            "source": "wms",
            "reference": ref,
        }
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_transfer_references_are_forgotten_after_the_horizon(workers):
    """A long-running stream must not keep every transfer it ever saw. A reference is
    forgotten once its sku's transfers moved TRANSFER_HORIZON_S past its last event; a side
    arriving within the horizon still settles. Flow and replay forget alike."""
    from pipelines.features import TRANSFER_HORIZON_S

    horizon_days = TRANSFER_HORIZON_S / 86_400
    timed = [(0, _at("rc", "receipt", "DC", 0, "PO", qty=100))]
    timed += [(0, _at("out-slow", "transfer_out", "DC", 0, "SLOW"))]  # received just in time
    timed += [(0, _at("out-lost", "transfer_out", "DC", 0, "LOST"))]  # received too late
    timed += [(d, _at(f"out-{d}", "transfer_out", "DC", d, f"R{d}")) for d in range(1, 200, 3)]
    timed += [
        (d + 2, _at(f"in-{d}", "transfer_in", "S1", d + 2, f"R{d}")) for d in range(1, 200, 3)
    ]
    timed += [(horizon_days - 1, _at("in-slow", "transfer_in", "S1", horizon_days - 1, "SLOW"))]
    timed += [(250, _at("in-lost", "transfer_in", "S1", 250, "LOST"))]
    lines = [line for _, line in sorted(timed, key=lambda t: t[0])]
    replay = Replay()
    replay.feed(lines)
    dc = replay.states["A|DC"].position
    assert dc.in_transit == 4  # only LOST's units: SLOW settled, every R… settled
    refs = set(replay.book.transfers["A"])
    assert "LOST" in refs  # the late transfer_in opened a reference of its own: settles nothing
    assert "SLOW" not in refs and "R1" not in refs  # forgotten
    assert len(refs) <= horizon_days / 3 + 3  # bounded by the horizon, not by history
    out, _ = run_flow(lines, workers=workers, batch_size=7)
    got = table(final_states(out))
    pd.testing.assert_frame_equal(got, replay.feature_table(), check_exact=True)
