"""Point-in-time training sets: replay events through the stream's feature code, snapshot daily.

Contract (no leakage): the snapshot at time T is taken *before* applying the first event that
arrived after T, so it uses only events that occurred AND arrived by T. Arrival is the event's
``published_at`` when present, else its ``occurred_at`` (file order is arrival order either way).
Snapshots are taken at each day's close, for every key seen so far: UTC midnight by default, or
``close_s`` seconds after it for a chain whose business day closes at another instant (+7 h: a
chain on UTC−7 closes at 07:00 UTC, and a snapshot then still sees that whole business day).

Labels come from the simulator's truth (end of day ``d``, event time; with ``close_s`` the day
``d`` is the business day that closes at the snapshot):
- ``phantom``: recorded on-hand >= 1 while the true shelf quantity is 0 on day ``d``;
- ``stockout_72h``: the true shelf quantity is 0 at the end of day ``d``, ``d+1``, ``d+2`` or
  ``d+3`` (already empty counts); NaN where the truth does not reach ``d+3``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.events import InventoryEvent, parse_event, state_key
from pipelines.ledger import DAY_S
from pipelines.replay import Replay, feature_table, iter_lines

#: After this many consecutive daily snapshots with no event arriving, the clock jumps to the
#: day of the next arrival instead of snapshotting every empty day in between: a timestamp years
#: off (a mistyped year) would otherwise mean a snapshot of every key for every day of the gap.
MAX_IDLE_SNAPSHOT_DAYS = 28


def snapshot_features(
    payloads: Iterable[bytes | str],
    *,
    warmup_days: int = 3,
    keys: set[str] | None = None,
    replay: Replay | None = None,
    close_s: float = 0.0,
) -> pd.DataFrame:
    """Daily point-in-time feature rows (see module docstring) for an arrival-ordered stream.

    ``replay`` (a fresh one if not given) receives every event; pass one to read its end state.
    Snapshots are at ``close_s`` seconds after each UTC midnight (``|close_s| < 1 day``); the
    first ``warmup_days`` closes after the first event's business day are skipped. Stretches of
    more than :data:`MAX_IDLE_SNAPSHOT_DAYS` days with no arrival are skipped.
    """
    if not -DAY_S < close_s < DAY_S:
        raise ValueError(f"close_s must lie within one day of UTC midnight, got {close_s} s")
    replay = Replay() if replay is None else replay
    frames: list[pd.DataFrame] = []
    first_day: int | None = None
    next_cut: float | None = None
    for raw in payloads:
        event = parse_event(raw)
        if not isinstance(event, InventoryEvent):
            continue
        arrival = (event.published_at or event.occurred_at).timestamp()
        if next_cut is None:
            first_day = int((event.occurred_ts - close_s) // DAY_S)
            next_cut = (first_day + 1) * DAY_S + close_s
        idle = 0
        while arrival > next_cut:
            assert first_day is not None
            if idle == MAX_IDLE_SNAPSHOT_DAYS:  # skip to the last close before the arrival
                last = (math.ceil((arrival - close_s) / DAY_S) - 1) * DAY_S + close_s
                next_cut = max(next_cut, last)
            if (next_cut - close_s) / DAY_S - first_day > warmup_days:
                frames.append(_take(replay, next_cut, keys))
            next_cut += DAY_S
            idle += 1
        replay.apply(event)
    if next_cut is not None:
        frames.append(_take(replay, next_cut, keys))
    if not frames:
        return pd.DataFrame()
    if len({frame["as_of"].dtype for frame in frames}) > 1:
        # a snapshot beyond pandas' nanosecond years (2262) is in microseconds: one unit for all
        frames = [frame.astype({"as_of": "datetime64[us, UTC]"}) for frame in frames]
    return pd.concat(frames, ignore_index=True)


def _take(replay: Replay, as_of: float, keys: set[str] | None) -> pd.DataFrame:
    states = (
        replay.states.values()
        if keys is None
        else (s for k, s in replay.states.items() if k in keys)
    )
    return feature_table(states, as_of, sort=False)


def attach_labels(
    snapshots: pd.DataFrame, truth: pd.DataFrame, close_s: float = 0.0
) -> pd.DataFrame:
    """Join truth labels: snapshot at the close of day ``d`` ↔ truth row of day ``d``.

    The close of day ``d`` is midnight ending ``d`` (UTC) plus ``close_s`` seconds, as in
    :func:`snapshot_features`."""
    truth = truth.copy()
    truth["day"] = pd.to_datetime(truth["day"]).dt.date
    truth = truth.sort_values(["sku", "location", "day"])
    empty = (truth["true_on_hand"] <= 0).astype(float)
    grouped = empty.groupby([truth["sku"], truth["location"]], observed=True)
    ahead = pd.concat(
        [grouped.shift(-k) for k in range(0, 4)], axis=1
    )  # day d .. d+3; NaN past the end
    truth["stockout_72h"] = np.where(ahead.isna().any(axis=1), np.nan, ahead.max(axis=1))
    day = (snapshots["as_of"] - pd.Timedelta(seconds=close_s + 1)).dt.date
    merged = snapshots.assign(day=day).merge(
        truth[["day", "sku", "location", "phantom", "stockout_72h", "true_on_hand"]],
        on=["day", "sku", "location"],
        how="inner",
    )
    merged["phantom"] = merged["phantom"].astype(int)
    return merged


def build_world_dataset(
    world_dir: Path, *, warmup_days: int = 3, close_s: float = 0.0
) -> pd.DataFrame:
    """Labelled snapshots of one simulated world (``events.jsonl`` + ``truth.parquet``), taken
    at each day's close (``close_s``: see :func:`snapshot_features`)."""
    truth = pd.read_parquet(world_dir / "truth.parquet")
    stores = truth[~truth["location"].astype(str).str.startswith("DC")]
    store_keys = {
        state_key(sku, location)
        for sku, location in zip(
            stores["sku"].astype(str), stores["location"].astype(str), strict=True
        )
    }
    snaps = snapshot_features(
        iter_lines(world_dir / "events.jsonl"),
        warmup_days=warmup_days,
        keys=store_keys,
        close_s=close_s,
    )
    data = attach_labels(snaps, truth, close_s)
    data.insert(0, "world", world_dir.name)
    return data


def day_index(frame: pd.DataFrame) -> np.ndarray:
    """Days since each world's first snapshot (for time-based splits)."""
    first = frame.groupby("world")["as_of"].transform("min")
    return ((frame["as_of"] - first) / pd.Timedelta(days=1)).to_numpy().astype(int)


__all__ = ["attach_labels", "build_world_dataset", "day_index", "snapshot_features"]
