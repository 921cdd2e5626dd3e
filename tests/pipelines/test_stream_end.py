"""The stream's end (the time ``features`` and ``score`` compute every key at) is not moved by a
mistyped future date, and nothing else about an ordinary stream's end changes."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from pipelines.feature_job import run_features
from pipelines.ledger import DAY_S
from pipelines.replay import FUTURE_OUTLIER_GAP_S, FUTURE_OUTLIER_MIN_KEYS, Replay, stream_end

T0 = 1_772_409_600.0  # 2026-03-02T00:00:00Z


def _sale(eid: str, day: float, sku: str, when: str | None = None) -> str:
    occurred = when or pd.Timestamp(T0 + day * DAY_S, unit="s", tz="UTC").isoformat()
    return json.dumps(
        {
            "event_id": eid,
            "event_type": "sale",
            "occurred_at": occurred.replace("+00:00", "Z"),
            "sku": sku,
            "location": "S1",
            "quantity": 1,
            "source": "pos",
        }
    )


def _stream(keys: int, days: int) -> list[str]:
    """A count then a sale a day for every key (sku K000.. at S1)."""
    lines = []
    for k in range(keys):
        sku = f"K{k:03d}"
        start = pd.Timestamp(T0, unit="s", tz="UTC").isoformat().replace("+00:00", "Z")
        lines.append(
            json.dumps(
                {
                    "event_id": f"c-{sku}",
                    "event_type": "cycle_count",
                    "occurred_at": start,
                    "sku": sku,
                    "location": "S1",
                    "quantity": 50,
                    "source": "store_ops",
                }
            )
        )
        lines += [_sale(f"s-{sku}-{d}", d + 0.5 + k / 1000, sku) for d in range(days)]
    return lines


def test_the_end_is_the_newest_time_when_keys_end_together() -> None:
    times = [T0 + i * 60.0 for i in range(100)]
    assert stream_end(times) == max(times)


def test_a_key_dated_years_ahead_is_set_aside() -> None:
    times = [T0 + i * 60.0 for i in range(100)] + [T0 + 36 * 365 * DAY_S]
    assert stream_end(times) == T0 + 99 * 60.0


def test_two_mistyped_keys_close_to_each_other_are_both_set_aside() -> None:
    times = [T0 + i * 60.0 for i in range(2000)]  # 2000 keys: up to 2 may be set aside
    times += [T0 + 365 * DAY_S, T0 + 367 * DAY_S]
    assert stream_end(times) == T0 + 1999 * 60.0


def test_more_outliers_than_the_share_allows_are_the_stream_itself() -> None:
    times = [T0 + i * 60.0 for i in range(100)] + [T0 + 365 * DAY_S] * 2  # 2 of 102 > 0.1 %
    assert stream_end(times) == T0 + 365 * DAY_S


def test_a_gap_within_the_tolerance_is_an_ordinary_end() -> None:
    times = [T0 + i * 60.0 for i in range(100)] + [T0 + FUTURE_OUTLIER_GAP_S - DAY_S]
    assert stream_end(times) == max(times)


def test_a_small_stream_keeps_its_newest_time() -> None:
    times = [T0, T0 + 1.0] + [T0 + 365 * DAY_S]
    assert len(times) < FUTURE_OUTLIER_MIN_KEYS
    assert stream_end(times) == max(times)


def test_no_keys_or_no_finite_times_give_nan() -> None:
    assert math.isnan(stream_end([]))
    assert math.isnan(stream_end([-math.inf]))


def _replayed(lines: list[str]) -> Replay:
    replay = Replay()
    replay.feed(lines)
    return replay


def test_score_features_of_other_keys_ignore_a_far_future_event() -> None:
    lines = _stream(keys=30, days=10)
    typo = _sale("typo", 0, "K007", when="2062-03-05T12:00:00Z")  # 2026 typed as 2062
    clean = _replayed(lines).feature_table()
    dirty = _replayed([*lines[:40], typo, *lines[40:]]).feature_table()
    assert (dirty["as_of"] == clean["as_of"]).all()
    others = dirty["sku"] != "K007"
    pd.testing.assert_frame_equal(dirty[others], clean[others])
    # the mistyped key's own ledger still took the event (it is a valid one)
    k7 = dirty.set_index("sku").loc["K007"]
    assert k7["on_hand"] == clean.set_index("sku").loc["K007", "on_hand"] - 1


@pytest.mark.parametrize("typo_at", ["2062-03-05T12:00:00Z", "9999-12-31T23:59:59Z"])
def test_features_command_ignores_a_far_future_event(tmp_path, typo_at: str) -> None:
    lines = _stream(keys=30, days=5)
    clean_in, dirty_in = tmp_path / "clean.jsonl", tmp_path / "dirty.jsonl"
    clean_in.write_text("\n".join(lines) + "\n")
    dirty_in.write_text("\n".join([*lines, _sale("typo", 0, "K003", when=typo_at)]) + "\n")
    run_features(tmp_path / "clean.parquet", events=clean_in)
    run_features(tmp_path / "dirty.parquet", events=dirty_in)
    clean = pd.read_parquet(tmp_path / "clean.parquet")
    dirty = pd.read_parquet(tmp_path / "dirty.parquet")
    assert (dirty["as_of"] == clean["as_of"]).all()
    others = dirty["sku"] != "K003"
    pd.testing.assert_frame_equal(
        dirty[others].reset_index(drop=True), clean[others].reset_index(drop=True)
    )
