"""Reconciliation: where the stream's stock positions and an external system's disagree.

Pure comparison over plain data; reading the inputs is :mod:`serving.reconcile_job`'s.

Contract of :func:`reconcile`:
- inputs are on-hand units per (sku, location): the stream's positions (the ledger over the
  events that occurred at or before ``as_of``) and one or more external extracts by source name
  (``erp``, ``wms``), all meant as of the same instant ``as_of`` (UTC);
- the keys compared are the union of the stream's and the extract's; a key missing on one side
  has no figure there (``None``) and counts as 0 units;
- a key mismatches when ``|stream − source| > max(absolute, relative × max(|stream|, |source|))``
  (:class:`Tolerance`); equal figures never mismatch, whatever the tolerance;
- each mismatch carries both figures, ``difference = stream − source`` and the last events
  that touched the key (as given, newest first); the output is sorted by
  (sku, location, source).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Allowed disagreement: ``absolute`` units, or ``relative`` × the larger figure."""

    absolute: float = 0.0
    relative: float = 0.0

    def __post_init__(self) -> None:
        if self.absolute < 0 or self.relative < 0:
            raise ValueError(f"tolerances are ≥ 0, got {self.absolute=} {self.relative=}")

    def allows(self, stream: int, source: int) -> bool:
        allowed = max(self.absolute, self.relative * max(abs(stream), abs(source)))
        return abs(stream - source) <= allowed

    def to_dict(self) -> dict[str, float]:
        return {"absolute": self.absolute, "relative": self.relative}


@dataclass(frozen=True, slots=True)
class Mismatch:
    sku: str
    location: str
    source: str
    as_of: datetime
    stream_on_hand: int | None  # None: the stream has never seen the key
    source_on_hand: int | None  # None: the extract does not list the key
    difference: int  # stream − source, a missing figure counted as 0
    last_events: tuple[dict[str, Any], ...]


def reconcile(
    stream: Mapping[Key, int],
    extracts: Mapping[str, Mapping[Key, int]],
    *,
    as_of: datetime,
    tolerance: Tolerance,
    last_events: Mapping[Key, Sequence[dict[str, Any]]] | None = None,
) -> list[Mismatch]:
    """Every (key, source) whose figures differ beyond ``tolerance`` (see the module contract)."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be UTC-aware")
    events = last_events or {}
    found = []
    for source, extract in extracts.items():
        for key in set(stream) | set(extract):
            ours, theirs = stream.get(key), extract.get(key)
            if tolerance.allows(ours or 0, theirs or 0):
                continue
            found.append(
                Mismatch(
                    sku=key[0],
                    location=key[1],
                    source=source,
                    as_of=as_of,
                    stream_on_hand=ours,
                    source_on_hand=theirs,
                    difference=(ours or 0) - (theirs or 0),
                    last_events=tuple(events.get(key, ())),
                )
            )
    return sorted(found, key=lambda m: (m.sku, m.location, m.source))
