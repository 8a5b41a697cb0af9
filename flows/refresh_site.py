"""``refresh_site``: audit, plan refresh jobs for the pages that need one (bounded), run them.

Three ways to run the planned jobs, by ``approval`` and ``batch_size``:

- ``park`` (default): one ``refresh_page`` subflow per job, in this run, one after another;
- ``park`` with ``batch_size``: batches of jobs, each started as a run of the ``refresh-batch``
  deployment, so the workers of the pool share them (the scale-out path: one process per batch, not per
  page);
- ``suspend``: one run of the ``refresh-page`` deployment per job, each waiting in the Prefect UI.
"""

from __future__ import annotations

from typing import Literal, Self

from prefect import flow, get_run_logger
from prefect.deployments import run_deployment
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field, model_validator

from blocks.content import load_content_target
from flows.audit_site import AuditParams, audit_site, resolve_site
from flows.refresh_batch import RefreshBatchParams
from flows.refresh_page import JobOutcome, RefreshParams, refresh_page
from tasks.common import stable_hash
from tasks.jobs import plan_jobs


class RefreshSiteParams(BaseModel):
    """Parameters of ``refresh_site``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    audit: AuditParams
    site_id: str = Field(min_length=1, max_length=200, description="Stable site name for job identity.")
    content_root: str | None = Field(
        default=None, description="The site's Markdown content directory (publish target)."
    )
    target_block: str | None = Field(
        default=None,
        description="A MarkdownContentTarget block naming the content directory (instead of content_root).",
    )
    llm_block: str | None = Field(
        default=None, description="An LLMConfig block to draft with (unset: the workers' settings)."
    )
    budget: int = Field(default=20, ge=0, le=10_000, description="Jobs started or resumed per run.")
    approval: Literal["park", "pause", "suspend"] = Field(
        default="park",
        description=(
            "park: jobs stop at review (the CLI or a later run continues them); suspend: each job runs "
            "as its own deployment run that suspends in the Prefect UI (subflows cannot suspend)."
        ),
    )
    page_deployment: str = Field(
        default="refresh_page/refresh-page", description="The refresh_page deployment used with suspend."
    )
    max_links: int = Field(default=2, ge=0, le=10, description="Internal links suggested per page.")
    batch_size: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description=(
            "park only: start the jobs as runs of the refresh-batch deployment, this many jobs per run, "
            "for the pool's workers to share (unset: run them in this run, one after another)."
        ),
    )
    batch_deployment: str = Field(
        default="refresh_batch/refresh-batch", description="The refresh_batch deployment (batch_size)."
    )
    batch_concurrency: int = Field(default=4, ge=1, le=32, description="Jobs a batch runs at the same time.")
    lease_seconds: float = Field(
        default=900,
        ge=1,
        le=86_400,
        description="Each job's lease per step: a dead worker's jobs are free for the sweeper after it.",
    )

    @model_validator(mode="after")
    def _batches_park(self) -> Self:
        if self.batch_size is not None and self.approval != "park":
            raise ValueError("batch_size needs approval='park' (a batch's jobs wait for review parked)")
        if (self.content_root is None) == (self.target_block is None):
            raise ValueError(
                "give exactly one of content_root or target_block (a MarkdownContentTarget block)"
            )
        return self


def resolve_target(params: RefreshSiteParams) -> tuple[str, bool]:
    """The publish target: its directory and whether each edit is committed to git.

    Inline ``content_root`` publishes without git; a ``MarkdownContentTarget`` block brings its
    ``content_root`` and ``git_commit``, which every job planned from it records in its inputs.

    Raises:
        ConfigurationError: no such block.
    """
    if params.target_block is not None:
        target = load_content_target(params.target_block)
        return target.content_root, target.git_commit
    assert params.content_root is not None  # the validator guarantees one of the two
    return params.content_root, False


class RefreshSiteSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    site: str
    pages: int
    findings_by_code: dict[str, int]
    pages_needing_refresh: int
    jobs: list[JobOutcome]


def _start_job_run(deployment: str, job_id: str, llm_block: str | None) -> JobOutcome:
    """Start the job as its own run of the refresh_page deployment (Prefect refuses to suspend subflows)."""
    run = run_deployment(
        name=deployment,
        parameters={
            "params": RefreshParams(job_id=job_id, approval="suspend", llm_block=llm_block).model_dump(
                mode="json"
            )
        },
        timeout=0,
        as_subflow=False,
    )
    return JobOutcome(job_id=job_id, state="submitted", next_action=f"flow run {run.id}")


def _start_batch_runs(params: RefreshSiteParams, job_ids: list[str]) -> list[JobOutcome]:
    """Start one run of the refresh-batch deployment per ``batch_size`` jobs; the pool's workers share them.

    Each run gets an idempotency key from this run and its jobs, so a retried ``refresh_site`` run does
    not start the same batch twice (and if it did, the jobs' leases would let one runner through).
    """
    assert params.batch_size is not None
    size = params.batch_size
    batches = [job_ids[start : start + size] for start in range(0, len(job_ids), size)]
    outcomes: list[JobOutcome] = []
    for number, batch in enumerate(batches, start=1):
        batch_params = RefreshBatchParams(
            job_ids=batch,
            concurrency=params.batch_concurrency,
            lease_seconds=params.lease_seconds,
            llm_block=params.llm_block,
        )
        run = run_deployment(
            name=params.batch_deployment,
            parameters={"params": batch_params.model_dump(mode="json")},
            timeout=0,
            as_subflow=False,
            idempotency_key=f"refresh-batch:{flow_run.get_id()}:{stable_hash(batch)[:32]}",
        )
        outcomes += [
            JobOutcome(
                job_id=job_id,
                state="submitted",
                next_action=f"flow run {run.id} (batch {number} of {len(batches)})",
            )
            for job_id in batch
        ]
    return outcomes


@flow(name="refresh_site", persist_result=False)
def refresh_site(params: RefreshSiteParams) -> RefreshSiteSummary:
    """Audit the site and run a refresh job per page that needs one, at most ``budget`` per run.

    Needs: what ``audit_site`` and ``refresh_page`` need (network reach, the ledger, the content root).
    """
    summary = audit_site(params.audit)
    crawl = resolve_site(params.audit).crawl  # inline values, or the SiteConfig block the audit named
    base_url = crawl.start_urls[0]
    content_root, git_commit = resolve_target(params)
    job_ids = plan_jobs(
        params.site_id,
        base_url,
        content_root,
        summary.refresh_needed,
        summary.findings,
        params.budget,
        bool(crawl.allow_private),
        params.max_links,
        git_commit,
    )
    get_run_logger().info(
        "%d pages need a refresh; running %d jobs", len(summary.refresh_needed), len(job_ids)
    )
    if params.approval == "suspend":
        outcomes = [_start_job_run(params.page_deployment, job_id, params.llm_block) for job_id in job_ids]
    elif params.batch_size is not None and job_ids:
        outcomes = _start_batch_runs(params, job_ids)
    else:
        outcomes = [
            refresh_page(
                RefreshParams(
                    job_id=job_id,
                    approval=params.approval,
                    lease_seconds=params.lease_seconds,
                    llm_block=params.llm_block,
                )
            )
            for job_id in job_ids
        ]
    by_code: dict[str, int] = {}
    for finding in summary.findings:
        by_code[finding.code] = by_code.get(finding.code, 0) + 1
    return RefreshSiteSummary(
        site=summary.site,
        pages=summary.pages,
        findings_by_code=by_code,
        pages_needing_refresh=len(summary.refresh_needed),
        jobs=outcomes,
    )
