"""Retry and spending budgets: a failure that keeps coming back stops the job, it never loops or overspends.

Two always-failing dependencies, each driven through separate worker processes (so the attempt count
must come from the ledger, not from a process's memory):

- a model endpoint that never answers in time: every call outlives the client timeout;
- a site whose page always answers 503.

What the code does, measured here rather than assumed: inside one flow run Prefect retries the task
``len(RETRY_DELAYS)`` times on a :class:`~sitesteward.errors.TransientError`, spaced by ``RETRY_DELAYS``
(with jitter); the openai client itself never retries (``max_retries=0``) and the crawler retries a
503 once (``crawl_config_for(...).retries``). After the task's retries the run fails and the ledger counts
one attempt of the step; the run that records attempt ``MAX_STEP_ATTEMPTS`` stops the job ``failed`` /
``retries_exhausted`` with a next action and a triage note, and later runs call nothing.

Then the per-job LLM budget (issue 5): refused before a call that cannot fit, checked after a call
against the usage the server reported, and a job over budget stops ``budget_exceeded`` after at most
one call. Retry delays are scaled down by ``SITESTEWARD_RETRY_DELAY_SCALE`` so each scenario takes
seconds.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai
import pytest
from pydantic import SecretStr

from sitesteward.cli import EXAMPLES, _prepare_demo_site
from sitesteward.compare import compare_page
from sitesteward.demo.server import SiteServer, SourcesServer, _Headers, _Response
from sitesteward.draft import DraftRequest, build_draft_request
from sitesteward.engine import MAX_STEP_ATTEMPTS, stop_reason_for
from sitesteward.errors import BudgetExceeded, PermanentError
from sitesteward.ledger import JobState, Ledger, StopReason
from sitesteward.llm import (
    MIN_ANSWER_TOKENS,
    LLMDrafter,
    LLMDraftOutput,
    TokenBudget,
    build_client,
    build_messages,
    estimate_tokens,
    select_drafter,
    strict_schema,
)
from sitesteward.models import PageData
from sitesteward.refresh import crawl_config_for
from sitesteward.settings import Settings, get_settings
from sitesteward.sources import cited_sources, snapshot_source
from sitesteward.triage import TriageNote
from tasks.common import RETRY_DELAYS
from tests.durability.harness import CANARY_KEY, NEW, OLD, ROOT, Scenario, llm_answer
from tests.llm_server import FakeLLMServer, Reply

#: What every worker gets: short task backoff (RETRY_DELAYS x 0.02) and a short model timeout.
DELAY_SCALE = 0.02
LLM_TIMEOUT = 0.4
FAST_ENV = {
    "SITESTEWARD_RETRY_DELAY_SCALE": str(DELAY_SCALE),
    "SITESTEWARD_LLM_TIMEOUT_SECONDS": str(LLM_TIMEOUT),
}
#: Prefect's jitter (``retry_jitter_factor=0.5``) keeps a delay within +-50% of its nominal value.
JITTER = 0.5
#: Task runs per flow run: the first try plus Prefect's retries.
TRIES_PER_RUN = len(RETRY_DELAYS) + 1

_WORKER = (
    "import sys\n"
    "from flows.refresh_page import RefreshParams, refresh_page\n"
    "print(refresh_page(RefreshParams.model_validate_json(sys.argv[1])).model_dump_json())\n"
)


def worker_env(job: Scenario, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker or CLI process working on ``job`` (shared Prefect API and ledger)."""
    env = dict(os.environ)
    env.update(
        PREFECT_API_URL=job.api_url,
        PREFECT_LOGGING_LEVEL="WARNING",
        SITESTEWARD_LLM_API_KEY=CANARY_KEY,
        SITESTEWARD_LLM_BASE_URL=job.llm.url + "/v1",
        SITESTEWARD_LLM_MODEL="test-model",
        SITESTEWARD_FAULT_POINTS="",
        **FAST_ENV,
    )
    env.update(extra or {})
    return env


def worker_command(job: Scenario, params: Mapping[str, Any] | None = None) -> list[str]:
    """``refresh_page`` for the job with ``params`` (``RefreshParams`` fields) in a new interpreter."""
    payload = {"job_id": job.job_id, "lease_seconds": 5, **(params or {})}
    return [sys.executable, "-c", _WORKER, json.dumps(payload)]


def run_worker(
    job: Scenario,
    *,
    params: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    allowed: frozenset[int] = frozenset({0}),
) -> subprocess.CompletedProcess[str]:
    """Run ``refresh_page`` for the job in a fresh process (exit 1: the run failed, e.g. transiently)."""
    done = subprocess.run(
        worker_command(job, params),
        cwd=ROOT,
        env=worker_env(job, env),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    job.runs.append((None, done.returncode))
    assert done.returncode in allowed, f"worker exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


class BusySite(SiteServer):
    """The example site, except that ``busy_path`` always answers 503 (counted, with its arrival times)."""

    def __init__(self, content_root: Path, *, busy_path: str, sources_url: str) -> None:
        super().__init__(content_root, sources_url=sources_url)
        self.busy_path = busy_path
        self.busy_hits = 0

    def respond(self, raw_path: str, request: _Headers) -> _Response:
        if raw_path.split("?", 1)[0] == self.busy_path:
            self.busy_hits += 1
            # Retry-After: 0 keeps the crawler's own retry immediate (it honours the header)
            headers = {"Content-Type": "text/html; charset=utf-8", "Retry-After": "0"}
            return _Response(503, b"<p>busy</p>", headers)
        return super().respond(raw_path, request)


@contextmanager
def staged_job(tmp_path: Path, *, busy_path: str | None = None) -> Iterator[Scenario]:
    """One planned job on a private copy of the example site (optionally with a page that answers 503)."""
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    assert api_url, "the Prefect test harness did not expose its API URL"
    with SourcesServer(EXAMPLES / "sources") as sources, FakeLLMServer() as llm:
        root = tmp_path / "site"
        _prepare_demo_site(root, sources.base_url)
        site: SiteServer = (
            BusySite(root, busy_path=busy_path, sources_url=sources.base_url)
            if busy_path
            else SiteServer(root, sources_url=sources.base_url)
        )
        with site:
            job = Scenario(root=root, site=site, sources=sources, llm=llm, api_url=str(api_url))
            job.plan()
            yield job


def _ledger() -> Ledger:
    return Ledger.open(get_settings().ledger_url)


def _assert_stopped(job: Scenario, reason: StopReason, step: str, attempts: int) -> None:
    """The job is failed with ``reason``, a next action and a triage note; nothing was published."""
    with _ledger() as ledger:
        record = ledger.get_job(job.job_id)
        assert record.state is JobState.failed, (record.state, record.failure_reason, job.runs)
        assert record.stop_reason is reason
        assert record.next_action and record.failure_reason and step in record.failure_reason
        assert record.triage_note, "a stopped job carries a triage note"
        note = TriageNote.model_validate_json(record.triage_note)
        assert note.attempts == attempts and note.last_step == step and not note.retryable
        assert ledger.list_effects(job.job_id) == []
        assert ledger.evidence(job.job_id, "verification") == []
        assert ledger.verify_chain(job.job_id).ok
    text = (job.root / "why-static.md").read_text(encoding="utf-8")
    assert OLD in text and NEW not in text


# ---------------------------------------------------------------------------------- retry budgets


@pytest.mark.prefect
@pytest.mark.scenario(
    name="model endpoint always times out",
    faults="every model call hangs past the client timeout; each flow run in a new worker process",
    checks=f"{TRIES_PER_RUN} HTTP calls per run (Prefect retries only, openai max_retries=0), spaced by the "
    f"backoff; the ledger counts one draft attempt per run across processes; run {MAX_STEP_ATTEMPTS} stops "
    "failed/retries_exhausted with next action and triage note; a later run calls nothing",
)
def test_model_timeouts_spend_the_attempt_budget_across_processes(tmp_path: Path, prefect_api: None) -> None:
    with staged_job(tmp_path) as job:
        hang = Reply.slow(LLM_TIMEOUT + 2.0, llm_answer(job.sources.base_url))
        job.llm.script(*[hang] * (TRIES_PER_RUN * MAX_STEP_ATTEMPTS + 4))
        for run in range(1, MAX_STEP_ATTEMPTS + 1):
            done = run_worker(job, allowed=frozenset({0, 1}))
            # exactly the task's own tries: neither the client nor anything else retried on top
            assert job.llm.calls == run * TRIES_PER_RUN, (run, job.llm.calls)
            with _ledger() as ledger:
                attempts = ledger.attempt_history(job.job_id, "draft")
                record = ledger.get_job(job.job_id)
            assert len(attempts) == run, attempts  # continued from the ledger, not from zero
            assert {a.error_class for a in attempts} == {"TransientError"}
            assert all("timed out" in a.message for a in attempts)
            if run < MAX_STEP_ATTEMPTS:
                assert done.returncode == 1, done.stdout  # the run failed; the job waits for a re-run
                assert not record.terminal and record.state is JobState.compared, record.state
            else:
                assert done.returncode == 0, done.stderr  # the run ends cleanly with the stopped job
                assert json.loads(done.stdout.strip().splitlines()[-1])["stop_reason"] == "retries_exhausted"
        # the openai client is built without retries of its own
        settings = Settings(llm_api_key=SecretStr("k"), llm_base_url=job.llm.url + "/v1")
        client = build_client(settings)
        assert client is not None and client.max_retries == 0
        assert client.timeout == settings.llm_timeout_seconds

        # backoff: within a run, each retry starts at least timeout + the jittered delay after the last
        for run in range(MAX_STEP_ATTEMPTS):
            times = [r.at for r in job.llm.requests[run * TRIES_PER_RUN : (run + 1) * TRIES_PER_RUN]]
            gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
            for gap, delay in zip(gaps, RETRY_DELAYS, strict=True):
                nominal = delay * DELAY_SCALE
                assert gap >= LLM_TIMEOUT + (1 - JITTER) * nominal - 0.05, (run, gaps)
        with _ledger() as ledger:
            stamps = [a.at for a in ledger.attempt_history(job.job_id, "draft")]
        assert stamps == sorted(stamps) and len(set(stamps)) == MAX_STEP_ATTEMPTS

        _assert_stopped(job, StopReason.retries_exhausted, "draft", MAX_STEP_ATTEMPTS)
        # a restart after the stop does nothing: the total never exceeds the budget
        run_worker(job)
        assert job.llm.calls == MAX_STEP_ATTEMPTS * TRIES_PER_RUN
        with _ledger() as ledger:
            assert len(ledger.attempt_history(job.job_id)) == MAX_STEP_ATTEMPTS


@pytest.mark.prefect
@pytest.mark.scenario(
    name="page always answers 503",
    faults="the job's page answers 503 to every request; each flow run in a new worker process",
    checks=f"the compare step is attempted exactly {MAX_STEP_ATTEMPTS} times in the ledger (page requests = "
    "runs x task tries x fetch tries), the count survives restarts, the job stops failed/retries_exhausted "
    "with next action and triage note; no model call, nothing published",
)
def test_page_503_spends_the_attempt_budget_and_publishes_nothing(tmp_path: Path, prefect_api: None) -> None:
    fetch_tries = crawl_config_for("http://127.0.0.1/", allow_private=True).retries + 1
    per_run = TRIES_PER_RUN * fetch_tries
    with staged_job(tmp_path, busy_path="/why-static/") as job:
        assert isinstance(job.site, BusySite)
        job.llm.script(llm_answer(job.sources.base_url))
        for run in range(1, MAX_STEP_ATTEMPTS + 1):
            done = run_worker(job, allowed=frozenset({0, 1}))
            assert job.site.busy_hits == run * per_run, (run, job.site.busy_hits)
            with _ledger() as ledger:
                attempts = ledger.attempt_history(job.job_id)
                record = ledger.get_job(job.job_id)
            assert [a.step for a in attempts] == ["compare"] * run
            assert all("503" in a.message for a in attempts), attempts
            assert done.returncode == (0 if run == MAX_STEP_ATTEMPTS else 1), done.stderr
            if run < MAX_STEP_ATTEMPTS:
                assert record.state is JobState.planned and not record.terminal
        _assert_stopped(job, StopReason.retries_exhausted, "compare", MAX_STEP_ATTEMPTS)
        assert job.llm.calls == 0


# ---------------------------------------------------------------------------------- LLM budgets

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
PAGE_URL = "https://blog.example.com/deploy-daily/"
SURVEY = "https://research.example.org/state-of-deployment"
QUOTE = "As of 2024, 57% of teams deploy to production at least once a day, up from 35% three years earlier."
ANSWER = {
    "summary": "Updated the figure to the survey's 2024 value.",
    "edits": [
        {
            "kind": "replace_text",
            "old": "As of 2023, 42% of teams deploy",
            "new": "As of 2024, 57% of teams deploy",
            "finding": "claim_unsupported",
            "justification": "The survey now reports 57%.",
            "source_url": SURVEY,
            "source_quote": QUOTE,
        }
    ],
}


@pytest.fixture
def llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


@pytest.fixture
def request_42_to_57() -> DraftRequest:
    citations = cited_sources((FIXTURES / "page.html").read_text(), PAGE_URL, PageData())
    before = snapshot_source(
        SURVEY, (FIXTURES / "survey_v1.html").read_text(), retrieved_at=datetime(2024, 1, 1, tzinfo=UTC)
    )
    after = snapshot_source(
        SURVEY, (FIXTURES / "survey_v2.html").read_text(), retrieved_at=datetime(2024, 6, 1, tzinfo=UTC)
    )
    return build_draft_request(
        PAGE_URL,
        (FIXTURES / "page.md").read_text(),
        comparison=compare_page(PAGE_URL, "p", citations, [after], [before]),
        sources=[after],
        site_hosts=["blog.example.com"],
    )


def _settings(llm: FakeLLMServer, **overrides: Any) -> Settings:
    return Settings(
        llm_api_key=SecretStr("test-key"),
        llm_base_url=llm.url + "/v1",
        llm_model="test-model",
        llm_timeout_seconds=10,
        **overrides,
    )


def _prompt_estimate(request: DraftRequest) -> int:
    return estimate_tokens(build_messages(request), strict_schema(LLMDraftOutput))


def test_a_call_that_cannot_fit_the_token_budget_is_never_sent(
    llm: FakeLLMServer, request_42_to_57: DraftRequest
) -> None:
    drafter = select_drafter(_settings(llm, llm_max_tokens_per_job=300))
    assert isinstance(drafter, LLMDrafter)
    with pytest.raises(BudgetExceeded) as caught:
        drafter.draft(request_42_to_57)
    assert caught.value.limit == 300 and caught.value.amount > 300
    assert isinstance(caught.value, PermanentError)  # Prefect does not retry it
    assert llm.calls == 0


def test_the_answer_is_capped_to_what_the_budget_leaves(
    llm: FakeLLMServer, request_42_to_57: DraftRequest
) -> None:
    prompt = _prompt_estimate(request_42_to_57)
    drafter = select_drafter(_settings(llm, llm_max_tokens_per_job=prompt + 1500))
    assert isinstance(drafter, LLMDrafter)
    llm.script(Reply.json(ANSWER, prompt_tokens=prompt // 2, completion_tokens=300))
    result = drafter.draft(request_42_to_57)
    assert result.usage.total_tokens == prompt // 2 + 300
    assert llm.requests[0].body["max_completion_tokens"] == 1500  # not the default 4000


def test_reported_usage_over_the_budget_refuses_the_answer(
    llm: FakeLLMServer, request_42_to_57: DraftRequest
) -> None:
    drafter = select_drafter(_settings(llm, llm_max_tokens_per_job=20_000))
    llm.script(Reply.json(ANSWER, prompt_tokens=19_000, completion_tokens=1_500))
    with pytest.raises(BudgetExceeded, match="20000-token budget") as caught:
        drafter.draft(request_42_to_57)
    assert caught.value.amount == 20_500
    assert llm.calls == 1


def test_the_budget_is_a_running_total_for_the_job(
    llm: FakeLLMServer, request_42_to_57: DraftRequest
) -> None:
    prompt = _prompt_estimate(request_42_to_57)
    # after the first call, the prompt again fits but a useful answer (MIN_ANSWER_TOKENS) does not
    drafter = select_drafter(_settings(llm, llm_max_tokens_per_job=12_500 + prompt + MIN_ANSWER_TOKENS - 1))
    llm.script(Reply.json(ANSWER, prompt_tokens=12_000, completion_tokens=500))
    drafter.draft(request_42_to_57)
    with pytest.raises(BudgetExceeded, match="already spent 12500 tokens"):
        drafter.draft(request_42_to_57)
    assert llm.calls == 1


def test_cost_budget_with_a_configured_price(llm: FakeLLMServer, request_42_to_57: DraftRequest) -> None:
    # $10 per million tokens in and out: the prompt alone costs more than its own price minus a cent
    price = (10.0, 10.0)
    prompt_usd = _prompt_estimate(request_42_to_57) * 10.0 / 1_000_000
    refused = select_drafter(
        _settings(llm, llm_price_per_million_tokens=price, llm_max_cost_usd_per_job=prompt_usd * 0.9)
    )
    with pytest.raises(BudgetExceeded):
        refused.draft(request_42_to_57)
    assert llm.calls == 0
    # $1 fits the estimate, but the server reports 150 000 tokens: $1.50
    drafter = select_drafter(
        _settings(
            llm,
            llm_price_per_million_tokens=price,
            llm_max_cost_usd_per_job=1.0,
            llm_max_tokens_per_job=1_000_000,
        )
    )
    llm.script(Reply.json(ANSWER, prompt_tokens=140_000, completion_tokens=10_000))
    with pytest.raises(BudgetExceeded, match=r"cost \$1\.5000"):
        drafter.draft(request_42_to_57)
    assert llm.calls == 1
    # the responses API is held to the same budget
    with openai.OpenAI(base_url=llm.url + "/v1", api_key="k", max_retries=0) as responses_client:
        responses = LLMDrafter(
            responses_client, "test-model", api="responses", budget=TokenBudget(300, 1.0, "test-model", {})
        )
        with pytest.raises(BudgetExceeded):
            responses.draft(request_42_to_57)
    assert llm.calls == 1


def test_budget_settings_come_from_the_block_and_map_to_a_stop_reason() -> None:
    from blocks.llm import LLMConfig

    block = LLMConfig(model="gpt-4o-mini", max_tokens_per_job=1234, max_cost_usd_per_job=0.07)
    settings = block.apply_to(Settings())
    assert (settings.llm_max_tokens_per_job, settings.llm_max_cost_usd_per_job) == (1234, 0.07)
    budget = TokenBudget.from_settings(settings)
    assert (budget.max_tokens, budget.max_cost_usd, budget.model) == (1234, 0.07, "gpt-4o-mini")
    assert budget.prices["gpt-4o-mini"] == (0.15, 0.60)
    error = BudgetExceeded("over", limit=1, amount=2)
    assert stop_reason_for(error) is StopReason.budget_exceeded


@pytest.mark.prefect
@pytest.mark.scenario(
    name="draft over the LLM token budget",
    faults="the model reports more tokens than the job's budget (SITESTEWARD_LLM_MAX_TOKENS_PER_JOB)",
    checks="one model call, no Prefect retry; the job stops failed/budget_exceeded with next action and "
    "triage note; nothing published",
)
def test_a_job_over_its_token_budget_stops_after_one_call(tmp_path: Path, prefect_api: None) -> None:
    with staged_job(tmp_path) as job:
        answer = llm_answer(job.sources.base_url)
        job.llm.script(Reply(answer.kind, answer.content, prompt_tokens=30_000, completion_tokens=900))
        budget = {"SITESTEWARD_LLM_MAX_TOKENS_PER_JOB": "20000"}
        done = run_worker(job, env=budget)
        with _ledger() as ledger:
            record = ledger.get_job(job.job_id)
        assert record.stop_reason is StopReason.budget_exceeded, (record.failure_reason, done.stdout)
        assert job.llm.calls == 1
        _assert_stopped(job, StopReason.budget_exceeded, "draft", 1)
        with _ledger() as ledger:
            attempts = ledger.attempt_history(job.job_id)
        assert [(a.step, a.error_class) for a in attempts] == [("draft", "BudgetExceeded")]
        assert "30900" in attempts[0].message
