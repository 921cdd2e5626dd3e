"""The streaming scoring flow end to end (bytewax testing source/sink): scores per key match the
models on the reference replay, whatever the worker count; every message is a valid
``alerts consume`` / ``POST /scores`` input; a new champion in a real (SQLite) MLflow registry is
picked up while the flow runs."""

from __future__ import annotations

import json
import queue
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main
from mlflow.tracking import MlflowClient

from models.scorer import Calibration, load_packaged
from models.stream_scoring import PHANTOM, STOCKOUT, ChampionWatcher, StreamScorer
from pipelines.replay import iter_lines, replay_file
from pipelines.simulator import simulate
from serving.score_feed import parse_score, parse_score_message
from serving.scoring_flow import ScoringSettings, build_scoring_flow, make_scorer
from training import registry


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scoring-world")
    simulate(out, seed=21, stores=3, skus=30, days=14, progress=False)
    return out / "events.jsonl"


def packaged_scorer(explain_above: float = 0.5) -> StreamScorer:
    return StreamScorer(ChampionWatcher(None, time.monotonic), explain_above)


def run_scoring(lines: list[bytes], workers: int) -> tuple[list[Any], list[Any]]:
    scores: list[Any] = []
    dlq: list[Any] = []
    flow = build_scoring_flow(
        TestingSource(lines, batch_size=50),
        TestingSink(dlq),
        TestingSink(scores),
        packaged_scorer().score,
    )
    if workers == 1:
        run_main(flow, epoch_interval=timedelta(0))
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers, epoch_interval=timedelta(0))
    return scores, dlq


def last_by_key(items: list[tuple[str, dict]]) -> dict[str, dict]:
    """The newest message per key (the one with the newest as_of; ties: the later one)."""
    out: dict[str, dict] = {}
    for key, msg in items:
        if key not in out or msg["as_of"] >= out[key]["as_of"]:
            out[key] = msg
    return out


def test_scores_per_key_match_the_models_on_the_replay_and_are_service_input(world) -> None:
    lines = list(iter_lines(world))
    scores, dlq = run_scoring(lines, workers=1)
    replay = replay_file(world)
    assert len(dlq) == len(replay.rejections) > 0

    final = last_by_key(scores)
    assert set(final) == set(replay.states)
    phantom, stockout = load_packaged("phantom-inventory"), load_packaged("stockout-risk")
    keys = sorted(replay.states)
    # a key's newest message is as of its newest event, or of a later close (the close sweep
    # re-sends every key of a sku once one of its events arrives after a close)
    as_of = {k: datetime.fromisoformat(final[k]["as_of"]).timestamp() for k in keys}
    for key in keys:
        newest = replay.states[key].last_event_ts
        assert as_of[key] == newest or (as_of[key] > newest and as_of[key] % 86_400 == 0), key
    assert any(as_of[k] > replay.states[k].last_event_ts for k in keys)
    frame = pd.DataFrame([replay.states[k].snapshot(as_of[k]) for k in keys])
    expected_phantom = dict(zip(keys, phantom.predict(frame), strict=True))
    expected_stockout = dict(zip(keys, stockout.predict(frame), strict=True))
    for key in keys:
        state = replay.states[key]
        msg = final[key]
        assert msg["phantom_score"] == pytest.approx(expected_phantom[key]), key
        assert msg["stockout_score"] == pytest.approx(expected_stockout[key]), key
        assert msg["on_hand"] == state.position.on_hand
    for _key, msg in scores:
        parsed = parse_score(msg)
        assert not isinstance(parsed, str), parsed  # what `alerts consume` accepts
        assert parse_score_message(json.dumps(msg).encode()) == parsed  # its fast path agrees
        assert parsed.features is not None
        assert datetime.fromisoformat(msg["occurred_at"]) <= parsed.as_of
        if max(msg["phantom_score"], msg["stockout_score"]) >= 0.5:
            assert msg["phantom_explanation"] or msg["stockout_explanation"]

    two_scores, _ = run_scoring(lines, workers=2)
    two = last_by_key(two_scores)
    assert {k: m["phantom_score"] for k, m in two.items()} == pytest.approx(
        {k: m["phantom_score"] for k, m in final.items()}
    )


def test_stream_scores_become_alerts_through_post_scores(world, make_service) -> None:
    scores, _ = run_scoring(list(iter_lines(world)), workers=1)
    messages = [msg for _k, msg in scores]
    svc = make_service()
    alerts = 0
    for start in range(0, len(messages), 1000):
        response = svc.post("/scores", "dana", {"scores": messages[start : start + 1000]})
        assert response.status_code == 200, response.text
        alerts += len(response.json()["alerts"])
    # the fake clock stands still, so the cooldown lets one alert per key and kind through
    expected = sum(
        len({f"{m['sku']}|{m['location']}" for m in messages if m[f"{kind}_score"] >= 0.5})
        for kind in ("phantom", "stockout")
    )
    assert alerts == expected > 0
    stored = svc.get("/alerts", "olga", params={"limit": 1000}).json()
    assert len(stored) == alerts
    # each alert names the model version that scored its kind (the packaged versions name
    # their model files, so the two models' versions differ)
    versions = {
        "phantom": load_packaged(PHANTOM).version,
        "stockout": load_packaged(STOCKOUT).version,
    }
    assert versions["phantom"] != versions["stockout"]
    assert {(a["kind"], a["model"].split(":")[1]) for a in stored} <= set(versions.items())


# ------------------------------------------------------------------------------- hot reload


class _QueuePartition(StatefulSourcePartition[bytes, None]):
    def __init__(self, items: queue.Queue) -> None:
        self.items = items
        self.awake: datetime | None = None

    def next_batch(self) -> list[bytes]:
        batch: list[bytes] = []
        while True:
            try:
                item = self.items.get_nowait()
            except queue.Empty:
                break
            if item is None:
                if batch:
                    self.items.put(None)  # end after this batch
                    break
                raise StopIteration
            batch.append(item)
        self.awake = None if batch else datetime.now(UTC) + timedelta(milliseconds=10)
        return batch

    def next_awake(self) -> datetime | None:
        return self.awake

    def snapshot(self) -> None:
        return None


class QueueSource(FixedPartitionedSource[bytes, None]):
    """Lines put into a queue by the test; ``None`` ends the flow."""

    def __init__(self) -> None:
        self.items: queue.Queue = queue.Queue()

    def list_parts(self) -> list[str]:
        return ["queue"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _QueuePartition:
        return _QueuePartition(self.items)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def wait_for(condition, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_new_champion_is_scoring_within_one_poll_without_a_restart(
    world, packaged_registry, tmp_path, monkeypatch
) -> None:
    db = tmp_path / "mlflow.db"
    shutil.copy(packaged_registry, db)
    uri = f"sqlite:///{db}"
    monkeypatch.chdir(tmp_path)
    clock = Clock()
    scorer = make_scorer(ScoringSettings(tracking_uri=uri, registry_poll_s=30), clock)
    source = QueueSource()
    scores: list[Any] = []
    flow = build_scoring_flow(source, TestingSink([]), TestingSink(scores), scorer.score)
    runner = threading.Thread(
        target=run_main, args=(flow,), kwargs={"epoch_interval": timedelta(0)}
    )
    runner.start()
    try:
        lines = list(iter_lines(world))
        half = len(lines) // 2
        first_keys = {k for k in replay_file_keys(lines[:half])}
        for line in lines[:half]:
            source.items.put(line)
        wait_for(lambda: {k for k, _m in scores} >= first_keys, 60, "the first half's scores")
        wait_for(lambda: source.items.empty(), 10, "the queue to drain")
        time.sleep(0.3)  # let the last batch of the first half through
        before = len(scores)

        # a data scientist registers a new phantom model and promotes it
        registry.configure(uri)
        new = load_packaged(PHANTOM)
        new.calibration = Calibration([0.0, 1.0], [0.97, 0.97])  # unmistakable scores
        with mlflow.start_run(run_name="retrained"):
            version = registry.log_model(new, new.reference)
        MlflowClient(uri, uri).set_registered_model_alias(PHANTOM, "champion", version)
        assert version == "2"

        clock.t = 29.0  # not due yet: the next batch still scores with v1
        rest = iter(lines[half:])
        while len(scores) == before:  # one line at a time until one makes a score
            source.items.put(next(rest))
            deadline = time.monotonic() + 1.0
            while len(scores) == before and time.monotonic() < deadline:
                time.sleep(0.02)
        assert scores[-1][1]["phantom_model"] == "phantom-inventory:v1 (champion)"
        switch = len(scores)
        clock.t = 30.0
        for line in rest:
            source.items.put(line)
        source.items.put(None)
        runner.join(timeout=120)
        assert not runner.is_alive()
    finally:
        if runner.is_alive():
            source.items.put(None)
            runner.join(timeout=30)

    old, new_msgs = scores[:switch], scores[switch:]
    assert {m["phantom_model"] for _k, m in old} == {"phantom-inventory:v1 (champion)"}
    assert {m["phantom_model"] for _k, m in new_msgs} == {"phantom-inventory:v2 (champion)"}
    assert {m["stockout_model"] for _k, m in scores} == {"stockout-risk:v1 (champion)"}
    assert all(m["phantom_score"] == pytest.approx(0.97) for _k, m in new_msgs)
    assert all(m["phantom_explanation"] for _k, m in new_msgs)  # 0.97 ≥ the alert floor
    assert any(m["phantom_score"] != pytest.approx(0.97) for _k, m in old)
    assert scorer.watcher.swaps == 1


def replay_file_keys(lines: list[bytes]) -> set[str]:
    from pipelines.replay import Replay

    replay = Replay()
    replay.feed(lines)
    return set(replay.states)
