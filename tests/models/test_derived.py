"""Derived model features: computed from the event contract alone, the same in batch and stream."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from models.derived import DERIVED_NAMES, derived_columns, with_derived
from models.explain import TEMPLATES, reason_text
from models.scorer import load_packaged
from models.spec import MODEL_FEATURES, SPECS
from pipelines.events import EventType, InventoryEvent, Source
from pipelines.features import KeyState

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def ev(eid: str, etype: str, q: int, hours: float) -> InventoryEvent:
    return InventoryEvent(
        event_id=eid,
        event_type=EventType(etype),
        occurred_at=T0 + timedelta(hours=hours),
        sku="SKU-1",
        location="S1",
        quantity=q,
        source=Source.STORE_OPS if etype != "sale" else Source.POS,
        unit_price=2.5,
    )


def snapshot(events: list[InventoryEvent], hours: float) -> pd.DataFrame:
    state = KeyState("SKU-1", "S1")
    for e in events:
        state.apply(e)
    return pd.DataFrame([state.snapshot((T0 + timedelta(hours=hours)).timestamp())])


SELLING = [ev("c0", "cycle_count", 30, 0)] + [
    ev(f"s{d}", "sale", 1, d * 24 + 12) for d in range(10)
]  # one unit a day for ten days, then nothing


def test_pick_short_without_a_later_receipt_is_open_evidence():
    events = [*SELLING, ev("p1", "pick_short", 1, 10 * 24 + 9)]
    row = derived_columns(snapshot(events, 12 * 24)).iloc[0]
    assert row["open_pick_short_no_receipt"] == 1 and row["sale_after_pick_short"] == 0

    received = derived_columns(snapshot([*events, ev("r1", "receipt", 6, 11 * 24)], 12 * 24))
    assert received.iloc[0]["open_pick_short_no_receipt"] == 0

    counted = derived_columns(snapshot([*events, ev("c1", "cycle_count", 0, 11 * 24)], 12 * 24))
    assert counted.iloc[0]["open_pick_short_no_receipt"] == 0  # the count closed the evidence


def test_silence_is_measured_against_the_28_day_rate():
    row = derived_columns(snapshot(SELLING, 9 * 24 + 12 + 5 * 24)).iloc[0]  # 5 days silent
    assert row["silent_hours"] == pytest.approx(5 * 24)
    assert row["rate_28d"] == pytest.approx(10 / 28)
    assert row["expected_silent_sales_28d"] == pytest.approx(5 * 10 / 28)
    # the selling pace: 10 units over the 28 − 5 days of the window before the silence
    assert row["expected_silent_sales_selling"] == pytest.approx(5 * 10 / 23)
    assert 0.0 < row["silent_zero_sales_probability"] <= np.exp(-5 * 10 / 28) + 1e-12


def test_derived_columns_are_row_wise_and_recomputed():
    """The stream scores one row, training a table: each row's values must not depend on the
    others; stale derived columns in the input are replaced."""
    rows = pd.concat(
        [snapshot(SELLING, h) for h in (24, 5 * 24, 15 * 24, 40 * 24)], ignore_index=True
    )
    table = with_derived(rows)
    for i in range(len(rows)):
        single = with_derived(rows.iloc[[i]])
        pd.testing.assert_frame_equal(single, table.iloc[[i]])
    stale = table.assign(rate_28d=-1.0)
    pd.testing.assert_frame_equal(with_derived(stale), table)


def test_every_model_feature_is_explained_in_words():
    for spec in SPECS.values():
        assert spec.feature_defs  # every name resolves to a definition
        for name in spec.features:
            assert name in TEMPLATES, name
    row = with_derived(snapshot([*SELLING, ev("p1", "pick_short", 1, 250)], 300)).iloc[0]
    for name in DERIVED_NAMES:
        text = reason_text(name, row)
        assert "=" not in text and "nan" not in text.lower(), (name, text)


def test_scorer_needs_only_the_snapshot_columns():
    model = load_packaged("phantom-inventory")
    frame = snapshot([*SELLING, ev("p1", "pick_short", 1, 250)], 300)
    p = model.predict(frame)
    assert p.shape == (1,) and 0.0 <= p[0] <= 1.0
    with pytest.raises(KeyError, match="sales_28d"):
        model.predict(frame.drop(columns=["sales_28d"]))
    assert set(model.spec.inputs) <= set(MODEL_FEATURES) | {"unit_price"}
