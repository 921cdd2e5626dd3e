"""Count outcomes into training: `shelfguard score` writes each key's feature snapshot beside its
scores, the alert keeps it, a completed count copies it into the label, and the label export
(`GET /labels?format=parquet|jsonl`, `shelfguard labels export`) gives training rows that
`shelfguard train --labels` hands to the trainer, with the phantom model's label values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from models.spec import MODEL_FEATURES, PHANTOM, STOCKOUT
from pipelines.replay import replay_file
from pipelines.simulator import simulate
from serving.cli import app
from serving.labels import FIELD_WORLD, TRAINING_COLUMNS, read_labels, training_rows
from serving.score_feed import ingest_csv
from tests.serving.conftest import score_row

runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    simulate(out, seed=11, stores=2, skus=12, days=8, progress=False)
    return out


def pick_keys(scores: pd.DataFrame) -> list[dict]:
    """Three store keys with at least 2 units on record (a count of 0, of all, of one less)."""
    rows = scores[(scores["on_hand"] >= 2) & scores["location"].str.startswith("S")]
    assert len(rows) >= 3
    return rows.head(3).to_dict("records")


def test_count_outcomes_round_trip_into_training_rows(
    make_service, world, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./mlflow.db: the packaged models score
    scores_csv = tmp_path / "scores.csv"
    done = runner.invoke(
        app, ["score", "--events", str(world / "events.jsonl"), "--out", str(scores_csv)]
    )
    assert done.exit_code == 0, done.output
    scores = pd.read_csv(scores_csv)
    assert {f"feature.{name}" for name in MODEL_FEATURES} <= set(scores.columns)
    chosen = pick_keys(scores)

    # the three keys alert (phantom 0.7: counts need approval) with their snapshot
    subset = tmp_path / "alerting.csv"
    # written as `score` writes (a missing value, e.g. no delivery's sell-through, left empty)
    alerting = pd.DataFrame(chosen, columns=scores.columns)
    alerting.assign(phantom_score=0.7, stockout_score=0.0).to_csv(subset, index=False)
    svc = make_service()
    fed = ingest_csv(svc.runtime.service, subset, actor="test")
    assert (fed.read, fed.dead_lettered, fed.alerts) == (3, 0, 3)
    # and one alert whose score came without a snapshot
    svc.post("/scores", "olga", {"scores": [score_row("SKU-NOFEAT", "S001", on_hand=4)]})

    for rec in svc.get("/recommendations?state=pending", "bert").json():
        if rec["action"] == "open_cycle_count":
            r = svc.post(f"/recommendations/{rec['id']}/decision", "bert", {"decision": "approve"})
            assert r.json()["state"] == "applied"
    tasks = {(t["sku"], t["location"]): t for t in svc.get("/tasks?state=open", "olga").json()}
    counted = {}
    for row, how in zip(chosen, ("empty", "all", "one_less"), strict=True):
        key = (row["sku"], row["location"])
        recorded = tasks[key]["recorded_on_hand"]
        assert recorded == row["on_hand"]
        counted[key] = {"empty": 0, "all": recorded, "one_less": recorded - 1}[how]
        r = svc.post(f"/tasks/{tasks[key]['id']}/count", "olga", {"counted_quantity": counted[key]})
        assert r.status_code == 200, r.text
    svc.post(f"/tasks/{tasks[('SKU-NOFEAT', 'S001')]['id']}/count", "olga", {"counted_quantity": 0})

    # the stored labels carry the snapshot and its time
    stored = {(x["sku"], x["location"]): x for x in svc.get("/labels", "dana").json()}
    first = (chosen[0]["sku"], chosen[0]["location"])
    assert stored[first]["features"]["on_hand"] == chosen[0]["on_hand"]
    assert pd.Timestamp(stored[first]["as_of"]) == pd.Timestamp(chosen[0]["as_of"])
    assert stored[("SKU-NOFEAT", "S001")]["features"] is None

    # three ways out: parquet and jsonl over HTTP, and the CLI reading the database
    token = svc.tokens["dana"]
    via_parquet = read_labels("http://testserver/labels", token, client=svc.client)
    via_jsonl = read_labels("http://testserver/labels?format=jsonl", token, client=svc.client)
    out = tmp_path / "labels.parquet"
    done = runner.invoke(
        app, ["labels", "export", "--out", str(out), "--database-url", svc.settings.database_url]
    )
    assert done.exit_code == 0, done.output
    via_cli = read_labels(out)
    assert svc.client.get("/labels?format=parquet").status_code == 401
    assert svc.get("/labels?format=parquet", "olga").status_code == 403

    frames = []
    for exported in (via_parquet, via_jsonl, via_cli):
        assert len(exported) == 4
        rows, dropped = training_rows(exported)
        assert dropped == 1  # the label without a snapshot cannot train
        frames.append(rows)
    pd.testing.assert_frame_equal(frames[0], frames[1])
    pd.testing.assert_frame_equal(frames[0], frames[2])
    rows = frames[0]

    assert list(rows.columns) == list(TRAINING_COLUMNS)
    assert set(rows["world"]) == {FIELD_WORLD}
    assert rows["stockout_72h"].isna().all()
    by_key = rows.set_index(["sku", "location"])
    # phantom in the model's meaning: record >= 1 and the shelf empty
    assert by_key.loc[first, "phantom"] == 1
    assert by_key.loc[(chosen[1]["sku"], chosen[1]["location"]), "phantom"] == 0
    assert by_key.loc[(chosen[2]["sku"], chosen[2]["location"]), "phantom"] == 0
    outcomes = via_parquet.set_index(["sku", "location"])["outcome"]
    assert [outcomes[(r["sku"], r["location"])] for r in chosen] == [
        "confirmed_phantom",  # counted 0
        "false_alarm",  # counted all
        "confirmed_phantom",  # counted one less: a record error, but the shelf was not empty
    ]

    # the features are the ones the scores were computed from (a replay of the same events)
    features = replay_file(world / "events.jsonl").feature_table().set_index(["sku", "location"])
    for row in chosen:
        key = (row["sku"], row["location"])
        ours = by_key.loc[key, list(MODEL_FEATURES)].to_numpy(np.float64)
        theirs = features.loc[key, list(MODEL_FEATURES)].to_numpy(np.float64)
        np.testing.assert_allclose(ours, theirs, rtol=1e-9)
        assert by_key.loc[key, "as_of"] == features.loc[key, "as_of"]


def field_rows(n_phantom: int = 1) -> pd.DataFrame:
    rows = []
    for i in range(3):
        row = {name: float(i + 1) for name in MODEL_FEATURES}
        rows.append(
            {
                "world": FIELD_WORLD,
                "sku": f"SKU-{i}",
                "location": "S001",
                "as_of": pd.Timestamp("2026-03-05T12:00:00Z") + pd.Timedelta(days=i),
                **row,
                "unit_price": 3.5,
                "phantom": int(i < n_phantom),
                "stockout_72h": math.nan,
            }
        )
    return pd.DataFrame(rows, columns=list(TRAINING_COLUMNS))


def test_train_labels_option_hands_the_rows_to_the_trainer(world, tmp_path, monkeypatch) -> None:
    from training.dataset import build_world_dataset
    from training.fit import labelled, time_split

    captured = {}

    def fake_train(**kwargs):
        captured.update(kwargs)
        return []

    monkeypatch.setattr("training.train.train", fake_train)
    exported = field_rows().assign(
        task_id=[1, 2, 3],
        alert_id=[1, 2, 3],
        outcome="false_alarm",
        recorded_on_hand=3,
        counted_quantity=3,
        counted_at=pd.Timestamp("2026-03-09T00:00:00Z"),
        score=0.7,
        model="phantom-inventory:3",
        has_features=[True, True, False],
    )
    path = tmp_path / "labels.jsonl"
    from serving.labels import write_labels

    write_labels(exported, path)
    done = runner.invoke(app, ["train", "--labels", str(path), "--data", str(world)])
    assert done.exit_code == 0, done.output
    extra = captured["extra_labels"]
    assert list(extra["sku"]) == ["SKU-0", "SKU-1"] and list(extra["phantom"]) == [1, 0]
    assert "2 rows" in done.output and "1 without a feature snapshot" in done.output

    # the rows fit the training frame: concatenated, split, and kept by the phantom model only
    frame = pd.concat([build_world_dataset(world), extra], ignore_index=True)
    assert frame[list(MODEL_FEATURES)].to_numpy(np.float64).shape[1] == len(MODEL_FEATURES)
    assert (labelled(frame, PHANTOM)["world"] == FIELD_WORLD).sum() == 2
    assert (labelled(frame, STOCKOUT)["world"] == FIELD_WORLD).sum() == 0
    train, valid, test = time_split(frame)
    assert (train | valid | test).all()

    bad = runner.invoke(app, ["train", "--labels", str(tmp_path / "missing.parquet")])
    assert bad.exit_code == 2 and "does not exist" in bad.output


def test_scores_may_carry_a_snapshot_of_known_features_only(make_service) -> None:
    svc = make_service()
    snapshot = {name: 1.5 for name in MODEL_FEATURES}
    r = svc.post("/scores", "olga", {"scores": [score_row(features={**snapshot, "colour": 1})]})
    assert r.status_code == 422 and "colour" in r.text
    r = svc.post("/scores", "olga", {"scores": [score_row(features={"on_hand": "lots"})]})
    assert r.status_code == 422
    r = svc.post("/scores", "olga", {"scores": [score_row(features=snapshot)]})
    assert r.status_code == 200, r.text
    with svc.runtime.store.reader() as session:
        from serving.store.tables import Alert

        (alert,) = session.query(Alert).all()
        assert alert.features == snapshot
