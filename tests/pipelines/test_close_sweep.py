"""Close sweeps: when the stream passes a close, the streaming flow sends every key again, as of
it, so a key that stops selling is scored on its silence — and that snapshot is exactly the
training set's snapshot of the same close (what occurred and arrived before it)."""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from pipelines import native_book
from pipelines.dataflow import (
    DAY_S,
    BookLogic,
    CloseClock,
    CloseMarker,
    feature_streams,
)
from pipelines.events import InventoryEvent, parse_event
from pipelines.replay import iter_lines
from pipelines.simulator import simulate
from training.dataset import snapshot_features


@pytest.fixture(scope="module")
def lines(tmp_path_factory) -> list[bytes]:
    out = tmp_path_factory.mktemp("sweep-world")
    simulate(out, seed=31, stores=3, skus=25, days=8, progress=False)
    return list(iter_lines(out / "events.jsonl"))


def run_updates(lines: list[bytes], close_s: float | None, batch: int = 37) -> list[Any]:
    out: list[Any] = []
    flow = Dataflow("sweep-test")
    streams = feature_streams(flow, TestingSource(lines, batch_size=batch), close_s=close_s)
    op.output("out", streams.outputs, TestingSink(out))
    op.output("dlq", streams.rejects, TestingSink([]))
    run_main(flow, epoch_interval=timedelta(0))
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


@pytest.mark.parametrize(("close_hours", "book"), [(0.0, "rust"), (-7.0, "rust"), (0.0, "python")])
def test_every_key_is_sent_at_each_close_as_the_training_set_sees_it(
    lines, close_hours, book, monkeypatch
):
    if book == "python":
        monkeypatch.setenv(native_book.ENV, "0")
    close_s = close_hours * 3600
    updates = run_updates(lines, close_s)
    swept: dict[tuple[str, float], dict] = {}
    for u in updates:  # a sweep's row is the first of its key as of that close
        if u.trigger is None and (u.as_of_ts - close_s) % DAY_S == 0:
            swept.setdefault((u.key, u.as_of_ts), u.snapshot)
    training = snapshot_features(lines, warmup_days=0, close_s=close_s)
    # every close but the stream's end (nothing arrived after it), every key seen before it
    training = training[training["as_of"] < training["as_of"].max()]
    columns = [c for c in training.columns if c not in ("sku", "location", "as_of")]
    expected = set()
    for row in training.itertuples(index=False):
        key, as_of = f"{row.sku}|{row.location}", row.as_of.timestamp()
        expected.add((key, as_of))
        snapshot = swept[(key, as_of)]
        for column in columns:
            assert _same(snapshot[column], getattr(row, column)), (key, as_of, column)
    assert set(swept) == expected and len(expected) > 500
    # the sweep adds rows no event gave: keys silent that day
    by_event = {(u.key, u.as_of_ts) for u in updates if u.trigger is not None}
    assert len(set(swept) - by_event) > 0.3 * len(swept)


def test_without_close_no_key_is_sent_without_an_event(lines):
    updates = run_updates(lines, None)
    assert updates and all(u.trigger is not None or u.snapshot for u in updates)
    sweep_like = [u for u in updates if u.trigger is None and u.as_of_ts % DAY_S == 0]
    assert not sweep_like
    with_sweep = run_updates(lines, 0.0)
    assert len(with_sweep) > len(updates)
    # the newest update per key ends in the same ledger position either way
    last = {u.key: u.snapshot["on_hand"] for u in updates}
    assert {u.key: u.snapshot["on_hand"] for u in with_sweep} == last


def _event(sku: str, location: str, when: datetime, n: int, kind: str = "sale") -> bytes:
    qty = 1 if kind == "sale" else 10
    return json.dumps(
        {
            "event_id": f"e{n}",
            "event_type": kind,
            "sku": sku,
            "location": location,
            "quantity": qty,
            "occurred_at": when.isoformat().replace("+00:00", "Z"),
            "source": "pos",
        }
    ).encode()


def test_the_clock_marks_every_known_sku_once_per_close_and_ignores_a_mistyped_year():
    day0 = datetime(2026, 3, 2, tzinfo=UTC)
    clock = CloseClock(0.0)

    def markers(raws: list[bytes]) -> list[tuple[str, float]]:
        return [(r, v.close_ts) for r, v in clock.parse(raws) if type(v) is CloseMarker]

    assert not markers(
        [_event("A", "S1", day0 + timedelta(hours=1), 1, "receipt"),
         _event("B", "S1", day0 + timedelta(hours=2), 2, "receipt")]
    )  # fmt: skip
    # a sale typed as 2062: parsed and passed on, but no close is passed
    assert not markers([_event("A", "S1", day0.replace(year=2062), 3)])
    midnight = (day0 + timedelta(days=1)).timestamp()
    got = markers(
        [_event("C", "S1", day0 + timedelta(days=1, hours=5), 4),
         _event("A", "S2", day0 + timedelta(days=1, hours=6), 5)]
    )  # fmt: skip
    assert sorted(got) == [("A", midnight), ("B", midnight)]  # C is new: nothing to send yet
    # two far-ahead arrivals that agree (the whole stream back after 40 days) move the clock
    later = day0 + timedelta(days=40, hours=9)
    assert not markers([_event("A", "S1", later, 6)])
    got = markers([_event("B", "S1", later + timedelta(hours=1), 7)])
    assert sorted(got) == [(s, (day0 + timedelta(days=40)).timestamp()) for s in ("A", "B", "C")]
    with pytest.raises(ValueError, match="less than a day"):
        CloseClock(DAY_S)


def _events(raws: list[bytes]) -> list[InventoryEvent]:
    events = [parse_event(r) for r in raws]
    assert all(isinstance(e, InventoryEvent) for e in events), events
    return events  # type: ignore[return-value]


def test_a_sweep_sends_every_key_after_what_arrived_before_it_and_never_goes_back():
    day0 = datetime(2026, 3, 2, tzinfo=UTC)
    midnight = (day0 + timedelta(days=1)).timestamp()
    logic = BookLogic(None, "updates")
    stock = _events(
        [
            _event("A", loc, day0 + timedelta(hours=1), n, "receipt")
            for n, loc in ((1, "S1"), (2, "S2"))
        ]
    )
    typo = _events([_event("A", "S1", day0.replace(year=2062), 3)])
    out, _ = logic.on_batch([*stock, *typo, CloseMarker(midnight)])
    sweep = {u.key: u for u in out if u.trigger is None}
    assert set(sweep) == {"A|S1", "A|S2"}
    assert sweep["A|S2"].as_of_ts == midnight and sweep["A|S2"].snapshot["on_hand"] == 10
    assert sweep["A|S2"].snapshot["hours_since_last_receipt"] == pytest.approx(23.0)
    assert sweep["A|S1"].as_of_ts == typo[0].occurred_ts  # never before its own newest event
    # the same close again (another worker's marker, a replay): nothing more
    assert logic.on_batch([CloseMarker(midnight)])[0] == []
    # a sale of day 0 reaches S2 after the sweep: sent as of the swept close, with it
    late, _ = logic.on_batch(_events([_event("A", "S2", day0 + timedelta(hours=15), 4)]))
    assert [(u.key, u.as_of_ts, u.snapshot["on_hand"]) for u in late] == [("A|S2", midnight, 9)]
    # recovered: the book resumes and the next close sweeps it
    resumed = BookLogic(logic.snapshot(), "updates")
    out, _ = resumed.on_batch([CloseMarker(midnight + DAY_S)])
    assert {u.key for u in out} == {"A|S1", "A|S2"}
    # the final-state mode ignores markers
    final = BookLogic(None, "final")
    assert final.on_batch([*stock, CloseMarker(midnight)])[0] == []


def test_the_scoring_flow_scores_keys_that_no_event_touched(lines):
    """Through the scoring flow (as live, in small batches): with sweeps every key is scored
    every day, as of the close, whether an event touched it or not; without, a silent key keeps
    the score of its last event."""
    from models.stream_scoring import ChampionWatcher, StreamScorer
    from serving.scoring_flow import build_scoring_flow

    per_day: dict[bool, dict[str, set[str]]] = {}
    for sweep in (True, False):
        scores: list[Any] = []
        flow = build_scoring_flow(
            TestingSource(lines, batch_size=50),
            TestingSink([]),
            TestingSink(scores),
            StreamScorer(ChampionWatcher(None, time.monotonic), 1.01).score,
            close_s=0.0 if sweep else None,
        )
        run_main(flow, epoch_interval=timedelta(0))
        per_day[sweep] = defaultdict(set)
        for key, message in scores:
            per_day[sweep][message["as_of"][:10]].add(key)
            assert message["occurred_at"] <= message["as_of"]
    days = sorted(per_day[False])[1:]  # after the opening day
    every_key = set().union(*per_day[False].values())
    assert days and all(per_day[True][d] == every_key for d in days)  # each day, every key
    silent = sum(len(every_key - per_day[False][d]) for d in days)
    assert silent > 0.4 * len(days) * len(every_key)  # without: most keys, most days, nothing


def test_after_a_restart_silent_skus_are_swept_at_the_first_close_passed(tmp_path):
    """The clock is not recovered, but the ledger states are: each tells the clock its sku and
    newest event, so a close passed while the flow was down sweeps skus with no event since."""
    from bytewax.recovery import RecoveryConfig, init_db_dir

    day0 = datetime(2026, 3, 2, tzinfo=UTC)
    before = [
        _event("A", "S1", day0 + timedelta(hours=1), 1, "receipt"),
        _event("A", "S2", day0 + timedelta(hours=2), 2, "receipt"),
        _event("B", "S1", day0 + timedelta(hours=3), 3, "receipt"),
    ]
    after = [_event("B", "S1", day0 + timedelta(days=1, hours=6), 4)]
    init_db_dir(tmp_path, 1)

    def run(lines: list[bytes]) -> list[Any]:
        out: list[Any] = []
        flow = Dataflow("sweep-restart")
        streams = feature_streams(flow, TestingSource(lines), close_s=0.0)
        op.output("out", streams.outputs, TestingSink(out))
        op.output("dlq", streams.rejects, TestingSink([]))
        run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(tmp_path)))
        return out

    assert {u.key for u in run(before)} == {"A|S1", "A|S2", "B|S1"}
    resumed = run(before + after)  # the source resumes after the first three
    midnight = (day0 + timedelta(days=1)).timestamp()
    swept = {u.key: u.as_of_ts for u in resumed if u.trigger is None}
    assert swept == {"A|S1": midnight, "A|S2": midnight, "B|S1": midnight}
    assert [u.key for u in resumed if u.trigger is not None] == ["B|S1"]
