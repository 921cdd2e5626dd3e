"""Declarative model specs: one object per model listing features, label, horizon and version."""

from __future__ import annotations

from dataclasses import dataclass

from models.derived import DERIVED_FEATURES, DERIVED_NAMES
from pipelines.features import FEATURES, Feature

_BY_NAME = {f.name: f for f in (*FEATURES, *DERIVED_FEATURES)}

#: Snapshot columns (pipelines.features) the models read: what a scorer's caller must supply.
#: Identity columns (sku, location) and raw price are left out so the models learn mechanisms,
#: not one world's catalogue; price enters through value-weighted metrics.
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
    "sell_through_since_receipt",
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
#: The model matrix: the snapshot columns plus the columns :mod:`models.derived` computes from
#: them (by the scorer itself, so every caller gets the same values).
MODEL_MATRIX: tuple[str, ...] = (*MODEL_FEATURES, *DERIVED_NAMES)


@dataclass(frozen=True)
class ModelSpec:
    """What a model predicts, from which features, over which horizon."""

    name: str  # the MLflow registered-model name (a contract)
    label: str
    horizon_hours: int
    features: tuple[str, ...]  # the model matrix columns, in order (may include derived ones)
    description: str
    version: str = "1"

    @property
    def feature_defs(self) -> tuple[Feature, ...]:
        return tuple(_BY_NAME[n] for n in self.features)

    @property
    def uses_derived(self) -> bool:
        return any(n in DERIVED_NAMES for n in self.features)

    @property
    def inputs(self) -> tuple[str, ...]:
        """Snapshot columns a caller must supply: the matrix's own snapshot columns, plus all
        of :data:`MODEL_FEATURES` when derived columns are computed from them."""
        own = tuple(n for n in self.features if n not in DERIVED_NAMES)
        if not self.uses_derived:
            return own
        return (*own, *(n for n in MODEL_FEATURES if n not in own))


PHANTOM = ModelSpec(
    name="phantom-inventory",
    label="phantom",
    horizon_hours=0,
    features=MODEL_MATRIX,
    description="P(recorded on-hand >= 1 while the true shelf quantity is 0) at snapshot time",
)
STOCKOUT = ModelSpec(
    name="stockout-risk",
    label="stockout_72h",
    horizon_hours=72,
    features=MODEL_MATRIX,
    description="P(the true shelf quantity is 0 at some point in the next 72 hours)",
)
SPECS: dict[str, ModelSpec] = {PHANTOM.name: PHANTOM, STOCKOUT.name: STOCKOUT}
