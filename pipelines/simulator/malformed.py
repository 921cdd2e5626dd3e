"""Malformed extra lines: one kind per reject reason the platform must route to the DLQ.

Each malformed line is a copy of a real event with ONE defect and its own ``event_id`` (so it
can never be mistaken for, or deduplicated against, a valid event). Malformed lines are extra
lines: they never replace an event and never change the truth. Kinds are issued round-robin,
so any run with at least ``len(MALFORMED_KINDS)`` malformed lines has every kind.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from pipelines.events import REQUIRED_FIELDS, RejectReason
from pipelines.simulator.batch import EventBatch
from pipelines.simulator.emit import LineFormatter

#: the reject reason each malformed line must get from :func:`pipelines.events.parse_event`
MALFORMED_KINDS: tuple[RejectReason, ...] = (
    RejectReason.NOT_JSON,
    RejectReason.MISSING_FIELD,
    RejectReason.UNKNOWN_EVENT_TYPE,
    RejectReason.UNKNOWN_SOURCE,
    RejectReason.ZONELESS_TIMESTAMP,
    RejectReason.BAD_TIMESTAMP,
    RejectReason.NEGATIVE_QUANTITY,
    RejectReason.NON_INTEGER_QUANTITY,
    RejectReason.EMPTY_KEY,
)

_encode = msgspec.json.Encoder().encode


def _pick(variant: int, options: tuple[Any, ...]) -> Any:
    return options[variant % len(options)]


def corrupt(record: dict[str, Any], kind: RejectReason, variant: int) -> str:
    """The JSON line of ``record`` with the single defect ``kind`` (``variant`` picks a form)."""
    bad = dict(record)
    ts = str(record["occurred_at"])
    if kind is RejectReason.NOT_JSON:
        text = _encode(record).decode()
        return _pick(variant, (text[: len(text) // 2], text.replace('":', '"=', 1)))
    if kind is RejectReason.MISSING_FIELD:
        bad.pop(_pick(variant, REQUIRED_FIELDS))
    elif kind is RejectReason.UNKNOWN_EVENT_TYPE:
        bad["event_type"] = _pick(variant, ("stock_move", "SALE", "shrink"))
    elif kind is RejectReason.UNKNOWN_SOURCE:
        bad["source"] = _pick(variant, ("legacy_pos", "POS", "edi"))
    elif kind is RejectReason.ZONELESS_TIMESTAMP:
        bad["occurred_at"] = ts.rstrip("Z")
    elif kind is RejectReason.BAD_TIMESTAMP:
        date, clock = ts.rstrip("Z").split("T")
        year, month, day = date.split("-")
        bad["occurred_at"] = _pick(
            variant, (f"{date} {clock}Z", f"{month}/{day}/{year} {clock}", f"{date}T25:61:00Z")
        )
    elif kind is RejectReason.NEGATIVE_QUANTITY:
        if bad["event_type"] == "adjustment":
            bad["event_type"] = "sale"
        bad["quantity"] = -abs(int(bad["quantity"])) - 1
    elif kind is RejectReason.NON_INTEGER_QUANTITY:
        bad["quantity"] = _pick(variant, (1.5, "2", 0.25))
    elif kind is RejectReason.EMPTY_KEY:
        bad[_pick(variant, ("sku", "location"))] = _pick(variant // 2, ("", "   "))
    else:
        raise ValueError(f"no corruption defined for {kind}")
    return _encode(bad).decode()


class MalformedSource:
    """Draws the day's malformed lines; numbers them ``{tag}-x{n:09d}`` across the run."""

    def __init__(self, formatter: LineFormatter, share: float) -> None:
        self.formatter = formatter
        self.share = share
        self.issued = 0

    def lines(self, batch: EventBatch, rng: np.random.Generator) -> list[tuple[int, str]]:
        """``(arrival, line)`` pairs: about ``share`` per row of ``batch``, arriving 0–60 s after
        the copied event."""
        if len(batch) == 0 or self.share <= 0:
            return []
        count = int(rng.binomial(len(batch), self.share))
        rows = rng.integers(0, len(batch), count)
        lags = rng.integers(0, 60, count)
        records = self.formatter.records(batch.take(rows))
        out = []
        for record, row, lag in zip(records, rows.tolist(), lags.tolist(), strict=True):
            n = self.issued
            self.issued += 1
            record["event_id"] = f"{self.formatter.tag}-x{n:09d}"
            kind = MALFORMED_KINDS[n % len(MALFORMED_KINDS)]
            line = corrupt(record, kind, n // len(MALFORMED_KINDS))
            out.append((int(batch.arrival[row]) + lag, line))
        return out
