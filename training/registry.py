"""MLflow: tracking, the model registry, aliases and the promotion gate.

Registered names are contracts: ``phantom-inventory`` and ``stockout-risk``. A new version gets
alias ``challenger``; ``champion`` moves only when the challenger's average precision on the
*same* evaluation data beats the champion's by at least ``GATE_MARGIN`` (absolute). The gate's
inputs and verdict are recorded on the run (metrics + tags) and on the model version (tags).

Default tracking store: a local SQLite file ``./mlflow.db`` with artifacts in ``./mlruns`` (no
server needed); ``MLFLOW_TRACKING_URI`` or ``--tracking-uri`` point elsewhere, e.g. a
``mlflow server`` on loopback.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.pyfunc import PythonModel
from mlflow.tracking import MlflowClient

from models.scorer import RiskModel

GATE_MARGIN = 0.005
CHAMPION = "champion"
CHALLENGER = "challenger"
EXPERIMENT = "shelfguard"


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def sqlite_artifact_root(uri: str) -> str | None:
    """Where a SQLite tracking store keeps run artifacts: ``mlruns`` beside its database file, so
    the store is one folder wherever the trainer runs (the default ``./mlflow.db`` → ``./mlruns``;
    a relative path is relative to the working directory, as SQLAlchemy reads it). None for other
    stores: a server decides itself."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    database = uri[len(prefix) :].split("?", 1)[0]
    if not database or database == ":memory:":
        base = Path.cwd()
    else:
        base = Path(database).expanduser().resolve().parent
    return (base / "mlruns").as_uri()


def configure(tracking_uri: str | None = None) -> str:
    uri = tracking_uri or default_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        mlflow.create_experiment(EXPERIMENT, artifact_location=sqlite_artifact_root(uri))
    mlflow.set_experiment(EXPERIMENT)
    return uri


class RiskModelPyfunc(PythonModel):
    """Pyfunc wrapper: input = feature columns, output = calibrated probability."""

    def load_context(self, context: Any) -> None:
        self.model = RiskModel.load(Path(context.artifacts["scorer"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        return self.model.predict(model_input)


@dataclass(frozen=True)
class GateResult:
    name: str
    version: str
    challenger_ap: float
    champion_ap: float | None
    champion_version: str | None
    promoted: bool

    @property
    def verdict(self) -> str:
        if self.champion_version is None:
            return "promoted (no champion yet)"
        if self.promoted:
            return f"promoted (beat v{self.champion_version} by >= {GATE_MARGIN})"
        return f"kept v{self.champion_version} (margin {GATE_MARGIN} not met)"


def log_model(model: RiskModel, sample: pd.DataFrame) -> str:
    """Log ``model`` in the active run, register it; return the new version number.

    The signature's inputs are the snapshot columns (``spec.inputs``); derived columns are the
    model's own business (:meth:`RiskModel.inputs`)."""
    features = sample.loc[:, list(model.spec.inputs)].astype("float64")
    signature = infer_signature(features, model.predict(features))
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "scorer")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=RiskModelPyfunc(),
            artifacts={"scorer": str(Path(tmp) / "scorer")},
            signature=signature,
            input_example=features.head(3),
            registered_model_name=model.spec.name,
        )
    version = str(info.registered_model_version)
    MlflowClient().set_registered_model_alias(model.spec.name, CHALLENGER, version)
    return version


def champion_version(name: str) -> str | None:
    try:
        return str(MlflowClient().get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def load_registered(uri: str) -> RiskModel:
    """Load a model by URI, e.g. ``models:/phantom-inventory@champion`` or ``runs:/<id>/model``."""
    pyfunc = mlflow.pyfunc.load_model(uri)
    wrapper = pyfunc.unwrap_python_model()
    model: RiskModel = wrapper.model
    model.version = _resolve_version(uri)
    return model


def _resolve_version(uri: str) -> str:
    """``models:/name@alias`` → ``v3 (alias)``; other URIs are returned as they are."""
    if not uri.startswith("models:/"):
        return uri
    ref = uri.removeprefix("models:/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        version = MlflowClient().get_model_version_by_alias(name, alias).version
        return f"v{version} ({alias})"
    return "v" + ref.split("/", 1)[1] if "/" in ref else ref


def apply_gate(
    name: str, version: str, challenger_ap: float, champion_ap: float | None
) -> GateResult:
    """Move ``champion`` to ``version`` if it wins by the margin; record the verdict."""
    client = MlflowClient()
    current = champion_version(name)
    promoted = current is None or (
        champion_ap is not None and challenger_ap >= champion_ap + GATE_MARGIN
    )
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    result = GateResult(name, version, challenger_ap, champion_ap, current, promoted)
    tags = {
        "gate.verdict": result.verdict,
        "gate.metric": "average_precision",
        "gate.margin": str(GATE_MARGIN),
        "gate.challenger_ap": f"{challenger_ap:.5f}",
        "gate.champion_ap": "" if champion_ap is None else f"{champion_ap:.5f}",
        "gate.champion_version": current or "",
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if mlflow.active_run() is not None:
        mlflow.set_tags({f"{name}.{k}": v for k, v in tags.items()})
        mlflow.log_metric(f"{name}.gate_challenger_ap", challenger_ap)
        if champion_ap is not None:
            mlflow.log_metric(f"{name}.gate_champion_ap", champion_ap)
    return result


def register_packaged(tracking_uri: str | None = None) -> dict[str, str]:
    """Load the packaged default models into the registry as champions, once.

    Idempotent: a model whose champion already carries the same packaged ``model_sha`` tag is
    left alone. Returns ``{name: champion version}``.
    """
    import hashlib

    from models.scorer import PACKAGED_DIR, RiskModel

    configure(tracking_uri)
    client = MlflowClient()
    champions: dict[str, str] = {}
    for name in ("phantom-inventory", "stockout-risk"):
        directory = PACKAGED_DIR / name
        sha = hashlib.sha256((directory / "model.txt").read_bytes()).hexdigest()[:16]
        current = champion_version(name)
        if current is not None:
            tags = client.get_model_version(name, current).tags
            if tags.get("packaged.model_sha") == sha:
                champions[name] = current
                continue
        model = RiskModel.load(directory)
        if model.reference is None:
            raise ValueError(f"packaged {name} has no reference sample; re-run train --package")
        with mlflow.start_run(run_name=f"register-packaged-{name}"):
            mlflow.set_tag("source", "packaged")
            version = log_model(model, model.reference)
        client.set_model_version_tag(name, version, "packaged.model_sha", sha)
        client.set_registered_model_alias(name, CHAMPION, version)
        client.set_model_version_tag(name, version, "gate.verdict", "packaged default (seeded)")
        champions[name] = version
    return champions


MODEL_NAMES = ("phantom-inventory", "stockout-risk")


@dataclass(frozen=True)
class VersionInfo:
    """One registered version as a data scientist compares them (``shelfguard models list``)."""

    name: str
    version: str
    aliases: tuple[str, ...]
    created_ms: int
    run_id: str | None
    holdout_ap: str  # the gate's challenger AP when trained here; "" for packaged/imported
    verdict: str


def list_versions(name: str, tracking_uri: str | None = None) -> list[VersionInfo]:
    """Every version of ``name``, newest first, with its aliases and gate verdict."""
    _check_name(name)
    configure(tracking_uri)
    client = MlflowClient()
    try:
        alias_map = client.get_registered_model(name).aliases or {}
    except MlflowException:
        return []  # not registered yet
    aliases: dict[str, list[str]] = {}
    for alias, version in alias_map.items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for mv in client.search_model_versions(f"name='{name}'"):
        rows.append(
            VersionInfo(
                name,
                str(mv.version),
                tuple(sorted(aliases.get(str(mv.version), []))),
                int(mv.creation_timestamp or 0),
                mv.run_id,
                mv.tags.get("gate.challenger_ap", ""),
                mv.tags.get("promotion.reason")
                and f"promoted by {mv.tags.get('promotion.by')}: {mv.tags['promotion.reason']}"
                or mv.tags.get("gate.verdict", ""),
            )
        )
    return sorted(rows, key=lambda r: int(r.version), reverse=True)


@dataclass(frozen=True)
class Promotion:
    name: str
    version: str
    previous: str | None

    @property
    def changed(self) -> bool:
        return self.previous != self.version


def promote(
    name: str,
    version: str,
    by: str,
    reason: str,
    now_iso: str,
    tracking_uri: str | None = None,
) -> Promotion:
    """Move ``champion`` to ``version`` by hand (a promotion past the gate, or a rollback to an
    earlier version), recording who, why, when and the previous champion as version tags. The
    streaming scorer picks the new champion up at its next poll. Refuses unknown names and
    versions and an empty reason."""
    _check_name(name)
    if not reason.strip():
        raise ValueError("a reason is required to move the champion by hand")
    if not by.strip():
        raise ValueError("say who moves the champion (--by)")
    configure(tracking_uri)
    client = MlflowClient()
    try:
        client.get_model_version(name, version)
    except MlflowException:
        known = ", ".join(v.version for v in list_versions(name, tracking_uri)) or "none"
        raise ValueError(f"{name} has no version {version!r} (versions: {known})") from None
    previous = champion_version(name)
    client.set_registered_model_alias(name, CHAMPION, version)
    tags = {
        "promotion.by": by,
        "promotion.reason": reason.strip(),
        "promotion.at": now_iso,
        "promotion.previous_champion": previous or "",
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if previous is not None and previous != version:
        client.set_model_version_tag(name, previous, "demoted.at", now_iso)
        client.set_model_version_tag(name, previous, "demoted.by", by)
        client.set_model_version_tag(name, previous, "demoted.for_version", version)
    return Promotion(name, version, previous)


def _check_name(name: str) -> None:
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; registered names are {', '.join(MODEL_NAMES)}")


class RegistryChampions:
    """The ``champion`` alias of the registry at ``tracking_uri``, for the streaming scorer's
    hot reload (:class:`models.stream_scoring.ChampionRegistry`).

    A missing model or alias is "no champion" (None); any other error (server unreachable)
    is raised, so the caller keeps its models and retries.
    """

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri, tracking_uri)

    def champion_version(self, name: str) -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(name, CHAMPION).version)
        except MlflowException as exc:
            missing_model = exc.error_code == "RESOURCE_DOES_NOT_EXIST"
            missing_alias = exc.error_code == "INVALID_PARAMETER_VALUE" and "alias" in str(exc)
            if missing_model or missing_alias:
                return None
            raise

    def load_version(self, name: str, version: str) -> RiskModel:
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        model = load_registered(f"models:/{name}/{version}")
        model.version = f"v{version} ({CHAMPION})"
        return model
