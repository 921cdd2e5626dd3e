"""The Rust ledger step (``pipelines.native_book``) gives exactly what :class:`Book` gives.

The Python :class:`~pipelines.features.Book` is the specification; the Rust ``NativeBook`` runs
the dataflow's ledger step. Compared here, batch by batch: the keys each batch changed (and the
event that last changed each), every key's state (``__getstate__``, bit for bit), feature
snapshots at several instants, and snapshots restored across the two implementations, on
simulated worlds with other parameters, the conformance cases and randomised streams built to
reach the rare branches (duplicates, late and out-of-order events, stale counts, transfers in
any order, ids that turn a dedupe blob into a set, counters that outgrow a byte, escaped keys).

``make test`` sets ``SHELFGUARD_EXPECT_COMPILED=1``: there a missing or stale build fails.
"""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines import native_book
from pipelines.dataflow import build_flow
from pipelines.events import EventType, InventoryEvent, Source, parse_event
from pipelines.features import Book
from pipelines.replay import iter_lines
from pipelines.simulator import simulate

EXPECT_COMPILED = os.environ.get("SHELFGUARD_EXPECT_COMPILED") == "1"
NATIVE = native_book.native_class()

needs_native = pytest.mark.skipif(
    NATIVE is None and not EXPECT_COMPILED,
    reason="the Rust book is not built here (make install builds it)",
)


def canon(value):
    """Comparable form of a state or snapshot: NaN as a marker, sets sorted, floats exact."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("float", value.hex())
    if isinstance(value, frozenset | set):
        return ("set", tuple(sorted(value)))
    if isinstance(value, tuple | list):
        return (type(value).__name__, tuple(canon(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((k, canon(v)) for k, v in value.items()))
    return (type(value).__name__, value)


def events_of(lines) -> list[InventoryEvent]:
    parsed = (parse_event(line) for line in lines if line.strip())
    return [e for e in parsed if type(e) is InventoryEvent]


def assert_same_run(events: list[InventoryEvent], batch: int, as_of_offsets=(0.0,)) -> None:
    """Both books over ``events`` in batches of ``batch``: same changes, states, snapshots."""
    assert NATIVE is not None
    py, rs = Book(), NATIVE()
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        expected, got = py.apply_batch(chunk), rs.apply_batch(chunk)
        assert list(got) == list(expected), start
        assert all(got[k] is expected[k] for k in expected), start
    assert canon(rs.__getstate__()) == canon(py.__getstate__())
    assert rs.keys() == list(py.states)
    end = max((s.last_event_ts for s in py.states.values()), default=0.0)
    instants = [end + offset for offset in as_of_offsets]
    for key, state in py.states.items():
        assert rs.view(key) == py.view(key)
        for as_of in (*instants, state.last_event_ts):
            assert canon(rs.snapshot(key, as_of)) == canon(state.snapshot(as_of)), (key, as_of)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """Two worlds with parameters unlike the bench's: long and sparse; short, dense and messy."""
    out = []
    for seed, stores, skus, days, overrides in (
        (41, 3, 12, 75, {"duplicate_share": 0.05, "late_share": 0.1, "count_share": 0.05}),
        (42, 6, 8, 20, {"demand_median": 4.0, "transfer_confirm_late_share": 0.8}),
    ):
        directory = tmp_path_factory.mktemp(f"world{seed}")
        simulate(
            directory, seed=seed, stores=stores, skus=skus, days=days, progress=False, **overrides
        )
        out.append(events_of(iter_lines(directory / "events.jsonl")))
    return out


def test_built_and_chosen_when_expected():
    if not EXPECT_COMPILED:
        pytest.skip("SHELFGUARD_EXPECT_COMPILED is not set (make test sets it)")
    assert native_book.built(), "make install must build the Rust book (pipelines/rust_book)"
    assert NATIVE is not None and native_book.book_class() is NATIVE


@needs_native
@pytest.mark.parametrize("batch", [1, 37, 1000])
def test_simulated_worlds_give_identical_books(worlds, batch):
    for events in worlds:
        assert len(events) > 1000
        assert_same_run(events, batch, as_of_offsets=(0.0, 3_600.0, 40 * 86_400.0))


@needs_native
def test_conformance_cases(conformance_dir):
    assert_same_run(events_of(iter_lines(conformance_dir / "events.jsonl")), batch=5)


@needs_native
def test_snapshots_resume_in_either_implementation(worlds):
    events = worlds[0]
    cut = len(events) // 2
    py, rs = Book(), NATIVE()
    py.apply_batch(events[:cut])
    rs.apply_batch(events[:cut])
    py_from_rs, rs_from_py = (
        Book.from_state(rs.__getstate__()),
        NATIVE.from_state(py.__getstate__()),
    )
    for book in (py, rs, py_from_rs, rs_from_py):
        book.apply_batch(events[cut:])
    reference = canon(py.__getstate__())
    for book in (rs, py_from_rs, rs_from_py):
        assert canon(book.__getstate__()) == reference


@needs_native
def test_refuses_a_snapshot_of_another_layout():
    with pytest.raises(ValueError, match="not a book-v2 snapshot"):
        NATIVE.from_state(("book-v0", (), (), ()))
    with pytest.raises(ValueError, match="18 fields"):
        NATIVE.from_state(("book-v2", (("A|B", ("A", "B", 0, (1, 2), ())),), (), ()))


# ------------------------------------------------------------------------- random streams

T0 = datetime(2026, 3, 2, tzinfo=UTC)
SKUS = ("SKU-1", "SKU-2", "A|B", "\x1fodd", "Ü-7")
LOCATIONS = ("S1", "S2", "DC")
REASONS = (
    None,
    "damaged",
    "quarantine",
    "release_quarantine",
    "inspection_pass",
    "inspection_fail",
    "cycle_found",
    "customer_damaged",
)
IDS = st.one_of(
    st.sampled_from([f"e{i}" for i in range(40)]),  # small pool: many duplicates
    st.text(min_size=1, max_size=8),  # any characters, the separator \x00 included
    st.just("x" * 600),  # two of these turn a dedupe blob into a set
    st.builds(lambda n: f"long-{n}-" + "y" * 700, st.integers(0, 3)),
)


@st.composite
def event(draw) -> InventoryEvent:
    etype = draw(st.sampled_from(list(EventType)))
    quantity = draw(
        st.one_of(
            st.integers(0, 5),
            st.integers(0, 1_000_000_000),
            # a byte counter's edge (255 fits, 256 widens it) and int32's (3 × 10⁹ does not fit)
            st.sampled_from((254, 255, 256, 1_000_000_000)),
        )
    )
    if etype is EventType.ADJUSTMENT and draw(st.booleans()):
        quantity = -quantity
    transfer = etype in (EventType.TRANSFER_OUT, EventType.TRANSFER_IN)
    minutes = draw(st.one_of(st.integers(-60 * 24 * 3, 60 * 24 * 90), st.just(10**7)))
    return InventoryEvent(
        draw(IDS),
        etype,
        T0 + timedelta(minutes=minutes, microseconds=draw(st.integers(0, 999_999))),
        draw(st.sampled_from(SKUS)),
        draw(st.sampled_from(LOCATIONS)),
        quantity,
        Source.POS,
        draw(st.sampled_from(("T1", "T2", "T3"))) if transfer and draw(st.booleans()) else None,
        draw(st.sampled_from(REASONS)),
        draw(st.one_of(st.none(), st.floats(0.01, 1e6))),
    )


@needs_native
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(event(), min_size=1, max_size=120), st.integers(1, 50))
def test_random_streams_give_identical_books(events, batch):
    assert_same_run(events, batch, as_of_offsets=(0.0, -86_400.0 * 3, 86_400.0 * 30))


# ------------------------------------------------------------------------------ the build


def test_a_build_of_older_sources_is_not_used(tmp_path, monkeypatch):
    manifest = tmp_path / "_native_book.json"
    extension = tmp_path / "ext.so"
    extension.write_bytes(b"")
    monkeypatch.setattr(native_book, "MANIFEST", manifest)
    monkeypatch.setattr(native_book, "extension_path", lambda: extension)
    manifest.write_text(json.dumps({"sha256": native_book.crate_digest()}))
    assert native_book.built()
    manifest.write_text(json.dumps({"sha256": "0" * 64}))  # the crate changed since
    assert not native_book.built()
    manifest.unlink()
    assert not native_book.built()


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv(native_book.ENV, "0")
    assert native_book.disabled()
    monkeypatch.setenv(native_book.ENV, "1")
    monkeypatch.setenv("SHELFGUARD_PURE_PYTHON", "1")
    assert native_book.disabled()


@needs_native
def test_dataflow_updates_match_the_python_book(worlds, monkeypatch):
    """The streaming output (one snapshot per changed key per batch) is the same either way."""
    from bytewax.testing import TestingSink, TestingSource, run_main

    lines = [json.dumps(e.to_dict()) for e in worlds[1][:3000]]

    def run() -> list:
        out: list = []
        flow = build_flow(
            TestingSource(lines, batch_size=100), TestingSink([]), TestingSink(out), emit="updates"
        )
        run_main(flow)
        return [(u.key, u.duplicates, canon(u.snapshot), canon(u.as_of_ts), u.trigger) for u in out]

    native_run = run()
    monkeypatch.setattr(native_book, "book_class", lambda: Book)
    python_run = run()
    assert len(native_run) > 1000
    assert native_run == python_run


def test_configuration_is_read_from_the_python_modules():
    """The Rust book's rules come from the Python modules, not from a second copy."""
    from pipelines import features, ledger

    config = native_book.configuration()
    assert config["plans"] == dict(ledger._PLANS)
    assert config["move_plans"] == dict(ledger._MOVE_PLANS)
    assert config["row"] == ["sku", "location", *features.FEATURE_NAMES]
    assert config["window_days"] == features.WINDOW_DAYS
    assert Path(native_book.CRATE / "Cargo.lock").exists()
