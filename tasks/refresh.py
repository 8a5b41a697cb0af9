"""Refresh-job tasks: one domain call each, persisted as JSON under keys that survive new runs.

Every task here takes an explicit ``cache_key`` built by the flow from (job, step, input hash, code or
prompt version): a re-run of the same job in a new flow run is a cache hit, a changed page, source or
prompt is a miss. Retries live in exactly one layer: Prefect's task retries, for TransientError only
(the openai client runs with ``max_retries=0``, the crawler's per-request retries are set to 1).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from prefect import task
from prefect.context import TaskRunContext

from blocks.llm import LLMConfig
from blocks.loading import load_named
from sitesteward.draft import DraftRequest, DraftResult
from sitesteward.engine.steps import (
    PageSource,
    compare_step,
    edit_not_visible,
    link_step,
    publisher_for,
    read_source_step,
    verify_once,
)
from sitesteward.errors import TransientError
from sitesteward.jobs import JobInputs
from sitesteward.ledger import Ledger
from sitesteward.llm import select_drafter
from sitesteward.models import Draft, Page
from sitesteward.publish.protocol import PublishOutcome, publish_once
from sitesteward.refresh import (
    Baseline,
    CompareOutput,
    check_draft,
)
from sitesteward.settings import Settings, get_settings
from sitesteward.validate import ValidationResult
from sitesteward.verify import VerificationResult
from tasks.common import RETRY_DELAYS, retry_only_transient

#: The ledger a batch shares with the job runs it starts (URL and ledger), see :func:`sharing_ledger`.
_SHARED_LEDGER: ContextVar[tuple[str, Ledger] | None] = ContextVar("sitesteward_shared_ledger", default=None)


@contextmanager
def sharing_ledger(url: str) -> Iterator[Ledger]:
    """Open the ledger at ``url`` once for every job run started inside (this thread, or threads running
    in a copy of its context, as a batch's job threads do); close it at the end.

    A batch of 25 jobs otherwise opens it 50 times (each ``refresh_page`` run and each publish): a new
    engine each time, with its own connections and an empty statement cache, and a migration check.
    """
    ledger = Ledger.open(url)
    token = _SHARED_LEDGER.set((url, ledger))
    try:
        yield ledger
    finally:
        _SHARED_LEDGER.reset(token)
        ledger.close()


@contextmanager
def ledger_at(url: str) -> Iterator[Ledger]:
    """The ledger at ``url``: the one shared by an enclosing :func:`sharing_ledger`, or one of its own."""
    shared = _SHARED_LEDGER.get()
    if shared is not None and shared[0] == url:
        yield shared[1]
        return
    ledger = Ledger.open(url)
    try:
        yield ledger
    finally:
        ledger.close()


def _explicit_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return str(parameters["cache_key"])


_PERSISTED: dict[str, Any] = {
    "cache_key_fn": _explicit_key,
    "persist_result": True,
    "result_serializer": "json",
}


@task(
    name="compare_page",
    retries=len(RETRY_DELAYS),
    retry_delay_seconds=RETRY_DELAYS,
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_only_transient,
    **_PERSISTED,
)
def compare_page(inputs: JobInputs, baseline: Baseline, cache_key: str) -> CompareOutput:
    """Fetch the live page and its cited sources; what changed since ``baseline``, what no longer holds."""
    return compare_step(inputs, baseline)


@task(name="read_page_source", **_PERSISTED)
def read_page_source(inputs: JobInputs, cache_key: str) -> PageSource:
    """Read the document the edits will apply to, from the target the job record names."""
    return read_source_step(inputs)


def drafting_settings(llm_block: str | None) -> Settings:
    """The settings the drafter is selected from: the process's, or an ``LLMConfig`` block applied to them.

    Raises:
        ConfigurationError: no ``LLMConfig`` block of that name.
    """
    settings = get_settings()
    if llm_block is None:
        return settings
    return load_named(LLMConfig, llm_block).apply_to(settings)


@task(
    name="draft_refresh",
    retries=len(RETRY_DELAYS),
    retry_delay_seconds=RETRY_DELAYS,
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_only_transient,
    **_PERSISTED,
)
def draft_refresh(request: DraftRequest, cache_key: str, llm_block: str | None = None) -> DraftResult:
    """Ask the drafter (LLM when configured, else offline) for structured edits.

    The key is the drafter's own cache key (page, findings, sources, prompt version, model): the same
    inputs never cost a second model call, across runs and restarts. ``llm_block`` names an ``LLMConfig``
    block to draft with (loaded here, at the call site, so its key never travels as a parameter).
    """
    return select_drafter(drafting_settings(llm_block)).draft(request)


@task(name="link_draft", **_PERSISTED)
def link_draft(draft: Draft, page_source: str, inputs: JobInputs, max_links: int, cache_key: str) -> Draft:
    """Add internal-link suggestions to related pages of the last crawl (only where absent, never twice)."""
    return link_step(draft, page_source, inputs, max_links)


@task(name="validate_draft", **_PERSISTED)
def validate_draft(
    draft: Draft, page_source: str, request: DraftRequest, flags: list[str], cache_key: str
) -> ValidationResult:
    """Guard rails: exact old snippets, no scripts, allowed link hosts, length limits."""
    return check_draft(draft, page_source, request, flags)


@task(
    name="publish_edit",
    retries=len(RETRY_DELAYS),
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_only_transient,
    persist_result=False,
)
def publish_edit(job_id: str, draft_sha: str, draft: Draft, fence: int, inputs: JobInputs) -> PublishOutcome:
    """Publish the approved draft exactly once (intent, write, completion; reconcile after a crash).

    Not cached by Prefect on purpose: the ledger's effect row is the idempotency record.
    """
    with ledger_at(get_settings().ledger_url) as ledger:
        return publish_once(ledger, publisher_for(inputs), job_id, draft_sha, draft, fence)


@task(
    name="verify_edit",
    retries=3,
    retry_delay_seconds=[1.0, 3.0, 10.0],
    retry_condition_fn=retry_only_transient,
    persist_result=False,
)
def verify_edit(inputs: JobInputs, draft: Draft, before: Page) -> VerificationResult:
    """Re-fetch the live page and check the edit is visible and nothing regressed.

    A failed check is retried (caches and deploys take a moment) and then reported as it is.
    """
    result = verify_once(inputs, draft, before)
    if edit_not_visible(result):  # a failed text check, or a transient status such as 503
        # Raise while retries remain so Prefect backs off and looks again; the flow reads the final result.
        context = TaskRunContext.get()
        if context is not None and context.task_run.run_count <= 3:
            raise TransientError(f"edit not visible yet on {inputs.page_url}")
    return result
