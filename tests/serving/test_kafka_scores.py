"""Scores from the real Kafka topic into alerts; unreadable messages to the DLQ topic."""

from __future__ import annotations

import json

import pytest

from pipelines.publish import make_producer
from serving.publisher import KafkaPublisher
from tests.serving.conftest import read_topic, score_row

pytestmark = pytest.mark.integration


def test_consume_scores_from_kafka(make_service, kafka_broker, kafka_topics) -> None:
    from serving.score_feed import consume_kafka

    svc = make_service(
        publisher=KafkaPublisher(kafka_broker),
        kafka_bootstrap=kafka_broker,
        alerts_topic=kafka_topics["alerts"],
        atp_topic=kafka_topics["atp"],
        events_topic=kafka_topics["events"],
    )
    producer = make_producer(kafka_broker)
    messages = [
        json.dumps(score_row("SKU-1")).encode(),
        b"{not json",
        json.dumps(score_row("SKU-2", stockout_score=0.9, phantom_score=0.2)).encode(),
        json.dumps(score_row("SKU-3", on_hand="many")).encode(),
        json.dumps(score_row("SKU-1")).encode(),  # same key again: cooldown
    ]
    for value in messages:
        producer.produce(kafka_topics["scores"], value=value, key=b"k")
    assert producer.flush(30) == 0
    result = consume_kafka(
        svc.runtime.service,
        kafka_broker,
        kafka_topics["scores"],
        kafka_topics["scores_dlq"],
        group="test-" + kafka_topics["scores"],
        max_messages=5,
        idle_timeout_s=20,
    )
    assert (result.read, result.dead_lettered, result.alerts, result.suppressed) == (5, 2, 2, 1)
    registry = svc.runtime.metrics.registry
    assert registry.get_sample_value("shelfguard_scores_ingested_total") == 3
    assert registry.get_sample_value("shelfguard_event_to_alert_seconds_count") == 2
    kinds = sorted(a["kind"] for a in svc.get("/alerts", "olga").json())
    assert kinds == ["phantom", "stockout"]
    dlq = [json.loads(v) for _k, v in read_topic(kafka_broker, kafka_topics["scores_dlq"], 2)]
    assert {d["raw"] for d in dlq} == {messages[1].decode(), messages[3].decode()}
    assert any("on_hand" in d["reason"] for d in dlq)
    alerts = read_topic(kafka_broker, kafka_topics["alerts"], 2)
    assert sorted(k for k, _v in alerts) == ["SKU-1|S01", "SKU-2|S01"]
    route = [r for r in svc.get("/recommendations", "ana").json() if r["sku"] == "SKU-2"]
    assert [(r["action"], r["mode"]) for r in route] == [
        ("route_to_alternate_node", "recommend_only")
    ]


def test_publish_batch_reports_the_delivered_prefix_when_no_broker_answers() -> None:
    publisher = KafkaPublisher("127.0.0.1:1", timeout_s=1.0)  # nothing listens there
    try:
        delivered, error = publisher.publish_batch([("t", "k", b"1"), ("t", "k", b"2")])
    finally:
        publisher._producer.purge()
    assert delivered == 0 and error is not None and "broker" in error
