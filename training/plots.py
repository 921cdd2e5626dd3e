"""Pictures for data scientists: PR curves, calibration, feature importance (PNG files)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import precision_recall_curve  # noqa: E402


def pr_curves(y: np.ndarray, scores: dict[str, np.ndarray], title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, score in scores.items():
        precision, recall, _ = precision_recall_curve(y, score)
        ax.plot(recall, precision, label=label)
    ax.axhline(y.mean(), color="grey", linestyle=":", label=f"prevalence {y.mean():.3f}")
    ax.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def calibration_plot(y: np.ndarray, scores: dict[str, np.ndarray], title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    for label, score in scores.items():
        frac, mean = calibration_curve(y, np.clip(score, 0, 1), n_bins=10, strategy="quantile")
        ax.plot(mean, frac, marker="o", label=label)
    ax.set(xlabel="predicted probability", ylabel="observed frequency", title=title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def importance_plot(names: list[str], gains: np.ndarray, title: str, path: Path) -> Path:
    order = np.argsort(gains)
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(names) + 1))
    ax.barh([names[i] for i in order], gains[order])
    ax.set(xlabel="total gain", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
