"""``refresh_batch``: run a batch of refresh jobs in one flow run, parking each at review.

A process worker starts one Python process per flow run (3–5 s on a small machine), so a site-wide
refresh dispatched as one deployment run per job pays that start-up per page. ``refresh_site`` instead
splits its jobs into batches and starts each batch as a run of the ``refresh-batch`` deployment; the
workers of the pool share the batches. Inside a batch each job is a ``refresh_page`` subflow (the same
durable engine, the same ledger checkpoints), a few at a time on threads: a subflow spends much of its
time waiting on the API, the ledger and the site, not on the CPU.

Jobs park at review (subflows cannot suspend); ``sitesteward approve`` records the decision and the next
``refresh_site`` run (or a batch run with those ids) publishes. A worker that dies mid-batch leaves its
jobs planned or leased; ``sweep_jobs`` restarts them once their lease has expired or they have been idle
for ``idle_minutes``.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor

from prefect import flow, get_run_logger
from pydantic import BaseModel, ConfigDict, Field

from flows.refresh_page import JobOutcome, RefreshParams, refresh_page
from sitesteward.settings import get_settings
from tasks.locks import step_locks
from tasks.refresh import sharing_ledger


class RefreshBatchParams(BaseModel):
    """Parameters of ``refresh_batch``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_ids: list[str] = Field(min_length=1, max_length=1000, description="Ledger jobs to run or resume.")
    concurrency: int = Field(default=4, ge=1, le=32, description="Jobs of this batch run at the same time.")
    lease_seconds: float = Field(
        default=900,
        ge=1,
        le=86_400,
        description="Each job's lease per step (and the expiry of its step locks): a dead worker's jobs "
        "are free for the sweeper after it.",
    )
    llm_block: str | None = Field(
        default=None, description="An LLMConfig block to draft with (unset: the process settings)."
    )


class RefreshBatchSummary(BaseModel):
    """Where each job of the batch came to rest (``awaiting_review`` unless it stopped or finished)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jobs: list[JobOutcome]
    by_state: dict[str, int]


class BatchFailed(Exception):
    """Some jobs of the batch failed in this run (each within its attempt budget; a re-run resumes them)."""


def _run_one(job_id: str, lease_seconds: float, llm_block: str | None) -> JobOutcome | BaseException:
    try:
        with step_locks(get_settings().lock_url, hold_seconds=lease_seconds):
            return refresh_page(
                RefreshParams(
                    job_id=job_id, approval="park", lease_seconds=lease_seconds, llm_block=llm_block
                )
            )
    except Exception as exc:  # one job's failure must not hide the others' outcomes
        return exc


@flow(name="refresh_batch", persist_result=False)
def refresh_batch(params: RefreshBatchParams) -> RefreshBatchSummary:
    """Run each job of the batch to its next resting point (review, published and verified, or stopped).

    Needs: what ``refresh_page`` needs (the ledger, the content root, network reach to the site), and
    ``SITESTEWARD_LOCK_URL`` (Redis) when several workers share the pool.
    """
    job_ids = list(dict.fromkeys(params.job_ids))  # a job listed twice runs once
    # One ledger (engine, connections, statement cache) for every job of the batch, not one per job run.
    with (
        sharing_ledger(get_settings().ledger_url),
        ThreadPoolExecutor(max_workers=min(params.concurrency, len(job_ids))) as pool,
    ):
        # Each thread runs in a copy of this run's context, so its refresh_page is a subflow of this run
        # (and uses the shared ledger).
        futures = [
            pool.submit(
                contextvars.copy_context().run, _run_one, job_id, params.lease_seconds, params.llm_block
            )
            for job_id in job_ids
        ]
        results = dict(zip(job_ids, (future.result() for future in futures), strict=True))
    outcomes = [result for result in results.values() if isinstance(result, JobOutcome)]
    by_state: dict[str, int] = {}
    for outcome in outcomes:
        by_state[outcome.state] = by_state.get(outcome.state, 0) + 1
    logger = get_run_logger()
    logger.info("batch of %d jobs: %s", len(job_ids), by_state)
    failed = {job_id: result for job_id, result in results.items() if isinstance(result, BaseException)}
    if failed:
        # The run fails (visible in the UI, retried by the next refresh_site or the sweeper); the ledger
        # already counted each failure against its job's attempt budget.
        for job_id, exc in failed.items():
            logger.error("job %s failed in this run: %r", job_id, exc)
        raise BatchFailed(f"{len(failed)} of {len(job_ids)} jobs failed: {', '.join(sorted(failed))}")
    return RefreshBatchSummary(jobs=outcomes, by_state=by_state)
