"""Fit the two risk models and their logistic-regression baselines.

- time-based split inside each training world: first 60 % of snapshot days train, next 20 %
  validation (early stopping and calibration), last 20 % in-world test;
- imbalance: LightGBM ``scale_pos_weight`` = negatives / positives on the training split;
- calibration: isotonic regression of the raw probability on the validation split, so a
  calibrated 0.8 means about 80 % (checked on held-out worlds by the Brier score and the
  calibration plot);
- inputs: the snapshot columns plus :mod:`models.derived`, computed by the same function the
  scorer calls (:meth:`~models.scorer.RiskModel.inputs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from models.derived import with_derived
from models.scorer import Calibration, RiskModel
from models.spec import ModelSpec
from training.dataset import day_index

SEED = 7
LGB_PARAMS: dict = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    "seed": SEED,
    "deterministic": True,
    "num_threads": 2,
}
MAX_ROUNDS = 600
REFERENCE_ROWS = 3000  # training-period rows kept with the model as the drift reference


def time_split(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks (train, validation, test) by snapshot day within each world."""
    day = day_index(frame)
    last = frame.assign(_d=day).groupby("world")["_d"].transform("max").to_numpy()
    frac = day / np.maximum(last, 1)
    return frac < 0.6, (frac >= 0.6) & (frac < 0.8), frac >= 0.8


def labelled(frame: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    return frame[frame[spec.label].notna()]


def _signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass
class FittedModels:
    model: RiskModel
    logistic: object  # sklearn pipeline with predict_proba
    logistic_calibration: Calibration
    best_iteration: int


def _isotonic(raw: np.ndarray, y: np.ndarray) -> Calibration:
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
    return Calibration([float(v) for v in iso.X_thresholds_], [float(v) for v in iso.y_thresholds_])


def fit_models(
    train: pd.DataFrame, valid: pd.DataFrame, spec: ModelSpec, version: str = "dev"
) -> FittedModels:
    features = list(spec.features)
    if spec.uses_derived:  # the scorer computes them the same way (RiskModel.inputs)
        train, valid = with_derived(train), with_derived(valid)
    y_tr = train[spec.label].to_numpy().astype(int)
    y_va = valid[spec.label].to_numpy().astype(int)
    pos = max(int(y_tr.sum()), 1)
    params = {**LGB_PARAMS, "scale_pos_weight": (len(y_tr) - pos) / pos}
    dtrain = lgb.Dataset(train[features].to_numpy(np.float64), y_tr, feature_name=features)
    dvalid = lgb.Dataset(valid[features].to_numpy(np.float64), y_va, reference=dtrain)
    booster = lgb.train(
        {**params, "metric": "average_precision"},
        dtrain,
        num_boost_round=MAX_ROUNDS,
        valid_sets=[dvalid],
        callbacks=[lgb.early_stopping(50, verbose=False)],
    )
    raw_va = booster.predict(
        valid[features].to_numpy(np.float64), num_iteration=booster.best_iteration
    )
    # keep only the rounds early stopping chose, so the saved text model is the evaluated one
    booster = booster.model_from_string(
        booster.model_to_string(num_iteration=booster.best_iteration)
    )
    seen = pd.concat([train[features], valid[features]], ignore_index=True)
    reference = seen.sample(n=min(REFERENCE_ROWS, len(seen)), random_state=SEED)
    model = RiskModel(
        spec,
        booster,
        _isotonic(np.asarray(raw_va), y_va),
        version,
        reference=reference.reset_index(drop=True),
    )

    logistic = make_pipeline(
        # LightGBM routes a missing value (no delivery yet: sell-through) down its own branch;
        # the linear baseline reads it as 0 beside an indicator column
        SimpleImputer(strategy="constant", fill_value=0.0, add_indicator=True),
        FunctionTransformer(_signed_log),
        StandardScaler(),
        LogisticRegression(max_iter=2000, class_weight="balanced"),
    )
    logistic.fit(train[features].to_numpy(np.float64), y_tr)
    lr_va = logistic.predict_proba(valid[features].to_numpy(np.float64))[:, 1]
    return FittedModels(model, logistic, _isotonic(lr_va, y_va), int(booster.current_iteration()))


def logistic_scores(fitted: FittedModels, frame: pd.DataFrame, spec: ModelSpec) -> np.ndarray:
    matrix = fitted.model.matrix(frame)
    raw = fitted.logistic.predict_proba(matrix)[:, 1]  # type: ignore[attr-defined]
    return fitted.logistic_calibration(raw)
