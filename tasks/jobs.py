"""Job planning and sweeping tasks (ledger writes; each safe to repeat and to run concurrently)."""

from __future__ import annotations

from datetime import timedelta

from prefect import task

from sitesteward.jobs import JobInputs, fingerprint, refresh_findings
from sitesteward.ledger import JobRecord, JobState, Ledger
from sitesteward.models import Finding
from sitesteward.settings import get_settings
from sitesteward.sweep import SweepReport, sweep_ledger


@task(name="plan_jobs", persist_result=False)
def plan_jobs(
    site_id: str,
    base_url: str,
    content_root: str,
    pages: list[str],
    findings: list[Finding],
    budget: int,
    allow_private: bool,
    max_links: int,
    git_commit: bool = False,
) -> list[str]:
    """Submit one job per page needing a refresh (at most ``budget``) and return the IDs to run.

    A duplicate submission (same page, same findings) finds the existing job; a page that already has a
    live job gets no second one (that job is returned to be resumed instead). Finished jobs and jobs
    waiting for a reviewer's decision are not run (a decision continues them). An existing job keeps
    the inputs it was submitted with (its content root and ``git_commit`` included).

    ``git_commit`` is recorded in each new job's inputs: its publish step commits the edit to git.
    """
    by_page: dict[str, list[Finding]] = {}
    for item in findings:
        by_page.setdefault(item.url, []).append(item)
    ledger = Ledger.open(get_settings().ledger_url)
    try:
        job_ids: list[str] = []
        for page_url in pages:
            if len(job_ids) >= budget:
                break
            page_findings = refresh_findings(by_page.get(page_url, []))
            if not page_findings:
                continue
            inputs = JobInputs(
                site_id=site_id,
                base_url=base_url,
                page_url=page_url,
                content_root=content_root,
                findings=page_findings,
                allow_private=allow_private,
                max_links=max_links,
                git_commit=git_commit,
            )
            submission = ledger.submit_job(
                site_id,
                page_url,
                goal=f"refresh {page_url}: " + ", ".join(sorted({f.code for f in page_findings})),
                trigger=fingerprint(page_findings, base_url),
                inputs=inputs,
            )
            job = submission.job
            if job.terminal or job.state is JobState.monitoring or _waits_for_a_person(ledger, job):
                continue
            job_ids.append(job.job_id)
        return job_ids
    finally:
        ledger.close()


def _waits_for_a_person(ledger: Ledger, job: JobRecord) -> bool:
    """A job parked for review with its question still open: a run would only ask again, so skip it."""
    if job.state is not JobState.awaiting_review or not job.draft_sha:
        return False
    approval = ledger.get_approval(job.job_id, job.draft_sha)
    return approval is not None and approval.pending


@task(name="sweep_ledger", persist_result=False)
def sweep(idle_minutes: int, limit: int) -> SweepReport:
    """Expire overdue approvals and list stalled jobs to restart (:func:`sitesteward.sweep.sweep_ledger`)."""
    ledger = Ledger.open(get_settings().ledger_url)
    try:
        return sweep_ledger(ledger, idle_after=timedelta(minutes=idle_minutes), limit=limit)
    finally:
        ledger.close()
