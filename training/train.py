"""``shelfguard train``: build training sets, fit, evaluate beside baselines, log, register, gate.

Evaluation data: the last 20 % of days of every training world ("in-world test") and whole
held-out worlds with other seeds and shifted parameters ("holdout"). The gate compares the new
version with the current champion on the holdout data of *this* run.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from models.baselines import days_of_cover_stockout, zero_sales_run_score
from models.scorer import PACKAGED_DIR, RiskModel
from models.spec import PHANTOM, STOCKOUT, ModelSpec
from training import plots, registry
from training.dataset import build_world_dataset
from training.fit import LGB_PARAMS, FittedModels, fit_models, labelled, logistic_scores, time_split
from training.metrics import evaluate
from training.worlds import HOLDOUT_WORLDS, TRAIN_WORLDS, WorldConfig, load_worlds

Progress = Callable[[str], None]
REPO = Path(__file__).resolve().parents[1]


def baseline_scores(spec: ModelSpec, frame: pd.DataFrame) -> np.ndarray:
    if spec is PHANTOM:
        return zero_sales_run_score(frame)
    return days_of_cover_stockout(frame, spec.horizon_hours)


def value_at_risk(frame: pd.DataFrame) -> np.ndarray:
    """Units × price of each row (recorded on-hand valued at the last seen price)."""
    price = frame["unit_price"].fillna(frame["unit_price"].median()).fillna(1.0)
    return (frame["on_hand"].clip(lower=0) * price).to_numpy(dtype=float)


@dataclass
class ModelReport:
    name: str
    version: str
    metrics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    gate: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "metrics": self.metrics,
            "gate": self.gate,
        }


def score_all(spec: ModelSpec, fitted: FittedModels, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {
        "lightgbm": fitted.model.predict(frame),
        "logistic": logistic_scores(fitted, frame, spec),
        "baseline": baseline_scores(spec, frame),
    }


def evaluate_all(
    spec: ModelSpec, fitted: FittedModels, frames: dict[str, pd.DataFrame]
) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for data_name, frame in frames.items():
        y = frame[spec.label].to_numpy().astype(int)
        value = value_at_risk(frame)
        out[data_name] = {
            scorer: evaluate(frame, y, score, value=value).to_dict()
            for scorer, score in score_all(spec, fitted, frame).items()
        }
    return out


def _log_plots(spec: ModelSpec, fitted: FittedModels, frame: pd.DataFrame, tmp: Path) -> None:
    y = frame[spec.label].to_numpy().astype(int)
    scores = score_all(spec, fitted, frame)
    paths = [
        plots.pr_curves(y, scores, f"{spec.name}: holdout PR", tmp / f"{spec.name}-pr.png"),
        plots.calibration_plot(
            y, scores, f"{spec.name}: calibration (holdout)", tmp / f"{spec.name}-calibration.png"
        ),
        plots.importance_plot(
            list(spec.features),
            np.asarray(fitted.model.booster.feature_importance("gain"), dtype=float),
            f"{spec.name}: feature importance",
            tmp / f"{spec.name}-importance.png",
        ),
    ]
    for path in paths:
        mlflow.log_artifact(str(path), artifact_path="plots")


def _flat_metrics(spec: ModelSpec, metrics: dict) -> dict[str, float]:
    flat = {}
    for data_name, by_scorer in metrics.items():
        for scorer, values in by_scorer.items():
            for metric, value in values.items():
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    flat[f"{spec.name}.{data_name}.{scorer}.{metric}"] = float(value)
    return flat


def load_training_worlds(
    data: Sequence[Path] | None,
    root: Path,
    progress: Progress,
    train_worlds: Sequence[WorldConfig] = TRAIN_WORLDS,
    holdout_worlds: Sequence[WorldConfig] = HOLDOUT_WORLDS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    if data:
        frames = []
        for world in data:
            progress(f"building training set from {world}")
            frames.append(build_world_dataset(world))
        train = pd.concat(frames, ignore_index=True)
    else:
        train = load_worlds(list(train_worlds), root, lambda n: progress(f"world {n}"))
    holdout = load_worlds(list(holdout_worlds), root, lambda n: progress(f"held-out world {n}"))
    return train, holdout


def code_version(repo: Path = REPO) -> str | None:
    """The git commit checked out in ``repo``, with ``+dirty`` when tracked files differ from it;
    None when ``repo`` is not a git checkout (an installed package) or git is missing."""
    git = shutil.which("git")
    if git is None:
        return None

    def output(*args: str) -> str:
        done = subprocess.run(  # noqa: S603 - fixed arguments, git found on PATH
            [git, "-C", str(repo), *args], capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    try:
        head = output("rev-parse", "HEAD")
        changes = output("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}+dirty" if changes else head


def package_model(model: RiskModel, root: Path, provenance: dict[str, Any]) -> Path:
    """Write ``model`` as a packaged default model into ``root / model.spec.name``
    (``root``: :data:`~models.scorer.PACKAGED_DIR` for ``train --package``).

    Its version names its content: ``packaged-`` + the first 8 hex digits of the SHA-256 of its
    ``model.txt`` (a prefix of the ``packaged.model_sha`` tag of ``register-packaged``), not
    the training run, which lives only in the trainer's MLflow store. ``meta.json`` records
    ``provenance`` (what produced the model) instead of run ids.
    """
    text = model.booster.model_to_string()  # what ``save`` writes to model.txt
    model.version = f"packaged-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    model.meta = {"provenance": provenance}
    return model.save(root / model.spec.name)


def train(
    *,
    data: Sequence[Path] | None = None,
    worlds_root: Path = Path("data/worlds"),
    tracking_uri: str | None = None,
    package: bool = False,
    progress: Progress = print,
    extra_labels: pd.DataFrame | None = None,
    train_worlds: Sequence[WorldConfig] = TRAIN_WORLDS,
    holdout_worlds: Sequence[WorldConfig] = HOLDOUT_WORLDS,
) -> list[ModelReport]:
    """Train, evaluate, log and register both models; return one report per model."""
    started = time.perf_counter()
    uri = registry.configure(tracking_uri)
    progress(f"MLflow tracking at {uri}")
    train_frame, holdout = load_training_worlds(
        data, worlds_root, progress, train_worlds, holdout_worlds
    )
    if extra_labels is not None and len(extra_labels):
        train_frame = pd.concat([train_frame, extra_labels], ignore_index=True)
    seeds = {w.name: w.seed for w in (*train_worlds, *holdout_worlds)}
    provenance = {
        "command": shlex.join(
            ["shelfguard", "train", "--package", *(f"--data={p}" for p in data or ())]
        ),
        "code_version": code_version(),
        "lightgbm_seed": LGB_PARAMS["seed"],
        # world → simulator seed (None: a world read from --data, or field labels)
        "train_worlds": {w: seeds.get(w) for w in sorted(train_frame["world"].unique())},
        "holdout_worlds": {w.name: w.seed for w in holdout_worlds},
    }
    reports = []
    packaged_versions: dict[str, str] = {}
    with mlflow.start_run(run_name="train"):
        mlflow.log_params(
            {
                "train_worlds": ",".join(sorted(train_frame["world"].unique())),
                "holdout_worlds": ",".join(w.name for w in holdout_worlds),
                "train_rows": len(train_frame),
                "gate_margin": registry.GATE_MARGIN,
                **{f"lgb.{k}": v for k, v in LGB_PARAMS.items()},
            }
        )
        for spec in (PHANTOM, STOCKOUT):
            progress(f"fitting {spec.name}")
            data_frame = labelled(train_frame, spec)
            tr, va, te = time_split(data_frame)
            fitted = fit_models(data_frame[tr], data_frame[va], spec)
            hold = labelled(holdout, spec)
            frames = {"in_world_test": data_frame[te], "holdout": hold}
            for world in hold["world"].unique():
                frames[f"holdout:{world}"] = hold[hold["world"] == world]
            metrics = evaluate_all(spec, fitted, frames)
            mlflow.log_metrics(_flat_metrics(spec, metrics))
            mlflow.log_dict({"features": list(spec.features)}, f"{spec.name}/features.json")
            mlflow.log_param(f"{spec.name}.best_iteration", fitted.best_iteration)
            with tempfile.TemporaryDirectory() as tmp:
                _log_plots(spec, fitted, hold, Path(tmp))
            version = registry.log_model(fitted.model, data_frame[va])
            fitted.model.version = version
            champion = registry.champion_version(spec.name)
            champion_ap = None
            if champion is not None:
                old = registry.load_registered(f"models:/{spec.name}/{champion}")
                y = hold[spec.label].to_numpy().astype(int)
                champion_ap = evaluate(hold, y, old.predict(hold)).average_precision
            gate = registry.apply_gate(
                spec.name, version, metrics["holdout"]["lightgbm"]["average_precision"], champion_ap
            )
            report = ModelReport(spec.name, version, metrics, gate.verdict)
            reports.append(report)
            progress(f"{spec.name} v{version}: {gate.verdict}")
            if package:
                package_model(fitted.model, PACKAGED_DIR, provenance)
                packaged_versions[spec.name] = fitted.model.version
        mlflow.log_metric("training_seconds", time.perf_counter() - started)
    if package:  # the packaged versions, not the trainer's registry versions
        evaluation = [{**r.to_dict(), "version": packaged_versions[r.name]} for r in reports]
        (PACKAGED_DIR / "evaluation.json").write_text(
            json.dumps(evaluation, indent=1, sort_keys=True)
        )
    return reports
