"""Pydantic models of the HTTP API (request bodies and responses). Datetimes must carry a zone;
they are returned in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, HttpUrl, field_validator

from pipelines.features import FEATURES
from serving.auth import Role
from serving.workflow import Decision

Key = Field(min_length=1, max_length=100, pattern=r"^[^\s/|][^/|]*$")
FEATURE_NAMES = frozenset(f.name for f in FEATURES)
FeatureValue = Annotated[float, Field(allow_inf_nan=False)] | None


class ScoreIn(BaseModel):
    """One row of ``shelfguard score`` output (or one ``inventory.scores`` message)."""

    model_config = ConfigDict(extra="ignore")

    sku: str = Key
    location: str = Key
    phantom_score: float = Field(ge=0, le=1)
    stockout_score: float = Field(ge=0, le=1)
    phantom_explanation: str = Field("", max_length=2000)
    stockout_explanation: str = Field("", max_length=2000)
    on_hand: int = Field(ge=-10_000_000, le=10_000_000)
    reserved: int = Field(ge=0, le=10_000_000)
    atp: int | None = None
    as_of: AwareDatetime
    phantom_model: str = Field(min_length=1, max_length=100)
    stockout_model: str = Field(min_length=1, max_length=100)
    unit_value: float | None = Field(None, gt=0, le=1_000_000)
    features: dict[str, FeatureValue] | None = Field(
        None,
        description="The feature snapshot (pipelines.features names) the scores were computed "
        "from, as of `as_of`; kept with the alert so a count's outcome can become a training "
        "label. In a CSV row: columns `feature.<name>`.",
    )

    @field_validator("as_of")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @field_validator("features")
    @classmethod
    def _known_features(cls, value: dict[str, float | None] | None) -> dict | None:
        if value is None:
            return None
        unknown = sorted(set(value) - FEATURE_NAMES)
        if unknown:
            raise ValueError(
                f"unknown feature(s) {', '.join(unknown)[:300]}; use the names of "
                "pipelines.features.FEATURES"
            )
        return value or None


class ScoresIn(BaseModel):
    scores: list[ScoreIn] = Field(min_length=1, max_length=5000)


class IngestOut(BaseModel):
    alerts: list[int]
    suppressed: int
    recommendations: list[int]


class AlertOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    sku: str
    location: str
    kind: str
    score: float
    severity: str
    model: str
    explanation: str
    on_hand: int
    reserved: int
    atp: int
    as_of: datetime
    created_at: datetime
    status: str


class RecommendationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    alert_id: int | None
    action: str
    mode: str
    state: str
    sku: str
    location: str
    units: int
    value_at_risk: float
    priority: float
    required_approvals: int
    approvals: list[str] = []
    requested_by: str
    reason: str | None
    failure: str | None
    policy_version: str
    model_version: str | None
    erp_reference: str | None
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    version: int


class DecisionIn(BaseModel):
    decision: Decision
    reason: str | None = Field(None, max_length=2000)
    expected_version: int | None = Field(
        None, ge=1, description="The version you looked at; 409 if it changed since"
    )
    erp_reference: str | None = Field(None, max_length=100)


class WriteOffIn(BaseModel):
    sku: str = Key
    location: str = Key
    units: int = Field(gt=0, le=1_000_000)
    reason: str = Field(min_length=1, max_length=2000)
    erp_reference: str | None = Field(None, max_length=100)


class AtpOut(BaseModel):
    sku: str
    location: str
    on_hand: int
    reserved: int
    risk_hold: int
    safety_stock: int
    atp: int
    as_of: datetime


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    recommendation_id: int
    alert_id: int | None
    sku: str
    location: str
    store: str
    state: str
    recorded_on_hand: int
    counted_quantity: int | None
    completed_by: str | None
    created_at: datetime
    completed_at: datetime | None


class CountIn(BaseModel):
    counted_quantity: int = Field(ge=0, le=10_000_000)
    erp_reference: str | None = Field(None, max_length=100)


class CountOut(BaseModel):
    task: TaskOut
    outcome: str  # confirmed_phantom | false_alarm
    event_id: str


class LabelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    task_id: int
    alert_id: int | None
    sku: str
    location: str
    phantom: int
    recorded_on_hand: int
    counted_quantity: int
    score: float | None
    model: str | None
    counted_at: datetime
    as_of: datetime | None = Field(description="When the judged feature snapshot was taken")
    features: dict[str, Any] | None = Field(description="The alert's feature snapshot")


class ExceptionOut(BaseModel):
    """A reconciliation exception: the stream's figure and the source's, and recent events."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    sku: str
    location: str
    source: str
    as_of: datetime
    stream_on_hand: int | None
    source_on_hand: int | None
    difference: int
    tolerance: dict[str, Any]
    last_events: list[dict[str, Any]]
    status: str
    detected_at: datetime
    detected_by: str


class UserIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: Role


class UserOut(BaseModel):
    name: str
    role: Role
    token: str = Field(description="Shown once; only its hash is stored")


class WebhookIn(BaseModel):
    url: HttpUrl
    secret: str = Field(min_length=16, max_length=200, description="HMAC-SHA256 signing key")


class WebhookOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    url: str
    active: bool
    created_at: datetime


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    webhook_id: int
    event: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    policy_version: str | None
    model_version: str | None
    erp_reference: str | None
    payload: dict[str, Any]
    hash: str


class VerifyOut(BaseModel):
    ok: bool
    rows: int
    first_bad_seq: int | None
    problem: str | None


class SweepOut(BaseModel):
    expired_recommendations: int
    expired_holds: int
    webhook_attempts: int
