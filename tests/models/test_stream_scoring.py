"""Batch scoring of feature updates and the champion watcher (fake registry, fake clock)."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from models.scorer import RiskModel, load_packaged
from models.stream_scoring import (
    PHANTOM,
    STOCKOUT,
    ChampionWatcher,
    StreamScorer,
)
from pipelines.dataflow import FeatureUpdate, Trigger
from pipelines.replay import replay_file
from pipelines.simulator import simulate

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def packaged() -> dict[str, RiskModel]:
    return {name: load_packaged(name) for name in (PHANTOM, STOCKOUT)}


@pytest.fixture(scope="module")
def updates(tmp_path_factory) -> list[FeatureUpdate]:
    """One update per key of a small world, as of each key's newest event."""
    out = tmp_path_factory.mktemp("world")
    simulate(out, seed=5, stores=4, skus=40, days=21, progress=False)
    replay = replay_file(out / "events.jsonl")
    return [
        FeatureUpdate(key, s.duplicates, s.snapshot(s.last_event_ts), s.last_event_ts)
        for key, s in sorted(replay.states.items())
    ]


class FakeRegistry:
    """Aliases in a dict; loading a version = the packaged model renamed."""

    def __init__(self, packaged: dict[str, RiskModel], champions: dict[str, str | None]):
        self.packaged = packaged
        self.champions = champions
        self.loads: list[tuple[str, str]] = []
        self.polls = 0
        self.down = False

    def champion_version(self, name: str) -> str | None:
        self.polls += 1
        if self.down:
            raise ConnectionError("registry unreachable")
        return self.champions.get(name)

    def load_version(self, name: str, version: str) -> RiskModel:
        self.loads.append((name, version))
        return dataclasses.replace(self.packaged[name], version=f"v{version} (champion)")


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class CountingBooster:
    """Wraps a LightGBM booster; records the rows of every predict call."""

    def __init__(self, booster) -> None:  # noqa: ANN001
        self.booster = booster
        self.calls: list[tuple[int, bool]] = []

    def predict(self, matrix, pred_contrib: bool = False, **kwargs):  # noqa: ANN001, ANN003, ANN201
        self.calls.append((len(matrix), pred_contrib))
        return self.booster.predict(matrix, pred_contrib=pred_contrib, **kwargs)


def static_scorer(packaged, explain_above: float) -> StreamScorer:
    watcher = ChampionWatcher(None, Clock(), fallback=lambda name: packaged[name])
    return StreamScorer(watcher, explain_above, clock=lambda: NOW)


def test_a_batch_is_one_matrix_per_model_and_equals_row_by_row(packaged, updates) -> None:
    phantom = dataclasses.replace(packaged[PHANTOM])
    counting = CountingBooster(phantom.booster)
    phantom.booster = counting  # type: ignore[assignment]
    scorer = static_scorer({PHANTOM: phantom, STOCKOUT: packaged[STOCKOUT]}, explain_above=1.01)
    messages = scorer.score(updates)
    assert len(messages) == len(updates) == len({u.key for u in updates})
    assert counting.calls == [(len(updates), False)]  # one predict, no explanation (never)
    for (key, message), update in zip(messages[:25], updates[:25], strict=True):
        assert key == update.key == f"{message['sku']}|{message['location']}"
        row = pd.DataFrame([update.snapshot])
        assert message["phantom_score"] == pytest.approx(packaged[PHANTOM].predict(row)[0])
        assert message["stockout_score"] == pytest.approx(packaged[STOCKOUT].predict(row)[0])
        assert message["phantom_explanation"] == message["stockout_explanation"] == ""


def test_newest_update_per_key_wins_within_a_batch(packaged, updates) -> None:
    scorer = static_scorer(packaged, explain_above=1.01)
    stale = dataclasses.replace(updates[0], snapshot={**updates[0].snapshot, "on_hand": 999})
    messages = scorer.score([stale, updates[1], updates[0]])
    assert [k for k, _m in messages] == [updates[0].key, updates[1].key]
    assert messages[0][1]["on_hand"] == updates[0].snapshot["on_hand"] != 999


def test_only_rows_at_or_above_the_threshold_are_explained(packaged, updates) -> None:
    phantom = dataclasses.replace(packaged[PHANTOM])
    counting = CountingBooster(phantom.booster)
    phantom.booster = counting  # type: ignore[assignment]
    scores = packaged[PHANTOM].predict(pd.DataFrame([u.snapshot for u in updates]))
    threshold = float(np.quantile(scores, 0.9))
    above = int((scores >= threshold).sum())
    assert 0 < above < len(updates)
    scorer = static_scorer({PHANTOM: phantom, STOCKOUT: packaged[STOCKOUT]}, threshold)
    messages = [m for _k, m in scorer.score(updates)]
    assert counting.calls == [(len(updates), False), (above, True)]
    explained = [m for m in messages if m["phantom_explanation"]]
    assert all(m["phantom_score"] >= threshold for m in explained)
    assert all(m["phantom_explanation"] == "" for m in messages if m["phantom_score"] < threshold)
    assert len(explained) >= above - 1  # a row may have no risk-raising feature to name


def test_message_fields(packaged, updates) -> None:
    base = updates[0]
    snap = {**base.snapshot, "reserved": -2, "unit_price": math.nan, "days_of_cover": math.inf}
    trigger = Trigger("ev-9", base.as_of_ts - 3600, base.as_of_ts - 3000)
    with_trigger = dataclasses.replace(base, snapshot=snap, trigger=trigger)
    scorer = static_scorer(packaged, explain_above=0.5)
    (_key, msg), (_key2, msg2) = scorer.score(
        [
            with_trigger,
            dataclasses.replace(updates[1], snapshot={**updates[1].snapshot, "unit_price": 4.5}),
        ]
    )
    as_of = datetime.fromtimestamp(base.as_of_ts, UTC)
    assert msg["as_of"] == as_of.isoformat().replace("+00:00", "Z")
    assert datetime.fromisoformat(msg["occurred_at"]).timestamp() == base.as_of_ts - 3600
    assert datetime.fromisoformat(msg["published_at"]).timestamp() == base.as_of_ts - 3000
    assert msg["event_id"] == "ev-9"
    assert msg["scored_at"] == "2026-11-27T12:00:00Z"
    assert msg["reserved"] == 0 and msg["features"]["reserved"] == -2
    assert msg["features"]["unit_price"] is None and msg["features"]["days_of_cover"] is None
    assert "unit_value" not in msg
    assert msg["phantom_model"].startswith("phantom-inventory:packaged")
    # without a trigger (a settlement changed the key): occurred_at is the snapshot's time
    assert msg2["occurred_at"] == msg2["as_of"] and "event_id" not in msg2
    assert msg2["unit_value"] == 4.5


def test_watcher_swaps_a_new_champion_after_the_poll_interval(packaged, updates) -> None:
    registry = FakeRegistry(packaged, {PHANTOM: "1", STOCKOUT: "1"})
    clock = Clock()
    watcher = ChampionWatcher(registry, clock, poll_s=30)
    scorer = StreamScorer(watcher, 1.01, clock=lambda: NOW)
    assert registry.loads == [(PHANTOM, "1"), (STOCKOUT, "1")]
    assert scorer.score(updates[:3])[0][1]["phantom_model"] == "phantom-inventory:v1 (champion)"

    registry.champions[PHANTOM] = "2"
    clock.t = 29.0
    polls = registry.polls
    assert scorer.score(updates[:3])[0][1]["phantom_model"].endswith("v1 (champion)")
    assert registry.polls == polls  # not due yet: the registry is not asked
    clock.t = 30.0
    message = scorer.score(updates[:3])[0][1]
    assert message["phantom_model"] == "phantom-inventory:v2 (champion)"
    assert message["stockout_model"] == "stockout-risk:v1 (champion)"
    assert registry.loads[-1] == (PHANTOM, "2") and watcher.swaps == 1

    registry.down = True  # a failing registry keeps the models in use and is retried
    clock.t = 61.0
    assert scorer.score(updates[:1])[0][1]["phantom_model"].endswith("v2 (champion)")
    assert watcher.poll_failures == 2
    registry.down = False
    registry.champions[STOCKOUT] = "3"
    clock.t = 92.0
    assert scorer.score(updates[:1])[0][1]["stockout_model"] == "stockout-risk:v3 (champion)"


def test_watcher_falls_back_to_packaged_until_a_champion_exists(packaged) -> None:
    registry = FakeRegistry(packaged, {})
    clock = Clock()
    watcher = ChampionWatcher(registry, clock, poll_s=10, fallback=lambda name: packaged[name])
    assert watcher.current().phantom is packaged[PHANTOM] and registry.loads == []
    registry.champions[PHANTOM] = "1"
    clock.t = 10.0
    assert watcher.current().phantom.version == "v1 (champion)"
    assert watcher.current().stockout is packaged[STOCKOUT]

    without = ChampionWatcher(None, clock, fallback=lambda name: packaged[name])
    clock.t = 1e9
    assert without.current().phantom is packaged[PHANTOM]
