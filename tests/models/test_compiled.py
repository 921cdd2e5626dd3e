"""Compiled inference (lleaves): the same raw scores as LightGBM, a content-keyed cache that two
processes share, and plain LightGBM whenever it is off or cannot be had.

Small boosters (tens of trees, compiled in seconds) trained on a small simulated world stand in
for the packaged models, whose compile takes ~30 s each."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models.compiled import InferenceSettings, cache_key
from models.derived import with_derived
from models.scorer import Calibration, RiskModel
from models.spec import SPECS
from training.dataset import build_world_dataset
from training.worlds import WorldConfig, simulate_world

SPEC = SPECS["phantom-inventory"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world_rows(tmp_path_factory) -> pd.DataFrame:
    """Feature rows (with labels) of a small world: 3 stores × 40 SKUs × 21 days."""
    out = tmp_path_factory.mktemp("world")
    frame = build_world_dataset(simulate_world(WorldConfig("compiled", 41, 3, 40, 21), out))
    return frame.reset_index(drop=True)


def train_small_model(rows: pd.DataFrame, directory: Path, rounds: int, seed: int) -> Path:
    """A phantom-inventory booster of ``rounds`` trees on ``rows``, saved as a model directory."""
    frame = with_derived(rows)
    features = list(SPEC.features)
    data = lgb.Dataset(
        frame[features].to_numpy(np.float64), frame[SPEC.label].to_numpy().astype(int)
    )
    params = {"objective": "binary", "num_leaves": 15, "min_data_in_leaf": 5, "verbose": -1}
    booster = lgb.train({**params, "seed": seed}, data, num_boost_round=rounds)
    calibration = Calibration([0.0, 0.5, 1.0], [0.0, 0.4, 1.0])
    model = RiskModel(SPEC, booster, calibration, reference=rows.head(200))
    return model.save(directory)


@pytest.fixture(scope="module")
def model_dir(world_rows, tmp_path_factory) -> Path:
    return train_small_model(world_rows, tmp_path_factory.mktemp("small-model"), 40, seed=1)


@pytest.fixture(scope="module")
def cold_and_warm(model_dir, tmp_path_factory) -> tuple[RiskModel, RiskModel, Path]:
    """The model loaded twice with compiled inference on, into a cache that starts empty."""
    pytest.importorskip("lleaves")
    cache = tmp_path_factory.mktemp("compile-cache")
    settings = InferenceSettings(compiled_inference=True, compile_cache=cache)
    return RiskModel.load(model_dir, settings), RiskModel.load(model_dir, settings), cache


def split_thresholds(booster: lgb.Booster) -> dict[int, list[float]]:
    """Feature index -> the thresholds of its numerical splits."""
    out: dict[int, list[float]] = {}

    def walk(node: dict) -> None:
        if "split_feature" in node:
            out.setdefault(node["split_feature"], []).append(float(node["threshold"]))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    return out


def test_compiled_raw_scores_equal_lightgbm_on_world_rows(cold_and_warm, world_rows) -> None:
    cold, _warm, _cache = cold_and_warm
    assert cold.compiled is not None and not cold.compiled.cache_hit
    rows = world_rows.sample(n=min(400, len(world_rows)), random_state=2).reset_index(drop=True)
    assert len(rows) >= 300
    plain = np.asarray(cold.booster.predict(cold.matrix(rows)))
    for threads in (0, 1):
        compiled = cold.raw(rows, num_threads=threads)
        assert compiled.shape == plain.shape
        assert np.max(np.abs(compiled - plain)) <= 1e-9
    assert plain.std() > 0.01  # the rows reach different leaves: the comparison means something
    plain_calibrated = np.clip(cold.calibration(plain), 0.0, 1.0)
    assert np.max(np.abs(cold.predict(rows) - plain_calibrated)) <= 1e-9


def test_compiled_agrees_on_and_beside_every_split_threshold(cold_and_warm, world_rows) -> None:
    """Rows whose value sits exactly on a split threshold or one ulp either side, and missing:
    where a compiler's comparison or missing-value rule would differ from LightGBM's."""
    cold, _warm, _cache = cold_and_warm
    base = cold.matrix(world_rows.head(64))
    rows = []
    for feature, thresholds in split_thresholds(cold.booster).items():
        for i, t in enumerate(thresholds[:20]):
            for value in (t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf), np.nan):
                row = base[i % len(base)].copy()
                row[feature] = value
                rows.append(row)
    matrix = np.ascontiguousarray(np.array(rows))
    assert len(matrix) > 100
    plain = np.asarray(cold.booster.predict(matrix))
    assert cold.compiled is not None
    assert np.max(np.abs(cold.compiled.predict(matrix) - plain)) <= 1e-9


def test_second_load_comes_from_the_cache(cold_and_warm, model_dir) -> None:
    cold, warm, cache = cold_and_warm
    assert cold.compiled is not None and warm.compiled is not None
    assert warm.compiled.cache_hit
    assert warm.compiled.path == cold.compiled.path
    assert warm.compiled.path.name == f"{cache_key(model_dir / 'model.txt')}.o"
    # one object, its lock file, no scratch directory left behind
    assert sorted(p.suffix for p in cache.iterdir()) == [".lock", ".o"]
    matrix = warm.matrix(warm.reference)
    assert np.max(np.abs(warm.compiled.predict(matrix) - warm.booster.predict(matrix))) <= 1e-9


def test_cache_key_follows_the_model_content(model_dir, tmp_path) -> None:
    pytest.importorskip("lleaves")
    copy = tmp_path / "model.txt"
    shutil.copy(model_dir / "model.txt", copy)
    assert cache_key(copy) == cache_key(model_dir / "model.txt")  # not the path
    copy.write_bytes(copy.read_bytes() + b"\n")  # any change of content
    assert cache_key(copy) != cache_key(model_dir / "model.txt")


def test_a_cache_entry_that_disagrees_with_the_booster_is_not_used(
    world_rows, model_dir, tmp_path, caplog
) -> None:
    """A stale or swapped object file (here: another model's) fails the probe check; scoring
    stays on LightGBM."""
    pytest.importorskip("lleaves")
    cache = tmp_path / "cache"
    settings = InferenceSettings(compiled_inference=True, compile_cache=cache)
    other_dir = train_small_model(world_rows, tmp_path / "other", 25, seed=7)
    other = RiskModel.load(other_dir, settings)
    assert other.compiled is not None
    shutil.copy(other.compiled.path, cache / f"{cache_key(model_dir / 'model.txt')}.o")
    with caplog.at_level(logging.WARNING, logger="models.compiled"):
        model = RiskModel.load(model_dir, settings)
    assert model.compiled is None
    assert "differs from LightGBM" in caplog.text
    rows = world_rows.head(50)
    assert np.array_equal(model.raw(rows), model.booster.predict(model.matrix(rows)))


def test_two_processes_compile_once_and_both_score(model_dir, tmp_path) -> None:
    pytest.importorskip("lleaves")
    cache = tmp_path / "cache"
    script = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        from models.compiled import InferenceSettings
        from models.scorer import RiskModel
        settings = InferenceSettings(compiled_inference=True, compile_cache=Path({str(cache)!r}))
        model = RiskModel.load(Path({str(model_dir)!r}), settings)
        print(json.dumps({{"hit": model.compiled.cache_hit, "path": str(model.compiled.path)}}))
        """
    )
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, cwd=REPO)
        for _ in range(2)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    assert sorted(r["hit"] for r in results) == [False, True]  # one compiled, one waited + loaded
    assert results[0]["path"] == results[1]["path"]
    assert len(list(cache.glob("*.o"))) == 1


def test_off_by_default_and_plain_lightgbm(model_dir, world_rows, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SHELFGUARD_COMPILED_INFERENCE", raising=False)
    monkeypatch.setenv("SHELFGUARD_COMPILE_CACHE", str(tmp_path / "cache"))
    assert not InferenceSettings().compiled_inference
    model = RiskModel.load(model_dir)
    assert model.compiled is None
    assert not (tmp_path / "cache").exists()
    rows = world_rows.head(100)
    assert np.array_equal(model.raw(rows), model.booster.predict(model.matrix(rows)))


def test_env_var_turns_it_on(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SHELFGUARD_COMPILED_INFERENCE", "1")
    monkeypatch.setenv("SHELFGUARD_COMPILE_CACHE", str(tmp_path))
    settings = InferenceSettings()
    assert settings.compiled_inference and settings.compile_cache == tmp_path


def test_without_lleaves_it_falls_back_and_says_which_extra(
    model_dir, world_rows, tmp_path, monkeypatch, caplog
) -> None:
    monkeypatch.setitem(sys.modules, "lleaves", None)  # import lleaves -> ImportError
    settings = InferenceSettings(compiled_inference=True, compile_cache=tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="models.compiled"):
        model = RiskModel.load(model_dir, settings)
    assert model.compiled is None
    assert "compiled inference off" in caplog.text and "shelfguard[fast]" in caplog.text
    rows = world_rows.head(100)
    assert np.array_equal(model.raw(rows), model.booster.predict(model.matrix(rows)))


def test_with_a_too_new_llvmlite_it_falls_back(model_dir, tmp_path, monkeypatch, caplog) -> None:
    """lleaves 1.3 does not pin llvmlite; from 0.44 on its compile fails (no legacy pass
    manager), so that case is refused up front with the fix named."""
    pytest.importorskip("lleaves")
    import llvmlite

    monkeypatch.setattr(llvmlite, "__version__", "0.44.0")
    settings = InferenceSettings(compiled_inference=True, compile_cache=tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="models.compiled"):
        model = RiskModel.load(model_dir, settings)
    assert model.compiled is None
    assert "llvmlite 0.44.0 is too new" in caplog.text and "shelfguard[fast]" in caplog.text
    assert not (tmp_path / "cache").exists()  # refused before compiling anything
