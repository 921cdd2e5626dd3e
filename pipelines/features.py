"""Rolling inventory features per (sku, location): plain Python shared by stream and training.

A :class:`KeyState` holds the ledger :class:`~pipelines.ledger.Position` of one key plus the
activity accumulators below; :meth:`KeyState.snapshot` turns it into one feature row *as of* a
given instant. The feature dataflow, ``shelfguard features``, ``shelfguard score`` and the
training-set builder all call exactly this code, so there is no train/serve skew.

Time rules (all in event time, UTC):
- Windows ``(as_of − n days, as_of]`` are computed from per-UTC-day buckets; the oldest, partial
  day is pro-rated by its overlap with the window. Buckets older than ``ALLOWED_LATENESS_S``
  behind the key's newest event are dropped, so an event arriving later than that still updates
  the ledger but no longer the windows.
- Durations are clamped at 0: an ``as_of`` before an event never yields a negative age.
- "Never seen" ages (no sale yet, say) are measured from the key's first event: a lower bound.
- The EWMA rate is a continuous-time exponentially weighted rate (units/day, time constant
  ``RATE_TAU_DAYS``) with warm-up bias correction; it is order-independent.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from pipelines.events import EventType, InventoryEvent
from pipelines.keys import state_key
from pipelines.ledger import (
    DAY_S,
    NEG_INF,
    Outcome,
    Position,
    TransferMatcher,
    TransitSettlement,
    is_transfer,
)

HOUR_S = 3600.0
RATE_TAU_DAYS = 7.0
WINDOW_DAYS = 28
ALLOWED_LATENESS_S = (WINDOW_DAYS + 1) * DAY_S
MIN_WARMUP = 1.0 - math.exp(-1.0 / RATE_TAU_DAYS)  # never correct by more than a 1-day warm-up
MAX_DAYS_OF_COVER = 365.0

# day-bucket slots
_SALES, _RETURNS, _ADJ, _PICK_SHORT, _PICK_OK = range(5)
_SLOTS = 5
_SLOT_OF = {
    EventType.SALE: _SALES,
    EventType.FULFILLMENT: _SALES,
    EventType.RETURN: _RETURNS,
    EventType.ADJUSTMENT: _ADJ,
    EventType.PICK_SHORT: _PICK_SHORT,
}
POS_INF = math.inf
NAN = math.nan
_SALE_TYPES = (EventType.SALE, EventType.FULFILLMENT)
_RECEIPT_TYPES = (EventType.RECEIPT, EventType.TRANSFER_IN)
#: Day-bucket counter types, narrowest first: one byte per counter until a counter outgrows it.
_WIDER = {"B": "i", "i": "q"}


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    dtype: str
    definition: str

    def __reduce__(self) -> tuple:  # by constructor, as compiled frozen dataclasses need
        return (Feature, (self.name, self.dtype, self.definition))


FEATURES: tuple[Feature, ...] = (
    Feature("on_hand", "int", "recorded on-hand units (ledger)"),
    Feature("reserved", "int", "units reserved for open orders"),
    Feature("in_transit", "int", "units shipped out by transfer_out, not yet confirmed received"),
    Feature("damaged", "int", "units moved to damaged"),
    Feature("quarantined", "int", "units in quarantine"),
    Feature("returned_pending", "int", "customer returns awaiting inspection"),
    Feature("atp", "int", "max(0, on_hand − reserved − risk_hold − safety_stock)"),
    Feature("sales_1d", "float", "units sold (sale + fulfillment) in (as_of − 1 d, as_of]"),
    Feature("sales_7d", "float", "units sold in (as_of − 7 d, as_of]"),
    Feature("sales_28d", "float", "units sold in (as_of − 28 d, as_of]"),
    Feature(
        "ewma_daily_sales",
        "float",
        "exponentially weighted sales rate, units/day, time constant 7 d, warm-up corrected",
    ),
    Feature("hours_since_last_sale", "float", "hours from the last sale/fulfillment to as_of"),
    Feature("hours_since_last_receipt", "float", "hours from the last receipt/transfer_in"),
    Feature("hours_since_last_count", "float", "hours from the last cycle count"),
    Feature(
        "expected_sales_since_last_sale",
        "float",
        "EWMA rate at r × (as_of − r) in days, r = latest of last sale, receipt, count",
    ),
    Feature(
        "zero_sales_probability",
        "float",
        "Poisson P(no sale) = exp(−expected_sales_since_last_sale): the zero-sales-run signal",
    ),
    Feature("pick_short_28d", "float", "pick_short events in the 28-day window"),
    Feature(
        "pick_short_rate_28d",
        "float",
        "pick_short / (pick_short + fulfillment) events in the 28-day window (0 when none)",
    ),
    Feature(
        "pick_shorts_since_count",
        "int",
        "pick_short events that occurred after the latest cycle count (open evidence)",
    ),
    Feature(
        "hours_since_last_pick_short",
        "float",
        "hours from the latest pick_short after the latest count (from first event if none)",
    ),
    Feature("last_count_variance", "float", "counted − book at the latest count (0 if none)"),
    Feature(
        "mean_abs_count_variance",
        "float",
        "mean |variance| over counts after the opening balance (0 if none)",
    ),
    Feature("returns_28d", "float", "returned units in the 28-day window"),
    Feature("adjustments_28d", "float", "|adjusted| units in the 28-day window"),
    Feature("days_of_cover", "float", "max(on_hand,0) / ewma_daily_sales, capped at 365"),
    Feature("ledger_anomalies", "int", "moves that drove a bucket negative (record errors)"),
    Feature("unit_price", "float", "latest unit_price seen for the key (NaN if never)"),
    Feature(
        "sell_through_since_receipt",
        "float",
        "units sold after the latest receipt/transfer_in ÷ its units (NaN if none)",
    ),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)


#: The attributes of :class:`Activity`, in ``__getstate__`` order (module level: compiled
#: classes have no ``__slots__`` to read back).
ACTIVITY_FIELDS: tuple[str, ...] = (
    "day0",
    "counts",
    "rate_value",
    "rate_ts",
    "first_ts",
    "max_ts",
    "last_sale_ts",
    "last_receipt_ts",
    "last_count_ts",
    "last_receipt_qty",
    "sold_since_receipt",
    "unit_price",
    "pick_short_ts",
)


class Activity:
    """Event-time activity accumulators of one key (sales windows, recency, EWMA rate).

    Day buckets are one typed array of ``_SLOTS`` counters per UTC day, covering the days from
    ``day0`` on: unsigned bytes (5 bytes a day) until a counter outgrows them, then int32, then
    int64 (see ``_bump``): exact, and a fraction of a dict of lists.
    """

    __slots__ = ACTIVITY_FIELDS

    def __init__(self) -> None:
        self.day0 = 0
        self.counts: array | None = None
        self.rate_value = 0.0
        self.rate_ts = NEG_INF
        self.first_ts = POS_INF
        self.max_ts = NEG_INF
        self.last_sale_ts = NEG_INF
        self.last_receipt_ts = NEG_INF
        self.last_count_ts = NEG_INF
        # units of the latest receipt/transfer_in (by event time; receipts at the same instant
        # add up) and units sold (sale, fulfillment) that occurred after it and arrived since
        self.last_receipt_qty = 0
        self.sold_since_receipt = 0
        self.unit_price = NAN
        # event times of pick_shorts not yet superseded by a cycle count (evidence still open)
        self.pick_short_ts: tuple[float, ...] = ()

    def __getstate__(self) -> tuple:
        # the counters travel as (typecode, bytes): pickling an array object costs ~10x more
        state = _activity_state(self)
        counts = state[1]
        packed = None if counts is None else (counts.typecode, counts.tobytes())
        return (state[0], packed, *state[2:])

    def __setstate__(self, state: tuple) -> None:
        for name, value in zip(ACTIVITY_FIELDS, state, strict=True):
            setattr(self, name, value)
        if type(self.counts) is tuple:  # (typecode, bytes), see __getstate__
            typecode, raw = self.counts
            self.counts = array(typecode, raw)

    def observe(self, event: InventoryEvent) -> None:
        ts = event.occurred_ts
        if ts < self.first_ts:
            self.first_ts = ts
        if ts > self.max_ts:
            new_day = ts // DAY_S != self.max_ts // DAY_S
            self.max_ts = ts
            if new_day:
                self._prune()
        if event.unit_price is not None:
            self.unit_price = event.unit_price
        etype, q = event.event_type, event.quantity
        if etype in _SALE_TYPES and q > 0:
            if ts > self.last_sale_ts:
                self.last_sale_ts = ts
            if ts > self.last_receipt_ts:
                self.sold_since_receipt += q
            self._add_rate(ts, q)
        elif etype in _RECEIPT_TYPES and q > 0:
            if ts > self.last_receipt_ts:
                self.last_receipt_ts = ts
                self.last_receipt_qty = q
                self.sold_since_receipt = 0
            elif ts == self.last_receipt_ts:
                self.last_receipt_qty += q
        elif etype is EventType.CYCLE_COUNT:
            if ts > self.last_count_ts:
                self.last_count_ts = ts
                self.pick_short_ts = tuple(t for t in self.pick_short_ts if t > ts)
        elif etype is EventType.PICK_SHORT and ts > self.last_count_ts:
            self.pick_short_ts = (*self.pick_short_ts, ts)
        if ts < self.max_ts - ALLOWED_LATENESS_S:
            return
        slot = _SLOT_OF.get(etype)
        if slot is None:
            return
        at = self._slot_base(ts)
        if slot == _ADJ:
            q = abs(q)
        elif slot == _PICK_SHORT:
            q = 1
        self._bump(at + slot, q)
        if etype is EventType.FULFILLMENT:
            self._bump(at + _PICK_OK, 1)

    def _bump(self, index: int, amount: int) -> None:
        """counts[index] += amount, widening the counter type when the value outgrows it."""
        counts = self.counts
        assert counts is not None
        while True:  # one step may not be enough: a byte counter can jump past int32 at once
            try:
                counts[index] += amount
                return
            except OverflowError:
                wider = _WIDER.get(counts.typecode)
                if wider is None:
                    raise  # beyond int64 units in one day: no honest counter for that
                self.counts = counts = array(wider, counts)

    def _slot_base(self, ts: float) -> int:
        """Index of the first counter of ``ts``'s UTC day, growing the array as needed."""
        day = int(ts // DAY_S)
        counts = self.counts
        if counts is None:
            self.day0, self.counts = day, array("B", bytes(_SLOTS))
            return 0
        size = counts.itemsize * _SLOTS
        if day < self.day0:
            self.counts = counts = array(counts.typecode, bytes(size * (self.day0 - day))) + counts
            self.day0 = day
        offset = day - self.day0
        missing = offset + 1 - len(counts) // _SLOTS
        if missing > 0:
            counts.frombytes(bytes(size * missing))
        return offset * _SLOTS

    def _prune(self) -> None:
        oldest = int((self.max_ts - ALLOWED_LATENESS_S) // DAY_S)
        if self.counts is not None and self.day0 < oldest:
            drop = (oldest - self.day0) * _SLOTS
            self.counts = self.counts[drop:] if drop < len(self.counts) else None
            self.day0 = oldest

    def _add_rate(self, ts: float, q: int) -> None:
        tau = RATE_TAU_DAYS * DAY_S
        if ts >= self.rate_ts:
            decay = math.exp(-(ts - self.rate_ts) / tau) if self.rate_ts > NEG_INF else 0.0
            self.rate_value = self.rate_value * decay + q / RATE_TAU_DAYS
            self.rate_ts = ts
        else:
            self.rate_value += q / RATE_TAU_DAYS * math.exp(-(self.rate_ts - ts) / tau)

    def rate_at(self, ts: float) -> float:
        """EWMA sales rate (units/day) at ``ts`` (clamped to the newest sale)."""
        if self.rate_ts == NEG_INF:
            return 0.0
        ts = max(ts, self.rate_ts)
        tau = RATE_TAU_DAYS * DAY_S
        raw = self.rate_value * math.exp(-(ts - self.rate_ts) / tau)
        warm = 1.0 - math.exp(-max(ts - self.first_ts, 0.0) / tau)
        return raw / max(warm, MIN_WARMUP)

    def window(self, as_of: float, days: int, slot: int) -> float:
        """Sum of ``slot`` over (as_of − days, as_of], oldest partial UTC day pro-rated."""
        counts = self.counts
        if counts is None:
            return 0.0
        start = as_of - days * DAY_S
        first_day, last_day = int(start // DAY_S), int(as_of // DAY_S)
        total = 0.0
        lo = max(first_day, self.day0)
        hi = min(last_day, self.day0 + len(counts) // _SLOTS - 1)
        for day in range(lo, hi + 1):
            value = counts[(day - self.day0) * _SLOTS + slot]
            if day == first_day:
                total += value * (1.0 - (start - day * DAY_S) / DAY_S)
            else:
                total += value
        return total


_activity_state = attrgetter(*ACTIVITY_FIELDS)
assert ACTIVITY_FIELDS[1] == "counts"  # __getstate__ packs it


def _hours(as_of: float, ts: float, fallback: float) -> float:
    ref = ts if ts > -math.inf else fallback
    if ref == math.inf:
        return 0.0
    return max(as_of - ref, 0.0) / HOUR_S


class KeyState:
    """Ledger position + activity of one (sku, location): the unit of keyed stream state."""

    __slots__ = ("sku", "location", "position", "activity", "duplicates")

    def __init__(self, sku: str = "", location: str = "") -> None:
        # interned: a sku recurs at every location and a location at every sku
        self.sku = sys.intern(sku)
        self.location = sys.intern(location)
        self.position = Position()
        self.activity = Activity()
        self.duplicates = 0

    def __getstate__(self) -> tuple:
        """The whole state as plain immutable data: ``(sku, location, duplicates, position
        state, activity state)``. Pickles as one object; the stream's recovery snapshot."""
        return (
            self.sku,
            self.location,
            self.duplicates,
            self.position.__getstate__(),
            self.activity.__getstate__(),
        )

    def __setstate__(self, state: tuple) -> None:
        sku, location, self.duplicates, position, activity = state
        self.sku, self.location = sys.intern(sku), sys.intern(location)
        self.position = Position()
        self.position.__setstate__(position)
        self.activity = Activity()
        self.activity.__setstate__(activity)

    @classmethod
    def from_state(cls, state: tuple) -> KeyState:
        """The :class:`KeyState` whose ``__getstate__()`` was ``state``."""
        restored = cls(state[0], state[1])
        restored.__setstate__(state)
        return restored

    def apply(self, item: InventoryEvent | TransitSettlement) -> Outcome:
        """Apply an event (ledger, then features) or a transit settlement (ledger only).

        Duplicates change nothing and are counted in ``duplicates``.
        """
        if isinstance(item, TransitSettlement):
            outcome = self.position.apply_settlement(item)
        else:
            outcome = self.position.apply(item)
            if outcome is not Outcome.DUPLICATE:
                self.activity.observe(item)
        if outcome is Outcome.DUPLICATE:
            self.duplicates += 1
        return outcome

    @property
    def last_event_ts(self) -> float:
        return self.activity.max_ts

    def snapshot(self, as_of: float) -> dict[str, Any]:
        """One feature row as of ``as_of`` (POSIX seconds, UTC). Keys: sku, location, FEATURES."""
        pos, act = self.position, self.activity
        rate = act.rate_at(as_of)
        ref = max(act.last_sale_ts, act.last_receipt_ts, act.last_count_ts)
        if ref == -math.inf:
            ref = act.first_ts if act.first_ts < math.inf else as_of
        expected = act.rate_at(ref) * max(as_of - ref, 0.0) / DAY_S
        pick_short = act.window(as_of, WINDOW_DAYS, _PICK_SHORT)
        pick_ok = act.window(as_of, WINDOW_DAYS, _PICK_OK)
        n_var = pos.counts_with_variance
        on_hand = pos.on_hand
        return {
            "sku": self.sku,
            "location": self.location,
            "on_hand": on_hand,
            "reserved": pos.reserved,
            "in_transit": pos.in_transit,
            "damaged": pos.damaged,
            "quarantined": pos.quarantined,
            "returned_pending": pos.returned_pending,
            "atp": pos.available_to_promise(),
            "sales_1d": act.window(as_of, 1, _SALES),
            "sales_7d": act.window(as_of, 7, _SALES),
            "sales_28d": act.window(as_of, WINDOW_DAYS, _SALES),
            "ewma_daily_sales": rate,
            "hours_since_last_sale": _hours(as_of, act.last_sale_ts, act.first_ts),
            "hours_since_last_receipt": _hours(as_of, act.last_receipt_ts, act.first_ts),
            "hours_since_last_count": _hours(as_of, act.last_count_ts, act.first_ts),
            "expected_sales_since_last_sale": expected,
            "zero_sales_probability": math.exp(-expected),
            "pick_short_28d": pick_short,
            "pick_short_rate_28d": pick_short / (pick_short + pick_ok) if pick_short else 0.0,
            "pick_shorts_since_count": len(act.pick_short_ts),
            "hours_since_last_pick_short": _hours(
                as_of, max(act.pick_short_ts, default=-math.inf), act.first_ts
            ),
            "last_count_variance": float(pos.last_count_variance or 0),
            "mean_abs_count_variance": pos.abs_variance_sum / n_var if n_var else 0.0,
            "returns_28d": act.window(as_of, WINDOW_DAYS, _RETURNS),
            "adjustments_28d": act.window(as_of, WINDOW_DAYS, _ADJ),
            "days_of_cover": min(max(on_hand, 0) / rate, MAX_DAYS_OF_COVER)
            if rate > 0
            else (MAX_DAYS_OF_COVER if on_hand > 0 else 0.0),
            "ledger_anomalies": pos.anomalies,
            "unit_price": act.unit_price,
            "sell_through_since_receipt": act.sold_since_receipt / act.last_receipt_qty
            if act.last_receipt_qty > 0
            else NAN,
        }


@dataclass(frozen=True, slots=True)
class FeatureColumns:
    """The snapshots of many keys, column by column (see :func:`feature_columns`)."""

    sku: list[str]
    location: list[str]
    #: one per :data:`FEATURES` entry, in its order: typecode ``"d"`` (float64) for a float
    #: feature, ``"q"`` (int64) for an int one
    values: tuple[array[Any], ...]


def feature_columns(states: Iterable[KeyState], as_of: float) -> FeatureColumns | None:
    """Every row ``state.snapshot(as_of)`` of ``states`` (in their order), stored by column:
    8 bytes a value instead of a dict per key. The snapshot stays the one definition of a
    feature; each row's dict is dropped as soon as its values are copied.

    None when a value does not fit its column unchanged, i.e. a float feature that is not a
    Python float or an int one that is not a Python int within int64: pandas would type such a
    column otherwise (int64 for all-int, uint64 or object beyond int64), so the caller builds
    the table from the snapshots themselves.
    """
    skus: list[str] = []
    locations: list[str] = []
    values: tuple[array[Any], ...] = tuple(
        array("d" if f.dtype == "float" else "q") for f in FEATURES
    )
    kinds = tuple(float if f.dtype == "float" else int for f in FEATURES)
    for state in states:
        row = state.snapshot(as_of)
        skus.append(row["sku"])
        locations.append(row["location"])
        for name, kind, column in zip(FEATURE_NAMES, kinds, values, strict=True):
            value = row[name]
            if type(value) is not kind:
                return None
            try:
                column.append(value)
            except OverflowError:  # an int beyond int64
                return None
    return FeatureColumns(skus, locations, values)


#: Tags the recovery snapshot of a :class:`Book` (see :meth:`Book.__getstate__`).
BOOK_STATE_VERSION = "book-v2"
#: A transfer reference is forgotten once its sku's transfers have moved this far (event time)
#: past the reference's last event: a side arriving later settles nothing. Bounds the matchers
#: a long-running stream keeps; long enough for slow shipments (sea freight ~30–45 days).
TRANSFER_HORIZON_S = 60 * DAY_S


class Book:
    """The keyed state of a set of skus: a :class:`KeyState` per (sku, location) and a
    :class:`TransferMatcher` per (sku, reference), applied in arrival order.

    The one place events meet state: the replay (``score``, training sets, tests) keeps one book
    for the whole stream; the dataflow keeps one per sku (its routing key), so a transfer's two
    sides and its settlement meet in one state, in the order they arrived, with no message
    between steps to race. Transfers match within a sku only, and everything here that depends
    on time (forgetting old references) is measured per sku, so the two give the same result.
    """

    __slots__ = ("states", "transfers", "clocks")

    def __init__(self) -> None:
        self.states: dict[str, KeyState] = {}
        #: sku → reference → matcher
        self.transfers: dict[str, dict[str, TransferMatcher]] = {}
        #: sku → (newest transfer event time, time of the last sweep for old references)
        self.clocks: dict[str, tuple[float, float]] = {}

    @property
    def matchers(self) -> dict[str, TransferMatcher]:
        """Every open transfer's matcher, by ``state_key(sku, reference)``."""
        return {
            state_key(sku, reference): matcher
            for sku, refs in self.transfers.items()
            for reference, matcher in refs.items()
        }

    def state(self, key: str, sku: str, location: str) -> KeyState:
        """The state of ``key`` (= ``state_key(sku, location)``), created empty if new."""
        found = self.states.get(key)
        if found is None:
            found = self.states[key] = KeyState(sku, location)
        return found

    def apply(self, event: InventoryEvent) -> Outcome:
        """Apply ``event`` to its key, then settle transit if it completes a transfer."""
        return self._apply(event, None)

    def apply_batch(
        self, events: list[InventoryEvent], track: bool = True
    ) -> dict[str, InventoryEvent | None] | None:
        """Apply ``events`` in order; return the keys they changed, each with the last event
        that changed it (None: only a transit settlement did). ``track=False``: return None
        and keep no such record (the dataflow's ``emit="final"``)."""
        if not track:
            for event in events:
                self._apply(event, None)
            return None
        changed: dict[str, InventoryEvent | None] = {}
        for event in events:
            self._apply(event, changed)
        return changed

    # -- the dataflow's view (also :class:`pipelines.native_book` ``NativeBook``'s API) -------
    def view(self, key: str) -> tuple[str, str, int, float]:
        """``(sku, location, duplicates, last_event_ts)`` of ``key``."""
        state = self.states[key]
        return (state.sku, state.location, state.duplicates, state.last_event_ts)

    def keys(self) -> list[str]:
        """The state keys, in creation order."""
        return list(self.states)

    def snapshot(self, key: str, as_of: float) -> dict[str, Any]:
        """:meth:`KeyState.snapshot` of ``key``."""
        return self.states[key].snapshot(as_of)

    def key_states(self) -> list[tuple]:
        """Every key's :meth:`KeyState.__getstate__`, in creation order."""
        return [state.__getstate__() for state in self.states.values()]

    def _apply(
        self, event: InventoryEvent, changed: dict[str, InventoryEvent | None] | None
    ) -> Outcome:
        key = state_key(event.sku, event.location)
        outcome = self.state(key, event.sku, event.location).apply(event)
        if changed is not None and outcome is not Outcome.DUPLICATE:
            changed[key] = event
        # every transfer reaches its matcher, duplicate or not: the matcher dedupes by itself
        if is_transfer(event):
            for settlement in self._matcher(event).observe(event):
                skey = settlement.key
                target = self.state(skey, settlement.sku, settlement.location)
                if target.apply(settlement) is not Outcome.DUPLICATE and changed is not None:
                    if skey not in changed:
                        changed[skey] = None
        return outcome

    def _matcher(self, event: InventoryEvent) -> TransferMatcher:
        """The matcher of the event's (sku, reference), after forgetting the sku's references
        idle for :data:`TRANSFER_HORIZON_S` (swept at most once per day of the sku's time)."""
        sku, reference, ts = event.sku, event.reference, event.occurred_ts
        assert reference is not None  # is_transfer: only transfers with a reference
        refs = self.transfers.get(sku)
        if refs is None:
            refs = self.transfers[sku] = {}
            self.clocks[sku] = (ts, ts)
        else:
            newest, swept = self.clocks[sku]
            if ts > newest:
                newest = ts
                if newest - swept >= DAY_S:
                    horizon = newest - TRANSFER_HORIZON_S
                    for old in [r for r, m in refs.items() if m.last_ts < horizon]:
                        del refs[old]
                    swept = newest
                self.clocks[sku] = (newest, swept)
        matcher = refs.get(reference)
        if matcher is None:
            matcher = refs[reference] = TransferMatcher()
        return matcher

    def __getstate__(self) -> tuple:
        """Plain immutable data: ``(BOOK_STATE_VERSION, ((key, KeyState state), ...),
        ((sku, reference, TransferMatcher state), ...), ((sku, newest, swept), ...))``; the
        dataflow's recovery snapshot."""
        return (
            BOOK_STATE_VERSION,
            tuple((key, state.__getstate__()) for key, state in self.states.items()),
            tuple(
                (sku, reference, matcher.__getstate__())
                for sku, refs in self.transfers.items()
                for reference, matcher in refs.items()
            ),
            tuple((sku, newest, swept) for sku, (newest, swept) in self.clocks.items()),
        )

    def __setstate__(self, state: tuple) -> None:
        if len(state) != 4 or state[0] != BOOK_STATE_VERSION:
            raise ValueError(f"not a {BOOK_STATE_VERSION} snapshot: {str(state)[:80]!r}")
        self.states = {key: KeyState.from_state(value) for key, value in state[1]}
        self.transfers = {}
        for sku, reference, matcher in state[2]:
            self.transfers.setdefault(sku, {})[reference] = TransferMatcher.from_state(matcher)
        self.clocks = {sku: (newest, swept) for sku, newest, swept in state[3]}
        for sku in self.clocks:  # a sku whose references were all forgotten
            self.transfers.setdefault(sku, {})

    @classmethod
    def from_state(cls, state: tuple) -> Book:
        """The :class:`Book` whose ``__getstate__()`` was ``state``."""
        restored = cls()
        restored.__setstate__(state)
        return restored
