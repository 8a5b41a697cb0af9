"""Load: many jobs through worker processes with seeded kills, a flaky origin and a slow model.

The quick variant (50 jobs) runs by default; the big runs on PostgreSQL are ``slow`` (CI runs them). A
failing run names its seed: ``LOAD_SEED=<seed> pytest ...`` replays the same fault schedule. Sizes can be
overridden with ``LOAD_JOBS`` / ``LOAD_PARKED_JOBS`` (e.g. to measure on a bigger machine).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sitesteward.engine import PlainHost, PlainSteps, run_job
from sitesteward.ledger import Channel, Decision, JobState, Ledger
from sitesteward.llm import select_drafter
from sitesteward.settings import get_settings
from tests.durability.load_harness import LoadRun, LoadSpec

_CHECKS = (
    "every job published and verified, one applied edit per (job, draft), none before its approval, one "
    "review request, at most one LLM call per draft inputs (plus timed-out calls and the after_draft_task "
    "crash window), origin concurrency within the worker cap, evidence chains verify"
)
_FAULTS = "seeded SIGKILLs of workers at random fault points, ~10% origin 503s, ~5% LLM timeouts"


@pytest.mark.scenario(name="Load: 50 jobs, 4 workers, random kills", faults=_FAULTS, checks=_CHECKS)
def test_load_quick(tmp_path: Path) -> None:
    spec = LoadSpec.from_env(jobs=50, workers=4, kills=4)
    with LoadRun(spec, tmp_path) as run:
        report = run.run(deadline_seconds=150)
    print(report.summary())
    report.check()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(900)  # a safety net: the budget is 4 minutes on 2 idle cores
@pytest.mark.scenario(name="Load: 1,000 jobs on PostgreSQL, random kills", faults=_FAULTS, checks=_CHECKS)
def test_load_thousand_jobs(tmp_path: Path, postgres_url: str) -> None:
    jobs = int(os.environ.get("LOAD_JOBS", "1000"))
    spec = LoadSpec.from_env(jobs=jobs, workers=4, kills=max(4, jobs // 25))
    with LoadRun(spec, tmp_path, postgres_url) as run:
        report = run.run(deadline_seconds=900)
    print(report.summary())
    report.check()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(900)  # a safety net: the budget is 2 minutes on 2 idle cores
@pytest.mark.scenario(
    name="2,000 jobs parked at approval hold no worker",
    faults="none: 2,000 jobs run to awaiting_review, then every worker process exits",
    checks="no worker alive and no lease held while jobs wait; approving 5 and running one worker "
    "publishes exactly those 5",
)
def test_parked_jobs_hold_no_worker(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = int(os.environ.get("LOAD_PARKED_JOBS", "2000"))
    spec = LoadSpec.from_env(jobs=jobs, workers=4, kills=0, target_503=0.0, llm_timeouts=0.0, park_only=True)
    with LoadRun(spec, tmp_path, postgres_url) as run:
        report = run.run(deadline_seconds=900)
        print(report.summary())
        assert report.workers_alive == 0, f"{report.workers_alive} worker processes still alive"
        with Ledger.open(postgres_url) as ledger:
            waiting = ledger.list_jobs(states=[JobState.awaiting_review])
            assert len(waiting) == jobs, (len(waiting), jobs)
            held = [job.job_id for job in waiting if job.lease_owner is not None]
            assert not held, f"{len(held)} parked jobs hold a lease, e.g. {held[:3]}"
            chosen = waiting[: min(5, jobs)]
            for job in chosen:
                assert job.draft_sha
                ledger.decide(job.job_id, job.draft_sha, Decision.approve, reviewer="r", channel=Channel.cli)

            # A worker, in this process, runs the approved jobs and 45 others: only the approved ones move.
            env = run._env()
            for name, value in env.items():  # undone after the test (a leaked ledger URL broke later ones)
                if name.startswith("SITESTEWARD_"):
                    monkeypatch.setenv(name, value)
            get_settings.cache_clear()
            steps = PlainSteps(retry_delays=(0.05, 0.2), verify_delays=(0.05, 0.2))
            for job in [*chosen, *waiting[len(chosen) : len(chosen) + 45]]:
                drafter = select_drafter(get_settings())
                run_job(ledger, job.job_id, host=PlainHost(), steps=steps, drafter=drafter)
            after = {job.job_id: job for job in ledger.list_jobs()}
            moved = sorted(j for j, job in after.items() if job.state is not JobState.awaiting_review)
            assert moved == sorted(job.job_id for job in chosen)
            assert all(after[job.job_id].state is JobState.monitoring for job in chosen)
            assert all(len(ledger.list_effects(job.job_id)) == 1 for job in chosen)
            assert sum(len(ledger.list_effects(j)) for j in after) == len(chosen)
