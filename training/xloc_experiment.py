"""Experiment: do cross-location (sku-level) features carry more information than the per-key ones?

Candidate features are computed from the *same snapshot* only — same world, same ``as_of``, all
store locations of the sku (and, as a separate variant, all skus of the location) — so they are
point-in-time and use no truth. They are computed by :func:`xloc_columns` and passed to the
headroom machinery as ``extra`` columns.

Measured (same rows, same folds, same LightGBM parameters, num_threads=1):

- in-world out-of-fold (``training.headroom.out_of_fold``: 2 folds grouped by (world, sku), 300
  rounds) on the held-out worlds, for several fold assignments (``--repeats``: fold salt varies)
  to see the noise;
- optionally (``--cross``) train on the training worlds, score the held-out worlds (like the
  packaged models, but with a fixed number of rounds and no calibration — ranking metrics only).

``python -m training.xloc_experiment --worlds-root data/worlds [--cross] [--repeats 3]``

Labelled snapshot frames are cached as parquet under ``--cache`` (default ``data/xloc_cache``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.derived import with_derived
from models.spec import PHANTOM, STOCKOUT, ModelSpec
from training.dataset import build_world_dataset
from training.fit import LGB_PARAMS, labelled
from training.headroom import sku_folds, write_result
from training.metrics import evaluate
from training.worlds import HOLDOUT_WORLDS, TRAIN_WORLDS, WorldConfig, simulate_world

ROUNDS = 300
FOLDS = 2
PARAMS = {**LGB_PARAMS, "num_threads": 1}
_EPS = 1.0 / 112


# --------------------------------------------------------------------------- data


def load_cached(configs: Sequence[WorldConfig], root: Path, cache: Path) -> pd.DataFrame:
    cache.mkdir(parents=True, exist_ok=True)
    frames = []
    for config in configs:
        path = cache / f"{config.name}.parquet"
        if path.exists():
            frames.append(pd.read_parquet(path))
            continue
        t = time.time()
        frame = build_world_dataset(simulate_world(config, root))
        frame.to_parquet(path)
        print(f"  built {config.name}: {len(frame)} rows in {time.time() - t:.0f}s", flush=True)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- features


def _group_stats(
    frame: pd.DataFrame, by: list[str], prefix: str, own: pd.DataFrame
) -> dict[str, np.ndarray]:
    """Leave-one-out aggregates of the key's peers (rows sharing ``by``)."""
    g = own.groupby([frame[c] for c in by], observed=True, sort=False)
    out: dict[str, np.ndarray] = {}
    n = g["sales_1d"].transform("size").to_numpy(np.float64)
    others = np.maximum(n - 1, 0)
    out[f"{prefix}_n_others"] = others

    def loo_sum(col: str) -> np.ndarray:
        return g[col].transform("sum").to_numpy(np.float64) - own[col].to_numpy(np.float64)

    s1, s7, s28 = loo_sum("sales_1d"), loo_sum("sales_7d"), loo_sum("sales_28d")
    ewma = loo_sum("ewma_daily_sales")
    sold1 = loo_sum("sold_1d")
    out[f"{prefix}_other_sales_1d"] = s1
    out[f"{prefix}_other_sales_7d"] = s7
    out[f"{prefix}_other_share_sold_1d"] = np.where(
        others > 0, sold1 / np.maximum(others, 1), np.nan
    )
    # peers' recent demand vs their month: did demand drop everywhere?
    rate28_o = s28 / 28.0
    out[f"{prefix}_other_trend_1d_28d"] = np.minimum(s1 / np.maximum(rate28_o, _EPS), 1000.0)
    out[f"{prefix}_other_trend_7d_28d"] = np.minimum(s7 / 7.0 / np.maximum(rate28_o, _EPS), 1000.0)
    out[f"{prefix}_other_trend_7d_ewma"] = np.minimum(s7 / 7.0 / np.maximum(ewma, _EPS), 1000.0)
    out[f"{prefix}_other_pick_short_28d"] = loo_sum("pick_short_28d")
    out[f"{prefix}_other_pick_shorts_since_count"] = loo_sum("pick_shorts_since_count")
    # own silence vs peers' silence
    h = own["hours_since_last_sale"]
    med_h = g["hours_since_last_sale"].transform("median").to_numpy(np.float64)
    out[f"{prefix}_hsls_vs_median"] = np.log1p(h.to_numpy(np.float64)) - np.log1p(med_h)
    e = own["expected_sales_since_last_sale"]
    mu = g["expected_sales_since_last_sale"].transform("mean").to_numpy(np.float64)
    sd = g["expected_sales_since_last_sale"].transform("std").to_numpy(np.float64)
    out[f"{prefix}_essls_z"] = (e.to_numpy(np.float64) - mu) / np.where(sd > 0, sd, np.nan)
    # own expected sales over the last 1/7 days, rescaled by peers' trend, vs own observed sales
    own_rate = own["sales_28d"].to_numpy(np.float64) / 28.0
    exp1 = own_rate * out[f"{prefix}_other_trend_1d_28d"]
    exp7 = own_rate * 7.0 * out[f"{prefix}_other_trend_7d_28d"]
    out[f"{prefix}_adj_expected_1d"] = exp1
    out[f"{prefix}_adj_expected_7d"] = exp7
    out[f"{prefix}_adj_gap_7d"] = exp7 - own["sales_7d"].to_numpy(np.float64)
    out[f"{prefix}_adj_zero_prob_1d"] = np.where(own["sales_1d"].to_numpy() > 0, 1.0, np.exp(-exp1))
    out[f"{prefix}_adj_zero_prob_7d"] = np.where(own["sales_7d"].to_numpy() > 0, 1.0, np.exp(-exp7))
    return out


def xloc_columns(frame: pd.DataFrame, *, by_location: bool = False) -> pd.DataFrame:
    """Cross-location features of each snapshot row (same index as ``frame``).

    sku-level (peers = other store locations of the same sku in the same world and snapshot), and
    with ``by_location`` also store-level (peers = other skus of the same location and snapshot).
    """
    d = with_derived(frame)
    own = pd.DataFrame(
        {
            "sales_1d": d["sales_1d"].astype(float),
            "sales_7d": d["sales_7d"].astype(float),
            "sales_28d": d["sales_28d"].astype(float),
            "ewma_daily_sales": d["ewma_daily_sales"].astype(float),
            "sold_1d": (d["sales_1d"] > 0).astype(float),
            "pick_short_28d": d["pick_short_28d"].astype(float),
            "pick_shorts_since_count": d["pick_shorts_since_count"].astype(float),
            "hours_since_last_sale": d["hours_since_last_sale"].astype(float),
            "expected_sales_since_last_sale": d["expected_sales_since_last_sale"].astype(float),
        },
        index=frame.index,
    )
    out = _group_stats(frame, ["world", "as_of", "sku"], "sku", own)
    # this key's share of the sku's network demand, recent vs its usual share
    g = own.groupby([frame["world"], frame["as_of"], frame["sku"]], observed=True, sort=False)
    tot7 = g["sales_7d"].transform("sum").to_numpy(np.float64)
    tot28 = g["sales_28d"].transform("sum").to_numpy(np.float64)
    tot_ewma = g["ewma_daily_sales"].transform("sum").to_numpy(np.float64)
    share7 = own["sales_7d"].to_numpy() / np.where(tot7 > 0, tot7, np.nan)
    share28 = own["sales_28d"].to_numpy() / np.where(tot28 > 0, tot28, np.nan)
    share_ewma = own["ewma_daily_sales"].to_numpy() / np.where(tot_ewma > 0, tot_ewma, np.nan)
    out["sku_share_7d"] = share7
    out["sku_share_28d"] = share28
    out["sku_share_7d_minus_28d"] = share7 - share28
    out["sku_share_7d_minus_ewma"] = share7 - share_ewma
    out["sku_network_trend_7d_ewma"] = np.minimum(tot7 / 7.0 / np.maximum(tot_ewma, _EPS), 1000.0)
    if by_location:
        out.update(_group_stats(frame, ["world", "as_of", "location"], "loc", own))
    return pd.DataFrame(out, index=frame.index)


# --------------------------------------------------------------------------- models


def folds_of(frame: pd.DataFrame, salt: int) -> np.ndarray:
    """Sku-grouped folds; salt 0 is exactly the headroom check's."""
    return sku_folds(frame, FOLDS, salt)


def top_gain(names: Sequence[str], gain: np.ndarray, top: int = 25) -> dict[str, float]:
    """The ``top`` inputs by share of total gain."""
    shares = (gain / gain.sum()).round(4).tolist()
    return dict(sorted(zip(names, shares, strict=True), key=lambda kv: -kv[1])[:top])


def _fit(x: np.ndarray, y: np.ndarray, rounds: int, names: list[str]) -> lgb.Booster:
    pos = max(int(y.sum()), 1)
    params = {**PARAMS, "scale_pos_weight": (len(y) - pos) / pos}
    return lgb.train(params, lgb.Dataset(x, y, feature_name=names), num_boost_round=rounds)


def oof(
    x: np.ndarray, y: np.ndarray, fold: np.ndarray, rounds: int, names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    scores = np.full(len(y), np.nan)
    gain = np.zeros(x.shape[1])
    for k in range(FOLDS):
        train = fold != k
        booster = _fit(x[train], y[train], rounds, names)
        scores[~train] = booster.predict(x[~train])
        gain += booster.feature_importance("gain")
    return scores, gain / gain.sum()


def _m(rows: pd.DataFrame, y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    m = evaluate(rows, y, s)
    return {
        "ap": m.average_precision,
        "auc": m.roc_auc,
        "p2": m.precision_at_2pct,
        "p2_store": m.precision_at_2pct_per_store,
    }


def matrix(rows: pd.DataFrame, spec: ModelSpec, extra: list[str], xl: pd.DataFrame) -> np.ndarray:
    base = with_derived(rows)[list(spec.features)]
    return pd.concat([base, xl.loc[rows.index, extra]], axis=1).to_numpy(np.float64)


def run(args: argparse.Namespace) -> dict:
    t0 = time.time()
    holdout = load_cached(HOLDOUT_WORLDS, args.worlds_root, args.cache)
    print(f"holdout rows {len(holdout)} ({time.time() - t0:.0f}s)", flush=True)
    xl_h = xloc_columns(holdout, by_location=True)
    sku_cols = [c for c in xl_h.columns if c.startswith("sku_")]
    loc_cols = [c for c in xl_h.columns if c.startswith("loc_")]
    variants = {"base": [], "base+sku": sku_cols, "base+sku+loc": sku_cols + loc_cols}
    result: dict = {"in_world": {}, "importance": {}, "cross": {}}
    for spec in (PHANTOM, STOCKOUT):
        rows = labelled(holdout, spec)
        y = rows[spec.label].to_numpy().astype(int)
        ev = rows.reset_index(drop=True)
        for name, extra in variants.items():
            x = matrix(rows, spec, extra, xl_h)
            names = [*spec.features, *extra]
            for salt in range(args.repeats):
                t = time.time()
                s, gain = oof(x, y, folds_of(rows, salt), args.rounds, names)
                m = _m(ev, y, s)
                result["in_world"].setdefault(f"{spec.name} / {name}", []).append(m)
                if salt == 0:
                    result["importance"][f"{spec.name} / {name}"] = top_gain(names, gain)
                report(f"{spec.name:18s} {name:13s} fold-salt {salt}", m, t)
    if args.cross:
        train = load_cached(TRAIN_WORLDS, args.worlds_root, args.cache)
        print(f"train rows {len(train)} ({time.time() - t0:.0f}s)", flush=True)
        xl_t = xloc_columns(train, by_location=True)
        for spec in (PHANTOM, STOCKOUT):
            tr = labelled(train, spec)
            ho = labelled(holdout, spec)
            y_tr = tr[spec.label].to_numpy().astype(int)
            y_ho = ho[spec.label].to_numpy().astype(int)
            for name, extra in variants.items():
                t = time.time()
                names = [*spec.features, *extra]
                booster = _fit(matrix(tr, spec, extra, xl_t), y_tr, args.rounds, names)
                s = booster.predict(matrix(ho, spec, extra, xl_h))
                m = _m(ho.reset_index(drop=True), y_ho, s)
                result["cross"][f"{spec.name} / {name}"] = m
                gain = booster.feature_importance("gain")
                result["importance"][f"cross {spec.name} / {name}"] = top_gain(names, gain)
                report(f"CROSS {spec.name:18s} {name:13s}", m, t)
    return result


def report(label: str, m: dict[str, float], started: float) -> None:
    """One progress line: the metrics of a fit and its seconds since ``started``."""
    text = " ".join(f"{k}={v:.3f}" for k, v in m.items())
    print(f"{label}: {text} ({time.time() - started:.0f}s)", flush=True)


def experiment_parser(description: str, cache: Path, out: Path) -> argparse.ArgumentParser:
    """The options every in-world / cross experiment takes (this one's and its siblings')."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--worlds-root", type=Path, default=Path("data/worlds"))
    parser.add_argument("--cache", type=Path, default=cache)
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cross", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    parser = experiment_parser(
        __doc__.splitlines()[0], Path("data/xloc_cache"), Path("data/xloc_experiment.json")
    )
    args = parser.parse_args(argv)
    result = run(args)
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
