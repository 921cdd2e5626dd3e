"""Score any contract-conforming event log: features as of its last event, both models.

Output columns (a contract): ``sku, location, phantom_score, stockout_score`` (calibrated
probabilities), ``phantom_explanation``, ``stockout_explanation`` (top reasons in words),
``on_hand, reserved, atp, as_of``, and the model versions used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from models.explain import render
from pipelines.features import FEATURE_NAMES
from pipelines.replay import replay_file

if TYPE_CHECKING:  # the service reads the CSV contract below without loading models (LightGBM)
    from models.scorer import RiskModel

SCORE_COLUMNS = (
    "sku",
    "location",
    "phantom_score",
    "stockout_score",
    "phantom_explanation",
    "stockout_explanation",
    "on_hand",
    "reserved",
    "atp",
    "as_of",
    "phantom_model",
    "stockout_model",
)
#: score CSV columns ``feature.<name>`` carry the snapshot a score was computed from
FEATURE_COLUMN_PREFIX = "feature."


#: ``shelfguard score`` explains rows whose score reaches this; ``pred_contrib`` (SHAP) costs
#: ~1–2 ms a row here, so explaining every key of a large file dominated the run.
DEFAULT_EXPLAIN_ABOVE = 0.2


def explanations(
    model: RiskModel,
    features: pd.DataFrame,
    scores: np.ndarray,
    above: float,
    num_threads: int = 0,
) -> list[str]:
    """The rendered top reasons for rows with ``scores >= above``; ``""`` for the others.
    ``features`` must have a default RangeIndex (row i = scores[i])."""
    out = [""] * len(features)
    rows = np.flatnonzero(scores >= above)
    if len(rows):
        reasons = model.explain(features.iloc[rows], num_threads=num_threads)
        for i, row_reasons in zip(rows, reasons, strict=True):
            out[i] = render(row_reasons)
    return out


def score_features(
    features: pd.DataFrame,
    phantom: RiskModel,
    stockout: RiskModel,
    explain_above: float = DEFAULT_EXPLAIN_ABOVE,
) -> pd.DataFrame:
    """Scores for a feature table (one row per key), with explanations for the rows whose score
    reaches ``explain_above`` (0 = every row; the others get ``""``)."""
    features = features.reset_index(drop=True)
    out = features[["sku", "location", "on_hand", "reserved", "atp", "as_of"]].copy()
    out["phantom_score"] = phantom.predict(features)
    out["stockout_score"] = stockout.predict(features)
    out["phantom_explanation"] = explanations(
        phantom, features, out["phantom_score"].to_numpy(), explain_above
    )
    out["stockout_explanation"] = explanations(
        stockout, features, out["stockout_score"].to_numpy(), explain_above
    )
    out["phantom_model"] = f"{phantom.spec.name}:{phantom.version}"
    out["stockout_model"] = f"{stockout.spec.name}:{stockout.version}"
    return out.loc[:, list(SCORE_COLUMNS)].sort_values(
        ["phantom_score", "sku", "location"], ascending=[False, True, True], ignore_index=True
    )


def with_feature_columns(scores: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """``scores`` plus one ``feature.<name>`` column per feature, matched on (sku, location)."""
    present = [n for n in FEATURE_NAMES if n in features.columns]
    snap = features[["sku", "location", *present]].rename(
        columns={n: FEATURE_COLUMN_PREFIX + n for n in present}
    )
    return scores.merge(snap, on=["sku", "location"], how="left", validate="one_to_one")


def score_events(
    events: Path,
    phantom: RiskModel,
    stockout: RiskModel,
    explain_above: float = DEFAULT_EXPLAIN_ABOVE,
) -> tuple[pd.DataFrame, int]:
    """Replay ``events`` (file order) and score every key; returns (scores, rejected lines)."""
    replay = replay_file(events)
    features = replay.feature_table()
    if features.empty:
        return pd.DataFrame(columns=list(SCORE_COLUMNS)), len(replay.rejections)
    return score_features(features, phantom, stockout, explain_above), len(replay.rejections)
