"""Load harness: many jobs, worker processes killed at random fault points, a flaky origin and a slow LLM.

Everything is real and on loopback: a generated site of ``N`` pages that each cite a source whose figure
moved on (served by :class:`FaultySiteServer`, which answers a seeded ~10% of page requests with 503 and
records the most requests it ever served at once), the sources server, a counting OpenAI-protocol server
that lets a seeded ~5% of calls time out, a shared ledger (PostgreSQL or SQLite), and ``W`` worker
processes (``tests/durability/load_worker.py``) running jobs with the plain engine.

The supervisor (this process) feeds job ids to the workers, restarts a worker that died (seeded SIGKILLs at
fault points), runs the sweeper so jobs whose worker died are picked up again once their lease expires,
approves jobs as they reach review, and stops when no job is live. :meth:`LoadReport.check` then asserts the
invariants. Workers are forked from a ``multiprocessing`` fork server that imported the worker module once
(each is a process of its own, SIGKILLed for real; only the ~1.5 s of imports a new interpreter pays per
worker is shared). Every decision comes from ``LOAD_SEED`` (printed, and named by a failing check), so
``LOAD_SEED=<seed> pytest ...`` replays the same fault schedule.
"""

from __future__ import annotations

import hashlib
import heapq
import io
import json
import multiprocessing
import multiprocessing.context
import os
import random
import re
import resource
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sitesteward.demo.server import SiteServer, SourcesServer, _Headers, _Response
from sitesteward.faults import FAULT_POINTS
from sitesteward.jobs import JobInputs
from sitesteward.ledger import (
    LIVE_STATES,
    TERMINAL_STATES,
    Channel,
    Decision,
    EffectStatus,
    JobState,
    Ledger,
)
from sitesteward.models import Finding, Severity
from sitesteward.sweep import sweep_ledger
from tests.durability.harness import NEW, OLD, ROOT, llm_answer
from tests.durability.load_worker import serve
from tests.llm_server import FakeLLMServer, Reply

EXAMPLE_SOURCES = ROOT / "examples" / "sources"
#: Fault points a parked job never passes (the UI decision needs a waiting run).
KILL_POINTS = tuple(point for point in FAULT_POINTS if point != "after_approval_decision")
_PAGE = re.compile(r"/p(\d{5})/")


def _chance(seed: int, *parts: object) -> float:
    """A deterministic number in [0, 1) for (seed, parts): the same request gets the same fate."""
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class LoadSpec:
    """One load run's size and fault rates (all faults derive from ``seed``)."""

    seed: int
    jobs: int
    workers: int = 4
    kills: int = 10
    target_503: float = 0.10
    llm_timeouts: float = 0.05
    lease_seconds: float = 8.0
    llm_timeout_seconds: float = 1.0
    #: Only run jobs to review (no approver): the run ends when every job waits for a person.
    park_only: bool = False

    @classmethod
    def from_env(cls, **fields: Any) -> LoadSpec:
        """The spec with ``LOAD_SEED`` from the environment (a fresh random seed otherwise)."""
        seed = int(os.environ.get("LOAD_SEED") or random.SystemRandom().randrange(1, 10**9))
        return cls(seed=seed, **fields)

    @property
    def replay(self) -> str:
        return f"LOAD_SEED={self.seed}"


class FaultySiteServer(SiteServer):
    """The origin: a seeded share of page requests answer 503; the peak concurrency is recorded."""

    def __init__(self, root: Path, *, seed: int, rate: float, sources_url: str) -> None:
        super().__init__(root, sources_url=sources_url)
        self.seed, self.rate = seed, rate
        self._counts: Counter[str] = Counter()
        self._guard = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests = 0
        self.failed = 0

    def respond(self, raw_path: str, request: _Headers) -> _Response:
        with self._guard:
            self.in_flight += 1
            self.requests += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._counts[raw_path] += 1
            nth = self._counts[raw_path]
        try:
            if _PAGE.search(raw_path) and _chance(self.seed, "503", raw_path, nth) < self.rate:
                with self._guard:
                    self.failed += 1
                return _Response(503, b"busy\n", {"Content-Type": "text/plain", "Retry-After": "0"})
            return super().respond(raw_path, request)
        finally:
            with self._guard:
                self.in_flight -= 1


class FlakyLLMServer(FakeLLMServer):
    """Answers every call with the right edit; a seeded share of calls answer too late (client timeout)."""

    def __init__(self, *, seed: int, rate: float, delay: float, sources_url: str) -> None:
        super().__init__()
        self.seed, self.rate, self.delay = seed, rate, delay
        self.answer = llm_answer(sources_url)
        self._current = threading.local()
        self.calls_by_page: Counter[str] = Counter()
        self.timeouts_by_page: Counter[str] = Counter()

    def _handler(self) -> Any:
        base = super()._handler()
        server = self

        class Handler(base):  # type: ignore[misc, valid-type]
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)  # type: ignore[has-type]
                server._current.raw = raw.decode("utf-8", "replace")
                self.rfile = io.BytesIO(raw)
                super().do_POST()

        return Handler

    def _next(self) -> Reply | None:
        found = _PAGE.search(getattr(self._current, "raw", ""))
        page = found.group(1) if found else "?"
        with self._lock:
            self.calls_by_page[page] += 1
            nth = self.calls_by_page[page]
            slow = _chance(self.seed, "llm", page, nth) < self.rate
            if slow:
                self.timeouts_by_page[page] += 1
        return Reply.slow(self.delay, self.answer) if slow else self.answer


def _fork_server() -> multiprocessing.context.ForkServerContext:
    """The fork server workers start from: a fresh interpreter that imported the worker module once.

    A new worker then costs a fork, not an interpreter start and its imports (~1.5 s of CPU each; a load run
    with seeded kills starts dozens). The server holds no connection, thread or setting: each worker opens
    its own ledger and clients under the environment it is given (:func:`load_worker.serve`).
    """
    context = multiprocessing.get_context("forkserver")
    # The worker module, and what a worker's first job imports lazily (~0.25 s of CPU more per worker).
    context.set_forkserver_preload(["tests.durability.load_worker", "trafilatura", "psycopg", "jiter"])
    return context


class _WorkerProcess:
    """One worker process (forked from :func:`_fork_server`) and its two pipes."""

    def __init__(self, arm_after: int, fault: str, lease: float, environment: dict[str, str]) -> None:
        context = _fork_server()
        jobs_out, self._jobs = context.Pipe(duplex=False)
        self._answers, answers_in = context.Pipe(duplex=False)
        self.process = context.Process(
            target=serve,
            args=(arm_after, fault, lease, environment, jobs_out, answers_in),
            name="load-worker",
            daemon=True,
        )
        self.process.start()
        # The worker holds the other ends now: once it dies, reading its answers ends (EOF).
        jobs_out.close()
        answers_in.close()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def ask(self, job_id: str) -> str:
        """Send one job id and wait for its answer; ``""`` when the worker died instead."""
        try:
            self._jobs.send_bytes(job_id.encode())
            return self._answers.recv_bytes().decode()
        except (EOFError, OSError):  # OSError: the worker was gone before the job id reached it
            return ""

    def alive(self) -> bool:
        return self.process.is_alive()

    def wait(self, timeout: float) -> int | None:
        """The exit code once the process ended (``-9``: SIGKILL), None if it still runs after ``timeout``."""
        self.process.join(timeout)
        return self.process.exitcode

    def finish(self) -> None:
        """No more jobs: let the worker exit (killed after 10 s), then release the pipes."""
        _close(self._jobs)
        if self.wait(10) is None:
            self.process.kill()
            self.wait(30)
        _close(self._answers)


def _close(connection: Connection) -> None:
    try:
        connection.close()
    except OSError:
        pass


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def write_site(root: Path, pages: int, sources_url: str) -> list[str]:
    """``pages`` small Markdown pages, each with the stale 2019 figure cited to the survey."""
    root.mkdir(parents=True, exist_ok=True)
    names = []
    for number in range(pages):
        name = f"p{number:05d}"
        (root / f"{name}.md").write_text(
            f"---\ntitle: Static sites, report {number}\ndescription: Adoption figures, part {number}.\n"
            f"updated: 2020-01-01\n---\n# Report {number}\n\n"
            f"Static sites are no longer a niche choice. {OLD}\n"
            f"for at least one production website, according to the\n"
            f"[State of Static Sites survey]({sources_url}/reports/static-sites-survey).\n",
            encoding="utf-8",
        )
        names.append(name)
    return names


@dataclass
class _Worker:
    process: _WorkerProcess
    fault: str | None


@dataclass
class LoadReport:
    """What a run did, and the invariant checks over the ledger, the content files and the servers."""

    spec: LoadSpec
    ledger_url: str
    root: Path
    job_ids: list[str]
    seconds: float
    kills: list[tuple[str | None, str]]
    spawns: int
    max_in_flight: int
    origin_requests: int
    origin_503: int
    llm_calls: Counter[str]
    llm_timeouts: Counter[str]
    worker_cpu: float
    supervisor_cpu: float
    workers_alive: int
    reconnects: int
    states: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        return (
            f"{self.spec.replay}: {len(self.job_ids)} jobs, {self.spec.workers} workers in "
            f"{self.seconds:.1f} s; {len(self.kills)} kills, {self.spawns} worker starts; origin "
            f"{self.origin_requests} requests ({self.origin_503} x 503), peak {self.max_in_flight} at once; "
            f"{self.reconnects} ledger reconnects; "
            f"LLM {sum(self.llm_calls.values())} calls ({sum(self.llm_timeouts.values())} timed out); "
            f"CPU: workers {self.worker_cpu:.1f} s, "
            f"servers+supervisor {self.supervisor_cpu:.1f} s "
            f"({(self.worker_cpu + self.supervisor_cpu) / max(1, len(self.job_ids)):.3f} s/job); "
            f"states {dict(self.states)}"
        )

    def check(self) -> None:
        """Assert every invariant (each message names the seed that replays the run)."""
        tag = self.spec.replay
        draft_kills = Counter(job for job, fault in self.kills if fault == "after_draft_task" and job)
        with Ledger.open(self.ledger_url) as ledger:
            jobs = {job.job_id: job for job in ledger.list_jobs()}
            assert set(jobs) == set(self.job_ids), f"{tag}: jobs lost or added"
            self.states = Counter(job.state.value for job in jobs.values())
            live = [j for j in jobs.values() if j.state in LIVE_STATES]
            assert not live, f"{tag}: {len(live)} jobs still live, e.g. {live[0]}"
            bad = [j for j in jobs.values() if j.state is not JobState.monitoring]
            # Every fault here is transient: each job must end published and verified.
            assert not bad, f"{tag}: {len(bad)} jobs did not finish, e.g. {bad[0]}"
            for job in jobs.values():
                page = _PAGE.search(job.page_url)
                assert page is not None
                effects = ledger.list_effects(job.job_id)
                done = [e for e in effects if e.status in {EffectStatus.applied, EffectStatus.reconciled}]
                assert len(done) == 1 and len(effects) == 1, f"{tag}: {job.job_id} effects {effects}"
                effect = done[0]
                assert effect.draft_sha == job.draft_sha, f"{tag}: {job.job_id} published another draft"
                approval = ledger.get_approval(job.job_id, effect.draft_sha)
                assert approval is not None and approval.decision is Decision.approve, (
                    f"{tag}: {job.job_id} edited without approval"
                )
                assert approval.decided_at and effect.completed_at
                assert approval.decided_at <= effect.completed_at, f"{tag}: {job.job_id} written first"
                reviews = ledger.evidence(job.job_id, "review")
                assert len(reviews) == 1, f"{tag}: {job.job_id} asked for review {len(reviews)} times"
                chain = ledger.verify_chain(job.job_id)
                assert chain.ok, f"{tag}: {job.job_id} evidence chain broken: {chain.problem}"
                text = (self.root / f"p{page.group(1)}.md").read_text(encoding="utf-8")
                assert text.count(NEW) == 1 and OLD not in text, f"{tag}: {job.job_id} edit applied twice?"
                # One model call per draft inputs; a timed-out call is retried, and a kill between the
                # answer and its checkpoint (after_draft_task) is the documented crash window.
                calls = self.llm_calls[page.group(1)]
                allowed = 1 + self.llm_timeouts[page.group(1)] + draft_kills[job.job_id]
                assert 1 <= calls <= allowed, (
                    f"{tag}: {job.job_id} made {calls} LLM calls (allowed {allowed})"
                )
        # The schedule really killed workers (a point armed late may never be reached: not all fire).
        assert len(self.kills) >= min(1, self.spec.kills) + self.spec.kills // 5, (
            f"{tag}: only {len(self.kills)} of {self.spec.kills} scheduled kills happened"
        )
        assert self.max_in_flight <= self.spec.workers, (
            f"{tag}: the origin saw {self.max_in_flight} requests at once (limit {self.spec.workers})"
        )


class LoadRun:
    """Servers, site, ledger and planned jobs for one load run; :meth:`run` drives it to the end."""

    def __init__(self, spec: LoadSpec, tmp_path: Path, ledger_url: str | None = None) -> None:
        self.spec = spec
        self.tmp = tmp_path
        self.root = tmp_path / "site"
        self.data_dir = tmp_path / "load-data"
        self.ledger_url = ledger_url or f"sqlite:///{(self.data_dir / 'ledger.sqlite').resolve()}"
        self.rng = random.Random(spec.seed)
        self.done = threading.Event()
        self.job_ids: list[str] = []
        self._live = spec.jobs
        self._lock = threading.Condition()
        self._queue: deque[str] = deque()
        self._later: list[tuple[float, str]] = []
        self._waiting: set[str] = set()  # queued, delayed or in flight
        self.kills: list[tuple[str | None, str]] = []
        self.spawns = 0
        self._faults = [self.rng.choice(KILL_POINTS) for _ in range(spec.kills)]
        self.errors: list[str] = []
        self.workers: list[_Worker] = []
        self.runs_done = 0
        self.reconnects: dict[int, int] = {}  # worker pid -> its ledger's reconnects so far
        self.worker_cpu: dict[int, float] = {}  # worker pid -> its CPU seconds as of its last answer

    # ------------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> Self:
        print(f"load run: {self.spec.replay} ({self.spec})", flush=True)
        self.sources = SourcesServer(EXAMPLE_SOURCES).start()
        names = write_site(self.root, self.spec.jobs, self.sources.base_url)
        self.site = FaultySiteServer(
            self.root, seed=self.spec.seed, rate=self.spec.target_503, sources_url=self.sources.base_url
        ).start()
        self.llm = FlakyLLMServer(
            seed=self.spec.seed,
            rate=self.spec.llm_timeouts,
            delay=self.spec.llm_timeout_seconds + 0.6,
            sources_url=self.sources.base_url,
        )
        self.llm.__enter__()
        self.ledger = Ledger.open(self.ledger_url)
        base = self.site.base_url + "/"
        for name in names:
            page = f"{base}{name}/"
            inputs = JobInputs(
                site_id="load",
                base_url=base,
                page_url=page,
                content_root=str(self.root),
                findings=[Finding(code="stale_date", severity=Severity.warning, url=page, detail="2019")],
                allow_private=True,
                max_links=0,
            )
            job = self.ledger.submit_job("load", page, goal="refresh", trigger="load", inputs=inputs).job
            self.job_ids.append(job.job_id)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.done.set()
        self.ledger.close()
        self.llm.__exit__(None, None, None)
        self.site.stop()
        self.sources.stop()

    def finished_fraction(self) -> float:
        """Share of the jobs no longer live (as of the supervisor's last look)."""
        return 1.0 - self._live / max(1, self.spec.jobs)

    def progress(self) -> float:
        """Share of the expected job runs done (two per job: to review, then to the end)."""
        runs = 1 if self.spec.park_only else 2
        return self.runs_done / max(1, runs * self.spec.jobs)

    # ---------------------------------------------------------------------------------- queue

    def enqueue(self, job_id: str, delay: float = 0.0, *, first: bool = False) -> None:
        """Queue a job run (``first``: ahead of the others, so approved jobs publish while others draft)."""
        with self._lock:
            if job_id in self._waiting:
                return
            self._waiting.add(job_id)
            if delay > 0:
                heapq.heappush(self._later, (time.monotonic() + delay, job_id))
            elif first:
                self._queue.appendleft(job_id)
            else:
                self._queue.append(job_id)
            self._lock.notify()

    def _take(self) -> str | None:
        with self._lock:
            now = time.monotonic()
            while self._later and self._later[0][0] <= now:
                self._queue.append(heapq.heappop(self._later)[1])
            if not self._queue:
                self._lock.wait(0.1)
                return None
            return self._queue.popleft()

    def _finished_with(self, job_id: str) -> None:
        with self._lock:
            self._waiting.discard(job_id)

    # -------------------------------------------------------------------------------- workers

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SITESTEWARD_DATA_DIR=str(self.data_dir),
            SITESTEWARD_DATABASE_URL=self.ledger_url,
            SITESTEWARD_ALLOW_PRIVATE="true",
            SITESTEWARD_LLM_API_KEY="test-key",
            SITESTEWARD_LLM_BASE_URL=self.llm.url + "/v1",
            SITESTEWARD_LLM_MODEL="test-model",
            SITESTEWARD_LLM_TIMEOUT_SECONDS=str(self.spec.llm_timeout_seconds),
            SITESTEWARD_FAULT_POINTS="",
        )
        return env

    def _spawn(self) -> _Worker:
        with self._lock:
            fault = self._faults.pop() if self._faults else None
            self.spawns += 1
            # Arm after a random number of jobs, so kills spread over the run.
            arm_after = self.rng.randrange(0, max(2, self.spec.jobs // (self.spec.workers + self.spec.kills)))
        process = _WorkerProcess(arm_after, fault or "-", self.spec.lease_seconds, self._env())
        worker = _Worker(process, fault)
        with self._lock:
            self.workers.append(worker)
        return worker

    def _slot(self) -> None:
        worker: _Worker | None = None
        try:
            while not self.done.is_set():
                if worker is None:
                    worker = self._spawn()
                job_id = self._take()
                if job_id is None:
                    continue
                line = worker.process.ask(job_id)
                if not line:  # the worker died on this job: its lease runs out, the sweeper finds it
                    code = worker.process.wait(timeout=30)
                    worker.process.finish()
                    self.kills.append((job_id, worker.fault or f"exit {code}"))
                    if code != -9:
                        self.errors.append(f"worker exited {code} on {job_id}")
                    worker = None
                    self._finished_with(job_id)
                    continue
                self._finished_with(job_id)
                self.runs_done += 1
                result = json.loads(line)
                self.reconnects[worker.process.pid] = int(result.get("reconnects", 0))
                self.worker_cpu[worker.process.pid] = float(result.get("cpu", 0.0))
                self._handle(result)
        finally:
            if worker is not None:
                worker.process.finish()

    def _handle(self, result: dict[str, Any]) -> None:
        job_id = result["job_id"]
        state = result.get("state")
        if state is None:  # a transient failure within budget: run it again soon
            self.enqueue(job_id, delay=0.2)
        elif state == JobState.awaiting_review.value:
            if not self.spec.park_only:
                self._approve(job_id)
        elif JobState(state) in TERMINAL_STATES or state == JobState.monitoring.value:
            return
        else:  # another worker held the lease: look again once it could have expired
            self.enqueue(job_id, delay=self.spec.lease_seconds / 2)

    def _approve(self, job_id: str) -> None:
        job = self.ledger.get_job(job_id)
        if job.state is JobState.awaiting_review and job.draft_sha:
            approval = self.ledger.get_approval(job_id, job.draft_sha)
            if approval is not None and approval.pending:
                self.ledger.decide(
                    job_id, job.draft_sha, Decision.approve, reviewer="load-approver", channel=Channel.cli
                )
        self.enqueue(job_id, first=True)

    # ----------------------------------------------------------------------------- supervisor

    def _supervise(self, deadline: float) -> None:
        """Sweep (stalled jobs back to the queue), approve what waits, and notice the end."""
        last_scan = last_note = time.monotonic()
        started = last_note
        while time.monotonic() < deadline:
            report = sweep_ledger(
                self.ledger, idle_after=timedelta(seconds=3 * self.spec.lease_seconds), limit=10_000
            )
            for job_id in report.restart:
                self.enqueue(job_id)
            if time.monotonic() - last_scan > 2.0:
                last_scan = time.monotonic()
                live = self.ledger.list_jobs(states=LIVE_STATES)
                moving = [job for job in live if job.state is not JobState.awaiting_review]
                self._live = len(moving) if self.spec.park_only else len(live)
                if not self._live:
                    return
            if time.monotonic() - last_note > 15.0:
                last_note = time.monotonic()
                print(
                    f"  {last_note - started:.0f} s: {self._live} of {self.spec.jobs} jobs live, "
                    f"{len(self.kills)} kills",
                    flush=True,
                )
                for job in live:
                    if job.state is JobState.awaiting_review and not self.spec.park_only:
                        self._approve(job.job_id)
            time.sleep(0.5)

    def run(self, deadline_seconds: float) -> LoadReport:
        """Run every job to the end (or the deadline) and return the report (call ``check`` on it)."""
        started = time.monotonic()
        own = resource.getrusage(resource.RUSAGE_SELF)
        for job_id in self.job_ids:
            self.enqueue(job_id)
        slots = [threading.Thread(target=self._slot, daemon=True) for _ in range(self.spec.workers)]
        for slot in slots:
            slot.start()
        try:
            self._supervise(started + deadline_seconds)
        finally:
            self.done.set()
            for slot in slots:
                slot.join(timeout=60)
        assert not self.errors, f"{self.spec.replay}: {self.errors[:5]}"
        own_after = resource.getrusage(resource.RUSAGE_SELF)
        return LoadReport(
            spec=self.spec,
            ledger_url=self.ledger_url,
            root=self.root,
            job_ids=self.job_ids,
            seconds=time.monotonic() - started,
            kills=list(self.kills),
            spawns=self.spawns,
            max_in_flight=self.site.max_in_flight,
            origin_requests=self.site.requests,
            origin_503=self.site.failed,
            llm_calls=Counter(self.llm.calls_by_page),
            llm_timeouts=Counter(self.llm.timeouts_by_page),
            # The workers are the fork server's children, not ours: each reports its CPU with every answer
            # (a killed worker's last, unanswered job is missing from the sum).
            worker_cpu=sum(self.worker_cpu.values()),
            supervisor_cpu=_cpu(own_after) - _cpu(own),
            workers_alive=sum(1 for worker in self.workers if worker.process.alive()),
            reconnects=sum(self.reconnects.values()) + self.ledger.reconnects,
        )
