"""``refresh_page``: one durable job: compare → draft → link → validate → approval → publish → verify.

The step sequence lives in the Prefect-free engine (:mod:`sitesteward.engine`); this flow supplies what
is Prefect's: each step runs as a task with persisted results under an explicit cache key
(:class:`PrefectSteps`), review artifacts, the run logger, and pause/suspend with the
:class:`ApprovalForm` run input to wait for a reviewer (:class:`PrefectHost`).

Every step is a checkpoint (ledger first, then Prefect's persisted task results), so a re-run of the same
job — after a crash, a restart or a resume — skips what is done, calls the drafter at most once for the
same inputs, asks for approval at most once per draft and publishes at most once.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field

from sitesteward.draft import Drafter, DraftRequest, DraftResult
from sitesteward.engine import (
    JobOptions,
    JobOutcome,
    PageSource,
    ReviewAnswer,
    RunLogger,
    run_job,
)
from sitesteward.jobs import JobInputs
from sitesteward.ledger import Ledger
from sitesteward.llm import select_drafter
from sitesteward.models import Draft, Page
from sitesteward.publish import PublishOutcome
from sitesteward.refresh import Baseline, CompareOutput
from sitesteward.settings import get_settings
from sitesteward.validate import ValidationResult
from sitesteward.verify import VerificationResult
from tasks.common import result_storage
from tasks.refresh import (
    compare_page,
    draft_refresh,
    drafting_settings,
    ledger_at,
    link_draft,
    publish_edit,
    read_page_source,
    validate_draft,
    verify_edit,
)

__all__ = ["ApprovalForm", "JobOutcome", "PrefectHost", "PrefectSteps", "RefreshParams", "refresh_page"]


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
    llm_block: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Name of an LLMConfig block to draft with (default: the SITESTEWARD_LLM_* settings).",
    )


class PrefectSteps:
    """Each step as its task in ``tasks/refresh.py``: persisted JSON results under the engine's keys."""

    def __init__(self, llm_block: str | None = None) -> None:
        self.storage = result_storage()
        self.llm_block = llm_block

    def compare(self, inputs: JobInputs, baseline: Baseline, *, cache_key: str) -> CompareOutput:
        return compare_page.with_options(result_storage=self.storage)(inputs, baseline, cache_key=cache_key)

    def read_source(self, inputs: JobInputs, *, cache_key: str) -> PageSource:
        read = read_page_source.with_options(result_storage=self.storage)(inputs, cache_key=cache_key)
        return PageSource(location=read.location, text=read.text)

    def draft(self, drafter: Drafter, request: DraftRequest, *, cache_key: str) -> DraftResult:
        # The task selects the same drafter itself (loading the block at its call site): a drafter holds
        # a client and a key, neither of which belongs in task parameters.
        return draft_refresh.with_options(result_storage=self.storage)(
            request, cache_key=cache_key, llm_block=self.llm_block
        )

    def link(
        self, draft: Draft, page_source: str, inputs: JobInputs, max_links: int, *, cache_key: str
    ) -> Draft:
        return link_draft.with_options(result_storage=self.storage)(
            draft, page_source, inputs, max_links, cache_key=cache_key
        )

    def validate(
        self, draft: Draft, page_source: str, request: DraftRequest, flags: list[str], *, cache_key: str
    ) -> ValidationResult:
        return validate_draft.with_options(result_storage=self.storage)(
            draft, page_source, request, flags, cache_key=cache_key
        )

    def publish(
        self, ledger: Ledger, job_id: str, draft_sha: str, draft: Draft, fence: int, inputs: JobInputs
    ) -> PublishOutcome:
        # The task opens its own ledger: a task's parameters are values, not connections.
        return publish_edit(job_id, draft_sha, draft, fence, inputs)

    def verify(self, inputs: JobInputs, draft: Draft, before: Page) -> VerificationResult:
        return verify_edit(inputs, draft, before)


class PrefectHost:
    """The run id, run logger, markdown artifacts, and pause/suspend with :class:`ApprovalForm`."""

    def __init__(self, approval: Literal["park", "pause", "suspend"]) -> None:
        self.approval = approval

    @property
    def run_id(self) -> str | None:
        run_id = flow_run.get_id()
        return str(run_id) if run_id else None

    @property
    def logger(self) -> RunLogger:
        return get_run_logger()

    def artifact(self, key: str, markdown: str) -> None:
        create_markdown_artifact(key=key, markdown=markdown)

    def wait_for_review(self, key: str, description: str, timeout_seconds: int) -> ReviewAnswer:
        form = ApprovalForm.with_initial_data(description=description)
        if self.approval == "suspend":
            answer = suspend_flow_run(wait_for_input=form, key=key, timeout=timeout_seconds)
        else:
            answer = pause_flow_run(wait_for_input=form, key=key, timeout=timeout_seconds)
        return ReviewAnswer(decision=answer.decision, reviewer=answer.reviewer, notes=answer.notes)


@flow(name="refresh_page", persist_result=True, result_serializer="json")
def refresh_page(params: RefreshParams) -> JobOutcome:
    """Run (or resume) one refresh job to its next resting point.

    Needs: the ledger (``SITESTEWARD_DATABASE_URL`` or SQLite in ``SITESTEWARD_DATA_DIR``), the site's
    content directory (from the job's inputs), network reach to the site and its sources, the
    ``LLMConfig`` block named by ``llm_block`` if any, and — for ``approval="suspend"`` — a deployment
    (``flow.serve()`` or a worker).
    """
    drafter = select_drafter(drafting_settings(params.llm_block))
    options = JobOptions(
        wait_for_review=params.approval != "park",
        approval_hours=params.approval_hours,
        max_links=params.max_links,
        lease_seconds=params.lease_seconds,
    )
    # Its own ledger, or the one the enclosing batch (or sweep) shares with all its job runs.
    with ledger_at(get_settings().ledger_url) as ledger:
        return run_job(
            ledger,
            params.job_id,
            host=PrefectHost(params.approval),
            steps=PrefectSteps(params.llm_block),
            drafter=drafter,
            options=options,
        )
