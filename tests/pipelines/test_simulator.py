"""The simulator: replay consistency with the ledger, determinism, contract, mechanisms, scenarios.

Small worlds (5 stores × 40 skus × 14 days) keep the module fast; the acceptance world
(10 × 200 × 30) is marked slow.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.events import EventType, InventoryEvent, Rejection, RejectReason, parse_event
from pipelines.keys import state_key
from pipelines.replay import Replay
from pipelines.simulator import SCENARIOS, SimulationSummary, WorldParams, simulate
from pipelines.simulator.malformed import MALFORMED_KINDS
from pipelines.simulator.state import allocate_in_order

REPO = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO / "pipelines" / "schemas" / "inventory_event.schema.json"
SMALL = {"stores": 5, "skus": 40, "days": 14}
MEDIUM = {"stores": 8, "skus": 100, "days": 21}
ACCEPTANCE = {"stores": 10, "skus": 200, "days": 30}
#: a world where delivery is hostile: many late, re-sent events and many counts to cross
STRESS = {"late_share": 0.3, "duplicate_share": 0.1, "count_share": 0.1, "malformed_share": 0.02}
BUCKETS = ("on_hand", "reserved", "damaged", "quarantined", "in_transit", "returned_pending")


@dataclass
class Run:
    """A finished simulation and everything the tests read from it."""

    path: Path
    summary: SimulationSummary
    lines: list[bytes]
    parsed: list[InventoryEvent | Rejection]
    truth: pd.DataFrame

    @property
    def events(self) -> list[InventoryEvent]:
        return [p for p in self.parsed if isinstance(p, InventoryEvent)]

    @property
    def rejections(self) -> list[Rejection]:
        return [p for p in self.parsed if isinstance(p, Rejection)]

    def unique_events(self) -> list[InventoryEvent]:
        seen: set[str] = set()
        out = []
        for event in self.events:
            if event.event_id not in seen:
                seen.add(event.event_id)
                out.append(event)
        return out

    def last_day(self) -> pd.DataFrame:
        return self.truth[self.truth.day == self.truth.day.max()]

    def stores(self) -> pd.DataFrame:
        return self.truth[self.truth.location != "DC01"]


def run_world(path: Path, seed: int = 7, world: dict | None = None, **kwargs) -> Run:
    summary = simulate(path, seed=seed, progress=False, **(world or SMALL), **kwargs)
    lines = (path / "events.jsonl").read_bytes().splitlines()
    truth = pd.read_parquet(path / "truth.parquet")
    for column in ("sku", "location"):
        truth[column] = truth[column].astype(str)
    return Run(path, summary, lines, [parse_event(line) for line in lines], truth)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """The small world under the baseline, every named scenario (same seed), and ``stress``."""
    out = {}
    for name in ("baseline", *sorted(SCENARIOS)):
        scenario = None if name == "baseline" else name
        out[name] = run_world(tmp_path_factory.mktemp(name), scenario=scenario)
    out["stress"] = run_world(tmp_path_factory.mktemp("stress"), **STRESS)
    return out


@pytest.fixture(scope="module")
def baseline(runs: dict[str, Run]) -> Run:
    return runs["baseline"]


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A somewhat larger world where every mechanism fires often enough to measure."""
    return run_world(tmp_path_factory.mktemp("medium"), seed=11, world=MEDIUM)


def replay(run: Run) -> Replay:
    """Apply the valid lines in file (arrival) order, as the platform would."""
    replayed = Replay()
    for event in run.events:
        replayed.apply(event)
    return replayed


# -- 1. replay through the ledger == truth ------------------------------------------------------
@pytest.mark.parametrize("name", ["baseline", *sorted(SCENARIOS), "stress"])
def test_replay_in_arrival_order_reproduces_the_recorded_truth(runs: dict[str, Run], name: str):
    run = runs[name]
    states = replay(run).states
    last = run.last_day()
    assert len(last) == (SMALL["stores"] + 1) * SMALL["skus"]
    keys = {(state.sku, state.location) for state in states.values()}
    assert keys == set(zip(last.sku, last.location, strict=True))
    mismatches = []
    for row in last.itertuples(index=False):
        position = states[state_key(row.sku, row.location)].position
        got = tuple(getattr(position, b) for b in BUCKETS)
        want = tuple(int(getattr(row, f"recorded_{b}")) for b in BUCKETS)
        if got != want:
            mismatches.append((row.sku, row.location, got, want))
    assert not mismatches, f"{len(mismatches)} keys differ, e.g. {mismatches[:5]}"


def test_replay_exercises_the_hard_cases(runs: dict[str, Run]):
    """The replay test is only meaningful if the stream has out-of-order and re-sent events."""
    run = runs["stress"]
    events = run.events
    late_before_count = 0
    counts = {(e.sku, e.location): [] for e in events}
    for e in run.unique_events():
        if e.event_type is EventType.CYCLE_COUNT:
            counts[(e.sku, e.location)].append((e.occurred_at, e.published_at))
    for e in run.unique_events():
        for occurred, published in counts[(e.sku, e.location)]:
            if e.occurred_at < occurred and e.published_at > published:
                late_before_count += 1
    assert late_before_count > 0  # events that the as-of-count rule must ignore
    assert replay(run).duplicates == run.summary.duplicates > 0
    assert any(
        e.event_type is EventType.TRANSFER_IN
        and e.published_at - e.occurred_at > pd.Timedelta(hours=2)
        for e in events
    )


# -- 2. determinism --------------------------------------------------------------------------------
def test_same_seed_same_bytes_and_different_seed_differs(tmp_path: Path, baseline: Run):
    again = run_world(tmp_path / "again")
    assert (tmp_path / "again" / "events.jsonl").read_bytes() == (
        baseline.path / "events.jsonl"
    ).read_bytes()
    pd.testing.assert_frame_equal(again.truth, baseline.truth)
    other = run_world(tmp_path / "other", seed=8)
    assert other.lines != baseline.lines
    # run tags differ, so event ids of two worlds never collide
    assert not {e.event_id for e in other.events} & {e.event_id for e in baseline.events}


def test_malformed_lines_do_not_touch_the_truth(tmp_path: Path, baseline: Run):
    clean = run_world(tmp_path / "clean", malformed_share=0.0)
    assert clean.summary.malformed == 0 and not clean.rejections
    pd.testing.assert_frame_equal(clean.truth, baseline.truth)


# -- 3. the JSON Schema --------------------------------------------------------------------------
def test_every_valid_line_passes_the_json_schema(baseline: Run):
    if not SCHEMA_PATH.exists():
        pytest.skip(f"{SCHEMA_PATH} not written yet (the lead owns the schema)")
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    checked = 0
    for line, parsed in zip(baseline.lines, baseline.parsed, strict=True):
        if isinstance(parsed, InventoryEvent):
            errors = list(validator.iter_errors(json.loads(line)))
            assert not errors, f"{line!r}: {errors[0].message}"
            checked += 1
    assert checked == baseline.summary.events_written + baseline.summary.duplicates


# -- 4. contract coverage: types, rejects, duplicates, order -------------------------------------
def test_all_event_types_and_sources_occur(baseline: Run):
    types = Counter(e.event_type for e in baseline.events)
    assert set(types) == set(EventType)
    assert {e.source.value for e in baseline.events} == {
        "pos",
        "ecommerce",
        "marketplace",
        "oms",
        "wms",
        "erp",
        "store_ops",
    }
    assert baseline.summary.events_by_type == {
        t.value: sum(1 for e in baseline.unique_events() if e.event_type is t) for t in EventType
    }


def test_line_counts_add_up(baseline: Run):
    s = baseline.summary
    assert len(baseline.lines) == s.lines_written == s.events_written + s.duplicates + s.malformed
    assert len(baseline.rejections) == s.malformed
    assert 0.001 <= s.malformed / s.events_written <= 0.008
    assert 0.005 <= s.duplicates / s.events_written <= 0.02
    manifest = json.loads((baseline.path / "manifest.json").read_text())
    assert manifest["seed"] == 7 and manifest["counts"] == s.to_dict()


def test_every_reject_kind_occurs_with_the_expected_reason(tmp_path: Path, baseline: Run):
    assert baseline.summary.malformed >= 5
    run = run_world(tmp_path / "bad", malformed_share=0.01)
    reasons = Counter(r.reason for r in run.rejections)
    assert set(reasons) == set(MALFORMED_KINDS)
    assert set(MALFORMED_KINDS) >= {
        RejectReason.NOT_JSON,
        RejectReason.MISSING_FIELD,
        RejectReason.UNKNOWN_EVENT_TYPE,
        RejectReason.UNKNOWN_SOURCE,
        RejectReason.ZONELESS_TIMESTAMP,
        RejectReason.BAD_TIMESTAMP,
        RejectReason.NEGATIVE_QUANTITY,
        RejectReason.NON_INTEGER_QUANTITY,
        RejectReason.EMPTY_KEY,
    }
    # round-robin: kinds are balanced within one
    assert max(reasons.values()) - min(reasons.values()) <= 1


def test_duplicates_are_identical_resends_arriving_later(runs: dict[str, Run]):
    run = runs["baseline"]
    by_id: dict[str, list[bytes]] = defaultdict(list)
    for line, parsed in zip(run.lines, run.parsed, strict=True):
        if isinstance(parsed, InventoryEvent):
            by_id[parsed.event_id].append(line)
    copies = {k: v for k, v in by_id.items() if len(v) > 1}
    assert sum(len(v) - 1 for v in copies.values()) == run.summary.duplicates > 0
    assert all(len(set(v)) == 1 for v in copies.values())
    storm = runs["duplicate_storm"].summary
    assert storm.duplicates / storm.events_written > 0.10


def test_lines_are_in_arrival_order(baseline: Run):
    """First sendings are sorted by published_at (= arrival); every arrival >= occurrence."""
    published = [e.published_at for e in baseline.unique_events()]
    assert published == sorted(published)
    assert all(e.published_at >= e.occurred_at for e in baseline.events)
    occurred = [e.occurred_at for e in baseline.unique_events()]
    assert occurred != sorted(occurred)  # out-of-order delivery really happens


def test_timestamps_are_utc_seconds_with_z(baseline: Run):
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
    for line, parsed in zip(baseline.lines, baseline.parsed, strict=True):
        if isinstance(parsed, InventoryEvent):
            obj = json.loads(line)
            assert stamp.fullmatch(obj["occurred_at"]) and stamp.fullmatch(obj["published_at"])


def test_opening_balances_cover_every_key(baseline: Run):
    opening = [e for e in baseline.unique_events() if e.reference == "OPENING"]
    assert {(e.sku, e.location) for e in opening} == set(
        zip(baseline.last_day().sku, baseline.last_day().location, strict=True)
    )
    start = datetime(2026, 3, 2, tzinfo=UTC)
    assert all(e.event_type is EventType.CYCLE_COUNT and e.source.value == "erp" for e in opening)
    assert all(0 <= (e.occurred_at - start).total_seconds() < 60 for e in opening)


@pytest.mark.parametrize("kind", ["receipt", "adjustment"])
def test_opening_balances_can_arrive_as_goods_in(baseline: Run, tmp_path: Path, kind: str):
    """An ERP that loads go-live stock as receipts or positive adjustments: one event per
    non-zero balance, the same truth (record and shelf) every day, and the replay still
    reproduces the record."""
    run = run_world(tmp_path, opening_event=kind)
    opening = [e for e in run.unique_events() if e.reference == "OPENING"]
    assert opening and all(e.event_type.value == kind and e.quantity > 0 for e in opening)
    counted = {
        (e.sku, e.location): e.quantity
        for e in baseline.unique_events()
        if e.reference == "OPENING"
    }
    assert {(e.sku, e.location): e.quantity for e in opening} == {
        key: qty for key, qty in counted.items() if qty > 0
    }
    pd.testing.assert_frame_equal(run.truth, baseline.truth)
    states = replay(run).states
    for row in run.last_day().itertuples(index=False):
        position = states[state_key(row.sku, row.location)].position
        assert tuple(getattr(position, b) for b in BUCKETS) == tuple(
            int(getattr(row, f"recorded_{b}")) for b in BUCKETS
        ), (row.sku, row.location)


def test_an_unknown_opening_event_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="opening_event must be one of"):
        run_world(tmp_path, opening_event="sale")


def test_transfers_pair_up_and_orders_tell_a_consistent_story(baseline: Run):
    events = baseline.unique_events()
    outs = {(e.sku, e.reference): e for e in events if e.event_type is EventType.TRANSFER_OUT}
    ins = [e for e in events if e.event_type is EventType.TRANSFER_IN]
    assert ins and all(e.location == "DC01" and e.reference.startswith("T") for e in outs.values())
    for e in ins:
        out = outs[(e.sku, e.reference)]
        assert out.quantity == e.quantity
        assert 1 <= (e.occurred_at.date() - out.occurred_at.date()).days <= 3
    by_order: dict[str, list[InventoryEvent]] = defaultdict(list)
    for e in events:
        if e.reference and e.reference.startswith("O-"):
            by_order[e.reference].append(e)
    for ref, group in by_order.items():
        kinds = Counter(e.event_type for e in group)
        reserved = sum(e.quantity for e in group if e.event_type is EventType.RESERVATION)
        assert kinds[EventType.RESERVATION] == 1, ref
        short = sum(e.quantity for e in group if e.event_type is EventType.PICK_SHORT)
        released = sum(e.quantity for e in group if e.event_type is EventType.RESERVATION_RELEASE)
        fulfilled = sum(e.quantity for e in group if e.event_type is EventType.FULFILLMENT)
        assert short == released
        assert fulfilled + short in (0, reserved)  # 0: still to be picked after the last day
        channel = ref.split("-")[1]
        source = next(e for e in group if e.event_type is EventType.RESERVATION).source.value
        assert source == ("marketplace" if channel.startswith("MK") else "ecommerce")


def test_counts_come_after_every_other_event_of_their_key_and_day(baseline: Run):
    last_other: dict[tuple, datetime] = {}
    counts = []
    for e in baseline.unique_events():
        key = (e.sku, e.location, e.occurred_at.date())
        if e.event_type is EventType.CYCLE_COUNT and e.reference != "OPENING":
            counts.append((key, e.occurred_at))
        else:
            last_other[key] = max(last_other.get(key, e.occurred_at), e.occurred_at)
    assert counts
    assert all(key not in last_other or last_other[key] < at for key, at in counts)


# -- 5. phantom share of the acceptance world -------------------------------------------------
@pytest.mark.slow
def test_phantom_share_of_the_acceptance_world(tmp_path: Path):
    first = simulate(tmp_path / "s1", seed=1, progress=False, **ACCEPTANCE)
    assert 0.01 <= first.phantom_share <= 0.10
    p = WorldParams()
    shares = {}
    for seed in (2, 3):
        shares[seed] = simulate(tmp_path / f"s{seed}", seed=seed, progress=False, **ACCEPTANCE)
    for seed in (1, 2):
        shares[f"{seed}x2"] = simulate(
            tmp_path / f"s{seed}x2",
            seed=seed,
            progress=False,
            **ACCEPTANCE,
            shrink_base=2 * p.shrink_base,
            shrink_per_demand=2 * p.shrink_per_demand,
        )
    assert all(0.005 <= s.phantom_share <= 0.15 for s in shares.values()), {
        k: s.phantom_share for k, s in shares.items()
    }
    assert shares["1x2"].phantom_share > first.phantom_share


# -- 6. mechanisms and scenarios show up ------------------------------------------------------
def test_every_mechanism_shows_in_the_truth(medium: Run):
    stores = medium.stores()
    for column in (
        "shrink_units",
        "misplaced_units",
        "found_units",
        "receiving_error_units",
        "lost_sales_units",
        "pick_short_units",
        "demand_units",
        "sales_units",
    ):
        assert stores[column].sum() > 0, column
    assert stores.promo.any() and stores.phantom.any() and stores.counted.any()
    assert (stores.receiving_error_units < 0).any()  # over-receipts exist too
    assert (medium.last_day().recorded_in_transit > 0).any()
    assert (stores.recorded_quarantined > 0).any() and (stores.recorded_damaged > 0).any()
    assert (stores.recorded_returned_pending > 0).any() and (stores.recorded_reserved > 0).any()
    types = Counter(e.event_type for e in medium.events)
    assert types[EventType.PICK_SHORT] > 0
    reasons = {e.reason for e in medium.events if e.event_type is EventType.ADJUSTMENT}
    assert reasons == {
        "damaged",
        "quarantine",
        "release_quarantine",
        "found",
        "theft",
        "inspection_pass",
        "inspection_fail",
    }
    assert {e.reason for e in medium.events if e.event_type is EventType.RETURN} == {
        None,
        "pending_inspection",
    }


def test_phantom_means_record_above_an_empty_shelf(medium: Run):
    t = medium.truth
    assert t.phantom.equals((t.recorded_on_hand >= 1) & (t.true_on_hand == 0))
    assert (t.true_on_hand >= 0).all()
    # a count corrects the record: counted keys end their day with record == shelf
    counted = medium.stores()[lambda d: d.counted]
    assert (counted.recorded_on_hand == counted.true_on_hand).all()


def test_sales_never_exceed_the_true_shelf(medium: Run):
    """A key whose shelf was empty all day (and got nothing back) sells nothing."""
    t = medium.stores().sort_values(["sku", "location", "day"])
    prev = t.groupby(["sku", "location"]).true_on_hand.shift(1)
    empty_all_day = (prev == 0) & (t.found_units == 0) & (t.true_on_hand == 0)
    received = t.groupby(["sku", "location"]).inbound.shift(1).fillna(0) > t.inbound
    still_empty = empty_all_day & ~received
    assert still_empty.any()
    assert (t.loc[still_empty, "sales_units"] == 0).all()
    lost = t.loc[still_empty]
    assert (lost.lost_sales_units == lost.demand_units - lost.sales_units).sum() > 0


def test_replenishment_follows_the_record_not_the_shelf(medium: Run):
    """Kang & Gershwin: orders are triggered by the recorded position, so phantoms freeze."""
    t = medium.stores()
    position = t.recorded_on_hand - t.recorded_reserved + t.inbound
    assert ((t.ordered_units > 0) == (position <= t.reorder_point)).all()
    empty_no_inbound = (t.true_on_hand == 0) & (t.inbound == 0)
    phantom_rate = (t.ordered_units[empty_no_inbound & t.phantom] > 0).mean()
    honest_rate = (t.ordered_units[empty_no_inbound & ~t.phantom] > 0).mean()
    assert honest_rate == 1.0
    assert phantom_rate < 0.5


def test_pos_outage_holds_pos_events_for_hours(runs: dict[str, Run]):
    def held_share(run: Run, source: str) -> float:
        events = [e for e in run.unique_events() if e.source.value == source]
        return np.mean([(e.published_at - e.occurred_at).total_seconds() > 7200 for e in events])

    assert held_share(runs["pos_outage"], "pos") > 3 * held_share(runs["baseline"], "pos")
    assert runs["pos_outage"].stores().pos_outage.any()
    assert not runs["baseline"].stores().pos_outage.any()


def test_marketplace_latency_delays_marketplace_events(runs: dict[str, Run]):
    def median_delay(run: Run) -> float:
        return float(
            np.median(
                [
                    (e.published_at - e.occurred_at).total_seconds()
                    for e in run.unique_events()
                    if e.source.value == "marketplace"
                ]
            )
        )

    assert median_delay(runs["baseline"]) < 60
    assert median_delay(runs["marketplace_latency"]) > 3600


def test_promo_burst_raises_demand_on_its_flash_days(tmp_path: Path, medium: Run):
    """Same seed, same world: the flash key-days of ``promo_burst`` see far more demand,
    above all from the marketplaces."""
    burst_run = run_world(tmp_path / "burst", seed=11, world=MEDIUM, scenario="promo_burst")
    base, burst = medium.stores(), burst_run.stores()
    flash = burst.promo.to_numpy() & ~base.promo.to_numpy()
    assert flash.any()
    assert burst.demand_units[flash].sum() > 1.6 * base.demand_units[flash].sum()

    def marketplace_orders(run: Run) -> int:
        days = run.stores()[flash][["day", "sku", "location"]].astype(str)
        keys = set(map(tuple, days.to_numpy()))
        return sum(
            1
            for e in run.unique_events()
            if e.event_type is EventType.RESERVATION
            and e.source.value == "marketplace"
            and (str(e.occurred_at.date()), e.sku, e.location) in keys
        )

    assert marketplace_orders(burst_run) > 3 * max(marketplace_orders(medium), 1)


def test_doubling_shrink_doubles_shrink_units(tmp_path: Path, baseline: Run):
    p = WorldParams()
    more = run_world(
        tmp_path / "shrink",
        shrink_base=2 * p.shrink_base,
        shrink_per_demand=2 * p.shrink_per_demand,
    )
    assert more.stores().shrink_units.sum() > 1.5 * baseline.stores().shrink_units.sum()


# -- API edges -------------------------------------------------------------------------------
def test_bad_arguments_are_refused_with_a_clear_error(tmp_path: Path):
    with pytest.raises(TypeError, match="shrink_rat"):
        simulate(tmp_path, seed=1, progress=False, shrink_rat=0.1, **SMALL)
    with pytest.raises(ValueError, match="unknown scenario"):
        simulate(tmp_path, seed=1, progress=False, scenario="meteor", **SMALL)
    with pytest.raises(ValueError, match="timezone-aware"):
        simulate(tmp_path, seed=1, progress=False, start=datetime(2026, 3, 2), **SMALL)  # noqa: DTZ001


def test_truth_last_keeps_only_the_final_day(tmp_path: Path, baseline: Run):
    run = run_world(tmp_path / "last", truth="last")
    assert run.truth.day.nunique() == 1
    pd.testing.assert_frame_equal(
        run.truth.reset_index(drop=True), baseline.last_day().reset_index(drop=True)
    )


def test_allocate_in_order_serves_first_come_first_served():
    group = np.array([0, 0, 0, 1, 1, 2])
    qty = np.array([2, 2, 2, 1, 5, 3])
    stock = np.array([3, 10, -1])
    assert allocate_in_order(group, qty, stock).tolist() == [2, 1, 0, 1, 5, 0]


# -- 6. the command line: any world parameter ---------------------------------------------------
def test_simulate_command_sets_world_parameters(tmp_path: Path):
    from typer.testing import CliRunner

    from serving.cli import app

    args = ["simulate", "--out", str(tmp_path), "--stores", "2", "--skus", "10", "--days", "3"]
    done = CliRunner().invoke(
        app,
        [*args, "--quiet", "--param", "opening_event=adjustment", "--param", "transit_days=2,4"],
    )
    assert done.exit_code == 0, done.output
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["params"]["opening_event"] == "adjustment"
    assert manifest["params"]["transit_days"] == [2, 4]
    for bad, says in (
        ("transit_days=1", "transit_days='1': expected 2 comma-separated numbers"),
        ("shrink_base=lots", "shrink_base='lots': expected float"),
        ("opening_event=sale", "opening_event must be one of"),
        ("shrinkage=0.1", "'shrinkage' is not a world parameter"),
    ):
        done = CliRunner().invoke(app, [*args, "--quiet", "--param", bad])
        assert done.exit_code == 2, bad
        assert says in " ".join(done.output.replace("│", " ").split()), done.output
