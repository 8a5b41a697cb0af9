"""A worker frozen (SIGSTOP) with the publish intent written wakes up after another worker finished the job.

Worker A is stopped at ``after_publish_intent``: it holds the lease, has written the intent, and is about to
write the page. Its lease runs out, worker B takes the job over (the pending intent makes B look at the
page first, find the edit missing, and write it), publishes and verifies. Then A is continued: its next
step is the page write, which the fence must refuse, since the job's version moved on with B's lease.
``before_publish`` would not test the fence: A would find B's completed publish step and skip it.

The second scenario wakes A while B still holds the job (B frozen between publish and verify): A must
again change nothing. (It used to fail: A's refused write counted as a permanent failure of the publish
step, and stopping the job re-read the version instead of using A's fence, so A moved B's published job
to ``failed``.)
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from sitesteward.ledger import EffectStatus, JobState, Ledger
from sitesteward.settings import get_settings
from tests.durability.harness import NEW, OLD, Scenario, WorkerProcess

pytestmark = pytest.mark.prefect


@pytest.fixture
def frozen_workers() -> Iterator[list[WorkerProcess]]:
    """Workers a test started; any still alive (stopped or not) are killed afterwards, pass or fail."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill()


def _wait_for_lease_to_lapse(scenario: Scenario) -> int:
    """Sleep until the frozen holder's lease has expired; return the fence it was holding."""
    with Ledger.open(get_settings().ledger_url) as ledger:
        job = ledger.get_job(scenario.job_id)
        assert job.lease_owner is not None and job.lease_expires_at is not None, job
        remaining = (job.lease_expires_at - ledger.clock.now()).total_seconds()
    time.sleep(max(remaining, 0) + 0.2)
    return job.version


@pytest.mark.scenario(
    name="Frozen worker wakes after its lease was taken over",
    faults="SIGSTOP worker A after its publish intent; lease expires; worker B completes; SIGCONT A",
    checks="A's page write is refused by the fencing token; edit on disk once; one applied effect",
)
def test_sigstopped_worker_is_fenced_out_after_takeover(
    scenario: Scenario, frozen_workers: list[WorkerProcess]
) -> None:
    scenario.run_until(JobState.awaiting_review, None)
    scenario.approve()

    a = scenario.start_worker("after_publish_intent=stop")
    frozen_workers.append(a)
    a.wait_stopped(timeout=120)
    with Ledger.open(get_settings().ledger_url) as ledger:
        (intent,) = ledger.list_effects(scenario.job_id)
        assert intent.status is EffectStatus.pending  # A wrote the intent, not the page
    assert OLD in (scenario.root / "why-static.md").read_text()
    stale_fence = _wait_for_lease_to_lapse(scenario)

    assert scenario.run_worker(None) == 0  # B takes the job over and finishes it
    assert scenario.state() is JobState.monitoring
    page = scenario.root / "why-static.md"
    after_b = page.stat().st_mtime_ns, page.read_text()
    with Ledger.open(get_settings().ledger_url) as ledger:
        finished_by_b = ledger.get_job(scenario.job_id)
        assert finished_by_b.version > stale_fence
        published_by_b = ledger.list_effects(scenario.job_id)

    a.process.send_signal(signal.SIGCONT)
    a.process.wait(timeout=120)
    output = a.output()
    assert "StaleVersion" in output, output  # A's page write was refused by the fence ...

    assert (page.stat().st_mtime_ns, page.read_text()) == after_b  # ... so A never touched the page
    assert page.read_text().count(NEW) == 1 and OLD not in page.read_text()
    with Ledger.open(get_settings().ledger_url) as ledger:
        assert ledger.get_job(scenario.job_id) == finished_by_b  # nor the job
        effects = ledger.list_effects(scenario.job_id)
        assert effects == published_by_b  # nor B's record of the edit
        assert [e.status for e in effects] == [EffectStatus.applied]
        assert len(ledger.evidence(scenario.job_id, "publish_request")) == 1  # A's intent, which B reused
        assert len(ledger.evidence(scenario.job_id, "publish_response")) == 1
    scenario.check_invariants()


@pytest.mark.scenario(
    name="Frozen worker wakes while the new lease holder is mid-job",
    faults="SIGSTOP worker A after its publish intent; B publishes, SIGSTOP B before verify; SIGCONT A",
    checks="A's stale run changes nothing: B verifies and the job reaches monitoring; edit on disk once",
)
@pytest.mark.slow
def test_stale_worker_cannot_fail_a_job_another_worker_holds(
    scenario: Scenario, frozen_workers: list[WorkerProcess]
) -> None:
    scenario.run_until(JobState.awaiting_review, None)
    scenario.approve()
    a = scenario.start_worker("after_publish_intent=stop")
    frozen_workers.append(a)
    a.wait_stopped(timeout=120)
    _wait_for_lease_to_lapse(scenario)

    b = scenario.start_worker("before_verify=stop")
    frozen_workers.append(b)
    b.wait_stopped(timeout=120)
    assert scenario.state() is JobState.published  # B wrote the page and holds the job

    with Ledger.open(get_settings().ledger_url) as ledger:
        held_by_b = ledger.get_job(scenario.job_id)
    a.process.send_signal(signal.SIGCONT)
    a.process.wait(timeout=120)
    assert "StaleVersion" in a.output(), a.output()
    with Ledger.open(get_settings().ledger_url) as ledger:
        job = ledger.get_job(scenario.job_id)
    assert job == held_by_b, (job.state, job.stop_reason, job.failure_reason)  # the stale run changed nothing

    b.process.send_signal(signal.SIGCONT)
    b.process.wait(timeout=120)
    assert b.process.returncode == 0, b.output()
    scenario.check_invariants()
