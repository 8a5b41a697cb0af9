"""Ledger-first checkpoints for a job's steps (no Prefect: the executor decides how a step runs).

On resume the ledger is read first: a step committed there is not run again (its recorded output is
used), whatever an executor's cache says. A step that is not committed runs through the executor (a
Prefect task whose persisted, explicitly keyed result may still make it a cache hit, or a direct call)
and is then committed. Failures are counted in the ledger, so the attempt budget survives restarts; a
permanent failure or a spent budget stops the job with a reason, a next action and a triage note.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from pydantic import BaseModel

from sitesteward.errors import (
    BudgetExceeded,
    InvalidModelOutput,
    PageGone,
    PermanentError,
    PolicyViolation,
    StaleVersion,
)
from sitesteward.faults import FAULT_POINTS, fault_point
from sitesteward.jobs import JobInputs
from sitesteward.ledger import FORWARD_ORDER, JobRecord, JobState, Ledger, StopReason
from sitesteward.publish import EditConflict, TargetNotFound
from sitesteward.triage import FailureRecord, triage_note

M = TypeVar("M", bound=BaseModel)

#: Runs a step may fail in (each with its own executor retries for transient errors).
MAX_STEP_ATTEMPTS = 3


def _fault(name: str) -> None:
    if name in FAULT_POINTS:
        fault_point(name)


class JobStopped(Exception):
    """The job reached a terminal state during this run (the flow returns its outcome)."""

    def __init__(self, job: JobRecord) -> None:
        super().__init__(f"{job.job_id} stopped: {job.state} ({job.stop_reason})")
        self.job = job


def stop_reason_for(exc: BaseException) -> StopReason:
    """Which stop reason a permanent failure records."""
    if isinstance(exc, BudgetExceeded):
        return StopReason.budget_exceeded
    if isinstance(exc, PolicyViolation | InvalidModelOutput):
        return StopReason.policy_violation
    if isinstance(exc, EditConflict | TargetNotFound):
        return StopReason.publish_failed
    if isinstance(exc, PageGone):
        return StopReason.bad_input
    return StopReason.bad_input


class JobRunner:
    """Runs one job's steps against the ledger, holding its lease (fencing token = job version)."""

    def __init__(self, ledger: Ledger, job: JobRecord, owner: str, *, lease: timedelta) -> None:
        self.ledger = ledger
        self.job = job
        self.owner = owner
        self.lease = lease
        self.inputs = JobInputs.model_validate(job.inputs)

    @property
    def job_id(self) -> str:
        return self.job.job_id

    def refresh(self) -> JobRecord:
        self.job = self.ledger.get_job(self.job_id)
        return self.job

    def acquire(self) -> None:
        """Take the job's lease; later writes carry its fencing token (the job version)."""
        self.job = self.ledger.take_lease(self.job_id, self.owner, self.lease)
        _fault("after_lease")

    def release(self) -> None:
        if self.job.lease_owner == self.owner:
            # Usually nobody has written the job since this runner last did: release at that version.
            try:
                self.job = self.ledger.release_lease(self.job_id, self.owner, self.job.version)
                return
            except StaleVersion:
                pass  # it moved meanwhile (nothing was written): read it again, as below
        job = self.refresh()
        if job.lease_owner == self.owner:
            self.job = self.ledger.release_lease(self.job_id, self.owner, job.version)

    def advance(self, to: JobState, **columns: object) -> JobRecord:
        """Move forward to ``to`` unless the job is already there or beyond (a resumed run)."""
        if FORWARD_ORDER.index(self.job.state) >= FORWARD_ORDER.index(to):
            return self.job
        self.job = self.ledger.transition(self.job_id, to, expected_version=self.job.version, **columns)  # type: ignore[arg-type]
        return self.job

    def settle(self, to: JobState, **columns: object) -> JobRecord:
        """:meth:`advance` from the job as this runner last wrote or read it; if someone else has written it
        since (the compare-and-set refuses, writing nothing), read it again and advance from there.

        The same outcome as reading the job before every advance, without that read when nobody else
        touched the job (the usual case: this runner holds its lease).
        """
        try:
            return self.advance(to, **columns)
        except StaleVersion:
            self.refresh()
            return self.advance(to, **columns)

    def stop(self, state: JobState, reason: StopReason, message: str, next_action: str) -> JobStopped:
        """Record a terminal state with its reason, next action and a triage note.

        The runner ends the job only while it holds the job's lease, or when nobody holds it and nobody
        has written the job since this runner last wrote or read it (a runner that released its lease on
        purpose, and stops the job before anyone else touched it).

        Raises:
            StaleVersion: another worker holds the job's lease now, or the lease is free but the job moved
                on since this runner last saw it (a lapsed worker never ends a job another one advanced).
        """
        history = [
            FailureRecord(step=a.step, error_type=a.error_class, message=a.message, at=a.at)
            for a in self.ledger.attempt_history(self.job_id)
        ]
        note = triage_note(history, max_attempts=MAX_STEP_ATTEMPTS) if history else None
        known_version = self.job.version
        self.refresh()
        if self.job.lease_owner is not None and self.job.lease_owner != self.owner:
            # A worker whose lease lapsed must not end a job another worker now holds.
            raise StaleVersion(f"job {self.job_id} is leased to {self.job.lease_owner}, not {self.owner}")
        if self.job.lease_owner is None and self.job.version != known_version:
            # Nobody holds it, but someone wrote it after this runner last saw it: another worker took the
            # lapsed lease, moved the job on and let go. Its state is that worker's word, not this one's.
            raise StaleVersion(
                f"job {self.job_id} moved past version {known_version} while {self.owner} did not hold it"
            )
        self.job = self.ledger.transition(
            self.job_id,
            state,
            expected_version=self.job.version,
            stop_reason=reason,
            failure_reason=message[:2000],
            next_action=next_action,
            triage_note=note.model_dump_json() if note else None,
        )
        return JobStopped(self.job)

    def step(
        self,
        name: str,
        input_hash: str,
        to: JobState,
        run: Callable[[], M],
        model: type[M],
        **columns: object,
    ) -> M:
        """Run (or recall) one checkpointed step and move the job to ``to``.

        Raises:
            JobStopped: a permanent failure or a spent attempt budget stopped the job.
            StaleVersion: the lease was lost to another worker (nothing is recorded against the job).
            StewardError: a transient failure within budget (the run fails; a re-run resumes here).
        """
        done = self.ledger.get_step(self.job_id, name, input_hash)
        if done is not None and done.status == "completed" and done.output_ref is not None:
            output = model.model_validate(done.output_ref)
        else:
            self.acquire()  # renew the lease: it only has to outlive one step
            self.ledger.start_step(self.job_id, name, input_hash, fence=self.job.version)
            try:
                output = run()
            except StaleVersion:
                raise  # our lease was lost: the job is another worker's now, not a failure of the step
            except PermanentError as exc:
                self.ledger.record_attempt(self.job_id, name, type(exc).__name__, str(exc)[:2000])
                self.ledger.fail_step(self.job_id, name, input_hash, str(exc)[:2000])
                raise self.stop(
                    JobState.failed,
                    stop_reason_for(exc),
                    f"{name}: {exc}",
                    next_action=f"fix the cause, then submit the page again ({type(exc).__name__})",
                ) from exc
            except Exception as exc:
                attempts = self.ledger.record_attempt(self.job_id, name, type(exc).__name__, str(exc)[:2000])
                self.ledger.fail_step(self.job_id, name, input_hash, str(exc)[:2000])
                if attempts >= MAX_STEP_ATTEMPTS:
                    raise self.stop(
                        JobState.failed,
                        StopReason.retries_exhausted,
                        f"{name} failed {attempts} times: {exc}",
                        next_action="check the upstream service, then resubmit the job",
                    ) from exc
                raise
            _fault(f"after_{name}_task")
            self.ledger.complete_step(self.job_id, name, input_hash, output, fence=self.job.version)
            _fault(f"after_{name}_commit")
        self.settle(to, **columns)
        return output
