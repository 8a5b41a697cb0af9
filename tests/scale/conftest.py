"""The scale-out topology on loopback: Prefect server on PostgreSQL, ledger on PostgreSQL, Redis locks,
two process workers on one pool, and a generated site served by the demo server.

Every piece is a real process or server started here and stopped by its own handle. The server and
worker processes lead their own sessions; a worker's flow runs lead theirs too (Prefect 3.9 starts each
run's supervisor with ``start_new_session``), so :meth:`Worker.kill` collects the worker's descendants
before it kills anything: losing a machine kills its runs with it.

Shared with ``tests/e2e/conftest.py``: ``free_port``, ``stop_process``, ``talking_to``, ``PrefectServer``.
Copied from it (with the database URL added): :func:`prefect_server_on`, because that one starts SQLite only.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import fresh_postgres_database
from tests.e2e.conftest import PREFECT, ROOT, PrefectServer, prefect_server, stop_process


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log (for failure messages)."""
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def prefect_database_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for the Prefect server (asyncpg URL), dropped afterwards."""
    with fresh_postgres_database("steward_prefect", driver="asyncpg") as url:
        yield url


def prefect_server_on(home: Path, database_url: str) -> AbstractContextManager[PrefectServer]:
    """``prefect server start`` on ``database_url`` (no UI), healthy before it is yielded."""
    return prefect_server(home, ui=False, extra_env={"PREFECT_API_DATABASE_CONNECTION_URL": database_url})


@dataclass
class Worker:
    """A ``prefect worker start`` subprocess (the leader of its own process group)."""

    name: str
    log: Path
    process: subprocess.Popen[bytes]
    killed_pids: list[int] = field(default_factory=list)

    def descendants(self) -> list[psutil.Process]:
        """The worker's live descendants: flow-run supervisors and engines, in their own sessions."""
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the worker's process group and every process it started: a machine lost mid-run."""
        victims = self.descendants()  # before the kill: orphans are re-parented and lost to psutil
        os.killpg(self.process.pid, signal.SIGKILL)
        for child in victims:
            try:
                os.killpg(child.pid, signal.SIGKILL)  # the run's own session (supervisor and engine)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
            self.killed_pids.append(child.pid)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """Stop the worker and whatever runs it still has (test teardown)."""
        children = self.descendants()
        stop_process(self.process)
        for child in children:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass


@contextmanager
def worker(
    server: PrefectServer, name: str, pool: str, env: dict[str, str], log: Path, limit: int
) -> Iterator[Worker]:
    """``prefect worker start --pool POOL --name NAME --limit N``, polling every second."""
    worker_env = server.client_env(
        Path(env["SITESTEWARD_DATA_DIR"]),
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_WORKER_PREFETCH_SECONDS="5",
        PREFECT_LOGGING_LEVEL="WARNING",
        **env,
    )
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", pool, "--name", name, "--limit", str(limit)],
            cwd=ROOT,
            env=worker_env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    handle = Worker(name=name, log=log, process=process)
    try:
        yield handle
    finally:
        handle.stop()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process, its live descendants and the children they reaped."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def api(server: PrefectServer, path: str, body: dict[str, Any] | None = None) -> Any:
    """POST ``body`` to the server's API path; the decoded JSON answer."""
    response = httpx.post(f"{server.api_url}{path}", json=body or {}, timeout=30.0)
    response.raise_for_status()
    return response.json()


def flow_runs(server: PrefectServer, **flow_run_filter: Any) -> list[dict[str, Any]]:
    """Flow runs matching a ``flow_runs`` filter (``deployment_id={"any_": [...]}``, ...), all pages."""
    runs: list[dict[str, Any]] = []
    while True:
        page = api(
            server, "/flow_runs/filter", {"flow_runs": flow_run_filter, "offset": len(runs), "limit": 200}
        )
        runs += page
        if len(page) < 200:
            return runs
