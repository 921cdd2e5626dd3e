"""The cross-location experiment's features (``training.xloc_experiment``): point-in-time and
leave-one-out, so a key never sees its own sales as its peers'."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.features import FEATURE_NAMES
from training.xloc_experiment import xloc_columns


def _frame() -> pd.DataFrame:
    rows = []
    for as_of, sales in ((1.0, (4, 0, 2)), (2.0, (0, 0, 6))):
        for i, s in enumerate(sales):
            row = dict.fromkeys(FEATURE_NAMES, 0.0)
            row.update(
                world="w", as_of=as_of, sku="A", location=f"S{i}", sales_1d=float(s),
                sales_7d=float(s) * 3, sales_28d=28.0, ewma_daily_sales=1.0, on_hand=5,
            )  # fmt: skip
            rows.append(row)
    other = dict(rows[0], sku="B", sales_1d=100.0)  # another sku: never a peer of A's keys
    return pd.DataFrame([*rows, other])


def test_peers_are_the_other_locations_of_the_sku_in_the_same_snapshot():
    frame = _frame()
    cols = xloc_columns(frame)
    assert cols["sku_other_sales_1d"].tolist()[:6] == [2.0, 6.0, 4.0, 6.0, 6.0, 0.0]
    assert cols["sku_n_others"].tolist() == [2, 2, 2, 2, 2, 2, 0]
    assert cols["sku_other_share_sold_1d"].iloc[1] == pytest.approx(1.0)  # both peers sold
    assert cols["sku_other_share_sold_1d"].iloc[3] == pytest.approx(0.5)
    assert np.isnan(cols["sku_other_share_sold_1d"].iloc[6])  # no peers
    shares = cols["sku_share_7d"].iloc[:3]
    assert shares.sum() == pytest.approx(1.0)
