"""Other spellings of the same events score the same.

A retailer's integration will not write JSON the way our simulator does. Every respelling below is
contract-conforming and means the same event: timestamps with other UTC offsets (the same
instant) and lower-case ``t``/``z``, other event ids (consistently: a re-sent copy keeps its new
id), fields in another order, unknown extra fields, a whole-number ``quantity`` written as a float,
no ``published_at``. Positions, features and both scores must not move.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from models.scorer import load_packaged
from models.scoring import score_features
from pipelines.replay import replay_file
from pipelines.simulator import simulate

OFFSETS = [timedelta(0), timedelta(hours=5, minutes=30), timedelta(hours=-7), timedelta(hours=14)]


def _respell_ts(text: str, rng: random.Random) -> str:
    instant = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    local = instant.astimezone(timezone(rng.choice(OFFSETS))).isoformat()
    if rng.random() < 0.3:
        local = local.replace("T", "t").replace("+00:00", "z")
    return local


def respell(line: str, rng: random.Random, ids: dict[str, str]) -> str:
    try:
        event = json.loads(line)
    except ValueError:
        return line  # a malformed line stays malformed
    if not isinstance(event, dict) or not isinstance(event.get("event_id"), str):
        return line
    try:
        event["occurred_at"] = _respell_ts(event["occurred_at"], rng)
    except (TypeError, ValueError, AttributeError):
        return line  # a bad timestamp: it is rejected either way
    event["event_id"] = ids.setdefault(event["event_id"], str(uuid.UUID(int=rng.getrandbits(128))))
    if "published_at" in event and rng.random() < 0.5:
        del event["published_at"]
    elif isinstance(event.get("published_at"), str):
        try:
            event["published_at"] = _respell_ts(event["published_at"], rng)
        except ValueError:
            return line
    if type(event.get("quantity")) is int and rng.random() < 0.3:
        event["quantity"] = float(event["quantity"])
    if rng.random() < 0.3:
        event["x_channel_note"] = {"lane": rng.randint(1, 9)}
    items = list(event.items())
    rng.shuffle(items)
    return json.dumps(dict(items))


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("spellings")
    simulate(root / "canonical", seed=31, stores=3, skus=30, days=14, progress=False)
    canonical = root / "canonical" / "events.jsonl"
    rng, ids = random.Random(5), {}
    respelled = root / "respelled.jsonl"
    respelled.write_text(
        "".join(respell(line, rng, ids) + "\n" for line in canonical.read_text().splitlines())
    )
    return canonical, respelled


def test_the_respelled_stream_really_differs(worlds) -> None:
    canonical, respelled = worlds
    a, b = canonical.read_text().splitlines(), respelled.read_text().splitlines()
    assert len(a) == len(b)
    assert sum(x != y for x, y in zip(a, b, strict=True)) > 0.95 * len(a)
    assert "+05:30" in respelled.read_text() and "-07:00" in respelled.read_text()


def test_positions_features_and_scores_do_not_move(worlds) -> None:
    canonical, respelled = worlds
    first, second = replay_file(canonical), replay_file(respelled)
    assert len(first.rejections) == len(second.rejections) > 0  # the simulator's bad lines
    assert first.duplicates == second.duplicates > 0
    features_a, features_b = first.feature_table(), second.feature_table()
    pd.testing.assert_frame_equal(features_a, features_b)
    phantom, stockout = load_packaged("phantom-inventory"), load_packaged("stockout-risk")
    scores_a = score_features(features_a, phantom, stockout, explain_above=0.0)
    scores_b = score_features(features_b, phantom, stockout, explain_above=0.0)
    pd.testing.assert_frame_equal(scores_a, scores_b)
