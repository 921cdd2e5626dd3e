"""The daily count budget: top 2 % per day of each world (and, stricter, of each store)."""

import numpy as np
import pandas as pd
import pytest

from training.metrics import _top_mask, evaluate

DAY = pd.Timestamp("2026-03-10", tz="UTC")


def frame(world: str, stores: int, skus: int, days: int = 1) -> pd.DataFrame:
    rows = [
        {"world": world, "location": f"S{s}", "sku": f"K{k}", "as_of": DAY + pd.Timedelta(days=d)}
        for d in range(days)
        for s in range(stores)
        for k in range(skus)
    ]
    return pd.DataFrame(rows)


def test_budget_is_per_day_of_each_world_never_pooled_across_worlds():
    a, b = frame("a", 2, 50), frame("b", 2, 50)  # same date, 100 rows each
    both = pd.concat([a, b], ignore_index=True)
    score = np.r_[np.full(100, 0.9), np.full(100, 0.1)]  # world a scores higher everywhere
    top = _top_mask(both, score, 0.02)
    assert top[:100].sum() == 2 and top[100:].sum() == 2  # 2 % of each world's day


def test_budget_is_per_day():
    two_days = frame("a", 1, 100, days=2)
    score = np.r_[np.full(100, 0.9), np.full(100, 0.1)]
    assert _top_mask(two_days, score, 0.05).sum() == 10  # 5 rows on each day


def test_per_store_budget_counts_in_every_store():
    f = frame("a", 2, 100)
    y = np.r_[np.ones(4), np.zeros(196)]  # store S0 holds all positives
    score = np.r_[np.full(4, 0.9), np.linspace(0.5, 0.1, 196)]
    m = evaluate(f, y, score)
    assert m.precision_at_2pct == pytest.approx(1.0)  # the retailer counts its 4 riskiest rows
    assert m.precision_at_2pct_per_store == pytest.approx(0.5)  # S1 must count 2 clean rows
