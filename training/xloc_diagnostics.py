"""Diagnostics behind ``training.xloc_experiment`` (held-out worlds, in-world out-of-fold).

1. ``compact``: a small set of the cross-location features (fewer degrees of freedom than the
   full set, in case the full set only adds noise);
2. ``residual``: among the rows the base model already ranks high (top 5 % per world-day, out of
   fold), how well does each cross-location feature alone separate phantoms (ROC AUC, 0.5 = no
   information left) — compared with the per-key features;
3. ``oracle demand``: an upper bound for what any *demand* signal (which is what cross-location
   sales estimate: chain-wide promotions, weekday shape) could add: the simulator's true demand
   rate of the key (today; integrated over the key's silence; for stockout, the next 3 days) as
   extra inputs. Not point-in-time and not usable by a product — a bound only.

``python -m training.xloc_diagnostics --worlds-root data/worlds``
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from models.derived import with_derived
from models.spec import PHANTOM, STOCKOUT
from training.fit import labelled
from training.headroom import write_result
from training.worlds import HOLDOUT_WORLDS
from training.xloc_experiment import (
    ROUNDS,
    _m,
    folds_of,
    load_cached,
    matrix,
    oof,
    xloc_columns,
)

COMPACT = [
    "sku_other_share_sold_1d",
    "sku_other_trend_7d_28d",
    "sku_hsls_vs_median",
    "sku_adj_zero_prob_1d",
    "sku_adj_zero_prob_7d",
]


def oracle_columns(frame: pd.DataFrame, root: Path) -> pd.DataFrame:
    """True demand rates from the simulator (a bound, not a feature)."""
    parts = []
    for world in frame["world"].unique():
        t = pd.read_parquet(
            root / world / "truth.parquet", columns=["day", "sku", "location", "daily_demand_rate"]
        )
        t["day"] = pd.to_datetime(t["day"]).dt.date
        t["sku"] = t["sku"].astype(str)
        t["location"] = t["location"].astype(str)
        t = t.sort_values(["sku", "location", "day"]).reset_index(drop=True)
        g = t.groupby(["sku", "location"], sort=False)["daily_demand_rate"]
        t["cum"] = g.cumsum()
        t["idx"] = g.cumcount()
        t["ahead3"] = sum(g.shift(-k) for k in (1, 2, 3))
        t["world"] = world
        parts.append(t)
    truth = pd.concat(parts, ignore_index=True)
    rows = pd.DataFrame(
        {
            "world": frame["world"].astype(str).to_numpy(),
            "sku": frame["sku"].astype(str).to_numpy(),
            "location": frame["location"].astype(str).to_numpy(),
            "day": (frame["as_of"] - pd.Timedelta(seconds=1)).dt.date.to_numpy(),
            "h": frame["hours_since_last_sale"].to_numpy(np.float64),
        }
    )
    m = rows.merge(
        truth[["world", "sku", "location", "day", "daily_demand_rate", "cum", "idx", "ahead3"]],
        on=["world", "sku", "location", "day"],
        how="left",
    )
    # true demand integrated over the silence: whole days back from the snapshot day
    silent_days = np.nan_to_num(m["h"].to_numpy() / 24.0, nan=1e6)
    back = np.minimum(np.floor(silent_days), m["idx"].to_numpy()).astype(int)
    cum = truth.set_index(["world", "sku", "location", "idx"])["cum"]
    key_back = pd.MultiIndex.from_arrays(
        [m["world"], m["sku"], m["location"], m["idx"].to_numpy() - back]
    )
    cum_then = cum.reindex(key_back).to_numpy()
    frac = silent_days - np.floor(silent_days)
    exp_silence = m["cum"].to_numpy() - cum_then + frac * m["daily_demand_rate"].to_numpy()
    out = pd.DataFrame(
        {
            "oracle_rate_today": m["daily_demand_rate"].to_numpy(),
            "oracle_expected_silence": exp_silence,
            "oracle_zero_prob_silence": np.exp(-exp_silence),
            "oracle_demand_next3": m["ahead3"].to_numpy(),
        },
        index=frame.index,
    )
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds-root", type=Path, default=Path("data/worlds"))
    parser.add_argument("--cache", type=Path, default=Path("data/xloc_cache"))
    parser.add_argument("--out", type=Path, default=Path("data/xloc_diagnostics.json"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    holdout = load_cached(HOLDOUT_WORLDS, args.worlds_root, args.cache)
    xl = xloc_columns(holdout, by_location=True)
    xl = pd.concat([xl, oracle_columns(holdout, args.worlds_root)], axis=1)
    result: dict = {"in_world": {}, "residual_auc": {}}
    for spec in (PHANTOM, STOCKOUT):
        rows = labelled(holdout, spec)
        y = rows[spec.label].to_numpy().astype(int)
        ev = rows.reset_index(drop=True)
        oracle = ["oracle_rate_today", "oracle_expected_silence", "oracle_zero_prob_silence"]
        if spec is STOCKOUT:
            oracle = [*oracle, "oracle_demand_next3"]
        variants = {"compact": COMPACT, "oracle demand": oracle}
        base_scores = None
        for name, extra in {"base": [], **variants}.items():
            names = [*spec.features, *extra]
            x = matrix(rows, spec, extra, xl)
            for salt in range(args.repeats if name != "base" else 1):
                s, gain = oof(x, y, folds_of(rows, salt), ROUNDS, names)
                m = _m(ev, y, s)
                if name == "base":
                    base_scores = s
                m["top_gain"] = {
                    k: round(float(v), 4) for k, v in zip(names, gain, strict=True) if k in extra
                }
                result["in_world"].setdefault(f"{spec.name} / {name}", []).append(m)
                print(
                    f"{spec.name:18s} {name:14s} salt {salt}: "
                    + " ".join(f"{k}={v:.3f}" for k, v in m.items() if k != "top_gain"),
                    flush=True,
                )
        # residual information among the rows the base model ranks high
        assert base_scores is not None
        by = [rows["world"].to_numpy(), rows["as_of"].to_numpy()]
        rank = pd.Series(base_scores, index=rows.index).groupby(by).rank(pct=True, ascending=False)
        top = (rank <= 0.05).to_numpy()
        yt = y[top]
        d = with_derived(rows)
        table = {}
        cols = [c for c in xl.columns if c.startswith("sku_")] + [
            "hours_since_last_sale",
            "expected_sales_since_last_sale",
            "silent_zero_sales_probability",
            "on_hand",
            "oracle_expected_silence",
        ]
        for c in cols:
            v = (xl.loc[rows.index, c] if c in xl.columns else d[c]).to_numpy(np.float64)[top]
            ok = ~np.isnan(v)
            a = roc_auc_score(yt[ok], v[ok]) if 0 < yt[ok].sum() < ok.sum() else np.nan
            table[c] = round(float(max(a, 1 - a)), 3)
        result["residual_auc"][spec.name] = {
            "rows": int(top.sum()),
            "positive_share": round(float(yt.mean()), 3),
            "auc_by_feature": dict(sorted(table.items(), key=lambda kv: -kv[1])),
        }
        print(json.dumps(result["residual_auc"][spec.name], indent=1), flush=True)
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
