"""The simulated worlds models are trained and judged on.

Training worlds vary the mechanisms' parameters (shrink, misplacement, counting, demand, delivery
scenarios) so the models learn mechanisms rather than one world's constants. Held-out worlds use
other seeds and *shifted* parameters — more shrink, another store count, a promotion storm, a POS
outage — and are never seen in training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


TRAIN_WORLDS: tuple[WorldConfig, ...] = (
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


def simulate_world(config: WorldConfig, root: Path) -> Path:
    """Simulate ``config`` under ``root/<name>`` unless it is already there; return the dir."""
    from pipelines.simulator import simulate

    out = root / config.name
    if not (out / "truth.parquet").exists():
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
