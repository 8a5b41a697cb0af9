"""Scale out on loopback: 300 refresh jobs on two process workers, one of them killed mid-run.

The topology of the README's "Scale out" section, every piece real: ``prefect server start`` on a fresh
PostgreSQL database, the ledger on another, Redis step locks (``SITESTEWARD_LOCK_URL``), the work pool
``sitesteward-process`` with the ``refresh-batch`` and ``sweep-jobs`` deployments from ``prefect.yaml``
(``prefect deploy``), two ``prefect worker start`` processes, and a generated site of 300 stale pages
served by the demo server.

1. ``refresh_site`` (this process) audits the site, plans 300 jobs and starts them as batches of the
   ``refresh-batch`` deployment; both workers pick batches up and park the jobs at review.
2. An approver thread decides each job through the ledger as it reaches ``awaiting_review`` (every
   30th page is rejected, the rest approved): never the product code.
3. Mid-run, worker A's process group and its flow-run processes are SIGKILLed; its batches stay
   "Running" in Prefect with their remaining jobs planned or leased in the ledger.
4. Once the other batches are done, a run of ``sweep-jobs`` (on worker B) restarts the orphans.
5. A second ``refresh_site`` run publishes the approved jobs (worker B alone).
"""

from __future__ import annotations

import re
import resource
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from deployments import WORK_POOL
from sitesteward.demo.server import EXAMPLE_SOURCES_ROOT, SiteServer, SourcesServer
from sitesteward.ledger import Channel, Decision, EffectStatus, JobState, Ledger
from sitesteward.settings import get_settings
from tests.e2e.conftest import PREFECT, ROOT, talking_to
from tests.scale.conftest import Worker, api, cpu_seconds, flow_runs, prefect_server_on, tail, worker
from tests.scale.site import FRESH_CLAIM, STALE_CLAIM, generate_site, page_file

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.prefect, pytest.mark.slow]

PAGES = 300
BATCH_SIZE = 25
BATCH_CONCURRENCY = 4
WORKER_LIMIT = 2  # batch runs per worker at a time
LEASE_SECONDS = 30.0  # the killed worker's in-flight job is free for the sweeper after this
IDLE_MINUTES = 1  # the sweeper's smallest idle threshold: planned jobs nobody started
REJECT_EVERY = 30  # page numbers divisible by this are rejected (10 of 300)
REVIEWER = "scale-approver"
_NOTE = re.compile(r"/notes/note-(\d{3})/$")


def _page_number(page_url: str) -> int:
    match = _NOTE.search(page_url)
    assert match, page_url
    return int(match.group(1))


def _wait(
    what: str,
    condition: Callable[[], Any],
    timeout: float,
    interval: float = 1.0,
    describe: Callable[[], str] = lambda: "",
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not {what} after {timeout} s; {describe()}")
        time.sleep(interval)


class Approver(threading.Thread):
    """A reviewer at the ledger: decides each job's current draft once, as it reaches awaiting_review."""

    def __init__(self) -> None:
        super().__init__(name="approver", daemon=True)
        self.decided: dict[str, Decision] = {}
        self.errors: list[BaseException] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        ledger = Ledger.open(get_settings().ledger_url)
        try:
            while not self._stop_event.is_set():
                for job in ledger.list_jobs(states=[JobState.awaiting_review]):
                    if job.job_id in self.decided or not job.draft_sha:
                        continue
                    approval = ledger.get_approval(job.job_id, job.draft_sha)
                    if approval is None or not approval.pending:
                        continue
                    reject = _page_number(job.page_url) % REJECT_EVERY == 0
                    decision = Decision.reject if reject else Decision.approve
                    ledger.decide(job.job_id, job.draft_sha, decision, reviewer=REVIEWER, channel=Channel.cli)
                    self.decided[job.job_id] = decision
                self._stop_event.wait(1.0)
        except BaseException as exc:  # surfaced by the test, not lost in the thread
            self.errors.append(exc)
        finally:
            ledger.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)


@contextmanager
def approving() -> Iterator[Approver]:
    approver = Approver()
    approver.start()
    try:
        yield approver
    finally:
        approver.stop()


def _ledger_jobs() -> dict[str, Any]:
    ledger = Ledger.open(get_settings().ledger_url)
    try:
        return {job.job_id: job for job in ledger.list_jobs()}
    finally:
        ledger.close()


def _deployment_id(server: Any, name: str) -> str:
    response = api(server, "/deployments/filter", {})
    ids = [d["id"] for d in response if f"{d['name']}" == name.split("/")[1]]
    assert ids, f"no deployment {name}"
    return str(ids[0])


@pytest.mark.scenario(
    name="Scale out: 300 refresh jobs on two process workers, one worker killed mid-run",
    faults=(
        "SIGKILL of one worker's process group and its flow-run processes mid-batch; Prefect server and "
        "ledger on PostgreSQL, Redis step locks"
    ),
    checks=(
        "every job ends once (monitoring if approved, rejected otherwise); each approved page holds its "
        "edit exactly once, one applied effect per approved job, none for rejected ones; the sweeper "
        "restarts exactly the orphaned jobs; both workers ran batches"
    ),
)
@pytest.mark.timeout(900)  # a safety net: the budget is 4 minutes on 2 idle cores
def test_300_jobs_on_two_workers_survive_a_killed_worker(
    tmp_path: Path,
    isolated_settings: Path,
    postgres_url: str,
    prefect_database_url: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.deployments import run_deployment

    from deployments.bootstrap import bootstrap
    from flows.audit_site import AuditParams
    from flows.refresh_site import RefreshSiteParams, refresh_site
    from sitesteward.models import CrawlConfig

    started = time.monotonic()
    timings: dict[str, float] = {}

    def mark(phase: str) -> None:
        timings[phase] = round(time.monotonic() - started, 1)
        print(f"{timings[phase]:7.1f} s  {phase}", flush=True)

    data_dir = isolated_settings
    monkeypatch.setenv("SITESTEWARD_DATABASE_URL", postgres_url)
    monkeypatch.setenv("SITESTEWARD_LOCK_URL", redis_url)
    get_settings.cache_clear()
    worker_env = {
        "SITESTEWARD_DATA_DIR": str(data_dir),
        "SITESTEWARD_DATABASE_URL": postgres_url,
        "SITESTEWARD_LOCK_URL": redis_url,
        "SITESTEWARD_ALLOW_PRIVATE": "true",
    }

    with ExitStack() as stack:
        server = stack.enter_context(prefect_server_on(tmp_path / "prefect-home", prefect_database_url))
        stack.enter_context(talking_to(server.api_url))
        sources = stack.enter_context(SourcesServer(EXAMPLE_SOURCES_ROOT))
        root = tmp_path / "site"
        files = generate_site(root, PAGES, sources.base_url)
        site = stack.enter_context(SiteServer(root, sources_url=sources.base_url))
        base_url = site.base_url + "/"
        mark("server")

        bootstrap(site_url=base_url, content_root=root)  # the work pool (and blocks, variables)
        deploy_log = tmp_path / "deploy.log"
        with deploy_log.open("wb") as sink:
            deploy = subprocess.run(
                [PREFECT, "--no-prompt", "deploy", "--name", "refresh-batch", "--name", "sweep-jobs"],
                cwd=ROOT,
                env=server.client_env(data_dir),
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=240,
            )
        assert deploy.returncode == 0, tail(deploy_log)
        batch_deployment = _deployment_id(server, "refresh_batch/refresh-batch")
        mark("deployed")

        workers: dict[str, Worker] = {}
        for name in ("scale-worker-a", "scale-worker-b"):
            workers[name] = stack.enter_context(
                worker(server, name, WORK_POOL, worker_env, tmp_path / f"{name}.log", WORKER_LIMIT)
            )
        worker_a, worker_b = workers["scale-worker-a"], workers["scale-worker-b"]
        approver = stack.enter_context(approving())

        params = RefreshSiteParams(
            audit=AuditParams(crawl=CrawlConfig(start_urls=[base_url], allow_private=True, max_pages=1000)),
            site_id="scale",
            content_root=str(root),
            budget=PAGES,
            max_links=0,
            approval="park",
            batch_size=BATCH_SIZE,
            batch_concurrency=BATCH_CONCURRENCY,
            lease_seconds=LEASE_SECONDS,
        )

        # ---------------------------------------------------------------- 1. plan and dispatch batches
        first = refresh_site(params)
        assert first.pages_needing_refresh == PAGES, first.findings_by_code
        assert len(first.jobs) == PAGES and {o.state for o in first.jobs} == {"submitted"}
        jobs = _ledger_jobs()
        assert len(jobs) == PAGES and {job.state for job in jobs.values()} == {JobState.planned}
        mark("dispatched")

        def progress() -> str:
            """Where things stand (for failure messages): job states, batch runs by worker and state."""
            states = Counter(job.state.value for job in _ledger_jobs().values())
            runs = Counter(
                (r["labels"].get("prefect.worker.name"), r["state_name"])
                for r in flow_runs(server, deployment_id={"any_": [batch_deployment]})
            )
            return f"jobs {dict(states)}; batch runs {dict(runs)}; timings {timings}"

        # ---------------------------------------------------------------- 2. kill worker A mid-batch
        def runs_by_worker(name: str) -> list[dict[str, Any]]:
            return [
                run
                for run in flow_runs(server, deployment_id={"any_": [batch_deployment]})
                if run["labels"].get("prefect.worker.name") == name
            ]

        def a_is_mid_batch() -> list[dict[str, Any]] | None:
            running = [r for r in runs_by_worker(worker_a.name) if r["state_type"] == "RUNNING"]
            batch_jobs = {job_id for run in running for job_id in run["parameters"]["params"]["job_ids"]}
            states = Counter(job.state for job_id, job in _ledger_jobs().items() if job_id in batch_jobs)
            parked = states[JobState.awaiting_review] + states[JobState.approved] + states[JobState.rejected]
            # Mid-run: about half of A's running batches parked at review, the rest still to do.
            return running if parked >= len(batch_jobs) // 2 and len(batch_jobs) - parked >= 3 else None

        _wait("worker A mid-batch", a_is_mid_batch, timeout=180, interval=0.3, describe=progress)
        cpu_worker_a = cpu_seconds(worker_a.process.pid)  # up to its death
        worker_a.kill()
        mark("killed")
        print(f"worker A killed: {progress()}", flush=True)
        dead_runs = [r for r in runs_by_worker(worker_a.name) if r["state_type"] in {"RUNNING", "PENDING"}]
        dead_jobs = {job_id for run in dead_runs for job_id in run["parameters"]["params"]["job_ids"]}
        parked_by_a = {
            job_id
            for job_id, job in _ledger_jobs().items()
            if job_id in dead_jobs and job.state in {JobState.awaiting_review, JobState.approved}
        }

        # ---------------------------------------------------------------- 3. the others finish; sweep
        dead_ids = {run["id"] for run in dead_runs}

        def others_done() -> bool:
            runs = [
                r
                for r in flow_runs(server, deployment_id={"any_": [batch_deployment]})
                if r["id"] not in dead_ids
            ]
            bad = [(r["name"], r["state_name"]) for r in runs if r["state_type"] in {"FAILED", "CRASHED"}]
            assert not bad, f"batch runs failed: {bad}\n{tail(worker_b.log)}"
            return len(runs) == PAGES // BATCH_SIZE - len(dead_runs) and all(
                r["state_type"] == "COMPLETED" for r in runs
            )

        _wait("the surviving worker's batches done", others_done, timeout=300, describe=progress)
        mark("phase 1 done")
        print(f"phase 1 done: {progress()}", flush=True)
        waiting = {JobState.awaiting_review, JobState.approved, JobState.rejected}
        orphans = {job_id for job_id, job in _ledger_jobs().items() if job.state not in waiting}
        assert orphans, "the kill left no unfinished job: nothing for the sweeper"
        assert orphans <= dead_jobs, "only the killed worker's jobs may be unfinished"

        def orphans_stalled() -> bool:
            ledger = Ledger.open(get_settings().ledger_url)
            try:
                stalled = ledger.stalled_jobs(idle_after=timedelta(minutes=IDLE_MINUTES))
            finally:
                ledger.close()
            return orphans <= {job.job_id for job in stalled}

        _wait(
            "the orphans stalled (lease expired or idle)",
            orphans_stalled,
            timeout=150,
            interval=1.0,
            describe=progress,
        )
        sweep = run_deployment(
            "sweep_jobs/sweep-jobs",
            # The orphans are restarted as many at a time as a batch runs its jobs.
            parameters={
                "params": {"idle_minutes": IDLE_MINUTES, "limit": PAGES, "concurrency": BATCH_CONCURRENCY}
            },
            timeout=0,
            as_subflow=False,
        )
        sweep_id = str(sweep.id)

        def sweep_state() -> str | None:
            (run,) = flow_runs(server, id={"any_": [sweep_id]})
            if run["state_type"] in {"FAILED", "CRASHED", "CANCELLED"}:
                pytest.fail(f"sweep run ended {run['state_name']}:\n{tail(worker_b.log)}")
            return run if run["state_type"] == "COMPLETED" else None

        swept = _wait("the sweep completed", sweep_state, timeout=240, describe=progress)
        assert swept["labels"].get("prefect.worker.name") == worker_b.name
        restarted = {
            run["parameters"]["params"]["job_id"]
            for run in flow_runs(server, parent_flow_run_id={"any_": [sweep_id]})
        }
        assert restarted == orphans, (len(restarted), len(orphans))
        mark("swept")

        # ---------------------------------------------------------------- 4. decisions, then publish
        _wait("every job decided", lambda: len(approver.decided) == PAGES or approver.errors, timeout=60)
        assert not approver.errors, approver.errors
        second = refresh_site(params)
        assert {o.job_id for o in second.jobs} == set(jobs), "the second run continues every decided job"
        mark("dispatched again")

        def all_ended() -> bool:
            states = Counter(job.state for job in _ledger_jobs().values())
            return states[JobState.monitoring] + states[JobState.rejected] == PAGES or any(
                state in {JobState.failed, JobState.cancelled, JobState.approval_expired} for state in states
            )

        _wait("every job ended", all_ended, timeout=300, describe=progress)
        mark("published")

        def batches_completed() -> list[dict[str, Any]] | None:
            runs = flow_runs(server, deployment_id={"any_": [batch_deployment]})
            done = all(run["state_type"] == "COMPLETED" for run in runs if run["id"] not in dead_ids)
            return runs if done else None

        batch_runs = _wait("the batch runs completed", batches_completed, timeout=120, describe=progress)
        cpu = {
            "server": cpu_seconds(server.process.pid),
            "worker A with its runs": cpu_worker_a,
            "worker B with its runs": cpu_seconds(worker_b.process.pid),
            "this process": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
        }

    # -------------------------------------------------------------------------------- 5. the checks
    approved = {job_id for job_id, decision in approver.decided.items() if decision is Decision.approve}
    rejected = set(approver.decided) - approved
    assert len(rejected) == PAGES // REJECT_EVERY
    ledger = Ledger.open(get_settings().ledger_url)
    try:
        final = {job.job_id: job for job in ledger.list_jobs()}
        assert set(final) == set(jobs), "no job was created twice"
        pages = {job.page_url for job in final.values()}
        assert len(pages) == PAGES
        applied = 0
        for job_id, job in final.items():
            effects = ledger.list_effects(job_id)
            approval = ledger.get_approval(job_id, job.draft_sha or "")
            assert approval is not None and approval.reviewer == REVIEWER, job_id
            assert approval.decision is approver.decided[job_id]
            text = page_file(root, _page_number(job.page_url)).read_text(encoding="utf-8")
            if job_id in approved:
                assert job.state is JobState.monitoring, (job_id, job.state, job.failure_reason)
                assert [e.status for e in effects] in ([EffectStatus.applied], [EffectStatus.reconciled])
                assert text.count(FRESH_CLAIM) == 1 and STALE_CLAIM not in text, job.page_url
                assert len(ledger.evidence(job_id, "verification")) == 1
                applied += effects[0].status is EffectStatus.applied
            else:
                assert job.state is JobState.rejected, (job_id, job.state)
                assert effects == []
                assert text.count(STALE_CLAIM) == 1 and FRESH_CLAIM not in text, job.page_url
            chain = ledger.verify_chain(job_id)
            assert chain.ok, chain.problem
    finally:
        ledger.close()
    assert applied == len(approved), "each approved page written exactly once, by one worker"
    assert sum(path.read_text(encoding="utf-8").count(FRESH_CLAIM) for path in files) == len(approved)

    # Both workers ran batches (Prefect labels each run with its worker); A parked jobs before it died.
    by_worker = Counter(run["labels"].get("prefect.worker.name") for run in batch_runs)
    assert set(by_worker) == {worker_a.name, worker_b.name}, by_worker
    assert dead_runs and parked_by_a
    assert len(batch_runs) == 2 * PAGES // BATCH_SIZE  # two refresh_site runs, no batch started twice
    timings["total"] = round(time.monotonic() - started, 1)
    print(
        f"scale-out timings (s since start): {timings}; batch runs by worker: {dict(by_worker)}; "
        f"orphans swept: {len(orphans)}; CPU seconds: { {k: round(v, 1) for k, v in cpu.items()} }"
    )
