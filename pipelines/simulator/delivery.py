"""How events reach the platform: arrival times, late and re-sent copies.

Contract: ``arrival >= occurred`` for every row; ``published == arrival`` for an original and the
original's ``published`` for a re-sent copy (a copy is byte-identical to its original, it just
arrives again later). Delays by source (seconds unless stated):

- pos: posted in ``pos_batch_minutes`` batches: next batch boundary + 5–90 s;
  during a POS outage of its store, held until the outage ends (+ 0–10 min);
- ecommerce, marketplace, oms: 1–30 s; marketplace + ``marketplace_delay_hours``;
- store_ops: 5–300 s; wms, erp: 30–900 s;
- ``late_share`` of events (not opening balances): + lognormal hours, capped;
- ``transfer_confirm_late_share`` of ``transfer_in``: + 2–10 h ("confirmed late").
"""

from __future__ import annotations

import math

import numpy as np

from pipelines.simulator.batch import REF, SOURCES, SRC, EventBatch, T
from pipelines.simulator.world import DAY_S, HOUR_S, World

# Base lag range per source code, seconds [lo, hi).
_LAG: dict[str, tuple[int, int]] = {
    "pos": (5, 90),
    "ecommerce": (1, 30),
    "marketplace": (1, 30),
    "oms": (1, 30),
    "wms": (30, 900),
    "erp": (30, 900),
    "store_ops": (5, 300),
}
_LAG_LO = np.array([_LAG[s][0] for s in SOURCES], dtype=np.int64)
_LAG_HI = np.array([_LAG[s][1] for s in SOURCES], dtype=np.int64)


def _hours(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
    lo, hi = bounds
    return (rng.uniform(lo, hi, n) * HOUR_S).astype(np.int64)


def time_delivery(batch: EventBatch, world: World, rng: np.random.Generator) -> None:
    """Set ``published`` and ``arrival`` of freshly created events (in place)."""
    p = world.params
    n = len(batch)
    occurred, source = batch.occurred, batch.source
    arrival = occurred + rng.integers(_LAG_LO[source], _LAG_HI[source])

    pos = np.flatnonzero(source == SRC["pos"])
    step = p.pos_batch_minutes * 60
    arrival[pos] = (occurred[pos] // step + 1) * step + rng.integers(5, 90, pos.size)

    late = (rng.random(n) < p.late_share) & (batch.reference_kind != REF["OPENING"])
    delay = np.exp(rng.normal(math.log(p.late_median_hours), 1.0, int(late.sum())))
    arrival[late] += (np.minimum(delay, p.late_max_hours) * HOUR_S).astype(np.int64)

    confirm = np.flatnonzero(
        (batch.event_type == T["transfer_in"]) & (rng.random(n) < p.transfer_confirm_late_share)
    )
    arrival[confirm] += _hours(rng, p.transfer_confirm_delay_hours, confirm.size)

    if p.marketplace_delay_hours[1] > 0:
        market = np.flatnonzero(source == SRC["marketplace"])
        arrival[market] += _hours(rng, p.marketplace_delay_hours, market.size)

    _hold_during_outages(arrival, batch, world, pos, rng)
    batch.arrival = arrival
    batch.published = arrival.copy()


def _hold_during_outages(
    arrival: np.ndarray, batch: EventBatch, world: World, pos: np.ndarray, rng: np.random.Generator
) -> None:
    """POS rows that occurred inside their store's outage arrive when it ends."""
    if pos.size == 0 or not (world.outage_start >= 0).any():
        return
    since_start = batch.occurred[pos] - world.start_s
    day = since_start // DAY_S
    second = since_start - day * DAY_S
    store = batch.location[pos]
    begin = world.outage_start[day, store]
    end = world.outage_end[day, store]
    held = (begin >= 0) & (second >= begin) & (second < end)
    release = world.start_s + day * DAY_S + end + rng.integers(0, 600, pos.size)
    rows = pos[held]
    arrival[rows] = np.maximum(arrival[rows], release[held])


def resend(batch: EventBatch, share: float, delay_hours: tuple[float, float], rng) -> EventBatch:
    """Re-sent copies of ``share`` of the rows, arriving log-uniformly ``delay_hours`` later.

    A copy keeps every column except ``arrival`` (so its line is identical to the original's).
    """
    copies = batch.take(rng.random(len(batch)) < share)
    lo, hi = delay_hours
    delay = np.exp(rng.uniform(math.log(lo), math.log(hi), len(copies))) * HOUR_S
    copies.arrival = copies.arrival + np.maximum(delay.astype(np.int64), 1)
    return copies
