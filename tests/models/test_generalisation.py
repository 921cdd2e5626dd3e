"""The packaged models on worlds they were never trained on, with other parameters: other seeds,
store counts, demand levels, shrink and delivery scenarios. The phantom model must beat the
zero-sales-run rule by the issue's margin (AP ≥ 1.5×) and the stockout model the days-of-cover
baseline (higher ROC AUC), in every world, not only on average."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from models.baselines import days_of_cover_stockout, zero_sales_run_score
from models.scorer import load_packaged
from training.dataset import build_world_dataset
from training.worlds import WorldConfig, simulate_world

FAST_SHRINK = {"demand_median": 1.6, "shrink_base": 0.03}
UNSEEN = (
    # fast movers, few stores, high shrink
    WorldConfig("unseen-fast-shrink", 7101, 3, 60, 35, None, FAST_SHRINK),
    # slow movers, many stores, duplicate storm
    WorldConfig("unseen-slow-dupes", 7102, 9, 40, 35, "duplicate_storm", {"demand_median": 0.25}),
    # marketplace latency with more misplacement
    WorldConfig("unseen-market", 7103, 5, 50, 35, "marketplace_latency", {"misplace_rate": 0.01}),
)


@pytest.fixture(scope="module")
def models():
    return load_packaged("phantom-inventory"), load_packaged("stockout-risk")


@pytest.mark.parametrize("world", UNSEEN, ids=lambda w: w.name)
def test_models_beat_the_baselines_on_an_unseen_world(world, models, tmp_path) -> None:
    data = build_world_dataset(simulate_world(world, tmp_path))
    phantom, stockout = models
    y_phantom = data["phantom"].to_numpy().astype(int)
    assert 0 < y_phantom.sum() < len(y_phantom), "the world must have phantoms to judge"
    ap_model = average_precision_score(y_phantom, phantom.predict(data))
    ap_rule = average_precision_score(y_phantom, zero_sales_run_score(data))
    assert ap_model >= 1.5 * ap_rule, (ap_model, ap_rule)
    known = data["stockout_72h"].notna().to_numpy()  # the last 2 days have no 72 h ahead
    labelled = data[known]
    y_stockout = labelled["stockout_72h"].to_numpy().astype(int)
    auc_model = roc_auc_score(y_stockout, stockout.predict(labelled))
    auc_cover = roc_auc_score(y_stockout, days_of_cover_stockout(labelled))
    assert auc_model > auc_cover, (auc_model, auc_cover)
    assert np.isfinite(phantom.predict(data)).all()
