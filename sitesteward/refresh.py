"""The refresh job's steps as plain functions (no Prefect): compare, draft request, link, validate, verify.

The task layer wraps each in a ``@task``; the flow strings them together with the ledger's checkpoints.
I/O is injected: an ``httpx.AsyncClient`` built by the crawler, a publisher, a drafter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import httpx
from pydantic import Field

from sitesteward.compare import Comparison, compare_page
from sitesteward.crawl import CrawlStore, fetch_page, fetch_resource
from sitesteward.crawl.decode import decode_html
from sitesteward.crawl.page import extract_data
from sitesteward.draft import DraftRequest, LinkCandidate, build_draft_request, suggest_internal_links
from sitesteward.errors import PageGone, TransientError
from sitesteward.injection import detect_injection
from sitesteward.ledger import JobState, Ledger
from sitesteward.models import Contract, CrawlConfig, Draft, FetchError, Finding, LinkOutcome, Page
from sitesteward.sources import SourceSnapshot, cited_sources, snapshot_source
from sitesteward.urls import host_of
from sitesteward.validate import ValidationResult, validate_draft
from sitesteward.verify import VerificationResult, verify_live

#: Redirect findings whose final URL the compare step resolves for the drafter.
_REDIRECT_CODES = frozenset({"redirected_link", "redirect_chain"})


class CompareOutput(Contract):
    """What the compare step saw: the live page, its sources and what no longer holds."""

    page: Page
    comparison: Comparison
    sources: list[SourceSnapshot] = Field(default_factory=list)
    redirects: dict[str, str] = Field(default_factory=dict, description="Linked URL -> final URL.")
    injection_flags: list[str] = Field(default_factory=list)


class Baseline(Contract):
    """The page and its sources as they were at the page's last published and verified version."""

    sources: list[SourceSnapshot] = Field(default_factory=list)
    page_hash: str | None = None
    job_id: str | None = None


def last_verified_baseline(ledger: Ledger, site: str, page_url: str, *, exclude_job: str) -> Baseline:
    """What ``source_changed`` and ``page_drifted`` compare against: the newest verified job of the page."""
    earlier = [
        job
        for job in ledger.list_jobs(states=[JobState.monitoring], site=site, page_url=page_url)
        if job.job_id != exclude_job
    ]
    if not earlier:
        return Baseline()
    job = max(earlier, key=lambda record: record.updated_at)
    compare = next(
        (s for s in ledger.list_steps(job.job_id) if s.step == "compare" and s.output_ref is not None), None
    )
    sources = (
        CompareOutput.model_validate(compare.output_ref).sources if compare and compare.output_ref else []
    )
    verification = ledger.latest_evidence(job.job_id, "verification")
    page_hash = verification.payload.get("text_hash") if verification is not None else None
    return Baseline(
        sources=sources, page_hash=page_hash if isinstance(page_hash, str) else None, job_id=job.job_id
    )


def crawl_config_for(base_url: str, *, allow_private: bool) -> CrawlConfig:
    """The crawl settings a job's fetches use (same guard, caps and retries as a crawl)."""
    return CrawlConfig(start_urls=[base_url], allow_private=allow_private, retries=1, timeout_seconds=20)


def _outcome(status: int | None, error: FetchError | None) -> LinkOutcome:
    if error is not None and status is None:
        return (
            LinkOutcome.error
            if error in {FetchError.timeout, FetchError.connect_error}
            else LinkOutcome.broken
        )
    if status is None:
        return LinkOutcome.error
    if status in {401, 403, 429, 999}:
        return LinkOutcome.blocked
    if status >= 500:
        return LinkOutcome.error
    if status >= 400:
        return LinkOutcome.broken
    return LinkOutcome.ok


async def _snapshot(url: str, client: httpx.AsyncClient, config: CrawlConfig) -> SourceSnapshot:
    resource = await fetch_resource(url, client=client, config=config)
    outcome = _outcome(resource.status, resource.error)
    html = ""
    if outcome is LinkOutcome.ok and resource.body:
        html, _ = decode_html(resource.body, resource.content_type)
    meta: dict[str, str | int | None] = {
        "status": resource.status,
        "final_url": resource.final_url,
        "etag": resource.headers.get("etag"),
        "last_modified": resource.headers.get("last-modified"),
    }
    return snapshot_source(url, html, http_meta=meta, outcome=outcome, retrieved_at=resource.fetched_at)


async def compare_live_page(
    page_url: str,
    redirect_targets: Iterable[str],
    *,
    client: httpx.AsyncClient,
    config: CrawlConfig,
    previous_sources: Sequence[SourceSnapshot] = (),
    previous_page_hash: str | None = None,
) -> CompareOutput:
    """Fetch the page and every source it cites, and compare them.

    Raises:
        PageGone: the page itself is 404/410 (nothing to refresh).
        TransientError: the page could not be fetched right now.
    """
    resource = await fetch_resource(page_url, client=client, config=config)
    if resource.status in {404, 410}:
        raise PageGone(f"{page_url} answered {resource.status}")
    if resource.status != 200 or not resource.body:
        raise TransientError(f"{page_url}: status {resource.status}, error {resource.error}")
    site_hosts = frozenset({host_of(page_url)})
    data, encoding, problem = extract_data(
        resource.body, resource.content_type, resource.final_url, site_hosts
    )
    if data is None:
        raise TransientError(f"{page_url}: {problem}")
    html, _ = decode_html(resource.body, resource.content_type)
    page = Page(
        url=page_url,
        final_url=resource.final_url,
        status=resource.status,
        redirect_chain=resource.redirect_chain,
        headers=resource.headers,
        content_type=resource.content_type,
        encoding=encoding,
        bytes=len(resource.body),
        fetched_at=resource.fetched_at,
        data=data,
    )
    citations = cited_sources(html, resource.final_url, data)
    sources = [await _snapshot(url, client, config) for url in dict.fromkeys(c.url for c in citations)]
    comparison = compare_page(
        page_url,
        data.main_text,
        citations,
        sources,
        previous_sources,
        previous_page_hash,
    )
    redirects: dict[str, str] = {}
    for target in dict.fromkeys(redirect_targets):
        hop = await fetch_resource(target, client=client, config=config, max_bytes=4096)
        if hop.redirect_chain and hop.final_url != target and hop.status and hop.status < 400:
            redirects[target] = hop.final_url
    return CompareOutput(
        page=page,
        comparison=comparison,
        sources=sources,
        redirects=redirects,
        injection_flags=detect_injection(html),
    )


def redirect_targets(findings: Iterable[Finding]) -> list[str]:
    """Targets of redirect findings (whose final URL the drafter needs)."""
    return [f.target for f in findings if f.code in _REDIRECT_CODES and f.target]


def draft_request_for(
    page_url: str, page_source: str, compared: CompareOutput, findings: Sequence[Finding]
) -> DraftRequest:
    """The drafter's request: the page source the edits apply to plus everything compare learnt."""
    data = compared.page.data
    return build_draft_request(
        page_url,
        page_source,
        comparison=compared.comparison,
        findings=[*findings, *compared.comparison.findings],
        sources=compared.sources,
        redirects=compared.redirects,
        site_hosts=[host_of(page_url)],
        page_text=data.main_text if data else "",
        title=data.title if data else None,
        description=data.meta_description if data else None,
    )


def link_candidates(store: CrawlStore, site: str, page_url: str) -> list[LinkCandidate]:
    """Pages of the site from the last crawl that the page could link to.

    Only indexable 200 pages at their own URL: linking an alias would create the very redirect the
    audit flags, and linking a noindex page sends readers where search engines may not follow.
    """
    candidates: list[LinkCandidate] = []
    for page in store.iter_pages(site):
        data = page.data
        redirected = page.final_url != page.url or bool(page.redirect_chain)
        if data is None or page.status != 200 or not data.title or redirected:
            continue
        if page_url in {page.url, page.final_url}:
            continue
        robots = f"{data.meta_robots or ''},{page.headers.get('x-robots-tag', '')}".lower()
        headings = [text for level in ("h1", "h2", "h3") for text in data.headings.get(level, [])]
        candidates.append(
            LinkCandidate(
                url=page.url, title=data.title, headings=headings, indexable="noindex" not in robots
            )
        )
    return candidates


def add_internal_links(
    draft: Draft, page_source: str, candidates: Sequence[LinkCandidate], max_links: int
) -> Draft:
    """The draft plus up to ``max_links`` internal-link edits (only where the link is absent)."""
    if max_links <= 0 or not candidates:
        return draft
    links = suggest_internal_links(draft.page_url, page_source, candidates, max_links=max_links)
    touched = {edit.old for edit in draft.edits if edit.old}
    extra = [edit for edit in links if edit.old not in touched]
    if not extra:
        return draft
    return draft.model_copy(update={"edits": [*draft.edits, *extra]})


def check_draft(
    draft: Draft, page_source: str, request: DraftRequest, flags: Sequence[str]
) -> ValidationResult:
    """Validate the draft against its document and the guard rails; injection flags become warnings.

    Raises:
        PolicyViolation, InvalidModelOutput: the draft must not be shown to a reviewer.
    """
    result = validate_draft(
        draft,
        document_text=page_source,
        allowed_link_hosts=request.allowed_link_hosts(),
        page_url=draft.page_url,
    )
    if not flags:
        return result
    warnings = [*result.warnings, *(f"possible prompt injection on the page: {flag}" for flag in flags)]
    return result.model_copy(update={"warnings": warnings})


async def verify_published(
    page_url: str, draft: Draft, before: Page, *, client: httpx.AsyncClient, config: CrawlConfig
) -> VerificationResult:
    """Re-fetch the live page (no cache) and check the approved edits are there and nothing regressed."""
    live = await fetch_page(page_url, client=client, config=config, bypass_cache=True)
    return verify_live(live, draft, before.data)
