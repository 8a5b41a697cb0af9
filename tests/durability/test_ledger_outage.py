"""The ledger survives losing its PostgreSQL connection: cut mid-statement, cut after COMMIT, refused
connections while the server restarts, and real restarts of the server during a 200-job run.

The first tests put a TCP proxy (``load_pgproxy``) between the ledger and PostgreSQL and cut at an exact
moment; the last one restarts the real server (``pg_ctlcluster``) three times while workers run jobs.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from sitesteward.errors import StaleVersion
from sitesteward.ledger import JobState, Ledger, LedgerUnavailable
from tests.conftest import service_unavailable
from tests.durability.load_pgproxy import PgProxy

pytestmark = pytest.mark.postgres


@pytest.fixture
def proxied(postgres_url: str) -> Iterator[tuple[Ledger, PgProxy]]:
    Ledger.open(postgres_url).close()  # create the schema directly
    with PgProxy() as proxy:
        ledger = Ledger.open(proxy.url_for(postgres_url))
        ledger.reconnect_seconds = 10
        try:
            yield ledger, proxy
        finally:
            ledger.close()


def _job(ledger: Ledger, name: str = "a") -> str:
    return ledger.submit_job("outage", f"https://example.com/{name}", goal="g", trigger="t").job.job_id


@pytest.mark.scenario(
    name="Ledger connection lost after COMMIT",
    faults="the connection is cut after PostgreSQL received COMMIT, before the client hears the answer",
    checks="transition, lease release, attempt count happen once; the retry re-reads, no StaleVersion",
)
def test_a_lost_commit_answer_is_settled_by_rereading(proxied: tuple[Ledger, PgProxy]) -> None:
    ledger, proxy = proxied
    job_id = _job(ledger)
    fence = ledger.acquire_lease(job_id, "w1", timedelta(minutes=1))

    proxy.drop_after_commit = True
    job = ledger.transition(job_id, JobState.compared, expected_version=fence)
    assert proxy.cuts == 1, "the COMMIT answer was never dropped: the test did not test anything"
    assert job.state is JobState.compared and job.version == fence + 1

    proxy.drop_after_commit = True
    assert ledger.record_attempt(job_id, "draft", "TransientError", "503") == 1
    assert proxy.cuts == 2
    assert ledger.attempts(job_id, "draft") == 1  # counted once, not once per try

    proxy.drop_after_commit = True
    step = ledger.start_step(job_id, "draft", "h1", fence=job.version)
    assert proxy.cuts == 3 and step.attempts == 1

    proxy.drop_after_commit = True
    released = ledger.release_lease(job_id, "w1", job.version)
    assert proxy.cuts == 4 and released.lease_owner is None

    proxy.drop_after_commit = True
    assert ledger.submit_job("outage", "https://example.com/a", goal="g", trigger="t").job.job_id == job_id
    assert len(ledger.list_jobs()) == 1


@pytest.mark.scenario(
    name="Ledger connection lost mid-statement",
    faults="the connection is cut while the row lock is taken; new connections refused for 1.5 s",
    checks="the whole transaction is re-run on a new connection; a real conflict still raises StaleVersion",
)
def test_a_cut_statement_or_a_refused_connection_is_retried(proxied: tuple[Ledger, PgProxy]) -> None:
    ledger, proxy = proxied
    job_id = _job(ledger)
    fence = ledger.acquire_lease(job_id, "w1", timedelta(minutes=1))
    proxy.cut_on = b"FOR UPDATE"
    job = ledger.transition(job_id, JobState.compared, expected_version=fence)
    assert proxy.cuts == 1 and job.version == fence + 1

    proxy.cut_all()  # stale pooled connections: pool_pre_ping replaces them
    proxy.refuse = True
    threading.Timer(1.5, lambda: setattr(proxy, "refuse", False)).start()
    started = time.monotonic()
    assert ledger.get_job(job_id).state is JobState.compared
    assert time.monotonic() - started >= 1.0  # it waited for the "restart" instead of failing

    with pytest.raises(StaleVersion):  # retrying never turns a lost race into a win
        ledger.transition(job_id, JobState.drafted, expected_version=fence)


def test_an_outage_longer_than_the_window_is_reported(proxied: tuple[Ledger, PgProxy]) -> None:
    ledger, proxy = proxied
    job_id = _job(ledger)
    ledger.reconnect_seconds = 0.5
    proxy.cut_all()
    proxy.refuse = True
    with pytest.raises(LedgerUnavailable) as caught:
        ledger.get_job(job_id)
    assert caught.value.connection_lost
    proxy.refuse = False
    assert ledger.get_job(job_id).job_id == job_id


# ----------------------------------------------------------------------------- real server restarts


def _cluster_version() -> str | None:
    try:
        versions = sorted(os.listdir("/etc/postgresql"))
    except OSError:
        return None
    return versions[-1] if versions else None


def restart_postgres() -> float:
    """Restart the local PostgreSQL cluster as CI does; return how long it took."""
    version = _cluster_version()
    started = time.monotonic()
    done = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version or "?", "main", "restart", "-m", "fast"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pg_ctlcluster restart failed ({done.returncode}): {done.stderr.strip()}")
    return time.monotonic() - started


@pytest.fixture
def restartable_postgres() -> None:
    """Skip (or fail under SITESTEWARD_REQUIRE_SERVICES=1) when this process cannot restart PostgreSQL."""
    version = _cluster_version()
    if version is None:
        service_unavailable("PostgreSQL restart", "no cluster under /etc/postgresql")
    check = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", str(version), "main", "status"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if check.returncode != 0 or (os.geteuid() != 0 and "postgres" not in os.popen("id -un").read()):
        service_unavailable(
            "PostgreSQL restart",
            f"cannot control cluster {version}/main with pg_ctlcluster (rc {check.returncode}: "
            f"{check.stderr.strip() or check.stdout.strip()})",
        )


@pytest.mark.slow
@pytest.mark.timeout(600)  # a safety net: the budget is 2 minutes on 2 idle cores
@pytest.mark.scenario(
    name="PostgreSQL restarted during a 200-job run",
    faults="the ledger's PostgreSQL server restarted 3 times while 4 workers run 200 jobs",
    checks="every job terminal or monitoring, one applied edit per job, none without approval, "
    "one LLM call per job, evidence chains verify",
)
def test_postgres_restarts_during_a_200_job_run(
    restartable_postgres: None, postgres_url: str, tmp_path: Path
) -> None:
    from tests.durability.load_harness import LoadRun, LoadSpec

    spec = LoadSpec.from_env(jobs=200, workers=4, kills=0, target_503=0.0, llm_timeouts=0.0)
    with LoadRun(spec, tmp_path, postgres_url) as run:
        restarts: list[float] = []

        def _restarter() -> None:
            for at in (0.2, 0.45, 0.7):  # fractions of the job runs done
                while run.progress() < at and not run.done.is_set():
                    time.sleep(0.1)
                if run.done.is_set():
                    return
                restarts.append(restart_postgres())

        thread = threading.Thread(target=_restarter, daemon=True)
        thread.start()
        report = run.run(deadline_seconds=500)
        thread.join(timeout=60)
    print(f"postgres restarts took {[round(r, 2) for r in restarts]} s; {report.summary()}")
    assert len(restarts) == 3, f"only {len(restarts)} restarts happened before the run ended"
    assert report.reconnects > 0, "no ledger call ever lost its connection: the restarts tested nothing"
    report.check()
