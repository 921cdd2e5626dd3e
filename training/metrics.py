"""Ranking and calibration metrics for risk scores, computed per snapshot day.

A store can count only a few percent of its sku-locations a day, so the top-k metrics select the
``budget`` share of rows *within each snapshot time of each world* (the daily count budget of one
retailer; rows of different worlds that share a date are never ranked against each other) and
pool the hits over days and worlds. Within a day the budget is the retailer's: its stores' rows
are ranked together (``precision_at_2pct``). ``precision_at_2pct_per_store`` is the stricter,
literal reading — every store counts its own top 2 % each day, whatever its risk — reported
beside it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


@dataclass(frozen=True)
class Metrics:
    average_precision: float
    roc_auc: float
    brier: float
    precision_at_2pct: float
    precision_at_2pct_per_store: float
    recall_at_5pct: float
    value_weighted_recall_at_5pct: float
    median_detection_delay_h: float
    detected_share: float
    positives: int
    rows: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _top_mask(
    frame: pd.DataFrame, score: np.ndarray, share: float, *, per_store: bool = False
) -> np.ndarray:
    """True for the top ``share`` of rows by score (at least 1) within each budget group: the
    ``as_of`` of a ``world`` (when the frame has that column), and of a ``location`` if
    ``per_store``. Ties are broken by row order."""
    by = [c for c in ("world",) if c in frame.columns] + ["as_of"]
    if per_store:
        by.append("location")
    groups = [frame[c].to_numpy() for c in by]
    ranks = (
        pd.Series(score, index=frame.index).groupby(groups).rank(ascending=False, method="first")
    )
    sizes = pd.Series(0, index=frame.index).groupby(groups).transform("size")
    limit = np.maximum(np.floor(sizes * share), 1)
    return (ranks <= limit).to_numpy()


def detection_delays(frame: pd.DataFrame, label: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Hours from each phantom episode's onset to its first day in the top set (NaN: never)."""
    key = frame["sku"].astype(str) + "|" + frame["location"].astype(str)
    if "world" in frame.columns:  # the same sku|location names recur across worlds
        key = frame["world"].astype(str) + "|" + key
    work = pd.DataFrame(
        {
            "key": key,
            "as_of": frame["as_of"].to_numpy(),
            "y": label.astype(bool),
            "top": top,
        }
    ).sort_values(["key", "as_of"])
    delays: list[float] = []
    for _, group in work.groupby("key", sort=False):
        y = group["y"].to_numpy()
        if not y.any():
            continue
        times = group["as_of"].to_numpy()
        hit = group["top"].to_numpy()
        start = None
        found = False
        for i in range(len(y)):
            if y[i] and start is None:
                start, found = i, False
            if start is not None and y[i] and hit[i] and not found:
                delays.append((times[i] - times[start]) / np.timedelta64(1, "h"))
                found = True
            if start is not None and not y[i]:
                if not found:
                    delays.append(math.nan)
                start = None
        if start is not None and not found:
            delays.append(math.nan)
    return np.asarray(delays, dtype=float)


def evaluate(
    frame: pd.DataFrame,
    label: np.ndarray,
    score: np.ndarray,
    *,
    value: np.ndarray | None = None,
) -> Metrics:
    """All metrics for one score column. ``frame`` needs ``as_of``, ``sku``, ``location``."""
    y = np.asarray(label).astype(int)
    s = np.clip(np.asarray(score, dtype=float), 0.0, 1.0)
    has_both = 0 < y.sum() < len(y)
    top2 = _top_mask(frame, s, 0.02)
    top5 = _top_mask(frame, s, 0.05)
    top2_store = _top_mask(frame, s, 0.02, per_store=True)
    positives = int(y.sum())
    value = np.ones(len(y)) if value is None else np.nan_to_num(np.asarray(value, float))
    delays = detection_delays(frame, y, top2)
    detected = delays[~np.isnan(delays)]
    return Metrics(
        average_precision=float(average_precision_score(y, s)) if has_both else math.nan,
        roc_auc=float(roc_auc_score(y, s)) if has_both else math.nan,
        brier=float(brier_score_loss(y, s)),
        precision_at_2pct=float(y[top2].mean()) if top2.any() else math.nan,
        precision_at_2pct_per_store=float(y[top2_store].mean()) if top2_store.any() else math.nan,
        recall_at_5pct=float(y[top5].sum() / positives) if positives else math.nan,
        value_weighted_recall_at_5pct=float((value * y)[top5].sum() / (value * y).sum())
        if (value * y).sum() > 0
        else math.nan,
        median_detection_delay_h=float(np.median(detected)) if len(detected) else math.nan,
        detected_share=float(len(detected) / len(delays)) if len(delays) else math.nan,
        positives=positives,
        rows=len(y),
    )
