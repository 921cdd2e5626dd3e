import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.events import (
    EventType,
    InventoryEvent,
    Rejection,
    RejectReason,
    encode_event,
    parse_event,
    state_key,
)

SCHEMA = json.loads(
    (
        Path(__file__).resolve().parents[2] / "pipelines/schemas/inventory_event.schema.json"
    ).read_text()
)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

GOOD = {
    "event_id": "e1",
    "event_type": "sale",
    "occurred_at": "2026-03-01T10:00:00+02:00",
    "sku": "SKU-1",
    "location": "S1",
    "quantity": 2,
    "source": "pos",
}


def with_(**changes):
    obj = dict(GOOD)
    for key, value in changes.items():
        if value is ...:
            obj.pop(key)
        else:
            obj[key] = value
    return json.dumps(obj)


def test_valid_event_is_parsed_to_utc():
    event = parse_event(json.dumps(GOOD))
    assert isinstance(event, InventoryEvent)
    assert event.occurred_at == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    assert event.event_type is EventType.SALE
    assert event.key == "SKU-1|S1"


def test_unknown_fields_are_kept_and_ignored():
    event = parse_event(with_(channel_hint="click-and-collect"))
    assert isinstance(event, InventoryEvent)
    assert event.extra == {"channel_hint": "click-and-collect"}
    assert json.loads(encode_event(event))["channel_hint"] == "click-and-collect"


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [
        ("{not json", RejectReason.NOT_JSON, None),
        ("[1, 2]", RejectReason.NOT_OBJECT, None),
        (with_(sku=...), RejectReason.MISSING_FIELD, "sku"),
        (with_(quantity=...), RejectReason.MISSING_FIELD, "quantity"),
        (with_(event_type="teleport"), RejectReason.UNKNOWN_EVENT_TYPE, "event_type"),
        (with_(source="fax"), RejectReason.UNKNOWN_SOURCE, "source"),
        (with_(occurred_at="2026-03-01 10:00"), RejectReason.BAD_TIMESTAMP, "occurred_at"),
        (with_(occurred_at="yesterday"), RejectReason.BAD_TIMESTAMP, "occurred_at"),
        (with_(occurred_at="2026-03-01T10:00:00"), RejectReason.ZONELESS_TIMESTAMP, "occurred_at"),
        (with_(quantity=1.5), RejectReason.NON_INTEGER_QUANTITY, "quantity"),
        (with_(quantity="3"), RejectReason.NON_INTEGER_QUANTITY, "quantity"),
        (with_(quantity=True), RejectReason.NON_INTEGER_QUANTITY, "quantity"),
        (with_(quantity=-4), RejectReason.NEGATIVE_QUANTITY, "quantity"),
        (with_(sku=""), RejectReason.EMPTY_KEY, "sku"),
        (with_(location="  "), RejectReason.EMPTY_KEY, "location"),
        (with_(sku=12), RejectReason.WRONG_TYPE, "sku"),
        (
            with_(published_at="2026-03-01T10:00:00"),
            RejectReason.ZONELESS_TIMESTAMP,
            "published_at",
        ),
    ],
)
def test_every_reject_reason(raw, reason, field):
    result = parse_event(raw)
    assert isinstance(result, Rejection)
    assert result.reason is reason
    assert result.field == field
    assert result.raw == raw
    assert result.detail  # a sentence for humans


def test_negative_adjustment_is_valid():
    assert isinstance(parse_event(with_(event_type="adjustment", quantity=-3)), InventoryEvent)


def test_integral_float_quantity_is_an_integer_as_in_json_schema():
    event = parse_event(with_(quantity=3.0))
    assert isinstance(event, InventoryEvent) and event.quantity == 3
    assert VALIDATOR.is_valid(json.loads(with_(quantity=3.0)))


def test_schema_and_validator_agree_on_conformance_cases(conformance_dir):
    for line in (conformance_dir / "events.jsonl").read_text().splitlines():
        parsed = parse_event(line)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            assert isinstance(parsed, Rejection)
            continue
        assert VALIDATOR.is_valid(obj) == isinstance(parsed, InventoryEvent), line


def test_conformance_rejects_exactly_nine_with_reasons(conformance_dir):
    rejects = [
        r
        for r in map(parse_event, (conformance_dir / "events.jsonl").read_text().splitlines())
        if isinstance(r, Rejection)
    ]
    assert len(rejects) == 9
    assert {r.reason for r in rejects} == {
        RejectReason.MISSING_FIELD,
        RejectReason.BAD_TIMESTAMP,
        RejectReason.ZONELESS_TIMESTAMP,
        RejectReason.UNKNOWN_EVENT_TYPE,
        RejectReason.NEGATIVE_QUANTITY,
        RejectReason.NON_INTEGER_QUANTITY,
        RejectReason.EMPTY_KEY,
        RejectReason.UNKNOWN_SOURCE,
        RejectReason.NOT_JSON,
    }


# --- the fast path and the careful path must agree --------------------------------------------


from pipelines.events import _fast_event, _Invalid, event_from_dict  # noqa: E402

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(-3, 3, allow_nan=False),
    st.sampled_from(
        [
            "",
            " ",
            "sale",
            "adjustment",
            "pos",
            "fax",
            "SKU-1",
            "2026-03-01T10:00:00Z",
            "2026-03-01T10:00:00+02:00",
            "2026-03-01T10:00:00",
            "2026-03-01 10:00:00Z",
            "2026-13-01T10:00:00Z",
        ]
    ),
)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*GOOD, "reference", "unit_price", "published_at", "x"]), _values
    ),
    st.booleans(),
)
def test_fast_path_agrees_with_careful_path(overrides, start_from_good):
    obj = {**GOOD, **overrides} if start_from_good else overrides
    fast = _fast_event(obj)
    try:
        careful = event_from_dict(obj)
    except _Invalid:
        careful = None
    if fast is not None:
        assert careful == fast


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*GOOD, "reference", "reason", "unit_price", "published_at", "x"]),
        _values,
    ),
    st.booleans(),
)
def test_typed_path_agrees_with_careful_path(overrides, start_from_good):
    import json

    from pipelines.events import _wire_event

    obj = {**GOOD, **overrides} if start_from_good else overrides
    typed = _wire_event(json.dumps(obj).encode())
    try:
        careful = event_from_dict(obj)
    except _Invalid:
        careful = None
    if typed is not None:
        assert careful == typed
    if careful is not None and not careful.extra and type(obj.get("quantity")) is int:
        assert typed == careful  # the common shape always takes the typed path


@pytest.mark.parametrize("quantity", [1_000_000_000, -1_000_000_000])
def test_quantity_at_the_bound_is_an_event(quantity):
    event = parse_event(with_(event_type="adjustment", quantity=quantity))
    assert isinstance(event, InventoryEvent) and event.quantity == quantity
    assert VALIDATOR.is_valid(json.loads(with_(event_type="adjustment", quantity=quantity)))


@pytest.mark.parametrize("quantity", [1_000_000_001, -1_000_000_001, 2**63, 10**25, 1e12])
def test_quantity_beyond_the_bound_is_dead_lettered_with_its_reason(quantity):
    raw = with_(event_type="adjustment", quantity=quantity)
    result = parse_event(raw)
    assert isinstance(result, Rejection)
    assert (result.reason, result.field) == (RejectReason.QUANTITY_OUT_OF_RANGE, "quantity")
    assert "1,000,000,000" in result.detail
    assert not VALIDATOR.is_valid(json.loads(raw))


@given(
    day=st.dates(min_value=date(1971, 1, 2), max_value=date(2099, 12, 30)),
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
    second=st.none() | st.integers(0, 59),
    fraction=st.none() | st.text("0123456789", min_size=1, max_size=9),
    separator=st.sampled_from("Tt"),
    zone=st.sampled_from(["Z", "z", "+00:00", "-00:00", "+0530", "-08:00", "+14:00", "-1200"]),
)
def test_every_schema_valid_timestamp_parses_to_its_instant(
    day, hour, minute, second, fraction, separator, zone
):
    """The schema's timestamp pattern and the parser agree: any well-formed instant it allows
    is an event (fast path and careful path alike), at the instant it names."""
    text = f"{day.isoformat()}{separator}{hour:02d}:{minute:02d}"
    if second is not None:
        text += f":{second:02d}"
        if fraction is not None:
            text += f".{fraction}"
    text += zone
    raw = with_(occurred_at=text)
    assert VALIDATOR.is_valid(json.loads(raw))
    event = parse_event(raw)
    assert isinstance(event, InventoryEvent), event
    offset = (
        0
        if zone in "Zz"
        else (1 if zone[0] == "+" else -1) * (int(zone[1:3]) * 60 + int(zone[-2:]))
    )
    micros = int((fraction or "0")[:6].ljust(6, "0")) if second is not None else 0
    local = datetime(day.year, day.month, day.day, hour, minute, second or 0, micros, UTC)
    assert event.occurred_at == local - timedelta(minutes=offset)
    # the careful path (any extra field sends the payload there) gives the same instant
    careful = parse_event(with_(occurred_at=text, note="x"))
    assert isinstance(careful, InventoryEvent) and careful.occurred_at == event.occurred_at


@pytest.mark.parametrize("field", ["occurred_at", "published_at"])
@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00"])
@pytest.mark.parametrize("note", [None, "x"])  # None: the typed path; "x": the dict paths
def test_timestamp_beyond_datetime_range_in_utc_is_dead_lettered(field, text, note):
    """Schema-valid, but the instant falls outside years 1-9999 in UTC: a reject, not a crash
    of the whole stream (it raised OverflowError)."""
    raw = with_(**{field: text}, **({"note": note} if note else {}))
    assert VALIDATOR.is_valid(json.loads(raw))
    result = parse_event(raw)
    assert isinstance(result, Rejection)
    assert (result.reason, result.field) == (RejectReason.BAD_TIMESTAMP, field)


def test_timestamp_at_the_edge_of_datetime_range_is_an_event():
    event = parse_event(with_(occurred_at="0001-01-01T00:00:00-12:00"))
    assert isinstance(event, InventoryEvent)
    assert event.occurred_at == datetime(1, 1, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize("note", [None, "x"])
@pytest.mark.parametrize("sign", ["", "-"])
def test_unit_price_beyond_a_double_is_dead_lettered(note, sign):
    """A 400-digit integer is a JSON number (schema-valid) but no double: rejected with its
    field named, where it raised OverflowError."""
    extra = {"note": note} if note else {}
    raw = with_(**extra).replace('"e1"', f'"e1", "unit_price": {sign}1{"0" * 400}')
    assert VALIDATOR.is_valid(json.loads(raw))
    result = parse_event(raw)
    assert isinstance(result, Rejection)
    assert (result.reason, result.field) == (RejectReason.WRONG_TYPE, "unit_price")


def test_large_integer_unit_price_within_a_double_is_an_event():
    event = parse_event(with_(unit_price=10**300))
    assert isinstance(event, InventoryEvent) and event.unit_price == 1e300


def _pair_of(key: str) -> tuple[str, str]:
    """The inverse of ``state_key``: it exists only if no two pairs share a key."""
    if key.startswith("\x1f"):
        sku, other = json.loads(key[1:])
        return sku, other
    sku, other = key.split("|", 1)
    return sku, other


_KEY_TEXT = st.text(alphabet='\x1f|[]", AB', min_size=1, max_size=8)


@given(sku=_KEY_TEXT, other=_KEY_TEXT)
def test_state_key_is_one_to_one(sku, other):
    """Two (sku, location) pairs never share a routing key (a shared key merges two ledgers):
    ``("\\x1f[\\"A", "B\\", \\"C\\"]")`` spelled the escaped key of ``("A|B", "C")``."""
    assert _pair_of(state_key(sku, other)) == (sku, other)


def test_a_sku_that_spells_an_escaped_key_keeps_its_own_key():
    assert state_key('\x1f["A', 'B", "C"]') != state_key("A|B", "C")
