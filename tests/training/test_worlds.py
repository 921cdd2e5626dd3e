"""The training worlds' definitions and their on-disk cache."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pipelines.events import EventType, InventoryEvent, parse_event
from training.worlds import SAMPLED_OPENINGS, WorldConfig, sampled_worlds, simulate_world


def test_sampled_worlds_cover_every_go_live_convention_and_extend_stably():
    worlds = sampled_worlds(12)
    openings = Counter(w.overrides.get("opening_event", "cycle_count") for w in worlds)
    assert set(openings) == set(SAMPLED_OPENINGS)
    assert openings["cycle_count"] == 6 and openings["receipt"] == openings["adjustment"] == 3
    # a longer draw starts with the same worlds, so cached worlds stay valid
    assert sampled_worlds(20)[:12] == worlds
    assert sampled_worlds(12, seed=1) != worlds


def test_a_cached_world_is_reused_only_if_it_is_the_same_world(tmp_path: Path):
    first = WorldConfig("w", 5, 2, 12, 3)
    out = simulate_world(first, tmp_path)
    events = (out / "events.jsonl").read_bytes()
    stamp = (out / "truth.parquet").stat().st_mtime_ns
    assert simulate_world(first, tmp_path) == out
    assert (out / "truth.parquet").stat().st_mtime_ns == stamp  # reused, not re-simulated
    # same name, another definition: the folder is re-simulated, not silently reused
    changed = WorldConfig("w", 5, 2, 12, 3, None, {"opening_event": "receipt"})
    simulate_world(changed, tmp_path)
    assert (out / "events.jsonl").read_bytes() != events
    opening = [
        event
        for event in map(parse_event, (out / "events.jsonl").read_bytes().splitlines())
        if isinstance(event, InventoryEvent) and event.reference == "OPENING"
    ]
    assert opening and {e.event_type for e in opening} == {EventType.RECEIPT}
    for other in (
        WorldConfig("w", 6, 2, 12, 3),
        WorldConfig("w", 5, 3, 12, 3),
        WorldConfig("w", 5, 2, 12, 4),
        WorldConfig("w", 5, 2, 12, 3, "pos_outage"),
    ):
        before = (out / "manifest.json").read_text()
        simulate_world(other, tmp_path)
        assert (out / "manifest.json").read_text() != before, other
