"""The raw-history experiment's features (``training.history_experiment``): point-in-time by
arrival and by event time, and a few values worked out by hand on tiny event streams."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from training.history_experiment import MidnightClock, feature_groups, history_frame

DAY0 = datetime(2026, 3, 2, tzinfo=UTC)  # a midnight
_ids = iter(range(10**6))


def _event(
    event_type: str,
    at: timedelta,
    quantity: int = 1,
    *,
    arrives: timedelta | None = None,
    location: str = "S001",
    **extra: str,
) -> str:
    """One JSONL line; ``at``/``arrives`` are offsets from DAY0 (arrival defaults to event time)."""
    occurred = DAY0 + at
    published = occurred if arrives is None else DAY0 + arrives
    return json.dumps(
        {
            "event_id": f"e{next(_ids)}",
            "event_type": event_type,
            "occurred_at": occurred.isoformat().replace("+00:00", "Z"),
            "published_at": published.isoformat().replace("+00:00", "Z"),
            "sku": "A",
            "location": location,
            "quantity": quantity,
            "source": "store_ops",
            **extra,
        }
    )


def h(days: float, hours: float = 0.0) -> timedelta:
    return timedelta(days=days, hours=hours)


BASE = [
    _event("cycle_count", h(0, 0.1), 10, reference="OPENING"),
    _event("sale", h(0, 9), 2),
    _event("sale", h(1, 10), 1),
    _event("transfer_in", h(1, 6), 5, reference="T1"),  # arrives after the day-1 sale
    _event("cycle_count", h(1, 21), 9, reference="C1"),  # record 10 - 2 - 1 + 5 = 12: var -3
    _event("sale", h(2, 15), 3),
]


def _row(lines: list[str], as_of_day: int, location: str = "S001") -> pd.Series:
    frame = history_frame(lines)
    stamp = pd.Timestamp(DAY0 + timedelta(days=as_of_day))
    hit = frame[(frame["as_of"] == stamp) & (frame["location"] == location)]
    assert len(hit) == 1, frame[["as_of", "location"]]
    return hit.iloc[0]


def test_values_worked_out_by_hand():
    row = _row(BASE, 3)  # the midnight closing day 2
    assert row["h_sold_units_d0"] == 3 and row["h_sold_units_d1"] == 1
    assert row["h_sold_units_d2"] == 2 and row["h_sold_units_d3"] == 0
    assert row["h_sale_events_d0"] == 1
    assert row["h_hours_since_sale"] == pytest.approx(9.0)
    assert row["h_count_variance_1"] == -3 and row["h_counts"] == 1
    assert math.isnan(row["h_count_variance_2"])
    assert row["h_last_counted_qty"] == 9
    assert row["h_record_after_last_sale"] == 6  # 9 counted, then 3 sold
    assert row["h_sold_units_since_count"] == 3 and row["h_receipt_moves_since_count"] == 0
    assert row["h_sold_units_since_receipt"] == 4  # the day-1 sale (10:00) and the day-2 one
    # sales at day0 09:00, day1 10:00, day2 15:00: gaps 25 h and 29 h; silence 9 h
    assert row["h_gap_max_life"] == pytest.approx(29.0)
    assert row["h_gap_median_28d"] == pytest.approx(27.0)
    assert row["h_silence_over_max_gap_28d"] == pytest.approx(9.0 / 29.0)
    assert row["h_hour_of_last_sale"] == pytest.approx(15.0)


def test_an_event_arriving_after_the_midnight_does_not_reach_its_snapshot():
    late = _event("sale", h(2, 16), 4, arrives=h(3, 1))  # occurred day 2, arrives day 3
    row = _row([*BASE, late], 3)
    assert row["h_sold_units_d0"] == 3
    assert row["h_hours_since_sale"] == pytest.approx(9.0)
    assert row["h_record_after_last_sale"] == 6
    after = _row([*BASE, late, _event("sale", h(3, 9))], 4)  # ... but the next one's
    assert after["h_sold_units_d1"] == 7
    assert after["h_late_arrivals_24h"] == 1


def test_an_event_arriving_before_but_occurring_after_the_midnight_is_ignored():
    early = _event("pick_short", h(3, 2), arrives=h(2, 23))  # arrives before it occurs
    row = _row([*BASE, early, _event("sale", h(3, 9))], 3)
    assert math.isnan(row["h_hours_since_pick_short"])
    assert row["h_pick_short_d0"] == 0


def test_duplicates_and_rejects_are_not_logged():
    dup = BASE[1]
    row = _row([*BASE[:2], dup, "not json", *BASE[2:]], 3)
    assert row["h_sold_units_d2"] == 2 and row["h_sale_events_d2"] == 1


def test_reservations_are_matched_by_reference():
    lines = [
        *BASE,
        _event("reservation", h(2, 10), reference="O-1"),
        _event("reservation", h(2, 11), 2, reference="O-2"),
        _event("pick_short", h(2, 12), reference="O-1"),
        _event("reservation_release", h(2, 12.1), reference="O-1"),
        _event("sale", h(3, 9)),
    ]
    row = _row(lines, 3)
    assert row["h_open_reservations"] == 1 and row["h_open_reserved_units"] == 2
    assert row["h_hours_oldest_open_reservation"] == pytest.approx(13.0)
    assert row["h_week_reservations_short"] == 1 and row["h_last_pick_outcome_short"] == 1


def test_dc_keys_are_not_logged():
    frame = history_frame([*BASE, _event("receipt", h(1, 5), 50, location="DC01")])
    assert set(frame["location"]) == {"S001"}


def test_the_clock_snapshots_at_each_midnight_an_arrival_passes():
    clock = MidnightClock()
    day = 86_400.0
    assert clock.passed(10.0, 10.0) == []
    assert clock.passed(day, day) == []  # arrived exactly at the midnight: in its snapshot
    assert clock.passed(2 * day + 1, day) == [day, 2 * day]


def test_the_groups_partition_the_history_columns():
    frame = history_frame(BASE)
    groups = feature_groups()
    names = [c for cols in groups.values() for c in cols]
    assert len(names) == len(set(names))
    assert names == [c for c in frame.columns if c not in ("as_of", "sku", "location")]
