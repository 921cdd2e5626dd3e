"""`shelfguard score` as the key count grows: time per phase, explanations per decision class
against TreeSHAP row by row (the baseline, same process, same rows).

Input: synthetic contract-conforming JSONL with one event per key (a receipt, or a sale for every
third key; 40 locations; event times spread over 21 days), the shape of a freshly onboarded
assortment, where most keys have no history yet; ``--world STORES SKUS DAYS`` adds a simulated
world (seed 7), whose keys are nearly all distinct. Phases are those of ``shelfguard score``:
replay and feature table (``pipelines``), both models' scores, explanations for scores ≥ 0.2
(the default ``--explain-above``), CSV. ``explain_rowwise_s`` is the same explanations with
TreeSHAP on every row (``contributions(..., classes=None)``); the two are checked equal.
``peak_rss_mb`` is the process's peak so far (sizes run in ascending order).

``python -m bench.score_keys [--keys 20000 60000] [--world 40 2000 14]``;
writes ``bench/results/score_keys.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench.feature_flow import machine
from models.contributions import contributions
from models.explain import explain_rows, render
from models.scorer import RiskModel, load_packaged
from models.scoring import (
    DEFAULT_EXPLAIN_ABOVE,
    score_features,
    with_feature_columns,
    write_csv,
)
from pipelines.replay import replay_file

RESULTS = Path(__file__).resolve().parent / "results"
LOCATIONS = 40
SPAN_S = 21 * 86_400


def one_event_keys(path: Path, keys: int) -> Path:
    """``keys`` keys of one event each (deterministic)."""
    base = datetime(2026, 10, 1, tzinfo=UTC)
    with path.open("w") as fh:
        for i in range(keys):
            sale = i % 3 == 0
            at = base + timedelta(seconds=i * 7919 % SPAN_S)
            event = {
                "event_id": f"e{i}",
                "event_type": "sale" if sale else "receipt",
                "occurred_at": at.isoformat().replace("+00:00", "Z"),
                "sku": f"SKU-{i // LOCATIONS:06d}",
                "location": f"S{i % LOCATIONS:03d}",
                "quantity": 1 + i % 12,
                "source": "pos" if sale else "wms",
            }
            fh.write(json.dumps(event) + "\n")
    return path


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, round(time.perf_counter() - started, 2)


def classed_explanations(model: RiskModel, frame: Any, rows: np.ndarray) -> list[str]:
    """What ``shelfguard score`` does: TreeSHAP once per decision class."""
    return [render(r) for r in model.explain(frame.iloc[rows])]


def rowwise_explanations(model: RiskModel, frame: Any, rows: np.ndarray) -> list[str]:
    """The baseline: TreeSHAP on every explained row."""
    inputs = model.inputs(frame.iloc[rows])
    contrib = contributions(model.booster, model.matrix(inputs), None)
    reasons = explain_rows(contrib, inputs.reset_index(drop=True), model.spec.features)
    return [render(r) for r in reasons]


def measure(events: Path, phantom: RiskModel, stockout: RiskModel) -> dict[str, Any]:
    replay, replay_s = timed(lambda: replay_file(events))
    features, table_s = timed(replay.feature_table)
    scores, score_s = timed(lambda: score_features(features, phantom, stockout))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scores.csv"
        _with, csv_s = timed(lambda: write_csv(with_feature_columns(scores, features), out))
    frame = features.reset_index(drop=True)
    result: dict[str, Any] = {
        "keys": len(features),
        "events": replay.events,
        "replay_s": replay_s,
        "feature_table_s": table_s,
        "score_features_s": score_s,
        "features_and_csv_s": csv_s,
    }
    for name, model in (("phantom", phantom), ("stockout", stockout)):
        predicted = model.predict(frame)
        rows = np.flatnonzero(predicted >= DEFAULT_EXPLAIN_ABOVE)
        matrix = model.matrix(frame.iloc[rows])
        classes = model.decision_classes()
        distinct = len(np.unique(classes.codes(matrix), axis=0)) if classes and len(rows) else 0
        classed, classed_s = timed(partial(classed_explanations, model, frame, rows))
        rowwise, rowwise_s = timed(partial(rowwise_explanations, model, frame, rows))
        if classed != rowwise:
            raise AssertionError(f"{name}: explanations per class differ from row by row")
        result[name] = {
            "explained_rows": len(rows),
            "distinct_classes": distinct,
            "explain_s": classed_s,
            "explain_rowwise_s": rowwise_s,
            "speedup": round(rowwise_s / classed_s, 1) if classed_s else None,
        }
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[20_000, 60_000])
    parser.add_argument("--world", type=int, nargs=3, metavar=("STORES", "SKUS", "DAYS"))
    args = parser.parse_args(argv if argv is not None else [])
    phantom, stockout = load_packaged("phantom-inventory"), load_packaged("stockout-risk")
    result: dict[str, Any] = {"machine": machine(), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for keys in sorted(args.keys):
            events = one_event_keys(Path(tmp) / f"keys{keys}.jsonl", keys)
            result["runs"].append(
                {"input": "one event per key", **measure(events, phantom, stockout)}
            )
        if args.world:
            from pipelines.simulator import simulate

            stores, skus, days = args.world
            out = Path(tmp) / "world"
            simulate(out, seed=7, stores=stores, skus=skus, days=days, progress=False, truth="last")
            label = f"world {stores}x{skus}x{days}d"
            result["runs"].append(
                {"input": label, **measure(out / "events.jsonl", phantom, stockout)}
            )
    print("shelfguard score by key count (s; explain = per decision class vs row by row)")
    print(
        f"{'input':<22} {'keys':>7} {'replay':>7} {'table':>6} {'score':>6} {'csv':>5} "
        f"{'stockout rows/classes':>22} {'explain':>16} {'rss MB':>7}"
    )
    for r in result["runs"]:
        s = r["stockout"]
        print(
            f"{r['input']:<22} {r['keys']:>7,} {r['replay_s']:>7} {r['feature_table_s']:>6} "
            f"{r['score_features_s']:>6} {r['features_and_csv_s']:>5} "
            f"{s['explained_rows']:>11,}/{s['distinct_classes']:<10,} "
            f"{s['explain_s']:>6} vs {s['explain_rowwise_s']:>6} {r['peak_rss_mb']:>7}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "score_keys.json").write_text(json.dumps(result, indent=2))
    return result


def summary(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for r in result["runs"]:
        s = r["stockout"]
        rows.append(
            (
                f"score explain, {r['input']} ({r['keys']:,} keys)",
                f"stockout {s['explained_rows']:,} rows in {s['distinct_classes']:,} classes: "
                f"{s['explain_s']} s vs {s['explain_rowwise_s']} s row by row "
                f"({s['speedup']}×)",
            )
        )
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
