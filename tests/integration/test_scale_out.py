"""Results do not depend on the number of workers: 1 worker, 2 workers, 2 processes."""

from __future__ import annotations

import socket
import sys

import pandas as pd
import pytest

from pipelines.feature_job import run_features
from pipelines.features import FEATURE_NAMES
from tests.integration.conftest import (
    POSITIONS,
    latest_by_key,
    reference_replay,
    reference_snapshots,
    snapshot_diff,
    truth_diff,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def events_topic(kafka, small_world):
    """The small world on an 8-partition topic (so two workers both get partitions)."""
    topic = kafka.new_topic("events")
    kafka.produce(topic, small_world.lines())
    return topic


@pytest.fixture(scope="module")
def one_worker(kafka, events_topic, tmp_path_factory):
    out = tmp_path_factory.mktemp("one-worker") / "features.parquet"
    result = run_features(out, bootstrap=kafka.bootstrap, topic=events_topic)
    return result, pd.read_parquet(out)


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free right now (all held open until chosen, so never the same)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def test_bounded_run_on_two_workers_equals_one(
    kafka, small_world, events_topic, one_worker, tmp_path
):
    out = tmp_path / "features.parquet"
    result = run_features(out, bootstrap=kafka.bootstrap, topic=events_topic, workers=2)
    single_result, single = one_worker
    pd.testing.assert_frame_equal(pd.read_parquet(out), single, check_exact=True)
    assert (result.keys, result.rejected, result.duplicates) == (
        single_result.keys,
        single_result.rejected,
        single_result.duplicates,
    )
    positions = {f"{r.sku}|{r.location}": r._asdict() for r in single.itertuples()}
    assert truth_diff(positions, small_world.last_truth()) == []


def test_two_process_cluster_equals_one_worker(
    kafka, small_world, events_topic, one_worker, processes
):
    features, dlq = kafka.new_topic("features", partitions=4), kafka.new_topic("dlq", partitions=1)
    addresses = ";".join(f"127.0.0.1:{port}" for port in free_ports(2))
    env = {
        "SHELFGUARD_SOURCE": "kafka",
        "SHELFGUARD_TAIL": "false",
        "SHELFGUARD_BOOTSTRAP": kafka.bootstrap,
        "SHELFGUARD_EVENTS_TOPIC": events_topic,
        "SHELFGUARD_FEATURES_TOPIC": features,
        "SHELFGUARD_DLQ_TOPIC": dlq,
    }
    cluster = [
        processes.start(
            f"cluster-{i}",
            [
                sys.executable,
                "-m",
                "bytewax.run",
                "pipelines.stream:flow",
                "-i",
                str(i),
                "-a",
                addresses,
            ],  # fmt: skip
            env,
        )
        for i in range(2)
    ]
    for proc in cluster:
        assert proc.wait(timeout=120) == 0, proc.tail()

    got = latest_by_key(kafka.read_all(features))
    _, single = one_worker
    # Same final positions as one worker ...
    positions = {f"{r.sku}|{r.location}": r._asdict() for r in single.itertuples()}
    assert snapshot_diff(got, positions, columns=POSITIONS) == []
    # ... and every feature as the stream defines it (as of each key's newest event).
    expected = reference_snapshots(reference_replay(small_world.lines()))
    assert snapshot_diff(got, expected, columns=("sku", "location", *FEATURE_NAMES)) == []
    assert kafka.count(dlq) == small_world.malformed_count
