"""The shop floor of every store: losses nobody books, customers, orders, staff, counts.

Each function applies one slot of the day (see :mod:`pipelines.simulator.engine`) to both books
and returns the events it produced. Quantities taken from the shelf are always capped by the
true shelf, so ``shelf >= 0`` holds throughout; the record may go negative (the ledger counts
that as an anomaly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.simulator.batch import REF, SRC, EventBatch, R
from pipelines.simulator.state import (
    DayCounters,
    DayRates,
    Reference,
    SimState,
    allocate_in_order,
    sum_by,
)
from pipelines.simulator.world import HOUR_S

_LAST_PICK_S = 20 * HOUR_S + 30 * 60  # picks that would end later move to the next morning


def unrecorded_changes(st: SimState, rates: DayRates, c: DayCounters) -> None:
    """Truth-only changes before opening: misplaced stock found, shrink, misplacement."""
    p, rng, s = st.p, st.rng, st.store
    n = s.shelf.size
    found = np.where((s.misplaced > 0) & (rng.random(n) < p.found_rate), s.misplaced, 0)
    s.misplaced -= found
    s.shelf += found
    c.found_units += found
    shrink = np.minimum(rng.poisson(p.shrink_base + p.shrink_per_demand * rates.total), s.shelf)
    s.shelf -= shrink
    c.shrink_units += shrink
    lost = rng.random(n) < p.misplace_rate
    misplaced = np.where(lost, np.minimum(1 + rng.poisson(p.misplace_extra, n), s.shelf), 0)
    s.shelf -= misplaced
    s.misplaced += misplaced
    c.misplaced_units += misplaced


@dataclass
class _Draws:
    """Shelf draws of one kind: key, units wanted, time, order reference (picks only)."""

    key: np.ndarray
    qty: np.ndarray
    time: np.ndarray
    ref_kind: np.ndarray
    ref_no: np.ndarray

    def take(self, index: np.ndarray) -> _Draws:
        return _Draws(self.key[index], self.qty[index], self.time[index],
                      self.ref_kind[index], self.ref_no[index])  # fmt: skip

    def ref(self, index: np.ndarray | slice = slice(None)) -> Reference:
        return self.ref_kind[index], self.ref_no[index]


def shelf_draws(
    st: SimState, day: int, t0: int, rates: DayRates, c: DayCounters
) -> list[EventBatch]:
    """In-store sales and online orders (08:00–20:32), served from the TRUE shelf in time order.

    Every online order reserves its units when placed. Its pick (``pick_delay_hours`` later, or
    the next morning 08:00–10:00 if that is after 20:30) fulfils what the shelf has and reports
    the rest as ``pick_short`` + ``reservation_release``. Unserved in-store demand is a lost
    sale (``lost_sales_units``, no event).
    """
    p, rng = st.p, st.rng
    n_tx = rng.poisson(rates.store / (1 + p.basket_extra_units))
    tx_key = np.repeat(np.arange(n_tx.size), n_tx)
    tx_qty = 1 + rng.poisson(p.basket_extra_units, tx_key.size)
    tx_time = st.times(t0, 8 * HOUR_S, 20 * HOUR_S, tx_key.size)
    zeros = np.zeros_like(tx_key)
    till = _Draws(tx_key, tx_qty, tx_time, zeros, zeros)
    orders, reservations = _place_orders(st, t0, rates)
    picks = _picks_due(st, day, t0, orders)
    c.demand_units += sum_by(till.key, till.qty, n_tx.size)
    c.demand_units += sum_by(orders.key, orders.qty, n_tx.size)
    return [reservations, *_serve(st, till, picks, c)]


def _place_orders(st: SimState, t0: int, rates: DayRates) -> tuple[_Draws, EventBatch]:
    """Today's online orders (web, click & collect, two marketplaces): reserve their units.

    Returns the orders with their pick times and the ``reservation`` events.
    """
    p, rng = st.p, st.rng
    n_web = rng.poisson(rates.web / (1 + p.order_extra_units))
    n_mkt = rng.poisson(rates.marketplace / (1 + p.order_extra_units))
    web_key = np.repeat(np.arange(n_web.size), n_web)
    mkt_key = np.repeat(np.arange(n_mkt.size), n_mkt)
    key = np.concatenate([web_key, mkt_key])
    # channel 0 web, 1 click & collect, 2 marketplace A, 3 marketplace B
    channel = np.concatenate(
        [rng.integers(0, 2, web_key.size), 2 + (rng.random(mkt_key.size) < 0.4)]
    ).astype(np.int64)
    qty = 1 + rng.poisson(p.order_extra_units, key.size)
    placed = st.times(t0, 8 * HOUR_S, 20 * HOUR_S, key.size)
    orders = _Draws(key, qty, placed, REF["O-WEB-"] + channel, st.next_numbers("order", key.size))
    np.add.at(st.store.reserved, key, qty)
    source = np.where(channel >= 2, SRC["marketplace"], SRC["ecommerce"])
    reservations = st.store_events(
        "reservation", source, key, qty, placed, priced=True, ref=orders.ref()
    )
    lo, hi = p.pick_delay_hours
    orders.time = placed + rng.integers(int(lo * HOUR_S), int(hi * HOUR_S), key.size)
    return orders, reservations


def _picks_due(st: SimState, day: int, t0: int, orders: _Draws) -> _Draws:
    """Picks of today: today's orders picked by 20:30 plus yesterday's carried-over orders;
    later ones are carried to tomorrow morning (and stay reserved overnight)."""
    late = orders.time >= t0 + _LAST_PICK_S
    carry = orders.take(late)
    st.carried_picks.add(
        np.full(carry.key.size, day + 1),
        key=carry.key,
        quantity=carry.qty,
        ref_kind=carry.ref_kind,
        ref_no=carry.ref_no,
        second=st.rng.integers(8 * HOUR_S, 10 * HOUR_S, carry.key.size),
    )
    today = orders.take(~late)
    due = st.carried_picks.pop_due(day)
    if due["due_day"].size == 0:
        return today
    return _Draws(
        np.concatenate([today.key, due["key"]]),
        np.concatenate([today.qty, due["quantity"]]),
        np.concatenate([today.time, t0 + due["second"]]),
        np.concatenate([today.ref_kind, due["ref_kind"]]),
        np.concatenate([today.ref_no, due["ref_no"]]),
    )


def _serve(st: SimState, till: _Draws, picks: _Draws, c: DayCounters) -> list[EventBatch]:
    """Serve till transactions and picks together, in timestamp order, from the true shelf."""
    s, n = st.store, st.store.shelf.size
    key = np.concatenate([till.key, picks.key])
    qty = np.concatenate([till.qty, picks.qty])
    order = np.lexsort((np.concatenate([till.time, picks.time]), key))
    served = np.empty_like(qty)
    served[order] = allocate_in_order(key[order], qty[order], s.shelf)
    sold = sum_by(key, served, n)
    s.shelf -= sold
    s.on_hand -= sold
    sale_qty, fill_qty = served[: till.key.size], served[till.key.size :]
    short_qty = picks.qty - fill_qty
    np.add.at(s.reserved, picks.key, -picks.qty)
    c.sales_units += sum_by(till.key, sale_qty, n)
    c.lost_sales_units += sum_by(till.key, till.qty - sale_qty, n)
    c.pick_short_units += sum_by(picks.key, short_qty, n)

    sale, fill, short = sale_qty > 0, fill_qty > 0, short_qty > 0
    released_at = picks.time[short] + st.rng.integers(5, 120, int(short.sum()))
    return [
        st.store_events("sale", SRC["pos"], till.key[sale], sale_qty[sale], till.time[sale],
                        priced=True),
        st.store_events("fulfillment", SRC["oms"], picks.key[fill], fill_qty[fill],
                        picks.time[fill], priced=True, ref=picks.ref(fill)),
        st.store_events("pick_short", SRC["store_ops"], picks.key[short], short_qty[short],
                        picks.time[short], ref=picks.ref(short)),
        st.store_events("reservation_release", SRC["oms"], picks.key[short], short_qty[short],
                        released_at, ref=picks.ref(short)),
    ]  # fmt: skip


def store_operations(st: SimState, day: int, t0: int, rates: DayRates) -> list[EventBatch]:
    """Returns, inspections, quarantine and recorded adjustments (12:00–20:00)."""
    p, rng, s = st.p, st.rng, st.store
    n = s.shelf.size
    out: list[EventBatch] = []

    def adjustment(keys: np.ndarray, qty: np.ndarray, reason: str) -> EventBatch:
        times = st.times(t0, 12 * HOUR_S, 20 * HOUR_S, keys.size)
        return st.store_events("adjustment", SRC["store_ops"], keys, qty, times, reason=R[reason])

    # customer returns: back on the shelf, or parked for inspection
    r_key = np.repeat(np.arange(n), rng.poisson(p.return_rate * rates.total))
    pending = rng.random(r_key.size) < p.return_pending_share
    np.add.at(s.on_hand, r_key[~pending], 1)
    np.add.at(s.shelf, r_key[~pending], 1)
    np.add.at(s.returned_pending, r_key[pending], 1)
    lo, hi = p.inspection_days
    n_pending = int(pending.sum())
    st.inspections.add(
        day + rng.integers(lo, hi + 1, n_pending),
        key=r_key[pending],
        passed=rng.random(n_pending) < p.inspection_pass_share,
    )
    source = np.where(rng.random(r_key.size) < 0.7, SRC["pos"], SRC["ecommerce"])
    times = st.times(t0, 12 * HOUR_S, 20 * HOUR_S, r_key.size)
    reason = np.where(pending, R["pending_inspection"], 0)
    out.append(st.store_events("return", source, r_key, 1, times, priced=True, reason=reason))

    due = st.inspections.pop_due(day)
    if due["due_day"].size:
        ok = due["passed"].astype(bool)
        passed, failed = due["key"][ok], due["key"][~ok]
        np.add.at(s.returned_pending, due["key"], -1)
        np.add.at(s.on_hand, passed, 1)
        np.add.at(s.shelf, passed, 1)
        np.add.at(s.damaged, failed, 1)
        out.append(adjustment(passed, np.ones_like(passed), "inspection_pass"))
        out.append(adjustment(failed, -np.ones_like(failed), "inspection_fail"))

    due = st.releases.pop_due(day)
    if due["due_day"].size:
        keys, qty = due["key"], due["quantity"]
        np.add.at(s.quarantined, keys, -qty)
        np.add.at(s.on_hand, keys, qty)
        np.add.at(s.shelf, keys, qty)
        out.append(adjustment(keys, qty, "release_quarantine"))

    # damaged units found on the shelf and booked out
    hit = np.flatnonzero((rng.random(n) < p.damage_rate) & (s.shelf > 0))
    qty = np.minimum(1 + rng.poisson(0.3, hit.size), s.shelf[hit])
    s.shelf[hit] -= qty
    s.on_hand[hit] -= qty
    s.damaged[hit] += qty
    out.append(adjustment(hit, -qty, "damaged"))

    # quarantine holds (recall, inspection): off the shelf until released
    hit = np.flatnonzero((rng.random(n) < p.quarantine_rate) & (s.shelf > 0))
    qty = np.minimum(1 + rng.poisson(2.0, hit.size), s.shelf[hit])
    s.shelf[hit] -= qty
    s.on_hand[hit] -= qty
    s.quarantined[hit] += qty
    lo, hi = p.quarantine_days
    st.releases.add(day + rng.integers(lo, hi + 1, hit.size), key=hit, quantity=qty)
    out.append(adjustment(hit, -qty, "quarantine"))

    # staff book part of a discrepancy they noticed: theft (record above shelf) or found
    gap = s.on_hand - s.shelf
    hit = np.flatnonzero((gap > 0) & (rng.random(n) < p.recorded_theft_rate))
    qty = np.minimum(1 + rng.poisson(0.3, hit.size), gap[hit])
    s.on_hand[hit] -= qty
    out.append(adjustment(hit, -qty, "theft"))
    hit = np.flatnonzero((gap < 0) & (rng.random(n) < p.recorded_found_rate))
    qty = np.minimum(1 + rng.poisson(0.3, hit.size), -gap[hit])
    s.on_hand[hit] += qty
    out.append(adjustment(hit, qty, "found"))
    return out


def cycle_counts(st: SimState, t0: int, c: DayCounters) -> list[EventBatch]:
    """Each store counts ~``count_share`` of its skus at 21:00–22:00: the count reports the
    true shelf (misplaced units are not found by it) and the record is set to it."""
    s = st.store
    keys = np.flatnonzero(st.rng.random(s.shelf.size) < st.p.count_share)
    s.on_hand[keys] = s.shelf[keys]
    c.counted[keys] = 1
    ref = (REF["C"], st.next_numbers("count", keys.size))
    times = st.times(t0, 21 * HOUR_S, 22 * HOUR_S, keys.size)
    return [st.store_events("cycle_count", SRC["store_ops"], keys, s.shelf[keys], times, ref=ref)]
