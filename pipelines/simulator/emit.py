"""Writing a run: JSON lines in arrival order, the daily truth table, the manifest.

Lines are built column-wise with pyarrow string kernels (no per-event ``json.dumps``): every
field is a string column (look-up tables for names and times of day) joined element-wise.
Field order is fixed: ``event_id, event_type, occurred_at, sku, location, quantity, source``,
then ``reference``, ``reason``, ``unit_price`` when present, then ``published_at``. Timestamps
are ISO-8601 UTC with ``Z`` and whole seconds, as :func:`pipelines.events.format_ts` writes them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.simulator.batch import (
    EVENT_TYPES,
    REASONS,
    REF,
    REFERENCE_PREFIXES,
    SOURCES,
    EventBatch,
)
from pipelines.simulator.world import DAY_S, World

_REF_DIGITS = 8
_ID_DIGITS = 10


def _strings(values: Sequence[str]) -> pa.Array:
    return pa.array(list(values), type=pa.string())


def _time_of_day_table() -> pa.Array:
    """``"Thh:mm:ssZ"`` for every second of a day, indexed by second of day."""
    seconds = np.arange(DAY_S)

    def two(values: np.ndarray) -> pa.Array:
        return pc.utf8_lpad(pc.cast(pa.array(values), pa.string()), 2, "0")

    return pc.binary_join_element_wise(
        "T", two(seconds // 3600), ":", two(seconds // 60 % 60), ":", two(seconds % 60), "Z", ""
    )


class LineFormatter:
    """Turns :class:`EventBatch` rows into JSON lines (and Python dicts) of the event contract.

    ``event_id`` is ``"{tag}-{event_no:010d}"``; ``tag`` names the run so that ids of different
    runs never collide.
    """

    def __init__(self, world: World, tag: str) -> None:
        self.world = world
        self.tag = tag
        self._types = _strings(EVENT_TYPES)
        self._sources = _strings(SOURCES)
        self._skus = _strings(world.sku_names)
        self._locations = _strings(world.location_names)
        self._ref_open = _strings(
            ["" if not p else f',"reference":"{p}' for p in REFERENCE_PREFIXES]
        )
        self._reasons = _strings(["" if not r else f',"reason":"{r}"' for r in REASONS])
        self._time_of_day = _time_of_day_table()

    # -- columns ---------------------------------------------------------------------------
    def _timestamps(self, seconds: np.ndarray) -> pa.Array:
        day = (seconds - self.world.start_s) // DAY_S
        unique, inverse = np.unique(day, return_inverse=True)
        dates = _strings(
            [
                datetime.fromtimestamp(self.world.start_s + int(d) * DAY_S, tz=UTC)
                .date()
                .isoformat()
                for d in unique
            ]
        )
        return pc.binary_join_element_wise(
            dates.take(pa.array(inverse.astype(np.int64))),
            self._time_of_day.take(pa.array(seconds - (self.world.start_s + day * DAY_S))),
            "",
        )

    @staticmethod
    def _padded(numbers: np.ndarray, width: int) -> pa.Array:
        return pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width, "0")

    def event_ids(self, event_no: np.ndarray) -> pa.Array:
        return pc.binary_join_element_wise(f"{self.tag}-", self._padded(event_no, _ID_DIGITS), "")

    def _references(self, kind: np.ndarray, number: np.ndarray) -> pa.Array:
        numbered = pa.array(kind > REF["OPENING"])
        digits = pc.if_else(numbered, self._padded(number, _REF_DIGITS), "")
        close = pc.if_else(pa.array(kind > 0), '"', "")
        return pc.binary_join_element_wise(self._ref_open.take(pa.array(kind)), digits, close, "")

    @staticmethod
    def _prices(cents: np.ndarray) -> pa.Array:
        has = pa.array(cents >= 0)
        safe = np.maximum(cents, 0)
        text = pc.binary_join_element_wise(
            ',"unit_price":',
            pc.cast(pa.array(safe // 100), pa.string()),
            ".",
            pc.utf8_lpad(pc.cast(pa.array(safe % 100), pa.string()), 2, "0"),
            "",
        )
        return pc.if_else(has, text, "")

    def lines(self, batch: EventBatch) -> pa.Array:
        """One JSON object per row, each ending in ``"\\n"`` (a pyarrow string array)."""
        if len(batch) == 0:
            return pa.array([], type=pa.string())
        return pc.binary_join_element_wise(
            '{"event_id":"',
            self.event_ids(batch.event_no),
            '","event_type":"',
            self._types.take(pa.array(batch.event_type)),
            '","occurred_at":"',
            self._timestamps(batch.occurred),
            '","sku":"',
            self._skus.take(pa.array(batch.sku)),
            '","location":"',
            self._locations.take(pa.array(batch.location)),
            '","quantity":',
            pc.cast(pa.array(batch.quantity), pa.string()),
            ',"source":"',
            self._sources.take(pa.array(batch.source)),
            '"',
            self._references(batch.reference_kind, batch.reference_no),
            self._reasons.take(pa.array(batch.reason)),
            self._prices(batch.price_cents),
            ',"published_at":"',
            self._timestamps(batch.published),
            '"}\n',
            "",
        )

    def records(self, batch: EventBatch) -> list[dict[str, Any]]:
        """The JSON objects of the rows as dicts (same content as their lines)."""
        return [json.loads(line) for line in self.lines(batch).to_pylist()]


def _line_bytes(lines: pa.Array) -> bytes:
    """The concatenated UTF-8 bytes of a string array (its lines already end in newline)."""
    if len(lines) == 0:
        return b""
    offsets = np.frombuffer(
        lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4
    )
    return lines.buffers()[2].to_pybytes()[offsets[0] : offsets[-1]]


class EventLogWriter:
    """Writes ``events.jsonl`` sorted by arrival time (ties: the order rows were added).

    Rows are held until :meth:`flush` is told that nothing added later can arrive before
    ``before`` (the engine's events of day d+1 occur, so arrive, at or after its 00:00).
    """

    def __init__(self, path: Path, formatter: LineFormatter) -> None:
        self.formatter = formatter
        self._file: BinaryIO = path.open("wb")
        self._batches: list[EventBatch] = []
        self._extra_arrival: list[int] = []
        self._extra_lines: list[str] = []
        self._seq: list[np.ndarray] = []
        self._extra_seq: list[int] = []
        self._next_seq = 0
        self.lines_written = 0

    def add(self, batch: EventBatch, extra: Sequence[tuple[int, str]] = ()) -> None:
        """Queue event rows and extra raw lines ``(arrival, text without newline)``."""
        self._batches.append(batch)
        self._seq.append(np.arange(self._next_seq, self._next_seq + len(batch)))
        self._next_seq += len(batch)
        for arrival, text in extra:
            self._extra_arrival.append(arrival)
            self._extra_lines.append(text + "\n")
            self._extra_seq.append(self._next_seq)
            self._next_seq += 1

    def flush(self, before: int | None = None) -> None:
        """Write every queued line that arrives before ``before`` (all when ``None``)."""
        batch = EventBatch.concat(self._batches)
        seq = np.concatenate(self._seq) if self._seq else np.zeros(0, dtype=np.int64)
        x_arrival = np.asarray(self._extra_arrival, dtype=np.int64)
        x_seq = np.asarray(self._extra_seq, dtype=np.int64)
        limit = np.iinfo(np.int64).max if before is None else before
        now, x_now = batch.arrival < limit, x_arrival < limit

        lines = pa.concat_arrays(
            [
                self.formatter.lines(batch.take(now)),
                pa.array(
                    [t for t, keep in zip(self._extra_lines, x_now, strict=True) if keep],
                    type=pa.string(),
                ),
            ]
        )
        arrival = np.concatenate([batch.arrival[now], x_arrival[x_now]])
        order = np.lexsort((np.concatenate([seq[now], x_seq[x_now]]), arrival))
        self._file.write(_line_bytes(lines.take(pa.array(order))))
        self.lines_written += len(order)

        self._batches = [batch.take(~now)]
        self._seq = [seq[~now]]
        keep = np.flatnonzero(~x_now)
        self._extra_arrival = [self._extra_arrival[i] for i in keep]
        self._extra_lines = [self._extra_lines[i] for i in keep]
        self._extra_seq = [self._extra_seq[i] for i in keep]

    def close(self) -> None:
        self.flush(None)
        self._file.close()


# -- truth ---------------------------------------------------------------------------------
TRUTH_INT_COLUMNS: tuple[str, ...] = (
    "recorded_on_hand",
    "recorded_reserved",
    "recorded_in_transit",
    "recorded_damaged",
    "recorded_quarantined",
    "recorded_returned_pending",
    "true_on_hand",
    "shrink_units",
    "misplaced_units",
    "found_units",
    "receiving_error_units",
    "demand_units",
    "sales_units",
    "lost_sales_units",
    "pick_short_units",
    "ordered_units",
    "true_misplaced",
    "inbound",
    "reorder_point",
)
TRUTH_BOOL_COLUMNS: tuple[str, ...] = ("phantom", "promo", "pos_outage", "counted")


def truth_schema() -> pa.Schema:
    """``truth.parquet`` columns: keys, recorded buckets, truth, rates, mechanism counters."""
    key = pa.dictionary(pa.int32(), pa.string())
    return pa.schema(
        [("day", pa.date32()), ("sku", key), ("location", key)]
        + [(name, pa.int32()) for name in TRUTH_INT_COLUMNS[:7]]
        + [
            ("phantom", pa.bool_()),
            ("unit_price", pa.float64()),
            ("daily_demand_rate", pa.float32()),
        ]
        + [(name, pa.int32()) for name in TRUTH_INT_COLUMNS[7:]]
        + [(name, pa.bool_()) for name in TRUTH_BOOL_COLUMNS[1:]]
    )


class TruthWriter:
    """Appends one row group per simulated day to ``truth.parquet``."""

    def __init__(self, path: Path, world: World) -> None:
        self.world = world
        self.schema = truth_schema()
        self._writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        self._skus = _strings(world.sku_names)
        self._locations = _strings(world.location_names)

    def write_day(self, day: int, cols: dict[str, np.ndarray]) -> None:
        n = cols["sku"].shape[0]
        date = datetime.fromtimestamp(self.world.day_start(day), tz=UTC).date()
        arrays: dict[str, pa.Array] = {
            "day": pa.array([date] * n, type=pa.date32()),
            "sku": pa.DictionaryArray.from_arrays(
                pa.array(cols["sku"].astype(np.int32)), self._skus
            ),
            "location": pa.DictionaryArray.from_arrays(
                pa.array(cols["location"].astype(np.int32)), self._locations
            ),
            "unit_price": pa.array(cols["unit_price"].astype(np.float64)),
            "daily_demand_rate": pa.array(cols["daily_demand_rate"].astype(np.float32)),
        }
        for name in TRUTH_INT_COLUMNS:
            arrays[name] = pa.array(cols[name].astype(np.int32))
        for name in TRUTH_BOOL_COLUMNS:
            arrays[name] = pa.array(cols[name].astype(bool))
        self._writer.write_table(
            pa.Table.from_arrays([arrays[f.name] for f in self.schema], schema=self.schema)
        )

    def close(self) -> None:
        self._writer.close()


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
