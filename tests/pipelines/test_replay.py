import json
import math
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.events import EventType, InventoryEvent, Source
from pipelines.features import Book, KeyState, feature_columns
from pipelines.replay import Replay, as_of_timestamp, empty_feature_table, feature_table


def _event(eid, occurred_at, sku="SKU-1", location="S1", **fields):
    return json.dumps(
        {
            "event_id": eid,
            "event_type": "receipt",
            "occurred_at": occurred_at,
            "sku": sku,
            "location": location,
            "quantity": 5,
            "source": "erp",
            **fields,
        }
    )


@pytest.mark.parametrize(
    "times",
    [
        ["2026-03-01T10:00:00Z", "9999-12-30T00:00:00Z"],  # a far-future event among normal ones
        ["2026-03-01T10:00:00Z", "2262-04-12T00:00:00Z"],  # just past pandas' last nanosecond
        ["0001-01-02T00:00:00Z"],  # a stream that ends in year 1
    ],
)
def test_feature_table_as_of_beyond_pandas_nanosecond_years(times):
    """The contract allows years 1-9999; pandas' nanosecond Timestamps stop at 1677-2262.
    A stream whose newest event lies beyond them gave OutOfBoundsDatetime (``score`` and
    ``features`` crashed) instead of a table."""
    replay = Replay()
    replay.feed([_event(f"e{i}", t, sku=f"SKU-{i}") for i, t in enumerate(times)])
    table = replay.feature_table()
    assert len(table) == len(times)
    assert (table["as_of"] == pd.Timestamp(times[-1])).all()


def test_feature_table_as_of_keeps_nanosecond_resolution_in_range():
    replay = Replay()
    replay.feed([_event("e1", "2026-03-01T10:00:00.5Z")])
    table = replay.feature_table()
    assert table["as_of"].dtype == "datetime64[ns, UTC]"
    assert table["as_of"][0] == pd.Timestamp("2026-03-01T10:00:00.5Z")


def test_a_sku_spelling_an_escaped_key_keeps_its_own_ledger():
    """("\\x1f[\\"A", 'B", "C"]') and ("A|B", "C") shared one routing key, so one ledger
    (on hand 5 + 5 under whichever pair came first) and one feature row instead of two."""
    replay = Replay()
    replay.feed([_event("e1", "2026-03-01T10:00:00Z", sku="A|B", location="C")])
    replay.feed([_event("e2", "2026-03-01T10:00:00Z", sku='\x1f["A', location='B", "C"]')])
    table = replay.feature_table()
    assert sorted(zip(table["sku"], table["location"], table["on_hand"], strict=True)) == [
        ('\x1f["A', 'B", "C"]', 5),
        ("A|B", "C", 5),
    ]


def test_a_stream_without_keys_gives_every_column_and_no_rows(tmp_path):
    """An empty or all-rejected stream still writes the feature table's columns (typed)."""
    from pipelines.feature_job import run_features
    from pipelines.features import FEATURE_NAMES

    events = tmp_path / "events.jsonl"
    events.write_text('not json\n{"event_id": "e1"}\n\n')
    out = tmp_path / "features.parquet"
    result = run_features(out, events=events, dlq=tmp_path / "dlq.jsonl")
    assert (result.keys, result.rejected) == (0, 2)
    table = pd.read_parquet(out)
    assert list(table.columns) == ["sku", "location", "as_of", *FEATURE_NAMES]
    assert len(table) == 0
    assert str(table["as_of"].dtype) == "datetime64[ns, UTC]"
    assert str(table["on_hand"].dtype) == "int64" and str(table["sales_7d"].dtype) == "float64"
    replayed = Replay()
    replayed.feed(events.read_text().splitlines())
    assert list(replayed.feature_table().columns) == list(table.columns)


def test_the_empty_table_has_the_columns_and_types_of_a_full_one(conformance_dir):
    from pipelines.replay import empty_feature_table, replay_file

    full = replay_file(conformance_dir / "events.jsonl").feature_table()
    assert len(full) > 0
    pd.testing.assert_series_equal(full.dtypes, empty_feature_table().dtypes)


# -- the feature table is the snapshots, column by column ----------------------------------------
T0 = datetime(2026, 3, 1, tzinfo=UTC)
# case, accents (composed and not), digits as text, the key separator, a lone surrogate
_NAMES = ["A", "a", "B", "é", "e\u0301", "10", "9", "Z|1", "ß", "\ud800", "SKU-000001"]
_PRICES = [None, 2.5, 0.0, -0.0, 1 / 3, 1e300, -7.25, math.inf, -math.inf, math.nan]


def _dict_per_key_table(states, as_of, sort=True):
    """The feature table as it was built before the columns: a dict per key, then pandas."""
    rows = [s.snapshot(as_of) for s in states]
    if not rows:
        return empty_feature_table()
    frame = pd.DataFrame(rows)
    frame.insert(2, "as_of", as_of_timestamp(as_of))
    if sort:
        frame = frame.sort_values(["sku", "location"], ignore_index=True)
    return frame


def _assert_same_table(got, expected):
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert got.to_csv(index=False) == expected.to_csv(index=False)  # -0.0, inf, nan as written


@st.composite
def books(draw):
    """Books of many keys: every event type, duplicates, transfers, late and far-apart events
    (pruned windows), counters past one byte, prices NaN/inf/-0.0, sku/location spellings
    that order differently by case, accent or digit."""
    book = Book()
    n = draw(st.integers(1, 60))
    for _ in range(n):
        etype = draw(st.sampled_from(list(EventType)))
        quantity = draw(st.sampled_from([0, 1, 3, 200, 70_000, 1_000_000_000]))
        if etype is EventType.ADJUSTMENT and draw(st.booleans()):
            quantity = -quantity
        event = InventoryEvent(
            event_id=f"e{draw(st.integers(0, n))}",  # repeats: duplicates
            event_type=etype,
            occurred_at=T0 + timedelta(hours=draw(st.integers(-24 * 40, 24 * 40))),
            sku=draw(st.sampled_from(_NAMES)),
            location=draw(st.sampled_from(_NAMES[:4])),
            quantity=quantity,
            source=Source.ERP,
            reference=draw(st.sampled_from(["T1", "T2"])) if "transfer" in etype.value else None,
            reason=draw(st.sampled_from([None, "damaged", "quarantine", "found"])),
            unit_price=draw(st.sampled_from(_PRICES)),
        )
        book.apply(event)
    return book


@settings(max_examples=150, deadline=None)
@given(books(), st.sampled_from([0.0, -3e5, 0.5, 40 * 86_400.0, 1e11]), st.booleans())
def test_feature_table_is_the_snapshots_as_pandas_made_them(book, offset, sort):
    """Same columns, dtypes, order and bits as a DataFrame of the snapshot dicts, whatever the
    states and ``as_of`` (before every event, at the newest, weeks after, past year 2262)."""
    as_of = max(s.last_event_ts for s in book.states.values()) + offset
    states = list(book.states.values())
    assert feature_columns(states, as_of) is not None
    _assert_same_table(feature_table(states, as_of, sort), _dict_per_key_table(states, as_of, sort))


def test_feature_table_of_no_key_is_the_empty_table():
    as_of = T0.timestamp()
    for states in ([], iter(())):
        _assert_same_table(feature_table(states, as_of), empty_feature_table())
    assert feature_columns([], as_of) is not None


def test_feature_table_unsorted_keeps_the_order_of_a_generator():
    states = [KeyState(sku, "S1") for sku in ("b", "a", "c")]
    table = feature_table((s for s in states), T0.timestamp(), sort=False)
    assert list(table["sku"]) == ["b", "a", "c"]


@pytest.mark.parametrize("on_hand", [2**63 - 1, 2**63, 2**64, -(2**63) - 1])
def test_feature_table_of_an_int_beyond_int64_is_typed_as_pandas_types_it(on_hand):
    """Values a column of 8-byte ints cannot hold: the table is built from the snapshot dicts
    (uint64 or object, as pandas infers), not truncated."""
    states = [KeyState("A", "S1"), KeyState("B", "S1")]
    states[1].position.on_hand = on_hand
    as_of = T0.timestamp()
    fits = -(2**63) <= on_hand < 2**63
    assert (feature_columns(states, as_of) is not None) == fits
    _assert_same_table(feature_table(states, as_of), _dict_per_key_table(states, as_of))


@pytest.mark.parametrize("prices", [(5, 7), (5, 2.5), (5, None)])
def test_feature_table_of_a_float_feature_holding_ints_is_typed_as_pandas_types_it(prices):
    """An event built in code (not parsed) may carry an int price: all-int is an int64 column
    in a frame of the snapshot dicts, and so it stays."""
    book = Book()
    for i, price in enumerate(prices):
        book.apply(
            InventoryEvent(
                event_id=f"e{i}",
                event_type=EventType.SALE,
                occurred_at=T0,
                sku=f"SKU-{i}",
                location="S1",
                quantity=1,
                source=Source.POS,
                unit_price=price,
            )
        )
    states, as_of = list(book.states.values()), T0.timestamp()
    _assert_same_table(feature_table(states, as_of), _dict_per_key_table(states, as_of))
