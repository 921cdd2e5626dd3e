import csv
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.events import EventType, InventoryEvent, Source, parse_event
from pipelines.features import Book
from pipelines.keys import state_key
from pipelines.ledger import (
    TRANSITIONS,
    Bucket,
    Outcome,
    Position,
    deltas_for,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def ev(eid, etype, q, hours, *, loc="S1", sku="SKU-1", reason=None, ref=None):
    return InventoryEvent(
        event_id=eid,
        event_type=EventType(etype),
        occurred_at=T0 + timedelta(hours=hours),
        sku=sku,
        location=loc,
        quantity=q,
        source=Source.ERP,
        reason=reason,
        reference=ref,
    )


def position(book: Book, sku: str, location: str) -> Position:
    """The ledger position of (sku, location) in ``book``; KeyError if no event reached it."""
    return book.states[state_key(sku, location)].position


def test_conformance_positions(conformance_dir):
    book = Book()
    duplicates = 0
    for line in (conformance_dir / "events.jsonl").read_text().splitlines():
        parsed = parse_event(line)
        if isinstance(parsed, InventoryEvent):
            duplicates += book.apply(parsed) is Outcome.DUPLICATE
    with (conformance_dir / "expected.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows
    for row in rows:
        pos = position(book, row["sku"], row["location"])
        for column in ("on_hand", "reserved", "damaged", "quarantined"):
            assert getattr(pos, column) == int(row[column]), (row, column)
    assert duplicates == 1
    negative = position(book, "SKU-3", "S1")
    assert negative.anomalies == 1 and negative.available_to_promise() == 0


@pytest.mark.parametrize(
    ("etype", "q", "reason", "expected"),
    [
        ("sale", 2, None, {Bucket.ON_HAND: -2}),
        ("return", 1, None, {Bucket.ON_HAND: 1}),
        ("return", 1, "inspection_pass", {Bucket.ON_HAND: 1}),
        ("return", 1, "pending_inspection", {Bucket.RETURNED_PENDING: 1}),
        ("receipt", 5, None, {Bucket.ON_HAND: 5}),
        ("transfer_out", 3, None, {Bucket.ON_HAND: -3, Bucket.IN_TRANSIT: 3}),
        ("transfer_in", 3, None, {Bucket.ON_HAND: 3}),
        ("adjustment", -2, "theft", {Bucket.ON_HAND: -2}),
        ("adjustment", 2, "found", {Bucket.ON_HAND: 2}),
        ("adjustment", -1, "damaged", {Bucket.ON_HAND: -1, Bucket.DAMAGED: 1}),
        ("adjustment", 1, "damaged", {Bucket.ON_HAND: -1, Bucket.DAMAGED: 1}),
        ("adjustment", -2, "quarantine", {Bucket.ON_HAND: -2, Bucket.QUARANTINED: 2}),
        ("adjustment", 1, "release_quarantine", {Bucket.QUARANTINED: -1, Bucket.ON_HAND: 1}),
        ("adjustment", 1, "inspection_pass", {Bucket.RETURNED_PENDING: -1, Bucket.ON_HAND: 1}),
        ("adjustment", 1, "inspection_fail", {Bucket.RETURNED_PENDING: -1, Bucket.DAMAGED: 1}),
        ("reservation", 2, None, {Bucket.RESERVED: 2}),
        ("reservation_release", 2, None, {Bucket.RESERVED: -2}),
        ("fulfillment", 2, None, {Bucket.ON_HAND: -2, Bucket.RESERVED: -2}),
        ("pick_short", 1, None, {}),
    ],
)
def test_transition_table(etype, q, reason, expected):
    assert deltas_for(ev("x", etype, q, 1, reason=reason)) == expected


def test_every_event_type_has_a_row():
    assert set(TRANSITIONS) == set(EventType)


def test_same_event_id_twice_changes_nothing():
    pos = Position()
    assert pos.apply(ev("a", "receipt", 5, 1)) is Outcome.APPLIED
    before = pos.buckets()
    assert pos.apply(ev("a", "receipt", 5, 1)) is Outcome.DUPLICATE
    assert pos.buckets() == before == {**before, "on_hand": 5}


def test_negative_move_is_applied_and_flagged():
    pos = Position()
    pos.apply(ev("c", "cycle_count", 1, 0))
    pos.apply(ev("s", "sale", 3, 1))
    assert pos.on_hand == -2 and pos.anomalies == 1
    assert pos.available_to_promise() == 0


def test_count_as_of_its_time_ignores_earlier_late_events():
    pos = Position()
    pos.apply(ev("open", "cycle_count", 10, 0))
    pos.apply(ev("s1", "sale", 1, 5))
    pos.apply(ev("count", "cycle_count", 4, 10))  # book was 9: variance -5
    assert pos.on_hand == 4 and pos.last_count_variance == -5
    pos.apply(ev("late", "sale", 2, 8))  # occurred before the count: count saw it
    assert pos.on_hand == 4
    pos.apply(ev("after", "sale", 1, 12))
    assert pos.on_hand == 3


def test_count_arriving_after_later_events_keeps_them():
    pos = Position()
    pos.apply(ev("open", "cycle_count", 10, 0))
    pos.apply(ev("s-after", "sale", 2, 20))  # occurs after the count below, arrives before it
    pos.apply(ev("count", "cycle_count", 6, 10))
    assert pos.on_hand == 4
    assert pos.last_count_variance == -4  # book at t=10 was 10


def test_stale_count_is_not_applied():
    pos = Position()
    pos.apply(ev("c2", "cycle_count", 5, 10))
    assert pos.apply(ev("c1", "cycle_count", 99, 5)) is Outcome.STALE_COUNT
    assert pos.on_hand == 5


def test_opening_count_records_no_variance():
    pos = Position()
    pos.apply(ev("open", "cycle_count", 7, 0))
    assert pos.last_count_variance is None and pos.counts_with_variance == 0


def test_transfer_settles_in_transit_in_either_order():
    for order in ((0, 1), (1, 0)):
        book = Book()
        events = [
            ev("out", "transfer_out", 3, 1, loc="DC", ref="T9"),
            ev("in", "transfer_in", 3, 30, loc="S1", ref="T9"),
        ]
        for i in order:
            book.apply(events[i])
        assert position(book, "SKU-1", "DC").in_transit == 0
        assert position(book, "SKU-1", "DC").on_hand == -3
        assert position(book, "SKU-1", "S1").on_hand == 3
        book.apply(events[1])  # a duplicate confirmation settles nothing more
        assert position(book, "SKU-1", "DC").in_transit == 0


def test_unmatched_transfer_stays_in_transit():
    book = Book()
    book.apply(ev("out", "transfer_out", 3, 1, loc="DC", ref="T1"))
    assert position(book, "SKU-1", "DC").in_transit == 3


# --- property-based: positions are a function of the set of events -------------------------

_TYPES = [t for t in EventType if t is not EventType.CYCLE_COUNT]
_REASONS = [None, "damaged", "quarantine", "release_quarantine", "theft", "found"]


@st.composite
def event_sets(draw):
    n = draw(st.integers(1, 25))
    # distinct event times (minutes), so "at or before the count" is unambiguous
    minutes = draw(st.lists(st.integers(0, 7 * 24 * 60), min_size=n, max_size=n, unique=True))
    events = []
    for i, minute in enumerate(minutes):
        is_count = draw(st.booleans()) and draw(st.booleans())
        etype = EventType.CYCLE_COUNT if is_count else draw(st.sampled_from(_TYPES))
        q = draw(st.integers(-5, 5) if etype is EventType.ADJUSTMENT else st.integers(0, 9))
        reason = draw(st.sampled_from(_REASONS)) if etype is EventType.ADJUSTMENT else None
        ref = None
        loc = draw(st.sampled_from(["S1", "S2"]))
        if "transfer" in etype.value:
            # a transfer reference has one source and one destination (the contract's meaning)
            ref = draw(st.sampled_from(["T1", "T2"]))
            source, dest = ("S1", "S2") if ref == "T1" else ("S2", "S1")
            loc = source if etype is EventType.TRANSFER_OUT else dest
        events.append(ev(f"e{i}", etype.value, q, minute / 60, loc=loc, reason=reason, ref=ref))
    return events


def _final(events):
    book = Book()
    for e in events:
        book.apply(e)
    return {(s.sku, s.location): s.position.buckets() for s in book.states.values()}


@settings(max_examples=150, deadline=None)
@given(event_sets(), st.randoms(use_true_random=False), st.data())
def test_positions_independent_of_arrival_order_and_duplicates(events, rnd, data):
    reference = _final(events)
    shuffled = list(events)
    rnd.shuffle(shuffled)
    dups = data.draw(st.lists(st.sampled_from(events), max_size=10))
    for dup in dups:
        shuffled.insert(rnd.randrange(len(shuffled) + 1), dup)
    got = _final(shuffled)
    # keys that only exist through settlements have all-zero buckets in one order and are
    # absent in another; compare the non-empty ones
    nonzero = lambda d: {k: v for k, v in d.items() if any(v.values())}  # noqa: E731
    assert nonzero(got) == nonzero(reference)


@settings(max_examples=200, deadline=None)
@given(event_sets())
def test_atp_is_never_negative(events):
    book = Book()
    for e in events:
        book.apply(e)
        for state in book.states.values():
            assert state.position.available_to_promise() >= 0


# --- dedupe memory: compact generations must stay exact ---------------------------------------

_AWKWARD_IDS = ["a", "ab", "b", "a\x00b", "\x00", "b\x00", "", "é-1", "a" * 300]


def _remembered(pos, event_id):
    return pos.apply(ev(event_id, "reservation", 1, 0)) is Outcome.DUPLICATE


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(_AWKWARD_IDS) | st.text(max_size=6), max_size=40),
    st.lists(st.sampled_from(_AWKWARD_IDS) | st.text(max_size=6), max_size=20),
)
def test_dedupe_is_exact_for_any_ids(stored, probes):
    # prefixes, separators inside ids, empty and long ids, and generations that outgrow a blob
    pos = Position()
    for eid in stored:
        pos.apply(ev(eid, "reservation", 1, 0))
    assert pos.reserved == len(set(stored))
    for eid in probes:
        assert pos.has_seen(eid) == (eid in stored)


def test_dedupe_generation_grows_from_blob_to_set_and_rotates():
    pos = Position()
    ids = [f"id-{i:05d}" for i in range(300)]  # well past the blob limit
    for i, eid in enumerate(ids):
        pos.apply(ev(eid, "sale", 1, i * 0.01))
    assert all(_remembered(pos, eid) for eid in ids)
    pos.apply(ev("next-week", "sale", 1, 8 * 24))  # rotates: the ids become the old generation
    assert _remembered(pos, ids[0]) and _remembered(pos, "next-week")
    pos.apply(ev("week-after", "sale", 1, 16 * 24))  # rotates again: the first ids are forgotten
    assert not pos.has_seen(ids[0]) and pos.has_seen("next-week")
