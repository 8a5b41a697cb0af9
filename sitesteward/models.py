"""Data contracts passed between steps: frozen pydantic models, persisted as JSON."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.dataclasses import dataclass


class Contract(BaseModel):
    """Base for every value that crosses a step boundary: immutable, strict about fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------------------------- crawl


class QueryHandling(StrEnum):
    """What URL normalisation does with query strings."""

    keep = "keep"  # keep, sorted by key
    drop = "drop"  # drop every query string
    strip_tracking = "strip_tracking"  # drop utm_*, gclid, fbclid, session ids; keep the rest sorted


class CrawlConfig(Contract):
    """Everything a crawl needs; also the audit flow's parameter model (bounded, described)."""

    start_urls: list[str] = Field(min_length=1, description="Where spidering starts (or the URL list).")
    sitemaps: list[str] = Field(default_factory=list, description="Extra sitemap URLs to read.")
    use_sitemaps: bool = Field(
        default=True, description="Discover robots.txt Sitemap: lines and /sitemap.xml."
    )
    list_mode: bool = Field(default=False, description="Crawl exactly start_urls; no spidering.")
    max_pages: int = Field(default=10_000, ge=1, le=1_000_000, description="Pages fetched at most.")
    max_depth: int = Field(default=50, ge=0, le=1000, description="Link depth from a start URL.")
    max_url_length: int = Field(default=2048, ge=64, le=65536)
    include: list[str] = Field(default_factory=list, description="Regexes; if set, a URL must match one.")
    exclude: list[str] = Field(default_factory=list, description="Regexes; a matching URL is skipped.")
    query_handling: QueryHandling = QueryHandling.strip_tracking
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts crawled besides the start URLs' hosts (same host by default).",
    )
    check_external: bool = Field(default=True, description="Check (not crawl) links to other hosts.")
    link_check_max_age_hours: float = Field(
        default=24.0,
        ge=0,
        le=24 * 365,
        description="Reuse an external link's check younger than this (0: never).",
    )
    concurrency_per_host: int = Field(default=8, ge=1, le=256)
    requests_per_second: float | None = Field(default=None, gt=0, le=10_000, description="Per host.")
    max_redirects: int = Field(default=5, ge=0, le=30)
    max_bytes: int = Field(default=5_000_000, ge=1024, le=500_000_000, description="Per response body.")
    timeout_seconds: float = Field(default=20.0, gt=0, le=600, description="Total time per response.")
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    retries: int = Field(default=2, ge=0, le=10, description="Retries of transient failures per URL.")
    retry_after_cap_seconds: float = Field(default=30.0, ge=0, le=3600)
    backoff_base_seconds: float = Field(default=0.5, ge=0, le=60)
    user_agent: str | None = Field(default=None, description="Default: the settings' user agent.")
    allow_private: bool | None = Field(default=None, description="Default: the settings' allow_private.")
    conditional: bool = Field(default=True, description="Send If-None-Match / If-Modified-Since.")


class RedirectHop(Contract):
    """One answered request in a redirect chain."""

    url: str
    status: int
    location: str | None = None


class FetchError(StrEnum):
    """Why a fetch produced no usable page (becomes a finding, never a crash)."""

    timeout = "timeout"
    too_large = "too_large"
    not_html = "not_html"
    connect_error = "connect_error"
    redirect_loop = "redirect_loop"
    too_many_redirects = "too_many_redirects"
    robots_disallowed = "robots_disallowed"
    address_refused = "address_refused"
    invalid_url = "invalid_url"
    http_error = "http_error"


@dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class Link:
    """A hyperlink found on a page (``href`` absolute and normalised).

    A slotted pydantic dataclass rather than a model: a crawl holds one per distinct link of every
    page (millions on a big site), and this form takes a fifth of a model's memory (about 200 bytes
    with its strings instead of 1.1 KB). It validates and serialises like the other contracts.
    """

    href: str
    text: str = ""
    rel: str = ""
    internal: bool = True
    in_main: bool = Field(default=False, description="Inside the page's main content (a citation candidate).")


class Image(Contract):
    """An image on a page; ``alt`` None means the attribute is absent (``""`` is decorative, fine)."""

    src: str
    alt: str | None = None


class PageData(Contract):
    """What extraction read from one HTML document."""

    title: str | None = None
    meta_description: str | None = None
    meta_robots: str | None = None
    canonical: str | None = None
    hreflang: dict[str, str] = Field(default_factory=dict)
    headings: dict[str, list[str]] = Field(default_factory=dict, description="h1..h6 -> texts")
    links: list[Link] = Field(default_factory=list)
    images: list[Image] = Field(default_factory=list)
    word_count: int = 0
    text_hash: str = ""
    main_text: str = ""
    dates: list[str] = Field(default_factory=list, description="Date phrases found in the main text.")
    jsonld_types: list[str] = Field(default_factory=list)
    lang: str | None = None


class Page(Contract):
    """One crawled URL: HTTP facts plus extracted data (``data`` None unless HTML was parsed)."""

    url: str
    final_url: str
    status: int | None = None
    redirect_chain: list[RedirectHop] = Field(default_factory=list)
    headers: dict[str, str] = Field(
        default_factory=dict, description="Headers of interest, lower-case names."
    )
    content_type: str | None = None
    encoding: str | None = None
    bytes: int = 0
    truncated: bool = False
    elapsed_ms: float = 0.0
    fetched_at: datetime
    error: FetchError | None = None
    error_detail: str | None = None
    not_modified: bool = Field(default=False, description="304 answer: data comes from the last snapshot.")
    depth: int = 0
    in_sitemap: bool = False
    data: PageData | None = None


class LinkOutcome(StrEnum):
    ok = "ok"
    redirected = "redirected"
    broken = "broken"
    blocked = "blocked"
    error = "error"


class LinkCheck(Contract):
    """The result of checking (not crawling) one link target."""

    url: str
    status: int | None = None
    final_url: str | None = None
    redirect_chain: list[RedirectHop] = Field(default_factory=list)
    outcome: LinkOutcome
    detail: str | None = None


@dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class SitemapEntry:
    """A URL a sitemap listed (a slotted dataclass, as :class:`Link`: big sites list millions)."""

    url: str
    sitemap: Annotated[str, Field(description="The sitemap file that listed it.")]
    lastmod: str | None = None


class SitemapProblem(Contract):
    sitemap: str
    detail: str


class CrawlBase(Contract):
    """What a crawl learnt about a site besides its pages (:class:`CrawlResult` adds them)."""

    site: str
    started: datetime
    finished: datetime
    link_checks: list[LinkCheck] = Field(default_factory=list)
    sitemap_entries: list[SitemapEntry] = Field(default_factory=list)
    sitemap_problems: list[SitemapProblem] = Field(default_factory=list)
    robots_disallowed: list[str] = Field(
        default_factory=list, description="URLs skipped because of robots.txt."
    )
    out_of_budget: int = Field(default=0, description="URLs discovered but not fetched (max_pages/depth).")


class CrawlResult(CrawlBase):
    """Everything a crawl learnt about a site."""

    pages: list[Page]


# --------------------------------------------------------------------------------------------- audit


class Severity(StrEnum):
    error = "error"
    warning = "warning"
    notice = "notice"


class Finding(Contract):
    """One audit finding; ``code`` is stable and documented in the README."""

    code: str
    severity: Severity
    url: str = Field(description="The page where it was found (the page holding the link, for links).")
    target: str | None = Field(default=None, description="The linked URL, for link findings.")
    detail: str = ""


class AuditThresholds(Contract):
    """Configurable thresholds of the audit checks."""

    title_min: int = Field(default=10, ge=0, le=1000)
    title_max: int = Field(default=60, ge=1, le=1000)
    description_min: int = Field(default=50, ge=0, le=5000)
    description_max: int = Field(default=160, ge=1, le=5000)
    thin_words: int = Field(default=200, ge=0, le=100_000, description="Fewer main-text words is thin.")
    stale_years: int = Field(default=2, ge=0, le=100, description="'as of YEAR' older than this is stale.")
    redirect_chain_hops: int = Field(default=2, ge=1, le=30, description="Chains with more hops are flagged.")


class PageChange(StrEnum):
    new = "new"
    changed = "changed"
    unchanged = "unchanged"
    removed = "removed"


@dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class PageRow:
    """One page of the report: what a reader scans for, not the whole crawl record.

    A slotted pydantic dataclass, as :class:`Link`: a report holds one per crawled page, and this form
    takes ~170 bytes where a dict of the same fields takes ~650.
    """

    url: str
    final_url: str
    status: int | None
    title: str | None
    word_count: int | None
    change: str | None  # new, changed, unchanged (a PageChange value), or None when unknown
    depth: int
    error: str | None
    not_modified: bool
    in_sitemap: bool
    elapsed_ms: float
    bytes: int
    findings: int  # findings on this page


class AuditReport(Contract):
    """The audit report written as JSON: ``{site, started, finished, pages, findings, stats}``."""

    site: str
    started: datetime
    finished: datetime
    pages: list[PageRow]
    findings: list[Finding]
    stats: dict[str, object]


# --------------------------------------------------------------------------------------------- jobs


class Edit(Contract):
    """Replace this exact old text with this new text (idempotent by construction)."""

    kind: Literal["replace_text", "set_title", "set_description", "add_link"] = "replace_text"
    old: str = Field(description="Exact text in the source document (empty for set_* when absent).")
    new: str
    finding: str = Field(description="The finding code this edit fixes.")
    justification: str = ""
    source_url: str | None = None
    source_quote: str | None = None


class Draft(Contract):
    """A reviewable set of edits for one page."""

    page_url: str
    edits: list[Edit]
    summary: str = ""
    drafter: str = Field(description="'offline' or 'llm:<model>'.")
    prompt_version: str
    warnings: list[str] = Field(default_factory=list)
