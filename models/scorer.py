"""A calibrated LightGBM risk model: booster + isotonic calibration + its spec, saved as files.

On disk (one directory per model, small enough to commit as the packaged default):
``model.txt`` (LightGBM text format), ``calibration.json`` (isotonic breakpoints), ``meta.json``
(spec name, features, version, training summary).

Scoring uses ``Booster.predict`` on a float matrix (≈0.04 ms/row single, ~300k rows/s batch
here) rather than the scikit-learn wrapper, which costs ~20× more per call; with
``SHELFGUARD_COMPILED_INFERENCE=1`` (``fast`` extra) the uncalibrated probabilities come from the
lleaves-compiled forest instead (the same values, see :mod:`models.compiled`).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.compiled import CompiledForest, InferenceSettings, load_compiled, probe_rows
from models.contributions import DecisionClasses, contributions
from models.derived import with_derived
from models.explain import Reason, explain_rows
from models.spec import SPECS, ModelSpec

PACKAGED_DIR = Path(__file__).resolve().parent / "packaged"


@dataclass
class Calibration:
    """Piecewise-linear isotonic map from raw model probability to calibrated probability."""

    x: list[float]
    y: list[float]

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        if not self.x:
            return raw
        return np.interp(raw, self.x, self.y)


@dataclass
class RiskModel:
    spec: ModelSpec
    booster: lgb.Booster
    calibration: Calibration
    version: str = "packaged"
    meta: dict[str, Any] = field(default_factory=dict)
    #: a sample of the training-time feature distribution, the drift reference
    reference: pd.DataFrame | None = None
    #: the booster compiled to native code (``raw`` uses it when set); None = plain LightGBM
    compiled: CompiledForest | None = field(default=None, repr=False, compare=False)
    #: (booster, its decision classes) for :meth:`explain`, computed at the first explanation
    _decisions: tuple[Any, DecisionClasses | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def inputs(self, features: pd.DataFrame) -> pd.DataFrame:
        """``features`` (snapshot rows) with the derived columns the spec needs added: the one
        place they are computed for training, scoring, the stream and drift."""
        missing = [f for f in self.spec.inputs if f not in features.columns]
        if missing:
            raise KeyError(f"feature columns missing for {self.spec.name}: {missing}")
        return with_derived(features) if self.spec.uses_derived else features

    def matrix(self, features: pd.DataFrame) -> np.ndarray:
        return self._matrix_of_inputs(self.inputs(features))

    def _matrix_of_inputs(self, frame: pd.DataFrame) -> np.ndarray:
        return np.ascontiguousarray(frame.loc[:, list(self.spec.features)].to_numpy(np.float64))

    def raw(self, features: pd.DataFrame, num_threads: int = 0) -> np.ndarray:
        """Uncalibrated probabilities. ``num_threads``: LightGBM's (0 = its default, all cores);
        1 is faster for the small batches of the stream (no thread start-up per call). From the
        compiled forest when there is one (equal to the booster's within 1e-9)."""
        matrix = self.matrix(features)
        if self.compiled is not None:
            return self.compiled.predict(matrix, num_threads)
        return np.asarray(self.booster.predict(matrix, num_threads=num_threads))

    def predict(self, features: pd.DataFrame, num_threads: int = 0) -> np.ndarray:
        """Calibrated probabilities of the spec's label."""
        return np.clip(self.calibration(self.raw(features, num_threads)), 0.0, 1.0)

    def explain(
        self, features: pd.DataFrame, top_k: int = 3, num_threads: int = 0
    ) -> list[list[Reason]]:
        """The ``top_k`` risk-raising reasons of each row, from TreeSHAP contributions (run once
        per distinct row of decision classes, see :mod:`models.contributions`)."""
        frame = self.inputs(features)
        matrix = self._matrix_of_inputs(frame)
        contrib = contributions(self.booster, matrix, self.decision_classes(), num_threads)
        return explain_rows(contrib, frame.reset_index(drop=True), self.spec.features, top_k)

    def decision_classes(self) -> DecisionClasses | None:
        """The decision classes of the current ``booster`` (recomputed if it was replaced)."""
        if self._decisions is None or self._decisions[0] is not self.booster:
            self._decisions = (self.booster, DecisionClasses.of(self.booster))
        return self._decisions[1]

    # -- files ------------------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / "model.txt"))
        (directory / "calibration.json").write_text(
            json.dumps({"x": self.calibration.x, "y": self.calibration.y})
        )
        meta = {
            **self.meta,
            "name": self.spec.name,
            "features": list(self.spec.features),
            "label": self.spec.label,
            "version": self.version,
        }
        (directory / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        if self.reference is not None:
            self.reference.to_parquet(directory / "reference.parquet", index=False)
        return directory

    @classmethod
    def load(cls, directory: Path, inference: InferenceSettings | None = None) -> RiskModel:
        """The model saved in ``directory``. ``inference`` (default: from ``SHELFGUARD_*``
        environment variables) says whether to predict with the compiled forest; compiling a
        model the cache does not have yet takes 16–30 s here, once per model file."""
        meta = json.loads((directory / "meta.json").read_text())
        base = SPECS[meta["name"]]
        spec = ModelSpec(
            name=base.name,
            label=base.label,
            horizon_hours=base.horizon_hours,
            features=tuple(meta["features"]),
            description=base.description,
        )
        cal = json.loads((directory / "calibration.json").read_text())
        booster = lgb.Booster(model_file=str(directory / "model.txt"))
        reference_path = directory / "reference.parquet"
        reference = pd.read_parquet(reference_path) if reference_path.exists() else None
        model = cls(
            spec,
            booster,
            Calibration(cal["x"], cal["y"]),
            meta.get("version", "?"),
            meta,
            reference,
        )
        settings = inference if inference is not None else InferenceSettings()
        if settings.compiled_inference:
            sample = None
            if reference is not None:
                with contextlib.suppress(KeyError):  # a reference without every input
                    sample = model.matrix(reference.head(512))
            probe = probe_rows(booster.num_feature(), sample)
            model.compiled = load_compiled(directory / "model.txt", booster, settings, probe)
        return model


def load_packaged(name: str, inference: InferenceSettings | None = None) -> RiskModel:
    directory = PACKAGED_DIR / name
    if not (directory / "model.txt").exists():
        raise FileNotFoundError(
            f"no packaged model {name!r} in {PACKAGED_DIR}; run `shelfguard train --package`"
        )
    return RiskModel.load(directory, inference)
