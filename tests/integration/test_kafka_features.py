"""A bounded feature run over a real Kafka topic equals the file run and the simulator's truth."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import pytest

from pipelines.events import RejectReason
from pipelines.feature_job import run_features
from pipelines.features import FEATURE_NAMES
from tests.integration.conftest import (
    POSITIONS,
    resent_count,
    run_cli,
    truth_diff,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def file_run(small_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("file-run") / "features.parquet"
    result = run_features(out, events=small_world.events, dlq=out.with_suffix(".dlq.jsonl"))
    return result, pd.read_parquet(out)


@pytest.mark.parametrize("publisher", ["kcat", "shelfguard publish"])
def test_bounded_kafka_run_equals_file_run_and_truth(
    publisher, kafka, small_world, file_run, tmp_path
):
    lines = small_world.lines()
    topic = kafka.new_topic("events")
    if publisher == "kcat":
        kafka.produce_kcat(topic, lines)
    else:
        run_cli("publish", "--events", str(small_world.events), "--bootstrap", kafka.bootstrap,
                "--topic", topic, "--quiet")  # fmt: skip
    assert kafka.count(topic) == len(lines)

    out, dlq = tmp_path / "features.parquet", tmp_path / "dlq.jsonl"
    result = run_features(out, bootstrap=kafka.bootstrap, topic=topic, dlq=dlq)
    from_kafka = pd.read_parquet(out)
    file_result, from_file = file_run

    # Same table as the file run: every feature column, exactly.
    assert list(from_kafka.columns) == list(from_file.columns)
    assert set(FEATURE_NAMES) <= set(from_kafka.columns)
    pd.testing.assert_frame_equal(from_kafka, from_file, check_exact=True)

    # Positions equal the simulator's recorded truth on the last day, for every key.
    positions = {f"{r.sku}|{r.location}": r._asdict() for r in from_kafka.itertuples()}
    assert truth_diff(positions, small_world.last_truth()) == []
    assert set(POSITIONS) <= set(from_kafka.columns)

    # Every malformed line is dead-lettered once, with a reason.
    records = [json.loads(line) for line in dlq.read_text().splitlines()]
    assert len(records) == small_world.malformed_count == result.rejected > 0
    assert all(r["reason"] in set(RejectReason) and r["detail"] for r in records)
    malformed = Counter(
        line.decode("utf-8", errors="replace") for line in small_world.malformed_lines()
    )
    assert Counter(r["raw"] for r in records) == malformed

    # No re-sent line was applied: every one was counted as a duplicate.
    resent = resent_count(lines)
    assert resent == small_world.duplicates_count > 0
    assert result.duplicates == file_result.duplicates == resent
    assert from_kafka["ledger_anomalies"].sum() == from_file["ledger_anomalies"].sum()
