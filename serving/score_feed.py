"""Scores into the service from the outside: ``shelfguard score`` CSV files and the Kafka topic
``inventory.scores`` (one JSON object per message with the CSV's columns, key ``sku|location``).
A row's ``feature.<name>`` columns (or a message's ``features`` object) are the feature snapshot
the scores were computed from; it stays with the alert and later with the count's label.

Rows or messages that do not validate are dead-lettered (the ``dead_letters`` table, the
``shelfguard_dead_letters_total`` metric and, for Kafka, the ``inventory.scores.dlq`` topic with
the raw value and the reason); the good ones are ingested. Kafka offsets are committed only after
their batch is stored (at-least-once: a replayed score is absorbed by the alert cooldown).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from models.scoring import FEATURE_COLUMN_PREFIX
from serving.labels import features_from_row
from serving.schemas import ScoreIn
from serving.service import ActionService

FEATURE_KEY_MARK = f'"{FEATURE_COLUMN_PREFIX}'.encode()


@dataclass
class FeedResult:
    read: int = 0
    dead_lettered: int = 0
    alerts: int = 0
    suppressed: int = 0
    recommendations: int = 0


def _missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _is_feature(key: Any) -> bool:
    return str(key).startswith(FEATURE_COLUMN_PREFIX)


def parse_score(obj: Any) -> ScoreIn | str:
    """A validated score, or the reason it is refused (field: message; ...)."""
    if isinstance(obj, dict):
        obj = {k: (None if _missing(v) else v) for k, v in obj.items()}
        # an empty field is absent, but an empty feature is a missing value (e.g. no delivery's
        # sell-through yet) that the snapshot must keep: it is still complete
        obj = {k: v for k, v in obj.items() if v is not None or _is_feature(k)}
        flat = features_from_row(obj)
        if flat is not None and "features" not in obj:
            obj = {k: v for k, v in obj.items() if not _is_feature(k)}
            obj["features"] = flat
    try:
        return ScoreIn.model_validate(obj)
    except ValidationError as exc:
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )


def parse_score_message(raw: bytes) -> ScoreIn | str:
    """A score from a Kafka message's bytes: pydantic's JSON parser first (the common case, about
    half the cost), else the careful path of :func:`parse_score` (NaN and empty fields, flat
    ``feature.<name>`` keys, and the reason when the message is refused)."""
    if FEATURE_KEY_MARK not in raw:
        try:
            return ScoreIn.model_validate_json(raw)
        except ValidationError:
            pass
    try:
        return parse_score(json.loads(raw))
    except ValueError as exc:
        return f"not JSON: {exc}"


def _ingest(service: ActionService, scores: list[ScoreIn], actor: str, result: FeedResult) -> None:
    if not scores:
        return
    done = service.ingest_scores(scores, actor)
    result.alerts += len(done.alerts)
    result.suppressed += done.suppressed
    result.recommendations += len(done.recommendations)


def ingest_csv(service: ActionService, path: Path, actor: str, batch: int = 500) -> FeedResult:
    result = FeedResult()
    pending: list[ScoreIn] = []
    with Path(path).open(newline="") as fh:
        for row in csv.DictReader(fh):
            result.read += 1
            parsed = parse_score(row)
            if isinstance(parsed, str):
                service.dead_letter("scores_csv", json.dumps(row), parsed)
                result.dead_lettered += 1
                continue
            pending.append(parsed)
            if len(pending) >= batch:
                _ingest(service, pending, actor, result)
                pending = []
    _ingest(service, pending, actor, result)
    return result


def consume_kafka(
    service: ActionService,
    bootstrap: str,
    topic: str,
    dlq_topic: str,
    *,
    group: str = "shelfguard-serving",
    actor: str = "kafka:inventory.scores",
    max_messages: int | None = None,
    idle_timeout_s: float | None = None,
) -> FeedResult:
    """Consume until ``max_messages`` were read or nothing arrived for ``idle_timeout_s``
    (either None: forever)."""
    import time

    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    result = FeedResult()
    last_seen = last_relay = time.monotonic()
    try:
        while max_messages is None or result.read < max_messages:
            messages = consumer.consume(500, 0.05)
            good: list[ScoreIn] = []
            for msg in messages:
                if msg.error() is not None:
                    continue
                result.read += 1
                raw = msg.value() or b""
                parsed = parse_score_message(raw)
                if isinstance(parsed, str):
                    text = raw.decode("utf-8", errors="replace")
                    body = json.dumps({"raw": text, "reason": parsed}).encode()
                    service.dead_letter(
                        "scores_kafka",
                        text,
                        parsed,
                        message=(dlq_topic, (msg.key() or b"").decode(), body),
                    )
                    result.dead_lettered += 1
                else:
                    good.append(parsed)
            _ingest(service, good, actor, result)
            if messages:
                consumer.commit(asynchronous=False)
                last_seen = time.monotonic()
                continue
            if time.monotonic() - last_relay >= 1.0:  # what waited in the outbox
                service.relay.run()
                last_relay = time.monotonic()
            if idle_timeout_s is not None and time.monotonic() - last_seen > idle_timeout_s:
                break
    finally:
        consumer.close()
    return result
