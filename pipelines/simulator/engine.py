"""The day loop: moves true and recorded stock through the world, one vectorised step per day.

Two books are kept for every key: the *record* (what the ledger will compute from the events)
and the *truth* (what is physically on the shelf). Events change the record exactly as
:mod:`pipelines.ledger` does; unrecorded mechanisms (shrink, misplacement, receiving errors)
change only the truth, and cycle counts copy the truth into the record.

Event-time schedule of a day (UTC; every event of the day gets a timestamp in its slot, and the
state changes are applied in this order, so the record at the end of the day is what the ledger
computes whatever order the events arrive in):

====================  ========================================================================
00:00:00–00:00:59     day 0 only: opening balances (``cycle_count``, erp, ``OPENING``)
05:00–05:30           DC supplier receipts (``receipt``, ``PO…``)
05:00–07:00           store transfer receipts (``transfer_in``, ``T…``)
05:30–06:30           DC shipments (``transfer_out``, ``T…``) of yesterday evening's orders
(unrecorded)          misplaced stock found, shrink, misplacement: truth only, before opening
08:00–20:32           sales, online reservations, picks (fulfillment / pick_short + release);
                      every shelf draw is served in timestamp order up to the true shelf
12:00–20:00           returns, inspections, recorded adjustments
21:00–21:59           cycle counts: the record is set to the true shelf (after all of the above)
24:00                 end of day: truth snapshot, then replenishment decisions on the record
====================  ========================================================================

No store event shares a timestamp with that key's count, so the ledger's "events at or before a
count are seen by it" rule never meets a tie.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipelines.simulator.batch import REF, SRC, EventBatch, R, T, new_events
from pipelines.simulator.world import HOUR_S, World

_MINUTE = 60


def allocate_in_order(group: np.ndarray, quantity: np.ndarray, available: np.ndarray) -> np.ndarray:
    """Serve requests first come, first served from a per-group stock.

    Rows must be sorted so that each group is contiguous and in service order. Returns the
    units served per row: ``min(q, what is left of available[group] when the row's turn comes)``
    (never negative; a negative stock serves nothing).
    """
    n = quantity.shape[0]
    if n == 0:
        return quantity.copy()
    total = np.cumsum(quantity)
    starts = np.r_[True, group[1:] != group[:-1]]
    first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    before = total - quantity - (total[first] - quantity[first])
    return np.clip(available[group] - before, 0, quantity)


def _sum_by(index: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Exact integer group sums (``np.bincount`` is float; values stay far below 2**53)."""
    return np.bincount(index, weights=values, minlength=size).astype(np.int64)


@dataclass
class Schedule:
    """Things due on a future day (shipments, picks, inspections, releases) as columns."""

    columns: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, due_day: np.ndarray, **values: np.ndarray) -> None:
        for name, value in (("due_day", due_day), *values.items()):
            self.columns.setdefault(name, []).append(np.asarray(value, dtype=np.int64))

    def pop_due(self, day: int) -> dict[str, np.ndarray]:
        """Rows due on ``day`` (removed); empty arrays if nothing was ever scheduled."""
        if not self.columns:
            return {"due_day": np.zeros(0, dtype=np.int64)}
        merged = {name: np.concatenate(parts) for name, parts in self.columns.items()}
        due = merged["due_day"] == day
        self.columns = {name: [col[~due]] for name, col in merged.items()}
        return {name: col[due] for name, col in merged.items()}


@dataclass
class StoreBooks:
    """Per store key: the record (ledger buckets) and the truth (shelf, misplaced)."""

    on_hand: np.ndarray
    reserved: np.ndarray
    damaged: np.ndarray
    quarantined: np.ndarray
    returned_pending: np.ndarray
    shelf: np.ndarray  # true units on the shelf (sellable, countable)
    misplaced: np.ndarray  # true units in the building but not where they belong
    inbound: np.ndarray  # recorded units shipped to the store and not yet received


@dataclass
class DcBooks:
    """Per sku at the DC: record (on_hand, in_transit), truth, and units on open POs."""

    on_hand: np.ndarray
    in_transit: np.ndarray
    true: np.ndarray
    on_order: np.ndarray


class DayCounters:
    """Per-key counters of one day's mechanisms (store keys; ``dc_*`` for DC skus)."""

    NAMES = (
        "shrink_units",
        "misplaced_units",
        "found_units",
        "receiving_error_units",
        "demand_units",
        "sales_units",
        "lost_sales_units",
        "pick_short_units",
        "ordered_units",
        "counted",
    )

    def __init__(self, n_keys: int, n_skus: int) -> None:
        for name in self.NAMES:
            setattr(self, name, np.zeros(n_keys, dtype=np.int64))
        self.dc_receiving_error_units = np.zeros(n_skus, dtype=np.int64)
        self.dc_ordered_units = np.zeros(n_skus, dtype=np.int64)


@dataclass
class DayRates:
    """Expected demand of one day per store key, by channel (units/day)."""

    store: np.ndarray
    web: np.ndarray
    marketplace: np.ndarray

    @property
    def total(self) -> np.ndarray:
        return self.store + self.web + self.marketplace


class Engine:
    """Runs the world forward. Call :meth:`opening` once, then :meth:`step` for day 0, 1, …

    Each call returns the events that *occurred* in that period (not yet timed for delivery)
    and, for :meth:`step`, the end-of-day truth columns. ``rng`` is the only randomness.
    """

    def __init__(self, world: World, rng: np.random.Generator) -> None:
        self.world = world
        self.p = world.params
        self.rng = rng
        n, m = world.n_keys, world.n_skus
        self.key_sku = world.key_sku()
        self.key_store = world.key_store()
        self.key_price = world.price_cents[self.key_sku]
        zeros = np.zeros(n, dtype=np.int64)
        self.store = StoreBooks(*(zeros.copy() for _ in range(8)))
        self.dc = DcBooks(*(np.zeros(m, dtype=np.int64) for _ in range(4)))
        self.shipments = Schedule()  # transfer_in at the store
        self.purchase_orders = Schedule()  # supplier receipt at the DC
        self.carried_picks = Schedule()  # online orders picked the next morning
        self.inspections = Schedule()  # pending returns inspected
        self.releases = Schedule()  # quarantine released
        self.requests = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        self.numbers = dict.fromkeys(("transfer", "po", "count", "order"), 0)

    # -- helpers -------------------------------------------------------------------------------
    def _next_numbers(self, kind: str, n: int) -> np.ndarray:
        first = self.numbers[kind] + 1
        self.numbers[kind] += n
        return np.arange(first, first + n, dtype=np.int64)

    def _times(self, day_start: int, lo_s: float, hi_s: float, n: int) -> np.ndarray:
        """``n`` integer timestamps uniform in ``[day_start + lo_s, day_start + hi_s)``."""
        return day_start + self.rng.integers(int(lo_s), int(hi_s), size=n)

    def _rates(self, day: int) -> DayRates:
        w, p = self.world, self.p
        online = w.base_rate * w.online_share[self.key_sku]
        marketplace = online * p.marketplace_share
        weekday = w.weekday_lift[day]
        other = w.lift_other[day][self.key_sku] * weekday
        return DayRates(
            store=(w.base_rate - online) * other,
            web=(online - marketplace) * other,
            marketplace=marketplace * w.lift_marketplace[day][self.key_sku] * weekday,
        )

    # -- opening -------------------------------------------------------------------------------
    def opening(self) -> EventBatch:
        """Opening balances at day 0 00:00:xx for every store key and DC sku.

        The shelf starts between the reorder point and the order-up-to level. The ERP balance
        (the count's quantity, so the opening record) equals the shelf except for
        ``opening_error_share`` of keys, mostly overstated (go-live errors).
        """
        w, p, rng, s = self.world, self.p, self.rng, self.store
        s.shelf[:] = rng.integers(w.reorder_point, w.order_up_to + 1)
        error = rng.random(w.n_keys) < p.opening_error_share
        size = 1 + rng.poisson(1.0, w.n_keys)
        over = rng.random(w.n_keys) < 0.75
        booked = np.where(over, s.shelf + size, np.maximum(s.shelf - size, 0))
        s.on_hand[:] = np.where(error, booked, s.shelf)
        self.dc.true[:] = w.dc_order_up_to
        self.dc.on_hand[:] = w.dc_order_up_to
        stores = new_events(
            T["cycle_count"], SRC["erp"], self.key_sku, self.key_store, s.on_hand,
            self._times(w.start_s, 0, 60, w.n_keys), reference_kind=REF["OPENING"],
        )  # fmt: skip
        skus = np.arange(w.n_skus, dtype=np.int64)
        dc = new_events(
            T["cycle_count"], SRC["erp"], skus, w.dc_index, self.dc.on_hand,
            self._times(w.start_s, 0, 60, w.n_skus), reference_kind=REF["OPENING"],
        )  # fmt: skip
        return EventBatch.concat([stores, dc])

    # -- the day -------------------------------------------------------------------------------
    def step(self, day: int) -> tuple[EventBatch, dict[str, np.ndarray]]:
        """Simulate ``day``; return its events and its end-of-day truth (store keys, then DC)."""
        t0 = self.world.day_start(day)
        counters = DayCounters(self.world.n_keys, self.world.n_skus)
        rates = self._rates(day)
        events: list[EventBatch] = []
        events += self._dc_receipts(day, t0, counters)
        events += self._dc_shipments(day, t0)
        events += self._store_receipts(day, t0, counters)
        self._unrecorded_changes(rates, counters)
        events += self._shelf_draws(day, t0, rates, counters)
        events += self._store_operations(day, t0, rates)
        events += self._cycle_counts(t0, counters)
        self._replenish(day, counters)
        return EventBatch.concat(events), self._truth(day, rates, counters)

    def _dc_receipts(self, day: int, t0: int, c: DayCounters) -> list[EventBatch]:
        """Supplier receipts at the DC; a few are short (booked in full, fewer units arrive)."""
        due = self.purchase_orders.pop_due(day)
        if due["due_day"].size == 0:
            return []
        sku, qty, po = due["sku"], due["quantity"], due["po"]
        short = self.rng.random(sku.size) < self.p.dc_receiving_error_rate
        missing = np.where(short, np.minimum(1 + self.rng.poisson(1.0, sku.size), qty), 0)
        np.add.at(self.dc.on_hand, sku, qty)
        np.add.at(self.dc.true, sku, qty - missing)
        np.add.at(self.dc.on_order, sku, -qty)
        np.add.at(c.dc_receiving_error_units, sku, missing)
        source = np.where(self.rng.random(sku.size) < 0.5, SRC["erp"], SRC["wms"])
        times = self._times(t0, 5 * HOUR_S, 5.5 * HOUR_S, sku.size)
        return [
            new_events(
                T["receipt"], source, sku, self.world.dc_index, qty, times,
                reference_kind=REF["PO"], reference_no=po,
            )  # fmt: skip
        ]

    def _dc_shipments(self, day: int, t0: int) -> list[EventBatch]:
        """Ship yesterday evening's store orders, first come first served by store number.

        The recorded quantity is limited by the DC's recorded on-hand (the WMS will not ship
        what it does not have); the units that really leave are further limited by the true
        DC stock. Each shipment is scheduled to arrive 1–3 days later.
        """
        keys, qty = self.requests
        self.requests = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        if keys.size == 0:
            return []
        sku = self.key_sku[keys]
        order = np.lexsort((self.key_store[keys], sku))
        keys, qty, sku = keys[order], qty[order], sku[order]
        shipped = allocate_in_order(sku, qty, self.dc.on_hand)
        sent = allocate_in_order(sku, shipped, self.dc.true)
        keep = shipped > 0
        keys, sku, shipped, sent = keys[keep], sku[keep], shipped[keep], sent[keep]
        m = self.world.n_skus
        self.dc.on_hand -= _sum_by(sku, shipped, m)
        self.dc.in_transit += _sum_by(sku, shipped, m)
        self.dc.true -= _sum_by(sku, sent, m)
        np.add.at(self.store.inbound, keys, shipped)
        transfer = self._next_numbers("transfer", keys.size)
        lo, hi = self.p.transit_days
        arrive = day + self.rng.integers(lo, hi + 1, size=keys.size)
        self.shipments.add(arrive, key=keys, quantity=shipped, sent=sent, transfer=transfer)
        times = self._times(t0, 5.5 * HOUR_S, 6.5 * HOUR_S, keys.size)
        return [
            new_events(
                T["transfer_out"], SRC["wms"], sku, self.world.dc_index, shipped, times,
                reference_kind=REF["T"], reference_no=transfer,
            )  # fmt: skip
        ]

    def _store_receipts(self, day: int, t0: int, c: DayCounters) -> list[EventBatch]:
        """Transfers arrive: the record gets the shipped quantity, the shelf what really came.

        A receiving error makes the shelf differ from the booked quantity by 1 + Poisson units
        (mostly short; ``receiving_over_share`` over). ``receiving_error_units`` counts booked
        minus truly received (positive = phantom-making short receipt).
        """
        due = self.shipments.pop_due(day)
        if due["due_day"].size == 0:
            return []
        keys, qty, sent, transfer = due["key"], due["quantity"], due["sent"], due["transfer"]
        n = keys.size
        wrong = self.rng.random(n) < self.p.receiving_error_rate
        size = 1 + self.rng.poisson(self.p.receiving_error_extra, n)
        over = self.rng.random(n) < self.p.receiving_over_share
        received = np.where(wrong, np.where(over, sent + size, np.maximum(sent - size, 0)), sent)
        np.add.at(self.store.on_hand, keys, qty)
        np.add.at(self.store.shelf, keys, received)
        np.add.at(self.store.inbound, keys, -qty)
        np.add.at(c.receiving_error_units, keys, qty - received)
        sku = self.key_sku[keys]
        self.dc.in_transit -= _sum_by(sku, qty, self.world.n_skus)
        times = self._times(t0, 5 * HOUR_S, 7 * HOUR_S, n)
        return [
            new_events(
                T["transfer_in"], SRC["store_ops"], sku, self.key_store[keys], qty, times,
                reference_kind=REF["T"], reference_no=transfer,
            )  # fmt: skip
        ]

    def _unrecorded_changes(self, rates: DayRates, c: DayCounters) -> None:
        """Truth-only changes before opening: misplaced stock found, shrink, misplacement."""
        p, rng, s = self.p, self.rng, self.store
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

    def _shelf_draws(
        self, day: int, t0: int, rates: DayRates, c: DayCounters
    ) -> list[EventBatch]:
        """In-store sales and online orders, served from the TRUE shelf in timestamp order.

        Every online order reserves its units when placed. Its pick (30 min – 4 h later, or
        the next morning if that is after 20:30) fulfils what the shelf has and reports the
        rest as ``pick_short`` + ``reservation_release``. Unserved in-store demand is a lost
        sale (no event).
        """
        p, rng, s = self.p, self.rng, self.store
        keys_n = s.shelf.size
        out: list[EventBatch] = []

        # in-store transactions
        n_tx = rng.poisson(rates.store / (1 + p.basket_extra_units))
        tx_key = np.repeat(np.arange(keys_n), n_tx)
        tx_qty = 1 + rng.poisson(p.basket_extra_units, tx_key.size)
        tx_time = self._times(t0, 8 * HOUR_S, 20 * HOUR_S, tx_key.size)

        # online orders placed today: channel 0 web, 1 click & collect, 2/3 marketplaces
        n_web = rng.poisson(rates.web / (1 + p.order_extra_units))
        n_mkt = rng.poisson(rates.marketplace / (1 + p.order_extra_units))
        web_key = np.repeat(np.arange(keys_n), n_web)
        mkt_key = np.repeat(np.arange(keys_n), n_mkt)
        o_key = np.concatenate([web_key, mkt_key])
        channel = np.concatenate(
            [rng.integers(0, 2, web_key.size), 2 + (rng.random(mkt_key.size) < 0.4)]
        ).astype(np.int64)
        o_qty = 1 + rng.poisson(p.order_extra_units, o_key.size)
        o_time = self._times(t0, 8 * HOUR_S, 20 * HOUR_S, o_key.size)
        o_no = self._next_numbers("order", o_key.size)
        o_ref = REF["O-WEB-"] + channel
        o_source = np.where(channel >= 2, SRC["marketplace"], SRC["ecommerce"])
        np.add.at(s.reserved, o_key, o_qty)
        c.demand_units += _sum_by(o_key, o_qty, keys_n) + _sum_by(tx_key, tx_qty, keys_n)
        out.append(
            new_events(
                T["reservation"], o_source, self.key_sku[o_key], self.key_store[o_key], o_qty,
                o_time, reference_kind=o_ref, reference_no=o_no,
                price_cents=self.key_price[o_key],
            )  # fmt: skip
        )
        lo, hi = p.pick_delay_hours
        pick_time = o_time + rng.integers(int(lo * HOUR_S), int(hi * HOUR_S), o_key.size)
        tomorrow = pick_time >= t0 + 20 * HOUR_S + 30 * _MINUTE
        self.carried_picks.add(
            np.full(int(tomorrow.sum()), day + 1),
            key=o_key[tomorrow],
            quantity=o_qty[tomorrow],
            ref_kind=o_ref[tomorrow],
            ref_no=o_no[tomorrow],
            second=rng.integers(8 * HOUR_S, 10 * HOUR_S, int(tomorrow.sum())),
        )
        carried = self.carried_picks.pop_due(day)
        if carried["due_day"].size:
            pk_key = np.concatenate([o_key[~tomorrow], carried["key"]])
            pk_qty = np.concatenate([o_qty[~tomorrow], carried["quantity"]])
            pk_time = np.concatenate([pick_time[~tomorrow], t0 + carried["second"]])
            pk_ref = np.concatenate([o_ref[~tomorrow], carried["ref_kind"]])
            pk_no = np.concatenate([o_no[~tomorrow], carried["ref_no"]])
        else:
            pk_key, pk_qty, pk_time = o_key[~tomorrow], o_qty[~tomorrow], pick_time[~tomorrow]
            pk_ref, pk_no = o_ref[~tomorrow], o_no[~tomorrow]

        # serve every shelf draw in time order, from the true shelf
        d_key = np.concatenate([tx_key, pk_key])
        d_qty = np.concatenate([tx_qty, pk_qty])
        d_time = np.concatenate([tx_time, pk_time])
        order = np.lexsort((d_time, d_key))
        served = np.empty_like(d_qty)
        served[order] = allocate_in_order(d_key[order], d_qty[order], s.shelf)
        sold = _sum_by(d_key, served, keys_n)
        s.shelf -= sold
        s.on_hand -= sold
        tx_served, pk_served = served[: tx_key.size], served[tx_key.size :]
        c.sales_units += _sum_by(tx_key, tx_served, keys_n)
        c.lost_sales_units += _sum_by(tx_key, tx_qty - tx_served, keys_n)
        np.add.at(s.reserved, pk_key, -pk_qty)
        short = pk_qty - pk_served
        c.pick_short_units += _sum_by(pk_key, short, keys_n)

        sale = tx_served > 0
        out.append(
            new_events(
                T["sale"], SRC["pos"], self.key_sku[tx_key[sale]], self.key_store[tx_key[sale]],
                tx_served[sale], tx_time[sale], price_cents=self.key_price[tx_key[sale]],
            )  # fmt: skip
        )
        f = pk_served > 0
        out.append(
            new_events(
                T["fulfillment"], SRC["oms"], self.key_sku[pk_key[f]], self.key_store[pk_key[f]],
                pk_served[f], pk_time[f], reference_kind=pk_ref[f], reference_no=pk_no[f],
                price_cents=self.key_price[pk_key[f]],
            )  # fmt: skip
        )
        sh = short > 0
        sh_sku, sh_store = self.key_sku[pk_key[sh]], self.key_store[pk_key[sh]]
        out.append(
            new_events(
                T["pick_short"], SRC["store_ops"], sh_sku, sh_store, short[sh], pk_time[sh],
                reference_kind=pk_ref[sh], reference_no=pk_no[sh],
            )  # fmt: skip
        )
        release_time = pk_time[sh] + rng.integers(5, 120, int(sh.sum()))
        out.append(
            new_events(
                T["reservation_release"], SRC["oms"], sh_sku, sh_store, short[sh], release_time,
                reference_kind=pk_ref[sh], reference_no=pk_no[sh],
            )  # fmt: skip
        )
        return out

    def _store_operations(self, day: int, t0: int, rates: DayRates) -> list[EventBatch]:
        """Returns, inspections, quarantine and recorded adjustments (12:00–20:00)."""
        p, rng, s = self.p, self.rng, self.store
        n = s.shelf.size
        out: list[EventBatch] = []

        def window(count: int) -> np.ndarray:
            return self._times(t0, 12 * HOUR_S, 20 * HOUR_S, count)

        def adjustment(keys: np.ndarray, qty: np.ndarray, reason: str) -> EventBatch:
            return new_events(
                T["adjustment"], SRC["store_ops"], self.key_sku[keys], self.key_store[keys],
                qty, window(keys.size), reason=R[reason],
            )  # fmt: skip

        # customer returns: back on the shelf, or parked for inspection
        r_key = np.repeat(np.arange(n), rng.poisson(p.return_rate * rates.total))
        pending = rng.random(r_key.size) < p.return_pending_share
        np.add.at(s.on_hand, r_key[~pending], 1)
        np.add.at(s.shelf, r_key[~pending], 1)
        np.add.at(s.returned_pending, r_key[pending], 1)
        lo, hi = p.inspection_days
        self.inspections.add(
            day + rng.integers(lo, hi + 1, int(pending.sum())),
            key=r_key[pending],
            passed=rng.random(int(pending.sum())) < p.inspection_pass_share,
        )
        source = np.where(rng.random(r_key.size) < 0.7, SRC["pos"], SRC["ecommerce"])
        out.append(
            new_events(
                T["return"], source, self.key_sku[r_key], self.key_store[r_key], 1,
                window(r_key.size), reason=np.where(pending, R["pending_inspection"], 0),
                price_cents=self.key_price[r_key],
            )  # fmt: skip
        )

        due = self.inspections.pop_due(day)
        if due["due_day"].size:
            ok = due["passed"].astype(bool)
            passed, failed = due["key"][ok], due["key"][~ok]
            np.add.at(s.returned_pending, due["key"], -1)
            np.add.at(s.on_hand, passed, 1)
            np.add.at(s.shelf, passed, 1)
            np.add.at(s.damaged, failed, 1)
            out.append(adjustment(passed, np.ones_like(passed), "inspection_pass"))
            out.append(adjustment(failed, -np.ones_like(failed), "inspection_fail"))

        due = self.releases.pop_due(day)
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
        self.releases.add(day + rng.integers(lo, hi + 1, hit.size), key=hit, quantity=qty)
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

    def _cycle_counts(self, t0: int, c: DayCounters) -> list[EventBatch]:
        """Each store counts ~``count_share`` of its skus at 21:00–22:00; record := shelf."""
        s = self.store
        keys = np.flatnonzero(self.rng.random(s.shelf.size) < self.p.count_share)
        s.on_hand[keys] = s.shelf[keys]
        c.counted[keys] = 1
        number = self._next_numbers("count", keys.size)
        return [
            new_events(
                T["cycle_count"], SRC["store_ops"], self.key_sku[keys], self.key_store[keys],
                s.shelf[keys], self._times(t0, 21 * HOUR_S, 22 * HOUR_S, keys.size),
                reference_kind=REF["C"], reference_no=number,
            )  # fmt: skip
        ]

    def _replenish(self, day: int, c: DayCounters) -> None:
        """End-of-day (s, S) decisions on the RECORDED position; shipped/received later.

        Store: position = on_hand − reserved + inbound; if <= s, order S − position rounded up
        to whole packs (shipped by the DC tomorrow morning). A phantom key whose record stays
        above s never reorders: the freeze that makes phantom stock costly.
        DC: position = on_hand + on_order − tomorrow's shipments; if <= s, a PO to S.
        """
        w, s = self.world, self.store
        position = s.on_hand - s.reserved + s.inbound
        keys = np.flatnonzero(position <= w.reorder_point)
        pack = w.pack_size[self.key_sku[keys]]
        qty = -(-(w.order_up_to[keys] - position[keys]) // pack) * pack
        self.requests = (keys, qty)
        c.ordered_units[keys] = qty

        requested = _sum_by(self.key_sku[keys], qty, w.n_skus)
        dc_position = self.dc.on_hand + self.dc.on_order - requested
        skus = np.flatnonzero(dc_position <= w.dc_reorder_point)
        po_qty = w.dc_order_up_to[skus] - dc_position[skus]
        self.dc.on_order[skus] += po_qty
        c.dc_ordered_units[skus] = po_qty
        lo, hi = self.p.supplier_lead_days
        self.purchase_orders.add(
            day + self.rng.integers(lo, hi + 1, skus.size),
            sku=skus,
            quantity=po_qty,
            po=self._next_numbers("po", skus.size),
        )

    def _truth(self, day: int, rates: DayRates, c: DayCounters) -> dict[str, np.ndarray]:
        """End-of-day truth of every key: store keys first, then the DC skus."""
        w, s, dc = self.world, self.store, self.dc
        m = w.n_skus
        zeros_dc = np.zeros(m, dtype=np.int64)
        promo = w.promo[day]
        network_rate = np.bincount(self.key_sku, weights=rates.total, minlength=m)
        cols: dict[str, np.ndarray] = {
            "sku": np.concatenate([self.key_sku, np.arange(m)]),
            "location": np.concatenate([self.key_store, np.full(m, w.dc_index)]),
            "recorded_on_hand": np.concatenate([s.on_hand, dc.on_hand]),
            "recorded_reserved": np.concatenate([s.reserved, zeros_dc]),
            "recorded_in_transit": np.concatenate([np.zeros_like(s.on_hand), dc.in_transit]),
            "recorded_damaged": np.concatenate([s.damaged, zeros_dc]),
            "recorded_quarantined": np.concatenate([s.quarantined, zeros_dc]),
            "recorded_returned_pending": np.concatenate([s.returned_pending, zeros_dc]),
            "true_on_hand": np.concatenate([s.shelf, dc.true]),
            "true_misplaced": np.concatenate([s.misplaced, zeros_dc]),
            "inbound": np.concatenate([s.inbound, zeros_dc]),
            "reorder_point": np.concatenate([w.reorder_point, w.dc_reorder_point]),
            "daily_demand_rate": np.concatenate([rates.total, network_rate]),
            "promo": np.concatenate([promo[self.key_sku], promo]),
        }
        for name in DayCounters.NAMES:
            cols[name] = np.concatenate([getattr(c, name), zeros_dc])
        cols["receiving_error_units"][-m:] = c.dc_receiving_error_units
        cols["ordered_units"][-m:] = c.dc_ordered_units
        cols["phantom"] = (cols["recorded_on_hand"] >= 1) & (cols["true_on_hand"] == 0)
        outage = w.outage_start[day] >= 0
        cols["pos_outage"] = np.concatenate([outage[self.key_store], np.zeros(m, dtype=bool)])
        cols["unit_price"] = w.price_cents[cols["sku"]] / 100.0
        return cols

