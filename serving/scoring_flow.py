"""The streaming scoring dataflow: events → features → scores, with champion hot reload.

``shelfguard score-stream`` or ``python -m bytewax.run serving.scoring_flow:flow`` (settings from
``SHELFGUARD_*`` env vars, :class:`ScoringSettings`). Steps::

    pipelines.dataflow.feature_streams (parse → DLQ, transfers, ledger + features; every key
      again at each close, so a key that stops selling is scored on its silence)
      → [feature snapshots → inventory.features, optional]
      → score: per batch, the newest update per key, one matrix per model (StreamScorer)
      → score messages: Kafka ``inventory.scores`` (key sku|location) or a JSONL file

The score message is documented in :mod:`models.stream_scoring`; it is what
``shelfguard alerts consume`` and ``POST /scores`` read (``serving.schemas.ScoreIn``). Delivery
is at-least-once, like the feature flow's: after a crash, replayed events are deduplicated by
the recovered ledger, but a score already sent may be sent again (the service's alert cooldown
absorbs it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bytewax.operators as op
import msgspec
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink
from pydantic import Field

from pipelines import connectors
from pipelines.dataflow import feature_streams
from pipelines.events import Rejection
from pipelines.settings import FlowSettings

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()

ScoreItem = tuple[str, dict[str, Any]]


class ScoringSettings(FlowSettings):
    """``FlowSettings`` (source, topics, files) plus the scoring fields; env ``SHELFGUARD_*``."""

    scores_topic: str = Field(connectors.SCORES_TOPIC, description="SHELFGUARD_SCORES_TOPIC")
    scores_file: Path = Field(
        Path("scores.jsonl"), description="SHELFGUARD_SCORES_FILE: score messages (source=file)"
    )
    follow: bool = Field(
        False,
        description="SHELFGUARD_FOLLOW (source=file): keep reading the events file as it grows",
    )
    emit_features: bool = Field(
        False, description="SHELFGUARD_EMIT_FEATURES: also send snapshots to features_topic/file"
    )
    tracking_uri: str | None = Field(
        None,
        description="SHELFGUARD_TRACKING_URI: MLflow registry whose champions score "
        "(default: $MLFLOW_TRACKING_URI, else ./mlflow.db if it exists, else the packaged models)",
    )
    use_registry: bool = Field(
        True, description="SHELFGUARD_USE_REGISTRY: false = the packaged models, no reload"
    )
    registry_poll_s: float = Field(
        30.0, gt=0, description="SHELFGUARD_REGISTRY_POLL_S: seconds between champion checks"
    )
    close_sweep: bool = Field(
        True,
        description="SHELFGUARD_CLOSE_SWEEP: score every key again at each close (as of it), "
        "not only the keys an event changed",
    )
    close_offset_s: float = Field(
        0.0,
        gt=-86_400,
        lt=86_400,
        description="SHELFGUARD_CLOSE_OFFSET_S: the close, seconds after UTC midnight",
    )
    explain_above: float = Field(
        0.5,
        ge=0,
        le=1.01,
        description="SHELFGUARD_EXPLAIN_ABOVE: explain scores at or above this (the policy's "
        "alert floor); 1.01 = never",
    )


def score_message(item: ScoreItem) -> KafkaSinkMessage[bytes, bytes]:
    key, message = item
    return KafkaSinkMessage(key=key.encode(), value=_json.encode(message))


def score_line(item: ScoreItem) -> tuple[str, str]:
    """A score message as a JSONL line for the single-partition file sink."""
    return ("scores", _json.encode(item[1]).decode())


def build_scoring_flow(
    source: Source[Any],
    dlq_sink: Sink[Any],
    scores_sink: Sink[Any],
    score_batch: Callable[[list[Any]], list[ScoreItem]],
    *,
    dlq_format: Callable[[Rejection], Any] | None = None,
    score_format: Callable[[ScoreItem], Any] | None = None,
    features_sink: Sink[Any] | None = None,
    features_format: Callable[[Any], Any] | None = None,
    flow_id: str = "shelfguard_scoring",
    close_s: float | None = 0.0,
) -> Dataflow:
    """The feature steps, then ``score_batch`` on each batch of feature updates.

    ``score_batch`` is usually :meth:`models.stream_scoring.StreamScorer.score`: it gets every
    update a worker has in hand at once, so scoring is one matrix per batch. ``close_s``: the
    close (seconds after UTC midnight) at which every key is sent again, as of it (None: only
    the keys events change; :class:`pipelines.dataflow.BookLogic`).
    """
    flow = Dataflow(flow_id)
    streams = feature_streams(flow, source, emit="updates", close_s=close_s)
    rejects: Any = streams.rejects
    if dlq_format is not None:
        rejects = op.map("dlq_format", rejects, dlq_format)
    op.output("dead_letter", rejects, dlq_sink)
    if features_sink is not None:
        snapshots: Any = streams.outputs
        if features_format is not None:
            snapshots = op.map("features_format", snapshots, features_format)
        op.output("features_out", snapshots, features_sink)
    scores: Any = op.flat_map_batch("score", streams.outputs, score_batch)
    if score_format is not None:
        scores = op.map("score_format", scores, score_format)
    op.output("scores_out", scores, scores_sink)
    return flow


def resolve_tracking_uri(explicit: str | None) -> str | None:
    """The registry to watch: ``explicit``, else $MLFLOW_TRACKING_URI, else ``./mlflow.db`` when
    it exists; None means the packaged models, without reload."""
    import os

    if explicit:
        return explicit
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    local = Path.cwd() / "mlflow.db"
    return f"sqlite:///{local}" if local.exists() else None


def make_scorer(settings: ScoringSettings, clock: Callable[[], float] = time.monotonic) -> Any:
    """A :class:`~models.stream_scoring.StreamScorer` over the configured registry's champions."""
    from models.stream_scoring import ChampionWatcher, StreamScorer

    registry = None
    uri = resolve_tracking_uri(settings.tracking_uri) if settings.use_registry else None
    if uri is not None:
        from training.registry import RegistryChampions

        registry = RegistryChampions(uri)
    watcher = ChampionWatcher(registry, clock, settings.registry_poll_s)
    return StreamScorer(watcher, settings.explain_above)


def build_from_settings(settings: ScoringSettings, scorer: Any | None = None) -> Dataflow:
    """The deployable flow: Kafka topics or files, as ``settings`` say."""
    scorer = scorer if scorer is not None else make_scorer(settings)
    close_s = settings.close_offset_s if settings.close_sweep else None
    if settings.source == "kafka":
        features = None
        if settings.emit_features:
            features = connectors.kafka_sink(settings.bootstrap, settings.features_topic)
        return build_scoring_flow(
            connectors.kafka_source(
                settings.bootstrap,
                settings.events_topic,
                tail=settings.tail,
                batch_size=settings.batch_size,
            ),
            connectors.kafka_sink(settings.bootstrap, settings.dlq_topic),
            connectors.kafka_sink(settings.bootstrap, settings.scores_topic),
            scorer.score,
            dlq_format=connectors.rejection_message,
            score_format=score_message,
            features_sink=features,
            features_format=connectors.update_message,
            close_s=close_s,
        )
    if settings.events_file is None:
        raise ValueError("SHELFGUARD_EVENTS_FILE is required when SHELFGUARD_SOURCE=file")
    source: Source[Any]
    if settings.follow:
        source = connectors.FollowFileSource(settings.events_file, settings.batch_size)
    else:
        source = connectors.file_source(settings.events_file, settings.batch_size)
    features_file = None
    if settings.emit_features:
        features_file = connectors.jsonl_file_sink(settings.features_file)
    return build_scoring_flow(
        source,
        connectors.dlq_file_sink(settings.dlq_file),
        connectors.jsonl_file_sink(settings.scores_file),
        scorer.score,
        dlq_format=connectors.rejection_file_item,
        score_format=score_line,
        features_sink=features_file,
        features_format=_snapshot_line,
        close_s=close_s,
    )


def _snapshot_line(update: Any) -> tuple[str, str]:
    msg = connectors.update_message(update)
    return ("features", msg.value.decode())


def flow() -> Dataflow:
    """Factory for ``python -m bytewax.run serving.scoring_flow:flow``."""
    return build_from_settings(ScoringSettings())
