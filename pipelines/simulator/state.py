"""The mutable state of a run: both books of every key, what is scheduled, and event helpers.

Two books are kept for every key: the *record* (the ledger buckets the events imply) and the
*truth* (the units physically there). :mod:`supply` and :mod:`floor` change them; the engine
snapshots them at the end of each day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from pipelines.simulator.batch import NO_PRICE, EventBatch, T, new_events
from pipelines.simulator.world import World

#: a reference: (kind code from ``batch.REF``, number or numbers; 0 when the kind has none)
Reference = tuple[int | np.ndarray, int | np.ndarray]


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


def sum_by(index: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Exact integer group sums (``np.bincount`` is float; values stay far below 2**53)."""
    return np.bincount(index, weights=values, minlength=size).astype(np.int64)


@dataclass
class Schedule:
    """Things due on a future day (shipments, picks, inspections, releases) as int columns."""

    columns: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, due_day: np.ndarray, **values: np.ndarray) -> None:
        for name, value in (("due_day", due_day), *values.items()):
            self.columns.setdefault(name, []).append(np.asarray(value, dtype=np.int64))

    def pop_due(self, day: int) -> dict[str, np.ndarray]:
        """Rows due on ``day`` (removed). With nothing ever scheduled: only an empty due_day."""
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

    @classmethod
    def zeros(cls, n: int) -> StoreBooks:
        return cls(*(np.zeros(n, dtype=np.int64) for _ in range(8)))


@dataclass
class DcBooks:
    """Per sku at the DC: record (on_hand, in_transit), truth, and units on open POs."""

    on_hand: np.ndarray
    in_transit: np.ndarray
    true: np.ndarray
    on_order: np.ndarray

    @classmethod
    def zeros(cls, n: int) -> DcBooks:
        return cls(*(np.zeros(n, dtype=np.int64) for _ in range(4)))


def _zeros() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass
class DayCounters:
    """Per-key counters of one day's mechanisms (store keys; ``dc_*`` per DC sku).

    Build with :meth:`for_world`; every array starts at zero.
    """

    shrink_units: np.ndarray = field(default_factory=_zeros)
    misplaced_units: np.ndarray = field(default_factory=_zeros)
    found_units: np.ndarray = field(default_factory=_zeros)
    receiving_error_units: np.ndarray = field(default_factory=_zeros)
    demand_units: np.ndarray = field(default_factory=_zeros)
    sales_units: np.ndarray = field(default_factory=_zeros)
    lost_sales_units: np.ndarray = field(default_factory=_zeros)
    pick_short_units: np.ndarray = field(default_factory=_zeros)
    ordered_units: np.ndarray = field(default_factory=_zeros)
    counted: np.ndarray = field(default_factory=_zeros)
    dc_receiving_error_units: np.ndarray = field(default_factory=_zeros)
    dc_ordered_units: np.ndarray = field(default_factory=_zeros)

    #: the store-key counters, in truth-column order
    NAMES: ClassVar[tuple[str, ...]] = (
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

    @classmethod
    def for_world(cls, n_keys: int, n_skus: int) -> DayCounters:
        arrays = {name: np.zeros(n_keys, dtype=np.int64) for name in cls.NAMES}
        return cls(
            **arrays,
            dc_receiving_error_units=np.zeros(n_skus, dtype=np.int64),
            dc_ordered_units=np.zeros(n_skus, dtype=np.int64),
        )


@dataclass
class DayRates:
    """Expected demand of one day per store key, by channel (units/day)."""

    store: np.ndarray
    web: np.ndarray
    marketplace: np.ndarray

    @property
    def total(self) -> np.ndarray:
        return self.store + self.web + self.marketplace


class SimState:
    """Everything that changes during a run. ``rng`` is its only randomness."""

    def __init__(self, world: World, rng: np.random.Generator) -> None:
        self.world = world
        self.p = world.params
        self.rng = rng
        self.key_sku = world.key_sku()
        self.key_store = world.key_store()
        self.key_price = world.price_cents[self.key_sku]
        self.store = StoreBooks.zeros(world.n_keys)
        self.dc = DcBooks.zeros(world.n_skus)
        self.shipments = Schedule()  # transfer_in at the store
        self.purchase_orders = Schedule()  # supplier receipt at the DC
        self.carried_picks = Schedule()  # online orders picked the next morning
        self.inspections = Schedule()  # pending returns inspected
        self.releases = Schedule()  # quarantine released
        #: store orders decided last evening, shipped this morning: (keys, quantities)
        self.requests = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        self._numbers = dict.fromkeys(("transfer", "po", "count", "order"), 0)

    def next_numbers(self, kind: str, n: int) -> np.ndarray:
        """``n`` fresh reference numbers of ``kind`` (transfer, po, count, order), from 1."""
        first = self._numbers[kind] + 1
        self._numbers[kind] += n
        return np.arange(first, first + n, dtype=np.int64)

    def times(self, day_start: int, lo_s: float, hi_s: float, n: int) -> np.ndarray:
        """``n`` integer timestamps uniform in ``[day_start + lo_s, day_start + hi_s)``."""
        return day_start + self.rng.integers(int(lo_s), int(hi_s), size=n)

    def rates(self, day: int) -> DayRates:
        w = self.world
        online = w.base_rate * w.online_share[self.key_sku]
        marketplace = online * self.p.marketplace_share
        weekday = w.weekday_lift[day]
        other = w.lift_other[day][self.key_sku] * weekday
        return DayRates(
            store=(w.base_rate - online) * other,
            web=(online - marketplace) * other,
            marketplace=marketplace * w.lift_marketplace[day][self.key_sku] * weekday,
        )

    def store_events(
        self,
        event_type: str,
        source: int | np.ndarray,
        keys: np.ndarray,
        quantity: int | np.ndarray,
        occurred: np.ndarray,
        *,
        ref: Reference | None = None,
        reason: int | np.ndarray = 0,
        priced: bool = False,
    ) -> EventBatch:
        """Events at store keys ``keys``; ``priced`` adds the sku's unit price."""
        kind, number = ref if ref is not None else (0, 0)
        return new_events(
            T[event_type],
            source,
            self.key_sku[keys],
            self.key_store[keys],
            quantity,
            occurred,
            reference_kind=kind,
            reference_no=number,
            reason=reason,
            price_cents=self.key_price[keys] if priced else NO_PRICE,
        )

    def dc_events(
        self,
        event_type: str,
        source: int | np.ndarray,
        skus: np.ndarray,
        quantity: int | np.ndarray,
        occurred: np.ndarray,
        *,
        ref: Reference,
    ) -> EventBatch:
        """Events at the DC for ``skus`` (all DC events carry a reference)."""
        kind, number = ref
        dc = self.world.dc_index
        return new_events(
            T[event_type], source, skus, dc, quantity, occurred,
            reference_kind=kind, reference_no=number,
        )  # fmt: skip
