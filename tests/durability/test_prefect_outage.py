"""The Prefect server stopped for a minute in the middle of a job, then started again on the same database.

The ledger, not Prefect, is the job's record: whatever the worker's flow run makes of the outage (Prefect's
client retries, then the run crashes), a re-run after the server is back finishes the job from its last
checkpoint with one model call, one review request and one publish.

The server keeps its runs in a fresh PostgreSQL database (as in the README's scale-out topology): a first
start there takes ~4 s less than on a fresh SQLite file, whose migrations run one by one.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from sitesteward.cli import EXAMPLES, _prepare_demo_site
from sitesteward.demo.server import SiteServer, SourcesServer
from sitesteward.ledger import JobState, Ledger
from sitesteward.settings import get_settings
from tests.conftest import fresh_postgres_database
from tests.durability.harness import Scenario, llm_answer
from tests.e2e.conftest import free_port, prefect_server
from tests.llm_server import FakeLLMServer

pytestmark = [pytest.mark.prefect, pytest.mark.postgres, pytest.mark.slow]

#: How long the server stays down (the issue's "a minute").
OUTAGE_SECONDS = 60.0


@pytest.mark.scenario(
    name="Prefect server stopped for a minute mid-run",
    faults="the worker is frozen right after the draft checkpoint, the Prefect server is stopped, the worker "
    "thawed into the outage; the server comes back on the same database 60 s later",
    checks="the job is not lost: re-runs finish it from the ledger with one model call, one review request, "
    "one publish after approval, and the same end state as an uninterrupted run",
)
@pytest.mark.usefixtures("postgres_admin_url")  # PostgreSQL is there (CI fails if not)
def test_prefect_server_stopped_for_a_minute_mid_run(tmp_path: Path) -> None:
    home, port = tmp_path / "prefect", free_port()
    with (
        fresh_postgres_database("steward_prefect", driver="asyncpg") as prefect_database,
        SourcesServer(EXAMPLES / "sources") as sources,
        FakeLLMServer() as llm,
    ):
        database = {"PREFECT_API_DATABASE_CONNECTION_URL": prefect_database}
        root = tmp_path / "site"
        _prepare_demo_site(root, sources.base_url)
        llm.script(llm_answer(sources.base_url))
        with SiteServer(root, sources_url=sources.base_url) as site:
            scenario = Scenario(
                root=root, site=site, sources=sources, llm=llm, api_url=f"http://127.0.0.1:{port}/api"
            )
            scenario.plan()
            with prefect_server(home, ui=False, port=port, extra_env=database):
                worker = scenario.start_worker("after_draft_commit=stop")
                try:
                    worker.wait_stopped(timeout=180)
                except BaseException:
                    worker.kill()
                    raise
            # The server is down now; the worker goes on into the outage.
            down_at = time.monotonic()
            try:
                os.kill(worker.process.pid, signal.SIGCONT)
                time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
                assert not _healthy(port), "the server was supposed to be down"
                with prefect_server(home, ui=False, port=port, extra_env=database):  # the same database
                    worker.process.wait(timeout=300)  # finished or crashed: both are fine here
                    with Ledger.open(get_settings().ledger_url) as ledger:
                        # Nothing before the outage was lost: the draft checkpoint is there.
                        steps = {(s.step, s.status.value) for s in ledger.list_steps(scenario.job_id)}
                    assert ("draft", "completed") in steps, steps
                    scenario.run_until(JobState.awaiting_review, None)
                    scenario.approve()
                    scenario.run_until(JobState.monitoring, None)
            finally:
                worker.kill()
            scenario.check_invariants()


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
