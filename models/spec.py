"""Declarative model specs: one object per model listing features, label, horizon and version."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.features import FEATURES, Feature

_BY_NAME = {f.name: f for f in FEATURES}

#: Features the models see. Identity columns (sku, location) and raw price are left out so the
#: models learn mechanisms, not one world's catalogue; price enters through value-weighted metrics.
MODEL_FEATURES: tuple[str, ...] = (
    "on_hand",
    "reserved",
    "in_transit",
    "atp",
    "sales_1d",
    "sales_7d",
    "sales_28d",
    "ewma_daily_sales",
    "hours_since_last_sale",
    "hours_since_last_receipt",
    "hours_since_last_count",
    "expected_sales_since_last_sale",
    "zero_sales_probability",
    "pick_short_28d",
    "pick_short_rate_28d",
    "pick_shorts_since_count",
    "hours_since_last_pick_short",
    "last_count_variance",
    "mean_abs_count_variance",
    "returns_28d",
    "adjustments_28d",
    "days_of_cover",
    "ledger_anomalies",
)


@dataclass(frozen=True)
class ModelSpec:
    """What a model predicts, from which features, over which horizon."""

    name: str  # the MLflow registered-model name (a contract)
    label: str
    horizon_hours: int
    features: tuple[str, ...]
    description: str
    version: str = "1"

    @property
    def feature_defs(self) -> tuple[Feature, ...]:
        return tuple(_BY_NAME[n] for n in self.features)


PHANTOM = ModelSpec(
    name="phantom-inventory",
    label="phantom",
    horizon_hours=0,
    features=MODEL_FEATURES,
    description="P(recorded on-hand >= 1 while the true shelf quantity is 0) at snapshot time",
)
STOCKOUT = ModelSpec(
    name="stockout-risk",
    label="stockout_72h",
    horizon_hours=72,
    features=MODEL_FEATURES,
    description="P(the true shelf quantity is 0 at some point in the next 72 hours)",
)
SPECS: dict[str, ModelSpec] = {PHANTOM.name: PHANTOM, STOCKOUT.name: STOCKOUT}
