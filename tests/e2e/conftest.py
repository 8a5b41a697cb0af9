"""A real sitesteward deployment for end-to-end tests: Prefect server, served deployments, the demo site.

Every piece is a real process or server, started here and stopped by its own handle:

- ``prefect server start`` (SQLite in a temporary ``PREFECT_HOME``, a free port, UI on or off);
- ``python -m deployments.serve --only refresh-page`` (the deployment a reviewer resumes), sharing the
  test's ``SITESTEWARD_DATA_DIR`` so the flow and the test read the same ledger;
- the bundled example site and its sources on loopback (a copy: publishing edits it).

``tests/integration/test_deploy.py`` imports these helpers too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from sitesteward.cli import EXAMPLES, _prepare_demo_site
from sitesteward.demo.server import SiteServer, SourcesServer
from sitesteward.ledger import ApprovalRecord, JobRecord, Ledger
from sitesteward.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
PREFECT = str(Path(sys.executable).with_name("prefect"))
ARTIFACTS = ROOT / "tests" / "artifacts"
SERVER_START_TIMEOUT = 240.0  # a cold `prefect server start` (UI copied) measured 47 s on a busy machine
REFRESH_PAGE = "refresh_page/refresh-page"


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Stop a process this test started (and its children: it leads its own session)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class PrefectServer:
    """A running ``prefect server start`` subprocess."""

    url: str
    home: Path
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def api_url(self) -> str:
        """The API root (``PREFECT_API_URL``)."""
        return f"{self.url}/api"

    def client_env(self, data_dir: Path, **extra: str) -> dict[str, str]:
        """Environment for a sitesteward/Prefect client process talking to this server."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SITESTEWARD_"))}
        env.update(
            PREFECT_API_URL=self.api_url,
            PREFECT_HOME=str(self.home / "client"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_LOGGING_LEVEL="INFO",
            # A resumed run is picked up at the runner's next poll (default 10 s).
            PREFECT_RUNNER_POLL_FREQUENCY="2",
            SITESTEWARD_DATA_DIR=str(data_dir),
            SITESTEWARD_ALLOW_PRIVATE="true",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env


@contextmanager
def prefect_server(
    home: Path, *, ui: bool, port: int | None = None, extra_env: Mapping[str, str] | None = None
) -> Iterator[PrefectServer]:
    """Start ``prefect server start`` and wait for ``/api/health``.

    Args:
        home: ``PREFECT_HOME`` (its SQLite database unless ``extra_env`` names another): a restart on the
            same home and ``port`` finds its runs again.
        ui: Serve the UI too.
        port: A fixed port (a restart); default: a free one.
        extra_env: More server settings, e.g. ``PREFECT_API_DATABASE_CONNECTION_URL`` for PostgreSQL.
    """
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="true" if ui else "false",
        # The browser calls the API at this URL (default: port 4200).
        PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api",
        # Scheduled runs of new deployments appear within seconds instead of the next 60 s loop.
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    env.update(extra_env or {})
    log = home / "server.log"
    with log.open("ab") as sink:  # a restart appends
        process = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = PrefectServer(url=f"http://127.0.0.1:{port}", home=home, log=log, process=process)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"prefect server exited with {process.returncode}:\n{_tail(log)}")
            try:
                if httpx.get(f"{server.api_url}/health", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prefect server not healthy after {SERVER_START_TIMEOUT} s:\n{_tail(log)}")
            time.sleep(0.5)
        yield server
    finally:
        stop_process(process)


@contextmanager
def served_deployments(
    server: PrefectServer, data_dir: Path, log: Path, only: tuple[str, ...] = ("refresh-page",)
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m deployments.serve --only ...`` against ``server``; ready when the deployments exist."""
    args = [PYTHON, "-m", "deployments.serve"]
    for name in only:
        args += ["--only", name]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=server.client_env(data_dir),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while not _deployments_exist(server, only):
            if process.poll() is not None:
                pytest.fail(f"deployments.serve exited with {process.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"served deployments did not appear:\n{_tail(log)}")
            time.sleep(0.5)
        yield process
    finally:
        stop_process(process)


def _deployments_exist(server: PrefectServer, names: tuple[str, ...]) -> bool:
    response = httpx.post(f"{server.api_url}/deployments/filter", json={}, timeout=10.0)
    response.raise_for_status()
    return set(names) <= {deployment["name"] for deployment in response.json()}


@dataclass
class DemoSite:
    """The example site (a copy in ``root``) served on loopback with its sources."""

    site: SiteServer
    sources: SourcesServer
    root: Path

    @property
    def base_url(self) -> str:
        return self.site.base_url + "/"


@contextmanager
def demo_site(root: Path) -> Iterator[DemoSite]:
    """Serve a fresh copy of ``examples/site`` from ``root`` (and ``examples/sources``)."""
    with SourcesServer(EXAMPLES / "sources") as sources:
        _prepare_demo_site(root, sources.base_url)
        with SiteServer(root, sources_url=sources.base_url) as site:
            yield DemoSite(site, sources, root)


@dataclass
class Stack:
    """Server, served ``refresh-page`` deployment and demo site, sharing one data directory."""

    server: PrefectServer
    demo: DemoSite
    data_dir: Path
    jobs: dict[str, str] = field(default_factory=dict)  # page path -> planned job id

    def ledger(self) -> Ledger:
        return Ledger.open(get_settings().ledger_url)

    def job(self, job_id: str) -> JobRecord:
        ledger = self.ledger()
        try:
            return ledger.get_job(job_id)
        finally:
            ledger.close()

    def approval(self, job_id: str) -> ApprovalRecord | None:
        ledger = self.ledger()
        try:
            job = ledger.get_job(job_id)
            return ledger.get_approval(job_id, job.draft_sha) if job.draft_sha else None
        finally:
            ledger.close()

    def job_for(self, path: str) -> str:
        """The planned job of the page at ``path`` (``/why-static/``)."""
        try:
            return self.jobs[path]
        except KeyError:
            pytest.fail(f"no job planned for {path}; planned: {sorted(self.jobs)}")

    def markdown(self, relative: str) -> str:
        return (self.demo.root / relative).read_text(encoding="utf-8")


def plan_jobs_on(demo: DemoSite, site_id: str = "e2e") -> dict[str, str]:
    """Audit the demo site through the ``audit_site`` flow and submit a job per page needing a refresh.

    Runs in this process against the current ``PREFECT_API_URL``; returns ``{page path: job id}``.
    """
    from urllib.parse import urlsplit

    from flows.audit_site import AuditParams, audit_site
    from sitesteward.models import CrawlConfig
    from tasks.jobs import plan_jobs

    crawl = CrawlConfig(start_urls=[demo.base_url], allow_private=True, max_pages=200)
    summary = audit_site(AuditParams(crawl=crawl))
    job_ids = plan_jobs.fn(
        site_id, demo.base_url, str(demo.root), summary.refresh_needed, summary.findings, 50, True, 0
    )
    ledger = Ledger.open(get_settings().ledger_url)
    try:
        return {urlsplit(ledger.get_job(job_id).page_url).path: job_id for job_id in job_ids}
    finally:
        ledger.close()


@contextmanager
def talking_to(api_url: str) -> Iterator[None]:
    """Point this process's Prefect client at ``api_url``; drain the client's workers before leaving.

    Prefect's log and event workers are process-wide singletons: left with work for a server that is
    about to stop, they block the next drain (the test harness's teardown) for good. Draining them here,
    while the server still answers, keeps each test's traffic inside the test.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        try:
            yield
        finally:
            APILogWorker.drain_all(timeout=30)
            EventsWorker.drain_all(timeout=30)


@contextmanager
def deployment_stack(base: Path, *, ui: bool) -> Iterator[Stack]:
    """Start everything; the caller's process talks to the server through ``temporary_settings``."""
    data_dir = base / "steward-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get("SITESTEWARD_DATA_DIR")
    os.environ["SITESTEWARD_DATA_DIR"] = str(data_dir)
    get_settings.cache_clear()
    try:
        with ExitStack() as stack:
            server = stack.enter_context(prefect_server(base / "prefect-home", ui=ui))
            stack.enter_context(talking_to(server.api_url))
            demo = stack.enter_context(demo_site(base / "site"))
            stack.enter_context(served_deployments(server, data_dir, base / "serve.log"))
            jobs = plan_jobs_on(demo)
            yield Stack(server=server, demo=demo, data_dir=data_dir, jobs=jobs)
    finally:
        if previous is None:
            os.environ.pop("SITESTEWARD_DATA_DIR", None)
        else:
            os.environ["SITESTEWARD_DATA_DIR"] = previous
        get_settings.cache_clear()


def use_stack_data_dir(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point this test's settings at the stack's data directory (``isolated_settings`` set another)."""
    monkeypatch.setenv("SITESTEWARD_DATA_DIR", str(stack.data_dir))
    get_settings.cache_clear()


def start_job_run(job_id: str, approval: str = "suspend") -> UUID:
    """Create a run of the served ``refresh-page`` deployment for ``job_id``; return its id."""
    from prefect.deployments import run_deployment

    run = run_deployment(
        REFRESH_PAGE,
        parameters={"params": {"job_id": job_id, "approval": approval}},
        timeout=0,
        as_subflow=False,
    )
    return run.id


def read_run(run_id: UUID) -> Any:
    """The flow run as the API has it now."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def wait_for_run(run_id: UUID, done: Callable[[Any], bool], what: str, timeout: float = 120.0) -> Any:
    """Poll the run until ``done(run)``; fail with its last state (and the serve log hint) otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        run = read_run(run_id)
        if run.state is not None and done(run):
            return run
        if run.state is not None and run.state.is_final() and not done(run):
            pytest.fail(f"run {run_id} ended {run.state.type.value} ({run.state.message}) before {what}")
        if time.monotonic() > deadline:
            state = run.state.name if run.state else None
            pytest.fail(f"run {run_id} not {what} after {timeout} s (state {state})")
        time.sleep(1.0)


def is_suspended(run: Any) -> bool:
    """Suspended (a PAUSED state that released its process and reschedules on resume)."""
    return bool(run.state.is_paused() and run.state.name == "Suspended")


def is_completed(run: Any) -> bool:
    return bool(run.state.is_completed())
