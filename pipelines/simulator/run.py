"""``simulate()``: run the world for N days and write events, truth and manifest to a folder."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipelines.simulator.batch import EVENT_TYPES
from pipelines.simulator.delivery import resend, time_delivery
from pipelines.simulator.emit import EventLogWriter, LineFormatter, TruthWriter, write_manifest
from pipelines.simulator.engine import Engine
from pipelines.simulator.malformed import MalformedSource
from pipelines.simulator.world import (
    STREAM_DAYS,
    STREAM_DELIVERY,
    WorldParams,
    build_world,
    day_rng,
    resolve_scenario,
)

EVENTS_FILE = "events.jsonl"
TRUTH_FILE = "truth.parquet"
MANIFEST_FILE = "manifest.json"
LATE_AFTER_S = 3_600  # an event is "late" if it arrives more than an hour after it occurred
TRUTH_MODES = ("daily", "last")


@dataclass
class SimulationSummary:
    """What a run wrote. ``lines_written = events_written + duplicates + malformed``.

    ``events_by_type`` counts distinct events (not re-sent copies); ``late`` counts distinct
    events that arrived more than an hour after they occurred; ``phantom_share`` is the share of
    store keys on the last day with ``recorded_on_hand >= 1`` and ``true_on_hand == 0``.
    ``events_per_s`` is lines written per second of wall time.
    """

    seed: int
    scenario: str
    stores: int
    skus: int
    days: int
    lines_written: int = 0
    events_written: int = 0
    events_by_type: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    malformed: int = 0
    late: int = 0
    phantom_keys: int = 0
    phantom_share: float = 0.0
    elapsed_s: float = 0.0
    events_per_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_tag(
    seed: int, scenario: str, stores: int, skus: int, days: int, start_s: int, params: WorldParams
) -> str:
    """``ev`` + 8 hex digits naming a run (event ids: ``{tag}-{n:010d}``); same inputs, same tag."""
    text = f"{seed}|{scenario}|{stores}|{skus}|{days}|{start_s}|{sorted(params.to_dict().items())}"
    return f"ev{zlib.crc32(text.encode()):08x}"


def simulate(
    out_dir: Path,
    *,
    seed: int,
    stores: int,
    skus: int,
    days: int,
    scenario: str | None = None,
    start: datetime = datetime(2026, 3, 2, tzinfo=UTC),
    progress: bool = True,
    truth: str = "daily",
    clock: Callable[[], float] = time.perf_counter,
    **overrides: Any,
) -> SimulationSummary:
    """Simulate ``stores`` stores + one DC over ``days`` days from ``start`` (UTC midnight).

    Writes ``out_dir/events.jsonl`` (arrival order), ``truth.parquet`` (one row per key per day,
    or only the last day with ``truth="last"``) and ``manifest.json``. Same arguments, same
    bytes. ``overrides`` replace :class:`WorldParams` fields (after the scenario's own);
    an unknown name raises ``TypeError``, an unknown scenario ``ValueError``. ``clock`` only
    measures elapsed time.
    """
    if truth not in TRUTH_MODES:
        raise ValueError(f"truth must be one of {TRUTH_MODES}, got {truth!r}")
    began = clock()
    chosen = resolve_scenario(scenario)
    params = chosen.apply(WorldParams()).replace(**overrides)
    world = build_world(params, seed=seed, stores=stores, skus=skus, days=days, start=start)
    tag = run_tag(seed, chosen.name, stores, skus, days, world.start_s, params)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    engine = Engine(world, day_rng(seed, STREAM_DAYS))
    delivery_rng = day_rng(seed, STREAM_DELIVERY)
    formatter = LineFormatter(world, tag)
    malformed = MalformedSource(formatter, params.malformed_share)
    log = EventLogWriter(out_dir / EVENTS_FILE, formatter)
    truth_writer = TruthWriter(out_dir / TRUTH_FILE, world)
    summary = SimulationSummary(seed, chosen.name, stores, skus, days)
    by_type = np.zeros(len(EVENT_TYPES), dtype=np.int64)
    next_no = 0
    last_truth: dict[str, np.ndarray] = {}

    columns = (TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, disable=not progress) as bar:
            task = bar.add_task("days", total=days)
            for day in range(days):
                events, last_truth = engine.step(day)
                order = np.lexsort((events.sku, events.location, events.occurred))
                events = events.take(order)
                events.event_no = np.arange(next_no, next_no + len(events), dtype=np.int64)
                next_no += len(events)
                time_delivery(events, world, delivery_rng)
                copies = resend(
                    events, params.duplicate_share, params.duplicate_delay_hours, delivery_rng
                )
                bad = malformed.lines(events, delivery_rng)
                log.add(events, bad)
                log.add(copies)
                log.flush(before=world.day_start(day + 1))

                by_type += np.bincount(events.event_type, minlength=len(EVENT_TYPES))
                summary.duplicates += len(copies)
                summary.malformed += len(bad)
                summary.late += int(((events.arrival - events.occurred) > LATE_AFTER_S).sum())
                if truth == "daily" or day == days - 1:
                    truth_writer.write_day(day, last_truth)
                bar.advance(task)
    finally:
        log.close()
        truth_writer.close()

    store_rows = last_truth["location"] < world.n_stores
    phantom = last_truth["phantom"][store_rows]
    summary.lines_written = log.lines_written
    summary.events_written = int(by_type.sum())
    summary.events_by_type = {name: int(n) for name, n in zip(EVENT_TYPES, by_type, strict=True)}
    summary.phantom_keys = int(phantom.sum())
    summary.phantom_share = round(float(phantom.mean()), 6)
    summary.elapsed_s = round(clock() - began, 3)
    summary.events_per_s = round(summary.lines_written / max(summary.elapsed_s, 1e-9), 1)

    write_manifest(
        out_dir / MANIFEST_FILE,
        {
            "generator": "shelfguard.pipelines.simulator",
            "seed": seed,
            "scenario": chosen.name,
            "scenario_description": chosen.description,
            "stores": stores,
            "skus": skus,
            "days": days,
            "start": datetime.fromtimestamp(world.start_s, tz=UTC).isoformat(),
            "truth": truth,
            "event_id_prefix": f"{tag}-",
            "files": {"events": EVENTS_FILE, "truth": TRUTH_FILE},
            "params": params.to_dict(),
            "overrides": overrides,
            "counts": summary.to_dict(),
        },
    )
    return summary
