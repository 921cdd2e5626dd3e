"""Compiled inference for a LightGBM booster (lleaves): the booster's predictions, faster.

Off unless configured. ``SHELFGUARD_COMPILED_INFERENCE=1`` turns it on for every model loaded
with :meth:`models.scorer.RiskModel.load`; it needs the ``fast`` extra
(``pip install 'shelfguard[fast]'``: lleaves, and llvmlite < 0.44, whose legacy pass manager
lleaves 1.3 calls). Whenever the compiled forest cannot be had — package missing, compile or
load error, or predictions that differ from the booster's on the probe rows by more than
:data:`TOLERANCE` — the scorer keeps plain ``Booster.predict`` and logs why. Explanations
(``pred_contrib``) always stay on LightGBM.

Cache: compiling takes 16–30 s per packaged model here, so the object code is kept in
``SHELFGUARD_COMPILE_CACHE`` (default ``$XDG_CACHE_HOME/shelfguard/compiled``, else
``~/.cache/shelfguard/compiled``), one file per :func:`cache_key`: the model file's SHA-256,
the lleaves and llvmlite versions and the host CPU (the object is specialised to it, so a cache
shared between machines never hands one code it cannot run). A file appears only complete: it
is written under a private temporary name in the same directory and renamed. An exclusive
``flock`` on ``<key>.lock`` makes a second process wait for a compile in progress and then load
its result instead of compiling again. Entries are never evicted; delete the directory to
reclaim space.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

#: largest |compiled − booster| accepted on the probe rows (probabilities)
TOLERANCE = 1e-9
INSTALL_HINT = "install the `fast` extra: pip install 'shelfguard[fast]'"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "shelfguard" / "compiled"


class InferenceSettings(BaseSettings):
    """How risk models predict. Env var per field: ``SHELFGUARD_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="SHELFGUARD_", frozen=True, extra="ignore")

    compiled_inference: bool = Field(
        False,
        description="SHELFGUARD_COMPILED_INFERENCE: 1 = predict with the lleaves-compiled forest "
        "(`fast` extra), 0 = plain LightGBM",
    )
    compile_cache: Path = Field(
        default_factory=default_cache_dir,
        description="SHELFGUARD_COMPILE_CACHE: directory of compiled model objects",
    )


class CompiledInferenceUnavailable(RuntimeError):
    """The compiled forest cannot be used here; the message says why and what to do."""


@dataclass
class CompiledForest:
    """A LightGBM model file compiled to native code. ``predict`` returns what
    ``Booster.predict(matrix)`` returns (probabilities for the binary objective)."""

    model: Any  # lleaves.Model, compiled
    path: Path  # the cached object file
    cache_hit: bool  # loaded from the cache (True) or compiled by this call (False)
    seconds: float  # wall time of the compile or the load

    def predict(self, matrix: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """``matrix``: float64 rows × the model's features. ``num_threads`` as LightGBM's
        (0 = every core; 1 for small batches)."""
        n_jobs = num_threads if num_threads > 0 else (os.cpu_count() or 1)
        return np.asarray(self.model.predict(matrix, n_jobs=n_jobs))


def _lleaves() -> Any:
    try:
        import lleaves
        import llvmlite
    except ImportError as exc:
        raise CompiledInferenceUnavailable(
            f"lleaves is not installed ({exc}); {INSTALL_HINT}"
        ) from exc
    major, minor = (int(part) for part in llvmlite.__version__.split(".")[:2])
    if (major, minor) >= (0, 44):  # lleaves 1.3 fails there: no llvm.PassManagerBuilder
        raise CompiledInferenceUnavailable(
            f"llvmlite {llvmlite.__version__} is too new for lleaves (needs < 0.44); {INSTALL_HINT}"
        )
    return lleaves


def cache_key(model_file: Path) -> str:
    """Names the compiled object of ``model_file`` for this toolchain and this host CPU."""
    import llvmlite.binding as llvm

    llvm.initialize()
    llvm.initialize_native_target()
    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # LLVM cannot detect them; lleaves then compiles without any
        features = ""
    digest = hashlib.sha256(model_file.read_bytes())
    for part in (
        metadata.version("lleaves"),
        metadata.version("llvmlite"),
        llvm.get_process_triple(),
        llvm.get_host_cpu_name(),
        features,
    ):
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def compile_forest(model_file: Path, cache_dir: Path) -> CompiledForest:
    """The compiled forest of ``model_file``: loaded from ``cache_dir`` when there, else
    compiled and stored there (atomically). Safe to call from several processes at once: one
    compiles, the others wait and load. Raises :class:`CompiledInferenceUnavailable` without
    lleaves; compile errors propagate."""
    lleaves = _lleaves()
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(model_file)
    target = cache_dir / f"{key}.o"
    start = time.perf_counter()
    model = lleaves.Model(model_file=str(model_file))
    if target.exists():  # complete by construction: only ever renamed into place
        model.compile(cache=str(target))
        return CompiledForest(model, target, True, time.perf_counter() - start)
    with _locked(cache_dir / f"{key}.lock"):
        if target.exists():  # another process compiled it while we waited
            model.compile(cache=str(target))
            return CompiledForest(model, target, True, time.perf_counter() - start)
        scratch = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cache_dir))
        try:
            partial = scratch / "forest.o"  # must not exist yet: lleaves writes it
            model.compile(cache=str(partial))
            os.replace(partial, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return CompiledForest(model, target, False, time.perf_counter() - start)


def probe_rows(n_features: int, sample: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Rows to compare the compiled forest with the booster on: ``sample`` (real feature rows,
    if given), a copy of it with every third value missing, and random rows over a wide range
    with NaNs — so both branches of splits and the missing-value paths are taken."""
    rng = np.random.default_rng(seed)
    random = rng.normal(0.0, 100.0, size=(256, n_features))
    random[rng.random(random.shape) < 0.15] = np.nan
    parts = [random]
    if sample is not None and len(sample):
        holes = np.array(sample, dtype=np.float64, copy=True)
        holes.reshape(-1)[::3] = np.nan
        parts = [np.asarray(sample, dtype=np.float64), holes, random]
    return np.ascontiguousarray(np.concatenate(parts))


def max_abs_difference(forest: CompiledForest, booster: Any, probe: np.ndarray) -> float:
    return float(np.max(np.abs(forest.predict(probe, 1) - np.asarray(booster.predict(probe)))))


def load_compiled(
    model_file: Path,
    booster: Any,
    settings: InferenceSettings,
    probe: np.ndarray,
) -> CompiledForest | None:
    """The compiled forest to predict with, or None for plain LightGBM (the reason is logged
    when compiled inference was asked for). Compiles now if the cache does not have it."""
    if not settings.compiled_inference:
        return None
    try:
        forest = compile_forest(model_file, settings.compile_cache)
        worst = max_abs_difference(forest, booster, probe)
    except CompiledInferenceUnavailable as exc:
        log.warning("compiled inference off for %s: %s", model_file, exc)
        return None
    except Exception:
        log.warning(
            "compiled inference off for %s: compiling or loading failed; using LightGBM",
            model_file,
            exc_info=True,
        )
        return None
    if worst > TOLERANCE:
        log.warning(
            "compiled inference off for %s: it differs from LightGBM by %.3g on the probe rows "
            "(tolerance %g); using LightGBM. Delete %s to recompile.",
            model_file,
            worst,
            TOLERANCE,
            forest.path,
        )
        return None
    log.info(
        "compiled inference on for %s (%s in %.2f s)",
        model_file,
        "loaded from cache" if forest.cache_hit else "compiled",
        forest.seconds,
    )
    return forest
