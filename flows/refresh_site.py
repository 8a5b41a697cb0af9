"""``refresh_site``: audit, plan refresh jobs for the pages that need one (bounded), run them."""

from __future__ import annotations

from typing import Literal

from prefect import flow, get_run_logger
from prefect.deployments import run_deployment
from pydantic import BaseModel, ConfigDict, Field

from flows.audit_site import AuditParams, audit_site
from flows.refresh_page import JobOutcome, RefreshParams, refresh_page
from tasks.jobs import plan_jobs


class RefreshSiteParams(BaseModel):
    """Parameters of ``refresh_site``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    audit: AuditParams
    site_id: str = Field(min_length=1, max_length=200, description="Stable site name for job identity.")
    content_root: str = Field(description="The site's Markdown content directory (publish target).")
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


class RefreshSiteSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    site: str
    pages: int
    findings_by_code: dict[str, int]
    pages_needing_refresh: int
    jobs: list[JobOutcome]


def _start_job_run(deployment: str, job_id: str) -> JobOutcome:
    """Start the job as its own run of the refresh_page deployment (Prefect refuses to suspend subflows)."""
    run = run_deployment(
        name=deployment,
        parameters={"params": RefreshParams(job_id=job_id, approval="suspend").model_dump(mode="json")},
        timeout=0,
        as_subflow=False,
    )
    return JobOutcome(job_id=job_id, state="submitted", next_action=f"flow run {run.id}")


@flow(name="refresh_site", persist_result=False)
def refresh_site(params: RefreshSiteParams) -> RefreshSiteSummary:
    """Audit the site and run a refresh job per page that needs one, at most ``budget`` per run.

    Needs: what ``audit_site`` and ``refresh_page`` need (network reach, the ledger, the content root).
    """
    summary = audit_site(params.audit)
    base_url = params.audit.crawl.start_urls[0]
    job_ids = plan_jobs(
        params.site_id,
        base_url,
        params.content_root,
        summary.refresh_needed,
        summary.findings,
        params.budget,
        bool(params.audit.crawl.allow_private),
        params.max_links,
    )
    get_run_logger().info(
        "%d pages need a refresh; running %d jobs", len(summary.refresh_needed), len(job_ids)
    )
    if params.approval == "suspend":
        outcomes = [_start_job_run(params.page_deployment, job_id) for job_id in job_ids]
    else:
        outcomes = [
            refresh_page(RefreshParams(job_id=job_id, approval=params.approval)) for job_id in job_ids
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
