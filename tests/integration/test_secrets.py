"""A canary API key goes through a whole refresh and must show up in no sink.

Sinks: the ledger and every file in the data directory (crawl store, task results, reports), the Prefect
database (flow and task runs, parameters, logs, artifacts, run inputs), and every outbound request body.
The key legitimately appears in one place only: the Authorization header sent to the model endpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.refresh_site import refresh_site
from sitesteward.cli_jobs import decide
from sitesteward.ledger import Decision
from sitesteward.settings import get_settings
from tests.durability.harness import llm_answer
from tests.integration.conftest import Demo
from tests.llm_server import FakeLLMServer

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_api")]

CANARY = "sk-canary-7f3d9a1e5b2c4d6f8a0b"


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.scenario(
    name="a canary API key through a whole refresh",
    faults="a secret in the environment",
    checks="used only in the model's Authorization header; absent from request bodies, the data "
    "directory (ledger, store, results, reports), Prefect's database, logs, parameters and artifacts",
)
def test_the_api_key_reaches_no_sink(demo: Demo, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    with FakeLLMServer() as llm:
        llm.script(*[llm_answer(demo.sources.base_url) for _ in range(20)])
        monkeypatch.setenv("SITESTEWARD_LLM_API_KEY", CANARY)
        monkeypatch.setenv("SITESTEWARD_LLM_BASE_URL", llm.url + "/v1")
        monkeypatch.setenv("SITESTEWARD_LLM_MODEL", "test-model")
        get_settings.cache_clear()
        summary = refresh_site(demo.params())
        waiting = [job.job_id for job in summary.jobs if job.state == "awaiting_review"]
        assert waiting and llm.calls >= 1
        for job_id in waiting:
            decide(job_id, Decision.approve, "tester", None, resume=True)

        # The key was really used (so the scan below means something) ...
        assert all(r.headers.get("authorization") == f"Bearer {CANARY}" for r in llm.requests)
        # ... and sent nowhere else: not in any request body.
        assert not [r for r in llm.requests if CANARY in json.dumps(r.body)]

    data_dir = get_settings().data_dir
    assert not _files_containing(data_dir, CANARY.encode())

    database = PREFECT_SERVER_DATABASE_CONNECTION_URL.value() or ""
    db_path = Path(database.split("///", 1)[-1]) if "sqlite" in database else None
    if db_path is not None and db_path.exists():
        assert not _files_containing(db_path.parent, CANARY.encode())
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter())
        assert logs, "no run logs were recorded: the scan would prove nothing"
        assert not [log for log in logs if CANARY in log.message]
        runs = client.read_flow_runs()
        assert not [run for run in runs if CANARY in json.dumps(run.parameters, default=str)]
        artifacts = client.read_artifacts()
        assert not [a for a in artifacts if CANARY in json.dumps(a.data, default=str)]
