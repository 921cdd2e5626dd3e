"""Baselines reported beside the models, on the same test data.

- :func:`zero_sales_run_score` — the rule retailers use today: an item that has not sold for longer
  than its rate makes plausible is suspect. Score = 1 − P(no sale in the run | EWMA rate), the
  Poisson probability computed by the feature code.
- :func:`days_of_cover_stockout` — P(demand over the horizon >= recorded units), demand Poisson with
  the EWMA rate: a classic stockout baseline that trusts the record.
- logistic regression on the same features is trained in :mod:`training.train`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import poisson


def zero_sales_run_score(features: pd.DataFrame) -> np.ndarray:
    """Phantom suspicion in [0, 1]: 1 − zero_sales_probability; 0 where the record shows none."""
    score = 1.0 - features["zero_sales_probability"].to_numpy(dtype=float)
    return np.where(features["on_hand"].to_numpy() >= 1, score, 0.0)


def days_of_cover_stockout(features: pd.DataFrame, horizon_hours: float = 72.0) -> np.ndarray:
    """P(Poisson(rate × horizon) >= max(on_hand − reserved, 0)); 1 when nothing is available."""
    mean = features["ewma_daily_sales"].to_numpy(dtype=float) * horizon_hours / 24.0
    available = np.maximum(
        features["on_hand"].to_numpy(dtype=float) - features["reserved"].to_numpy(dtype=float), 0
    )
    # P(X >= k) = sf(k - 1); k = 0 → 1
    return np.where(available <= 0, 1.0, poisson.sf(available - 1, np.maximum(mean, 1e-9)))
