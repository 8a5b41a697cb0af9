"""The sweeper's decisions: expire overdue approvals, find stalled jobs (domain logic, no Prefect).

Safe to run twice at once: every state change is a compare-and-set on the job's version, so of two
sweepers only one moves a job; the other sees ``StaleVersion``/``IllegalTransition`` and moves on.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from sitesteward.errors import IllegalTransition, StaleVersion
from sitesteward.ledger import JobState, Ledger, StopReason
from sitesteward.models import Contract
from sitesteward.triage import TriageNote


class SweepReport(Contract):
    """What one sweep did and what it asks the flow to restart."""

    expired: list[str] = Field(default_factory=list, description="Jobs moved to approval_expired.")
    restart: list[str] = Field(
        default_factory=list, description="Stalled jobs to run again from their checkpoint."
    )


def sweep_ledger(ledger: Ledger, *, idle_after: timedelta, limit: int) -> SweepReport:
    """Expire approvals past their deadline (never auto-approving) and list stalled jobs.

    Args:
        ledger: The ledger.
        idle_after: A leaseless live job unchanged for this long counts as stalled.
        limit: Restart at most this many jobs per sweep.
    """
    expired: list[str] = []
    for approval in ledger.expired_approvals():
        job = ledger.find_job(approval.job_id)
        if job is None or job.state is not JobState.awaiting_review or job.draft_sha != approval.draft_sha:
            continue
        try:
            next_action = "run the audit again; a new draft will ask for a new approval"
            note = TriageNote(
                summary=f"waited for review from {approval.requested_at:%Y-%m-%d %H:%M} until the deadline",
                failure_class="policy",
                next_action=next_action,
                retryable=False,
                attempts=0,
                last_step="approval",
            )
            ledger.transition(
                job.job_id,
                JobState.approval_expired,
                expected_version=job.version,
                stop_reason=StopReason.approval_expired,
                failure_reason=f"no decision on draft {approval.draft_sha[:12]} by {approval.expires_at}",
                next_action=next_action,
                triage_note=note.model_dump_json(),
            )
            expired.append(job.job_id)
        except (StaleVersion, IllegalTransition):
            continue  # another sweeper or a late decision got there first
    stalled = ledger.stalled_jobs(idle_after=idle_after)
    return SweepReport(expired=expired, restart=[job.job_id for job in stalled[:limit]])
