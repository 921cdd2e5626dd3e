"""Score messages as the Kafka consumer reads them: the fast JSON path and the careful path give
the same score, and every refusal names the field."""

from __future__ import annotations

import json

import pytest

from serving.score_feed import parse_score, parse_score_message

GOOD = {
    "sku": "SKU-1",
    "location": "S01",
    "phantom_score": 0.91,
    "stockout_score": 0.4,
    "phantom_explanation": "no sale for 96 h where 4.1 units were expected",
    "stockout_explanation": "",
    "on_hand": 4,
    "reserved": 1,
    "atp": 3,
    "as_of": "2026-03-02T09:00:00Z",
    "phantom_model": "phantom-inventory:3",
    "stockout_model": "stockout-risk:2",
    "features": {"on_hand": 4, "sales_7d": 9.0, "hours_since_last_sale": None},
    "scored_at": "2026-03-02T09:00:01Z",
}


@pytest.mark.parametrize(
    "message",
    [
        GOOD,
        {**GOOD, "unit_value": None, "stockout_explanation": None},  # nulls = absent
        {**GOOD, "atp": ""},
        {
            **{k: v for k, v in GOOD.items() if k != "features"},
            "feature.on_hand": 4,
            "feature.sales_7d": 9.0,
        },
    ],
)
def test_fast_and_careful_paths_agree(message: dict) -> None:
    careful = parse_score(json.loads(json.dumps(message)))
    assert not isinstance(careful, str), careful
    assert parse_score_message(json.dumps(message).encode()) == careful


def test_a_nan_column_is_absent_but_a_nan_feature_is_refused() -> None:
    parsed = parse_score_message(json.dumps({**GOOD, "unit_value": float("nan")}).encode())
    assert not isinstance(parsed, str), parsed
    assert parsed.unit_value is None
    refused = parse_score_message(
        json.dumps({**GOOD, "features": {"sales_7d": float("nan")}}).encode()
    )
    assert isinstance(refused, str) and "features.sales_7d" in refused  # contract: NaN as null


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (json.dumps({**GOOD, "phantom_score": 1.7}).encode(), "phantom_score"),
        (json.dumps({**GOOD, "as_of": "2026-03-02T09:00:00"}).encode(), "as_of"),
        (json.dumps({**GOOD, "features": {"bogus": 1}}).encode(), "features"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "sku"}).encode(), "sku"),
        (b"{not json", "not JSON"),
    ],
)
def test_refusals_name_the_field(raw: bytes, field: str) -> None:
    reason = parse_score_message(raw)
    assert isinstance(reason, str) and field in reason
