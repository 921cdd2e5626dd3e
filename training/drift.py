"""``shelfguard drift``: compare the training reference with a recent window, with Evidently.

Reference = the feature sample stored with the model (``reference.parquet``, validation rows of
its training run) plus the model's predictions on it. Current = daily point-in-time snapshots of
the last ``days`` days of an event log (the same feature code), plus predictions. Evidently's
``DataDriftPreset`` scores each column with the population stability index (PSI >= 0.2 is a
significant shift; the default K-S/Wasserstein tests flag trivial differences at these sample
sizes); retraining is recommended when the share of drifted feature columns reaches
``RETRAIN_DRIFT_SHARE`` or a prediction column drifts.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from models.scorer import RiskModel
from pipelines.replay import Replay, as_of_timestamp, iter_lines
from training.dataset import snapshot_features

RETRAIN_DRIFT_SHARE = 0.3
#: population stability index per column; PSI >= 0.2 is the conventional "significant shift"
DRIFT_METHOD = "psi"
DRIFT_THRESHOLD = 0.2
PREDICTION_COLUMNS = ("phantom_score", "stockout_score")


@dataclass(frozen=True)
class DriftResult:
    drift_share: float
    drifted_columns: list[str]
    prediction_drift: list[str]
    retrain_recommended: bool
    reference_rows: int
    current_rows: int
    html: str
    json: str

    def to_dict(self) -> dict:
        return asdict(self)


def recent_window(events: Path, days: int) -> pd.DataFrame:
    """The daily snapshots of the last ``days`` days before the stream's end (the end as
    :func:`~pipelines.replay.stream_end` finds it, so a mistyped future date moves nothing)."""
    replay = Replay()
    snaps = snapshot_features(iter_lines(events), warmup_days=0, replay=replay)
    if snaps.empty:
        raise ValueError(f"{events} holds no valid events to build a current window from")
    end = as_of_timestamp(replay.as_of)
    last = snaps.loc[snaps["as_of"] <= end + pd.Timedelta(days=1), "as_of"].max()
    window = (snaps["as_of"] > last - pd.Timedelta(days=days)) & (snaps["as_of"] <= last)
    return snaps[window].reset_index(drop=True)


def with_predictions(frame: pd.DataFrame, phantom: RiskModel, stockout: RiskModel) -> pd.DataFrame:
    cols = list(dict.fromkeys([*phantom.spec.features, *stockout.spec.features]))
    inputs = stockout.inputs(phantom.inputs(frame))  # snapshot + derived columns
    out = inputs.loc[:, cols].astype("float64").copy()
    out["phantom_score"] = phantom.predict(frame)
    out["stockout_score"] = stockout.predict(frame)
    return out


def detect_drift(reference: pd.DataFrame, current: pd.DataFrame, out_dir: Path) -> DriftResult:
    """Run the Evidently report; write ``drift.html`` and ``drift.json`` into ``out_dir``."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report([DataDriftPreset(method=DRIFT_METHOD, threshold=DRIFT_THRESHOLD)])
    with warnings.catch_warnings():
        # Evidently's drift metric computes the numeric columns' correlation matrix with
        # np.corrcoef (for its report widgets, not for the drift scores); a column constant in
        # one frame (in_transit is all zero in the packaged reference) has no correlation, and
        # corrcoef's division by its zero deviation warns. Nothing wrong with our data.
        warnings.filterwarnings(
            "ignore",
            message="invalid value encountered in divide",
            category=RuntimeWarning,
            module=r"numpy\.lib\._function_base_impl",
        )
        snapshot = report.run(reference_data=reference, current_data=current)
    html = out_dir / "drift.html"
    snapshot.save_html(str(html))
    drifted: list[str] = []
    tested = 0
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if not str(config.get("type", "")).endswith("ValueDrift"):
            continue
        tested += 1
        method = str(config.get("method", ""))
        value, threshold = float(metric["value"]), float(config.get("threshold", 0.05))
        is_p_value = "p_value" in method
        if (value < threshold) if is_p_value else (value >= threshold):
            drifted.append(str(config["column"]))
    features_drifted = [c for c in drifted if c not in PREDICTION_COLUMNS]
    feature_count = max(tested - len(PREDICTION_COLUMNS), 1)
    share = len(features_drifted) / feature_count
    prediction_drift = [c for c in drifted if c in PREDICTION_COLUMNS]
    result = DriftResult(
        drift_share=share,
        drifted_columns=sorted(features_drifted),
        prediction_drift=prediction_drift,
        retrain_recommended=share >= RETRAIN_DRIFT_SHARE or bool(prediction_drift),
        reference_rows=len(reference),
        current_rows=len(current),
        html=str(html),
        json=str(out_dir / "drift.json"),
    )
    (out_dir / "drift.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result


def drift_report(
    events: Path, phantom: RiskModel, stockout: RiskModel, out_dir: Path, days: int = 7
) -> DriftResult:
    if phantom.reference is None:
        raise ValueError(
            f"model {phantom.spec.name}:{phantom.version} carries no drift reference; retrain it"
        )
    reference = with_predictions(phantom.reference, phantom, stockout)
    current = with_predictions(recent_window(events, days), phantom, stockout)
    return detect_drift(reference, current, out_dir)
