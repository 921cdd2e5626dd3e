"""``shelfguard score-stream`` over the real broker: events topic in, score messages keyed
sku|location out (and snapshots, rejects), read by the code behind ``shelfguard alerts consume``
into alerts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pandas as pd
import pytest

from models.scorer import load_packaged
from serving.api import Runtime
from serving.publisher import MemoryPublisher
from serving.score_feed import consume_kafka
from serving.settings import DEFAULT_POLICY, ServiceSettings
from serving.webhooks import HttpxSender
from tests.integration.conftest import latest_by_key, reference_replay, wait_until

pytestmark = pytest.mark.integration


def test_score_stream_scores_every_key_and_alerts_consume_turns_them_into_alerts(
    kafka, small_world, processes, tmp_path
) -> None:
    topics = {name: kafka.new_topic(name) for name in ("events", "scores", "features")}
    topics["dlq"] = kafka.new_topic("dlq", partitions=1)
    proc = processes.shelfguard(
        "score-stream", "score-stream", "--packaged", "--bootstrap", kafka.bootstrap,
        "--topic", topics["events"], "--scores-topic", topics["scores"],
        "--dlq-topic", topics["dlq"], "--features-topic", topics["features"],
        "--explain-above", "0.5",
    )  # fmt: skip
    lines = small_world.lines()
    kafka.produce(topics["events"], lines)

    replay = reference_replay(lines)
    keys = sorted(replay.states)
    phantom = load_packaged("phantom-inventory")
    reader = kafka.reader(topics["scores"])

    def as_of(message: dict) -> float:
        return datetime.fromisoformat(message["as_of"]).timestamp()

    def complete(latest: dict[str, dict]) -> bool:
        """Every key's newest message is as of its newest event, or of a later close (the
        close sweep), and scores the key's whole ledger as of then."""
        if set(latest) != set(keys):
            return False
        for key in keys:
            t, newest = as_of(latest[key]), replay.states[key].last_event_ts
            if not (t == newest or (t > newest and t % 86_400 == 0)):
                return False
        frame = pd.DataFrame([replay.states[k].snapshot(as_of(latest[k])) for k in keys])
        expected = phantom.predict(frame)
        scores = [latest[k]["phantom_score"] for k in keys]
        return bool(scores == pytest.approx(list(expected)))

    def caught_up() -> bool:
        reader.read_to_end()
        return complete(latest_by_key(reader.records))

    wait_until(caught_up, 90, what="a score for every key over its whole ledger",
               explain=proc.tail)  # fmt: skip
    records = list(reader.records)
    reader.close()
    latest = latest_by_key(records)
    assert complete(latest)
    assert any(as_of(latest[k]) > replay.states[k].last_event_ts for k in keys)  # swept
    assert all(r.key == f"{r.json()['sku']}|{r.json()['location']}".encode() for r in records)
    assert kafka.count(topics["dlq"]) == small_world.malformed_count
    snapshots = latest_by_key(kafka.read_all(topics["features"]))
    assert set(snapshots) == set(keys)

    # the code behind `shelfguard alerts consume`, into a fresh service whose alert floor is
    # the 95th percentile of these scores (a 10-day world has few scores above the default 0.5)
    messages = [r.json() for r in records]
    floor = round(float(pd.Series([m["stockout_score"] for m in messages]).quantile(0.95)), 4)
    assert 0 < floor < 0.75
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        DEFAULT_POLICY.read_text()
        .replace("min_score: 0.5 ", f"min_score: {floor} ")
        .replace("medium: 0.5", f"medium: {floor}")
    )
    settings = ServiceSettings(
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        kafka_bootstrap="",
        env="dev",
        policy_path=policy,
    )
    fixed = datetime(2026, 3, 20, tzinfo=UTC)
    runtime = Runtime(settings, lambda: fixed, MemoryPublisher(), HttpxSender())
    runtime.store.migrate()
    result = consume_kafka(
        runtime.service, kafka.bootstrap, topics["scores"], "unused.dlq",
        group=f"test-{uuid.uuid4().hex}", max_messages=len(records), idle_timeout_s=15,
    )  # fmt: skip
    assert (result.read, result.dead_lettered) == (len(records), 0)
    # the clock stands still, so the cooldown lets one alert per key and kind through
    expected_alerts = sum(
        len({f"{m['sku']}|{m['location']}" for m in messages if m[f"{kind}_score"] >= floor})
        for kind in ("phantom", "stockout")
    )
    assert result.alerts == expected_alerts > 0
    runtime.store.dispose()
