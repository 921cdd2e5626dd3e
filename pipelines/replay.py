"""Replay an event log through the ledger and feature code without a stream engine.

The same :class:`~pipelines.features.Book` the dataflow runs (per sku there), applied in file
(arrival) order in one process. Used by ``shelfguard score``, the
training-set builder and the tests as the reference the dataflow must reproduce.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.events import InventoryEvent, Rejection, parse_event
from pipelines.features import FEATURE_NAMES, FEATURES, Book, KeyState, feature_columns
from pipelines.ledger import DAY_S, Outcome, TransferMatcher

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Replay:
    """Keyed state after a replay, plus what was rejected.

    One :class:`~pipelines.features.Book` for the whole stream; the dataflow keeps one per sku
    and applies each the same way, in arrival order.
    """

    book: Book = field(default_factory=Book)
    rejections: list[Rejection] = field(default_factory=list)
    events: int = 0
    duplicates: int = 0

    @property
    def states(self) -> dict[str, KeyState]:
        """Every key's state, by :func:`~pipelines.events.state_key`."""
        return self.book.states

    @property
    def matchers(self) -> dict[str, TransferMatcher]:
        """Every transfer's matcher, by ``state_key(sku, reference)``."""
        return self.book.matchers

    def apply(self, event: InventoryEvent) -> Outcome:
        outcome = self.book.apply(event)
        if outcome is Outcome.DUPLICATE:
            self.duplicates += 1
        else:
            self.events += 1
        return outcome

    def feed(self, payloads: Iterable[bytes | str]) -> None:
        for raw in payloads:
            parsed = parse_event(raw)
            if isinstance(parsed, Rejection):
                self.rejections.append(parsed)
            else:
                self.apply(parsed)

    @property
    def as_of(self) -> float:
        """The stream's end (POSIX s): see :func:`stream_end`."""
        return stream_end(s.last_event_ts for s in self.states.values())

    def feature_table(self, as_of: float | None = None) -> pd.DataFrame:
        return feature_table(self.states.values(), self.as_of if as_of is None else as_of)


#: A cluster of keys whose newest event lies this far beyond every other key's newest event is
#: taken for a clock error when finding the stream's end (:func:`stream_end`).
FUTURE_OUTLIER_GAP_S = 28 * DAY_S
#: At most this share of the keys (and at least one) may be set aside as clock errors.
FUTURE_OUTLIER_SHARE = 0.001
#: Fewer keys than this: no key is set aside (a small file may legitimately end unevenly).
FUTURE_OUTLIER_MIN_KEYS = 20


def stream_end(times: Iterable[float]) -> float:
    """The time a stream's features are computed at: the newest event time over its keys
    (``times``: each key's newest event time, POSIX s), ignoring a mistyped future.

    One event dated years ahead (a mistyped year, a device whose clock reset) is a valid event:
    it applies to its key's ledger. But taken as the stream's end it would age every other key's
    features by years (hours since the last sale, expected sales in the silence) and every risk
    score with them. So the newest keys are set aside when they lie more than
    :data:`FUTURE_OUTLIER_GAP_S` beyond all the others, if they are at most
    :data:`FUTURE_OUTLIER_SHARE` of the keys (at least one) and the stream has at least
    :data:`FUTURE_OUTLIER_MIN_KEYS` keys. A real stream's keys end close together, so this sets
    nothing aside there. NaN for no key (or no finite time).
    """
    ordered = sorted((t for t in times if math.isfinite(t)), reverse=True)
    if not ordered:
        return math.nan
    if len(ordered) < FUTURE_OUTLIER_MIN_KEYS:
        return ordered[0]
    limit = max(1, int(len(ordered) * FUTURE_OUTLIER_SHARE))
    cut = 0
    for i in range(1, limit + 1):
        if ordered[i - 1] - ordered[i] > FUTURE_OUTLIER_GAP_S:
            cut = i
    return ordered[cut]


def iter_lines(path: Path) -> Iterator[bytes]:
    """Non-blank lines of a JSONL file, without their line ending."""
    with path.open("rb") as fh:
        for line in fh:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line


def as_of_timestamp(as_of: float) -> pd.Timestamp:
    """``as_of`` (POSIX s) as a UTC Timestamp: nanosecond resolution, pandas' default, within
    its years 1677-2262; microsecond resolution beyond them, where the contract still allows
    events (years 1-9999), instead of ``OutOfBoundsDatetime``."""
    try:
        return pd.Timestamp(as_of, unit="s", tz="UTC")
    except pd.errors.OutOfBoundsDatetime:
        return pd.Timestamp(_EPOCH + timedelta(seconds=as_of))


def feature_table(states: Iterable[KeyState], as_of: float, sort: bool = True) -> pd.DataFrame:
    """One row per key, features as of ``as_of`` (POSIX s), plus ``as_of`` as a UTC timestamp.

    Rows are :meth:`KeyState.snapshot` (``sort``: ordered by sku, then location, as ``str``
    compares them; else in the order of ``states``), built column by column
    (:func:`~pipelines.features.feature_columns`): ~0.4 KB a key at the peak instead of ~2.6 KB
    for a dict per key and the frame pandas makes of them (250k keys: +83–89 MB, not +650 MB).
    """
    keys = sorted(states, key=_sku_location) if sort else list(states)
    if not keys:  # no key (an empty or all-rejected stream): the same columns, no rows
        return empty_feature_table()
    columns = feature_columns(keys, as_of)
    if columns is None:  # a value pandas types otherwise (see feature_columns): rows as they are
        frame = pd.DataFrame([s.snapshot(as_of) for s in keys])
    else:
        data: dict[str, Any] = {"sku": columns.sku, "location": columns.location}
        for name, values in zip(FEATURE_NAMES, columns.values, strict=True):
            data[name] = np.frombuffer(values, dtype=_DTYPES[values.typecode])
        frame = pd.DataFrame(data, copy=False)  # the frame stacks them into its own blocks
    frame.insert(2, "as_of", as_of_timestamp(as_of))
    return frame


_DTYPES = {"d": np.float64, "q": np.int64}
_sku_location = attrgetter("sku", "location")


def empty_feature_table() -> pd.DataFrame:
    """The feature table of a stream with no key: every column, typed, and no rows."""
    columns: dict[str, pd.Series] = {
        "sku": pd.Series(dtype=object),
        "location": pd.Series(dtype=object),
        "as_of": pd.Series(dtype="datetime64[ns, UTC]"),
    }
    for feature in FEATURES:
        columns[feature.name] = pd.Series(dtype="int64" if feature.dtype == "int" else "float64")
    return pd.DataFrame(columns)


def replay_file(path: Path) -> Replay:
    """Replay a JSONL event file in file order."""
    replay = Replay()
    replay.feed(iter_lines(path))
    return replay
