"""Refresh-job tasks: one domain call each, persisted as JSON under keys that survive new runs.

Every task here takes an explicit ``cache_key`` built by the flow from (job, step, input hash, code or
prompt version): a re-run of the same job in a new flow run is a cache hit, a changed page, source or
prompt is a miss. Retries live in exactly one layer: Prefect's task retries, for TransientError only
(the openai client runs with ``max_retries=0``, the crawler's per-request retries are set to 1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
from prefect import task
from prefect.context import TaskRunContext
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, ConfigDict

from blocks.llm import LLMConfig
from sitesteward.crawl import AddressGuard, CrawlStore, build_client
from sitesteward.draft import DraftRequest, DraftResult
from sitesteward.engine.steps import edit_not_visible
from sitesteward.errors import ConfigurationError, TransientError
from sitesteward.jobs import JobInputs
from sitesteward.ledger import Ledger
from sitesteward.llm import select_drafter
from sitesteward.models import CrawlConfig, Draft, Page
from sitesteward.publish import MarkdownContentTarget
from sitesteward.publish.protocol import PublishOutcome, publish_once
from sitesteward.refresh import (
    Baseline,
    CompareOutput,
    add_internal_links,
    check_draft,
    compare_live_page,
    crawl_config_for,
    link_candidates,
    redirect_targets,
    verify_published,
)
from sitesteward.settings import Settings, get_settings
from sitesteward.urls import host_of
from sitesteward.validate import ValidationResult
from sitesteward.verify import VerificationResult
from tasks.common import RETRY_DELAYS, retry_only_transient

T = TypeVar("T")


def _explicit_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return str(parameters["cache_key"])


def _with_client(inputs: JobInputs, work: Callable[[httpx.AsyncClient, CrawlConfig], Awaitable[T]]) -> T:
    """Run async crawler work with a guarded client (tasks are sync so they run in any flow)."""
    config = crawl_config_for(inputs.base_url, allow_private=inputs.allow_private)

    async def _go() -> T:
        guard = AddressGuard(allow_private=inputs.allow_private)
        async with build_client(config, guard, user_agent=get_settings().user_agent) as client:
            return await work(client, config)

    return asyncio.run(_go())


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
    targets = redirect_targets(inputs.findings)
    return _with_client(
        inputs,
        lambda client, config: compare_live_page(
            inputs.page_url,
            targets,
            client=client,
            config=config,
            previous_sources=baseline.sources,
            previous_page_hash=baseline.page_hash,
        ),
    )


class PageSource(BaseModel):
    """The page's source document as the draft was made from it (checkpointed with the job)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    location: str
    text: str


@task(name="read_page_source", **_PERSISTED)
def read_page_source(inputs: JobInputs, cache_key: str) -> PageSource:
    """Read the document the edits will apply to, from the target the job record names."""
    publisher = MarkdownContentTarget(content_root=Path(inputs.content_root), base_url=inputs.base_url)
    target = publisher.target_for(inputs.page_url)
    return PageSource(location=target.location, text=publisher.read(target))


def drafting_settings(llm_block: str | None) -> Settings:
    """The settings the drafter is selected from: the process's, or an ``LLMConfig`` block applied to them.

    Raises:
        ConfigurationError: no ``LLMConfig`` block of that name.
    """
    settings = get_settings()
    if llm_block is None:
        return settings
    plain = llm_block.removeprefix(LLMConfig.get_block_type_slug() + "/").strip()
    try:
        block = cast(LLMConfig, LLMConfig.load(plain))  # sync here; typed as maybe-awaitable
    except (ValueError, ObjectNotFound):
        # Prefect says ValueError("Unable to find block document named ..."): say which kind, in one line
        # (as load_site_config does for SiteConfig).
        raise ConfigurationError(
            f"unknown LLMConfig block {plain!r}: create it in the Prefect UI (Blocks) or run "
            "`sitesteward bootstrap`, then pass its name"
        ) from None
    return block.apply_to(settings)


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
    if max_links <= 0:
        return draft
    with CrawlStore(get_settings().crawl_store_path) as store:
        candidates = link_candidates(store, host_of(inputs.base_url), inputs.page_url)
    return add_internal_links(draft, page_source, candidates, max_links)


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
    ledger = Ledger.open(get_settings().ledger_url)
    try:
        publisher = MarkdownContentTarget(content_root=Path(inputs.content_root), base_url=inputs.base_url)
        return publish_once(ledger, publisher, job_id, draft_sha, draft, fence)
    finally:
        ledger.close()


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
    result = _with_client(
        inputs,
        lambda client, config: verify_published(inputs.page_url, draft, before, client=client, config=config),
    )
    if edit_not_visible(result):  # a failed text check, or a transient status such as 503
        # Raise while retries remain so Prefect backs off and looks again; the flow reads the final result.
        context = TaskRunContext.get()
        if context is not None and context.task_run.run_count <= 3:
            raise TransientError(f"edit not visible yet on {inputs.page_url}")
    return result
