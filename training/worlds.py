"""The simulated worlds models are trained and judged on.

Training worlds vary the mechanisms' parameters (shrink, misplacement, counting, demand, delivery
scenarios) so the models learn mechanisms rather than one world's constants: five hand-made worlds
that each stress one mechanism, plus thirty worlds drawn (seeded) from broad ranges of every rate
and of the stream's length (:func:`sampled_worlds`). Held-out worlds use other seeds and
*shifted* parameters — more shrink, another store count, a promotion storm, a POS outage — and
are never seen in training.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.dataset import build_world_dataset


@dataclass(frozen=True)
class WorldConfig:
    name: str
    seed: int
    stores: int
    skus: int
    days: int
    scenario: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


HANDMADE_WORLDS: tuple[WorldConfig, ...] = (
    WorldConfig("train-base", 101, 8, 150, 56),
    WorldConfig(
        "train-shrink", 102, 8, 150, 56, overrides={"shrink_base": 0.02, "count_share": 0.02}
    ),
    WorldConfig(
        "train-promo", 103, 6, 150, 56, "promo_burst", {"misplace_rate": 0.006, "found_rate": 0.1}
    ),
    WorldConfig(
        "train-market",
        104,
        6,
        150,
        56,
        "marketplace_latency",
        {"demand_median": 0.8, "shrink_base": 0.008, "receiving_error_rate": 0.08},
    ),
    WorldConfig("train-dupes", 105, 6, 150, 56, "duplicate_storm", {"count_share": 0.01}),
)

#: Ranges the sampled training worlds draw from: broad, plausible retail ranges around the
#: simulator's defaults (``(lo, hi)``; ``log`` = log-uniform). They were chosen from the mechanisms,
#: not from the held-out worlds, which they happen to contain only because both are plausible.
SAMPLED_RANGES: dict[str, tuple[float, float, str]] = {
    "demand_median": (0.25, 1.6, "log"),
    "shrink_base": (0.004, 0.035, "log"),
    "shrink_per_demand": (0.005, 0.045, "lin"),
    "misplace_rate": (0.001, 0.012, "log"),
    "found_rate": (0.02, 0.15, "log"),
    "receiving_error_rate": (0.01, 0.12, "log"),
    "opening_error_share": (0.02, 0.12, "lin"),
    "count_share": (0.006, 0.035, "log"),
    "recorded_theft_rate": (0.003, 0.03, "log"),
    "promo_start_rate": (0.003, 0.03, "log"),
    "online_share_mean": (0.06, 0.3, "lin"),
    "cover_days": (2.5, 6.0, "lin"),
}
#: scenarios cycled through by the sampled worlds (None = baseline)
SAMPLED_SCENARIOS: tuple[str | None, ...] = (
    None,
    "pos_outage",
    "promo_burst",
    "marketplace_latency",
    "duplicate_storm",
)
#: how the sampled worlds' go-live balances arrive, cycled (``WorldParams.opening_event``): an
#: ERP may load them as counts, receipts or adjustments, and the features differ (a receipt is
#: the "last delivery" until the first real one), so the models must have seen each
SAMPLED_OPENINGS: tuple[str, ...] = ("cycle_count", "cycle_count", "receipt", "adjustment")
SAMPLED_SEED = 20_260_301
#: length range (days, inclusive) of the sampled worlds: a stream's age is a world constant too
SAMPLED_DAYS = (35, 112)


def sampled_worlds(n: int, seed: int = SAMPLED_SEED) -> tuple[WorldConfig, ...]:
    """``n`` training worlds with parameters drawn from :data:`SAMPLED_RANGES` (seeded).

    Each world also draws its store count (4–12), catalogue size (120–200 skus), length in days
    (:data:`SAMPLED_DAYS`: features such as the time since the last count age with the stream, so
    one length would be one more world constant to overfit) and a world seed
    (offset from ``seed``, so never one of the held-out seeds below 1000); scenarios cycle through
    :data:`SAMPLED_SCENARIOS` and go-live conventions through :data:`SAMPLED_OPENINGS`. Same
    ``(n, seed)``, same worlds; the first ``n`` of a longer draw are the same worlds.
    """
    rng = np.random.default_rng(seed)
    worlds = []
    for i in range(n):
        overrides: dict[str, Any] = {}
        for name, (lo, hi, scale) in SAMPLED_RANGES.items():
            u = rng.random()
            value = lo * (hi / lo) ** u if scale == "log" else lo + (hi - lo) * u
            overrides[name] = round(float(value), 4)
        stores = int(rng.integers(4, 13))
        skus = int(rng.integers(120, 201))
        days = int(rng.integers(SAMPLED_DAYS[0], SAMPLED_DAYS[1] + 1))
        scenario = SAMPLED_SCENARIOS[i % len(SAMPLED_SCENARIOS)]
        opening = SAMPLED_OPENINGS[i % len(SAMPLED_OPENINGS)]
        if opening != "cycle_count":  # the default stays implicit
            overrides["opening_event"] = opening
        worlds.append(
            WorldConfig(f"train-sampled-{i:02d}", 2000 + i, stores, skus, days, scenario, overrides)
        )
    return tuple(worlds)


#: hand-made worlds (one mechanism stressed each) plus seeded draws over broad ranges
TRAIN_WORLDS: tuple[WorldConfig, ...] = HANDMADE_WORLDS + sampled_worlds(30)
HOLDOUT_WORLDS: tuple[WorldConfig, ...] = (
    WorldConfig(
        "holdout-outage-shrink",
        907,
        12,
        150,
        56,
        "pos_outage",
        {"shrink_base": 0.02, "shrink_per_demand": 0.03},
    ),
    WorldConfig(
        "holdout-promo-storm",
        908,
        5,
        200,
        56,
        "promo_burst",
        {"promo_start_rate": 0.02, "misplace_rate": 0.006, "demand_median": 0.6},
    ),
)


def simulated_as(out: Path, config: WorldConfig) -> bool:
    """Whether ``out`` holds a complete run of exactly ``config`` (its manifest names the same
    seed, size, length, scenario and overrides): a cache by name alone would silently keep a
    world whose definition has changed since."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    want = {
        "seed": config.seed,
        "stores": config.stores,
        "skus": config.skus,
        "days": config.days,
        "scenario": config.scenario or "baseline",
        "overrides": json.loads(json.dumps(config.overrides)),
    }
    return (out / "truth.parquet").exists() and all(manifest.get(k) == v for k, v in want.items())


def simulate_world(config: WorldConfig, root: Path) -> Path:
    """Simulate ``config`` under ``root/<name>`` unless that folder already holds it (see
    :func:`simulated_as`; a different run there is replaced); return the dir."""
    from pipelines.simulator import simulate

    out = root / config.name
    if not simulated_as(out, config):
        simulate(
            out,
            seed=config.seed,
            stores=config.stores,
            skus=config.skus,
            days=config.days,
            scenario=config.scenario,
            progress=False,
            **config.overrides,
        )
    return out


def load_worlds(
    configs: tuple[WorldConfig, ...] | list[WorldConfig],
    root: Path,
    on_world: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    frames = []
    for config in configs:
        if on_world:
            on_world(config.name)
        frames.append(build_world_dataset(simulate_world(config, root)))
    return pd.concat(frames, ignore_index=True)
