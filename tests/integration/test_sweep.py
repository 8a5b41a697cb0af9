"""The recovery path: ``sweep_jobs`` expires approvals (never approving) and resumes stalled jobs."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from flows.refresh_page import RefreshParams, refresh_page
from flows.sweep_jobs import SweepParams, sweep_jobs
from sitesteward.ledger import JobState, Ledger
from sitesteward.settings import get_settings
from sitesteward.sweep import sweep_ledger
from tests.integration.conftest import Demo

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_api")]


def _plan_one(demo: Demo) -> str:
    from sitesteward.jobs import JobInputs
    from sitesteward.models import Finding, Severity

    page = f"{demo.site.base_url}/why-static/"
    inputs = JobInputs(
        site_id="sweep",
        base_url=demo.site.base_url + "/",
        page_url=page,
        content_root=str(demo.root),
        findings=[Finding(code="stale_date", severity=Severity.warning, url=page, detail="as of 2019")],
        allow_private=True,
        max_links=0,
    )
    with Ledger.open(get_settings().ledger_url) as ledger:
        return ledger.submit_job("sweep", page, goal="t", trigger="t", inputs=inputs).job.job_id


@pytest.mark.scenario(
    name="nobody answers the approval",
    faults="approval deadline passes",
    checks="the sweeper expires it (approval_expired, stop reason, policy triage note); nothing published; "
    "a late run does nothing",
)
def test_an_unanswered_approval_expires_and_nothing_is_published(demo: Demo) -> None:
    job_id = _plan_one(demo)
    before = (demo.root / "why-static.md").read_text()
    outcome = refresh_page(RefreshParams(job_id=job_id, approval_hours=0.0003))  # ~1 s
    assert outcome.state == "awaiting_review"
    time.sleep(1.5)
    summary = sweep_jobs(SweepParams())
    assert summary.expired == [job_id]
    with Ledger.open(get_settings().ledger_url) as ledger:
        job = ledger.get_job(job_id)
        assert job.state is JobState.approval_expired and job.stop_reason is not None
        assert job.triage_note and '"failure_class":"policy"' in job.triage_note
        assert ledger.list_effects(job_id) == []
    # A late run of the job does nothing: expired is terminal, never approved.
    assert refresh_page(RefreshParams(job_id=job_id)).state == "approval_expired"
    assert (demo.root / "why-static.md").read_text() == before


@pytest.mark.scenario(
    name="a job whose worker died holding the lease",
    faults="a dead worker's unexpired, then expired lease",
    checks="nobody works the job while the lease holds; sweep_jobs then resumes it from its checkpoint",
)
def test_a_job_whose_worker_died_is_resumed_by_the_sweeper(demo: Demo) -> None:
    job_id = _plan_one(demo)
    with Ledger.open(get_settings().ledger_url) as ledger:
        ledger.acquire_lease(job_id, "dead-worker", timedelta(seconds=1))
    # While the dead worker's lease holds, nobody else works the job.
    assert refresh_page(RefreshParams(job_id=job_id)).state == "planned"
    time.sleep(1.2)
    summary = sweep_jobs(SweepParams())
    assert [outcome.job_id for outcome in summary.restarted] == [job_id]
    assert summary.restarted[0].state == "awaiting_review"


@pytest.mark.scenario(
    name="two sweepers at once",
    faults="concurrent sweeps",
    checks="each overdue approval expired exactly once",
)
def test_two_sweepers_at_once_expire_each_job_once(demo: Demo) -> None:
    job_id = _plan_one(demo)
    refresh_page(RefreshParams(job_id=job_id, approval_hours=0.0003))
    time.sleep(1.5)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def _sweep() -> None:
        try:
            with Ledger.open(get_settings().ledger_url) as ledger:
                results.append(sweep_ledger(ledger, idle_after=timedelta(minutes=30), limit=10).expired)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=_sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(job for expired in results for job in expired) == [job_id]
