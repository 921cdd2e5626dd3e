"""The omnichannel retail simulator: events with realistic delivery defects, plus ground truth.

``simulate(out_dir, seed=..., stores=..., skus=..., days=...)`` writes ``events.jsonl`` (arrival
order), ``truth.parquet`` and ``manifest.json``; see ``README.md`` in this folder for the
mechanisms and the scenarios.
"""

from pipelines.simulator.run import SimulationSummary, simulate
from pipelines.simulator.world import BASELINE, SCENARIOS, Scenario, WorldParams

__all__ = ["BASELINE", "SCENARIOS", "Scenario", "SimulationSummary", "WorldParams", "simulate"]
