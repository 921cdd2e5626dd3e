"""The feature dataflow (bytewax 0.21): events in, exact positions and rolling features out.

Steps::

    source (JSONL file | Kafka topic)
      → parse_event: events keyed sku|location, rejects keyed DEAD_LETTER_KEY
      → transfers keyed sku|reference → TransferMatcher → transit settlements ┐
      → events and rejects ─────────────────────────────────────────────────┴→ ledger step:
      → KeyState (ledger + features, dedupe by event_id inside the recovered state)
      → feature snapshots (Kafka ``inventory.features``) or final states (→ Parquet);
        rejects leave the ledger step untouched → dead-letter (JSONL file | Kafka
        ``inventory.events.dlq``)

Every per-event step is a batch step (one Python call per batch, not per event): a per-item
bytewax step costs an event more than its parsing. Rejects ride the ledger step's exchange for
that reason, instead of a per-item branch after parsing; they are few, and leave it unchanged.

Contracts:
- Dedupe happens in the per-key state (an event id belongs to one sku|location), so it is part of
  the recovered snapshot: a replay after a crash re-applies nothing twice.
- A settlement reaches its key by another path than the ``transfer_out`` it settles, and bytewax
  does not order the two (with 2+ workers it overtakes often). The key holds it, in its state,
  until it has applied that ``transfer_out``, so it never drives in-transit negative (a false
  ``ledger_anomalies``) and results do not depend on the worker count.
- ``emit="updates"`` sends, per key and per batch of its events, one snapshot as of the key's
  newest event; outputs are keyed by ``sku|location`` (and carry the key's duplicate count), so
  they are idempotent under at-least-once replay: a consumer keeps the newest per key.
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

from pipelines.events import EventType, InventoryEvent, Rejection, parse_event, state_key
from pipelines.features import KeyState
from pipelines.ledger import (
    DEDUPE_HORIZON_S,
    Outcome,
    TransferMatcher,
    TransitSettlement,
    is_transfer,
)

DEFAULT_BATCH_SIZE = 1000
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


@dataclass(frozen=True, slots=True)
class PendingSettlement:
    """A settlement on its way to the transfer's source key, with the ``transfer_out`` it settles.

    ``after_ts`` is that event's time (POSIX s): past the dedupe horizon the key may have forgotten
    the event id, so the settlement is then applied without waiting for it.
    """

    settlement: TransitSettlement
    after_event_id: str
    after_ts: float

    @property
    def key(self) -> str:
        return self.settlement.key

    @property
    def sku(self) -> str:
        return self.settlement.sku

    @property
    def location(self) -> str:
        return self.settlement.location


class LedgerLogic(StatefulBatchLogic[Any, Any, tuple | bytes]):
    """Per-key ledger + features.

    State snapshots are ``(KeyState.__getstate__() | None, held settlements)``: plain immutable
    data, built per key per epoch and pickled by the runtime only when recovery is on.
    Settlements are held until the key has applied the ``transfer_out`` they settle (see module
    docstring). Resumes from the pickled ``(KeyState, held)`` bytes of earlier versions too.
    """

    def __init__(self, resume: tuple | bytes | None, emit: Emit) -> None:
        self.state: KeyState | None = None
        self.held: list[PendingSettlement] = []
        if isinstance(resume, bytes):
            if resume:
                self.state, self.held = pickle.loads(resume)  # noqa: S301 - our own snapshot
        elif resume is not None:
            state, held = resume
            self.state = None if state is None else KeyState.from_state(state)
            self.held = list(held)
        self.emit = emit

    def on_batch(self, values: list[Any]) -> tuple[list, bool]:
        """``values``: a key's :class:`InventoryEvent` and :class:`PendingSettlement` items, or
        (at :data:`DEAD_LETTER_KEY`) :class:`Rejection` records, which pass straight through."""
        state = self.state
        if state is None:
            first = values[0]
            if type(first) is Rejection:  # the dead-letter key: pass them on, keep nothing
                return values, self.DISCARD
            state = self.state = KeyState(first.sku, first.location)
        changed = False
        trigger: InventoryEvent | None = None
        if not self.held:  # the common case: a run of events, applied in one call
            taken, trigger = state.apply_events(values)
            changed = trigger is not None
            if taken == len(values):
                return self._emit(state, changed, trigger)
            values = values[taken:]
        for item in values:
            if isinstance(item, PendingSettlement):
                self.held.append(item)
            elif state.apply(item) is not Outcome.DUPLICATE:
                changed, trigger = True, item
            if self.held:
                changed |= self._release(state, force=False)
        return self._emit(state, changed, trigger)

    def on_eof(self) -> tuple[list, bool]:
        if self.state is None:
            return [], self.RETAIN
        # Only reachable if a transfer_out never reached its key: apply rather than lose units.
        changed = self._release(self.state, force=True) if self.held else False
        if self.emit == "final":
            return [pickle.dumps(self.state)], self.RETAIN
        return self._emit(self.state, changed)

    def snapshot(self) -> tuple:
        state = self.state
        return (None if state is None else state.__getstate__(), tuple(self.held))

    def _release(self, state: KeyState, force: bool) -> bool:
        """Apply the held settlements whose transfer_out is applied; True if any changed state."""
        horizon = state.position.max_ts - DEDUPE_HORIZON_S
        keep, changed = [], False
        for pending in self.held:
            if (
                force
                or pending.after_ts < horizon
                or state.position.has_seen(pending.after_event_id)
            ):
                changed |= state.apply(pending.settlement) is not Outcome.DUPLICATE
            else:
                keep.append(pending)
        self.held = keep
        return changed

    def _emit(
        self, state: KeyState, changed: bool, trigger: InventoryEvent | None = None
    ) -> tuple[list, bool]:
        if self.emit == "final" or not changed:
            return [], self.RETAIN
        as_of = state.last_event_ts
        update = FeatureUpdate(
            f"{state.sku}|{state.location}",
            state.duplicates,
            state.snapshot(as_of),
            as_of,
            _trigger(trigger),
        )
        return [update], self.RETAIN


def _trigger(event: InventoryEvent | None) -> Trigger | None:
    if event is None:
        return None
    published = event.published_at.timestamp() if event.published_at is not None else None
    return Trigger(event.event_id, event.occurred_ts, published)


class MatcherLogic(StatefulBatchLogic[InventoryEvent, PendingSettlement, tuple | bytes]):
    """Per sku|reference transfer matching (see :class:`TransferMatcher`).

    Also remembers the ``transfer_out`` (event id, time) its settlements wait for at the source
    key. State snapshots are ``(TransferMatcher.__getstate__(), (event id, time) | None)``,
    plain immutable data; the pickled ``(TransferMatcher, ...)`` bytes of earlier versions resume
    too.
    """

    def __init__(self, resume: tuple | bytes | None) -> None:
        self.matcher = TransferMatcher()
        self.transfer_out: tuple[str, float] | None = None
        if isinstance(resume, bytes):
            if resume:
                self.matcher, self.transfer_out = pickle.loads(resume)  # noqa: S301 - our own
        elif resume is not None:
            matcher, self.transfer_out = resume
            self.matcher = TransferMatcher.from_state(matcher)

    def on_batch(self, values: list[InventoryEvent]) -> tuple[list[PendingSettlement], bool]:
        out: list[PendingSettlement] = []
        for event in values:
            settlements = self.matcher.observe(event)
            if event.event_type is EventType.TRANSFER_OUT and self.matcher.source_location:
                self.transfer_out = (event.event_id, event.occurred_ts)
            if settlements:
                assert self.transfer_out is not None  # settlements need a transfer_out
                out.extend(PendingSettlement(s, *self.transfer_out) for s in settlements)
        return out, self.RETAIN

    def snapshot(self) -> tuple:
        return (self.matcher.__getstate__(), self.transfer_out)


KeyedEvent = tuple[str, InventoryEvent]
#: The routing key of rejected payloads: they travel to the ledger step with the events (one
#: stream, no per-item branch) and leave it as they came, to the dead-letter output. Not a
#: possible :func:`state_key` (those never start with a control character other than ``\x1f``).
DEAD_LETTER_KEY = "\x00dead-letter"


def parse_batch(items: list[Any]) -> list[tuple[str, InventoryEvent | Rejection]]:
    """Parse a batch of source items (JSONL lines or Kafka messages) in one call.

    Blank payloads are skipped; each event comes out keyed by its :func:`state_key`, each
    rejected payload as its :class:`Rejection` keyed :data:`DEAD_LETTER_KEY`, in input order.
    One Python call per batch rather than several per item: per-item steps cost more than the
    parsing.
    """
    out: list[tuple[str, InventoryEvent | Rejection]] = []
    append = out.append
    for item in items:
        payload = getattr(item, "value", item)
        if payload is None or not payload.strip():
            continue
        parsed = parse_event(payload)
        if type(parsed) is InventoryEvent:
            append((state_key(parsed.sku, parsed.location), parsed))
        else:
            append((DEAD_LETTER_KEY, parsed))
    return out


def transfers_by_reference(items: list[tuple[str, Any]]) -> list[KeyedEvent]:
    """The batch's transfer events with a reference, keyed ``sku|reference`` for matching.

    One call per batch: a per-item filter would cost every event a Python call for the ~1 in 6
    that is a transfer.
    """
    return [
        (state_key(event.sku, event.reference), event)
        for key, event in items
        if key is not DEAD_LETTER_KEY and is_transfer(event)
    ]


def settlements_by_key(items: list[tuple[str, PendingSettlement]]) -> list:
    """Matched settlements, re-keyed from ``sku|reference`` to their source key."""
    return [(pending.key, pending) for _, pending in items]


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
    flow: Dataflow, source: Source[Any], *, emit: Emit = "updates"
) -> FeatureStreams:
    """Add the feature steps (source → parse → transfers → ledger) to ``flow``.

    Step ids are part of the recovery contract: a flow built with them resumes from snapshots
    written by :func:`build_flow`. Other flows (e.g. streaming scoring) compose these streams
    with their own steps and sinks.
    """
    raw = op.input("events", flow, source)
    # events keyed sku|location, rejects keyed DEAD_LETTER_KEY (see parse_batch)
    parsed: Any = op.flat_map_batch("parse", raw, parse_batch)
    by_ref: Any = op.flat_map_batch("transfers", parsed, transfers_by_reference)
    settled = op.stateful_batch("match_transfers", by_ref, lambda resume: MatcherLogic(resume))
    settlements: Any = op.flat_map_batch("settlements", settled, settlements_by_key)

    keyed: Any = op.merge("ledger_input", parsed, settlements)
    outputs = op.stateful_batch("ledger", keyed, lambda resume: LedgerLogic(resume, emit))
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
