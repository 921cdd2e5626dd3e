"""Experiment: does a key's raw event history carry more than its snapshot features?

The headroom check (``training.headroom``) shows a model fitted inside the held-out worlds ranks
no better than the packaged one, and the cross-location experiment shows other keys add nothing.
What was left: per-key information in the raw event history that the snapshot columns
(:class:`pipelines.features.KeyState` + :mod:`models.derived`) summarise away. This builds a
deliberately rich set of per-key history features straight from the events and measures whether
adding them to the model matrix moves the ranking.

Point-in-time rule (the training-set builder's, :mod:`training.dataset`): the history row of a
key at the UTC midnight ``T`` is taken before applying the first event that arrived after ``T``
(arrival = ``published_at``, else ``occurred_at``; file order is arrival order), and it also
ignores every event that occurred after ``T``. Duplicates (same ``event_id``, per the ledger)
and rejected lines are not logged. One pass per world (:func:`history_frame`) keeps a
:class:`KeyLog` per store key and a :class:`~pipelines.features.Book` (for the record right
after each event and each count's variance), and snapshots every logged key at each midnight.

Protocol (same rows, folds and LightGBM parameters as ``training.xloc_experiment``, which uses
``training.headroom``'s: 2 folds grouped by (world, sku), 300 rounds, ``LGB_PARAMS``,
num_threads=1): in-world out-of-fold on the held-out worlds, baseline matrix vs baseline + the
history columns, for ``--repeats`` fold salts (salt 0 = the headroom check's folds); optionally
(``--cross``) train on the training worlds, score the held-out worlds (ranking metrics only).

``python -m training.history_experiment --worlds-root data/worlds [--repeats 3] [--cross]``
writes ``training/history_results/history_experiment.json`` (``--out``). Labelled snapshot
frames and history frames are cached as parquet under ``--cache`` (default
``data/history_cache``).

Measured (held-out worlds, 148,400 snapshot rows, 138 history columns; results and logs in
``training/history_results/``). In-world out-of-fold, mean ± sd over fold salts 0-2:

==========================  ==============  ==============
                            base            base + history
==========================  ==============  ==============
phantom AP                  0.532 ± 0.005   0.549 ± 0.004
phantom P@2%                0.674 ± 0.004   0.677 ± 0.005
phantom ROC AUC             0.922 ± 0.002   0.924 ± 0.004
stockout ROC AUC            0.820 ± 0.003   0.822 ± 0.004
stockout AP                 0.532 ± 0.004   0.537 ± 0.005
==========================  ==============  ==============

Paired by salt, phantom AP gains +0.014 to +0.018 every time; P@2% and both AUCs move within
the salt noise. Trained on the training worlds, scored on the held-out ones (one fit each):
phantom AP 0.564 → 0.594, P@2% 0.696 → 0.718, AUC 0.932 → 0.938; stockout AUC 0.831 → 0.836,
AP 0.548 → 0.560. Most of it is one column, ``h_sold_since_receipt_over_receipt`` (units sold
since the latest receipt / that receipt's units: the sell-through of the last delivery), 29 %
(phantom) and 32 % (stockout) of the cross model's gain, the other 137 columns ≤ 1.3 % each.
Alone on top of the base matrix (``--only``): in-world salt 0 phantom AP 0.544 (base 0.527, all
history 0.545), P@2% 0.678; cross phantom AP 0.582, P@2% 0.709, stockout AUC 0.834 — all the
in-world gain and ~60 % of the (single-fit) cross gain. Group by group (``--ablation``, 2
salts): only ``ledger`` (which holds it) lifts phantom AP (+0.013; P@2% −0.01); ``gaps``,
``timing`` and ``daily`` alone lower it (−0.006 to −0.015), though the in-world model gives the
time of day of the last sale and fulfillment and the last sale's arrival lag 8 % of its gain:
fitted noise. The targets (P@2% 0.95, stockout AUC 0.85) stay far away.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from models.derived import with_derived
from models.spec import PHANTOM, STOCKOUT, ModelSpec
from pipelines.events import EventType, InventoryEvent, parse_event
from pipelines.features import Book
from pipelines.ledger import DAY_S, RETURN_TO_SHELF_REASONS, Outcome
from pipelines.replay import as_of_timestamp, iter_lines
from training.dataset import MAX_IDLE_SNAPSHOT_DAYS
from training.fit import labelled
from training.headroom import write_result
from training.worlds import HOLDOUT_WORLDS, TRAIN_WORLDS, WorldConfig, simulate_world
from training.xloc_experiment import (
    _fit,
    _m,
    experiment_parser,
    folds_of,
    load_cached,
    oof,
    report,
    top_gain,
)

HOUR_S = 3600.0
DAILY_DAYS = 14  # daily sales vectors: days 0..13 before as_of
SHORT_DAILY_DAYS = 7  # daily pick_short / fulfillment / reservation vectors
GAP_WINDOW_DAYS = 28
KEY = ["world", "as_of", "sku", "location"]

#: Event codes of the log: event types, returns split by where they go, adjustments by reason.
ADJ_REASONS = (
    "theft",
    "found",
    "damaged",
    "quarantine",
    "release_quarantine",
    "inspection_pass",
    "inspection_fail",
)
CODES: tuple[str, ...] = (
    "sale",
    "fulfillment",
    "return",
    "return_pending",
    "receipt",
    "transfer_in",
    "transfer_out",
    "reservation",
    "reservation_release",
    "pick_short",
    "count",
    *(f"adj_{r}" for r in ADJ_REASONS),
    "adj_other",
)
_CODE = {name: i for i, name in enumerate(CODES)}
SALE, FULFILL, PICK_SHORT, COUNT = (
    _CODE["sale"],
    _CODE["fulfillment"],
    _CODE["pick_short"],
    _CODE["count"],
)
RESERVE, RELEASE = _CODE["reservation"], _CODE["reservation_release"]
RECEIPTS = (_CODE["receipt"], _CODE["transfer_in"])
RETURNS = (_CODE["return"], _CODE["return_pending"])


def event_code(event: InventoryEvent) -> int:
    """The log code of ``event`` (an index into :data:`CODES`)."""
    etype = event.event_type
    if etype is EventType.ADJUSTMENT:
        reason = event.reason if event.reason in ADJ_REASONS else "other"
        return _CODE[f"adj_{reason}"]
    if etype is EventType.RETURN and event.reason not in RETURN_TO_SHELF_REASONS:
        return _CODE["return_pending"]
    if etype is EventType.CYCLE_COUNT:
        return COUNT
    return _CODE[etype.value]


# --------------------------------------------------------------------------- the event log


class KeyLog:
    """Every logged event of one key, in arrival order, as parallel lists.

    Per event: event time (POSIX s), arrival time, code, quantity, the recorded on-hand right
    after the ledger applied it (arrival order), the count variance (counted − record; NaN
    unless a non-opening, non-stale count) and the reference.
    """

    __slots__ = ("sku", "location", "ts", "arrival", "code", "qty", "after", "variance", "ref")

    def __init__(self, sku: str, location: str) -> None:
        self.sku, self.location = sku, location
        self.ts: list[float] = []
        self.arrival: list[float] = []
        self.code: list[int] = []
        self.qty: list[int] = []
        self.after: list[int] = []
        self.variance: list[float] = []
        self.ref: list[str | None] = []

    def add(
        self, event: InventoryEvent, arrival: float, after: int, variance: float = math.nan
    ) -> None:
        self.ts.append(event.occurred_ts)
        self.arrival.append(arrival)
        self.code.append(event_code(event))
        self.qty.append(event.quantity)
        self.after.append(after)
        self.variance.append(variance)
        self.ref.append(event.reference)

    def visible(self, as_of: float) -> History:
        """The logged events that occurred by ``as_of``, sorted by event time (stable)."""
        ts = np.asarray(self.ts)
        keep = np.flatnonzero(ts <= as_of)
        order = keep[np.argsort(ts[keep], kind="stable")]
        return History(
            ts[order],
            np.asarray(self.arrival)[order],
            np.asarray(self.code)[order],
            np.asarray(self.qty, dtype=np.float64)[order],
            np.asarray(self.after, dtype=np.float64)[order],
            np.asarray(self.variance)[order],
            [self.ref[i] for i in order],
        )


class History(NamedTuple):
    """A key's visible events as arrays sorted by event time (see :meth:`KeyLog.visible`)."""

    ts: np.ndarray
    arrival: np.ndarray
    code: np.ndarray
    qty: np.ndarray
    after: np.ndarray
    variance: np.ndarray
    ref: list[str | None]

    def mask(self, *codes: int) -> np.ndarray:
        return np.isin(self.code, codes)

    def sales(self) -> np.ndarray:
        """Sale and fulfillment events that moved units (quantity > 0)."""
        return self.mask(SALE, FULFILL) & (self.qty > 0)


# --------------------------------------------------------------------------- the features


def _hours(as_of: float, ts: float) -> float:
    return (as_of - ts) / HOUR_S


def _last(h: History, mask: np.ndarray) -> int:
    """Index of the newest event in ``mask`` (-1: none)."""
    idx = np.flatnonzero(mask)
    return int(idx[-1]) if len(idx) else -1


def daily_features(h: History, as_of: float) -> dict[str, float]:
    """Per-day vectors. Day ``i`` covers ``[as_of − (i+1) d, as_of − i d)``; an event at exactly
    ``as_of`` counts in day 0. Also 28-day summaries of the daily sold units."""
    day = ((as_of - h.ts) // DAY_S).astype(int)
    sales = h.sales()

    def per_day(mask: np.ndarray, days: int, weights: np.ndarray | None = None) -> np.ndarray:
        w = None if weights is None else weights[mask]
        return np.bincount(day[mask], weights=w, minlength=GAP_WINDOW_DAYS + days)[:days]

    units = per_day(sales, GAP_WINDOW_DAYS, h.qty)
    out = {f"h_sold_units_d{i}": units[i] for i in range(DAILY_DAYS)}
    out.update({f"h_sale_events_d{i}": v for i, v in enumerate(per_day(sales, DAILY_DAYS))})
    short = h.code == PICK_SHORT
    fulfil = (h.code == FULFILL) & (h.qty > 0)
    reserve = h.code == RESERVE
    for name, mask in (("pick_short", short), ("fulfil", fulfil), ("reserve", reserve)):
        out.update({f"h_{name}_d{i}": v for i, v in enumerate(per_day(mask, SHORT_DAILY_DAYS))})
    zero = np.flatnonzero(units > 0)
    out["h_days_with_sale_28d"] = float((units > 0).sum())
    out["h_max_daily_units_28d"] = float(units.max())
    out["h_zero_sale_days_run"] = float(zero[0]) if len(zero) else float(GAP_WINDOW_DAYS)
    mean_prior = units[1:DAILY_DAYS].mean()
    out["h_d0_vs_prior_13d"] = units[0] / mean_prior if mean_prior > 0 else math.nan
    age_days = max((as_of - h.ts[0]) / DAY_S, 1.0) if len(h.ts) else math.nan
    out["h_mean_daily_units_life"] = h.qty[sales].sum() / age_days
    return out


def recency_features(h: History, as_of: float) -> dict[str, float]:
    """Hours since the newest event of each code and that event's quantity (NaN: none)."""
    out: dict[str, float] = {}
    for i, name in enumerate(CODES):
        j = _last(h, h.code == i)
        out[f"h_hours_since_{name}"] = _hours(as_of, h.ts[j]) if j >= 0 else math.nan
        out[f"h_qty_last_{name}"] = h.qty[j] if j >= 0 else math.nan
    return out


def ledger_features(h: History, as_of: float, on_hand: float) -> dict[str, float]:
    """What the record said when the shelf last proved stock, and what moved since the record
    was last true (the latest count). ``on_hand``: the record now."""
    out: dict[str, float] = {}
    sales = h.sales()
    j = _last(h, sales)
    after_sale = h.after[j] if j >= 0 else math.nan
    out["h_record_after_last_sale"] = after_sale
    out["h_record_now_minus_after_last_sale"] = on_hand - after_sale
    r = _last(h, h.mask(*RECEIPTS) & (h.qty > 0))
    out["h_record_after_last_receipt"] = h.after[r] if r >= 0 else math.nan
    since_r = h.ts > h.ts[r] if r >= 0 else np.ones(len(h.ts), bool)
    out["h_sold_units_since_receipt"] = h.qty[sales & since_r].sum()
    out["h_sale_events_since_receipt"] = float((sales & since_r).sum())
    out["h_sold_since_receipt_over_receipt"] = (
        out["h_sold_units_since_receipt"] / h.qty[r] if r >= 0 and h.qty[r] > 0 else math.nan
    )
    out.update(_count_features(h, sales))
    return out


def _count_features(h: History, sales: np.ndarray) -> dict[str, float]:
    counts = h.code == COUNT
    c = _last(h, counts)
    since = h.ts > h.ts[c] if c >= 0 else np.ones(len(h.ts), bool)
    receipts = h.mask(*RECEIPTS) & since
    variances = h.variance[counts & np.isfinite(h.variance)][::-1]  # newest first
    out: dict[str, float] = {
        "h_last_counted_qty": h.qty[c] if c >= 0 else math.nan,
        "h_counts": float(len(variances)),
        "h_negative_variances": float((variances < 0).sum()),
        "h_mean_variance": variances.mean() if len(variances) else math.nan,
        "h_receipt_units_since_count": h.qty[receipts].sum(),
        "h_receipt_moves_since_count": float(receipts.sum()),
        "h_sold_units_since_count": h.qty[sales & since].sum(),
        "h_sale_events_since_count": float((sales & since).sum()),
        "h_return_units_since_count": h.qty[h.mask(*RETURNS) & since].sum(),
        "h_adjustments_since_count": float((h.code[since] >= _CODE["adj_theft"]).sum()),
    }
    for k in range(3):
        out[f"h_count_variance_{k + 1}"] = variances[k] if k < len(variances) else math.nan
    return out


def gap_features(h: History, as_of: float) -> dict[str, float]:
    """Gaps between consecutive sales (hours), over 28 days and over the whole history, and the
    current silence (hours since the newest sale) against them."""
    times = h.ts[h.sales()]
    silence = _hours(as_of, times[-1]) if len(times) else math.nan
    recent = times[times > as_of - GAP_WINDOW_DAYS * DAY_S]
    gaps28 = np.diff(recent) / HOUR_S
    gaps = np.diff(times) / HOUR_S
    out = {
        "h_sales_28d_events": float(len(recent)),
        "h_gap_max_28d": gaps28.max() if len(gaps28) else math.nan,
        "h_gap_median_28d": float(np.median(gaps28)) if len(gaps28) else math.nan,
        "h_gap_mean_28d": gaps28.mean() if len(gaps28) else math.nan,
        "h_gap_max_life": gaps.max() if len(gaps) else math.nan,
        "h_gap_p90_life": float(np.quantile(gaps, 0.9)) if len(gaps) else math.nan,
        "h_share_gaps_ge_silence": (gaps >= silence).mean() if len(gaps) else math.nan,
    }
    out["h_silence_over_max_gap_28d"] = silence / out["h_gap_max_28d"]
    out["h_silence_over_median_gap_28d"] = silence / max(out["h_gap_median_28d"], 1e-3)
    out["h_silence_over_max_gap_life"] = silence / out["h_gap_max_life"]
    return out


def reservation_features(h: History, as_of: float) -> dict[str, float]:
    """Online orders by reference: open ones (no fulfillment or release yet), recent ones and
    their outcomes."""
    placed: dict[str, tuple[float, float]] = {}
    outcome: dict[str, int] = {}
    for ref, code, ts, q in zip(h.ref, h.code, h.ts, h.qty, strict=True):
        if ref is None:
            continue
        if code == RESERVE:
            placed[ref] = (ts, q)
        elif code in (FULFILL, RELEASE, PICK_SHORT):
            outcome[ref] = PICK_SHORT if outcome.get(ref) == PICK_SHORT else code
    open_refs = [placed[r] for r in placed if r not in outcome]
    week = [r for r, (ts, _) in placed.items() if ts > as_of - 7 * DAY_S]
    outcomes_week = [outcome.get(r) for r in week]
    last_outcome = _last(h, h.mask(FULFILL, PICK_SHORT))
    return {
        "h_open_reservations": float(len(open_refs)),
        "h_open_reserved_units": float(sum(q for _, q in open_refs)),
        "h_hours_oldest_open_reservation": (
            _hours(as_of, min(ts for ts, _ in open_refs)) if open_refs else math.nan
        ),
        "h_reservations_24h": float(sum(ts > as_of - DAY_S for ts, _ in placed.values())),
        "h_reservations_7d": float(len(week)),
        "h_week_reservations_fulfilled": float(outcomes_week.count(FULFILL)),
        "h_week_reservations_short": float(outcomes_week.count(PICK_SHORT)),
        "h_week_reservations_open": float(outcomes_week.count(None)),
        "h_last_pick_outcome_short": (
            float(h.code[last_outcome] == PICK_SHORT) if last_outcome >= 0 else math.nan
        ),
    }


def timing_features(h: History, as_of: float) -> dict[str, float]:
    """Time of day of the latest sale, arrival lags and the key's age (hours)."""
    s = _last(h, (h.code == SALE) & (h.qty > 0))
    f = _last(h, (h.code == FULFILL) & (h.qty > 0))
    day_ago = as_of - DAY_S
    recent = h.ts > day_ago
    lag = (h.arrival - h.ts) / HOUR_S
    return {
        "h_hour_of_last_sale": (h.ts[s] % DAY_S) / HOUR_S if s >= 0 else math.nan,
        "h_hour_of_last_fulfillment": (h.ts[f] % DAY_S) / HOUR_S if f >= 0 else math.nan,
        "h_last_sale_arrival_lag": lag[s] if s >= 0 else math.nan,
        "h_max_arrival_lag_24h": lag[recent].max() if recent.any() else math.nan,
        "h_late_arrivals_24h": float(((h.arrival > day_ago) & ~recent).sum()),
        "h_hours_since_last_arrival": _hours(as_of, h.arrival.max()) if len(h.ts) else math.nan,
        "h_events_24h": float(recent.sum()),
        "h_key_age_hours": _hours(as_of, h.ts[0]) if len(h.ts) else math.nan,
    }


def _groups(h: History, as_of: float, on_hand: float) -> dict[str, dict[str, float]]:
    return {
        "daily": daily_features(h, as_of),
        "recency": recency_features(h, as_of),
        "ledger": ledger_features(h, as_of, on_hand),
        "gaps": gap_features(h, as_of),
        "reservations": reservation_features(h, as_of),
        "timing": timing_features(h, as_of),
    }


def history_features(log: KeyLog, as_of: float, on_hand: float) -> dict[str, float]:
    """Every history feature of one key at ``as_of`` (POSIX s; see the module docstring).
    ``on_hand``: the key's recorded on-hand at ``as_of`` (same arrivals)."""
    groups = _groups(log.visible(as_of), as_of, on_hand).values()
    return {name: value for group in groups for name, value in group.items()}


def feature_groups() -> dict[str, list[str]]:
    """The history columns by group (daily, recency, ledger, gaps, reservations, timing)."""
    empty = KeyLog("", "").visible(0.0)
    return {name: list(group) for name, group in _groups(empty, 0.0, 0.0).items()}


# --------------------------------------------------------------------------- one pass


class MidnightClock:
    """The snapshot clock of :func:`training.dataset.snapshot_features`: the UTC midnights an
    arrival-ordered stream passes, including its jump over long idle stretches."""

    def __init__(self) -> None:
        #: the next midnight to snapshot at (POSIX s); None before the first event
        self.next_cut: float | None = None

    def passed(self, arrival: float, occurred: float) -> list[float]:
        """Midnights to snapshot at, in order, before applying an event that arrived at
        ``arrival`` and occurred at ``occurred`` (POSIX s); a snapshot at ``T`` sees every event
        that arrived by ``T`` (``arrival <= T``) and none after."""
        if self.next_cut is None:
            self.next_cut = (int(occurred // DAY_S) + 1) * DAY_S
        cuts: list[float] = []
        while arrival > self.next_cut:
            if len(cuts) == MAX_IDLE_SNAPSHOT_DAYS:
                self.next_cut = max(self.next_cut, (math.ceil(arrival / DAY_S) - 1) * DAY_S)
            cuts.append(self.next_cut)
            self.next_cut += DAY_S
        return cuts


def history_frame(payloads: Iterable[bytes | str], *, stores_only: bool = True) -> pd.DataFrame:
    """History rows keyed (as_of, sku, location) at every UTC midnight an arrival-ordered
    stream passes, plus one at the first midnight not before the last arrival (as the training
    set builder does). ``stores_only``: log no key whose location starts with ``DC`` (the models
    score store keys; the ledger still sees every event). Rejected lines are skipped."""
    book = Book()
    logs: dict[str, KeyLog] = {}
    clock = MidnightClock()
    rows: list[dict] = []
    for raw in payloads:
        event = parse_event(raw)
        if not isinstance(event, InventoryEvent):
            continue
        arrival = (event.published_at or event.occurred_at).timestamp()
        for cut in clock.passed(arrival, event.occurred_ts):
            rows.extend(_snapshot(book, logs, cut))
        _apply(book, logs, event, arrival, stores_only)
    if clock.next_cut is not None:
        rows.extend(_snapshot(book, logs, clock.next_cut))
    return pd.DataFrame(rows)


def _apply(
    book: Book, logs: dict[str, KeyLog], event: InventoryEvent, arrival: float, stores_only: bool
) -> None:
    """Apply ``event`` to the ledger; log it unless a duplicate or a DC key's."""
    key = event.state_key
    state = book.state(key, event.sku, event.location)
    before = state.position.counts_with_variance
    if book.apply(event) is Outcome.DUPLICATE:
        return
    if stores_only and event.location.startswith("DC"):
        return
    position = state.position
    variance = math.nan
    if position.counts_with_variance > before:  # a count that measured a variance
        variance = float(position.last_count_variance)
    log = logs.get(key)
    if log is None:
        log = logs[key] = KeyLog(event.sku, event.location)
    log.add(event, arrival, position.on_hand, variance)


def _snapshot(book: Book, logs: dict[str, KeyLog], as_of: float) -> list[dict]:
    stamp = as_of_timestamp(as_of)
    rows = []
    for key, log in logs.items():
        on_hand = float(book.states[key].position.on_hand)
        features = history_features(log, as_of, on_hand)
        rows.append({"as_of": stamp, "sku": log.sku, "location": log.location, **features})
    return rows


# --------------------------------------------------------------------------- data


def world_history(world_dir: Path, cache: Path) -> pd.DataFrame:
    """The history frame of one world (:func:`history_frame` of its ``events.jsonl``) with a
    ``world`` column, cached as ``cache/<world>.history.parquet``."""
    path = cache / f"{world_dir.name}.history.parquet"
    if path.exists():
        return pd.read_parquet(path)
    t = time.time()
    frame = history_frame(iter_lines(world_dir / "events.jsonl"))
    frame.insert(0, "world", world_dir.name)
    cache.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path)
    print(f"  history {world_dir.name}: {len(frame)} rows in {time.time() - t:.0f}s", flush=True)
    return frame


def with_history(
    configs: Sequence[WorldConfig], root: Path, cache: Path
) -> tuple[pd.DataFrame, list[str]]:
    """Labelled snapshot rows of ``configs`` with their history columns merged on
    (world, as_of, sku, location), and the names of those columns. Every labelled row must
    find its history row (the two passes share the clock): a miss raises."""
    snapshots = load_cached(configs, root, cache)
    history = pd.concat(
        [world_history(simulate_world(c, root), cache) for c in configs], ignore_index=True
    )
    merged = snapshots.merge(history, on=KEY, how="left", validate="one_to_one")
    columns = [c for c in history.columns if c not in KEY]
    missing = int(merged[columns[0]].isna().sum())
    if missing:
        raise RuntimeError(f"{missing} labelled rows found no history row: the clocks disagree")
    return merged, columns


# --------------------------------------------------------------------------- models


def matrix(rows: pd.DataFrame, spec: ModelSpec, extra: Sequence[str]) -> np.ndarray:
    """The model matrix (snapshot + derived columns, in the spec's order) plus ``extra``."""
    base = with_derived(rows)[list(spec.features)]
    return pd.concat([base, rows[list(extra)]], axis=1).to_numpy(np.float64)


def gainreport(names: Sequence[str], gain: np.ndarray, extra: Sequence[str]) -> dict:
    """Shares of total gain: the top 25 inputs; the ``extra`` columns' sum and top 15."""
    share = gain / gain.sum()
    report: dict = {"top": top_gain(names, gain)}
    own = [(n, float(v)) for n, v in zip(names, share, strict=True) if n in set(extra)]
    if own:
        report["extra_total"] = round(sum(v for _, v in own), 4)
        ranked = sorted(own, key=lambda kv: -kv[1])[:15]
        report["extra_top"] = {n: round(v, 4) for n, v in ranked}
    return report


def in_world(
    holdout: pd.DataFrame, variants: dict[str, list[str]], repeats: int, rounds: int
) -> dict:
    """Out-of-fold metrics of each variant and fold salt, and salt 0's gain shares."""
    result: dict = {"in_world": {}, "importance": {}}
    for spec in (PHANTOM, STOCKOUT):
        rows = labelled(holdout, spec)
        y = rows[spec.label].to_numpy().astype(int)
        ev = rows.reset_index(drop=True)
        for name, extra in variants.items():
            x, names = matrix(rows, spec, extra), [*spec.features, *extra]
            for salt in range(repeats):
                t = time.time()
                score, gain = oof(x, y, folds_of(rows, salt), rounds, names)
                m = _m(ev, y, score)
                result["in_world"].setdefault(f"{spec.name} / {name}", []).append(m)
                if salt == 0:
                    result["importance"][f"{spec.name} / {name}"] = gainreport(names, gain, extra)
                report(f"{spec.name:18s} {name:13s} fold-salt {salt}", m, t)
    return result


def cross(
    train: pd.DataFrame, holdout: pd.DataFrame, variants: dict[str, list[str]], rounds: int
) -> dict:
    """Train on the training worlds, score the held-out worlds: metrics and gain shares."""
    result: dict = {"cross": {}, "importance": {}}
    for spec in (PHANTOM, STOCKOUT):
        tr, ho = labelled(train, spec), labelled(holdout, spec)
        y_tr = tr[spec.label].to_numpy().astype(int)
        y_ho = ho[spec.label].to_numpy().astype(int)
        for name, extra in variants.items():
            t = time.time()
            names = [*spec.features, *extra]
            booster = _fit(matrix(tr, spec, extra), y_tr, rounds, names)
            m = _m(ho.reset_index(drop=True), y_ho, booster.predict(matrix(ho, spec, extra)))
            result["cross"][f"{spec.name} / {name}"] = m
            gain = booster.feature_importance("gain")
            result["importance"][f"cross {spec.name} / {name}"] = gainreport(names, gain, extra)
            report(f"CROSS {spec.name:18s} {name:13s}", m, t)
    return result


def summarise(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, list[float]]]:
    """Mean and sample sd over fold salts of each metric: ``{variant: {metric: [mean, sd]}}``."""
    out = {}
    for name, ms in runs.items():
        frame = pd.DataFrame(ms)
        sd = frame.std(ddof=1) if len(frame) > 1 else frame.mean() * 0
        out[name] = {k: [float(frame[k].mean()), float(sd[k])] for k in frame.columns}
    return out


def run(args: argparse.Namespace) -> dict:
    t0 = time.time()
    holdout, columns = with_history(HOLDOUT_WORLDS, args.worlds_root, args.cache)
    print(f"holdout rows {len(holdout)}, {len(columns)} history columns "
          f"({time.time() - t0:.0f}s)", flush=True)  # fmt: skip
    variants = {"base": [], "base+history": columns}
    if args.ablation:  # each group alone on top of the base matrix
        variants = {f"base+{g}": cols for g, cols in feature_groups().items()}
    if args.only:  # a chosen few history columns instead of all
        variants = {f"base+{args.only}": args.only.split(",")}
    result = in_world(holdout, variants, args.repeats, args.rounds)
    result["in_world_summary"] = summarise(result["in_world"])
    result["history_columns"] = columns
    if args.cross:
        train, _ = with_history(TRAIN_WORLDS, args.worlds_root, args.cache)
        print(f"train rows {len(train)} ({time.time() - t0:.0f}s)", flush=True)
        crossed = cross(train, holdout, variants, args.rounds)
        result["cross"] = crossed["cross"]
        result["importance"].update(crossed["importance"])
    return result


def main(argv: Sequence[str] | None = None) -> dict:
    parser = experiment_parser(
        __doc__.splitlines()[0],
        Path("data/history_cache"),
        Path("training/history_results/history_experiment.json"),
    )
    parser.add_argument("--only", help="comma-separated history columns to add (not all)")
    parser.add_argument(
        "--ablation", action="store_true", help="in-world only: base + each group alone"
    )
    args = parser.parse_args(argv)
    result = run(args)
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
