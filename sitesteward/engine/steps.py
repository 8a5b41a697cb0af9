"""How a refresh job's steps are executed: the :class:`Steps` protocol and its plain implementation.

The engine (:mod:`sitesteward.engine.job`) decides *which* step runs and checkpoints it in the ledger;
an executor decides *how*: the Prefect flow runs each step as a task with persisted results under an
explicit cache key (``flows/refresh_page.py``), :class:`PlainSteps` calls the domain functions directly,
in this process, with a small retry loop for transient errors (tests and the load harness).

Retries live in exactly one layer per call: the executor's. :class:`PlainSteps` retries
:class:`~sitesteward.errors.TransientError` only, with the delays it is given (the crawler's own
per-request retry is set to 1 by :func:`~sitesteward.refresh.crawl_config_for`, the openai client's to 0).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

import httpx

from sitesteward.aio import run_sync
from sitesteward.crawl import AddressGuard, CrawlStore, build_client
from sitesteward.draft import Drafter, DraftRequest, DraftResult
from sitesteward.errors import RETRY_HTTP_CODES, TransientError
from sitesteward.jobs import JobInputs
from sitesteward.ledger import Ledger
from sitesteward.models import Contract, CrawlConfig, Draft, Page
from sitesteward.publish import MarkdownContentTarget, PublishOutcome, publish_once
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
from sitesteward.settings import get_settings
from sitesteward.urls import host_of
from sitesteward.validate import ValidationResult
from sitesteward.verify import VerificationResult

T = TypeVar("T")

#: Backoff between retries of a transient failure within one run (the Prefect tasks use the same).
DEFAULT_RETRY_DELAYS: tuple[float, ...] = (2.0, 10.0, 30.0)
#: Backoff while a published edit is not visible yet (caches and deploys take a moment).
DEFAULT_VERIFY_DELAYS: tuple[float, ...] = (1.0, 3.0, 10.0)


class PageSource(Contract):
    """The page's source document as the draft was made from it (checkpointed with the job)."""

    location: str
    text: str


class Steps(Protocol):
    """The side of each step an executor supplies. Keys are explicit: (job, step, input hash, version)."""

    def compare(self, inputs: JobInputs, baseline: Baseline, *, cache_key: str) -> CompareOutput:
        """Fetch the live page and its cited sources and compare them with ``baseline``."""
        ...

    def read_source(self, inputs: JobInputs, *, cache_key: str) -> PageSource:
        """Read the document the edits will apply to, from the target the job record names."""
        ...

    def draft(self, drafter: Drafter, request: DraftRequest, *, cache_key: str) -> DraftResult:
        """Ask ``drafter`` for structured edits (the same key never costs a second model call)."""
        ...

    def link(
        self, draft: Draft, page_source: str, inputs: JobInputs, max_links: int, *, cache_key: str
    ) -> Draft:
        """Add internal-link edits to related pages of the last crawl (only where absent)."""
        ...

    def validate(
        self, draft: Draft, page_source: str, request: DraftRequest, flags: list[str], *, cache_key: str
    ) -> ValidationResult:
        """Guard rails before a person sees the draft."""
        ...

    def publish(
        self, ledger: Ledger, job_id: str, draft_sha: str, draft: Draft, fence: int, inputs: JobInputs
    ) -> PublishOutcome:
        """Publish the approved draft exactly once (never cached: the ledger's effect row is the record).

        ``ledger`` is the engine's; an executor that runs the step elsewhere may open its own.
        """
        ...

    def verify(self, inputs: JobInputs, draft: Draft, before: Page) -> VerificationResult:
        """Re-fetch the live page and check the edit is visible and nothing regressed."""
        ...


def run_with_client(inputs: JobInputs, work: Callable[[httpx.AsyncClient, CrawlConfig], Awaitable[T]]) -> T:
    """Run async crawler work with a guarded client (steps are sync so they run in any executor)."""
    config = crawl_config_for(inputs.base_url, allow_private=inputs.allow_private)

    async def _go() -> T:
        guard = AddressGuard(allow_private=inputs.allow_private)
        async with build_client(config, guard, user_agent=get_settings().user_agent) as client:
            return await work(client, config)

    return run_sync(_go())


def publisher_for(inputs: JobInputs) -> MarkdownContentTarget:
    """The publisher of the job's site, from the job record only (never from crawled or LLM text)."""
    return MarkdownContentTarget(
        content_root=Path(inputs.content_root), base_url=inputs.base_url, git_commit=inputs.git_commit
    )


class WithClient(Protocol):
    """Runs async crawler work with a client for the job's site (:func:`run_with_client` or a pool)."""

    def __call__(
        self, inputs: JobInputs, work: Callable[[httpx.AsyncClient, CrawlConfig], Awaitable[T]]
    ) -> T: ...


class ClientPool:
    """One event loop and one guarded client per site for the life of a process (close it at the end).

    Building a client costs a TLS context (~80 ms: the CA bundle is parsed again); a worker that runs
    many jobs pays that once per site instead of twice per job.
    """

    def __init__(self) -> None:
        self._runner = asyncio.Runner()
        self._clients: dict[tuple[str, bool], tuple[httpx.AsyncClient, CrawlConfig]] = {}

    def __call__(
        self, inputs: JobInputs, work: Callable[[httpx.AsyncClient, CrawlConfig], Awaitable[T]]
    ) -> T:
        key = (inputs.base_url, inputs.allow_private)
        if key not in self._clients:
            config = crawl_config_for(inputs.base_url, allow_private=inputs.allow_private)

            async def _build() -> httpx.AsyncClient:
                guard = AddressGuard(allow_private=inputs.allow_private)
                return build_client(config, guard, user_agent=get_settings().user_agent)

            self._clients[key] = (self._runner.run(_build()), config)
        client, config = self._clients[key]
        return self._runner.run(_awaited(work(client, config)))

    def close(self) -> None:
        """Close every client and the loop."""
        for client, _ in self._clients.values():
            self._runner.run(client.aclose())
        self._clients.clear()
        self._runner.close()


async def _awaited(work: Awaitable[T]) -> T:
    return await work


def compare_step(
    inputs: JobInputs, baseline: Baseline, with_client: WithClient = run_with_client
) -> CompareOutput:
    """The compare step's domain call: the live page and its sources against the last verified version."""
    targets = redirect_targets(inputs.findings)
    return with_client(
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


def read_source_step(inputs: JobInputs) -> PageSource:
    """The source step's domain call."""
    publisher = publisher_for(inputs)
    target = publisher.target_for(inputs.page_url)
    return PageSource(location=target.location, text=publisher.read(target))


def link_step(draft: Draft, page_source: str, inputs: JobInputs, max_links: int) -> Draft:
    """The link step's domain call (reads link candidates from the last crawl)."""
    if max_links <= 0:
        return draft
    with CrawlStore(get_settings().crawl_store_path) as store:
        candidates = link_candidates(store, host_of(inputs.base_url), inputs.page_url)
    return add_internal_links(draft, page_source, candidates, max_links)


def verify_once(
    inputs: JobInputs, draft: Draft, before: Page, with_client: WithClient = run_with_client
) -> VerificationResult:
    """One verification fetch (no retry)."""
    return with_client(
        inputs,
        lambda client, config: verify_published(inputs.page_url, draft, before, client=client, config=config),
    )


def edit_not_visible(result: VerificationResult) -> bool:
    """Worth looking again after a moment: a failed text check, or a transient status (503 and kin)."""
    if result.passed:
        return False
    if result.status is None or result.status in RETRY_HTTP_CODES:
        return True
    return any(not c.passed for c in result.checks if c.name != "status_ok")


class PlainSteps:
    """Every step as a direct call in this process: no Prefect, no result cache (the ledger is the record).

    Args:
        retry_delays: Sleep before each retry of a :class:`TransientError` (its length is the number of
            retries); compare, draft and publish retry, as their Prefect tasks do. Default:
            :data:`DEFAULT_RETRY_DELAYS` times ``Settings.retry_delay_scale``.
        verify_delays: Sleep before each look again at a page whose edit is not visible yet (default:
            :data:`DEFAULT_VERIFY_DELAYS`, scaled the same way).
        pooled: Keep one client per site for the object's life (call :meth:`close`); otherwise every
            step builds and closes its own, as the Prefect tasks do.
    """

    def __init__(
        self,
        *,
        retry_delays: Sequence[float] | None = None,
        verify_delays: Sequence[float] | None = None,
        pooled: bool = False,
    ) -> None:
        self._pool = ClientPool() if pooled else None
        self._with_client: WithClient = self._pool if self._pool is not None else run_with_client
        scale = get_settings().retry_delay_scale
        self.retry_delays = tuple(
            retry_delays if retry_delays is not None else (d * scale for d in DEFAULT_RETRY_DELAYS)
        )
        self.verify_delays = tuple(
            verify_delays if verify_delays is not None else (d * scale for d in DEFAULT_VERIFY_DELAYS)
        )

    def _retrying(self, call: Callable[[], T]) -> T:
        for delay in self.retry_delays:
            try:
                return call()
            except TransientError:
                time.sleep(delay)
        return call()

    def compare(self, inputs: JobInputs, baseline: Baseline, *, cache_key: str) -> CompareOutput:
        return self._retrying(lambda: compare_step(inputs, baseline, self._with_client))

    def read_source(self, inputs: JobInputs, *, cache_key: str) -> PageSource:
        return read_source_step(inputs)

    def draft(self, drafter: Drafter, request: DraftRequest, *, cache_key: str) -> DraftResult:
        return self._retrying(lambda: drafter.draft(request))

    def link(
        self, draft: Draft, page_source: str, inputs: JobInputs, max_links: int, *, cache_key: str
    ) -> Draft:
        return link_step(draft, page_source, inputs, max_links)

    def validate(
        self, draft: Draft, page_source: str, request: DraftRequest, flags: list[str], *, cache_key: str
    ) -> ValidationResult:
        return check_draft(draft, page_source, request, flags)

    def publish(
        self, ledger: Ledger, job_id: str, draft_sha: str, draft: Draft, fence: int, inputs: JobInputs
    ) -> PublishOutcome:
        return self._retrying(
            lambda: publish_once(ledger, publisher_for(inputs), job_id, draft_sha, draft, fence)
        )

    def verify(self, inputs: JobInputs, draft: Draft, before: Page) -> VerificationResult:
        for delay in self.verify_delays:
            try:
                result = verify_once(inputs, draft, before, self._with_client)
            except TransientError:
                time.sleep(delay)
                continue
            if not edit_not_visible(result):
                return result
            time.sleep(delay)
        return verify_once(inputs, draft, before, self._with_client)

    def close(self) -> None:
        """Release the pooled clients, if any."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
