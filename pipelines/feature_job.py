"""``shelfguard features``: run the feature dataflow on a JSONL file or a Kafka topic to its end."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bytewax.inputs import Source
from bytewax.run import cli_main
from bytewax.testing import run_main

from pipelines import connectors
from pipelines.dataflow import build_flow
from pipelines.replay import feature_table, stream_end


@dataclass(frozen=True)
class FeatureJobResult:
    keys: int
    rejected: int
    duplicates: int
    out: Path


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def run_features(
    out: Path,
    *,
    events: Path | None = None,
    bootstrap: str | None = None,
    topic: str = connectors.EVENTS_TOPIC,
    dlq: Path | None = None,
    workers: int = 1,
    batch_size: int = 1000,
) -> FeatureJobResult:
    """Run the flow over a bounded input and write one Parquet row per key as of its end.

    Exactly one of ``events`` (a JSONL file) and ``bootstrap`` (a Kafka broker; the topic is read
    from its beginning to its current end) must be given. Rejects go to ``dlq`` (default:
    ``<out>.dlq.jsonl``).
    """
    if (events is None) == (bootstrap is None):
        raise ValueError("give exactly one of events (a JSONL file) or bootstrap (Kafka)")
    dlq = dlq or out.with_suffix(".dlq.jsonl")
    with tempfile.TemporaryDirectory(prefix="shelfguard-states-") as tmp:
        state_dir = Path(tmp)
        source: Source[Any]
        if events is not None:
            source = connectors.file_source(events, batch_size)
        else:
            assert bootstrap is not None
            source = connectors.kafka_source(bootstrap, topic, tail=False, batch_size=batch_size)
        flow = build_flow(
            source,
            connectors.dlq_file_sink(dlq),
            connectors.StateDirSink(state_dir),
            emit="final",
            dlq_format=connectors.rejection_file_item,
        )
        if workers == 1:
            run_main(flow)
        else:
            cli_main(flow, workers_per_process=workers)
        states = connectors.read_state_dir(state_dir)
    as_of = stream_end(s.last_event_ts for s in states)
    table = feature_table(states, as_of)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out, index=False)
    return FeatureJobResult(
        keys=len(table),
        rejected=_count_lines(dlq),
        duplicates=sum(s.duplicates for s in states),
        out=out,
    )
