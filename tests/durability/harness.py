"""Crash scenarios: a real job on the example site, a counting LLM, worker subprocesses killed on cue.

A scenario plans one job (the example site's stale 42% figure, cited to a source that now says 57%),
then drives worker processes through it with a fault point armed, re-runs them unarmed, approves when
the job waits for review, and finally checks the invariants that make the job engine trustworthy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sitesteward.demo.server import SiteServer, SourcesServer
from sitesteward.faults import FAULT_POINTS
from sitesteward.jobs import JobInputs
from sitesteward.ledger import Channel, Decision, JobState, Ledger
from sitesteward.models import Finding, Severity
from sitesteward.settings import get_settings
from tests.llm_server import FakeLLMServer, Reply

ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 2.0
#: The model key every worker gets: distinctive, so a scan for it after a scenario means something.
CANARY_KEY = "sk-canary-d1e5a0b7c3"
OLD = "As of 2019, 42% of teams use static sites"
NEW = "As of 2025, 57% of teams use static sites"
QUOTE = "As of 2025, 57% of teams use static sites for at least one production website"

#: Points a job passes before it parks for review, and after it is approved (the UI-only decision point
#: is exercised through the Prefect API in tests/integration/test_deploy.py).
_PARK = FAULT_POINTS.index("after_approval_request") + 1
BEFORE_REVIEW = FAULT_POINTS[:_PARK]
AFTER_REVIEW = tuple(point for point in FAULT_POINTS[_PARK:] if point != "after_approval_decision")


def llm_answer(sources_url: str) -> Reply:
    return Reply.json(
        {
            "summary": "Updated the adoption figure to the 2025 survey.",
            "edits": [
                {
                    "kind": "replace_text",
                    "old": OLD,
                    "new": NEW,
                    "finding": "claim_unsupported",
                    "justification": "The cited survey now reports 57% as of 2025.",
                    "source_url": f"{sources_url}/reports/static-sites-survey",
                    "source_quote": QUOTE,
                }
            ],
        }
    )


@dataclass
class WorkerProcess:
    """A worker process started by :meth:`Scenario.start_worker`, with its combined output in ``log``."""

    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def state(self) -> str:
        """The process's state letter from ``/proc/<pid>/stat`` (``T``: stopped), or ``""`` once reaped."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except FileNotFoundError:
            return ""
        return stat.rpartition(")")[2].split()[0]  # the command name may hold spaces and parentheses

    def wait_stopped(self, timeout: float) -> None:
        """Wait until the process is stopped by SIGSTOP (an armed ``=stop`` fault point fired)."""
        deadline = time.monotonic() + timeout
        while self.state() != "T":
            if self.process.poll() is not None:
                raise AssertionError(
                    f"worker exited ({self.process.returncode}) instead of stopping:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"worker not stopped after {timeout} s:\n{self.output()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL and reap the process if it still exists (a stopped process dies too)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@dataclass
class Scenario:
    """One job on a private copy of the example site, and the worker runs made on it."""

    root: Path
    site: SiteServer
    sources: SourcesServer
    llm: FakeLLMServer
    api_url: str
    job_id: str = ""
    runs: list[tuple[str | None, int]] = field(default_factory=list)
    #: Extra environment for every worker process (e.g. ``SITESTEWARD_CLOCK_FILE``), over the defaults.
    extra_env: dict[str, str] = field(default_factory=dict)

    def plan(self) -> str:
        page = f"{self.site.base_url}/why-static/"
        inputs = JobInputs(
            site_id="crash",
            base_url=self.site.base_url + "/",
            page_url=page,
            content_root=str(self.root),
            findings=[
                Finding(code="stale_date", severity=Severity.warning, url=page, detail="as of 2019"),
            ],
            allow_private=True,
            max_links=0,
        )
        with Ledger.open(get_settings().ledger_url) as ledger:
            job = ledger.submit_job("crash", page, goal="refresh why-static", trigger="t1", inputs=inputs).job
        self.job_id = job.job_id
        return job.job_id

    def worker_env(self, fault_points: str = "") -> dict[str, str]:
        """The environment of a worker process (``fault_points``: a ``SITESTEWARD_FAULT_POINTS`` spec)."""
        env = dict(os.environ)
        env.update(
            PREFECT_API_URL=self.api_url,
            PREFECT_LOGGING_LEVEL="WARNING",
            SITESTEWARD_LLM_API_KEY=CANARY_KEY,
            SITESTEWARD_LLM_BASE_URL=self.llm.url + "/v1",
            SITESTEWARD_LLM_MODEL="test-model",
            SITESTEWARD_FAULT_POINTS=fault_points,
        )
        env.update(self.extra_env)
        return env

    def start_worker(self, fault_points: str = "") -> WorkerProcess:
        """Start one worker process and return at once (the caller waits for it, or kills it).

        ``fault_points`` is a raw spec such as ``after_publish_intent=stop``; output goes to a log file,
        so a stopped or chatty worker never blocks on a full pipe.
        """
        log = self.root.parent / f"worker-{len(self.runs)}-{time.monotonic_ns()}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.durability.worker", self.job_id, str(LEASE_SECONDS)],
                cwd=ROOT,
                env=self.worker_env(fault_points),
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        return WorkerProcess(process=process, log=log)

    def run_worker(self, fault: str | None = None) -> int:
        """Run one worker process to its end (or its death); return its exit code."""
        done = subprocess.run(
            [sys.executable, "-m", "tests.durability.worker", self.job_id, str(LEASE_SECONDS)],
            cwd=ROOT,
            env=self.worker_env(f"{fault}=kill" if fault else ""),
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        self.runs.append((fault, done.returncode))
        if done.returncode not in (0, -9):
            raise AssertionError(f"worker failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        if done.returncode == -9:
            time.sleep(LEASE_SECONDS + 0.2)  # the dead worker's lease runs out; recovery may begin
        return done.returncode

    def state(self) -> JobState:
        with Ledger.open(get_settings().ledger_url) as ledger:
            return ledger.get_job(self.job_id).state

    def approve(self) -> None:
        with Ledger.open(get_settings().ledger_url) as ledger:
            job = ledger.get_job(self.job_id)
            assert job.state is JobState.awaiting_review and job.draft_sha
            ledger.decide(
                self.job_id, job.draft_sha, Decision.approve, reviewer="crash-test", channel=Channel.cli
            )

    def run_until(self, target: JobState, fault: str | None) -> None:
        """Run with ``fault`` armed once, then unarmed until the job reaches ``target`` (bounded)."""
        if fault is not None:
            self.run_worker(fault)
        for _ in range(4):
            if self.state() is target:
                return
            self.run_worker(None)
        assert self.state() is target, (self.state(), self.runs)

    def check_invariants(self) -> None:
        """What must hold after any crash and recovery: the same end as an uninterrupted run."""
        with Ledger.open(get_settings().ledger_url) as ledger:
            job = ledger.get_job(self.job_id)
            assert job.state is JobState.monitoring, (job.state, job.failure_reason, self.runs)
            effects = ledger.list_effects(self.job_id)
            assert len(effects) == 1, effects  # at most one applied edit per (job, draft)
            effect = effects[0]
            assert effect.status.value in {"applied", "reconciled"}
            approval = ledger.get_approval(self.job_id, job.draft_sha or "")
            assert approval is not None and approval.decision is Decision.approve
            assert effect.draft_sha == job.draft_sha  # the published draft is the approved one
            assert approval.decided_at is not None and effect.completed_at is not None
            assert approval.decided_at <= effect.completed_at  # approved before written
            reviews = ledger.evidence(self.job_id, "review")
            assert len(reviews) == 1, "the approval was asked for more than once"
            verifications = ledger.evidence(self.job_id, "verification")
            assert verifications and verifications[-1].payload["passed"] is True
            assert verifications[-1].created_at >= effect.completed_at  # written before verified
            assert ledger.verify_chain(self.job_id).ok
        text = (self.root / "why-static.md").read_text()
        assert text.count(NEW) == 1 and OLD not in text
        assert self.llm.calls == 1, f"the drafter was called {self.llm.calls} times"
        self.check_no_leak()

    def check_no_leak(self) -> None:
        """Invariant 6: the model key went only into the model's Authorization header.

        Not into a prompt, and not into any file the job wrote: ledger, evidence, task results, crawl store.
        """
        key = self.worker_env().get("SITESTEWARD_LLM_API_KEY", CANARY_KEY)
        assert self.llm.requests, "the model was never asked: the scan would prove nothing"
        assert all(r.headers.get("authorization") == f"Bearer {key}" for r in self.llm.requests)
        assert not [r for r in self.llm.requests if key in json.dumps(r.body)], "the key is in a prompt"
        data_dir = get_settings().data_dir
        leaked = [p for p in data_dir.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
        assert not leaked, f"the key reached {leaked}"
