import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from models.explain import explain_rows, render
from models.scorer import load_packaged
from models.scoring import (
    SCORE_COLUMNS,
    score_features,
    with_feature_columns,
    write_csv,
)
from pipelines.replay import replay_file
from serving.cli import app

REPO = Path(__file__).resolve().parents[2]
# Runs `shelfguard score` in a fresh interpreter, then prints the modules it imported.
_IMPORTS_PROBE = r"""
import json, sys
from serving.cli import app
try:
    app(sys.argv[1:])
except SystemExit as done:
    assert not done.code, done.code
print(json.dumps(sorted(sys.modules)))
"""


def _modules_imported_by(args: list[str], cwd: Path) -> set[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", _IMPORTS_PROBE, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=True,
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_score_without_a_registry_imports_no_registry_or_service_code(tmp_path, conformance_dir):
    """No ``--model-uri``, no ``MLFLOW_TRACKING_URI``, no ``./mlflow.db``: the packaged models
    score the file, and MLflow, SQLAlchemy, the service and training code stay unimported
    (they were ~60 % of the command's start-up)."""
    out = tmp_path / "scores.csv"
    events = conformance_dir / "events.jsonl"
    modules = _modules_imported_by(["score", "--events", str(events), "--out", str(out)], tmp_path)
    assert len(list(csv.DictReader(out.open()))) == 5
    top = {m.split(".")[0] for m in modules}
    assert not top & {"mlflow", "sqlalchemy", "fastapi", "evidently", "matplotlib"}
    assert {m for m in modules if m.startswith(("serving.", "training."))} == {
        "serving.cli",
        "training.champions",
    }


def test_the_score_csv_contract_imports_no_model_code(tmp_path):
    """The service reads score CSVs (``models.scoring``'s columns) and never loads a model:
    importing the contract must not import LightGBM."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", "import sys, serving.labels; print('lightgbm' in sys.modules)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    assert done.stdout.strip() == "False"


def test_score_command_on_a_foreign_contract_file(tmp_path, conformance_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no mlflow.db here: the packaged models are used
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(
        app, ["score", "--events", str(conformance_dir / "events.jsonl"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 5  # the 5 keys of the conformance stream
    assert set(SCORE_COLUMNS) <= set(rows[0])
    for row in rows:
        for col in ("phantom_score", "stockout_score"):
            assert 0.0 <= float(row[col]) <= 1.0
    negative = next(r for r in rows if r["sku"] == "SKU-3")
    assert int(negative["on_hand"]) == -2 and float(negative["phantom_score"]) < 0.5
    assert "packaged" in rows[0]["phantom_model"]


def test_packaged_models_are_calibrated_probabilities():
    model = load_packaged("phantom-inventory")
    assert model.reference is not None
    p = model.predict(model.reference)
    assert np.all((p >= 0) & (p <= 1))
    assert model.calibration.x == sorted(model.calibration.x)


def test_explanations_are_words_from_the_row():
    features = pd.DataFrame(
        {
            "hours_since_last_sale": [96.0],
            "expected_sales_since_last_sale": [4.1],
            "pick_short_28d": [2.0],
            "on_hand": [3.0],
        }
    )
    names = list(features.columns)
    contrib = np.array([[1.5, 0.2, 0.9, -0.4, -1.0]])  # last column: bias
    reasons = explain_rows(contrib, features, names, top_k=3)[0]
    text = render(reasons)
    assert "no sale for 4.0 days where 4.1 units were expected" in text
    assert "2 pick failures in 28 days" in text
    assert all(r.contribution > 0 for r in reasons)
    assert not any("on hand" in r.text for r in reasons)  # it lowered the risk
    assert math.isclose(reasons[0].contribution, 1.5)


def test_explain_above_explains_exactly_the_rows_at_or_above_it():
    from models.scoring import score_features

    phantom, stockout = load_packaged("phantom-inventory"), load_packaged("stockout-risk")
    features = phantom.reference.sample(400, random_state=3).reset_index(drop=True)
    features["sku"] = [f"S{i}" for i in range(len(features))]
    features["location"] = "L1"
    for col in ("reserved", "atp", "on_hand"):
        if col not in features:
            features[col] = 0
    features["as_of"] = pd.Timestamp("2026-03-02", tz="UTC")
    every = score_features(features, phantom, stockout, explain_above=0.0)
    some = score_features(features, phantom, stockout, explain_above=0.3)
    assert (every["phantom_explanation"] != "").mean() > 0.5
    assert list(every["sku"]) == list(some["sku"])
    for col, score in (
        ("phantom_explanation", "phantom_score"),
        ("stockout_explanation", "stockout_score"),
    ):
        high = some[score] >= 0.3
        assert high.any() and (~high).any()
        assert (some.loc[~high, col] == "").all()
        assert list(some.loc[high, col]) == list(every.loc[high, col])


def test_score_command_with_a_far_future_event(tmp_path, monkeypatch):
    """One schema-valid event in 9999 among normal ones: a row per key, probabilities in
    [0, 1] (it crashed with OutOfBoundsDatetime building the feature table)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    events, out = tmp_path / "events.jsonl", tmp_path / "scores.csv"
    lines = [
        {"event_id": "a", "occurred_at": "2026-03-01T10:00:00Z", "sku": "A", "event_type": "sale"},
        {"event_id": "b", "occurred_at": "9999-12-30T00:00:00Z", "sku": "B", "event_type": "sale"},
    ]
    common = {"location": "S1", "quantity": 1, "source": "pos"}
    events.write_text("".join(json.dumps({**line, **common}) + "\n" for line in lines))
    result = CliRunner().invoke(app, ["score", "--events", str(events), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert sorted(r["sku"] for r in rows) == ["A", "B"]
    for row in rows:
        for col in ("phantom_score", "stockout_score"):
            assert 0.0 <= float(row[col]) <= 1.0


# -- the score CSV: write_csv writes what DataFrame.to_csv writes ---------------------------------
def _assert_written_as_pandas_writes(frame, tmp_path):
    ours, theirs = tmp_path / "ours.csv", tmp_path / "pandas.csv"
    write_csv(frame, ours)
    frame.to_csv(theirs, index=False)
    assert ours.read_bytes() == theirs.read_bytes()


def test_write_csv_of_a_score_table(tmp_path, conformance_dir):
    features = replay_file(conformance_dir / "events.jsonl").feature_table()
    phantom, stockout = load_packaged("phantom-inventory"), load_packaged("stockout-risk")
    scores = with_feature_columns(score_features(features, phantom, stockout, 0.0), features)
    _assert_written_as_pandas_writes(scores, tmp_path)
    _assert_written_as_pandas_writes(pd.DataFrame(columns=list(SCORE_COLUMNS)), tmp_path)


_FLOATS = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1e16, 9999999999999998.0, 1e-05, 1e-4]
_FLOATS += [5e-324, 0.1, 1 / 3, 1.7976931348623157e308, -2.5, 123456789.0]
_TEXTS = ["", "a,b", 'say "hi"', "two\nlines", "cr\r", " lead", "é ß 中", "x;y", None, math.nan]


def test_write_csv_of_every_kind_of_column_across_chunks(tmp_path):
    """Floats at the edges of repr, ints at int64's, texts that need quoting, missing values,
    float32, dates (tz-aware with NaT and nanoseconds; naive ones that are midnight-only in
    the first chunk of rows pandas formats at once, 100,000 cells, and not after), categories,
    nullable ints and timedeltas; 30,000 rows, 5 chunks."""
    n = 30_000
    rng = np.random.default_rng(7)
    naive = pd.Timestamp("2026-03-01") + pd.to_timedelta(np.arange(n) // 97, unit="D")
    aware = pd.Series(
        pd.Timestamp("2026-03-01T10:00:00.000000001Z")
        + pd.to_timedelta(rng.integers(0, 10**15, n), unit="ns")
    )
    aware[::50] = pd.NaT
    frame = pd.DataFrame(
        {
            "float": rng.choice(_FLOATS, n),
            "random": rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30, n),
            "int": rng.choice([0, -1, 2**63 - 1, -(2**63), 42], n),
            "uint": np.full(n, 2**64 - 1, dtype=np.uint64),
            "bool": rng.random(n) < 0.5,
            "text": rng.choice(np.array(_TEXTS, dtype=object), n),
            "mixed": rng.choice(np.array([1, 2.5, "s", None, math.inf], dtype=object), n),
            "float32": rng.standard_normal(n).astype(np.float32),
            "aware": aware,
            "naive": naive,
            "us": pd.Series(
                [pd.Timestamp("9999-12-30T00:00:00.5Z")] * n, dtype="datetime64[us, UTC]"
            ),
            "category": pd.Categorical(rng.choice(["b", "a", "c,d"], n)),
            "nullable": pd.array(rng.choice([1, 2, None], n), dtype="Int64"),
            "timedelta": pd.to_timedelta(rng.integers(0, 10**12, n), unit="ms"),
        }
    )
    chunk_rows = 100_000 // len(frame.columns)
    frame["naive"] = naive.where(np.arange(n) < chunk_rows, naive + pd.Timedelta(seconds=1.5))
    assert n > 3 * chunk_rows
    _assert_written_as_pandas_writes(frame, tmp_path)


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({"only": ["", "x", None]}),  # one field: an empty one is written ""
        pd.DataFrame({"x": [1.5]}).iloc[:0],
        pd.DataFrame(index=range(3)),
    ],
)
def test_write_csv_of_small_frames(tmp_path, frame):
    _assert_written_as_pandas_writes(frame, tmp_path)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=50))
def test_write_csv_writes_any_float64_as_pandas_does(tmp_path_factory, values):
    frame = pd.DataFrame({"x": np.array(values, dtype=np.float64), "y": values[::-1]})
    _assert_written_as_pandas_writes(frame, tmp_path_factory.mktemp("csv"))
