"""The long-running feature dataflow: ``python -m bytewax.run pipelines.stream:flow``.

Reads :class:`~pipelines.settings.FlowSettings` from ``SHELFGUARD_*`` environment variables, so
the same entry point runs one worker, ``-w N`` workers, or a ``-i/-a`` cluster of processes, with
``-r DIR`` recovery (see README "Running on Kafka").
Outputs are keyed feature snapshots (``emit="updates"``): at-least-once replay after a crash
re-sends snapshots a consumer already has, never a double-counted position, because dedupe and
ledger state are restored from the same snapshot as the source offsets.
"""

from __future__ import annotations

from bytewax.dataflow import Dataflow

from pipelines import connectors
from pipelines.dataflow import build_flow
from pipelines.settings import FlowSettings


def _snapshot_line(update) -> tuple[str, str]:  # noqa: ANN001
    msg = connectors.update_message(update)
    return (update.key, msg.value.decode())


def build_stream_flow(settings: FlowSettings) -> Dataflow:
    if settings.source == "kafka":
        return build_flow(
            connectors.kafka_source(
                settings.bootstrap,
                settings.events_topic,
                tail=settings.tail,
                batch_size=settings.batch_size,
            ),
            connectors.kafka_sink(settings.bootstrap, settings.dlq_topic),
            connectors.kafka_sink(settings.bootstrap, settings.features_topic),
            emit="updates",
            dlq_format=connectors.rejection_message,
            out_format=connectors.update_message,
        )
    if settings.events_file is None:
        raise ValueError("SHELFGUARD_EVENTS_FILE is required when SHELFGUARD_SOURCE=file")
    return build_flow(
        connectors.file_source(settings.events_file, settings.batch_size),
        connectors.dlq_file_sink(settings.dlq_file),
        connectors.jsonl_file_sink(settings.features_file),
        emit="updates",
        dlq_format=connectors.rejection_file_item,
        out_format=_snapshot_line,
    )


def flow() -> Dataflow:
    """Factory for ``python -m bytewax.run pipelines.stream:flow``."""
    return build_stream_flow(FlowSettings())
