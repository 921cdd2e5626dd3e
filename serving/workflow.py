"""The recommendation lifecycle: one transition table, one function that enforces it, and the
decision rules (maker-checker, reasons, number of approvers) on top.

::

    pending ──approve──▶ approved ──effect ok──▶ applied
       │                     └──effect error──▶ failed
       ├──reject (reason)──▶ rejected
       └──past expires_at──▶ expired

Terminal states have no way out: deciding a recommendation twice is an
:class:`~serving.errors.InvalidTransition` (HTTP 409).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from serving.errors import Forbidden, InvalidRequest, InvalidTransition


class RecState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    APPLIED = "applied"
    FAILED = "failed"


TRANSITIONS: dict[RecState, frozenset[RecState]] = {
    RecState.PENDING: frozenset({RecState.APPROVED, RecState.REJECTED, RecState.EXPIRED}),
    RecState.APPROVED: frozenset({RecState.APPLIED, RecState.FAILED}),
    RecState.REJECTED: frozenset(),
    RecState.EXPIRED: frozenset(),
    RecState.APPLIED: frozenset(),
    RecState.FAILED: frozenset(),
}

TERMINAL = frozenset(s for s, targets in TRANSITIONS.items() if not targets)


def transition(current: RecState, target: RecState) -> RecState:
    """Return ``target`` when the table allows ``current → target``; else raise 409."""
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(
            f"a {current.value} recommendation cannot become {target.value}"
            + (" (it has already been decided)" if current is not RecState.PENDING else "")
        )
    return target


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class DecisionOutcome:
    """What a valid decision does: the new state (None = still pending, needs more approvers)."""

    new_state: RecState | None
    record_approval: bool


def decide(
    *,
    state: RecState,
    decision: Decision,
    actor: str,
    requested_by: str,
    approvers_so_far: frozenset[str],
    required_approvals: int,
    reason: str | None,
) -> DecisionOutcome:
    """Check one human decision and say what it changes.

    - the requester never decides their own recommendation (maker-checker): 403;
    - a rejection needs a non-blank reason: 422;
    - one person approves at most once: 409;
    - an approval moves the state only once ``required_approvals`` distinct people approved.
    """
    if actor == requested_by:
        raise Forbidden(
            f"{actor} requested this recommendation and cannot decide it (maker-checker); "
            "ask another approver"
        )
    if decision is Decision.REJECT:
        if not reason or not reason.strip():
            raise InvalidRequest("a reason is required to reject a recommendation")
        return DecisionOutcome(transition(state, RecState.REJECTED), record_approval=False)
    transition(state, RecState.APPROVED)  # validates that the state is still pending
    if actor in approvers_so_far:
        raise InvalidTransition(f"{actor} has already approved; another approver must decide")
    enough = len(approvers_so_far) + 1 >= required_approvals
    return DecisionOutcome(RecState.APPROVED if enough else None, record_approval=True)
