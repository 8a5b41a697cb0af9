"""Races on both backends: duplicate submissions (threads and processes), decisions, leases, CAS, evidence."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

import pytest

from sitesteward.errors import StaleVersion
from sitesteward.ledger import (
    ApprovalRefused,
    Channel,
    Decision,
    JobState,
    LeaseHeld,
    Ledger,
)
from tests.integration import test_ledger as shared

# The two-backend ledger fixtures (to move into tests/integration/conftest.py, a shared file).
ledger_url, clock, ledger = shared.ledger_url, shared.clock, shared.ledger

T = TypeVar("T")
SITE, URL = "example", "https://example.test/race/"


def race(count: int, work: Callable[[int], T]) -> list[T | BaseException]:
    """Run ``work(i)`` in ``count`` threads released together; return results or exceptions, in order."""
    barrier = threading.Barrier(count)

    def run(index: int) -> T | BaseException:
        barrier.wait(timeout=30)
        try:
            return work(index)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


@pytest.mark.scenario(
    name="20 threads submit the same job at once (SQLite and PostgreSQL)",
    faults="concurrent duplicate submissions",
    checks="exactly one created, one job id, one job",
)
def test_twenty_threads_submitting_the_same_job_make_one(ledger: Ledger) -> None:
    results = race(20, lambda _: ledger.submit_job(SITE, URL, goal="g", trigger="t"))
    submissions = [r for r in results if not isinstance(r, BaseException)]
    assert len(submissions) == 20, [r for r in results if isinstance(r, BaseException)]
    assert sum(s.created for s in submissions) == 1
    assert len({s.job.job_id for s in submissions}) == 1
    assert len(ledger.list_jobs()) == 1


@pytest.mark.scenario(
    name="20 threads submit the same page with different triggers",
    faults="concurrent submissions",
    checks="one live job per page",
)
def test_twenty_threads_with_different_triggers_leave_one_live_job(ledger: Ledger) -> None:
    results = race(20, lambda i: ledger.submit_job(SITE, URL, goal="g", trigger=f"t{i}"))
    submissions = [r for r in results if not isinstance(r, BaseException)]
    assert len(submissions) == 20
    assert sum(s.created for s in submissions) == 1
    assert len({s.job.job_id for s in submissions}) == 1
    assert len(ledger.list_jobs()) == 1


def _submit_in_process(url: str, barrier: Any, results: Any) -> None:
    barrier.wait(timeout=120)
    # Open (and so migrate) at the same moment too: a fresh database raced by 20 processes.
    with Ledger.open(url) as opened:
        submission = opened.submit_job(SITE, URL, goal="g", trigger="t")
        results.put((submission.job.job_id, submission.created))


@pytest.mark.scenario(
    name="20 processes submit the same job to a fresh database",
    faults="concurrent submissions and schema migrations from separate processes",
    checks="exactly one created, one job, schema version 1",
)
def test_twenty_processes_submitting_the_same_job_make_one(ledger_url: str) -> None:
    # forkserver: children fork from one clean server that imported the ledger once (spawn would pay the
    # imports 20 times; fork would copy pytest's threads and open connections).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    barrier = context.Barrier(20)
    results = context.Queue()
    processes = [
        context.Process(target=_submit_in_process, args=(ledger_url, barrier, results)) for _ in range(20)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=180) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    results.close()
    results.join_thread()
    assert sum(created for _, created in outcomes) == 1
    assert len({job_id for job_id, _ in outcomes}) == 1
    with Ledger.open(ledger_url) as opened:
        assert len(opened.list_jobs()) == 1
        assert opened.schema_version() == 1


def _job_awaiting_review(ledger: Ledger, draft: str) -> str:
    job = ledger.submit_job(SITE, URL, goal="g", trigger="t").job
    return shared.advance_to(ledger, job, JobState.awaiting_review, draft=draft).job_id


@pytest.mark.scenario(
    name="10 identical approvals at once",
    faults="concurrent duplicate decisions",
    checks="one decision recorded, one approval evidence record, the draft approved",
)
def test_ten_identical_approvals_make_one_decision(ledger: Ledger) -> None:
    job_id = _job_awaiting_review(ledger, shared.DRAFT_A)
    results = race(
        10,
        lambda i: ledger.decide(
            job_id, shared.DRAFT_A, Decision.approve, reviewer=f"r{i}", channel=Channel.ui
        ),
    )
    assert not [r for r in results if isinstance(r, BaseException)]
    assert len({r.model_dump_json() for r in results if not isinstance(r, BaseException)}) == 1
    assert len(ledger.evidence(job_id, "approval")) == 1
    assert ledger.is_approved(job_id, shared.DRAFT_A)


@pytest.mark.scenario(
    name="approve/reject race (5 approvals, 5 rejections at once)",
    faults="concurrent conflicting decisions",
    checks="the first decision wins; every other is refused (ApprovalRefused); one evidence record",
)
def test_approve_reject_race_has_exactly_one_winner(ledger: Ledger) -> None:
    job_id = _job_awaiting_review(ledger, shared.DRAFT_A)
    decisions = [Decision.approve, Decision.reject] * 5
    results = race(
        10,
        lambda i: ledger.decide(job_id, shared.DRAFT_A, decisions[i], reviewer=f"r{i}", channel=Channel.cli),
    )
    record = ledger.get_approval(job_id, shared.DRAFT_A)
    assert record is not None and record.decision is not None
    for decision, result in zip(decisions, results, strict=True):
        if decision is record.decision:
            assert not isinstance(result, BaseException) and result.decision is record.decision
        else:
            assert isinstance(result, ApprovalRefused), result
    assert len(ledger.evidence(job_id, "approval")) == 1


@pytest.mark.scenario(
    name="10 workers take the same lease at once",
    faults="lease contention",
    checks="one fencing token granted, the other nine get LeaseHeld",
)
def test_one_lease_among_ten_workers(ledger: Ledger) -> None:
    job = ledger.submit_job(SITE, URL, goal="g", trigger="t").job
    results = race(10, lambda i: ledger.acquire_lease(job.job_id, f"w{i}", timedelta(minutes=1)))
    tokens = [r for r in results if isinstance(r, int)]
    assert len(tokens) == 1
    assert all(isinstance(r, LeaseHeld) for r in results if not isinstance(r, int))
    winner = results.index(tokens[0])
    assert ledger.get_job(job.job_id).lease_owner == f"w{winner}"


@pytest.mark.scenario(
    name="10 writers update the same job version at once",
    faults="concurrent compare-and-set",
    checks="one write wins, nine get StaleVersion, version + 1",
)
def test_compare_and_set_has_one_winner(ledger: Ledger) -> None:
    job = ledger.submit_job(SITE, URL, goal="g", trigger="t").job
    results = race(10, lambda i: ledger.update_job(job.job_id, expected_version=1, current_step=f"s{i}"))
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, StaleVersion) for r in results if isinstance(r, BaseException))
    assert ledger.get_job(job.job_id).version == 2


@pytest.mark.scenario(
    name="10 evidence records appended at once",
    faults="concurrent appends to one hash chain",
    checks="one linear chain of 10 records that verifies",
)
def test_concurrent_evidence_keeps_one_linear_chain(ledger: Ledger) -> None:
    job = ledger.submit_job(SITE, URL, goal="g", trigger="t").job
    results = race(10, lambda i: ledger.append_evidence(job.job_id, "check", {"n": i}, check=str(i)))
    assert not [r for r in results if isinstance(r, BaseException)]
    report = ledger.verify_chain(job.job_id)
    assert report.ok and report.records == 10
