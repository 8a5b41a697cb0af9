"""What the ledger returns: frozen pydantic records, never ORM rows or SQL result rows."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from sitesteward.ledger.states import JobState, StopReason, is_live, is_terminal
from sitesteward.models import Contract


class StepStatus(StrEnum):
    running = "running"
    completed = "completed"
    failed = "failed"


class EffectStatus(StrEnum):
    pending = "pending"  # intent written, the side effect may or may not have happened
    applied = "applied"  # the side effect happened and was recorded by the caller that made it
    reconciled = "reconciled"  # found already in place after a crash, recorded without a second write
    failed = "failed"  # the side effect was refused permanently


class Decision(StrEnum):
    approve = "approve"
    reject = "reject"
    request_changes = "request_changes"


class Channel(StrEnum):
    cli = "cli"
    ui = "ui"
    auto = "auto"


class JobRecord(Contract):
    """One row of ``jobs``."""

    job_id: str
    site: str
    page_url: str
    trigger: str = Field(description="The trigger fingerprint the job id was derived from.")
    goal: str
    inputs: dict[str, Any]
    state: JobState
    current_step: str | None
    stop_reason: StopReason | None
    failure_reason: str | None
    next_action: str | None
    output_location: str | None
    draft_sha: str | None
    flow_run_id: str | None
    triage_note: str | None
    version: int = Field(description="Compare-and-set version; also the lease fencing token.")
    lease_owner: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def terminal(self) -> bool:
        return is_terminal(self.state)

    @property
    def live(self) -> bool:
        return is_live(self.state)


class Submission(Contract):
    """The answer to a job submission: the job, and whether this call created it."""

    job: JobRecord
    created: bool
    duplicate_of_live: bool = Field(
        default=False, description="True when another live job for the page was returned instead."
    )


class AttemptRecord(Contract):
    """One failed attempt of a step (``attempts``)."""

    job_id: str
    step: str
    number: int
    error_class: str
    message: str
    at: datetime


class StepRecord(Contract):
    """One row of ``steps``: a step run for one input hash."""

    job_id: str
    step: str
    input_hash: str
    status: StepStatus
    attempts: int
    output_ref: dict[str, Any] | None
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class EffectRecord(Contract):
    """One row of ``effects``: a side effect's intent and completion."""

    key: str = Field(description="Idempotency key job_id:step:draft_sha.")
    job_id: str
    step: str
    draft_sha: str
    target: str
    status: EffectStatus
    revision: str | None
    error: str | None
    created_at: datetime
    completed_at: datetime | None
    updated_at: datetime

    @property
    def done(self) -> bool:
        return self.status in {EffectStatus.applied, EffectStatus.reconciled}


class ApprovalRecord(Contract):
    """One row of ``approvals``: the request and (once made) the decision for one draft."""

    job_id: str
    draft_sha: str
    decision: Decision | None
    reviewer: str | None
    notes: str | None
    channel: Channel | None
    requested_at: datetime
    decided_at: datetime | None
    expires_at: datetime | None

    @property
    def pending(self) -> bool:
        return self.decision is None


class EvidenceRecord(Contract):
    """One record of the append-only, hash-chained ``evidence`` table."""

    seq: int
    job_id: str
    kind: str
    check: str
    payload: dict[str, Any]
    payload_sha: str
    prev_hash: str
    hash: str
    created_at: datetime


class ChainVerification(Contract):
    """The result of :meth:`Ledger.verify_chain`."""

    job_id: str
    ok: bool
    records: int
    head: str | None = Field(description="Hash of the newest record (None for an empty chain).")
    problem: str | None = None
