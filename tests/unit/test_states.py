"""The job state machine's table: exactly the documented edges, stop reasons where they belong."""

from __future__ import annotations

import itertools

import pytest

from sitesteward.errors import IllegalTransition
from sitesteward.ledger.states import (
    INITIAL_STATES,
    LIVE_STATES,
    TERMINAL_STATES,
    TERMINAL_STOP_REASONS,
    TRANSITIONS,
    JobState,
    StopReason,
    check_transition,
    is_live,
    is_terminal,
)

HAPPY_PATH = [
    JobState.planned,
    JobState.compared,
    JobState.drafted,
    JobState.linked,
    JobState.validated,
    JobState.awaiting_review,
    JobState.approved,
    JobState.published,
    JobState.monitoring,
]


def test_table_covers_every_state_and_terminals_have_no_exit() -> None:
    assert set(TRANSITIONS) == set(JobState)
    for state in TERMINAL_STATES:
        assert TRANSITIONS[state] == frozenset(), state
    assert set(TERMINAL_STOP_REASONS) == TERMINAL_STATES
    assert {
        JobState.rejected,
        JobState.approval_expired,
        JobState.failed,
        JobState.cancelled,
    } == TERMINAL_STATES


def test_live_states_are_neither_terminal_nor_monitoring() -> None:
    assert not (LIVE_STATES & TERMINAL_STATES)
    assert JobState.monitoring not in LIVE_STATES
    assert LIVE_STATES | TERMINAL_STATES | {JobState.monitoring} == set(JobState)
    assert is_live(JobState.awaiting_review) and not is_live(JobState.monitoring)
    assert is_terminal(JobState.failed) and not is_terminal(JobState.monitoring)
    assert INITIAL_STATES <= LIVE_STATES


def test_happy_path_is_allowed_step_by_step() -> None:
    for current, target in itertools.pairwise(
        [JobState.refresh_needed, *HAPPY_PATH, JobState.refresh_needed]
    ):
        check_transition(current, target, None)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(JobState, JobState)))
def test_every_pair_is_decided_by_the_table(current: JobState, target: JobState) -> None:
    reason = next(iter(sorted(TERMINAL_STOP_REASONS[target]))) if target in TERMINAL_STATES else None
    if target in TRANSITIONS[current]:
        check_transition(current, target, reason)
    else:
        with pytest.raises(IllegalTransition, match="not allowed"):
            check_transition(current, target, reason)


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES))
def test_terminal_states_need_a_fitting_stop_reason(terminal: JobState) -> None:
    with pytest.raises(IllegalTransition, match="needs a stop reason"):
        check_transition(JobState.awaiting_review, terminal, None)
    wrong = next(r for r in StopReason if r not in TERMINAL_STOP_REASONS[terminal])
    with pytest.raises(IllegalTransition, match="does not fit"):
        check_transition(JobState.awaiting_review, terminal, wrong)
    for reason in TERMINAL_STOP_REASONS[terminal]:
        check_transition(JobState.awaiting_review, terminal, reason)


def test_stop_reason_on_a_live_state_is_refused() -> None:
    with pytest.raises(IllegalTransition, match="not terminal"):
        check_transition(JobState.planned, JobState.compared, StopReason.bad_input)


@pytest.mark.parametrize(
    "source", [JobState.linked, JobState.validated, JobState.awaiting_review, JobState.approved]
)
def test_redraft_edges(source: JobState) -> None:
    check_transition(source, JobState.drafted, None)


def test_published_cannot_be_cancelled_or_skip_verification() -> None:
    with pytest.raises(IllegalTransition):
        check_transition(JobState.published, JobState.cancelled, StopReason.cancelled)
    with pytest.raises(IllegalTransition):
        check_transition(JobState.validated, JobState.published, None)
    with pytest.raises(IllegalTransition):
        check_transition(JobState.awaiting_review, JobState.published, None)


def test_every_stop_reason_fits_some_terminal_state() -> None:
    used = set().union(*TERMINAL_STOP_REASONS.values())
    assert used == set(StopReason)
