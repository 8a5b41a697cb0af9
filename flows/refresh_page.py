"""``refresh_page``: one durable job: compare → draft → link → validate → approval → publish → verify.

Every step is a checkpoint (ledger first, then Prefect's persisted task results), so a re-run of the same
job — after a crash, a restart or a resume — skips what is done, calls the drafter at most once for the
same inputs, asks for approval at most once per draft and publishes at most once.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field

from flows.checkpoints import JobRunner, JobStopped
from sitesteward.content import parse_document
from sitesteward.draft import DraftRequest, DraftResult
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
from sitesteward.llm import select_drafter
from sitesteward.models import Draft
from sitesteward.publish import PublishOutcome, apply_edits, draft_hash
from sitesteward.readability import reading_ease
from sitesteward.refresh import CompareOutput, draft_request_for, last_verified_baseline
from sitesteward.review import review_markdown
from sitesteward.settings import get_settings
from sitesteward.validate import ValidationResult
from tasks.common import CODE_VERSION, result_storage, stable_hash
from tasks.refresh import (
    PageSource,
    compare_page,
    draft_refresh,
    link_draft,
    publish_edit,
    read_page_source,
    validate_draft,
    verify_edit,
)


class ApprovalForm(RunInput):
    """The reviewer's answer (the form the Prefect UI shows on Resume). Unknown fields are refused."""

    decision: Literal["approve", "reject", "request_changes"] = Field(
        default="reject", description="approve publishes this exact draft; anything else does not."
    )
    reviewer: str = Field(min_length=1, max_length=200, description="Your name (recorded in the ledger).")
    notes: str = Field(default="", max_length=5000, description="Why, or what to change.")


class RefreshParams(BaseModel):
    """Parameters of ``refresh_page``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str = Field(min_length=1, max_length=100, description="The ledger job to run or resume.")
    approval: Literal["park", "pause", "suspend"] = Field(
        default="park",
        description=(
            "park: record the request and end the run (the CLI or UI decides, a later run continues); "
            "pause: wait in this process (interactive); "
            "suspend: release the worker until resumed (deployments)."
        ),
    )
    approval_hours: float = Field(
        default=72.0, gt=0, le=24 * 90, description="Ask again never; expire after."
    )
    max_links: int | None = Field(default=None, ge=0, le=10, description="Override the job's link budget.")
    lease_seconds: float = Field(
        default=900, ge=1, le=86_400, description="Lease per step; a dead worker's job is free after it."
    )


class JobOutcome(BaseModel):
    """What a run of ``refresh_page`` left behind (the ledger holds the full record)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    state: str
    stop_reason: str | None = None
    next_action: str | None = None
    draft_sha: str | None = None
    edits: int = 0


def _outcome(job: JobRecord, edits: int = 0) -> JobOutcome:
    return JobOutcome(
        job_id=job.job_id,
        state=job.state.value,
        stop_reason=job.stop_reason.value if job.stop_reason else None,
        next_action=job.next_action,
        draft_sha=job.draft_sha,
        edits=edits,
    )


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{flow_run.get_id() or 'local'}"


@flow(name="refresh_page", persist_result=True, result_serializer="json")
def refresh_page(params: RefreshParams) -> JobOutcome:
    """Run (or resume) one refresh job to its next resting point.

    Needs: the ledger (``SITESTEWARD_DATABASE_URL`` or SQLite in ``SITESTEWARD_DATA_DIR``), the site's
    content directory (from the job's inputs), network reach to the site and its sources, and — for
    ``approval="suspend"`` — a deployment (``flow.serve()`` or a worker).
    """
    logger = get_run_logger()
    ledger = Ledger.open(get_settings().ledger_url)
    try:
        job = ledger.get_job(params.job_id)
        if job.terminal or job.state is JobState.monitoring:
            return _outcome(job)  # stop condition: nothing left to do
        runner = JobRunner(ledger, job, _owner(), lease=timedelta(seconds=params.lease_seconds))
        try:
            runner.acquire()
        except LeaseHeld:
            logger.info("job %s is being worked on by %s", job.job_id, job.lease_owner)
            return _outcome(job)
        try:
            return _run(runner, params)
        except JobStopped as stopped:
            return _outcome(stopped.job)
        finally:
            runner.release()
    finally:
        ledger.close()


def _run(runner: JobRunner, params: RefreshParams) -> JobOutcome:
    ledger, inputs = runner.ledger, runner.inputs
    storage = result_storage()
    if runner.job.state is JobState.planned or runner.job.state is JobState.refresh_needed:
        runner.advance(JobState.planned, flow_run_id=str(flow_run.get_id() or ""))

    # compare: the live page and its cited sources
    baseline = last_verified_baseline(ledger, runner.job.site, inputs.page_url, exclude_job=runner.job_id)
    compare_key = stable_hash("compare", runner.job_id, inputs, baseline.job_id, CODE_VERSION)
    compared = runner.step(
        "compare",
        compare_key,
        JobState.compared,
        lambda: compare_page.with_options(result_storage=storage)(inputs, baseline, cache_key=compare_key),
        CompareOutput,
    )
    ledger.append_evidence(runner.job_id, "comparison", compared.comparison)

    # draft: the page source the edits apply to (a checkpoint itself: after the publish write the file
    # holds the edit, and a re-run must draft from what the reviewer saw), and the drafter's own key
    source_key = stable_hash("source", compare_key, CODE_VERSION)
    source = runner.step(
        "source",
        source_key,
        JobState.compared,
        lambda: read_page_source.with_options(result_storage=storage)(inputs, cache_key=source_key),
        PageSource,
    )
    page_source = source.text
    request = draft_request_for(inputs.page_url, page_source, compared, inputs.findings)
    drafter = select_drafter(get_settings())
    draft_key = f"draft:{runner.job_id}:{drafter.cache_key(request)}"
    drafted = runner.step(
        "draft",
        draft_key,
        JobState.drafted,
        lambda: draft_refresh.with_options(result_storage=storage)(request, cache_key=draft_key),
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
    max_links = inputs.max_links if params.max_links is None else params.max_links
    link_key = stable_hash("link", draft_key, max_links, CODE_VERSION)
    linked = runner.step(
        "link",
        link_key,
        JobState.linked,
        lambda: link_draft.with_options(result_storage=storage)(
            drafted.draft, page_source, inputs, max_links, cache_key=link_key
        ),
        Draft,
    )

    # validate: guard rails before any human sees it
    sha = draft_hash(linked)
    validate_key = stable_hash("validate", sha, CODE_VERSION)
    validation = runner.step(
        "validate",
        validate_key,
        JobState.validated,
        lambda: validate_draft.with_options(result_storage=storage)(
            linked, page_source, request, compared.injection_flags, cache_key=validate_key
        ),
        ValidationResult,
        draft_sha=sha,
    )
    if runner.job.draft_sha != sha:
        # The draft changed under an older review (page or sources moved): start the review again.
        runner.job = ledger.transition(runner.job_id, JobState.drafted, expected_version=runner.job.version)
        runner.advance(JobState.linked)
        runner.advance(JobState.validated, draft_sha=sha)

    decision = _approval(runner, params, linked, sha, request, compared, validation)
    if decision is None:
        return _outcome(runner.refresh(), len(linked.edits))

    # publish exactly once, then verify
    runner.advance(JobState.approved)
    fault_point("before_publish")
    outcome = runner.step(
        "publish",
        sha,
        JobState.published,
        lambda: publish_edit(runner.job_id, sha, linked, runner.job.version, inputs),
        PublishOutcome,
        output_location=source.location,
    )
    get_run_logger().info("published %s (%s)", runner.job_id, outcome.status)
    fault_point("before_verify")
    verification = verify_edit(inputs, linked, compared.page)
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
    create_markdown_artifact(
        key=f"job-{runner.job_id[-20:]}".lower(),
        markdown=f"## {inputs.page_url}\n\nPublished and verified (draft `{sha[:12]}`).\n",
    )
    return _outcome(runner.refresh(), len(linked.edits))


def _approval(
    runner: JobRunner,
    params: RefreshParams,
    draft: Draft,
    sha: str,
    request: DraftRequest,
    compared: CompareOutput,
    validation: ValidationResult,
) -> Decision | None:
    """The approval gate. Returns the decision to act on, or None when the job now waits.

    Only a decision recorded in the ledger for exactly ``sha`` counts; a Prefect resume is recorded there
    first (channel ``ui``) and then read back like any other decision.
    """
    ledger = runner.ledger
    approval = ledger.get_approval(runner.job_id, sha)
    if approval is None:
        # The review is recorded before the request: both are idempotent (identical evidence is not
        # appended twice), so a crash between them still leaves exactly one review and one request.
        description = _review(draft, sha, request, compared, validation)
        ledger.append_evidence(runner.job_id, "review", {"markdown": description, "draft_sha": sha})
        create_markdown_artifact(key=f"review-{runner.job_id[-20:]}".lower(), markdown=description)
        expires = ledger.clock.now() + timedelta(hours=params.approval_hours)
        approval = ledger.request_approval(runner.job_id, sha, expires_at=expires)
        fault_point("after_approval_request")
    runner.advance(JobState.awaiting_review, draft_sha=sha, flow_run_id=str(flow_run.get_id() or "") or None)

    if approval.pending and params.approval != "park":
        # Record which run waits, so `sitesteward approve` resumes it (even if an earlier run parked it).
        runner.job = ledger.update_job(
            runner.job_id,
            expected_version=runner.job.version,
            flow_run_id=str(flow_run.get_id() or "") or None,
        )
        runner.release()  # nobody holds the job while a person thinks
        form = ApprovalForm.with_initial_data(description=_review(draft, sha, request, compared, validation))
        key = f"approve-{runner.job_id}-{sha[:16]}"
        timeout = int(params.approval_hours * 3600)
        if params.approval == "suspend":
            answer = suspend_flow_run(wait_for_input=form, key=key, timeout=timeout)
        else:
            answer = pause_flow_run(wait_for_input=form, key=key, timeout=timeout)
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
            get_run_logger().warning("decision from the UI not recorded: %s", exc)
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


def _review(
    draft: Draft, sha: str, request: DraftRequest, compared: CompareOutput, validation: ValidationResult
) -> str:
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
