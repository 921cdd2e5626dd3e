"""Scoring throughput: plain LightGBM ``Booster.predict`` vs the compiled forest (lleaves), batch
and one row at a time, plus explanations.

Same process, same packaged models, same feature rows (a simulated world's snapshots, repeated
to ~180k rows), so every figure is comparable with the plain batch baseline of its model. Both
backends use every core (LightGBM's default ``num_threads=0``; lleaves ``n_jobs`` = cores).
Each batch figure is the median of 3 runs, alternating plain and compiled so that load on a
shared machine hits both alike; the ``_1_thread`` figures repeat the batch with one thread each
(the stream scorer's setting, and less sensitive to other work on the machine); one row at a
time is always one thread. Compile time is cold (an empty cache directory); load time is the
second load from that cache. Prints a table; writes ``bench/results/scoring.json``. Without the
``fast`` extra the compiled figures are missing and ``compiled_unavailable`` says why.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.compiled import (
    CompiledForest,
    CompiledInferenceUnavailable,
    InferenceSettings,
    compile_forest,
)
from models.scorer import PACKAGED_DIR, load_packaged
from training.dataset import build_world_dataset
from training.worlds import WorldConfig, simulate_world

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("phantom-inventory", "stockout-risk")
REPEATS = 3


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{cpu}, {os.cpu_count()} cores, {python}"


def load_average() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split(" ", 1)[0])
    except OSError:
        return None


def rate(n: int, fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def alternating_rates(
    n: int, plain: Callable[[], object], compiled: Callable[[], object]
) -> tuple[float, float]:
    """Median rows/s of each over ``REPEATS`` alternating runs."""
    plain_rates, compiled_rates = [], []
    for _ in range(REPEATS):
        plain_rates.append(rate(n, plain))
        compiled_rates.append(rate(n, compiled))
    return statistics.median(plain_rates), statistics.median(compiled_rates)


def compiled_forest(name: str) -> tuple[CompiledForest | None, dict[str, Any]]:
    """The packaged model compiled into an empty cache, then loaded from it: the forest and its
    compile (cold) and load (cached) seconds, or None and the reason."""
    try:
        with tempfile.TemporaryDirectory() as cache:
            cold = compile_forest(PACKAGED_DIR / name / "model.txt", Path(cache))
            forest = compile_forest(PACKAGED_DIR / name / "model.txt", Path(cache))
    except CompiledInferenceUnavailable as exc:
        return None, {"compiled_unavailable": str(exc)}
    assert not cold.cache_hit and forest.cache_hit
    return forest, {
        "compile_cold_s": round(cold.seconds, 1),
        "load_cached_s": round(forest.seconds, 3),
    }


def bench_model(name: str, rows: pd.DataFrame, explain: bool) -> dict[str, Any]:
    model = load_packaged(name, InferenceSettings(compiled_inference=False))
    matrix = model.matrix(rows)
    result: dict[str, Any] = {"trees": model.booster.num_trees(), "rows": len(rows)}
    forest, compile_figures = compiled_forest(name)
    result.update(compile_figures)
    single_n = 2000

    def booster_batch() -> object:
        return model.booster.predict(matrix)

    if forest is None:
        result["booster_batch_rows_per_s"] = round(rate(len(rows), booster_batch))
        result["calibrated_batch_rows_per_s"] = round(rate(len(rows), lambda: model.predict(rows)))
    else:
        fast = replace(model, compiled=forest)
        plain, compiled = alternating_rates(
            len(rows), booster_batch, lambda: forest.predict(matrix)
        )
        plain_1, compiled_1 = alternating_rates(
            len(rows),
            lambda: model.booster.predict(matrix, num_threads=1),
            lambda: forest.predict(matrix, 1),
        )
        plain_cal, compiled_cal = alternating_rates(
            len(rows), lambda: model.predict(rows), lambda: fast.predict(rows)
        )
        compiled_single = rate(
            single_n, lambda: [forest.predict(matrix[i : i + 1], 1) for i in range(single_n)]
        )
        diff = np.max(np.abs(forest.predict(matrix) - model.booster.predict(matrix)))
        result.update(
            {
                "booster_batch_rows_per_s": round(plain),
                "compiled_batch_rows_per_s": round(compiled),
                "compiled_vs_booster": round(compiled / plain, 2),
                "booster_batch_1_thread_rows_per_s": round(plain_1),
                "compiled_batch_1_thread_rows_per_s": round(compiled_1),
                "compiled_vs_booster_1_thread": round(compiled_1 / plain_1, 2),
                "calibrated_batch_rows_per_s": round(plain_cal),
                "compiled_calibrated_batch_rows_per_s": round(compiled_cal),
                "compiled_single_row_rows_per_s": round(compiled_single),
                "max_abs_diff": float(diff),
            }
        )
    result["single_row_rows_per_s"] = round(  # one thread, like the compiled figure
        rate(
            single_n,
            lambda: [
                model.booster.predict(matrix[i : i + 1], num_threads=1) for i in range(single_n)
            ],
        )
    )
    if explain:
        explain_n = 20_000
        result["explain_rows_per_s"] = round(
            rate(explain_n, lambda: model.explain(rows.head(explain_n)))
        )
    return result


def main() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        world = simulate_world(WorldConfig("bench-score", 77, 10, 200, 21), Path(tmp))
        frame = build_world_dataset(world)
    rows = pd.concat([frame] * max(1, 200_000 // len(frame)), ignore_index=True)
    result: dict[str, Any] = {
        "machine": machine(),
        "load_average_at_start": load_average(),
        "threads": os.cpu_count(),
    }
    for name in MODELS:
        result[name] = bench_model(name, rows, explain=name == "phantom-inventory")
    result["load_average_at_end"] = load_average()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scoring.json").write_text(json.dumps(result, indent=2))
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for figure, number in value.items():
                print(f"{figure:>40}: {number}")
        else:
            print(f"{key:>40}: {value}")
    return result


def summary(result: dict) -> list[tuple[str, str]]:
    """The figures of this benchmark for ``bench.run_all``'s final table."""
    out = []
    for name in MODELS:
        r = result[name]
        compiled = (
            f"{r['compiled_batch_rows_per_s']:,} compiled = {r['compiled_vs_booster']}× "
            f"(compile {r['compile_cold_s']} s cold, load {r['load_cached_s']} s cached)"
            if "compiled_batch_rows_per_s" in r
            else f"compiled n/a ({r['compiled_unavailable']})"
        )
        out.append(
            (
                f"scoring rows/s ({name}, {r['trees']} trees)",
                f"{r['booster_batch_rows_per_s']:,} raw booster batch vs {compiled}; "
                f"{r['single_row_rows_per_s']:,} one row at a time"
                + (
                    f"; {r['explain_rows_per_s']:,} with explanations"
                    if "explain_rows_per_s" in r
                    else ""
                ),
            )
        )
    return out


if __name__ == "__main__":
    main()
