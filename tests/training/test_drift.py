import json
import warnings

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from serving.cli import app
from training.drift import detect_drift


def frame(rng, shift=0.0, n=600):
    return pd.DataFrame(
        {
            "hours_since_last_sale": rng.gamma(2.0, 20.0 + shift * 40, n),
            "on_hand": rng.poisson(4 + shift * 6, n).astype(float),
            "ewma_daily_sales": rng.gamma(1.5, 0.5, n),
            "phantom_score": rng.beta(1, 20 - shift * 15, n),
            "stockout_score": rng.beta(2, 10, n),
        }
    )


def test_same_distribution_does_not_recommend_retraining(tmp_path):
    rng = np.random.default_rng(1)
    result = detect_drift(frame(rng), frame(rng), tmp_path)
    assert not result.retrain_recommended
    assert result.drift_share < 0.3
    assert (tmp_path / "drift.html").stat().st_size > 10_000
    assert json.loads((tmp_path / "drift.json").read_text())["retrain_recommended"] is False


def test_shifted_window_recommends_retraining(tmp_path):
    rng = np.random.default_rng(2)
    result = detect_drift(frame(rng), frame(rng, shift=1.0), tmp_path)
    assert result.retrain_recommended
    assert "hours_since_last_sale" in result.drifted_columns
    assert "phantom_score" in result.prediction_drift


def test_a_constant_column_is_tested_without_numpy_warnings(tmp_path):
    rng = np.random.default_rng(3)
    reference, current = frame(rng), frame(rng)
    reference["on_hand"] = 0.0  # e.g. in_transit in a reference sample without transfers
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = detect_drift(reference, current, tmp_path)
    assert "on_hand" in result.drifted_columns


def test_drift_command_on_a_simulated_world(tmp_path, tiny_worlds):
    from tests.training.conftest import TINY_HOLDOUT
    from training.worlds import simulate_world

    world = simulate_world(TINY_HOLDOUT[0], tiny_worlds)
    out = tmp_path / "drift"
    result = CliRunner().invoke(
        app,
        ["drift", "--events", str(world / "events.jsonl"), "--out", str(out)],
        env={"MLFLOW_TRACKING_URI": ""},
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "drift.json").read_text())
    assert report["current_rows"] > 0 and report["reference_rows"] > 0
    assert isinstance(report["retrain_recommended"], bool)
    assert "retraining recommended" in result.output
