"""Duplicate submissions and concurrent workers: one job, one draft, one approval request, one edit."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from sitesteward.ledger import JobState, Ledger
from sitesteward.settings import get_settings
from tests.durability.harness import ROOT, Scenario

pytestmark = pytest.mark.prefect

SUBMIT = """
import sys
from sitesteward.jobs import JobInputs
from sitesteward.ledger import Ledger
from sitesteward.models import Finding, Severity
page, root, base = sys.argv[1], sys.argv[2], sys.argv[3]
inputs = JobInputs(site_id="crash", base_url=base, page_url=page, content_root=root, allow_private=True,
                   max_links=0, findings=[Finding(code="stale_date", severity=Severity.warning, url=page,
                                                  detail="as of 2019")])
with Ledger.open() as ledger:
    print(ledger.submit_job("crash", page, goal="refresh why-static", trigger="t1", inputs=inputs).job.job_id)
"""


@pytest.mark.scenario(
    name="20 processes submit the same job at once",
    faults="concurrent duplicate submissions (separate processes, one ledger)",
    checks="one job id for all 20, one job in the ledger",
)
def test_twenty_concurrent_submissions_make_one_job(scenario: Scenario) -> None:
    page = f"{scenario.site.base_url}/why-static/"
    args = [sys.executable, "-c", SUBMIT, page, str(scenario.root), scenario.site.base_url + "/"]

    def submit(_: int) -> str:
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
        return done.stdout.strip()

    with ThreadPoolExecutor(max_workers=20) as pool:
        ids = set(pool.map(submit, range(20)))
    assert ids == {scenario.job_id}
    with Ledger.open(get_settings().ledger_url) as ledger:
        assert [job.job_id for job in ledger.list_jobs(site="crash")] == [scenario.job_id]


@pytest.mark.scenario(
    name="3 workers run the same job at once, before and after approval",
    faults="concurrent worker processes, lease contention",
    checks="one model call, one review request, one applied edit; ends monitoring; every invariant holds",
)
def test_concurrent_workers_on_one_job_draft_once_and_publish_once(scenario: Scenario) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        codes = list(pool.map(lambda _: scenario.run_worker(None), range(3)))
    assert codes == [0, 0, 0]
    for _ in range(3):  # a worker that found the lease taken left the job to the others
        if scenario.state() is JobState.awaiting_review:
            break
        scenario.run_worker(None)
    assert scenario.state() is JobState.awaiting_review
    scenario.approve()
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda _: scenario.run_worker(None), range(3)))
    scenario.run_until(JobState.monitoring, None)
    scenario.check_invariants()  # one LLM call, one review, one applied edit
