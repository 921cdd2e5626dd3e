"""Governance policy validation and proposals; the settings object's guard rails."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from serving.errors import PolicyError
from serving.policy import (
    ActionType,
    AlertContext,
    Mode,
    load_policy,
    propose,
    write_off_proposal,
)
from serving.settings import DEFAULT_POLICY, ServiceSettings


@pytest.fixture(scope="module")
def policy():
    return load_policy(DEFAULT_POLICY)


def modes(policy, **ctx) -> dict[ActionType, Mode]:
    base = dict(kind="phantom", score=0.7, on_hand=10, unit_value=10.0, counts_opened_today=0)
    return {p.action: p.mode for p in propose(policy, AlertContext(**{**base, **ctx}))}


def test_default_policy_is_valid_and_versioned(policy) -> None:
    assert policy.version == "2026.11-1"
    assert policy.severity(0.95) == "critical" and policy.severity(0.4) is None


def test_cycle_count_automatic_above_threshold_while_budget_lasts(policy) -> None:
    budget = policy.actions.open_cycle_count.daily_count_budget_per_store
    assert modes(policy, score=0.85)[ActionType.OPEN_CYCLE_COUNT] is Mode.AUTOMATIC
    full = modes(policy, score=0.85, counts_opened_today=budget)
    assert full[ActionType.OPEN_CYCLE_COUNT] is Mode.APPROVAL
    assert modes(policy, score=0.6)[ActionType.OPEN_CYCLE_COUNT] is Mode.APPROVAL


def test_queue_priority_is_risk_times_value(policy) -> None:
    (count, _hold) = propose(policy, AlertContext("phantom", 0.6, 30, 5.0, 0))
    assert count.priority == pytest.approx(0.6 * 30 * 5.0)


def test_atp_hold_automatic_only_below_the_value_threshold(policy) -> None:
    limit = policy.actions.lower_atp_exposure.auto_max_value
    assert (
        modes(policy, on_hand=1, unit_value=limit)[ActionType.LOWER_ATP_EXPOSURE] is Mode.AUTOMATIC
    )
    assert (
        modes(policy, on_hand=2, unit_value=limit)[ActionType.LOWER_ATP_EXPOSURE] is Mode.APPROVAL
    )


def test_routing_is_recommendation_only_and_write_off_never_automatic(policy) -> None:
    assert modes(policy, kind="stockout", score=0.99) == {
        ActionType.ROUTE_TO_ALTERNATE_NODE: Mode.RECOMMEND_ONLY
    }
    limit = policy.actions.inventory_write_off.two_approvers_above_value
    small = write_off_proposal(policy, 1, 1.0)
    big = write_off_proposal(policy, 1, limit + 1)
    assert small.mode is big.mode is Mode.APPROVAL
    assert (small.required_approvals, big.required_approvals) == (1, 2)


def test_invalid_policy_names_the_field(tmp_path: Path) -> None:
    data = yaml.safe_load(DEFAULT_POLICY.read_text())
    data["actions"]["lower_atp_exposure"]["hold_fraction"] = 3
    bad = tmp_path / "policy.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(PolicyError, match="actions.lower_atp_exposure.hold_fraction"):
        load_policy(bad)
    del data["version"]
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(PolicyError, match="version"):
        load_policy(bad)
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(tmp_path / "missing.yaml")


def test_settings_refuse_default_secret_outside_dev(monkeypatch) -> None:
    monkeypatch.setenv("SHELFGUARD_ENV", "prod")
    with pytest.raises(ValidationError, match="SHELFGUARD_TOKEN_PEPPER"):
        ServiceSettings()
    monkeypatch.setenv("SHELFGUARD_TOKEN_PEPPER", "x" * 40)
    monkeypatch.setenv("SHELFGUARD_DATABASE_URL", "postgresql://u:p@h/db")
    settings = ServiceSettings()
    assert settings.database_url == "postgresql://u:p@h/db"
    with pytest.raises(ValidationError):
        settings.env = "dev"  # frozen


def test_dev_mode_runs_with_defaults(monkeypatch) -> None:
    monkeypatch.delenv("SHELFGUARD_ENV", raising=False)
    assert ServiceSettings().env.value == "dev"
