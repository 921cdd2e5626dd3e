"""Model-side features derived from one feature snapshot (no other state, no simulator truth).

Every scorer (training, ``shelfguard score``, the stream, drift) calls :func:`with_derived` on the
snapshot table of :mod:`pipelines.features` before building its matrix, so the derived columns
are computed by exactly this code wherever a model runs (no train/serve skew). Each is a plain,
vectorised function of the snapshot columns of the same row.

Why they exist (the stream's columns stay as they are):
- the EWMA rate's warm-up correction can inflate a slow mover's rate many times over when its
  few sales were early; the 28-day window gives a second, robust rate, and the silence is
  measured against it;
- a ``pick_short`` means the shelf ran dry at that moment: with no receipt and no sale since, a
  record of one or more units is very probably wrong;
- the decision-relevant quantities are ratios (silence vs. typical gap between sales, record vs.
  demand) that trees only approximate from the raw columns.

Units: hours, days and units/day as named. Missing inputs (NaN) propagate to NaN, which LightGBM
treats as missing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.features import WINDOW_DAYS, Feature

#: caps keep ratios finite when a denominator is ~0 (a key that never sold)
_MAX_RATIO = 1000.0
_EPS_RATE = 1.0 / (4 * WINDOW_DAYS)  # a quarter of one unit in the 28-day window, units/day

DERIVED_FEATURES: tuple[Feature, ...] = (
    Feature(
        "rate_28d",
        "float",
        "units sold in the 28-day window / 28: a robust daily rate (units/day)",
    ),
    Feature(
        "silent_hours",
        "float",
        "hours since the latest of last sale, receipt and count (the silence the record cannot "
        "explain)",
    ),
    Feature(
        "expected_silent_sales_28d",
        "float",
        "rate_28d × silent_hours / 24: units the 28-day rate expects in the silence",
    ),
    Feature(
        "selling_rate_28d",
        "float",
        "units sold in the 28-day window / days of that window before the last sale (≥ 1 day): "
        "the rate while the key was still selling",
    ),
    Feature(
        "expected_silent_sales_selling",
        "float",
        "selling_rate_28d × silent_hours / 24",
    ),
    Feature(
        "silent_zero_sales_probability",
        "float",
        "Poisson P(no sale in the silence) = exp(−min of the two expectations above and "
        "expected_sales_since_last_sale): the most cautious zero-sales signal",
    ),
    Feature(
        "open_pick_short_no_receipt",
        "int",
        "1 when a pick_short since the last count is newer than the last receipt (the shelf ran "
        "dry and nothing was received since)",
    ),
    Feature(
        "sale_after_pick_short",
        "int",
        "1 when there was a sale after the newest open pick_short (stock reappeared)",
    ),
    Feature(
        "on_hand_per_daily_sale",
        "float",
        "max(on_hand, 0) / max(rate_28d, 1/112): days of cover at the 28-day rate",
    ),
    Feature(
        "atp_per_daily_sale",
        "float",
        "atp / max(rate_28d, 1/112): promisable days of cover at the 28-day rate",
    ),
    Feature(
        "sales_trend_7d_28d",
        "float",
        "(sales_7d / 7) / max(rate_28d, 1/112): recent demand relative to the month",
    ),
    Feature(
        "ewma_vs_28d_rate",
        "float",
        "ewma_daily_sales / max(rate_28d, 1/112): a falling EWMA during silence shows here",
    ),
    Feature(
        "expected_sales_since_count",
        "float",
        "rate_28d × hours_since_last_count / 24: demand (and shrink exposure) since the record "
        "was last true",
    ),
    Feature(
        "receipt_after_count",
        "int",
        "1 when the last receipt is newer than the last count (an unchecked receipt)",
    ),
)
DERIVED_NAMES: tuple[str, ...] = tuple(f.name for f in DERIVED_FEATURES)


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    return frame[name].to_numpy(dtype=np.float64)


def derived_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The :data:`DERIVED_FEATURES` of each snapshot row (same index as ``frame``)."""
    on_hand = _col(frame, "on_hand")
    sales_28d = _col(frame, "sales_28d")
    h_sale = _col(frame, "hours_since_last_sale")
    h_receipt = _col(frame, "hours_since_last_receipt")
    h_count = _col(frame, "hours_since_last_count")
    h_pick_short = _col(frame, "hours_since_last_pick_short")
    open_shorts = _col(frame, "pick_shorts_since_count")

    rate_28d = sales_28d / WINDOW_DAYS
    safe_rate = np.maximum(rate_28d, _EPS_RATE)
    silent_h = np.minimum(np.minimum(h_sale, h_receipt), h_count)
    selling_days = np.maximum(WINDOW_DAYS - h_sale / 24.0, 1.0)
    selling_rate = sales_28d / selling_days
    exp_28 = rate_28d * silent_h / 24.0
    exp_selling = selling_rate * silent_h / 24.0
    cautious = np.minimum(
        np.minimum(exp_28, exp_selling), _col(frame, "expected_sales_since_last_sale")
    )
    has_open = open_shorts > 0
    out = {
        "rate_28d": rate_28d,
        "silent_hours": silent_h,
        "expected_silent_sales_28d": exp_28,
        "selling_rate_28d": selling_rate,
        "expected_silent_sales_selling": exp_selling,
        "silent_zero_sales_probability": np.exp(-cautious),
        "open_pick_short_no_receipt": (has_open & (h_pick_short < h_receipt)).astype(np.float64),
        "sale_after_pick_short": (has_open & (h_sale < h_pick_short)).astype(np.float64),
        "on_hand_per_daily_sale": np.minimum(np.maximum(on_hand, 0.0) / safe_rate, _MAX_RATIO),
        "atp_per_daily_sale": np.minimum(_col(frame, "atp") / safe_rate, _MAX_RATIO),
        "sales_trend_7d_28d": np.minimum(_col(frame, "sales_7d") / 7.0 / safe_rate, _MAX_RATIO),
        "ewma_vs_28d_rate": np.minimum(_col(frame, "ewma_daily_sales") / safe_rate, _MAX_RATIO),
        "expected_sales_since_count": rate_28d * h_count / 24.0,
        "receipt_after_count": (h_receipt < h_count).astype(np.float64),
    }
    return pd.DataFrame(out, index=frame.index)


def with_derived(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` plus the derived columns (recomputed if present, so they never go stale)."""
    derived = derived_columns(frame)
    return pd.concat([frame.drop(columns=list(DERIVED_NAMES), errors="ignore"), derived], axis=1)
