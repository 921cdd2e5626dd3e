"""The recommendation transition table and decision rules: properties (hypothesis) and cases."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serving.errors import Forbidden, InvalidRequest, InvalidTransition
from serving.workflow import TERMINAL, TRANSITIONS, Decision, RecState, decide, transition

states = st.sampled_from(list(RecState))


@given(states, states)
def test_transition_follows_the_table_exactly(current, target) -> None:
    if target in TRANSITIONS[current]:
        assert transition(current, target) is target
    else:
        with pytest.raises(InvalidTransition):
            transition(current, target)


@given(st.lists(states, max_size=12))
def test_every_accepted_path_starts_pending_and_stops_at_a_terminal_state(targets) -> None:
    state = RecState.PENDING
    for target in targets:
        try:
            state = transition(state, target)
        except InvalidTransition:
            continue
    # at most two moves are ever possible, and terminal states never move again
    assert (
        state in TRANSITIONS[RecState.PENDING] | {RecState.PENDING} | TRANSITIONS[RecState.APPROVED]
    )
    if state in TERMINAL:
        assert all(t not in TRANSITIONS[state] for t in RecState)


def test_the_table_is_the_issue_s_lifecycle() -> None:
    assert TRANSITIONS[RecState.PENDING] == {RecState.APPROVED, RecState.REJECTED, RecState.EXPIRED}
    assert TRANSITIONS[RecState.APPROVED] == {RecState.APPLIED, RecState.FAILED}
    assert TERMINAL == {RecState.REJECTED, RecState.EXPIRED, RecState.APPLIED, RecState.FAILED}


names = st.sampled_from(["ana", "bert", "carl", "dora"])


@given(
    state=states,
    decision=st.sampled_from(list(Decision)),
    actor=names,
    requester=names,
    approvers=st.frozensets(names, max_size=3),
    required=st.integers(1, 3),
    reason=st.one_of(st.none(), st.just(""), st.just("   "), st.just("stock seen on shelf")),
)
def test_decide_never_lets_the_requester_decide_and_never_moves_a_decided_one(
    state, decision, actor, requester, approvers, required, reason
) -> None:
    kwargs = dict(
        state=state,
        decision=decision,
        actor=actor,
        requested_by=requester,
        approvers_so_far=approvers,
        required_approvals=required,
        reason=reason,
    )
    if actor == requester:
        with pytest.raises(Forbidden):
            decide(**kwargs)
        return
    if decision is Decision.REJECT and not (reason and reason.strip()):
        with pytest.raises(InvalidRequest):
            decide(**kwargs)
        return
    if state is not RecState.PENDING or (decision is Decision.APPROVE and actor in approvers):
        with pytest.raises(InvalidTransition):
            decide(**kwargs)
        return
    outcome = decide(**kwargs)
    if decision is Decision.REJECT:
        assert outcome.new_state is RecState.REJECTED and not outcome.record_approval
    else:
        assert outcome.record_approval
        enough = len(approvers) + 1 >= required
        assert outcome.new_state is (RecState.APPROVED if enough else None)
