"""TreeSHAP once per decision class: the same bits as LightGBM row by row, on far fewer rows."""

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models.contributions import ZERO_THRESHOLD, DecisionClasses, contributions
from models.explain import explain_rows, render
from models.scorer import RiskModel, load_packaged
from models.scoring import score_features

PHANTOM, STOCKOUT = "phantom-inventory", "stockout-risk"


class CountingBooster(lgb.Booster):
    """A real booster (so its decision classes are read) that records every pred_contrib call."""

    def __init__(self, model_str: str) -> None:
        super().__init__(model_str=model_str)
        self.contrib_rows: list[int] = []

    def predict(self, data, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        if kwargs.get("pred_contrib"):
            self.contrib_rows.append(len(data))
        return super().predict(data, *args, **kwargs)


@pytest.fixture(scope="module")
def models() -> dict[str, RiskModel]:
    return {name: load_packaged(name) for name in (PHANTOM, STOCKOUT)}


@pytest.fixture(scope="module")
def reference_rows(models) -> pd.DataFrame:
    return models[PHANTOM].reference.sample(60, random_state=11).reset_index(drop=True)


def same_class_nudges(classes: DecisionClasses, matrix: np.ndarray) -> np.ndarray:
    """``matrix`` with every value moved a little (up, down, by ulps and relative steps) where
    the move keeps it in its decision class; the rows differ in value, not in class."""
    codes = classes.codes(matrix)
    out = [matrix]
    for step in (1e-9, -1e-9, 1e-4, -1e-4):
        moved = matrix * (1 + step) + step
        keep = classes.codes(moved) == codes
        out.append(np.where(keep, moved, matrix))
    ulp = np.nextafter(matrix, np.inf)
    out.append(np.where(classes.codes(ulp) == codes, ulp, matrix))
    return np.vstack(out)


def test_contributions_equal_lightgbm_bit_for_bit_on_far_fewer_rows(models, reference_rows):
    for model in models.values():
        matrix = same_class_nudges(model.decision_classes(), model.matrix(reference_rows))
        assert len(np.unique(matrix, axis=0)) > 3 * len(reference_rows)  # values do differ
        counting = CountingBooster(model.booster.model_to_string())
        classes = DecisionClasses.of(counting)
        got = contributions(counting, matrix, classes)
        assert counting.contrib_rows == [len(reference_rows)]  # one TreeSHAP row per class
        assert np.array_equal(got, model.booster.predict(matrix, pred_contrib=True))


def test_edge_values_are_classed_as_lightgbm_decides(models, reference_rows):
    """NaN, the zero band (LightGBM reads |x| <= 1e-35f as 0), ±0, infinities, and values on,
    just below and just above split thresholds: still the same bits as LightGBM."""
    model = models[STOCKOUT]
    classes = model.decision_classes()
    assert classes is not None
    base = model.matrix(reference_rows.head(3))
    busiest = np.argsort([-len(t) for t in classes.thresholds])[:4]
    specials = [np.nan, 0.0, -0.0, 1e-40, -1e-40, ZERO_THRESHOLD, -ZERO_THRESHOLD, np.inf]
    specials += [np.nextafter(ZERO_THRESHOLD, np.inf), -np.inf, 1e300]
    rows = []
    for j in busiest:
        thresholds = classes.thresholds[j]
        picked = thresholds[:: max(1, len(thresholds) // 12)]
        values = [*specials, *picked, *np.nextafter(picked, np.inf), *np.nextafter(picked, -np.inf)]
        for value in values:
            for row in base:
                changed = row.copy()
                changed[j] = value
                rows.append(changed)
    matrix = np.array(rows)
    got = contributions(model.booster, matrix, classes)
    assert np.array_equal(got, model.booster.predict(matrix, pred_contrib=True), equal_nan=True)


def test_forests_it_cannot_class_are_passed_through():
    text = "tree\nsplit_feature=0 1\nthreshold=0.5 1\ndecision_type=1 2\nend of trees\n"
    assert DecisionClasses.from_model_text(text, 2) is None  # categorical split
    assert DecisionClasses.from_model_text("is_linear=1\n", 2) is None
    assert DecisionClasses.of(object()) is None


def test_score_explains_each_decision_class_once(models, reference_rows):
    """``shelfguard score`` on keys that share decision classes (e.g. many keys with one event)
    runs TreeSHAP once per class, and every key still gets its own words."""
    nudged = []
    for k, step in enumerate((0.0, 1e-9, -1e-9, 2e-9)):
        copy = reference_rows.copy()
        for col in ("hours_since_last_sale", "hours_since_last_receipt", "hours_since_last_count"):
            copy[col] = copy[col] * (1 + step)
        copy["sku"] = [f"S{k}-{i}" for i in range(len(copy))]
        nudged.append(copy)
    features = pd.concat(nudged, ignore_index=True)
    features["location"] = "L1"
    for col in ("reserved", "atp", "on_hand"):
        if col not in features:
            features[col] = 0
    features["as_of"] = pd.Timestamp("2026-03-02", tz="UTC")
    phantom, stockout = (
        RiskModel(m.spec, CountingBooster(m.booster.model_to_string()), m.calibration, m.version)
        for m in (models[PHANTOM], models[STOCKOUT])
    )
    scores = score_features(features, phantom, stockout, explain_above=0.0)
    for model, column in ((phantom, "phantom_explanation"), (stockout, "stockout_explanation")):
        distinct = len(np.unique(model.decision_classes().codes(model.matrix(features)), axis=0))
        assert model.booster.contrib_rows == [distinct]
        assert distinct <= len(reference_rows) < len(features)
        contrib = lgb.Booster.predict(model.booster, model.matrix(features), pred_contrib=True)
        frame = model.inputs(features).reset_index(drop=True)
        expected = [render(r) for r in explain_rows(contrib, frame, model.spec.features)]
        assert dict(zip(scores["sku"], scores[column], strict=True)) == dict(
            zip(features["sku"], expected, strict=True)
        )
