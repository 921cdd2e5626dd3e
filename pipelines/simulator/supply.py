"""The supply chain: supplier → DC → store, driven by the RECORDED position.

Record-driven replenishment is what makes phantom stock expensive (Kang & Gershwin 2005): a key
whose record says "enough" is never reordered, however empty its shelf.
"""

from __future__ import annotations

import numpy as np

from pipelines.simulator.batch import REF, SRC, EventBatch
from pipelines.simulator.state import DayCounters, SimState, allocate_in_order, sum_by
from pipelines.simulator.world import HOUR_S


def dc_receipts(st: SimState, day: int, t0: int, c: DayCounters) -> list[EventBatch]:
    """Supplier receipts at the DC (05:00–05:30). A few are short: booked in full, fewer
    units arrive (``receiving_error_units`` of the DC row)."""
    due = st.purchase_orders.pop_due(day)
    if due["due_day"].size == 0:
        return []
    sku, qty, po = due["sku"], due["quantity"], due["po"]
    rng = st.rng
    short = rng.random(sku.size) < st.p.dc_receiving_error_rate
    missing = np.where(short, np.minimum(1 + rng.poisson(1.0, sku.size), qty), 0)
    np.add.at(st.dc.on_hand, sku, qty)
    np.add.at(st.dc.true, sku, qty - missing)
    np.add.at(st.dc.on_order, sku, -qty)
    np.add.at(c.dc_receiving_error_units, sku, missing)
    source = np.where(rng.random(sku.size) < 0.5, SRC["erp"], SRC["wms"])
    times = st.times(t0, 5 * HOUR_S, 5.5 * HOUR_S, sku.size)
    return [st.dc_events("receipt", source, sku, qty, times, ref=(REF["PO"], po))]


def dc_shipments(st: SimState, day: int, t0: int) -> list[EventBatch]:
    """Ship last evening's store orders (05:30–06:30), first come first served by store number.

    The booked quantity is limited by the DC's recorded on-hand (the WMS does not ship what it
    does not have); the units that really leave are further limited by the true DC stock.
    Each shipment arrives ``transit_days`` later.
    """
    keys, qty = st.requests
    st.requests = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    if keys.size == 0:
        return []
    sku = st.key_sku[keys]
    order = np.lexsort((st.key_store[keys], sku))
    keys, qty, sku = keys[order], qty[order], sku[order]
    shipped = allocate_in_order(sku, qty, st.dc.on_hand)
    sent = allocate_in_order(sku, shipped, st.dc.true)
    keep = shipped > 0
    keys, sku, shipped, sent = keys[keep], sku[keep], shipped[keep], sent[keep]
    m = st.world.n_skus
    st.dc.on_hand -= sum_by(sku, shipped, m)
    st.dc.in_transit += sum_by(sku, shipped, m)
    st.dc.true -= sum_by(sku, sent, m)
    np.add.at(st.store.inbound, keys, shipped)
    transfer = st.next_numbers("transfer", keys.size)
    lo, hi = st.p.transit_days
    arrive = day + st.rng.integers(lo, hi + 1, size=keys.size)
    st.shipments.add(arrive, key=keys, quantity=shipped, sent=sent, transfer=transfer)
    times = st.times(t0, 5.5 * HOUR_S, 6.5 * HOUR_S, keys.size)
    ref = (REF["T"], transfer)
    return [st.dc_events("transfer_out", SRC["wms"], sku, shipped, times, ref=ref)]


def store_receipts(st: SimState, day: int, t0: int, c: DayCounters) -> list[EventBatch]:
    """Transfers arrive (05:00–07:00): the record gets the booked quantity, the shelf what came.

    A receiving error makes the shelf differ from the booked quantity by 1 + Poisson units
    (mostly short; ``receiving_over_share`` over). ``receiving_error_units`` = booked − truly
    received (positive: a phantom-making short receipt; it includes DC short-ships).
    """
    due = st.shipments.pop_due(day)
    if due["due_day"].size == 0:
        return []
    keys, qty, sent, transfer = due["key"], due["quantity"], due["sent"], due["transfer"]
    n, p, rng = keys.size, st.p, st.rng
    wrong = rng.random(n) < p.receiving_error_rate
    size = 1 + rng.poisson(p.receiving_error_extra, n)
    over = rng.random(n) < p.receiving_over_share
    received = np.where(wrong, np.where(over, sent + size, np.maximum(sent - size, 0)), sent)
    np.add.at(st.store.on_hand, keys, qty)
    np.add.at(st.store.shelf, keys, received)
    np.add.at(st.store.inbound, keys, -qty)
    np.add.at(c.receiving_error_units, keys, qty - received)
    st.dc.in_transit -= sum_by(st.key_sku[keys], qty, st.world.n_skus)
    times = st.times(t0, 5 * HOUR_S, 7 * HOUR_S, n)
    ref = (REF["T"], transfer)
    return [st.store_events("transfer_in", SRC["store_ops"], keys, qty, times, ref=ref)]


def replenish(st: SimState, day: int, c: DayCounters) -> None:
    """End-of-day (s, S) decisions on the RECORDED position; shipped and received later.

    Store: position = on_hand − reserved + inbound; if <= s, order S − position rounded up to
    whole packs (shipped by the DC tomorrow morning). A phantom key whose record stays above s
    never reorders. DC: position = on_hand + on_order − tomorrow's shipments; if <= s, a
    purchase order up to S, received ``supplier_lead_days`` later.
    """
    w, s = st.world, st.store
    position = s.on_hand - s.reserved + s.inbound
    keys = np.flatnonzero(position <= w.reorder_point)
    pack = w.pack_size[st.key_sku[keys]]
    qty = -(-(w.order_up_to[keys] - position[keys]) // pack) * pack
    st.requests = (keys, qty)
    c.ordered_units[keys] = qty

    requested = sum_by(st.key_sku[keys], qty, w.n_skus)
    dc_position = st.dc.on_hand + st.dc.on_order - requested
    skus = np.flatnonzero(dc_position <= w.dc_reorder_point)
    po_qty = w.dc_order_up_to[skus] - dc_position[skus]
    st.dc.on_order[skus] += po_qty
    c.dc_ordered_units[skus] = po_qty
    lo, hi = st.p.supplier_lead_days
    st.purchase_orders.add(
        day + st.rng.integers(lo, hi + 1, skus.size),
        sku=skus,
        quantity=po_qty,
        po=st.next_numbers("po", skus.size),
    )
