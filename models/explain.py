"""Explanations an approver can read: top LightGBM feature contributions, in words.

Contributions come from ``Booster.predict(X, pred_contrib=True)`` (SHAP values in log-odds, one
column per feature plus the bias). :func:`explain_rows` keeps the ``top_k`` features that push the
risk *up* the most and renders each with a sentence from the feature values of that row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Reason:
    feature: str
    contribution: float  # log-odds pushed by this feature
    text: str


def _days(hours: float) -> str:
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.0f} h"


def _no_sale(r: Mapping[str, Any]) -> str:
    return (
        f"no sale for {_days(r['hours_since_last_sale'])} where "
        f"{r['expected_sales_since_last_sale']:.1f} units were expected"
    )


TEMPLATES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "hours_since_last_sale": _no_sale,
    "expected_sales_since_last_sale": _no_sale,
    "zero_sales_probability": lambda r: (
        f"only a {r['zero_sales_probability']:.0%} chance of selling nothing for "
        f"{_days(r['hours_since_last_sale'])} at this rate"
    ),
    "pick_short_28d": lambda r: f"{r['pick_short_28d']:.0f} pick failures in 28 days",
    "pick_short_rate_28d": lambda r: f"{r['pick_short_rate_28d']:.0%} of picks failed in 28 days",
    "pick_shorts_since_count": lambda r: (
        f"{r['pick_shorts_since_count']:.0f} pick failures since the last count"
    ),
    "hours_since_last_pick_short": lambda r: (
        f"a pick failed {_days(r['hours_since_last_pick_short'])} ago and no count since"
        if r["pick_shorts_since_count"] > 0
        else "no pick failure since the last count"
    ),
    "last_count_variance": lambda r: (
        f"the last cycle count was off by {r['last_count_variance']:+.0f} units"
    ),
    "mean_abs_count_variance": lambda r: (
        f"counts here are off by {r['mean_abs_count_variance']:.1f} units on average"
    ),
    "hours_since_last_count": lambda r: f"not counted for {_days(r['hours_since_last_count'])}",
    "hours_since_last_receipt": lambda r: f"no receipt for {_days(r['hours_since_last_receipt'])}",
    "sell_through_since_receipt": lambda r: (
        f"{r['sell_through_since_receipt']:.0%} of the last delivery has sold"
        if r["sell_through_since_receipt"] == r["sell_through_since_receipt"]  # not NaN
        else "nothing received yet"
    ),
    "on_hand": lambda r: f"the record shows {r['on_hand']:.0f} on hand",
    "atp": lambda r: f"{r['atp']:.0f} units available to promise",
    "reserved": lambda r: f"{r['reserved']:.0f} units reserved for open orders",
    "in_transit": lambda r: f"{r['in_transit']:.0f} units in transit",
    "days_of_cover": lambda r: f"{r['days_of_cover']:.1f} days of cover at the current rate",
    "ewma_daily_sales": lambda r: f"selling {r['ewma_daily_sales']:.2f} units a day",
    "sales_1d": lambda r: f"{r['sales_1d']:.0f} units sold in the last day",
    "sales_7d": lambda r: f"{r['sales_7d']:.0f} units sold in 7 days",
    "sales_28d": lambda r: f"{r['sales_28d']:.0f} units sold in 28 days",
    "returns_28d": lambda r: f"{r['returns_28d']:.0f} units returned in 28 days",
    "adjustments_28d": lambda r: f"{r['adjustments_28d']:.0f} units adjusted in 28 days",
    "ledger_anomalies": lambda r: f"{r['ledger_anomalies']:.0f} moves drove the record negative",
    # derived features (models.derived)
    "rate_28d": lambda r: f"selling {r['rate_28d']:.2f} units a day over 28 days",
    "silent_hours": lambda r: f"no sale, receipt or count for {_days(r['silent_hours'])}",
    "expected_silent_sales_28d": lambda r: (
        f"no sale, receipt or count for {_days(r['silent_hours'])} where the 28-day rate "
        f"expected {r['expected_silent_sales_28d']:.1f} units"
    ),
    "selling_rate_28d": lambda r: (
        f"sold {r['selling_rate_28d']:.2f} units a day before the sales stopped"
    ),
    "expected_silent_sales_selling": lambda r: (
        f"no sale, receipt or count for {_days(r['silent_hours'])} where "
        f"{r['expected_silent_sales_selling']:.1f} units would have sold at the earlier pace"
    ),
    "silent_zero_sales_probability": lambda r: (
        f"at most a {r['silent_zero_sales_probability']:.0%} chance of this silence if the "
        "shelf had stock"
    ),
    "open_pick_short_no_receipt": lambda r: (
        "a pick failed (shelf empty) and nothing was received since"
        if r["open_pick_short_no_receipt"] > 0
        else "no unanswered pick failure"
    ),
    "sale_after_pick_short": lambda r: (
        "sold again after the last pick failure"
        if r["sale_after_pick_short"] > 0
        else "no sale since the last pick failure"
        if r["pick_shorts_since_count"] > 0
        else "no pick failure since the last count"
    ),
    "on_hand_per_daily_sale": lambda r: (
        f"the record covers {r['on_hand_per_daily_sale']:.1f} days at the 28-day rate"
    ),
    "atp_per_daily_sale": lambda r: (
        f"promisable stock covers {r['atp_per_daily_sale']:.1f} days at the 28-day rate"
    ),
    "sales_trend_7d_28d": lambda r: (
        f"last week sold at {r['sales_trend_7d_28d']:.1f}× the 28-day pace"
    ),
    "ewma_vs_28d_rate": lambda r: (
        f"the recent sales rate is {r['ewma_vs_28d_rate']:.1f}× the 28-day rate"
    ),
    "expected_sales_since_count": lambda r: (
        f"about {r['expected_sales_since_count']:.1f} units of demand since the last count"
    ),
    "receipt_after_count": lambda r: (
        "a delivery was booked after the last count and never checked"
        if r["receipt_after_count"] > 0
        else "counted after the last delivery"
    ),
}


class _Columns:
    """A frame's columns as numpy arrays, converted on first use."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.arrays: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        array = self.arrays.get(name)
        if array is None:
            array = self.arrays[name] = self.frame[name].to_numpy()
        return array


class _Row(Mapping[str, Any]):
    """Row ``i`` of a frame as the templates read it, without building a Series per row (that
    cost ~0.1 ms a row): ``row[name]`` is the column's numpy scalar, as ``frame.iloc[i][name]``
    gives it on the mixed-type (sku, location, numbers) frames scored here."""

    def __init__(self, columns: _Columns, i: int) -> None:
        self.columns = columns
        self.i = i

    def __getitem__(self, name: str) -> Any:
        return self.columns[name][self.i]

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns.frame.columns)

    def __len__(self) -> int:
        return len(self.columns.frame.columns)


def reason_text(feature: str, row: Mapping[str, Any]) -> str:
    template = TEMPLATES.get(feature)
    if template is None:
        return f"{feature} = {row[feature]}"
    return template(row)


def explain_rows(
    contributions: np.ndarray,
    features: pd.DataFrame,
    names: Sequence[str],
    top_k: int = 3,
) -> list[list[Reason]]:
    """Top ``top_k`` risk-raising reasons per row (``contributions``: n × (len(names) + 1))."""
    contrib = np.asarray(contributions)[:, : len(names)]
    order = np.argsort(-contrib, axis=1)[:, :top_k]
    columns = _Columns(features)
    out: list[list[Reason]] = []
    for i, idx in enumerate(order):
        row = _Row(columns, i)
        reasons: list[Reason] = []
        seen_text: set[str] = set()
        for j in idx:
            if contrib[i, j] <= 0:
                break
            text = reason_text(names[j], row)
            if text in seen_text:
                continue
            seen_text.add(text)
            reasons.append(Reason(names[j], float(contrib[i, j]), text))
        out.append(reasons)
    return out


def render(reasons: Sequence[Reason]) -> str:
    """One line for a CSV cell or an alert: reasons joined by '; '."""
    return "; ".join(r.text for r in reasons)
