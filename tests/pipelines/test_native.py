"""The compiled ledger/feature core (``pipelines.native``): in use when built, same results as
the source, never stale.

``make test`` sets ``SHELFGUARD_EXPECT_COMPILED=1``: there a missing or broken build fails here
instead of silently running the slower source.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import native

REPO = Path(__file__).resolve().parents[2]
EXPECT_COMPILED = os.environ.get("SHELFGUARD_EXPECT_COMPILED") == "1"
PURE = native.pure_requested()

# Replays a simulated world (with a duplicate storm and late events) and prints what a run
# produces: which build ran, the feature table, every key's state, and pickle round trips.
_PROBE = r"""
import hashlib, importlib, json, pickle, sys
from pathlib import Path
from pipelines import native
from pipelines.replay import replay_file
from pipelines.simulator import simulate

world = Path(sys.argv[1])
if not (world / "events.jsonl").exists():
    simulate(world, seed=31, stores=3, skus=40, days=40, progress=False)
replay = replay_file(world / "events.jsonl")
states = sorted(replay.states.items())
table = replay.feature_table().to_csv(index=False, float_format="%.17g")
blob = repr([(k, s.__getstate__()) for k, s in states])
round_trip = all(  # repr: NaN fields compare unequal to themselves
    repr(pickle.loads(pickle.dumps(s)).__getstate__()) == repr(s.__getstate__()) for _, s in states
)
print(json.dumps({
    "compiled": [native.is_compiled(importlib.import_module(m)) for m in native.CORE],
    "keys": len(states),
    "duplicates": sum(s.duplicates for _, s in states),
    "table": hashlib.sha256(table.encode()).hexdigest(),
    "states": hashlib.sha256(blob.encode()).hexdigest(),
    "pickle_round_trip": round_trip,
}))
"""


def _built() -> bool:
    return all(native.compiled_paths(m) for m in native.CORE)


def _probe(world: Path, pure: bool) -> dict:
    env = {**os.environ, native.PURE_ENV: "1" if pure else "0"}
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", _PROBE, str(world)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_make_install_built_the_core():
    if not EXPECT_COMPILED:
        pytest.skip("SHELFGUARD_EXPECT_COMPILED is not set (make test sets it)")
    assert _built(), "make install must compile the core (native.CORE)"
    assert native.stale_modules() == []


def test_this_process_runs_what_the_guard_chose():
    expected_compiled = _built() and not PURE and not native.stale_modules()
    for name in native.CORE:
        assert native.is_compiled(importlib.import_module(name)) is expected_compiled, name


def test_compiled_and_source_give_identical_results(tmp_path):
    if not _built():
        if EXPECT_COMPILED:
            pytest.fail("the core is not compiled")
        pytest.skip("the core is not compiled here (make install compiles it)")
    compiled = _probe(tmp_path / "world", pure=False)
    source = _probe(tmp_path / "world", pure=True)
    assert compiled["compiled"] == [True] * len(native.CORE)
    assert source["compiled"] == [False] * len(native.CORE)
    assert compiled["keys"] >= 120 and compiled["duplicates"] > 0
    assert compiled["pickle_round_trip"] and source["pickle_round_trip"]
    for field in ("keys", "duplicates", "table", "states"):
        assert compiled[field] == source[field], field


def test_a_build_older_than_its_source_is_stale(tmp_path, monkeypatch):
    if not _built():
        pytest.skip("nothing built to go stale")
    manifest = tmp_path / "_core.json"
    recorded = {m: native.source_digest(m) for m in native.CORE}
    manifest.write_text(json.dumps(recorded))
    monkeypatch.setattr(native, "MANIFEST", manifest)
    monkeypatch.delenv(native.PURE_ENV, raising=False)
    assert native.stale_modules() == []
    assert native.modules_to_run_from_source() == []
    recorded["pipelines.features"] = "0" * 64  # the source changed after the build
    manifest.write_text(json.dumps(recorded))
    assert native.stale_modules() == ["pipelines.features"]
    # one compiled group: a stale module sends all of it to the sources (a compiled features
    # would otherwise keep calling the group's compiled, stale ledger)
    assert native.modules_to_run_from_source() == list(native.CORE)
    manifest.unlink()  # no record at all: everything built is stale
    assert native.stale_modules() == list(native.CORE)


def test_every_core_class_survives_pickle():
    """Values cross worker processes pickled (settlements on their way to another key's
    worker); compiled classes must rebuild, frozen dataclasses included."""
    import pickle

    from pipelines.features import FEATURES, Activity, KeyState
    from pipelines.ledger import Position, TransferMatcher, TransitSettlement

    settlement = TransitSettlement("in-1", "SKU-1", "S01", 3, 1_772_409_600.0)
    assert pickle.loads(pickle.dumps(settlement)) == settlement
    assert pickle.loads(pickle.dumps(FEATURES)) == FEATURES
    state = KeyState("SKU-1", "S01")
    state.apply(settlement)
    for value in (state, Position(), Activity(), TransferMatcher()):
        again = pickle.loads(pickle.dumps(value))
        assert type(again) is type(value)
        assert repr(again.__getstate__()) == repr(value.__getstate__())
