"""Score any contract-conforming event log: features as of its last event, both models.

Output columns (a contract): ``sku, location, phantom_score, stockout_score`` (calibrated
probabilities), ``phantom_explanation``, ``stockout_explanation`` (top reasons in words),
``on_hand, reserved, atp, as_of``, and the model versions used.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from models.explain import render
from models.scorer import RiskModel
from pipelines.replay import replay_file

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


def score_features(features: pd.DataFrame, phantom: RiskModel, stockout: RiskModel) -> pd.DataFrame:
    """Scores and explanations for a feature table (one row per key)."""
    out = features[["sku", "location", "on_hand", "reserved", "atp", "as_of"]].copy()
    out["phantom_score"] = phantom.predict(features)
    out["stockout_score"] = stockout.predict(features)
    out["phantom_explanation"] = [render(r) for r in phantom.explain(features)]
    out["stockout_explanation"] = [render(r) for r in stockout.explain(features)]
    out["phantom_model"] = f"{phantom.spec.name}:{phantom.version}"
    out["stockout_model"] = f"{stockout.spec.name}:{stockout.version}"
    return out.loc[:, list(SCORE_COLUMNS)].sort_values(
        ["phantom_score", "sku", "location"], ascending=[False, True, True], ignore_index=True
    )


def score_events(events: Path, phantom: RiskModel, stockout: RiskModel) -> tuple[pd.DataFrame, int]:
    """Replay ``events`` (file order) and score every key; returns (scores, rejected lines)."""
    replay = replay_file(events)
    features = replay.feature_table()
    if features.empty:
        return pd.DataFrame(columns=list(SCORE_COLUMNS)), len(replay.rejections)
    return score_features(features, phantom, stockout), len(replay.rejections)
