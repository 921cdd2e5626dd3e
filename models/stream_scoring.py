"""Streaming scoring: feature updates scored in batches by the current champion models.

:class:`StreamScorer` turns a batch of :class:`~pipelines.dataflow.FeatureUpdate` records into
score messages: one ``Booster.predict`` on a matrix per model per batch (the newest update per
key), explanations (``pred_contrib``, ~1k rows/s) only for rows whose score reaches
``explain_above``. :class:`ChampionWatcher` holds the models and, every ``poll_s`` seconds of an
injected clock, asks a :class:`ChampionRegistry` which version carries the ``champion`` alias,
swapping in a new one without a restart.

Score message (a contract: the approval service reads it as ``serving.schemas.ScoreIn``; one
JSON object per message, Kafka key ``sku|location``):

- the :data:`models.scoring.SCORE_COLUMNS` of ``shelfguard score``: ``sku, location,
  phantom_score, stockout_score`` (calibrated probabilities), ``phantom_explanation,
  stockout_explanation`` (``""`` below ``explain_above``), ``on_hand, reserved, atp``, ``as_of``
  (ISO-8601 UTC: the key's newest event time, which the snapshot is as of),
  ``phantom_model, stockout_model`` (``name:version``);
- ``features``: the snapshot the scores were computed from ({name: number}; NaN/inf as null);
- ``unit_value``: the key's latest unit price, when known;
- ``occurred_at``, ``published_at``, ``event_id``: the triggering event (the last one, in
  arrival order, that changed the key in the batch) — event time, source publish time (absent
  when the source gave none) and id. Without a trigger (only a transfer settlement changed the
  key) ``occurred_at`` is ``as_of`` and the other two are absent;
- ``scored_at``: the scorer's wall clock when the batch was scored.

``reserved`` is clamped at 0 (the service's position model has no negative reservations; a
negative ledger figure, which is evidence of a record error, stays in ``features.reserved``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from models.scorer import RiskModel, load_packaged
from models.scoring import explanations
from pipelines.events import format_ts
from pipelines.features import FEATURES

if TYPE_CHECKING:  # the flow's record type; importing it at run time would pull in bytewax
    from pipelines.dataflow import FeatureUpdate

log = logging.getLogger(__name__)

PHANTOM = "phantom-inventory"
STOCKOUT = "stockout-risk"
MODEL_NAMES = (PHANTOM, STOCKOUT)
DEFAULT_POLL_S = 30.0
FEATURE_NAMES = tuple(f.name for f in FEATURES)


class ChampionRegistry(Protocol):
    """Where champions come from (the MLflow registry: ``training.registry.RegistryChampions``)."""

    def champion_version(self, name: str) -> str | None:
        """The version carrying the champion alias now; None when there is none."""
        ...

    def load_version(self, name: str, version: str) -> RiskModel:
        """That version as a scorer; its ``version`` attribute names it in score messages."""
        ...


@dataclass(frozen=True)
class Champions:
    phantom: RiskModel
    stockout: RiskModel

    def label(self, model: RiskModel) -> str:
        return f"{model.spec.name}:{model.version}"


class ChampionWatcher:
    """The models to score with, refreshed from a registry every ``poll_s`` seconds.

    ``clock`` returns seconds (monotonic). :meth:`current` polls when a poll is due, so the
    swap happens between batches, on the flow's thread (a load takes about a second; the batch
    that triggers it waits). A registry that fails or has no champion keeps the models in use
    (logged); the next poll tries again. Safe to share between worker threads.
    """

    def __init__(
        self,
        registry: ChampionRegistry | None,
        clock: Callable[[], float],
        poll_s: float = DEFAULT_POLL_S,
        fallback: Callable[[str], RiskModel] = load_packaged,
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.poll_s = poll_s
        self.fallback = fallback
        self.versions: dict[str, str | None] = dict.fromkeys(MODEL_NAMES)
        self.swaps = 0
        self.poll_failures = 0
        self._lock = threading.Lock()
        models = {name: self._initial(name) for name in MODEL_NAMES}
        self._champions = Champions(models[PHANTOM], models[STOCKOUT])
        self._next_poll = clock() + poll_s

    def _initial(self, name: str) -> RiskModel:
        if self.registry is not None:
            try:
                version = self.registry.champion_version(name)
                if version is not None:
                    model = self.registry.load_version(name, version)
                    self.versions[name] = version
                    return model
                log.warning("no %s champion in the registry; scoring with the packaged model", name)
            except Exception:
                log.exception("registry unavailable; scoring %s with the packaged model", name)
        return self.fallback(name)

    def current(self) -> Champions:
        if self.registry is not None and self.clock() >= self._next_poll:
            with self._lock:
                if self.clock() >= self._next_poll:
                    self.poll()
                    self._next_poll = self.clock() + self.poll_s
        return self._champions

    def poll(self) -> bool:
        """Ask the registry now; swap in any new champion. True when a model changed."""
        assert self.registry is not None
        models = {PHANTOM: self._champions.phantom, STOCKOUT: self._champions.stockout}
        changed = False
        for name in MODEL_NAMES:
            try:
                version = self.registry.champion_version(name)
                if version is None or version == self.versions[name]:
                    continue
                models[name] = self.registry.load_version(name, version)
            except Exception:
                self.poll_failures += 1
                log.exception("champion poll for %s failed; keeping %s", name, models[name].version)
                continue
            log.warning(
                "%s champion is now version %s (was %s)", name, version, self.versions[name]
            )
            self.versions[name] = version
            changed = True
        if changed:
            self._champions = Champions(models[PHANTOM], models[STOCKOUT])
            self.swaps += 1
        return changed


def _number(value: Any) -> Any:
    """A JSON-safe feature value: ints as they are, non-finite floats as None (hot path)."""
    kind = type(value)
    if kind is float:
        return value if value - value == 0.0 else None  # NaN and ±inf fail this
    if kind is int or value is None:
        return value
    if isinstance(value, bool | np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return _number(float(value))
    return value


def _iso(ts: float) -> str:
    return format_ts(datetime.fromtimestamp(ts, UTC))


class StreamScorer:
    """Scores batches of feature updates (see the module docstring for the message).

    ``num_threads`` is LightGBM's per call: 1 (default) suits the stream's small batches on a
    machine shared with the service; 0 = LightGBM's default (all cores).
    """

    def __init__(
        self,
        watcher: ChampionWatcher,
        explain_above: float = 0.5,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        num_threads: int = 1,
    ) -> None:
        self.watcher = watcher
        self.explain_above = explain_above
        self.clock = clock
        self.num_threads = num_threads
        self.rows_scored = 0
        self.rows_explained = 0

    def score(self, updates: Sequence[FeatureUpdate]) -> list[tuple[str, dict[str, Any]]]:
        """``(key, message)`` per key, for the newest update of each key in ``updates``."""
        newest = {u.key: u for u in updates}
        if not newest:
            return []
        batch = list(newest.values())
        champions = self.watcher.current()
        frame = pd.DataFrame.from_records([u.snapshot for u in batch])
        phantom = champions.phantom.predict(frame, self.num_threads)
        stockout = champions.stockout.predict(frame, self.num_threads)
        phantom_why = self._explain(champions.phantom, frame, phantom)
        stockout_why = self._explain(champions.stockout, frame, stockout)
        scored_at = format_ts(self.clock())
        labels = (champions.label(champions.phantom), champions.label(champions.stockout))
        self.rows_scored += len(batch)
        return [
            (
                update.key,
                self._message(
                    update,
                    float(phantom[i]),
                    float(stockout[i]),
                    phantom_why[i],
                    stockout_why[i],
                    labels,
                    scored_at,
                ),
            )
            for i, update in enumerate(batch)
        ]

    def _explain(self, model: RiskModel, frame: pd.DataFrame, scores: np.ndarray) -> list[str]:
        self.rows_explained += int(np.count_nonzero(scores >= self.explain_above))
        return explanations(model, frame, scores, self.explain_above, self.num_threads)

    @staticmethod
    def _message(
        update: FeatureUpdate,
        phantom: float,
        stockout: float,
        phantom_why: str,
        stockout_why: str,
        labels: tuple[str, str],
        scored_at: str,
    ) -> dict[str, Any]:
        snap = update.snapshot
        as_of = _iso(update.as_of_ts)
        message: dict[str, Any] = {
            "sku": snap["sku"],
            "location": snap["location"],
            "phantom_score": phantom,
            "stockout_score": stockout,
            "phantom_explanation": phantom_why,
            "stockout_explanation": stockout_why,
            "on_hand": int(snap["on_hand"]),
            "reserved": max(0, int(snap["reserved"])),
            "atp": int(snap["atp"]),
            "as_of": as_of,
            "phantom_model": labels[0],
            "stockout_model": labels[1],
            "features": {name: _number(snap.get(name)) for name in FEATURE_NAMES},
            "occurred_at": as_of,
            "scored_at": scored_at,
        }
        price = _number(snap.get("unit_price"))
        if price is not None and price > 0:
            message["unit_value"] = price
        trigger = update.trigger
        if trigger is not None:
            message["occurred_at"] = _iso(trigger.occurred_ts)
            message["event_id"] = trigger.event_id
            if trigger.published_ts is not None:
                message["published_at"] = _iso(trigger.published_ts)
        return message
