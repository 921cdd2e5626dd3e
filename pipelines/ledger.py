"""The inventory ledger: exact positions of one (sku, location), as one explicit transition table.

Pure Python over plain data: no I/O, no clock, no bytewax or Kafka. The stream, the training-set
builder and the tests all run this code.

Buckets (integer units):
- ``on_hand``          units the record says are in the building and sellable or pickable;
- ``reserved``         units promised to orders (still on hand until fulfilled);
- ``in_transit``       units shipped *from* this location by ``transfer_out`` and not yet
                       confirmed received at the destination;
- ``damaged``          units moved out of on-hand by a ``damaged`` adjustment;
- ``quarantined``      units held by a ``quarantine`` adjustment;
- ``returned_pending`` customer returns waiting for inspection.

Rules (see ``TRANSITIONS`` and the README table):
- A ``cycle_count`` sets on-hand to the counted quantity *as of its occurred_at*: the count saw
  every event that occurred at or before that instant. Events that occurred strictly later still
  apply on top, whatever their arrival order; events that occurred at or before the latest count
  but arrive after it change no on-hand (their other buckets still move). A count older than the
  latest applied count is stale: recorded, on-hand unchanged.
- Returns go to on-hand when ``reason`` is absent or ``inspection_pass``; any other reason parks
  them in ``returned_pending``. An ``adjustment`` with reason ``inspection_pass`` moves |q| from
  returned-pending to on-hand, ``inspection_fail`` from returned-pending to damaged.
- Moves between buckets (``damaged``, ``quarantine``, ``release_quarantine``, inspection) use
  |quantity|, so the sign the source chose does not matter. Any other adjustment adds q (signed).
- A move that drives a bucket negative is applied and counted as an anomaly: negative stock is
  evidence of a record error, never a reason to refuse an event.
- Applying the same ``event_id`` twice changes nothing (within the dedupe horizon, below).

Memory is bounded: event ids are remembered for at least ``DEDUPE_HORIZON_S`` (7 days) of the key's
event-time progress, and on-hand deltas after the latest count for ``COUNT_LATENESS_S`` (14 days);
a count that arrives later than that behind the key's newest event is applied as if the forgotten
deltas occurred before it.
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass
from operator import attrgetter

from pipelines.events import EventType, InventoryEvent
from pipelines.keys import state_key

DAY_S = 86_400.0
DEDUPE_HORIZON_S = 7 * DAY_S
COUNT_LATENESS_S = 14 * DAY_S
NEG_INF = -math.inf  # one shared object: millions of keys start with it
#: Separator of the event ids in a dedupe generation blob (see ``Position._remember``).
_SEP = "\x00"
#: A generation blob longer than this (characters) becomes a set: lookups stay O(1) on hot keys.
BLOB_MAX_CHARS = 1024
#: One on-hand delta after the latest count: (occurred_ts as a double, delta as an int64).
_PC_PAIR = struct.Struct("<dq")


class Bucket(enum.StrEnum):
    ON_HAND = "on_hand"
    RESERVED = "reserved"
    IN_TRANSIT = "in_transit"
    DAMAGED = "damaged"
    QUARANTINED = "quarantined"
    RETURNED_PENDING = "returned_pending"


class Outcome(enum.StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    #: a cycle count older than the latest applied count: variance not applied
    STALE_COUNT = "stale_count"


# Reason codes with a bucket-move meaning; any other reason is a plain signed adjustment.
MOVE_REASONS: dict[str, tuple[Bucket, Bucket]] = {
    "damaged": (Bucket.ON_HAND, Bucket.DAMAGED),
    "quarantine": (Bucket.ON_HAND, Bucket.QUARANTINED),
    "release_quarantine": (Bucket.QUARANTINED, Bucket.ON_HAND),
    "inspection_pass": (Bucket.RETURNED_PENDING, Bucket.ON_HAND),
    "inspection_fail": (Bucket.RETURNED_PENDING, Bucket.DAMAGED),
}
RETURN_TO_SHELF_REASONS = frozenset({None, "inspection_pass"})

#: The transition table: per event type, the bucket deltas per unit of quantity.
#: ``adjustment`` and ``return`` are refined by ``reason`` in :func:`deltas_for`;
#: ``cycle_count`` is the as-of set described above; ``pick_short`` is evidence only.
TRANSITIONS: dict[EventType, tuple[tuple[Bucket, int], ...]] = {
    EventType.SALE: ((Bucket.ON_HAND, -1),),
    EventType.RETURN: ((Bucket.ON_HAND, +1),),
    EventType.RECEIPT: ((Bucket.ON_HAND, +1),),
    EventType.TRANSFER_OUT: ((Bucket.ON_HAND, -1), (Bucket.IN_TRANSIT, +1)),
    EventType.TRANSFER_IN: ((Bucket.ON_HAND, +1),),
    EventType.ADJUSTMENT: ((Bucket.ON_HAND, +1),),
    EventType.CYCLE_COUNT: (),
    EventType.RESERVATION: ((Bucket.RESERVED, +1),),
    EventType.RESERVATION_RELEASE: ((Bucket.RESERVED, -1),),
    EventType.FULFILLMENT: ((Bucket.ON_HAND, -1), (Bucket.RESERVED, -1)),
    EventType.PICK_SHORT: (),
}


# Per-unit plans precomputed from the table: ((attribute, sign), ...). ``abs`` marks moves.
_PLANS: dict[EventType, tuple[tuple[str, int], ...]] = {
    etype: tuple((bucket.value, sign) for bucket, sign in rows)
    for etype, rows in TRANSITIONS.items()
}
_MOVE_PLANS: dict[str, tuple[tuple[str, int], ...]] = {
    reason: ((src.value, -1), (dst.value, 1)) for reason, (src, dst) in MOVE_REASONS.items()
}
_PENDING_RETURN = ((Bucket.RETURNED_PENDING.value, 1),)


def _plan(event: InventoryEvent) -> tuple[tuple[tuple[str, int], ...], int]:
    """The (attribute, sign) rows for ``event`` and the quantity they multiply."""
    etype, reason = event.event_type, event.reason
    if reason is not None:
        if etype is EventType.ADJUSTMENT and reason in _MOVE_PLANS:
            return _MOVE_PLANS[reason], abs(event.quantity)
        if etype is EventType.RETURN and reason not in RETURN_TO_SHELF_REASONS:
            return _PENDING_RETURN, event.quantity
    return _PLANS[etype], event.quantity


def deltas_for(event: InventoryEvent) -> dict[Bucket, int]:
    """Bucket deltas of a non-count event (the transition table applied to its quantity)."""
    rows, q = _plan(event)
    return {Bucket(attr): sign * q for attr, sign in rows}


#: One dedupe generation: a blob of ids, a set, or (restored from a snapshot) a frozenset.
_Ids = str | set[str] | frozenset[str]


def _holds(ids: _Ids, event_id: str) -> bool:
    """True if ``event_id`` is in one dedupe generation (a blob or a set, see ``_with``)."""
    if type(ids) is str:
        # an id containing the separator is never stored in a blob (it would be ambiguous)
        return bool(ids) and f"{_SEP}{event_id}{_SEP}" in ids and _SEP not in event_id
    return event_id in ids


def _with(ids: _Ids, event_id: str) -> _Ids:
    """The generation ``ids`` with ``event_id`` added (not already in it).

    A generation starts as a blob, ``"\\0id1\\0id2\\0"``: ~1 byte per character of the ids
    instead of a string object and a hash-table slot per id (a set of 5 ids costs ~1 KB).
    It becomes a ``set`` when longer than ``BLOB_MAX_CHARS`` or when an id contains the
    separator. Exact either way: nothing is hashed or truncated.
    """
    if isinstance(ids, set):
        ids.add(event_id)
        return ids
    if isinstance(ids, str):
        if len(ids) <= BLOB_MAX_CHARS and _SEP not in event_id:
            return f"{ids or _SEP}{event_id}{_SEP}"
        grown = set(ids[1:-1].split(_SEP)) if ids else set()
    else:  # a frozen generation (never the current one in practice)
        grown = set(ids)
    grown.add(event_id)
    return grown


@dataclass(frozen=True, slots=True)
class TransitSettlement:
    """Units confirmed received at a transfer's destination: in-transit −q at the source."""

    settle_id: str
    sku: str
    location: str  # the transfer's source location
    quantity: int
    ts: float  # event time (POSIX s) of the transfer side that completed the match

    def __reduce__(self) -> tuple:
        # by constructor: settlements cross worker processes, and a compiled (mypyc) frozen
        # dataclass cannot be rebuilt field by field
        fields = (self.settle_id, self.sku, self.location, self.quantity, self.ts)
        return (TransitSettlement, fields)

    @property
    def key(self) -> str:
        """The routing key of the state to settle (:func:`pipelines.keys.state_key`)."""
        return state_key(self.sku, self.location)


#: The attributes of :class:`Position`, in ``__getstate__`` order (module level: compiled
#: classes have no ``__slots__`` to read back).
POSITION_FIELDS: tuple[str, ...] = (
    "on_hand",
    "reserved",
    "in_transit",
    "damaged",
    "quarantined",
    "returned_pending",
    "risk_hold",
    "safety_stock",
    "count_ts",
    "last_count_variance",
    "counts_with_variance",
    "abs_variance_sum",
    "anomalies",
    "max_ts",
    "_post_count",
    "_seen",
    "_seen_old",
    "_generation_ts",
)


class Position:
    """Ledger state of one (sku, location). Mutable; small in memory and in its pickle.

    Memory layout (one of these per key, millions per process): plain ints for the buckets,
    on-hand deltas after the latest count in two typed arrays (``None`` while there are none),
    and event ids in two generations (see ``_remember``), each a compact string blob until it
    grows large (see ``_with``), instead of an id → time map.
    """

    __slots__ = POSITION_FIELDS

    def __init__(self) -> None:
        self.on_hand = 0
        self.reserved = 0
        self.in_transit = 0
        self.damaged = 0
        self.quarantined = 0
        self.returned_pending = 0
        self.risk_hold = 0
        self.safety_stock = 0
        self.count_ts = NEG_INF
        self.last_count_variance: int | None = None
        self.counts_with_variance = 0
        self.abs_variance_sum = 0
        self.anomalies = 0
        self.max_ts = NEG_INF
        # on-hand deltas of events that occurred after the latest count, in arrival order,
        # packed as ``_PC_PAIR`` records: 16 bytes each, nothing while there are none
        self._post_count = b""
        # event ids seen in the current and the previous dedupe generation (see ``_with``)
        self._seen: _Ids = ""
        self._seen_old: _Ids = ""
        self._generation_ts = NEG_INF

    # -- reading ---------------------------------------------------------------------------
    def available_to_promise(self) -> int:
        """max(0, on_hand − reserved − risk_hold − safety_stock)."""
        return max(0, self.on_hand - self.reserved - self.risk_hold - self.safety_stock)

    def buckets(self) -> dict[str, int]:
        return {b.value: getattr(self, b.value) for b in Bucket}

    def has_seen(self, event_id: str) -> bool:
        return _holds(self._seen, event_id) or _holds(self._seen_old, event_id)

    def __getstate__(self) -> tuple:
        """Plain immutable data (sets frozen): cheap to pickle, safe to hand out as a snapshot."""
        state = _position_state(self)
        if type(self._seen) is not str or type(self._seen_old) is not str:
            state = tuple(frozenset(v) if isinstance(v, set) else v for v in state)
        return state

    def __setstate__(self, state: tuple) -> None:
        for name, value in zip(POSITION_FIELDS, state, strict=True):
            setattr(self, name, value)
        if isinstance(self._seen, frozenset):  # the current generation keeps growing
            self._seen = set(self._seen)

    # -- writing ---------------------------------------------------------------------------
    def apply(self, event: InventoryEvent) -> Outcome:
        """Apply one validated event of this key. Idempotent per ``event_id``."""
        ts = event.occurred_ts
        if self._remember(event.event_id, ts):
            return Outcome.DUPLICATE
        if event.event_type is EventType.CYCLE_COUNT:
            return self._apply_count(ts, event.quantity)
        rows, q = _plan(event)
        for attr, sign in rows:
            delta = sign * q
            if attr == "on_hand":
                if ts <= self.count_ts:
                    continue  # the latest count already saw this unit move
                if delta:
                    self._post_count += _PC_PAIR.pack(ts, delta)
            value = getattr(self, attr) + delta  # self._add, inlined on the hot path
            setattr(self, attr, value)
            if value < 0 and delta < 0:
                self.anomalies += 1
        return Outcome.APPLIED

    def apply_settlement(self, settlement: TransitSettlement) -> Outcome:
        """In-transit −q for a transfer confirmed at its destination. Idempotent per id."""
        if self._remember(settlement.settle_id, settlement.ts):
            return Outcome.DUPLICATE
        self._add("in_transit", -settlement.quantity)
        return Outcome.APPLIED

    def _apply_count(self, ts: float, counted: int) -> Outcome:
        if ts <= self.count_ts:
            return Outcome.STALE_COUNT
        keep = [(t, d) for t, d in _PC_PAIR.iter_unpack(self._post_count) if t > ts]
        after = sum(d for _, d in keep)
        is_opening = self.count_ts == NEG_INF and not self._post_count
        if not is_opening:
            variance = counted - (self.on_hand - after)
            self.last_count_variance = variance
            self.counts_with_variance += 1
            self.abs_variance_sum += abs(variance)
        self.count_ts = ts
        self._keep_post_count(keep)
        self.on_hand = counted + after
        if self.on_hand < 0:
            self.anomalies += 1
        return Outcome.APPLIED

    def _keep_post_count(self, keep: list[tuple[float, int]]) -> None:
        if len(keep) * _PC_PAIR.size != len(self._post_count):
            self._post_count = b"".join(_PC_PAIR.pack(t, d) for t, d in keep)

    def _add(self, attr: str, delta: int) -> None:
        value = getattr(self, attr) + delta
        setattr(self, attr, value)
        if value < 0 and delta < 0:
            self.anomalies += 1

    def _remember(self, event_id: str, ts: float) -> bool:
        """True if ``event_id`` was already applied; otherwise remember it and advance time.

        Ids live in generations: when the key's newest event time has moved
        ``DEDUPE_HORIZON_S`` past the current generation's start, the current set becomes the
        old one and the older one is dropped. An id is therefore remembered for at least
        ``DEDUPE_HORIZON_S`` (and at most twice that) of the key's event-time progress.
        """
        seen, old = self._seen, self._seen_old
        if type(seen) is str and type(old) is str and _SEP not in event_id:
            needle = f"{_SEP}{event_id}{_SEP}"  # _holds for two blobs, one needle
            if needle in seen or (old and needle in old):
                return True
        elif _holds(seen, event_id) or _holds(old, event_id):
            return True
        if ts > self.max_ts:
            self.max_ts = ts
            if self._generation_ts == NEG_INF:
                self._generation_ts = ts
            elif ts - self._generation_ts >= DEDUPE_HORIZON_S:
                self._rotate()
        self._seen = _with(self._seen, event_id)
        return False

    def _rotate(self) -> None:
        self._seen_old = self._seen
        self._seen = ""
        self._generation_ts = self.max_ts
        horizon = self.max_ts - COUNT_LATENESS_S
        pc = self._post_count
        if pc and _PC_PAIR.unpack_from(pc)[0] < horizon:
            # Forget old deltas (on_hand already includes them): a count older than the horizon
            # then treats them as seen by the count, i.e. it applies as of the horizon.
            self._keep_post_count([(t, d) for t, d in _PC_PAIR.iter_unpack(pc) if t >= horizon])


_position_state = attrgetter(*POSITION_FIELDS)


class TransferMatcher:
    """Matches ``transfer_out`` and ``transfer_in`` of one (sku, reference), in any order.

    Each ``transfer_in`` with a reference settles its quantity against the ``transfer_out`` of the
    same sku and reference, producing a :class:`TransitSettlement` for the source location once
    both sides are known. Duplicates of either side produce nothing. One instance per
    (sku, reference), kept by :class:`pipelines.features.Book` (the one place events are applied
    to positions and transfers settled).
    """

    __slots__ = ("source_location", "pending_ins", "seen", "last_ts")

    def __init__(self) -> None:
        self.source_location: str | None = None
        self.pending_ins: list[tuple[str, int]] = []
        self.seen: set[str] = set()
        self.last_ts = NEG_INF  # newest event time (POSIX s) of either side

    def __getstate__(self) -> tuple:
        """Plain immutable data: cheap to pickle, safe to hand out as a snapshot."""
        return (self.source_location, tuple(self.pending_ins), frozenset(self.seen), self.last_ts)

    def __setstate__(self, state: tuple) -> None:
        self.source_location = state[0]
        self.pending_ins, self.seen = list(state[1]), set(state[2])
        self.last_ts = state[3]

    @classmethod
    def from_state(cls, state: tuple) -> TransferMatcher:
        """The :class:`TransferMatcher` whose ``__getstate__()`` was ``state``."""
        restored = cls()
        restored.__setstate__(state)
        return restored

    def observe(self, event: InventoryEvent) -> list[TransitSettlement]:
        if event.event_id in self.seen or event.reference is None:
            return []
        self.seen.add(event.event_id)
        if event.occurred_ts > self.last_ts:
            self.last_ts = event.occurred_ts
        if event.event_type is EventType.TRANSFER_OUT:
            self.source_location = event.location
        elif event.event_type is EventType.TRANSFER_IN:
            self.pending_ins.append((event.event_id, event.quantity))
        else:
            return []
        if self.source_location is None:
            return []
        out = [
            TransitSettlement(
                f"{eid}#settle", event.sku, self.source_location, qty, event.occurred_ts
            )
            for eid, qty in self.pending_ins
        ]
        self.pending_ins = []
        return out


def is_transfer(event: InventoryEvent) -> bool:
    return event.reference is not None and event.event_type in (
        EventType.TRANSFER_OUT,
        EventType.TRANSFER_IN,
    )
