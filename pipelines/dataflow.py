"""The feature dataflow (bytewax 0.21): events in, exact positions and rolling features out.

Steps::

    source (JSONL file | Kafka topic)
      → parse_event ─ rejects → dead-letter (JSONL file | Kafka ``inventory.events.dlq``)
      → transfers keyed sku|reference → TransferMatcher → transit settlements ┐
      → events ─────────────────────────────────────────────────────────────┴→ keyed sku|location
      → KeyState (ledger + features, dedupe by event_id inside the recovered state)
      → feature snapshots (Kafka ``inventory.features``) or final states (→ Parquet)

Contracts:
- Dedupe happens in the per-key state (an event id belongs to one sku|location), so it is part of
  the recovered snapshot: a replay after a crash re-applies nothing twice.
- ``emit="updates"`` sends, per key and per batch of its events, one snapshot as of the key's
  newest event; outputs are keyed by ``sku|location`` and carry the key's event count, so they
  are idempotent under at-least-once replay (a consumer keeps the newest per key).
- ``emit="final"`` sends each key's :class:`KeyState` once, at end of input (file, or a Kafka topic
  read to its end); :func:`pipelines.featureio.write_feature_table` turns them into one row per key
  as of the stream's end.
This module is the only one in ``pipelines`` that imports bytewax.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from pipelines.events import InventoryEvent, Rejection, parse_event
from pipelines.features import KeyState
from pipelines.ledger import Outcome, TransferMatcher, TransitSettlement, is_transfer

DEFAULT_BATCH_SIZE = 1000
Emit = Literal["updates", "final"]


@dataclass(frozen=True)
class FeatureUpdate:
    """A keyed output record: the key's feature snapshot as of its newest event."""

    key: str
    duplicates: int
    snapshot: dict[str, Any]


class LedgerLogic(StatefulBatchLogic[Any, Any, bytes]):
    """Per-key ledger + features. State snapshots are the pickled :class:`KeyState`."""

    def __init__(self, resume: bytes | None, emit: Emit) -> None:
        self.state: KeyState | None = pickle.loads(resume) if resume else None  # noqa: S301
        self.emit = emit

    def on_batch(self, values: list[InventoryEvent | TransitSettlement]) -> tuple[list, bool]:
        state = self.state
        if state is None:
            first = values[0]
            state = self.state = KeyState(first.sku, first.location)
        changed = False
        for item in values:
            if state.apply(item) is not Outcome.DUPLICATE:
                changed = True
        if self.emit == "final" or not changed:
            return [], self.RETAIN
        snap = state.snapshot(state.last_event_ts)
        update = FeatureUpdate(f"{state.sku}|{state.location}", state.duplicates, snap)
        return [update], self.RETAIN

    def on_eof(self) -> tuple[list, bool]:
        if self.emit == "final" and self.state is not None:
            return [pickle.dumps(self.state)], self.RETAIN
        return [], self.RETAIN

    def snapshot(self) -> bytes:
        return pickle.dumps(self.state)


class MatcherLogic(StatefulBatchLogic[InventoryEvent, TransitSettlement, bytes]):
    """Per sku|reference transfer matching (see :class:`TransferMatcher`)."""

    def __init__(self, resume: bytes | None) -> None:
        self.matcher: TransferMatcher = (
            pickle.loads(resume) if resume else TransferMatcher()  # noqa: S301
        )

    def on_batch(self, values: list[InventoryEvent]) -> tuple[list[TransitSettlement], bool]:
        out: list[TransitSettlement] = []
        for event in values:
            out.extend(self.matcher.observe(event))
        return out, self.RETAIN

    def snapshot(self) -> bytes:
        return pickle.dumps(self.matcher)


def _is_event(item: InventoryEvent | Rejection) -> TypeGuard[InventoryEvent]:
    return isinstance(item, InventoryEvent)


def _payload(item: Any) -> bytes | str:
    """The raw event payload of a source item (a JSONL line or a Kafka message)."""
    value = getattr(item, "value", item)
    return b"" if value is None else value


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
    raw = op.input("events", flow, source)
    raw = op.filter("skip_blank", raw, lambda item: bool(_payload(item).strip()))
    parsed = op.map("parse", raw, lambda item: parse_event(_payload(item)))
    valid = op.branch("valid", parsed, _is_event)
    rejects: Any = valid.falses
    if dlq_format is not None:
        rejects = op.map("dlq_format", rejects, dlq_format)
    op.output("dead_letter", rejects, dlq_sink)

    events = valid.trues
    transfers = op.filter("transfers", events, is_transfer)
    by_ref = op.key_on("by_reference", transfers, lambda e: f"{e.sku}|{e.reference}")
    settled = op.stateful_batch("match_transfers", by_ref, lambda resume: MatcherLogic(resume))
    settlements = op.key_rm("settlements", settled)

    merged: Any = op.merge("ledger_input", events, settlements)
    keyed = op.key_on("by_key", merged, lambda x: x.key)
    outputs = op.stateful_batch("ledger", keyed, lambda resume: LedgerLogic(resume, emit))
    out = op.key_rm("outputs", outputs)
    if out_format is not None:
        out = op.map("out_format", out, out_format)
    op.output("features_out", out, out_sink)
    return flow
