"""One refresh job run to its next resting point: compare → source → draft → link → validate → approval
→ publish → verify, every step a ledger-first checkpoint.

No Prefect here. What depends on the orchestrator comes in through two small interfaces: :class:`Steps`
(how a step's callable is executed: Prefect tasks with persisted results, or direct calls) and
:class:`Host` (the run id, the logger, where review artifacts go, and how to wait for a reviewer).
``flows/refresh_page.py`` is the Prefect face; tests and the load harness run jobs with
:class:`~sitesteward.engine.steps.PlainSteps` and :class:`PlainHost` in-process.

A re-run of the same job — after a crash, a restart or a resume — skips what is done, calls the drafter
at most once for the same inputs, asks for approval at most once per draft and publishes at most once.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from sitesteward.content import parse_document
from sitesteward.draft import Drafter, DraftRequest, DraftResult
from sitesteward.engine.keys import CODE_VERSION, stable_hash
from sitesteward.engine.runner import JobRunner, JobStopped
from sitesteward.engine.steps import PageSource, Steps
from sitesteward.errors import PermanentError
from sitesteward.faults import fault_point
from sitesteward.ledger import (
    ApprovalRefused,
    Channel,
    Decision,
    JobRecord,
    JobState,
    LeaseHeld,
    Ledger,
    StopReason,
)
from sitesteward.models import Draft
from sitesteward.publish import PublishOutcome, apply_edits, draft_hash
from sitesteward.readability import reading_ease
from sitesteward.refresh import CompareOutput, draft_request_for, last_verified_baseline
from sitesteward.review import review_markdown
from sitesteward.validate import ValidationResult


class JobOutcome(BaseModel):
    """What a run of a job left behind (the ledger holds the full record)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    state: str
    stop_reason: str | None = None
    next_action: str | None = None
    draft_sha: str | None = None
    edits: int = 0


class JobOptions(BaseModel):
    """How one run treats the job (the flow's parameters, minus what the orchestrator decides)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    wait_for_review: bool = Field(
        default=False,
        description="Wait for the reviewer through the host (pause/suspend); False parks the job.",
    )
    approval_hours: float = Field(default=72.0, gt=0, le=24 * 90, description="Expire the request after.")
    max_links: int | None = Field(default=None, ge=0, le=10, description="Override the job's link budget.")
    lease_seconds: float = Field(default=900, ge=0.05, le=86_400, description="Lease per step.")


class ReviewAnswer(BaseModel):
    """A reviewer's answer as the host received it (recorded in the ledger with channel ``ui``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    decision: Literal["approve", "reject", "request_changes"]
    reviewer: str
    notes: str = ""


class RunLogger(Protocol):
    """The part of a logger the engine uses (``logging.Logger`` or Prefect's run logger)."""

    def info(self, msg: str, /, *args: object) -> None: ...

    def warning(self, msg: str, /, *args: object) -> None: ...


class Host(Protocol):
    """What the orchestrator supplies to a job run."""

    @property
    def run_id(self) -> str | None:
        """The orchestrator's id of this run (recorded on the job; None when there is none)."""
        ...

    @property
    def logger(self) -> RunLogger:
        """Where progress messages go."""
        ...

    def artifact(self, key: str, markdown: str) -> None:
        """Show ``markdown`` to people (a Prefect artifact; anything or nothing elsewhere)."""
        ...

    def wait_for_review(self, key: str, description: str, timeout_seconds: int) -> ReviewAnswer:
        """Wait for the reviewer's answer (only called with ``JobOptions.wait_for_review``)."""
        ...


class PlainHost:
    """A host without an orchestrator: no run id, stdlib logging, artifacts kept in memory, no waiting.

    Jobs run with it park at review (``JobOptions.wait_for_review=False``): a decision in the ledger and
    a later run continue them.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger("sitesteward.engine")
        self.artifacts: dict[str, str] = {}

    @property
    def run_id(self) -> str | None:
        return None

    @property
    def logger(self) -> RunLogger:
        return self._logger

    def artifact(self, key: str, markdown: str) -> None:
        self.artifacts[key] = markdown

    def wait_for_review(self, key: str, description: str, timeout_seconds: int) -> ReviewAnswer:
        raise NotImplementedError("PlainHost cannot wait for a reviewer: run with wait_for_review=False")


def outcome_of(job: JobRecord, edits: int = 0) -> JobOutcome:
    """The outcome summary of ``job`` as the ledger has it now."""
    return JobOutcome(
        job_id=job.job_id,
        state=job.state.value,
        stop_reason=job.stop_reason.value if job.stop_reason else None,
        next_action=job.next_action,
        draft_sha=job.draft_sha,
        edits=edits,
    )


def worker_identity(run_id: str | None) -> str:
    """The lease owner of a run: host, process and run (a dead process's leases are recognisable)."""
    return f"{socket.gethostname()}:{os.getpid()}:{run_id or 'local'}"


def run_job(
    ledger: Ledger,
    job_id: str,
    *,
    host: Host,
    steps: Steps,
    drafter: Drafter,
    options: JobOptions | None = None,
) -> JobOutcome:
    """Run (or resume) one job to its next resting point and return what it left behind.

    A finished job is left alone; a job another worker holds is left to it (the outcome says where it
    is). Terminal failures are recorded in the ledger and returned, not raised.

    Raises:
        UnknownJob: no such job.
        StewardError: a transient failure within the attempt budget (recorded; a re-run resumes at the
            failed step) or a lost lease (``StaleVersion``: another worker took the job over).
    """
    options = options or JobOptions()
    job = ledger.get_job(job_id)
    if job.terminal or job.state is JobState.monitoring:
        return outcome_of(job)  # stop condition: nothing left to do
    runner = JobRunner(
        ledger, job, worker_identity(host.run_id), lease=timedelta(seconds=options.lease_seconds)
    )
    try:
        runner.acquire()
    except LeaseHeld:
        host.logger.info("job %s is being worked on by %s", job.job_id, job.lease_owner)
        return outcome_of(job)
    try:
        return _JobRun(runner, host, steps, drafter, options).run()
    except JobStopped as stopped:
        return outcome_of(stopped.job)
    finally:
        runner.release()


class _JobRun:
    """The step sequence of one run (state shared between the steps of the pipeline diagram)."""

    def __init__(
        self, runner: JobRunner, host: Host, steps: Steps, drafter: Drafter, options: JobOptions
    ) -> None:
        self.runner = runner
        self.host = host
        self.steps = steps
        self.drafter = drafter
        self.options = options

    def run(self) -> JobOutcome:
        runner, steps, host = self.runner, self.steps, self.host
        ledger, inputs = runner.ledger, runner.inputs
        if runner.job.state is JobState.planned or runner.job.state is JobState.refresh_needed:
            runner.advance(JobState.planned, flow_run_id=str(host.run_id or ""))

        # compare: the live page and its cited sources
        baseline = last_verified_baseline(ledger, runner.job.site, inputs.page_url, exclude_job=runner.job_id)
        compare_key = stable_hash("compare", runner.job_id, inputs, baseline.job_id, CODE_VERSION)
        compared = runner.step(
            "compare",
            compare_key,
            JobState.compared,
            lambda: steps.compare(inputs, baseline, cache_key=compare_key),
            CompareOutput,
        )
        ledger.append_evidence(runner.job_id, "comparison", compared.comparison)

        # draft: the page source the edits apply to (a checkpoint itself: after the publish write the
        # file holds the edit, and a re-run must draft from what the reviewer saw), and the drafter's key
        source_key = stable_hash("source", compare_key, CODE_VERSION)
        source = runner.step(
            "source",
            source_key,
            JobState.compared,
            lambda: steps.read_source(inputs, cache_key=source_key),
            PageSource,
        )
        page_source = source.text
        request = draft_request_for(inputs.page_url, page_source, compared, inputs.findings)
        drafter = self.drafter
        draft_key = f"draft:{runner.job_id}:{drafter.cache_key(request)}"
        drafted = runner.step(
            "draft",
            draft_key,
            JobState.drafted,
            lambda: steps.draft(drafter, request, cache_key=draft_key),
            DraftResult,
        )
        ledger.append_evidence(
            runner.job_id,
            "draft",
            {
                "draft": drafted.draft.model_dump(mode="json"),
                "usage": drafted.usage.model_dump(mode="json"),
                "inputs_hash": drafted.inputs_hash,
                "drafter": drafter.name,
                "prompt_version": drafter.prompt_version,
            },
        )
        if not drafted.draft.edits and runner.job.state not in {
            JobState.awaiting_review,
            JobState.approved,
            JobState.published,
        }:
            raise runner.stop(
                JobState.cancelled, StopReason.nothing_to_change, "the drafter proposed no edit", "none"
            )

        # link: internal links to related pages
        max_links = inputs.max_links if self.options.max_links is None else self.options.max_links
        link_key = stable_hash("link", draft_key, max_links, CODE_VERSION)
        linked = runner.step(
            "link",
            link_key,
            JobState.linked,
            lambda: steps.link(drafted.draft, page_source, inputs, max_links, cache_key=link_key),
            Draft,
        )

        # validate: guard rails before any human sees it
        sha = draft_hash(linked)
        validate_key = stable_hash("validate", sha, CODE_VERSION)
        validation = runner.step(
            "validate",
            validate_key,
            JobState.validated,
            lambda: steps.validate(
                linked, page_source, request, compared.injection_flags, cache_key=validate_key
            ),
            ValidationResult,
            draft_sha=sha,
        )
        if runner.job.draft_sha != sha:
            # The draft changed under an older review (page or sources moved): start the review again.
            runner.job = ledger.transition(
                runner.job_id, JobState.drafted, expected_version=runner.job.version
            )
            runner.advance(JobState.linked)
            runner.advance(JobState.validated, draft_sha=sha)

        decision = self._approval(linked, sha, request, compared, validation)
        if decision is None:
            return outcome_of(runner.refresh(), len(linked.edits))

        # publish exactly once, then verify
        runner.advance(JobState.approved)
        fault_point("before_publish")
        outcome = runner.step(
            "publish",
            sha,
            JobState.published,
            lambda: steps.publish(ledger, runner.job_id, sha, linked, runner.job.version, inputs),
            PublishOutcome,
            output_location=source.location,
        )
        host.logger.info("published %s (%s)", runner.job_id, outcome.status)
        fault_point("before_verify")
        verification = steps.verify(inputs, linked, compared.page)
        ledger.append_evidence(runner.job_id, "verification", verification)
        if not verification.passed:
            raise runner.stop(
                JobState.failed,
                StopReason.verification_failed,
                "; ".join(f"{c.name}: {c.detail}" for c in verification.checks if not c.passed),
                next_action="look at the live page: the edit is written but not visible (cache? build?)",
            )
        runner.advance(JobState.monitoring)
        fault_point("after_verify_commit")
        host.artifact(
            f"job-{runner.job_id[-20:]}".lower(),
            f"## {inputs.page_url}\n\nPublished and verified (draft `{sha[:12]}`).\n",
        )
        return outcome_of(runner.refresh(), len(linked.edits))

    def _approval(
        self,
        draft: Draft,
        sha: str,
        request: DraftRequest,
        compared: CompareOutput,
        validation: ValidationResult,
    ) -> Decision | None:
        """The approval gate. Returns the decision to act on, or None when the job now waits.

        Only a decision recorded in the ledger for exactly ``sha`` counts; a reviewer's answer through the
        host is recorded there first (channel ``ui``) and then read back like any other decision.
        """
        runner, host = self.runner, self.host
        ledger = runner.ledger
        approval = ledger.get_approval(runner.job_id, sha)
        if approval is None:
            # The review is recorded before the request: both are idempotent (identical evidence is not
            # appended twice), so a crash between them still leaves exactly one review and one request.
            description = review_for(draft, sha, request, compared, validation)
            ledger.append_evidence(runner.job_id, "review", {"markdown": description, "draft_sha": sha})
            host.artifact(f"review-{runner.job_id[-20:]}".lower(), description)
            expires = ledger.clock.now() + timedelta(hours=self.options.approval_hours)
            approval = ledger.request_approval(runner.job_id, sha, expires_at=expires)
            fault_point("after_approval_request")
        runner.advance(JobState.awaiting_review, draft_sha=sha, flow_run_id=str(host.run_id or "") or None)

        if approval.pending and self.options.wait_for_review:
            # Record which run waits, so `sitesteward approve` resumes it (even if an earlier run parked it).
            runner.job = ledger.update_job(
                runner.job_id, expected_version=runner.job.version, flow_run_id=str(host.run_id or "") or None
            )
            runner.release()  # nobody holds the job while a person thinks
            answer = host.wait_for_review(
                f"approve-{runner.job_id}-{sha[:16]}",
                review_for(draft, sha, request, compared, validation),
                int(self.options.approval_hours * 3600),
            )
            try:
                ledger.decide(
                    runner.job_id,
                    sha,
                    Decision(answer.decision),
                    reviewer=answer.reviewer,
                    channel=Channel.ui,
                    notes=answer.notes or None,
                )
            except ApprovalRefused as exc:  # another channel decided first: the ledger's decision stands
                host.logger.warning("decision from the UI not recorded: %s", exc)
            fault_point("after_approval_decision")
            runner.acquire()
            approval = ledger.get_approval(runner.job_id, sha)
        if approval is None or approval.pending:
            return None
        if approval.decision is Decision.approve:
            return Decision.approve
        raise runner.stop(
            JobState.rejected,
            StopReason.rejected,
            f"{approval.decision} by {approval.reviewer}: {approval.notes or ''}",
            next_action="re-run the audit after changing the page, or resubmit with notes",
        )


def review_for(
    draft: Draft, sha: str, request: DraftRequest, compared: CompareOutput, validation: ValidationResult
) -> str:
    """The reviewer's view of a draft: diff, findings, sources, warnings and readability before/after."""
    before = reading_ease(parse_document(request.page_source).body)
    try:
        after = reading_ease(parse_document(apply_edits(request.page_source, draft.edits)).body)
    except PermanentError:
        after = None
    return review_markdown(
        draft,
        request.findings,
        compared.sources,
        validation.warnings,
        readability_before=before,
        readability_after=after,
        draft_sha=sha,
    )
