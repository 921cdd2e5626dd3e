import json

import pandas as pd
import pytest

from pipelines.replay import Replay


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
