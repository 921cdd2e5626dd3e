"""The day loop: moves true and recorded stock through the world, one vectorised step per day.

Two books are kept for every key (:mod:`state`): the *record* (what the ledger will compute from
the events) and the *truth* (what is physically there). Events change the record exactly as
:mod:`pipelines.ledger` does; unrecorded mechanisms (shrink, misplacement, receiving errors)
change only the truth, and cycle counts copy the truth into the record.

Event-time schedule of a day (UTC; every event of the day gets a timestamp in its slot, and the
state changes are applied in this order, so the record at the end of the day is what the ledger
computes whatever order the events arrive in):

====================  ========================================================================
00:00:00–00:00:59     day 0 only: opening balances (``opening_event``, erp, ``OPENING``)
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

import numpy as np

from pipelines.simulator import floor, supply
from pipelines.simulator.batch import REF, SRC, EventBatch
from pipelines.simulator.state import DayCounters, DayRates, SimState
from pipelines.simulator.world import World


class Engine:
    """Runs the world forward: call :meth:`step` for day 0, 1, … in order.

    Each step returns the events that *occurred* that day (not yet timed for delivery; day 0
    includes the opening balances) and the end-of-day truth columns. ``rng`` is the only
    randomness.
    """

    def __init__(self, world: World, rng: np.random.Generator) -> None:
        self.world = world
        self.state = SimState(world, rng)

    def opening(self) -> list[EventBatch]:
        """Opening balances at day 0 00:00:xx for every store key and DC sku.

        The shelf starts between the reorder point and the order-up-to level. The ERP balance
        (the opening record) equals the shelf except for ``opening_error_share`` of keys, mostly
        overstated (go-live errors). It arrives as ``opening_event``: a count of every key, or a
        receipt / adjustment of every non-zero balance (the same record from an empty ledger).
        """
        st, w = self.state, self.world
        rng, s = st.rng, st.store
        s.shelf[:] = rng.integers(w.reorder_point, w.order_up_to + 1)
        error = rng.random(w.n_keys) < st.p.opening_error_share
        size = 1 + rng.poisson(1.0, w.n_keys)
        over = rng.random(w.n_keys) < 0.75
        booked = np.where(over, s.shelf + size, np.maximum(s.shelf - size, 0))
        s.on_hand[:] = np.where(error, booked, s.shelf)
        st.dc.true[:] = w.dc_order_up_to
        st.dc.on_hand[:] = w.dc_order_up_to
        ref = (REF["OPENING"], 0)
        keys, skus = np.arange(w.n_keys), np.arange(w.n_skus)
        store_times = st.times(w.start_s, 0, 60, w.n_keys)
        dc_times = st.times(w.start_s, 0, 60, w.n_skus)
        kind = st.p.opening_event
        if kind != "cycle_count":  # goods in: a zero balance sends nothing
            keys, skus = keys[s.on_hand > 0], skus[st.dc.on_hand > 0]
            store_times, dc_times = store_times[keys], dc_times[skus]
        return [
            st.store_events(kind, SRC["erp"], keys, s.on_hand[keys], store_times, ref=ref),
            st.dc_events(kind, SRC["erp"], skus, st.dc.on_hand[skus], dc_times, ref=ref),
        ]

    def step(self, day: int) -> tuple[EventBatch, dict[str, np.ndarray]]:
        """Simulate ``day``; return its events and its end-of-day truth (store keys, then DC)."""
        st = self.state
        t0 = self.world.day_start(day)
        counters = DayCounters.for_world(self.world.n_keys, self.world.n_skus)
        rates = st.rates(day)
        events: list[EventBatch] = []
        if day == 0:
            events += self.opening()
        events += supply.dc_receipts(st, day, t0, counters)
        events += supply.dc_shipments(st, day, t0)
        events += supply.store_receipts(st, day, t0, counters)
        floor.unrecorded_changes(st, rates, counters)
        events += floor.shelf_draws(st, day, t0, rates, counters)
        events += floor.store_operations(st, day, t0, rates)
        events += floor.cycle_counts(st, t0, counters)
        supply.replenish(st, day, counters)
        return EventBatch.concat(events), self._truth(day, rates, counters)

    def _truth(self, day: int, rates: DayRates, c: DayCounters) -> dict[str, np.ndarray]:
        """End-of-day truth of every key: store keys first, then the DC skus."""
        w, s, dc = self.world, self.state.store, self.state.dc
        m = w.n_skus
        key_sku, key_store = self.state.key_sku, self.state.key_store
        zeros_dc = np.zeros(m, dtype=np.int64)
        promo = w.promo[day]
        network_rate = np.bincount(key_sku, weights=rates.total, minlength=m)
        cols: dict[str, np.ndarray] = {
            "sku": np.concatenate([key_sku, np.arange(m)]),
            "location": np.concatenate([key_store, np.full(m, w.dc_index)]),
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
            "promo": np.concatenate([promo[key_sku], promo]),
        }
        for name in DayCounters.NAMES:
            cols[name] = np.concatenate([getattr(c, name), zeros_dc])
        cols["receiving_error_units"][-m:] = c.dc_receiving_error_units
        cols["ordered_units"][-m:] = c.dc_ordered_units
        cols["phantom"] = (cols["recorded_on_hand"] >= 1) & (cols["true_on_hand"] == 0)
        outage = w.outage_start[day] >= 0
        cols["pos_outage"] = np.concatenate([outage[key_store], np.zeros(m, dtype=bool)])
        cols["unit_price"] = w.price_cents[cols["sku"]] / 100.0
        return cols
