"""``sweep_jobs``: the recovery path: expire overdue approvals, restart stalled jobs from their checkpoint."""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor

from prefect import flow, get_run_logger
from pydantic import BaseModel, ConfigDict, Field

from flows.refresh_page import JobOutcome, RefreshParams, refresh_page
from sitesteward.settings import get_settings
from tasks.jobs import sweep
from tasks.refresh import sharing_ledger


class SweepParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    idle_minutes: int = Field(
        default=30, ge=1, le=7 * 24 * 60, description="Leaseless and unchanged this long = stalled."
    )
    limit: int = Field(default=50, ge=0, le=10_000, description="Jobs restarted per sweep.")
    concurrency: int = Field(
        default=1,
        ge=1,
        le=32,
        description="Restarted jobs run at the same time (threads, as in refresh_batch: a job mostly waits "
        "on I/O); 1 restarts them one after another.",
    )


class SweepSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    expired: list[str]
    restarted: list[JobOutcome]


def _restart(job_id: str) -> JobOutcome | BaseException:
    try:
        return refresh_page(RefreshParams(job_id=job_id))
    except Exception as exc:  # one job's failure must not keep the others from being restarted
        return exc


@flow(name="sweep_jobs", persist_result=False)
def sweep_jobs(params: SweepParams | None = None) -> SweepSummary:
    """Find jobs whose run crashed or stalled (lease expired, idle) and resume them; expire approvals.

    Safe to run twice at the same time: the ledger's compare-and-set and leases let one sweeper win.
    """
    params = params or SweepParams()
    report = sweep(params.idle_minutes, params.limit)
    if report.expired:
        get_run_logger().info("approval expired for %d jobs", len(report.expired))
    if not report.restart:
        return SweepSummary(expired=report.expired, restarted=[])
    # One ledger for every restarted job run, not one per run.
    with sharing_ledger(get_settings().ledger_url):
        if params.concurrency == 1 or len(report.restart) == 1:
            restarted = [refresh_page(RefreshParams(job_id=job_id)) for job_id in report.restart]
        else:
            with ThreadPoolExecutor(max_workers=min(params.concurrency, len(report.restart))) as pool:
                # Each thread runs in a copy of this run's context: its refresh_page is a subflow of this run.
                futures = [
                    pool.submit(contextvars.copy_context().run, _restart, job_id) for job_id in report.restart
                ]
                results = [future.result() for future in futures]
            failed = [result for result in results if isinstance(result, BaseException)]
            if failed:
                # As a serial sweep would: the run fails (the next sweep restarts what is still stalled).
                raise failed[0]
            restarted = [result for result in results if isinstance(result, JobOutcome)]
    return SweepSummary(expired=report.expired, restarted=restarted)
