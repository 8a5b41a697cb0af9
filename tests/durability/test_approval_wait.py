"""A worker dies right after asking for approval and stays down for a (virtual) day, or past the deadline.

Time moves through the test-only clock file (``SITESTEWARD_CLOCK_FILE``): every process that opens the
ledger (workers, the CLI, the sweeper) reads it, so a day passes in a millisecond while leases measured
in seconds still run out for real. The first tests check that clock itself.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sitesteward.errors import ConfigurationError
from sitesteward.ledger import ApprovalRefused, Channel, Decision, JobState, Ledger, StopReason
from sitesteward.ledger.clock import FileClock, SystemClock
from sitesteward.settings import get_settings
from sitesteward.sweep import sweep_ledger
from tests.durability.harness import NEW, OLD, ROOT, Scenario

DAY = timedelta(days=1)
APPROVAL_HOURS = 72  # refresh_page's default deadline (the worker does not change it)

# ------------------------------------------------------------------------------------- the clock


def test_file_clock_offsets_freezes_and_rereads(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    clock = FileClock(path)
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)  # no file: the system time
    FileClock.write_offset(path, DAY)
    assert abs(clock.now() - (datetime.now(UTC) + DAY)) < timedelta(seconds=5)
    first = clock.now()
    assert clock.now() >= first  # an offset clock keeps moving
    FileClock.write_time(path, datetime(2030, 5, 1, 8, 30))  # naive: UTC
    assert clock.now() == datetime(2030, 5, 1, 8, 30, tzinfo=UTC) == clock.now()
    path.write_text("-60\n")
    assert abs(clock.now() - (datetime.now(UTC) - timedelta(minutes=1))) < timedelta(seconds=5)
    path.write_text("inf")
    with pytest.raises(ConfigurationError):
        clock.now()
    path.write_text("next tuesday")
    with pytest.raises(ConfigurationError, match="next tuesday"):
        clock.now()


@pytest.fixture
def clock_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point this process (and the subprocesses it starts) at a fresh clock file."""
    path = tmp_path / "clock"
    monkeypatch.setenv("SITESTEWARD_CLOCK_FILE", str(path))
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def test_ledger_open_uses_the_clock_file_only_when_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SITESTEWARD_CLOCK_FILE", raising=False)
    get_settings.cache_clear()
    with Ledger.open() as ledger:
        assert isinstance(ledger.clock, SystemClock)
    monkeypatch.setenv("SITESTEWARD_CLOCK_FILE", str(tmp_path / "clock"))
    get_settings.cache_clear()
    with Ledger.open() as ledger:
        assert isinstance(ledger.clock, FileClock) and ledger.clock.path == tmp_path / "clock"


SUBMIT_AND_PRINT = """
from sitesteward.ledger import Ledger
with Ledger.open() as ledger:
    print(ledger.submit_job("s", "https://example.test/", goal="g", trigger="t").job.created_at.isoformat())
"""


def test_a_subprocess_sees_the_moved_clock(clock_file: Path) -> None:
    FileClock.write_offset(clock_file, 3 * DAY)
    done = subprocess.run(
        [sys.executable, "-c", SUBMIT_AND_PRINT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    created = datetime.fromisoformat(done.stdout.strip())
    assert abs(created - (datetime.now(UTC) + 3 * DAY)) < timedelta(seconds=60)
    with Ledger.open() as ledger:  # this process reads the same file
        (job,) = ledger.list_jobs()
        assert job.created_at == created and ledger.clock.now() > created


# ------------------------------------------------------------------------------------ scenarios


def _steps(scenario: Scenario) -> dict[str, tuple[int, str, datetime | None, datetime | None]]:
    with Ledger.open() as ledger:
        return {
            s.step: (s.attempts, s.status.value, s.started_at, s.finished_at)
            for s in ledger.list_steps(scenario.job_id)
        }


def _cli(scenario: Scenario, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sitesteward.cli", *args],
        cwd=ROOT,
        env=scenario.worker_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _crash_after_the_approval_request(
    scenario: Scenario,
) -> dict[str, tuple[int, str, datetime | None, datetime | None]]:
    """Kill the worker right after it asked for approval; return the step records it left."""
    assert scenario.run_worker("after_approval_request") == -9
    with Ledger.open() as ledger:
        job = ledger.get_job(scenario.job_id)
        assert job.state is JobState.validated and job.draft_sha  # killed before parking for review
        approval = ledger.get_approval(scenario.job_id, job.draft_sha)
        assert approval is not None and approval.pending and approval.expires_at is not None
        assert len(ledger.evidence(scenario.job_id, "review")) == 1
    steps = _steps(scenario)
    assert set(steps) == {"compare", "source", "draft", "link", "validate"}
    assert all(attempts == 1 and status == "completed" for attempts, status, *_ in steps.values()), steps
    assert scenario.llm.calls == 1
    return steps


@pytest.mark.prefect
@pytest.mark.scenario(
    name="Crash while awaiting approval, worker down for a day",
    faults="SIGKILL right after the approval request; virtual clock +1 day (deadline 72 h); CLI approve",
    checks="published once; drafter called once; one review; steps before approval not re-run",
)
def test_worker_down_a_day_after_asking_for_approval(scenario: Scenario, clock_file: Path) -> None:
    before = _crash_after_the_approval_request(scenario)
    FileClock.write_offset(clock_file, DAY)

    # The sweeper a day later: the dead worker's job is stalled (its lease ran out), the request is not due.
    with Ledger.open() as ledger:
        report = sweep_ledger(ledger, idle_after=timedelta(minutes=30), limit=10)
    assert report.expired == [] and report.restart == [scenario.job_id]
    assert scenario.run_worker(None) == 0  # the restarted run parks the job without asking again
    assert scenario.state() is JobState.awaiting_review

    approved = _cli(scenario, "approve", scenario.job_id, "--reviewer", "day-later", "--no-resume")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert scenario.run_worker(None) == 0
    assert scenario.state() is JobState.monitoring

    scenario.check_invariants()  # one LLM call, one review, one applied edit, approved before written
    after = _steps(scenario)
    assert {step: after[step] for step in before} == before  # nothing before the approval ran again
    assert set(after) - set(before) == {"publish"}
    with Ledger.open() as ledger:
        assert ledger.attempt_history(scenario.job_id) == []
        job = ledger.get_job(scenario.job_id)
        approval = ledger.get_approval(scenario.job_id, job.draft_sha or "")
        assert approval is not None and approval.reviewer == "day-later" and approval.channel is Channel.cli
        assert approval.decided_at is not None and approval.expires_at is not None
        # The CLI and the workers ran on the moved clock: decided a day after the request, in time.
        assert approval.decided_at - approval.requested_at >= DAY
        assert approval.decided_at < approval.expires_at
        (effect,) = ledger.list_effects(scenario.job_id)
        assert effect.completed_at is not None and effect.completed_at >= approval.decided_at


@pytest.mark.prefect
@pytest.mark.scenario(
    name="Crash while awaiting approval, nobody decides before the deadline",
    faults="SIGKILL right after the approval request; virtual clock +4 days (deadline 72 h); late approve",
    checks="sweeper expires it, never approves; nothing published; terminal with stop reason",
)
def test_approval_expires_while_the_worker_is_down(scenario: Scenario, clock_file: Path) -> None:
    _crash_after_the_approval_request(scenario)
    FileClock.write_offset(clock_file, timedelta(hours=APPROVAL_HOURS) + DAY)

    # First sweep: the job is stalled at `validated` (its worker died before parking): it is resumed,
    # parks for review, and the next sweep expires the overdue request.
    first = _cli(scenario, "sweep")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "expired 0 approvals; restarted 1 jobs" in first.stdout, first.stdout
    assert scenario.state() is JobState.awaiting_review
    second = _cli(scenario, "sweep")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "expired 1 approvals" in second.stdout, second.stdout

    late = _cli(scenario, "approve", scenario.job_id, "--reviewer", "too-late", "--no-resume")
    assert late.returncode != 0, late.stdout
    with Ledger.open() as ledger:
        job = ledger.get_job(scenario.job_id)
        assert job.draft_sha is not None
        with pytest.raises(ApprovalRefused):
            ledger.decide(scenario.job_id, job.draft_sha, Decision.approve, reviewer="x", channel=Channel.ui)
    assert scenario.run_worker(None) == 0  # a worker finds nothing to do

    with Ledger.open() as ledger:
        job = ledger.get_job(scenario.job_id)
        assert job.state is JobState.approval_expired and job.stop_reason is StopReason.approval_expired
        assert job.terminal and job.next_action and job.triage_note
        approval = ledger.get_approval(scenario.job_id, job.draft_sha or "")
        assert approval is not None and approval.pending  # never auto-approved, never decided late
        assert ledger.list_effects(scenario.job_id) == []
        assert len(ledger.evidence(scenario.job_id, "review")) == 1
        assert ledger.evidence(scenario.job_id, "approval") == []
        assert ledger.verify_chain(scenario.job_id).ok
    text = (scenario.root / "why-static.md").read_text()
    assert OLD in text and NEW not in text
    assert scenario.llm.calls == 1
