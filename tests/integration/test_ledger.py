"""The ledger on SQLite and PostgreSQL: schema, jobs, transitions, leases, steps, approvals, evidence.

The ``ledger`` fixture is parametrized over both backends; other ledger/publish test modules import it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from sitesteward.engine.runner import JobRunner
from sitesteward.errors import ConfigurationError, IllegalTransition, StaleVersion
from sitesteward.jobs import JobInputs
from sitesteward.ledger import (
    ApprovalRefused,
    Channel,
    Decision,
    EffectStatus,
    JobRecord,
    JobState,
    LeaseHeld,
    Ledger,
    ManualClock,
    StepStatus,
    StopReason,
    UnknownJob,
    effect_key,
    job_id_for,
)
from sitesteward.ledger import schema as ledger_schema
from sitesteward.ledger.schema import MIGRATIONS

SITE = "example"
URL = "https://example.test/guide/"
DRAFT_A = "a" * 64
DRAFT_B = "b" * 64


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger' / 'ledger.sqlite'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def ledger(ledger_url: str, clock: ManualClock) -> Iterator[Ledger]:
    with Ledger.open(ledger_url, clock=clock) as opened:
        yield opened


def submit(ledger: Ledger, url: str = URL, trigger: str = "t1") -> JobRecord:
    return ledger.submit_job(
        SITE, url, goal="refresh the guide", trigger=trigger, inputs={"findings": ["x"]}
    ).job


def advance_to(ledger: Ledger, job: JobRecord, target: JobState, draft: str = DRAFT_A) -> JobRecord:
    """Walk the happy path (recording the facts each edge needs) until ``target``."""
    path = [
        JobState.compared,
        JobState.drafted,
        JobState.linked,
        JobState.validated,
        JobState.awaiting_review,
        JobState.approved,
        JobState.published,
        JobState.monitoring,
    ]
    for state in path[: path.index(target) + 1]:
        if state is JobState.drafted:
            job = ledger.transition(job.job_id, state, expected_version=job.version, draft_sha=draft)
            continue
        if state is JobState.approved:
            ledger.decide(job.job_id, draft, Decision.approve, reviewer="ann", channel=Channel.cli)
        if state is JobState.published:
            effect = ledger.begin_effect(job.job_id, "publish", draft, target="guide.md", fence=job.version)
            ledger.complete_effect(effect.key, revision="r1", fence=job.version)
        job = ledger.transition(job.job_id, state, expected_version=job.version)
    return job


# ----------------------------------------------------------------------------------------- schema


def test_open_migrates_once_and_is_idempotent(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as first:
        assert first.schema_version() == MIGRATIONS[-1][0]
        assert first.migrate() == []
    with Ledger.open(ledger_url) as second:
        assert second.migrate() == []
        with second._engine.connect() as conn:
            rows = conn.execute(text("SELECT version FROM schema_version")).all()
        assert [r[0] for r in rows] == [m[0] for m in MIGRATIONS]


def test_migrated_schema_matches_the_table_definitions(ledger: Ledger) -> None:
    inspector = inspect(ledger._engine)
    for table in ledger_schema.metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name
    indexes = {i["name"]: i for i in inspector.get_indexes("jobs")}
    assert indexes["uq_jobs_live_page"]["unique"]


def test_database_newer_than_code_is_refused(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as opened, opened._engine.begin() as conn:
        conn.execute(
            ledger_schema.schema_version.insert().values(
                version=999, name="from the future", applied_at=datetime.now(UTC)
            )
        )
    with pytest.raises(ConfigurationError, match="newer than this code"):
        Ledger.open(ledger_url)


def test_open_without_migrate_needs_a_current_schema(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="run migrate"):
        Ledger.open(f"sqlite:///{tmp_path / 'empty.sqlite'}", migrate=False)


def test_unsupported_urls_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        Ledger.open("sqlite://")
    with pytest.raises(ConfigurationError):
        Ledger.open("mysql://u@localhost/x")


def test_default_url_comes_from_settings(isolated_settings: Path) -> None:
    with Ledger.open() as opened:
        assert opened.dialect == "sqlite"
    assert (isolated_settings / "ledger.sqlite").exists()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    with Ledger.open(f"sqlite:///{tmp_path / 'w.sqlite'}") as opened, opened._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000


# ------------------------------------------------------------------------------------------- jobs


def test_submit_is_idempotent_and_returns_typed_records(ledger: Ledger, clock: ManualClock) -> None:
    first = ledger.submit_job(SITE, URL, goal="g", trigger="t1", inputs={"n": 1})
    again = ledger.submit_job(SITE, URL, goal="other goal", trigger="t1")
    assert first.created and not again.created
    assert again.job == first.job
    job = first.job
    assert job.job_id == job_id_for(SITE, URL, "t1")
    assert job.state is JobState.planned and job.version == 1
    assert job.inputs == {"n": 1}
    assert job.created_at == clock.now() and job.created_at.tzinfo is not None
    assert isinstance(job, JobRecord)
    with pytest.raises(Exception, match="frozen"):
        job.state = JobState.failed  # type: ignore[misc]
    assert len(ledger.list_jobs()) == 1


def test_never_two_live_jobs_for_one_page(ledger: Ledger) -> None:
    first = submit(ledger, trigger="t1")
    second = ledger.submit_job(SITE, URL, goal="g", trigger="t2")
    assert not second.created and second.duplicate_of_live
    assert second.job.job_id == first.job_id
    assert ledger.live_job_for_page(SITE, URL) == first
    # Once the first job ends, a new trigger creates a new job.
    ledger.transition(first.job_id, JobState.cancelled, expected_version=1, stop_reason=StopReason.superseded)
    third = ledger.submit_job(SITE, URL, goal="g", trigger="t2")
    assert third.created and third.job.job_id != first.job_id
    assert ledger.live_job_for_page(SITE, URL) == third.job
    # The same (site, url, trigger) as the ended job still finds the ended job.
    assert ledger.submit_job(SITE, URL, goal="g", trigger="t1").job.state is JobState.cancelled


def test_submit_refuses_a_non_initial_state(ledger: Ledger) -> None:
    with pytest.raises(IllegalTransition):
        ledger.submit_job(SITE, URL, goal="g", trigger="t", initial_state=JobState.approved)
    job = ledger.submit_job(SITE, URL, goal="g", trigger="t", initial_state=JobState.refresh_needed).job
    assert job.state is JobState.refresh_needed


def test_queries(ledger: Ledger) -> None:
    a = submit(ledger, "https://example.test/a/")
    b = submit(ledger, "https://example.test/b/")
    other = ledger.submit_job("other", "https://other.test/", goal="g", trigger="t").job
    ledger.transition(b.job_id, JobState.failed, expected_version=1, stop_reason=StopReason.bad_input)
    assert {j.job_id for j in ledger.list_jobs(states=[JobState.planned])} == {a.job_id, other.job_id}
    assert {j.job_id for j in ledger.list_jobs(site=SITE)} == {a.job_id, b.job_id}
    assert ledger.list_jobs(states=[JobState.failed], site="other") == []
    assert ledger.live_job_for_page(SITE, "https://example.test/b/") is None
    assert ledger.find_job("nope") is None
    with pytest.raises(UnknownJob):
        ledger.get_job("nope")


# ------------------------------------------------------------------------------------ transitions


def test_happy_path_to_monitoring(ledger: Ledger) -> None:
    job = advance_to(ledger, submit(ledger), JobState.monitoring)
    assert job.state is JobState.monitoring
    assert job.version == 9  # one bump per transition from version 1
    assert ledger.live_job_for_page(SITE, URL) is None  # monitoring is not live


def test_compare_and_set_loses_with_a_stale_version(ledger: Ledger) -> None:
    job = submit(ledger)
    moved = ledger.transition(job.job_id, JobState.compared, expected_version=job.version)
    assert moved.version == job.version + 1
    with pytest.raises(StaleVersion, match="version 2"):
        ledger.transition(job.job_id, JobState.drafted, expected_version=job.version)
    assert ledger.get_job(job.job_id).state is JobState.compared


def test_illegal_transitions_are_refused_and_change_nothing(ledger: Ledger) -> None:
    job = submit(ledger)
    with pytest.raises(IllegalTransition, match="planned -> approved"):
        ledger.transition(job.job_id, JobState.approved, expected_version=1)
    with pytest.raises(IllegalTransition, match="stop reason"):
        ledger.transition(job.job_id, JobState.failed, expected_version=1)
    with pytest.raises(UnknownJob):
        ledger.transition("missing", JobState.compared, expected_version=1)
    assert ledger.get_job(job.job_id) == job


def test_terminal_state_records_reason_and_is_final(ledger: Ledger) -> None:
    job = submit(ledger)
    failed = ledger.transition(
        job.job_id,
        JobState.failed,
        expected_version=1,
        stop_reason=StopReason.retries_exhausted,
        failure_reason="fetch timed out 5 times",
        next_action="check the site is up, then resubmit",
    )
    assert failed.stop_reason is StopReason.retries_exhausted
    assert failed.failure_reason == "fetch timed out 5 times"
    assert failed.next_action == "check the site is up, then resubmit"
    with pytest.raises(IllegalTransition, match="terminal"):
        ledger.transition(job.job_id, JobState.planned, expected_version=failed.version)


def test_facts_required_by_edges(ledger: Ledger) -> None:
    job = advance_to(ledger, submit(ledger), JobState.validated)
    no_draft = ledger.update_job(job.job_id, expected_version=job.version, draft_sha=None)
    with pytest.raises(IllegalTransition, match="without a draft hash"):
        ledger.transition(job.job_id, JobState.awaiting_review, expected_version=no_draft.version)
    job = ledger.transition(
        job.job_id, JobState.awaiting_review, expected_version=no_draft.version, draft_sha=DRAFT_A
    )
    with pytest.raises(IllegalTransition, match="needs a recorded 'approve'"):
        ledger.transition(job.job_id, JobState.approved, expected_version=job.version)
    with pytest.raises(IllegalTransition, match="needs a recorded 'reject'"):
        ledger.transition(
            job.job_id, JobState.rejected, expected_version=job.version, stop_reason=StopReason.rejected
        )
    ledger.decide(job.job_id, DRAFT_A, Decision.approve, reviewer="ann", channel=Channel.ui)
    job = ledger.transition(job.job_id, JobState.approved, expected_version=job.version)
    with pytest.raises(IllegalTransition, match="publish effect"):
        ledger.transition(job.job_id, JobState.published, expected_version=job.version)
    effect = ledger.begin_effect(job.job_id, "publish", DRAFT_A, target="guide.md", fence=job.version)
    with pytest.raises(IllegalTransition, match="it is pending"):
        ledger.transition(job.job_id, JobState.published, expected_version=job.version)
    ledger.complete_effect(effect.key, revision="sha256:1", fence=job.version)
    assert (
        ledger.transition(job.job_id, JobState.published, expected_version=job.version).state
        is JobState.published
    )


def test_rejection_needs_and_records_the_reject_decision(ledger: Ledger) -> None:
    job = advance_to(ledger, submit(ledger), JobState.awaiting_review)
    ledger.decide(
        job.job_id, DRAFT_A, Decision.reject, reviewer="bob", channel=Channel.cli, notes="wrong source"
    )
    job = ledger.transition(
        job.job_id, JobState.rejected, expected_version=job.version, stop_reason=StopReason.rejected
    )
    assert job.state is JobState.rejected and job.stop_reason is StopReason.rejected


def test_changes_requested_end_the_job_like_a_rejection(ledger: Ledger) -> None:
    job = advance_to(ledger, submit(ledger), JobState.awaiting_review)
    with pytest.raises(IllegalTransition, match="the ledger has nothing"):
        ledger.transition(
            job.job_id, JobState.rejected, expected_version=job.version, stop_reason=StopReason.rejected
        )
    ledger.decide(
        job.job_id, DRAFT_A, Decision.request_changes, reviewer="bob", channel=Channel.ui, notes="cite 2025"
    )
    with pytest.raises(IllegalTransition, match="needs a recorded 'approve'"):
        ledger.transition(job.job_id, JobState.approved, expected_version=job.version)
    job = ledger.transition(
        job.job_id, JobState.rejected, expected_version=job.version, stop_reason=StopReason.rejected
    )
    assert job.state is JobState.rejected and job.terminal


def test_redraft_path_and_draft_frozen_under_review(ledger: Ledger) -> None:
    job = advance_to(ledger, submit(ledger), JobState.awaiting_review)
    with pytest.raises(IllegalTransition, match="re-draft"):
        ledger.update_job(job.job_id, expected_version=job.version, draft_sha=DRAFT_B)
    ledger.decide(job.job_id, DRAFT_A, Decision.request_changes, reviewer="ann", channel=Channel.ui)
    job = ledger.transition(job.job_id, JobState.drafted, expected_version=job.version, draft_sha=DRAFT_B)
    assert job.state is JobState.drafted and job.draft_sha == DRAFT_B


def test_monitoring_back_to_refresh_needed_respects_the_live_page_rule(ledger: Ledger) -> None:
    done = advance_to(ledger, submit(ledger, trigger="t1"), JobState.monitoring)
    newer = ledger.submit_job(SITE, URL, goal="g", trigger="t2")
    assert newer.created  # monitoring is not live, so a new trigger makes a new job
    with pytest.raises(IllegalTransition, match="another live job"):
        ledger.transition(done.job_id, JobState.refresh_needed, expected_version=done.version)
    ledger.transition(
        newer.job.job_id, JobState.cancelled, expected_version=1, stop_reason=StopReason.cancelled
    )
    again = ledger.transition(done.job_id, JobState.refresh_needed, expected_version=done.version)
    assert again.state is JobState.refresh_needed


def test_update_job_sets_columns_by_compare_and_set(ledger: Ledger) -> None:
    job = submit(ledger)
    updated = ledger.update_job(
        job.job_id, expected_version=1, current_step="compare", flow_run_id="run-1", triage_note="look at it"
    )
    assert (updated.current_step, updated.flow_run_id, updated.triage_note) == (
        "compare",
        "run-1",
        "look at it",
    )
    assert updated.version == 2 and updated.state is JobState.planned
    assert updated.output_location is None
    with pytest.raises(StaleVersion):
        ledger.update_job(job.job_id, expected_version=1, current_step="x")


# ----------------------------------------------------------------------------------------- leases


def test_lease_fencing_rejects_a_frozen_workers_late_writes(ledger: Ledger, clock: ManualClock) -> None:
    job = submit(ledger)
    token_a = ledger.acquire_lease(job.job_id, "worker-a", timedelta(seconds=30))
    with pytest.raises(LeaseHeld) as held:
        ledger.acquire_lease(job.job_id, "worker-b", timedelta(seconds=30))
    assert held.value.retry_after == pytest.approx(30)
    # worker-a freezes; its lease expires; worker-b takes over.
    clock.advance(timedelta(seconds=31))
    assert [j.job_id for j in ledger.expired_leases()] == [job.job_id]
    token_b = ledger.acquire_lease(job.job_id, "worker-b", timedelta(seconds=30))
    assert token_b > token_a
    assert ledger.expired_leases() == []
    # worker-a wakes up: every write carrying its token fails.
    with pytest.raises(StaleVersion):
        ledger.transition(job.job_id, JobState.compared, expected_version=token_a)
    with pytest.raises(StaleVersion):
        ledger.record_attempt(job.job_id, "compare", "X", "late", fence=token_a)
    with pytest.raises(StaleVersion):
        ledger.begin_effect(job.job_id, "publish", DRAFT_A, target="t", fence=token_a)
    with pytest.raises(StaleVersion):
        ledger.check_fence(job.job_id, token_a)
    with pytest.raises(StaleVersion):
        ledger.release_lease(job.job_id, "worker-a", token_a)
    moved = ledger.transition(job.job_id, JobState.compared, expected_version=token_b)
    assert moved.lease_owner == "worker-b"
    assert ledger.attempts(job.job_id, "compare") == 0


def test_lease_renewal_release_and_terminal_clear(ledger: Ledger, clock: ManualClock) -> None:
    job = submit(ledger)
    token = ledger.acquire_lease(job.job_id, "w", timedelta(seconds=10))
    renewed = ledger.acquire_lease(job.job_id, "w", timedelta(seconds=60))
    assert renewed == token + 1
    assert ledger.get_job(job.job_id).lease_expires_at == clock.now() + timedelta(seconds=60)
    released = ledger.release_lease(job.job_id, "w", renewed)
    assert released.lease_owner is None and released.lease_expires_at is None
    assert ledger.release_lease(job.job_id, "w", released.version) == released  # already free: no-op
    token = ledger.acquire_lease(job.job_id, "x", timedelta(seconds=10))
    with pytest.raises(StaleVersion, match="leased to x"):
        ledger.release_lease(job.job_id, "w", token)
    ended = ledger.transition(
        job.job_id, JobState.cancelled, expected_version=token, stop_reason=StopReason.cancelled
    )
    assert ended.lease_owner is None
    with pytest.raises(ValueError):
        ledger.acquire_lease(job.job_id, "w", timedelta(0))


def _runner(ledger: Ledger, owner: str, trigger: str = "t1") -> JobRunner:
    """A runner with a 30 s lease for a new job (its inputs valid ``JobInputs``)."""
    inputs = JobInputs(site_id=SITE, base_url="https://example.test/", page_url=URL, content_root="/nowhere")
    job = ledger.submit_job(SITE, URL, goal="refresh the guide", trigger=trigger, inputs=inputs).job
    return JobRunner(ledger, job, owner, lease=timedelta(seconds=30))


def test_a_lapsed_runner_cannot_end_a_job_another_worker_moved_on_and_let_go(
    ledger: Ledger, clock: ManualClock
) -> None:
    a = _runner(ledger, "worker-a")
    a.acquire()
    # worker-a freezes mid-step; its lease expires; worker-b takes the job, moves it on and lets go.
    clock.advance(timedelta(seconds=31))
    token_b = ledger.acquire_lease(a.job_id, "worker-b", timedelta(seconds=30))
    moved = ledger.transition(a.job_id, JobState.compared, expected_version=token_b)
    left_by_b = ledger.release_lease(a.job_id, "worker-b", moved.version)
    assert left_by_b.lease_owner is None
    # worker-a wakes up with a failed step: the lease is free, but the job is no longer the one it knew.
    with pytest.raises(StaleVersion, match="moved past version"):
        a.stop(JobState.failed, StopReason.retries_exhausted, "compare failed 3 times", "retry")
    assert ledger.get_job(a.job_id) == left_by_b


def test_a_runner_ends_a_job_it_holds_or_let_go_of_unchanged(ledger: Ledger, clock: ManualClock) -> None:
    held = _runner(ledger, "worker-a", trigger="t1")
    held.acquire()
    stopped = held.stop(JobState.failed, StopReason.bad_input, "compare: gone", "resubmit").job
    assert (stopped.state, stopped.stop_reason, stopped.lease_owner) == (
        JobState.failed,
        StopReason.bad_input,
        None,
    )

    # Each job below is new (a terminal job frees its page for the next trigger).
    released = _runner(ledger, "worker-a", trigger="t2")
    released.acquire()
    released.release()  # let go on purpose (as before waiting for a reviewer); nobody wrote it since
    stopped = released.stop(JobState.cancelled, StopReason.cancelled, "operator", "none").job
    assert stopped.state is JobState.cancelled

    taken = _runner(ledger, "worker-a", trigger="t3")
    taken.acquire()
    clock.advance(timedelta(seconds=31))
    ledger.acquire_lease(taken.job_id, "worker-b", timedelta(seconds=30))
    with pytest.raises(StaleVersion, match="leased to worker-b"):
        taken.stop(JobState.failed, StopReason.bad_input, "late", "none")
    assert ledger.get_job(taken.job_id).state is JobState.planned


def test_stalled_jobs(ledger: Ledger, clock: ManualClock) -> None:
    leased = submit(ledger, "https://example.test/leased/")
    idle = submit(ledger, "https://example.test/idle/")
    review = advance_to(ledger, submit(ledger, "https://example.test/review/"), JobState.awaiting_review)
    ledger.acquire_lease(leased.job_id, "w", timedelta(minutes=5))
    assert ledger.stalled_jobs() == []
    clock.advance(timedelta(minutes=6))
    assert [j.job_id for j in ledger.stalled_jobs()] == [leased.job_id]
    clock.advance(timedelta(minutes=30))
    stalled = {j.job_id for j in ledger.stalled_jobs()}
    assert stalled == {leased.job_id, idle.job_id}
    assert review.job_id not in stalled
    assert ledger.stalled_jobs(idle_after=timedelta(days=1)) == [ledger.get_job(leased.job_id)]


# --------------------------------------------------------------------------------- attempts, steps


def test_attempts_are_counted_per_step_and_survive_reopening(ledger_url: str, clock: ManualClock) -> None:
    with Ledger.open(ledger_url, clock=clock) as first:
        job = submit(first)
        assert first.record_attempt(job.job_id, "fetch", "FetchTimeout", "timed out") == 1
        assert first.record_attempt(job.job_id, "fetch", "RetryableStatus", "503") == 2
        assert first.record_attempt(job.job_id, "draft", "LLMRateLimited", "429") == 1
    with Ledger.open(ledger_url, clock=clock) as second:
        assert second.attempts(job.job_id, "fetch") == 2
        assert second.attempts(job.job_id, "draft") == 1
        assert second.attempts(job.job_id, "verify") == 0
        history = second.attempt_history(job.job_id, "fetch")
        assert [(a.number, a.error_class) for a in history] == [(1, "FetchTimeout"), (2, "RetryableStatus")]
        assert len(second.attempt_history(job.job_id)) == 3
        with pytest.raises(UnknownJob):
            second.record_attempt("missing", "fetch", "X", "y")


def test_steps_first_completion_wins(ledger: Ledger) -> None:
    job = submit(ledger)
    started = ledger.start_step(job.job_id, "compare", "h1")
    assert started.status is StepStatus.running and started.attempts == 1
    failed = ledger.fail_step(job.job_id, "compare", "h1", "boom")
    assert failed.status is StepStatus.failed and failed.error == "boom"
    again = ledger.start_step(job.job_id, "compare", "h1")
    assert again.attempts == 2 and again.error is None
    done = ledger.complete_step(job.job_id, "compare", "h1", {"path": "results/compare.json"})
    assert done.status is StepStatus.completed and done.output_ref == {"path": "results/compare.json"}
    assert ledger.complete_step(job.job_id, "compare", "h1", {"path": "other"}).output_ref == done.output_ref
    assert ledger.start_step(job.job_id, "compare", "h1") == done
    assert ledger.fail_step(job.job_id, "compare", "h1", "late") == done
    assert ledger.get_step(job.job_id, "compare", "h2") is None
    other = ledger.complete_step(job.job_id, "compare", "h2")
    assert other.attempts == 1 and other.output_ref is None
    assert {(s.step, s.input_hash) for s in ledger.list_steps(job.job_id)} == {
        ("compare", "h1"),
        ("compare", "h2"),
    }


# --------------------------------------------------------------------------------------- effects


def test_effect_intent_then_completion(ledger: Ledger, clock: ManualClock) -> None:
    job = submit(ledger)
    key = effect_key(job.job_id, "publish", DRAFT_A)
    assert ledger.get_effect(key) is None
    with pytest.raises(KeyError):
        ledger.complete_effect(key, revision="r", fence=job.version)
    pending = ledger.begin_effect(job.job_id, "publish", DRAFT_A, target="guide.md", fence=job.version)
    assert pending.key == key and pending.status is EffectStatus.pending and not pending.done
    assert (
        ledger.begin_effect(job.job_id, "publish", DRAFT_A, target="guide.md", fence=job.version) == pending
    )
    failed = ledger.fail_effect(key, "EditConflict: gone", fence=job.version)
    assert failed.status is EffectStatus.failed
    retried = ledger.begin_effect(job.job_id, "publish", DRAFT_A, target="guide.md", fence=job.version)
    assert retried.status is EffectStatus.pending and retried.error is None
    clock.advance(timedelta(seconds=1))
    done = ledger.complete_effect(key, revision="sha256:x", fence=job.version, status=EffectStatus.reconciled)
    assert done.status is EffectStatus.reconciled and done.revision == "sha256:x"
    assert done.completed_at == clock.now()
    # First completion wins; a done effect is not failed or re-opened.
    assert ledger.complete_effect(key, revision="other", fence=job.version) == done
    assert ledger.fail_effect(key, "late", fence=job.version) == done
    assert ledger.begin_effect(job.job_id, "publish", DRAFT_A, target="guide.md", fence=job.version) == done
    assert ledger.list_effects(job.job_id) == [done]
    with pytest.raises(ValueError):
        ledger.complete_effect(key, revision="r", fence=job.version, status=EffectStatus.failed)


# ------------------------------------------------------------------------------------- approvals


def test_first_decision_wins_and_repeats_are_no_ops(ledger: Ledger, clock: ManualClock) -> None:
    job = advance_to(ledger, submit(ledger), JobState.awaiting_review)
    request = ledger.request_approval(job.job_id, DRAFT_A, expires_at=clock.now() + timedelta(days=3))
    assert request.pending and ledger.request_approval(job.job_id, DRAFT_A) == request
    clock.advance(timedelta(hours=1))
    decided = ledger.decide(
        job.job_id, DRAFT_A, Decision.approve, reviewer="ann", channel=Channel.cli, notes="ok"
    )
    assert (
        decided.decision is Decision.approve and decided.reviewer == "ann" and decided.channel is Channel.cli
    )
    assert decided.requested_at == request.requested_at and decided.decided_at == clock.now()
    repeat = ledger.decide(job.job_id, DRAFT_A, Decision.approve, reviewer="bob", channel=Channel.ui)
    assert repeat == decided
    with pytest.raises(ApprovalRefused, match="already decided: approve by ann"):
        ledger.decide(job.job_id, DRAFT_A, Decision.reject, reviewer="bob", channel=Channel.ui)
    assert ledger.is_approved(job.job_id, DRAFT_A)
    assert not ledger.is_approved(job.job_id, DRAFT_B)
    assert len(ledger.evidence(job.job_id, "approval")) == 1


def test_decisions_only_for_the_current_draft(ledger: Ledger) -> None:
    job = advance_to(ledger, submit(ledger), JobState.awaiting_review)
    with pytest.raises(ApprovalRefused, match=r"not job \w+'s current draft"):
        ledger.decide(job.job_id, DRAFT_B, Decision.approve, reviewer="ann", channel=Channel.cli)
    with pytest.raises(ApprovalRefused):
        ledger.request_approval(job.job_id, DRAFT_B)
    assert ledger.get_approval(job.job_id, DRAFT_B) is None


def test_expired_requests_never_auto_approve(ledger: Ledger, clock: ManualClock) -> None:
    job = advance_to(ledger, submit(ledger), JobState.awaiting_review)
    ledger.request_approval(job.job_id, DRAFT_A, expires_at=clock.now() + timedelta(hours=1))
    assert ledger.expired_approvals() == []
    clock.advance(timedelta(hours=1))
    assert [a.job_id for a in ledger.expired_approvals()] == [job.job_id]
    with pytest.raises(ApprovalRefused, match="expired"):
        ledger.decide(job.job_id, DRAFT_A, Decision.approve, reviewer="late", channel=Channel.ui)
    expired = ledger.transition(
        job.job_id,
        JobState.approval_expired,
        expected_version=job.version,
        stop_reason=StopReason.approval_expired,
    )
    assert expired.state is JobState.approval_expired
    assert not ledger.is_approved(job.job_id, DRAFT_A)


def test_a_decided_request_cannot_expire_and_superseded_requests_are_not_listed(
    ledger: Ledger, clock: ManualClock
) -> None:
    job = advance_to(ledger, submit(ledger), JobState.awaiting_review)
    ledger.request_approval(job.job_id, DRAFT_A, expires_at=clock.now() + timedelta(hours=1))
    ledger.decide(job.job_id, DRAFT_A, Decision.request_changes, reviewer="ann", channel=Channel.ui)
    with pytest.raises(IllegalTransition, match="already decided"):
        ledger.transition(
            job.job_id,
            JobState.approval_expired,
            expected_version=job.version,
            stop_reason=StopReason.approval_expired,
        )
    job = ledger.transition(job.job_id, JobState.drafted, expected_version=job.version, draft_sha=DRAFT_B)
    job = advance_to_review_again(ledger, job)
    ledger.request_approval(job.job_id, DRAFT_B, expires_at=clock.now() + timedelta(hours=2))
    clock.advance(timedelta(hours=3))
    assert [(a.job_id, a.draft_sha) for a in ledger.expired_approvals()] == [(job.job_id, DRAFT_B)]


def advance_to_review_again(ledger: Ledger, job: JobRecord) -> JobRecord:
    for state in (JobState.linked, JobState.validated, JobState.awaiting_review):
        job = ledger.transition(job.job_id, state, expected_version=job.version)
    return job


def test_no_decision_on_a_terminal_job(ledger: Ledger) -> None:
    job = advance_to(ledger, submit(ledger), JobState.awaiting_review)
    ledger.transition(
        job.job_id, JobState.cancelled, expected_version=job.version, stop_reason=StopReason.cancelled
    )
    with pytest.raises(ApprovalRefused, match="cancelled"):
        ledger.decide(job.job_id, DRAFT_A, Decision.approve, reviewer="ann", channel=Channel.cli)


# -------------------------------------------------------------------------------------- evidence


def test_evidence_chain_links_and_deduplicates(ledger: Ledger) -> None:
    job = submit(ledger)
    crawl = ledger.append_evidence(job.job_id, "crawl", {"url": URL, "status": 200, "etag": "x"}, check=URL)
    same = ledger.append_evidence(job.job_id, "crawl", {"etag": "x", "status": 200, "url": URL}, check=URL)
    assert same == crawl  # identical observation (key order irrelevant): not appended twice
    comparison = ledger.append_evidence(job.job_id, "comparison", {"stale": ["as of 2021"]})
    changed = ledger.append_evidence(job.job_id, "crawl", {"url": URL, "status": 200, "etag": "y"}, check=URL)
    assert crawl.prev_hash == "0" * 64
    assert comparison.prev_hash == crawl.hash and changed.prev_hash == comparison.hash
    assert ledger.latest_evidence(job.job_id, "crawl", URL) == changed
    assert ledger.latest_evidence(job.job_id, "verification") is None
    assert [e.kind for e in ledger.evidence(job.job_id)] == ["crawl", "comparison", "crawl"]
    report = ledger.verify_chain(job.job_id)
    assert report.ok and report.records == 3 and report.head == changed.hash
    # A re-observed old payload after a change is a new fact: appended again.
    back = ledger.append_evidence(job.job_id, "crawl", {"url": URL, "status": 200, "etag": "x"}, check=URL)
    assert back.seq > changed.seq and back.payload_sha == crawl.payload_sha
    assert ledger.verify_chain("no-such-job").ok


def test_tampering_breaks_the_chain(ledger: Ledger) -> None:
    job = submit(ledger)
    for n in range(3):
        ledger.append_evidence(job.job_id, "check", {"n": n}, check=str(n))
    assert ledger.verify_chain(job.job_id).ok
    with ledger._engine.begin() as conn:
        conn.execute(
            text("UPDATE evidence SET payload = :p WHERE job_id = :j AND check_key = '1'"),
            {"p": '{"n":42}', "j": job.job_id},
        )
    report = ledger.verify_chain(job.job_id)
    assert not report.ok and "payload does not match" in (report.problem or "")


def test_deleting_a_record_breaks_the_chain(ledger: Ledger) -> None:
    job = submit(ledger)
    records = [ledger.append_evidence(job.job_id, "check", {"n": n}, check=str(n)) for n in range(3)]
    with ledger._engine.begin() as conn:
        conn.execute(text("DELETE FROM evidence WHERE seq = :s"), {"s": records[1].seq})
    report = ledger.verify_chain(job.job_id)
    assert not report.ok and "links to" in (report.problem or "")


def test_evidence_payload_must_be_json(ledger: Ledger) -> None:
    job = submit(ledger)
    with pytest.raises(ValueError):
        ledger.append_evidence(job.job_id, "bad", {"x": float("nan")})
    with pytest.raises(TypeError):
        ledger.append_evidence(job.job_id, "bad", {"x": object()})
    with pytest.raises(UnknownJob):
        ledger.append_evidence("missing", "x", {})
    assert ledger.evidence(job.job_id) == []
