"""The feature dataflow (bytewax 0.21): events in, exact positions and rolling features out.

Steps::

    source (JSONL file | Kafka topic)
      → parse_event: events keyed by sku, rejects keyed DEAD_LETTER_KEY
      → ledger step: one Book per sku (a KeyState per location: ledger + features, dedupe by
        event_id inside the recovered state; a TransferMatcher per transfer reference)
      → feature snapshots (Kafka ``inventory.features``) or final states (→ Parquet);
        rejects leave the ledger step untouched → dead-letter (JSONL file | Kafka
        ``inventory.events.dlq``)

Every per-event step is a batch step (one Python call per batch, not per event): a per-item
bytewax step costs an event more than its parsing. Rejects ride the ledger step's exchange for
that reason, instead of a per-item branch after parsing; they are few, and leave it unchanged.

Contracts:
- Dedupe happens in the per-key state (an event id belongs to one sku|location), so it is part of
  the recovered snapshot: a replay after a crash re-applies nothing twice.
- The ledger step is keyed by sku, not by (sku, location): a transfer's two sides and the
  transit settlement they produce belong to one sku, so they meet in one state in arrival order
  (as in :class:`pipelines.replay.Replay`, which runs the same :class:`Book`). An earlier layout
  matched transfers in a step of their own and sent settlements to the source key, where they
  could overtake their ``transfer_out`` and had to be held back. The cost: a recovery snapshot
  holds every location of a sku touched in the epoch, not only the touched locations.
- ``emit="updates"`` sends, per key a batch changed, one snapshot as of the key's newest event;
  outputs are keyed by ``sku|location`` (and carry the key's duplicate count), so they are
  idempotent under at-least-once replay: a consumer keeps the newest per key. With ``close_s``
  (the scoring flow's default) every key is also sent when the stream passes a close, as of it,
  so a key no event touches is still scored every day (:class:`CloseClock` in the parse step
  sends a :class:`CloseMarker` to every sku; :class:`BookLogic` sweeps its keys).
- ``emit="final"`` sends each key's :class:`KeyState` once, at end of input (file, or a Kafka topic
  read to its end); :func:`pipelines.feature_job.run_features` turns them into one row per key
  as of the stream's end.
- :func:`feature_streams` adds these steps to any dataflow, so other flows (streaming scoring in
  ``serving.scoring_flow``) reuse them with their own sinks; :func:`build_flow` is that plus the
  two sinks.
The flow modules (this one, connectors, stream, feature_job) are the only ones in ``pipelines``
that import bytewax.
"""

from __future__ import annotations

import gc
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from pipelines import native_book
from pipelines.events import InventoryEvent, Rejection, parse_event
from pipelines.features import BOOK_STATE_VERSION, KeyState
from pipelines.ledger import DAY_S

DEFAULT_BATCH_SIZE = 1000
#: An arrival further than this beyond the stream's clock (a mistyped year, a device clock
#: reset) moves it only when the next far-ahead arrival agrees (:class:`CloseClock`).
CLOCK_JUMP_S = 2 * DAY_S


@dataclass(frozen=True, slots=True)
class CloseMarker:
    """Sent to every sku's ledger state when the stream's clock passes a close: send every
    key again, as of ``close_ts``."""

    close_ts: float


class CloseClock:
    """The stream's clock in the parse step, and the closes it passes.

    The clock is the newest arrival the process has parsed (``published_at``, else
    ``occurred_at``: the training sets' rule). When an event moves it past a close (UTC midnight
    + ``close_s``), a :class:`CloseMarker` of the latest close before that event goes, ahead of
    it, to every sku the process has parsed. An arrival more than :data:`CLOCK_JUMP_S` ahead of
    the clock moves it only if the next arrival is also that far ahead and agrees within
    ``CLOCK_JUMP_S``: one mistyped year must not sweep every key as of years from now. One per
    process (worker threads share it). It is not recovered state of its own: on resume each
    recovered ledger state reports its sku and newest event (:meth:`resumed`), so the skus are
    known again and the first event after the restart sweeps a close passed in between.
    """

    __slots__ = ("close_s", "now", "ahead", "next_close", "routes", "recovered")

    def __init__(self, close_s: float) -> None:
        if not -DAY_S < close_s < DAY_S:
            raise ValueError(f"close_s={close_s!r}: a close is less than a day from midnight")
        self.close_s = close_s
        self.now = -math.inf
        #: the last far-ahead arrival, waiting for a second one to confirm it
        self.ahead = math.nan
        #: the first close at or after ``now``
        self.next_close = -math.inf
        #: every sku route parsed (or recovered) so far
        self.routes: set[str] = set()
        #: the newest event time of each recovered sku, until the first event after a restart
        self.recovered: list[float] = []

    def resumed(self, route: str, newest: float) -> None:
        """A recovered ledger state of sku ``route`` whose newest event is ``newest``."""
        self.routes.add(route)
        self.recovered.append(newest)

    def close_from(self, ts: float) -> float:
        """The first close at or after ``ts``."""
        return math.ceil((ts - self.close_s) / DAY_S) * DAY_S + self.close_s

    def parse(self, items: list[Any]) -> list[tuple[str, Any]]:
        """:func:`parse_batch`, with a :class:`CloseMarker` per known sku before the first
        event that arrives after a close."""
        out: list[tuple[str, Any]] = []
        routes = self.routes
        for routed in parse_batch(items):
            route, event = routed
            if isinstance(event, InventoryEvent):
                published = event.published_at
                ts = event.occurred_ts if published is None else published.timestamp()
                if ts <= self.next_close:  # the common case: no close passed
                    if ts > self.now:
                        self.now = ts
                    self.ahead = math.nan
                elif self.now == -math.inf:  # the first event (since a restart)
                    # the newest recovered event not after it (a mistyped future is after it)
                    start = max((t for t in self.recovered if t <= ts), default=-math.inf)
                    self.recovered.clear()
                    if start > -math.inf and ts > self.close_from(start):  # passed meanwhile
                        marker = CloseMarker(self.close_from(ts) - DAY_S)
                        out.extend([(r, marker) for r in tuple(routes)])
                    self.now, self.next_close = ts, self.close_from(ts)
                elif ts - self.now > CLOCK_JUMP_S and not abs(ts - self.ahead) <= CLOCK_JUMP_S:
                    self.ahead = ts  # far ahead, not (yet) confirmed: moves nothing
                else:
                    marker = CloseMarker(self.close_from(ts) - DAY_S)  # the latest before it
                    out.extend([(r, marker) for r in tuple(routes)])  # threads share it
                    self.now, self.ahead = max(self.now, ts), math.nan
                    self.next_close = self.close_from(self.now)
                routes.add(route)
            out.append(routed)
        return out


#: The cyclic garbage collector's youngest-generation threshold while a feature flow runs
#: (CPython's default: 700 container allocations). The flow allocates a few short-lived
#: containers per event and keeps millions of long-lived ones (the keyed state), so at the
#: default the collector ran every ~150 events and took ~11 % of the flow's time (perf, bench
#: world). Nothing here relies on cycle collection to free memory promptly: state is acyclic
#: and freed by reference counting.
GC_GEN0_THRESHOLD = 50_000
Emit = Literal["updates", "final"]


@dataclass(frozen=True, slots=True)
class Trigger:
    """The event that made a key emit: the last one, in arrival order, that changed its state
    in the batch. Times are POSIX seconds (UTC); ``published_ts`` is None when the source did
    not say when it published the event."""

    event_id: str
    occurred_ts: float
    published_ts: float | None


@dataclass(frozen=True)
class FeatureUpdate:
    """A keyed output record: the key's feature snapshot as of its newest event.

    ``as_of_ts`` is that newest event's time (POSIX s, UTC). ``trigger`` is None when only a
    transit settlement (a ``transfer_in`` seen at another key) changed the key.
    """

    key: str
    duplicates: int
    snapshot: dict[str, Any]
    as_of_ts: float = math.nan
    trigger: Trigger | None = None


class RecoveryFormatError(RuntimeError):
    """A recovery store holds snapshots this version cannot continue from."""


class BookLogic(StatefulBatchLogic[Any, Any, tuple]):
    """The ledger + features of one sku at every location: a :class:`Book`.

    The routing key is the sku (:func:`sku_route`), not the (sku, location): a transfer's
    ``transfer_out``, ``transfer_in`` and the settlement they produce are all this sku's, so they
    meet in one state, in arrival order, exactly as in the replay. There is no settlement in
    flight between steps, and nothing to hold back until its ``transfer_out`` has arrived.

    State snapshots are :meth:`Book.__getstate__` (plain immutable data, pickled by the runtime
    only when recovery is on). Snapshots of the per-location layout before it are refused with
    :class:`RecoveryFormatError`: their keys would never receive an event again.

    **Close sweeps**: a key is otherwise sent only when an event changes it, and a phantom's
    symptom is that nothing happens — its last score is the one after its last sale. A
    :class:`CloseMarker` (from :class:`CloseClock`, when the stream passes a close) sends every
    location of the sku again, as of the close (a key whose own newest event is later: as of
    that event), after the events that arrived before it. In a stream in arrival order that is
    the training set's snapshot of the close (:func:`training.dataset.snapshot_features`): what
    occurred *and* arrived before it. No later update of the sku is as of an earlier time: a
    late event after a sweep is sent as of the swept close.
    """

    def __init__(self, resume: Any, emit: Emit, clock: CloseClock | None = None) -> None:
        book = native_book.book_class()
        if resume is None:
            self.book = book()
        elif isinstance(resume, tuple) and resume[:1] == (BOOK_STATE_VERSION,):
            self.book = book.from_state(resume)
        else:
            raise RecoveryFormatError(
                "the recovery store holds ledger snapshots of an earlier layout (one state per "
                "sku|location); this version keeps one per sku and cannot continue from them. "
                "Start a new recovery directory and read the input again from its beginning."
            )
        self.emit = emit
        if clock is not None and resume is not None and (keys := self.book.keys()):
            # recovered: the clock learns this sku (and its newest event) again
            sku = self.book.view(keys[0])[0]
            clock.resumed(sku_route(sku), max(self.book.view(k)[3] for k in keys))
        #: the latest close swept: no later update of this sku is as of an earlier time
        self.swept = -math.inf

    def on_batch(self, values: list[Any]) -> tuple[list, bool]:
        """``values``: the sku's :class:`InventoryEvent` items in arrival order, or (at
        :data:`DEAD_LETTER_KEY`) :class:`Rejection` records, which pass straight through."""
        if type(values[0]) is Rejection:  # the dead-letter key: pass them on, keep nothing
            return values, self.DISCARD
        book = self.book
        if self.emit == "final":
            book.apply_batch([v for v in values if type(v) is not CloseMarker], False)
            return [], self.RETAIN
        updates: list[FeatureUpdate] = []
        start = 0
        for i, value in enumerate(values):
            if type(value) is CloseMarker:
                updates += self._updates(book.apply_batch(values[start:i]))
                start = i + 1
                if value.close_ts > self.swept:
                    updates += self._sweep(value.close_ts)
        if start:
            values = values[start:]
        return updates + self._updates(book.apply_batch(values)), self.RETAIN

    def _sweep(self, close: float) -> list[FeatureUpdate]:
        """Every key of the book, as of ``close`` (or of its newest event, if later)."""
        book, updates = self.book, []
        self.swept = close
        for key in book.keys():
            sku, location, duplicates, newest = book.view(key)
            as_of = newest if newest > close else close
            updates.append(
                FeatureUpdate(f"{sku}|{location}", duplicates, book.snapshot(key, as_of), as_of)
            )
        return updates

    def _updates(self, changed: dict[str, Any] | None) -> list[FeatureUpdate]:
        """One update per changed key, as of its newest event (or of the latest close swept,
        if later: a late event after a sweep does not take the key back in time)."""
        book, updates, swept = self.book, [], self.swept
        for key, trigger in (changed or {}).items():
            sku, location, duplicates, newest = book.view(key)
            as_of = newest if newest >= swept else swept
            updates.append(
                FeatureUpdate(
                    f"{sku}|{location}",
                    duplicates,
                    book.snapshot(key, as_of),
                    as_of,
                    _trigger(trigger),
                )
            )
        return updates

    def on_eof(self) -> tuple[list, bool]:
        if self.emit == "final":
            return [
                pickle.dumps(KeyState.from_state(s)) for s in self.book.key_states()
            ], self.RETAIN
        return [], self.RETAIN

    def snapshot(self) -> tuple:
        return self.book.__getstate__()


def _trigger(event: InventoryEvent | None) -> Trigger | None:
    if event is None:
        return None
    published = event.published_at.timestamp() if event.published_at is not None else None
    return Trigger(event.event_id, event.occurred_ts, published)


#: The routing key of rejected payloads: they travel to the ledger step with the events (one
#: stream, no per-item branch) and leave it as they came, to the dead-letter output. Never a
#: :func:`sku_route`.
DEAD_LETTER_KEY = "\x00dead-letter"


def parse_batch(items: list[Any]) -> list[tuple[str, InventoryEvent | Rejection]]:
    """Parse a batch of source items (JSONL lines or Kafka messages) in one call.

    Blank payloads are skipped; each event comes out keyed by :func:`sku_route`, each
    rejected payload as its :class:`Rejection` keyed :data:`DEAD_LETTER_KEY`, in input order.
    One call per batch rather than several per item: per-item steps cost more than the
    parsing. With the Rust extension built, payloads in the common shape are parsed there
    (``pipelines/rust_book/src/parse.rs``: the event :func:`parse_event` would build, through the
    same class) and every other payload — each reject included — by :func:`parse_item`.
    """
    fast = native_book.parse_batch_function()
    if fast is not None:
        return fast(items, parse_item)
    out = []
    for item in items:
        routed = parse_item(item)
        if routed is not None:
            out.append(routed)
    return out


def parse_item(item: Any) -> tuple[str, InventoryEvent | Rejection] | None:
    """One source item: None for a blank payload, else ``(route, event or rejection)``."""
    payload = getattr(item, "value", item)
    if payload is None or not payload.strip():
        return None
    parsed = parse_event(payload)
    if type(parsed) is InventoryEvent:
        return (sku_route(parsed.sku), parsed)
    return (DEAD_LETTER_KEY, parsed)


def sku_route(sku: str) -> str:
    """The routing key of a sku's :class:`BookLogic`: the sku itself, or ``"\\x00"`` + the sku
    when it starts with ``"\\x00"`` (so no sku can spell :data:`DEAD_LETTER_KEY`)."""
    return sku if sku[:1] != "\x00" else "\x00" + sku


def tune_gc() -> None:
    """Raise the collector's youngest threshold to :data:`GC_GEN0_THRESHOLD` for this process
    (never lowers one set higher). Called when the feature steps are built: the flow is then
    the process's main work."""
    gen0, gen1, gen2 = gc.get_threshold()
    if gen0 < GC_GEN0_THRESHOLD:
        gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def _is_output(item: Any) -> bool:
    return type(item) is not Rejection


@dataclass(frozen=True)
class FeatureStreams:
    """The two streams the feature steps produce inside a dataflow.

    ``outputs``: :class:`FeatureUpdate` records (``emit="updates"``) or pickled final
    :class:`KeyState` blobs (``emit="final"``). ``rejects``: :class:`Rejection` records.
    """

    outputs: Stream[Any]
    rejects: Stream[Any]  # Rejection records


def feature_streams(
    flow: Dataflow, source: Source[Any], *, emit: Emit = "updates", close_s: float | None = None
) -> FeatureStreams:
    """Add the feature steps (source → parse → ledger) to ``flow``; ``close_s``: send every key
    again at each close (UTC midnight + ``close_s``; see :class:`BookLogic`).

    Step ids are part of the recovery contract: a flow built with them resumes from snapshots
    written by :func:`build_flow`. Other flows (e.g. streaming scoring) compose these streams
    with their own steps and sinks.
    """
    tune_gc()
    raw = op.input("events", flow, source)
    # events keyed by sku, rejects keyed DEAD_LETTER_KEY (see parse_batch); with close_s, close
    # markers keyed by sku too (CloseClock)
    clock = None if close_s is None else CloseClock(close_s)
    parsed: Any = op.flat_map_batch("parse", raw, parse_batch if clock is None else clock.parse)
    outputs = op.stateful_batch("ledger", parsed, lambda resume: BookLogic(resume, emit, clock))
    split = op.branch("valid", op.key_rm("outputs", outputs), _is_output)
    return FeatureStreams(split.trues, split.falses)


def build_flow(
    source: Source[Any],
    dlq_sink: Sink[Any],
    out_sink: Sink[Any],
    *,
    emit: Emit = "updates",
    dlq_format: Callable[[Rejection], Any] | None = None,
    out_format: Callable[[Any], Any] | None = None,
    flow_id: str = "shelfguard_features",
) -> Dataflow:
    """Wire the feature dataflow between a source and two sinks (see module docstring)."""
    flow = Dataflow(flow_id)
    streams = feature_streams(flow, source, emit=emit)
    rejects: Any = streams.rejects
    if dlq_format is not None:
        rejects = op.map("dlq_format", rejects, dlq_format)
    op.output("dead_letter", rejects, dlq_sink)
    out: Any = streams.outputs
    if out_format is not None:
        out = op.map("out_format", out, out_format)
    op.output("features_out", out, out_sink)
    return flow
