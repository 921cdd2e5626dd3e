from datetime import UTC, datetime

import pandas as pd
import pytest

from tests.training.conftest import TINY_TRAIN
from training.dataset import (
    MAX_IDLE_SNAPSHOT_DAYS,
    attach_labels,
    build_world_dataset,
    snapshot_features,
)
from training.drift import recent_window
from training.worlds import simulate_world


def line(eid, etype, q, occurred, published, sku="A", loc="S1"):
    return (
        f'{{"event_id":"{eid}","event_type":"{etype}","occurred_at":"{occurred}",'
        f'"sku":"{sku}","location":"{loc}","quantity":{q},"source":"pos",'
        f'"published_at":"{published}"}}'
    )


def test_snapshot_uses_only_events_that_arrived_by_its_time():
    lines = [
        line("c", "cycle_count", 10, "2026-03-01T00:00:00Z", "2026-03-01T00:00:01Z"),
        line("s1", "sale", 1, "2026-03-01T10:00:00Z", "2026-03-01T10:15:00Z"),
        # occurred on day 1 but arrived on day 2: must not be in the day-1 close snapshot
        line("late", "sale", 4, "2026-03-01T20:00:00Z", "2026-03-02T03:00:00Z"),
        line("s2", "sale", 1, "2026-03-02T10:00:00Z", "2026-03-02T10:15:00Z"),
        line("s3", "sale", 1, "2026-03-03T10:00:00Z", "2026-03-03T10:15:00Z"),
    ]
    snaps = snapshot_features(lines, warmup_days=0)
    by_day = snaps.set_index(snaps["as_of"].dt.strftime("%Y-%m-%d"))
    assert by_day.loc["2026-03-02", "on_hand"] == 9  # close of day 1: the late sale not yet here
    assert by_day.loc["2026-03-02", "sales_1d"] == pytest.approx(1.0)
    assert by_day.loc["2026-03-03", "on_hand"] == 4  # it arrived during day 2
    assert (snaps["as_of"] == snaps["as_of"].dt.normalize()).all()  # snapshots at midnight


def test_a_chain_on_another_clock_is_snapshot_at_its_own_close():
    """A chain on UTC−7 trades 15:00–03:30 UTC: its business day of 1 March closes at
    07:00 UTC on 2 March, and that snapshot must hold the whole day and nothing after."""
    lines = [
        line("c", "cycle_count", 10, "2026-03-01T07:00:00Z", "2026-03-01T07:00:01Z"),
        line("s1", "sale", 1, "2026-03-01T16:00:00Z", "2026-03-01T16:05:00Z"),
        line("s2", "sale", 2, "2026-03-02T02:00:00Z", "2026-03-02T02:05:00Z"),  # still 1 March
        line("s3", "sale", 3, "2026-03-02T16:00:00Z", "2026-03-02T16:05:00Z"),
    ]
    snaps = snapshot_features(lines, warmup_days=0, close_s=7 * 3600)
    assert (snaps["as_of"].dt.hour == 7).all()
    closes = snaps.set_index(snaps["as_of"].dt.strftime("%Y-%m-%d"))
    assert closes.loc["2026-03-02", "on_hand"] == 7  # both sales of the business day, not s3
    assert closes.loc["2026-03-03", "on_hand"] == 4
    truth = pd.DataFrame(
        {
            "day": pd.to_datetime(["2026-03-01", "2026-03-02"]),
            "sku": ["A", "A"],
            "location": ["S1", "S1"],
            "phantom": [False, True],
            "true_on_hand": [7, 0],
        }
    )
    labelled = attach_labels(snaps, truth, close_s=7 * 3600).set_index("day")
    assert labelled.loc[datetime(2026, 3, 1, tzinfo=UTC).date(), "true_on_hand"] == 7
    assert labelled.loc[datetime(2026, 3, 2, tzinfo=UTC).date(), "phantom"] == 1
    with pytest.raises(ValueError, match="close_s"):
        snapshot_features(lines, close_s=86_400)


def test_labels_join_the_day_closed_by_the_snapshot_and_look_ahead_72h():
    snaps = pd.DataFrame(
        {
            "as_of": pd.to_datetime(["2026-03-02", "2026-03-03"], utc=True),
            "sku": ["A", "A"],
            "location": ["S1", "S1"],
            "on_hand": [3, 3],
        }
    )
    truth = pd.DataFrame(
        {
            "day": pd.to_datetime(
                ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"]
            ),
            "sku": ["A"] * 5,
            "location": ["S1"] * 5,
            "phantom": [False, True, False, False, False],
            "true_on_hand": [5, 0, 4, 4, 0],
        }
    )
    labelled = attach_labels(snaps, truth).set_index("day")
    first = labelled.loc[datetime(2026, 3, 1, tzinfo=UTC).date()]
    second = labelled.loc[datetime(2026, 3, 2, tzinfo=UTC).date()]
    assert first["phantom"] == 0 and second["phantom"] == 1
    assert first["stockout_72h"] == 1  # empty on day 2, within d..d+3
    assert second["stockout_72h"] == 1  # already empty counts
    # the snapshot closing day 1 must not see day 2's truth as its own phantom label
    assert first["true_on_hand"] == 5


def test_world_dataset_has_labels_and_features(tiny_worlds):
    data = build_world_dataset(simulate_world(TINY_TRAIN[0], tiny_worlds))
    assert {"phantom", "stockout_72h", "on_hand", "zero_sales_probability"} <= set(data.columns)
    assert data["phantom"].sum() > 0
    assert not data["location"].str.startswith("DC").any()
    # phantom rows have a recorded on-hand in the truth, so the snapshot usually shows stock
    assert (data.loc[data["phantom"] == 1, "on_hand"] >= 1).mean() > 0.8


def _unpublished(eid, etype, q, occurred, sku="A"):
    return line(eid, etype, q, occurred, occurred, sku).replace(f',"published_at":"{occurred}"', "")


@pytest.mark.parametrize("typo", ["9999-12-31T00:00:00Z", "2062-03-02T10:00:00Z"])
def test_a_far_future_arrival_skips_the_empty_days_instead_of_snapshotting_each(typo):
    lines = [_unpublished("c", "cycle_count", 10, "2026-03-01T00:00:00Z")]
    lines += [_unpublished(f"s{d}", "sale", 1, f"2026-03-{d:02d}T10:00:00Z") for d in range(1, 8)]
    lines += [_unpublished("typo", "sale", 1, typo, sku="B")]  # no published_at: arrival = typo
    lines += [_unpublished("s8", "sale", 1, "2026-03-08T10:00:00Z")]
    snaps = snapshot_features(lines, warmup_days=0)
    days = snaps["as_of"].drop_duplicates()
    # 7 days of the stream, at most MAX_IDLE_SNAPSHOT_DAYS empty ones, the day before the typo,
    # the closing snapshot — not one per day of the gap (hundreds of years)
    assert len(days) <= 7 + MAX_IDLE_SNAPSHOT_DAYS + 2
    assert snaps.loc[snaps["sku"] == "A", "on_hand"].iloc[-1] == 2  # nothing lost: 10 - 8 sales


def test_the_drift_window_ends_at_the_stream_end_not_at_a_mistyped_date(tmp_path):
    lines = [
        _unpublished(f"c{k}", "cycle_count", 50, "2026-03-01T00:00:00Z", sku=f"K{k}")
        for k in range(25)
    ]
    lines += [
        _unpublished(f"s{k}-{d}", "sale", 1, f"2026-03-{d:02d}T1{k % 10}:00:00Z", sku=f"K{k}")
        for d in range(1, 21)
        for k in range(25)
    ]
    lines.insert(30, _unpublished("typo", "sale", 1, "2062-03-05T10:00:00Z", sku="K3"))
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n")
    window = recent_window(events, days=7)
    days = sorted(window["as_of"].drop_duplicates())
    assert days[-1] == pd.Timestamp("2026-03-21", tz="UTC")  # the close of the last real day
    assert len(days) == 7
