"""The Rust parse fast path accepts only what :func:`parse_event` accepts and builds the same event.

``pipelines/rust_book/src/parse.rs`` handles payloads in the common shape and hands every other
one to the Python parser. The property checked here, on simulated and conformance streams and on
generated and mutated payloads: whenever the fast path returns an event, ``parse_event`` returns
an equal event (every field, the derived event time, UTC datetimes); and the dataflow's
``parse_batch`` gives the same routed items either way.
"""

from __future__ import annotations

import importlib
import json
import os
from datetime import UTC
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines import dataflow, native_book
from pipelines.events import InventoryEvent, Rejection, parse_event
from pipelines.replay import iter_lines
from pipelines.simulator import simulate

EXPECT_COMPILED = os.environ.get("SHELFGUARD_EXPECT_COMPILED") == "1"
NATIVE = native_book.native_class()
pytestmark = pytest.mark.skipif(
    NATIVE is None and not EXPECT_COMPILED,
    reason="the Rust extension is not built here (make install builds it)",
)


def fast(raw: bytes):
    return importlib.import_module(native_book.MODULE).parse_fast(raw)


def same_event(a: InventoryEvent, b: InventoryEvent) -> bool:
    return (
        a == b
        and a.occurred_ts == b.occurred_ts
        and a.occurred_at.tzinfo is UTC
        and b.occurred_at.tzinfo is UTC
        and (a.published_at is None or a.published_at.tzinfo is UTC)
        and (b.published_at is None or b.published_at.tzinfo is UTC)
        and type(a.unit_price) is type(b.unit_price)
        and type(a.quantity) is type(b.quantity) is int
    )


def check(raw: bytes) -> bool:
    """The property for one payload; returns whether the fast path accepted it."""
    got = fast(raw)
    if got is None:
        return False
    expected = parse_event(raw)
    assert type(expected) is InventoryEvent, (raw, expected)
    assert same_event(got, expected), (raw, got, expected)
    return True


@pytest.fixture(scope="module")
def messy_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("messy")
    simulate(
        out, seed=77, stores=3, skus=20, days=12, progress=False,
        malformed_share=0.05, duplicate_share=0.05, late_share=0.1,
    )  # fmt: skip
    return [line for line in iter_lines(out / "events.jsonl")]


def test_simulated_stream(messy_world):
    accepted = sum(check(line) for line in messy_world)
    # the simulator's well-formed events are the common shape: nearly all take the fast path
    rejects = sum(type(parse_event(line)) is Rejection for line in messy_world)
    assert accepted >= (len(messy_world) - rejects) * 0.9
    assert rejects > 10


def test_conformance_stream(conformance_dir):
    lines = list(iter_lines(conformance_dir / "events.jsonl"))
    assert sum(check(line) for line in lines) > 0


def test_parse_batch_same_either_way(messy_world, conformance_dir):
    items = [*messy_world, *iter_lines(conformance_dir / "events.jsonl")]
    items += [b"", b"   ", b"\t\r\n", "  ", "not json", json.dumps({"a": 1})]  # blanks, str items
    items += [SimpleNamespace(value=line) for line in messy_world[:200]]  # Kafka messages
    items += [SimpleNamespace(value=None), SimpleNamespace(value=b" ")]
    got = dataflow.parse_batch(items)
    expected = [r for r in map(dataflow.parse_item, items) if r is not None]
    assert len(got) == len(expected)
    for (route_a, a), (route_b, b) in zip(got, expected, strict=True):
        assert route_a == route_b
        if type(b) is Rejection:
            assert a == b
        else:
            assert same_event(a, b)


BASE = {
    "event_id": "e-1",
    "event_type": "sale",
    "occurred_at": "2026-03-02T10:15:30Z",
    "sku": "SKU-1",
    "location": "S001",
    "quantity": 2,
    "source": "pos",
}


@pytest.mark.parametrize(
    ("change", "accepted"),
    [
        ({}, True),
        ({"occurred_at": "2026-03-02T10:15:30.123+05:30"}, True),
        ({"occurred_at": "2026-03-02t10:15:30.123456z"}, True),
        ({"occurred_at": "2028-02-29T23:59:59-07:00"}, True),  # crosses into March 1 in UTC
        ({"occurred_at": "0001-01-01T00:30:00-01:00"}, True),
        ({"unit_price": 4}, True),
        ({"unit_price": 4.25, "reason": "promo", "reference": "R1"}, True),
        ({"published_at": None, "reference": None}, True),
        ({"quantity": -3, "event_type": "adjustment"}, True),
        ({"sku": "Ü-1"}, False),  # non-ASCII first character: Python judges blankness
        ({"occurred_at": "2026-03-02 10:15:30Z"}, False),
        ({"occurred_at": "2026-03-02T10:15:30"}, False),
        ({"occurred_at": "2026-03-02T10:15:30.1Z"}, False),
        ({"occurred_at": "2027-02-29T10:15:30Z"}, False),
        ({"occurred_at": "2026-03-02T24:00:00Z"}, False),
        ({"occurred_at": "2026-03-02T10:00:00+24:00"}, False),
        ({"occurred_at": "0001-01-01T00:30:00+01:00"}, False),  # before year 1 in UTC
        ({"occurred_at": "9999-12-31T23:30:00-01:00"}, False),  # after 9999 in UTC
        ({"quantity": 2.0}, False),
        ({"quantity": -1}, False),
        ({"quantity": 1_000_000_001}, False),
        ({"unit_price": 2**60}, False),
        ({"sku": "  "}, False),
        ({"sku": "\x1cA"}, False),
        ({"sku": "\x00A"}, False),
        ({"event_id": ""}, False),
        ({"colour": "red"}, False),
        ({"event_type": "shrink"}, False),
    ],
)
def test_spellings(change, accepted):
    payload = {**BASE, **change}
    raw = json.dumps(payload, ensure_ascii=False).encode()
    assert check(raw) is accepted


def test_duplicate_fields_go_to_python():
    raw = b'{"event_id":"a","event_id":"b",' + json.dumps(BASE).encode()[1:]
    assert fast(raw) is None


def _mostly(valid, *edges):
    return st.one_of(valid, valid, valid, st.sampled_from(edges))


TIMESTAMPS = st.builds(
    lambda y, mo, d, h, mi, s, frac, zone, t: (
        f"{y:04d}-{mo:02d}-{d:02d}{t}{h:02d}:{mi:02d}:{s:02d}{frac}{zone}"
    ),
    _mostly(st.integers(1, 9999), 1, 2024, 2026, 9999),
    _mostly(st.integers(1, 12), 0, 13, 2),
    _mostly(st.integers(1, 28), 0, 29, 30, 31, 32),
    _mostly(st.integers(0, 23), 24),
    _mostly(st.integers(0, 59), 60),
    _mostly(st.integers(0, 59), 60, 61),
    _mostly(
        st.sampled_from(("", ".123", ".123456")), ".5", ".12", ".1234", ".1234567", ",123", "."
    ),
    _mostly(
        st.sampled_from(("Z", "z", "+00:00", "-00:00", "+05:30", "-07:00", "+14:00", "-23:59")),
        "",
        "+24:00",
        "-24:00",
        "+23:60",
        "+0530",
        "+05:30:15",
        " Z",
        "+5:30",
        "Z ",
    ),  # fmt: skip
    _mostly(st.sampled_from(("T", "t")), " ", "_"),
)
TEXT = st.one_of(
    st.sampled_from(("SKU-1", "S001", "A|B", "x", " lead", "trail ", "\u00a0nbsp", "\x1fA")),
    st.text(min_size=0, max_size=6),
)
NUMBER = st.one_of(
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from((0, -0.0, 1e308, 2**53, 2**53 + 1, 1_000_000_000, -1_000_000_000)),
)


VALID_TS = st.builds(
    lambda y, mo, d, h, mi, s, frac, zone, t: (
        f"{y:04d}-{mo:02d}-{d:02d}{t}{h:02d}:{mi:02d}:{s:02d}{frac}{zone}"
    ),
    st.integers(2, 9998),
    st.integers(1, 12),
    st.integers(1, 28),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
    st.sampled_from(("", ".123", ".123456", ".000", ".999999")),
    st.sampled_from(("Z", "z", "+00:00", "-00:00", "+05:30", "-07:00", "+14:00", "-23:59")),
    st.sampled_from(("T", "t")),
)
NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 |é_-]{0,8}", fullmatch=True)
#: one deliberate break of a valid payload: any timestamp, odd text, any number, and so on
BREAKS = (
    lambda d, o: o.update(occurred_at=d(TIMESTAMPS)),
    lambda d, o: o.update(published_at=d(TIMESTAMPS)),
    lambda d, o: o.update({d(st.sampled_from(("sku", "location", "event_id"))): d(TEXT)}),
    lambda d, o: o.update(quantity=d(NUMBER)),
    lambda d, o: o.update(unit_price=d(st.one_of(NUMBER, st.just("4.5")))),
    lambda d, o: o.update(reference=d(st.integers())),
    lambda d, o: o.update(source=d(st.sampled_from(("POS", "fax", "")))),
    lambda d, o: o.update(event_type=d(st.sampled_from(("Sale", "shrink", "")))),
    lambda d, o: o.update(colour="red"),
    lambda d, o: o.pop(d(st.sampled_from(sorted(o)))),
)


@st.composite
def payloads(draw) -> bytes:
    """Mostly valid payloads in varied spellings; about half with one deliberate break."""
    etype = draw(st.sampled_from(("sale", "adjustment", "transfer_in", "cycle_count", "return")))
    obj = {
        "event_id": draw(NAME),
        "event_type": etype,
        "occurred_at": draw(VALID_TS),
        "sku": draw(NAME),
        "location": draw(NAME),
        "quantity": draw(st.integers(-50 if etype == "adjustment" else 0, 10**9)),
        "source": draw(st.sampled_from(("pos", "erp", "oms"))),
    }
    for name, values in (
        ("published_at", st.one_of(st.none(), VALID_TS)),
        ("unit_price", st.one_of(st.none(), st.integers(0, 10**6), st.floats(0, 1e6))),
        ("reference", st.one_of(st.none(), NAME)),
        ("reason", st.one_of(st.none(), NAME)),
    ):
        if draw(st.booleans()):
            obj[name] = draw(values)
    if draw(st.booleans()):
        draw(st.sampled_from(BREAKS))(draw, obj)
    items = list(obj.items())
    if draw(st.booleans()):
        items.reverse()
    return json.dumps(dict(items), ensure_ascii=draw(st.booleans())).encode()


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads())
def test_generated_payloads(raw):
    check(raw)


def test_generated_payloads_are_often_accepted():
    """The generator is not vacuous: a good share of its payloads take the fast path."""
    accepted = []

    @settings(max_examples=300, deadline=None, database=None)
    @given(payloads())
    def run(raw):
        accepted.append(check(raw))

    run()
    assert sum(accepted) >= len(accepted) // 4


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=40), st.integers(0, 200))
def test_mutated_payloads(noise, at):
    """Bytes spliced into a valid payload: invalid UTF-8, broken JSON, stray characters."""
    raw = json.dumps({**BASE, "unit_price": 3.5, "published_at": BASE["occurred_at"]}).encode()
    at = min(at, len(raw))
    check(raw[:at] + noise + raw[at:])
