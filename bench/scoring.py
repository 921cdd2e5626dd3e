"""Scoring throughput: LightGBM ``Booster.predict`` batch vs one row at a time, plus explanations.

Same process, same packaged model, same feature rows (a simulated world's snapshots), so the
figures are ratios against the plain batch baseline. Prints a table; writes
``bench/results/scoring.json``.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd

from models.scorer import load_packaged
from training.dataset import build_world_dataset
from training.worlds import WorldConfig, simulate_world

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{cpu}, {os.cpu_count()} cores, {python}"


def rate(n: int, fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def main() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        world = simulate_world(WorldConfig("bench-score", 77, 10, 200, 21), Path(tmp))
        frame = build_world_dataset(world)
    model = load_packaged("phantom-inventory")
    rows = pd.concat([frame] * max(1, 200_000 // len(frame)), ignore_index=True)
    matrix = model.matrix(rows)
    batch = rate(len(rows), lambda: model.booster.predict(matrix))
    calibrated = rate(len(rows), lambda: model.predict(rows))
    single_n = 2000
    single = rate(
        single_n, lambda: [model.booster.predict(matrix[i : i + 1]) for i in range(single_n)]
    )
    explain_n = 20_000
    explained = rate(explain_n, lambda: model.explain(rows.head(explain_n)))
    result = {
        "machine": machine(),
        "rows": len(rows),
        "booster_batch_rows_per_s": round(batch),
        "calibrated_batch_rows_per_s": round(calibrated),
        "single_row_rows_per_s": round(single),
        "explain_rows_per_s": round(explained),
        "single_vs_batch": round(single / batch, 4),
        "explain_vs_batch": round(explained / batch, 4),
        "trees": model.booster.num_trees(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scoring.json").write_text(json.dumps(result, indent=2))
    for key, value in result.items():
        print(f"{key:>30}: {value}")
    return result


def summary(result: dict) -> list[tuple[str, str]]:
    """The figures of this benchmark for ``bench.run_all``'s final table."""
    return [
        (
            "scoring rows/s (phantom model)",
            f"{result['calibrated_batch_rows_per_s']:,} calibrated batch, "
            f"{result['booster_batch_rows_per_s']:,} raw booster, "
            f"{result['single_row_rows_per_s']:,} one row at a time, "
            f"{result['explain_rows_per_s']:,} with explanations",
        )
    ]


if __name__ == "__main__":
    main()
