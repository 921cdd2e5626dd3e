"""The reconciliation job (``shelfguard reconcile``): read the inputs, compare, store exceptions.

Inputs:
- the event log (JSONL, the contract of ``pipelines/events.py``): replayed through the ledger
  (:class:`pipelines.replay.Replay`) over the events that *occurred* at or before the extract's
  ``as_of`` — positions are a function of that set of events, so arrival order does not matter;
  rejected lines and duplicates are skipped. The same pass keeps the last ``last_n`` events of
  every key (by event time, newest first);
- balance extracts, ``*.csv`` or ``*.parquet`` with columns ``sku, location, on_hand`` and an
  optional ``as_of`` (ISO-8601 with zone, one value for the whole file). Without ``as_of`` the
  extract is taken as of ``--as-of`` or, failing that, the newest event in the log.

Each run stores what :func:`serving.reconcile.reconcile` finds through
:meth:`serving.service.ActionService.record_exceptions`: idempotent, so the same extract at the
same ``as_of`` never adds a second exception for a key.
"""

from __future__ import annotations

import csv
import heapq
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.events import InventoryEvent, parse_event
from pipelines.ledger import Outcome
from pipelines.replay import Replay, iter_lines
from serving.errors import InvalidRequest
from serving.reconcile import Key, Mismatch, Tolerance, reconcile
from serving.service import ActionService

REQUIRED_COLUMNS = ("sku", "location", "on_hand")


@dataclass(frozen=True)
class Extract:
    source: str  # erp | wms
    path: Path
    positions: dict[Key, int]
    as_of: datetime | None


@dataclass(frozen=True)
class StreamView:
    positions: dict[Key, int]
    last_events: dict[Key, tuple[dict[str, Any], ...]]
    as_of: datetime
    events: int
    rejected: int


@dataclass
class RunResult:
    compared: dict[str, int] = field(default_factory=dict)  # source -> keys in its extract
    mismatches: list[Mismatch] = field(default_factory=list)
    created: list[int] = field(default_factory=list)
    already_known: int = 0


# -- inputs ----------------------------------------------------------------------------------
def _rows(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix.lower() in (".parquet", ".pq"):
        import pandas as pd

        yield from pd.read_parquet(path).to_dict("records")
        return
    with path.open(newline="") as fh:
        yield from csv.DictReader(fh)


def _integer(value: Any, where: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{where}: on_hand {value!r} is not a number") from None
    if not number.is_integer():
        raise InvalidRequest(f"{where}: on_hand {value!r} is not a whole number of units")
    return int(number)


def _timestamp(value: Any, where: str) -> datetime:
    try:
        parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        raise InvalidRequest(f"{where}: as_of {value!r} is not ISO-8601") from None
    if parsed.tzinfo is None:
        raise InvalidRequest(f"{where}: as_of {value!r} has no zone; add Z or an offset")
    return parsed.astimezone(UTC)


def read_extract(path: Path, source: str) -> Extract:
    """A balance extract; :class:`~serving.errors.InvalidRequest` naming the line on bad input
    (missing column, non-integer on_hand, a key listed twice, several as_of values)."""
    if not path.exists():
        raise InvalidRequest(f"{source} extract {path} does not exist")
    positions: dict[Key, int] = {}
    stamps: set[datetime] = set()
    for number, row in enumerate(_rows(path), start=2):
        where = f"{path}:{number}"
        missing = [c for c in REQUIRED_COLUMNS if c not in row]
        if missing:
            raise InvalidRequest(
                f"{path}: columns {', '.join(missing)} missing; need sku, "
                "location, on_hand[, as_of]"
            )
        key = (str(row["sku"]).strip(), str(row["location"]).strip())
        if not all(key):
            raise InvalidRequest(f"{where}: empty sku or location")
        if key in positions:
            raise InvalidRequest(f"{where}: {key[0]} at {key[1]} is listed twice")
        positions[key] = _integer(row["on_hand"], where)
        if row.get("as_of") not in (None, ""):
            stamps.add(_timestamp(row["as_of"], where))
    if len(stamps) > 1:
        raise InvalidRequest(
            f"{path}: {len(stamps)} different as_of values; an extract is one instant — split it"
        )
    return Extract(source, path, positions, next(iter(stamps), None))


def read_stream(events: Path, as_of: datetime | None = None, last_n: int = 5) -> StreamView:
    """Positions from the event log as of ``as_of`` (all events when None) and each key's last
    ``last_n`` events, newest first (see the module docstring)."""
    if not events.exists():
        raise InvalidRequest(f"event file {events} does not exist")
    cut = as_of.timestamp() if as_of is not None else float("inf")
    replay = Replay()
    rejected = 0
    recent: dict[Key, list[tuple[float, int, InventoryEvent]]] = {}
    for seq, raw in enumerate(iter_lines(events)):
        event = parse_event(raw)
        if not isinstance(event, InventoryEvent):
            rejected += 1
            continue
        if event.occurred_ts > cut or replay.apply(event) is Outcome.DUPLICATE:
            continue
        heap = recent.setdefault((event.sku, event.location), [])
        item = (event.occurred_ts, seq, event)
        if len(heap) < last_n:
            heapq.heappush(heap, item)
        elif last_n:
            heapq.heappushpop(heap, item)
    if as_of is None and not replay.states:
        raise InvalidRequest(f"{events} holds no valid event: give the extract's as_of")
    end = as_of or datetime.fromtimestamp(replay.as_of, UTC)
    return StreamView(
        positions={(s.sku, s.location): s.position.on_hand for s in replay.states.values()},
        last_events={
            key: tuple(e.to_dict() for _ts, _seq, e in sorted(heap, reverse=True))
            for key, heap in recent.items()
        },
        as_of=end,
        events=replay.events,
        rejected=rejected,
    )


# -- one run, and a run every interval ---------------------------------------------------------
def run_once(
    service: ActionService,
    events: Path,
    extracts: Sequence[tuple[str, Path]],
    tolerance: Tolerance,
    *,
    as_of: datetime | None = None,
    last_n: int = 5,
    actor: str = "reconcile",
) -> RunResult:
    """Read everything afresh (the files may have been replaced since the last run), compare,
    store new exceptions. Extracts with different ``as_of`` are compared against the stream at
    their own instant."""
    result = RunResult()
    views: dict[datetime | None, StreamView] = {}
    for source, path in extracts:
        extract = read_extract(path, source)
        instant = extract.as_of or as_of
        if instant not in views:
            views[instant] = read_stream(events, instant, last_n)
        view = views[instant]
        result.compared[source] = len(extract.positions)
        result.mismatches += reconcile(
            view.positions,
            {source: extract.positions},
            as_of=view.as_of,
            tolerance=tolerance,
            last_events=view.last_events,
        )
    created, known = service.record_exceptions(result.mismatches, tolerance, actor)
    result.created, result.already_known = created, known
    return result


def run_every(
    interval_s: float,
    run: Callable[[], RunResult],
    report: Callable[[RunResult], None],
    stop: threading.Event | None = None,
    max_runs: int | None = None,
) -> int:
    """Run, report, wait ``interval_s``; until ``stop`` is set or ``max_runs`` runs were made
    (Ctrl-C in the CLI raises KeyboardInterrupt out of the wait). Returns the runs made."""
    stop = stop or threading.Event()
    runs = 0
    while not stop.is_set():
        report(run())
        runs += 1
        if max_runs is not None and runs >= max_runs:
            break
        stop.wait(interval_s)
    return runs
