"""The business state machine of a refresh job.

The happy path follows the pipeline diagram in DESIGN.md; every other edge is listed in ``TRANSITIONS``
and nothing else is accepted::

    refresh_needed ─▶ planned ─▶ compared ─▶ drafted ─▶ linked ─▶ validated ─▶ awaiting_review
                                               ▲          │           │            │  │  │
                                               └──────────┴───────────┴────────────┘  │  └─▶ rejected
                                                   re-draft (changes requested,       │  └─▶ approval_expired
                                                   draft or page changed)             ▼
                                               drafted ◀────────────────────────── approved ─▶ published
                                                                                              │
                                        refresh_needed ◀── monitoring ◀────────────────────────┘

    any live state ─▶ failed | cancelled        (terminal; both need a stop reason)

``rejected``, ``approval_expired``, ``failed`` and ``cancelled`` are terminal: nothing leaves them, and
entering one requires a :class:`StopReason` from ``TERMINAL_STOP_REASONS[state]``. ``monitoring`` is a
resting state, not terminal: an audit can raise ``refresh_needed`` on the same job again.

*Live* states are the ones where work is in flight or due; the ledger never holds two live jobs for one
page (a partial unique index). ``monitoring`` and the terminal states are not live.
"""

from __future__ import annotations

from enum import StrEnum

from sitesteward.errors import IllegalTransition


class JobState(StrEnum):
    """Where a job is in its life (the ledger's ``jobs.state``)."""

    refresh_needed = "refresh_needed"
    planned = "planned"
    compared = "compared"
    drafted = "drafted"
    linked = "linked"
    validated = "validated"
    awaiting_review = "awaiting_review"
    approved = "approved"
    published = "published"
    monitoring = "monitoring"
    rejected = "rejected"
    approval_expired = "approval_expired"
    failed = "failed"
    cancelled = "cancelled"


class StopReason(StrEnum):
    """Why a job reached a terminal state (``jobs.stop_reason``)."""

    rejected = "rejected"  # a reviewer said no
    approval_expired = "approval_expired"  # nobody decided before the deadline; never auto-approved
    retries_exhausted = "retries_exhausted"  # the same failure repeated past the attempt budget
    bad_input = "bad_input"  # the page, source or configuration cannot be worked on
    policy_violation = "policy_violation"  # a guard rail refused the draft or the target
    budget_exceeded = "budget_exceeded"  # token, cost or per-run page budget spent
    unclear_state = "unclear_state"  # ledger and reality disagree in a way that needs a person
    publish_failed = "publish_failed"  # the target refused the edit permanently
    verification_failed = "verification_failed"  # published, but the re-crawl does not show the edit
    cancelled = "cancelled"  # an operator cancelled it
    superseded = "superseded"  # a newer job for the same page replaces it
    nothing_to_change = "nothing_to_change"  # the comparison found nothing worth a draft


TERMINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.rejected, JobState.approval_expired, JobState.failed, JobState.cancelled}
)

#: States in which work is in flight or due. At most one live job per page.
LIVE_STATES: frozenset[JobState] = frozenset(
    {
        JobState.refresh_needed,
        JobState.planned,
        JobState.compared,
        JobState.drafted,
        JobState.linked,
        JobState.validated,
        JobState.awaiting_review,
        JobState.approved,
        JobState.published,
    }
)

#: The forward path of a job, in order (a step only ever moves a job forward along it).
FORWARD_ORDER: tuple[JobState, ...] = (
    JobState.refresh_needed,
    JobState.planned,
    JobState.compared,
    JobState.drafted,
    JobState.linked,
    JobState.validated,
    JobState.awaiting_review,
    JobState.approved,
    JobState.published,
    JobState.monitoring,
)

#: States a job may be created in.
INITIAL_STATES: frozenset[JobState] = frozenset({JobState.refresh_needed, JobState.planned})

_STOPPABLE = frozenset({JobState.failed, JobState.cancelled})

#: The allowed edges, from -> to. Everything not listed is refused with IllegalTransition.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.refresh_needed: frozenset({JobState.planned}) | _STOPPABLE,
    JobState.planned: frozenset({JobState.compared}) | _STOPPABLE,
    JobState.compared: frozenset({JobState.drafted}) | _STOPPABLE,
    JobState.drafted: frozenset({JobState.linked}) | _STOPPABLE,
    JobState.linked: frozenset({JobState.validated, JobState.drafted}) | _STOPPABLE,
    JobState.validated: frozenset({JobState.awaiting_review, JobState.drafted}) | _STOPPABLE,
    JobState.awaiting_review: frozenset(
        {JobState.approved, JobState.rejected, JobState.approval_expired, JobState.drafted}
    )
    | _STOPPABLE,
    # approved -> drafted: the page changed before publishing, the approved draft no longer applies.
    JobState.approved: frozenset({JobState.published, JobState.drafted}) | _STOPPABLE,
    # published is a fact about the target: it cannot be cancelled, only verified or found wanting.
    JobState.published: frozenset({JobState.monitoring, JobState.failed}),
    JobState.monitoring: frozenset({JobState.refresh_needed, JobState.cancelled}),
    JobState.rejected: frozenset(),
    JobState.approval_expired: frozenset(),
    JobState.failed: frozenset(),
    JobState.cancelled: frozenset(),
}

#: The stop reasons each terminal state accepts.
TERMINAL_STOP_REASONS: dict[JobState, frozenset[StopReason]] = {
    JobState.rejected: frozenset({StopReason.rejected}),
    JobState.approval_expired: frozenset({StopReason.approval_expired}),
    JobState.cancelled: frozenset(
        {StopReason.cancelled, StopReason.superseded, StopReason.nothing_to_change}
    ),
    JobState.failed: frozenset(
        {
            StopReason.retries_exhausted,
            StopReason.bad_input,
            StopReason.policy_violation,
            StopReason.budget_exceeded,
            StopReason.unclear_state,
            StopReason.publish_failed,
            StopReason.verification_failed,
        }
    ),
}


def is_terminal(state: JobState) -> bool:
    """Tell whether nothing can leave ``state``."""
    return state in TERMINAL_STATES


def is_live(state: JobState) -> bool:
    """Tell whether ``state`` counts as the page's one live job."""
    return state in LIVE_STATES


def check_transition(current: JobState, target: JobState, stop_reason: StopReason | None) -> None:
    """Validate one state change against the table.

    Args:
        current: The job's state now.
        target: The state asked for.
        stop_reason: Required when ``target`` is terminal (and must fit it); refused otherwise.

    Raises:
        IllegalTransition: the edge is not in ``TRANSITIONS`` or the stop reason is missing or wrong.
    """
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing (terminal)"
        raise IllegalTransition(f"{current} -> {target} is not allowed; {current} may go to: {allowed}")
    if target in TERMINAL_STATES:
        if stop_reason is None:
            raise IllegalTransition(f"{current} -> {target} needs a stop reason")
        if stop_reason not in TERMINAL_STOP_REASONS[target]:
            allowed = ", ".join(sorted(TERMINAL_STOP_REASONS[target]))
            raise IllegalTransition(f"stop reason {stop_reason} does not fit {target}; use one of: {allowed}")
    elif stop_reason is not None:
        raise IllegalTransition(f"{target} is not terminal: a stop reason ({stop_reason}) makes no sense")
