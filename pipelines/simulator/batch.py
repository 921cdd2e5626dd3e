"""Columnar event batches: many events as parallel numpy arrays, plus their code tables.

The engine creates events a day at a time as :class:`EventBatch` columns; delivery adds arrival
times and re-sent copies; :mod:`pipelines.simulator.emit` turns the columns into JSON lines.
Codes are indexes into the tuples below (``EVENT_TYPES[code]`` is the contract's string).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.events import EventType, Source

EVENT_TYPES: tuple[str, ...] = tuple(e.value for e in EventType)
SOURCES: tuple[str, ...] = tuple(s.value for s in Source)


def _codes(names: Sequence[str]) -> dict[str, int]:
    return {name: i for i, name in enumerate(names)}


T = _codes(EVENT_TYPES)  # event type codes, e.g. T["sale"]
SRC = _codes(SOURCES)  # source codes, e.g. SRC["pos"]

#: reason codes; 0 = no reason field
REASONS: tuple[str, ...] = (
    "",
    "pending_inspection",
    "damaged",
    "quarantine",
    "release_quarantine",
    "found",
    "theft",
    "inspection_pass",
    "inspection_fail",
)
R = _codes(REASONS)

#: reference kinds: the text is ``prefix + 8-digit number`` (``OPENING`` has no number); 0 = none
REFERENCE_PREFIXES: tuple[str, ...] = (
    "",
    "OPENING",
    "T",
    "PO",
    "C",
    "O-WEB-",
    "O-CC-",
    "O-MKA-",
    "O-MKB-",
)
REF = _codes(REFERENCE_PREFIXES)
#: the order channels, in the order of their reference kinds (``REF["O-WEB-"] + channel``)
ORDER_CHANNELS: tuple[str, ...] = ("web", "click_collect", "marketplace_a", "marketplace_b")
NO_PRICE = -1


@dataclass(slots=True)
class EventBatch:
    """Events as parallel arrays (one row per event line; a re-sent copy is its own row).

    ``occurred``/``published``/``arrival`` are POSIX seconds (UTC). ``event_no`` numbers the
    business transaction: a re-sent copy keeps it (and so its ``event_id``). ``price_cents`` is
    ``NO_PRICE`` when the event carries no ``unit_price``. ``quantity`` is signed only for
    adjustments. ``published``/``arrival`` stay 0 until :mod:`delivery` sets them.
    """

    event_no: np.ndarray
    event_type: np.ndarray
    source: np.ndarray
    sku: np.ndarray
    location: np.ndarray
    quantity: np.ndarray
    occurred: np.ndarray
    reference_kind: np.ndarray
    reference_no: np.ndarray
    reason: np.ndarray
    price_cents: np.ndarray
    published: np.ndarray
    arrival: np.ndarray

    def __len__(self) -> int:
        return int(self.event_type.shape[0])

    def take(self, index: np.ndarray) -> EventBatch:
        """Rows ``index`` (an integer or boolean index) as a new batch."""
        return EventBatch(**{f.name: getattr(self, f.name)[index] for f in _FIELDS})

    @classmethod
    def concat(cls, batches: Sequence[EventBatch]) -> EventBatch:
        if not batches:
            return cls.empty()
        return cls(
            **{f.name: np.concatenate([getattr(b, f.name) for b in batches]) for f in _FIELDS}
        )

    @classmethod
    def empty(cls) -> EventBatch:
        return cls(**{f.name: np.zeros(0, dtype=np.int64) for f in _FIELDS})


_FIELDS = dataclasses.fields(EventBatch)


def new_events(
    event_type: int,
    source: int | np.ndarray,
    sku: np.ndarray,
    location: int | np.ndarray,
    quantity: int | np.ndarray,
    occurred: np.ndarray,
    *,
    reference_kind: int | np.ndarray = 0,
    reference_no: int | np.ndarray = 0,
    reason: int | np.ndarray = 0,
    price_cents: int | np.ndarray = NO_PRICE,
) -> EventBatch:
    """Events of one type; scalars broadcast to the length of ``sku``.

    ``event_no``, ``published`` and ``arrival`` are left 0: the run numbers events when it
    closes a day and delivery times them.
    """
    n = int(np.shape(sku)[0])

    def col(value: int | np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.asarray(value, dtype=np.int64), (n,)).copy()

    zeros = np.zeros(n, dtype=np.int64)
    return EventBatch(
        event_no=zeros,
        event_type=col(event_type),
        source=col(source),
        sku=col(sku),
        location=col(location),
        quantity=col(quantity),
        occurred=col(occurred),
        reference_kind=col(reference_kind),
        reference_no=col(reference_no),
        reason=col(reason),
        price_cents=col(price_cents),
        published=zeros.copy(),
        arrival=zeros.copy(),
    )
