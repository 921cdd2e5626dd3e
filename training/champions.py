"""Which models a batch command (``shelfguard score``, ``shelfguard drift``) runs: a registry
URI if given, else the registry's champion when a registry is configured, else the packaged
defaults.

The registry client (:mod:`training.registry`, MLflow) is imported only when a registry is asked
for or configured: without one, scoring a file needs LightGBM and pandas, not MLflow.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from models.scorer import RiskModel, load_packaged


def registry_configured() -> bool:
    """True when ``MLFLOW_TRACKING_URI`` is set or ``./mlflow.db`` (the default local tracking
    store, see :func:`training.registry.default_tracking_uri`) exists."""
    return bool(os.environ.get("MLFLOW_TRACKING_URI")) or (Path.cwd() / "mlflow.db").exists()


def load_model(uri: str | None, name: str) -> RiskModel:
    """``uri`` if given; else the registry's champion when one is reachable; else packaged."""
    if uri:
        from training import registry

        return registry.load_registered(uri)
    if registry_configured():
        try:
            from training import registry

            registry.configure(None)
            if registry.champion_version(name) is not None:
                return registry.load_registered(f"models:/{name}@{registry.CHAMPION}")
        except Exception as exc:  # noqa: BLE001 - an unreachable registry falls back to packaged
            warnings.warn(f"registry unavailable ({exc}); using the packaged model", stacklevel=2)
    return load_packaged(name)


def load_models(phantom_uri: str | None) -> tuple[RiskModel, RiskModel]:
    """Both models: the phantom one from ``phantom_uri`` (see :func:`load_model`) and the
    stockout one from the same registry reference with the name swapped, else its default."""
    stockout_uri = None
    if phantom_uri and "phantom-inventory" in phantom_uri:
        stockout_uri = phantom_uri.replace("phantom-inventory", "stockout-risk")
    return load_model(phantom_uri, "phantom-inventory"), load_model(stockout_uri, "stockout-risk")
