"""SHAP contributions (``Booster.predict(pred_contrib=True)``) computed once per decision class.

LightGBM's TreeSHAP looks at a row's feature values only through the split decisions
``value <= threshold`` (after NaN and the zero band ``|value| <= 1e-35f`` are handled), at every
node of every tree. Two rows that fall on the same side of every threshold of the forest, feature
by feature, therefore go through exactly the same arithmetic and get bit-for-bit the same
contributions. :class:`DecisionClasses` maps each value to its class (which pair of consecutive
thresholds it lies between, plus NaN, zero-band and infinity flags, a partition at least as fine
as LightGBM's), and :func:`contributions` runs TreeSHAP on one row per distinct class vector.

TreeSHAP costs ~1-2 ms a row with the packaged forests. Keys with little history (one or two
events: a new assortment, a freshly onboarded store) share a few thousand classes among 100k rows,
so a file of them is explained ~10× faster; rows of a mature world are nearly all distinct, and
cost what they did.

Only forests of numerical splits are classed (no categorical split, no linear tree); any other
booster is passed through row by row, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

#: LightGBM's ``kZeroThreshold`` (the float ``1e-35f`` as a double): dense prediction input with
#: ``|value| <=`` this is read as 0.0, and "zero as missing" splits test the same band
ZERO_THRESHOLD = float(np.float32(1e-35))

_CATEGORICAL_MASK = 1  # bit 0 of a node's decision_type in the model text


@dataclass(frozen=True)
class DecisionClasses:
    """The sorted distinct split thresholds of each feature of a numerical forest."""

    thresholds: tuple[np.ndarray, ...]  # one ascending float64 array per feature (may be empty)

    @classmethod
    def of(cls, booster: Any) -> DecisionClasses | None:
        """The classes of ``booster``'s forest; None when it is not a plain LightGBM booster or
        has a split this module does not model (categorical, linear trees)."""
        if not isinstance(booster, lgb.Booster):
            return None
        return cls.from_model_text(booster.model_to_string(), booster.num_feature())

    @classmethod
    def from_model_text(cls, text: str, num_features: int) -> DecisionClasses | None:
        """Parse LightGBM's model text format (``split_feature=``, ``threshold=``,
        ``decision_type=`` lines per tree; thresholds are written with 17 significant digits,
        so they read back exactly)."""
        found: list[set[float]] = [set() for _ in range(num_features)]
        features: list[int] = []
        for line in text.splitlines():
            if line.startswith("split_feature="):
                features = [int(v) for v in line[len("split_feature=") :].split()]
            elif line.startswith("threshold="):
                values = [float(v) for v in line[len("threshold=") :].split()]
                if len(values) != len(features):
                    return None
                for feature, value in zip(features, values, strict=True):
                    found[feature].add(value)
            elif line.startswith("decision_type="):
                kinds = [int(v) for v in line[len("decision_type=") :].split()]
                if any(kind & _CATEGORICAL_MASK for kind in kinds):
                    return None
            elif line.startswith("is_linear=") and line.strip() != "is_linear=0":
                return None
            elif line.startswith("end of trees"):
                break
        return cls(tuple(np.array(sorted(values), dtype=np.float64) for values in found))

    def codes(self, matrix: np.ndarray) -> np.ndarray:
        """One int64 class per cell of ``matrix`` (rows × features): equal codes in a column mean
        the same decision at every split on that feature."""
        out = np.empty(matrix.shape, dtype=np.int64)
        for j, thresholds in enumerate(self.thresholds):
            values = matrix[:, j]
            # how many thresholds lie strictly below the value (value <= t for all the others)
            code = np.searchsorted(thresholds, values, side="left").astype(np.int64) * 8
            code += np.isnan(values)
            code += (np.abs(values) <= ZERO_THRESHOLD) * 2
            code += np.isinf(values) * 4
            out[:, j] = code
        return out


def contributions(
    booster: Any,
    matrix: np.ndarray,
    classes: DecisionClasses | None,
    num_threads: int = 0,
) -> np.ndarray:
    """``booster.predict(matrix, pred_contrib=True)``, bit-for-bit, with TreeSHAP run once per
    distinct row of decision classes (every row when ``classes`` is None)."""
    if classes is None or len(matrix) < 2 or matrix.shape[1] != len(classes.thresholds):
        return np.asarray(booster.predict(matrix, pred_contrib=True, num_threads=num_threads))
    _unique, first, inverse = np.unique(
        classes.codes(matrix), axis=0, return_index=True, return_inverse=True
    )
    distinct = np.ascontiguousarray(matrix[first])
    contrib = np.asarray(booster.predict(distinct, pred_contrib=True, num_threads=num_threads))
    return contrib[inverse.reshape(-1)]
