"""``sweep_jobs``: the recovery path: expire overdue approvals, restart stalled jobs from their checkpoint."""

from __future__ import annotations

from prefect import flow, get_run_logger
from pydantic import BaseModel, ConfigDict, Field

from flows.refresh_page import JobOutcome, RefreshParams, refresh_page
from tasks.jobs import sweep


class SweepParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    idle_minutes: int = Field(
        default=30, ge=1, le=7 * 24 * 60, description="Leaseless and unchanged this long = stalled."
    )
    limit: int = Field(default=50, ge=0, le=10_000, description="Jobs restarted per sweep.")


class SweepSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    expired: list[str]
    restarted: list[JobOutcome]


@flow(name="sweep_jobs", persist_result=False)
def sweep_jobs(params: SweepParams | None = None) -> SweepSummary:
    """Find jobs whose run crashed or stalled (lease expired, idle) and resume them; expire approvals.

    Safe to run twice at the same time: the ledger's compare-and-set and leases let one sweeper win.
    """
    params = params or SweepParams()
    report = sweep(params.idle_minutes, params.limit)
    if report.expired:
        get_run_logger().info("approval expired for %d jobs", len(report.expired))
    restarted = [refresh_page(RefreshParams(job_id=job_id)) for job_id in report.restart]
    return SweepSummary(expired=report.expired, restarted=restarted)
