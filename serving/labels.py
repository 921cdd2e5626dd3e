"""Field labels: completed cycle counts as training rows for ``shelfguard train --labels``.

A count task comes from an alert; the alert kept the feature snapshot its score was computed
from (``ScoreIn.features``), and completing the count copies that snapshot and its time into the
label (:class:`~serving.store.tables.CountLabel`). :func:`label_frame` turns labels into rows
of the training set's shape, one per completed count:

- ``world`` = :data:`FIELD_WORLD`, ``sku``, ``location``, ``as_of`` (the snapshot's time, UTC);
- every feature of :data:`pipelines.features.FEATURES` (NaN where the score came without a
  snapshot; ``has_features`` says which rows have one);
- ``phantom`` in the phantom model's meaning (:data:`models.spec.PHANTOM`): 1 when the record
  said at least 1 unit and the count found the shelf empty, else 0. A count that found fewer
  units than recorded but not zero is the service's ``confirmed_phantom`` outcome (a record
  error), yet the shelf was not empty, so its training label is 0 — ``outcome`` keeps the
  service's verdict;
- ``stockout_72h`` = NaN (a count says nothing about the next 72 hours; the stockout model
  skips these rows);
- provenance: ``task_id, alert_id, outcome, recorded_on_hand, counted_quantity, counted_at,
  score, model``.

Exchange formats: Parquet, or JSONL (one object per line, NaN as null, times ISO-8601 UTC).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pandas as pd

from models.scoring import FEATURE_COLUMN_PREFIX
from models.spec import MODEL_FEATURES
from pipelines.events import format_ts
from pipelines.features import FEATURES
from serving.errors import InvalidRequest
from serving.store.tables import CountLabel

FIELD_WORLD = "field-labels"
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
#: what ``training.train.train(extra_labels=...)`` gets: identity, model inputs, price, labels
TRAINING_COLUMNS: tuple[str, ...] = (
    "world",
    "sku",
    "location",
    "as_of",
    *MODEL_FEATURES,
    "unit_price",
    "phantom",
    "stockout_72h",
)
PROVENANCE_COLUMNS: tuple[str, ...] = (
    "task_id",
    "alert_id",
    "outcome",
    "recorded_on_hand",
    "counted_quantity",
    "counted_at",
    "score",
    "model",
    "has_features",
)
Format = Literal["parquet", "jsonl"]


def training_phantom(recorded_on_hand: int, counted: int) -> int:
    """The phantom model's label from a count: record ≥ 1 and the shelf empty."""
    return int(recorded_on_hand >= 1 and counted == 0)


def service_outcome(label: CountLabel) -> str:
    return "confirmed_phantom" if label.phantom else "false_alarm"


# -- scores carry their feature snapshot -------------------------------------------------------
def features_from_row(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``feature.<name>`` entries of a flat score row as {name: value}; None if it has none.
    Values are passed through (validation is :class:`~serving.schemas.ScoreIn`'s)."""
    found = {
        key[len(FEATURE_COLUMN_PREFIX) :]: value
        for key, value in row.items()
        if isinstance(key, str) and key.startswith(FEATURE_COLUMN_PREFIX)
    }
    return found or None


# -- labels → training rows ----------------------------------------------------------------------
def label_frame(labels: Iterable[CountLabel]) -> pd.DataFrame:
    """One row per label (see the module docstring), in the order given."""
    rows = []
    for label in labels:
        snapshot = label.features or {}
        row: dict[str, Any] = {
            "world": FIELD_WORLD,
            "sku": label.sku,
            "location": label.location,
            "as_of": label.as_of or label.counted_at,
            **{name: _number(snapshot.get(name)) for name in FEATURE_NAMES},
            "phantom": training_phantom(label.recorded_on_hand, label.counted_quantity),
            "stockout_72h": math.nan,
            "task_id": label.task_id,
            "alert_id": label.alert_id,
            "outcome": service_outcome(label),
            "recorded_on_hand": label.recorded_on_hand,
            "counted_quantity": label.counted_quantity,
            "counted_at": label.counted_at,
            "score": label.score,
            "model": label.model,
            "has_features": bool(snapshot) and all(n in snapshot for n in MODEL_FEATURES),
        }
        rows.append(row)
    columns = ["world", "sku", "location", "as_of", *FEATURE_NAMES, "phantom", "stockout_72h"]
    frame = pd.DataFrame(rows, columns=[*columns, *PROVENANCE_COLUMNS])
    return _typed(frame)


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The export's dtypes for the columns present (JSONL reads back strings and objects)."""
    frame = frame.copy()
    columns = set(frame.columns)
    for name in columns & {"as_of", "counted_at"}:
        frame[name] = _utc_times(frame[name])
    for name in columns & {*FEATURE_NAMES, "stockout_72h", "score"}:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    for name in columns & {"phantom", "recorded_on_hand", "counted_quantity", "task_id"}:
        frame[name] = frame[name].astype("int64")
    if "alert_id" in columns:
        frame["alert_id"] = frame["alert_id"].astype("Int64")
    if "has_features" in columns:
        frame["has_features"] = frame["has_features"].astype(bool)
    return frame


def _utc_times(values: pd.Series) -> pd.Series:
    """UTC timestamps at microsecond resolution (any year 1-9999, unlike pandas' default ns).
    Accepts datetimes, pandas timestamps and ISO-8601 strings (JSONL)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    parsed = [datetime.fromisoformat(v) if isinstance(v, str) else v for v in values]
    return pd.Series(parsed, index=values.index, dtype=object).astype("datetime64[us, UTC]")


def training_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The rows of an exported label frame that can train a model, in ``TRAINING_COLUMNS``;
    returns (rows, number dropped because they have no feature snapshot)."""
    missing = [c for c in (*TRAINING_COLUMNS, "has_features") if c not in frame.columns]
    if missing:
        raise InvalidRequest(
            f"not a shelfguard label export: columns {', '.join(missing)} are missing; "
            "export with `shelfguard labels export` or GET /labels?format=parquet"
        )
    usable = frame[frame["has_features"].astype(bool)]
    rows = _typed(usable.reset_index(drop=True)).loc[:, list(TRAINING_COLUMNS)]
    return rows, len(frame) - len(usable)


# -- exchange formats ------------------------------------------------------------------------------
def to_bytes(frame: pd.DataFrame, fmt: Format) -> bytes:
    if fmt == "parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    lines = [json.dumps(_json_row(row), sort_keys=True) for row in frame.to_dict("records")]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, pd.Timestamp):
            value = format_ts(value.to_pydatetime())
        elif value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            value = None
        elif hasattr(value, "item"):  # numpy scalar
            value = value.item()
        out[key] = value
    return out


def from_bytes(data: bytes, fmt: Format) -> pd.DataFrame:
    if fmt == "parquet":
        return pd.read_parquet(io.BytesIO(data))
    rows = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
    if not rows:
        return pd.DataFrame(columns=[*TRAINING_COLUMNS, *PROVENANCE_COLUMNS])
    return pd.DataFrame(rows)


def format_of(path: Path | str) -> Format:
    suffix = Path(str(path)).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise InvalidRequest(f"{path}: name it *.parquet or *.jsonl so the format is known")


def write_labels(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_bytes(frame, format_of(path)))


class HttpGetter(Protocol):
    """What :func:`read_labels` needs of an HTTP client (``httpx`` or a test client)."""

    def get(self, url: str, *, headers: dict[str, str]) -> Any: ...


def read_labels(
    source: str | Path, token: str | None = None, client: HttpGetter | None = None
) -> pd.DataFrame:
    """An exported label frame from a file (``*.parquet``/``*.jsonl``) or from the service's
    ``GET /labels`` URL (``format=parquet`` is added when the URL names none; ``token`` is the
    data scientist's API token)."""
    text = str(source)
    if not text.startswith(("http://", "https://")):
        path = Path(text)
        if not path.exists():
            raise InvalidRequest(f"label file {path} does not exist")
        return from_bytes(path.read_bytes(), format_of(path))
    parts = urlsplit(text)
    query = parse_qs(parts.query)
    fmt = query.get("format", ["parquet"])[0]
    if fmt not in ("parquet", "jsonl"):
        raise InvalidRequest(f"{text}: format must be parquet or jsonl, not {fmt!r}")
    query["format"] = [fmt]
    url = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
    if client is None:
        import httpx

        client = httpx.Client(timeout=120)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.get(url, headers=headers)
    if response.status_code != 200:
        raise InvalidRequest(
            f"GET {url} answered {response.status_code}: {response.text[:300]}"
            + (" (set SHELFGUARD_TOKEN to a data_scientist's API token)" if not token else "")
        )
    return from_bytes(response.content, fmt)  # type: ignore[arg-type]
