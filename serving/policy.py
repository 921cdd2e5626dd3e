"""The governance policy: a validated, versioned YAML file (default ``serving/policy.yaml``).

:func:`load_policy` refuses a file that is missing, not YAML, or breaks the schema, with the
offending field in the message. :func:`propose` is the policy's one decision: given an alert's
context it returns the actions to take, each with its :class:`Mode` — automatic, approval
(with how many approvers) or recommendation only. Scores are calibrated probabilities in [0, 1];
values are units × unit value in the retailer's currency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import yaml  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from serving.errors import PolicyError


class ActionType(StrEnum):
    OPEN_CYCLE_COUNT = "open_cycle_count"
    LOWER_ATP_EXPOSURE = "lower_atp_exposure"
    ROUTE_TO_ALTERNATE_NODE = "route_to_alternate_node"
    INVENTORY_WRITE_OFF = "inventory_write_off"


class Mode(StrEnum):
    AUTOMATIC = "automatic"
    APPROVAL = "approval"
    RECOMMEND_ONLY = "recommend_only"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Probability = Field(ge=0.0, le=1.0)


class SeverityBands(_Strict):
    critical: float = Probability
    high: float = Probability
    medium: float = Probability

    @model_validator(mode="after")
    def _ordered(self) -> SeverityBands:
        if not self.critical >= self.high >= self.medium:
            raise ValueError("severity bands must satisfy critical >= high >= medium")
        return self


class AlertPolicy(_Strict):
    min_score: float = Probability
    severity: SeverityBands
    cooldown_hours: float = Field(ge=0)


class CycleCountPolicy(_Strict):
    min_phantom_score: float = Probability
    auto_phantom_threshold: float = Probability
    daily_count_budget_per_store: int = Field(ge=0)


class AtpHoldPolicy(_Strict):
    min_phantom_score: float = Probability
    hold_fraction: float = Field(gt=0.0, le=1.0)
    auto_max_value: float = Field(ge=0)
    hold_ttl_hours: float = Field(gt=0)


class RoutePolicy(_Strict):
    min_stockout_score: float = Probability


class WriteOffPolicy(_Strict):
    two_approvers_above_value: float = Field(ge=0)


class ActionPolicies(_Strict):
    open_cycle_count: CycleCountPolicy
    lower_atp_exposure: AtpHoldPolicy
    route_to_alternate_node: RoutePolicy
    inventory_write_off: WriteOffPolicy


class Policy(_Strict):
    version: str = Field(min_length=1, max_length=50)
    alerts: AlertPolicy
    default_unit_value: float = Field(gt=0)
    recommendation_ttl_hours: float = Field(gt=0)
    actions: ActionPolicies

    def severity(self, score: float) -> str | None:
        """``critical | high | medium`` for a score, or None below ``alerts.min_score``."""
        if score < self.alerts.min_score:
            return None
        bands = self.alerts.severity
        for name, floor in (("critical", bands.critical), ("high", bands.high)):
            if score >= floor:
                return name
        return "medium"


def load_policy(path: Path) -> Policy:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise PolicyError(
            f"policy file {path} does not exist; set SHELFGUARD_POLICY_PATH"
        ) from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file {path} is not valid YAML: {exc}") from None
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise PolicyError(f"policy file {path} is invalid: {problems}") from None


@dataclass(frozen=True, slots=True)
class AlertContext:
    """What the policy sees of one alert."""

    kind: str  # phantom | stockout
    score: float
    on_hand: int
    unit_value: float
    counts_opened_today: int  # automatic counts already opened at the store this UTC day


@dataclass(frozen=True, slots=True)
class Proposal:
    action: ActionType
    mode: Mode
    units: int
    value_at_risk: float
    priority: float  # risk × value at risk; the approval queue sorts by it, highest first
    required_approvals: int


def propose(policy: Policy, ctx: AlertContext) -> list[Proposal]:
    """The actions an alert calls for under ``policy`` (possibly none)."""
    acts = policy.actions
    value = max(ctx.on_hand, 0) * ctx.unit_value
    out: list[Proposal] = []
    if ctx.kind == "phantom":
        count = acts.open_cycle_count
        if ctx.score >= count.min_phantom_score:
            auto = (
                ctx.score >= count.auto_phantom_threshold
                and ctx.counts_opened_today < count.daily_count_budget_per_store
            )
            out.append(
                Proposal(
                    ActionType.OPEN_CYCLE_COUNT,
                    Mode.AUTOMATIC if auto else Mode.APPROVAL,
                    max(ctx.on_hand, 0),
                    value,
                    ctx.score * value,
                    0 if auto else 1,
                )
            )
        hold = acts.lower_atp_exposure
        units = math.ceil(hold.hold_fraction * max(ctx.on_hand, 0))
        if ctx.score >= hold.min_phantom_score and units > 0:
            held_value = units * ctx.unit_value
            auto = held_value <= hold.auto_max_value
            out.append(
                Proposal(
                    ActionType.LOWER_ATP_EXPOSURE,
                    Mode.AUTOMATIC if auto else Mode.APPROVAL,
                    units,
                    held_value,
                    ctx.score * held_value,
                    0 if auto else 1,
                )
            )
    elif ctx.kind == "stockout" and ctx.score >= acts.route_to_alternate_node.min_stockout_score:
        out.append(
            Proposal(
                ActionType.ROUTE_TO_ALTERNATE_NODE,
                Mode.RECOMMEND_ONLY,
                0,
                value,
                ctx.score * value,
                1,
            )
        )
    return out


def write_off_proposal(policy: Policy, units: int, unit_value: float) -> Proposal:
    """A requested write-off: always approval, two approvers above the policy's value."""
    value = units * unit_value
    approvers = 2 if value > policy.actions.inventory_write_off.two_approvers_above_value else 1
    return Proposal(ActionType.INVENTORY_WRITE_OFF, Mode.APPROVAL, units, value, value, approvers)
