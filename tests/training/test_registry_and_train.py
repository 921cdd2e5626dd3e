"""End-to-end training on tiny worlds against a local SQLite MLflow store, and the gate."""

import hashlib
import json
import re
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from models.compiled import InferenceSettings
from models.scorer import PACKAGED_DIR, RiskModel
from tests.training.conftest import TINY_HOLDOUT, TINY_TRAIN
from training import registry
from training import train as train_module
from training.train import code_version, train

MODEL_NAMES = ("phantom-inventory", "stockout-risk")


@pytest.fixture(scope="module")
def packaged_dir(tmp_path_factory):
    """Where the tiny training run writes its packaged models (not models/packaged)."""
    return tmp_path_factory.mktemp("packaged")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_worlds, packaged_dir):
    home = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_module, "PACKAGED_DIR", packaged_dir)
        reports = train(
            worlds_root=tiny_worlds,
            tracking_uri=uri,
            package=True,
            progress=lambda _msg: None,
            train_worlds=TINY_TRAIN,
            holdout_worlds=TINY_HOLDOUT,
        )
    return uri, reports


def test_train_registers_both_models_with_champion(trained):
    uri, reports = trained
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for name in ("phantom-inventory", "stockout-risk"):
        champion = client.get_model_version_by_alias(name, "champion")
        challenger = client.get_model_version_by_alias(name, "challenger")
        assert str(champion.version) == str(challenger.version) == "1"
        assert champion.tags["gate.verdict"].startswith("promoted")
    assert {r.name for r in reports} == {"phantom-inventory", "stockout-risk"}


def _content_version(directory):
    return "packaged-" + hashlib.sha256((directory / "model.txt").read_bytes()).hexdigest()[:8]


def test_package_records_provenance_not_the_training_run(trained, packaged_dir):
    _, reports = trained
    plain = InferenceSettings(compiled_inference=False)
    for name in MODEL_NAMES:
        meta = json.loads((packaged_dir / name / "meta.json").read_text())
        assert "run_id" not in meta and "registered_version" not in meta
        assert meta["version"] == _content_version(packaged_dir / name)
        assert meta["provenance"] == {
            "command": "shelfguard train --package",
            "code_version": code_version(),
            "lightgbm_seed": 7,
            "train_worlds": {"tiny-a": 201, "tiny-b": 202},
            "holdout_worlds": {"tiny-hold": 909},
        }
        assert RiskModel.load(packaged_dir / name, plain).version == meta["version"]
    evaluation = json.loads((packaged_dir / "evaluation.json").read_text())
    assert {r["name"]: r["version"] for r in evaluation} == {
        name: _content_version(packaged_dir / name) for name in MODEL_NAMES
    }
    assert {r.version for r in reports} == {"1"}  # the run's own report keeps registry versions


def test_committed_packaged_models_name_their_content():
    for name in MODEL_NAMES:
        meta = json.loads((PACKAGED_DIR / name / "meta.json").read_text())
        assert meta["version"] == _content_version(PACKAGED_DIR / name)
        assert re.fullmatch(r"[0-9a-f]{40}", meta["provenance"]["code_version"])


def test_code_version_is_none_outside_a_git_checkout(tmp_path):
    assert code_version(tmp_path) is None


def test_run_logs_metrics_plots_and_baselines(trained):
    uri, reports = trained
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=[registry.EXPERIMENT])
    run = runs.iloc[0]
    assert run["metrics.phantom-inventory.holdout.baseline.average_precision"] >= 0
    assert (
        run["metrics.phantom-inventory.holdout.lightgbm.average_precision"]
        > run["metrics.phantom-inventory.holdout.baseline.average_precision"]
    )
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(run["run_id"], "plots")}
    assert "plots/phantom-inventory-pr.png" in artifacts
    assert "plots/stockout-risk-calibration.png" in artifacts
    phantom = next(r for r in reports if r.name == "phantom-inventory")
    assert set(phantom.metrics["holdout"]) == {"lightgbm", "logistic", "baseline"}


def test_registered_model_loads_and_scores(trained):
    uri, _ = trained
    registry.configure(uri)
    model = registry.load_registered("models:/phantom-inventory@champion")
    assert model.version == "v1 (champion)"
    assert model.reference is not None and len(model.reference) > 0
    scores = model.predict(model.reference)
    assert ((scores >= 0) & (scores <= 1)).all()


def test_gate_moves_champion_only_by_the_margin(trained):
    uri, _ = trained
    registry.configure(uri)
    client = MlflowClient(uri, uri)
    name = "phantom-inventory"
    model = registry.load_registered(f"models:/{name}@champion")
    sample = pd.DataFrame(model.reference)
    with mlflow.start_run(run_name="gate-test"):
        v2 = registry.log_model(model, sample)
        kept = registry.apply_gate(name, v2, challenger_ap=0.502, champion_ap=0.5)
        assert not kept.promoted
        assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
        assert str(client.get_model_version_by_alias(name, "challenger").version) == v2
        promoted = registry.apply_gate(name, v2, challenger_ap=0.51, champion_ap=0.5)
        assert promoted.promoted
    assert str(client.get_model_version_by_alias(name, "champion").version) == v2
    assert client.get_model_version(name, v2).tags["gate.verdict"].startswith("promoted")


def test_register_packaged_sets_champions_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = registry.register_packaged(uri)
    second = registry.register_packaged(uri)
    assert first == second == {"phantom-inventory": "1", "stockout-risk": "1"}
    client = MlflowClient(uri, uri)
    version = client.get_model_version_by_alias("stockout-risk", "champion")
    assert version.tags["packaged.model_sha"]


def test_promote_by_hand_and_roll_back(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from serving.cli import app

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry.register_packaged(uri)
    name = "stockout-risk"
    model = registry.load_registered(f"models:/{name}@champion")
    with mlflow.start_run(run_name="candidate"):
        v2 = registry.log_model(model, pd.DataFrame(model.reference))
    client = MlflowClient(uri, uri)
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"

    runner = CliRunner()
    refused = runner.invoke(
        app, ["models", "promote", name, v2, "--reason", " ", "--tracking-uri", uri]
    )
    assert refused.exit_code != 0 and "reason is required" in refused.output
    unknown = runner.invoke(
        app, ["models", "promote", name, "99", "--reason", "x", "--tracking-uri", uri]
    )
    assert unknown.exit_code != 0 and "no version '99'" in unknown.output
    done = runner.invoke(
        app,
        ["models", "promote", name, v2, "--reason", "better on May data", "--by", "dana",
         "--tracking-uri", uri],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert str(client.get_model_version_by_alias(name, "champion").version) == v2
    tags = client.get_model_version(name, v2).tags
    assert tags["promotion.by"] == "dana" and tags["promotion.previous_champion"] == "1"
    assert client.get_model_version(name, "1").tags["demoted.for_version"] == v2

    back = registry.promote(name, "1", "dana", "rollback: alert volume doubled", "t", uri)
    assert back.previous == v2 and back.changed
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    rows = registry.list_versions(name, uri)
    assert [r.version for r in rows] == [v2, "1"]
    assert rows[1].aliases == ("champion",) and "rollback" in rows[1].verdict
    listed = runner.invoke(app, ["models", "list", "--tracking-uri", uri])
    assert listed.exit_code == 0 and "champion" in listed.output and "dana" in listed.output


def test_score_uses_the_champion_of_a_local_registry(tmp_path, monkeypatch, conformance_dir):
    """``./mlflow.db`` present: ``shelfguard score`` loads the champions from it (the registry
    client is imported only on this path, see ``training.champions``)."""
    import csv

    from typer.testing import CliRunner

    from serving.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    registry.register_packaged(f"sqlite:///{tmp_path / 'mlflow.db'}")
    out = tmp_path / "scores.csv"
    events = conformance_dir / "events.jsonl"
    result = CliRunner().invoke(app, ["score", "--events", str(events), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert {r["phantom_model"] for r in rows} == {"phantom-inventory:v1 (champion)"}
    assert {r["stockout_model"] for r in rows} == {"stockout-risk:v1 (champion)"}


@pytest.mark.parametrize("spelling", ["absolute", "relative"])
def test_a_sqlite_store_keeps_its_artifacts_beside_its_database(tmp_path, monkeypatch, spelling):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    store = tmp_path / "store"
    store.mkdir()
    database = store / "mlflow.db" if spelling == "absolute" else Path("../store/mlflow.db")
    uri = f"sqlite:///{database}"
    assert registry.sqlite_artifact_root(uri) == (store / "mlruns").as_uri()
    registry.configure(uri)
    experiment = mlflow.get_experiment_by_name(registry.EXPERIMENT)
    assert experiment.artifact_location == (store / "mlruns").as_uri()
    assert registry.sqlite_artifact_root("http://127.0.0.1:5000") is None
    assert registry.sqlite_artifact_root("sqlite:///:memory:") == (elsewhere / "mlruns").as_uri()
