"""The headroom check (``python -m training.headroom``) on a small held-out world."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.training.conftest import TINY_HOLDOUT
from training.headroom import main, sku_folds
from training.worlds import load_worlds


@pytest.fixture(scope="module")
def result(tiny_worlds, tmp_path_factory):
    out = tmp_path_factory.mktemp("headroom") / "headroom.json"
    figures = main(
        ["--worlds-root", str(tiny_worlds), "--out", str(out), "--rounds", "40"], TINY_HOLDOUT
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(figures))
    return figures


def test_folds_keep_each_sku_in_one_fold(tiny_worlds) -> None:
    frame = load_worlds(list(TINY_HOLDOUT), tiny_worlds)
    folds = frame.assign(fold=sku_folds(frame)).groupby(["world", "sku"])["fold"].nunique()
    assert (folds == 1).all()
    assert set(sku_folds(frame)) == {0, 1}  # both folds used


def test_no_scorer_beats_a_perfect_ranking(result) -> None:
    for model in ("phantom-inventory", "stockout-risk"):
        ceiling = result[f"{model} / ceiling"]
        assert ceiling["average_precision"] == pytest.approx(1.0)
        for name, figures in result.items():
            if name.startswith(model):
                assert figures["precision_at_2pct"] <= ceiling["precision_at_2pct"] + 1e-12
                assert figures["rows"] == ceiling["rows"]
                assert np.isfinite(figures["roc_auc"])


def test_knowing_the_true_shelf_lifts_the_stockout_ranking(result) -> None:
    records = result["stockout-risk / in-world"]["roc_auc"]
    oracle = result["stockout-risk / in-world + true shelf"]["roc_auc"]
    assert oracle > records
