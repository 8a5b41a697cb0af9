"""What the audit keeps of each crawled page: compact facts instead of whole pages.

A crawled :class:`~sitesteward.models.Page` is a pydantic model with two instance dicts, headers,
every heading, image, date and JSON-LD type; held for a whole site until the site-wide checks run,
that is ~2.4 KB a page. :class:`PageFacts` keeps only what :mod:`sitesteward.audit` and
:mod:`sitesteward.report` read, in slotted dataclasses, with the links shared between pages: ~0.9 KB.
It keeps the attribute names of ``Page`` (``page.data.title``, ``page.headers``, ...), so the audit
and the report take either through the :class:`PageView` protocol.

:class:`FactsCollector` turns the crawler's pages into facts as they arrive (``crawl_site(on_page=...,
collect_pages=False)``), so a crawl for an audit never holds whole pages at all.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass

from sitesteward.models import (
    CrawlBase,
    CrawlResult,
    FetchError,
    Image,
    Link,
    LinkCheck,
    Page,
    RedirectHop,
    SitemapEntry,
    SitemapProblem,
)

_EMPTY_HEADERS: Mapping[str, str] = {}
#: Distinct links kept for sharing at most (past it the table starts again; sharing is an economy only).
_LINK_TABLE_SIZE = 200_000


class PageDataView(Protocol):
    """What the audit and the report read of a page's extracted data."""

    @property
    def title(self) -> str | None: ...
    @property
    def meta_description(self) -> str | None: ...
    @property
    def meta_robots(self) -> str | None: ...
    @property
    def canonical(self) -> str | None: ...
    @property
    def headings(self) -> Mapping[str, Sequence[str]]: ...
    @property
    def links(self) -> Sequence[Link]: ...
    @property
    def images(self) -> Sequence[Image]: ...
    @property
    def word_count(self) -> int: ...
    @property
    def text_hash(self) -> str: ...
    @property
    def dates(self) -> Sequence[str]: ...


class PageView(Protocol):
    """What the audit and the report read of a crawled page (a :class:`Page` or :class:`PageFacts`)."""

    @property
    def url(self) -> str: ...
    @property
    def final_url(self) -> str: ...
    @property
    def status(self) -> int | None: ...
    @property
    def redirect_chain(self) -> Sequence[RedirectHop]: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def bytes(self) -> int: ...
    @property
    def truncated(self) -> bool: ...
    @property
    def elapsed_ms(self) -> float: ...
    @property
    def error(self) -> FetchError | None: ...
    @property
    def error_detail(self) -> str | None: ...
    @property
    def not_modified(self) -> bool: ...
    @property
    def depth(self) -> int: ...
    @property
    def in_sitemap(self) -> bool: ...
    @property
    def data(self) -> PageDataView | None: ...


class CrawlView(Protocol):
    """What the audit and the report read of a crawl (a :class:`CrawlResult` or :class:`AuditCrawl`)."""

    @property
    def site(self) -> str: ...
    @property
    def started(self) -> datetime: ...
    @property
    def finished(self) -> datetime: ...
    @property
    def pages(self) -> Sequence[PageView]: ...
    @property
    def link_checks(self) -> Sequence[LinkCheck]: ...
    @property
    def sitemap_entries(self) -> Sequence[SitemapEntry]: ...
    @property
    def sitemap_problems(self) -> Sequence[SitemapProblem]: ...
    @property
    def robots_disallowed(self) -> Sequence[str]: ...
    @property
    def out_of_budget(self) -> int: ...


@dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class ParsedFacts:
    """The extracted data the audit reads (``PageData``'s names, fewer fields).

    ``images`` holds only the images without an ``alt`` attribute (the only ones a check reads), and
    of the headings only the h1 texts are kept.
    """

    title: str | None
    meta_description: str | None
    meta_robots: str | None
    canonical: str | None
    h1: tuple[str, ...]
    links: tuple[Link, ...]
    images: tuple[Image, ...]
    word_count: int
    text_hash: str
    dates: tuple[str, ...]

    @property
    def headings(self) -> Mapping[str, Sequence[str]]:
        """``{"h1": [...]}``, as ``PageData.headings`` would give for the checks' one question."""
        return {"h1": self.h1}


@dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class PageFacts:
    """A crawled page as the audit and the report see it (``Page``'s names, fewer fields)."""

    url: str
    final_url: str
    status: int | None
    redirect_chain: tuple[RedirectHop, ...]
    x_robots_tag: str | None
    bytes: int
    truncated: bool
    elapsed_ms: float
    error: FetchError | None
    error_detail: str | None
    not_modified: bool
    depth: int
    in_sitemap: bool
    data: ParsedFacts | None

    @property
    def headers(self) -> Mapping[str, str]:
        """The one header a check reads (``X-Robots-Tag``), as ``Page.headers`` would give it."""
        return {"x-robots-tag": self.x_robots_tag} if self.x_robots_tag is not None else _EMPTY_HEADERS


class AuditCrawl(CrawlBase):
    """A crawl as the audit takes it: :class:`CrawlResult` with :class:`PageFacts` for pages."""

    pages: list[PageFacts]


class FactsCollector:
    """Turns pages into :class:`PageFacts` as a crawl delivers them (pass it as ``on_page``).

    Links are shared: a site's navigation repeats on every page, and one ``Link`` (its href; the checks
    read nothing else) per distinct target is what keeps a page's links at 8 bytes each.
    """

    def __init__(self) -> None:
        self.facts: list[PageFacts] = []
        self._links: dict[str, Link] = {}

    def __call__(self, page: Page) -> None:
        self.facts.append(self.facts_of(page))

    def facts_of(self, page: Page) -> PageFacts:
        """The facts of one page."""
        data = page.data
        parsed = None
        if data is not None:
            parsed = ParsedFacts(
                title=data.title,
                meta_description=data.meta_description,
                meta_robots=data.meta_robots,
                canonical=data.canonical,
                h1=tuple(data.headings.get("h1", ())),
                links=tuple(self._shared(link) for link in data.links),
                images=tuple(image for image in data.images if image.alt is None),
                word_count=data.word_count,
                text_hash=data.text_hash,
                dates=tuple(data.dates),
            )
        robots = page.headers.get("x-robots-tag")
        return PageFacts(
            url=page.url,
            final_url=page.url if page.final_url == page.url else page.final_url,
            status=page.status,
            redirect_chain=tuple(page.redirect_chain),
            x_robots_tag=sys.intern(robots) if robots is not None and len(robots) < 64 else robots,
            bytes=page.bytes,
            truncated=page.truncated,
            elapsed_ms=page.elapsed_ms,
            error=page.error,
            error_detail=page.error_detail,
            not_modified=page.not_modified,
            depth=page.depth,
            in_sitemap=page.in_sitemap,
            data=parsed,
        )

    def crawl(self, result: CrawlResult) -> AuditCrawl:
        """``result`` (its pages, if it collected any, then this collector's facts) as an ``AuditCrawl``."""
        pages = [self.facts_of(page) for page in result.pages] + self.facts
        return AuditCrawl(**{name: getattr(result, name) for name in CrawlBase.model_fields}, pages=pages)

    def _shared(self, link: Link) -> Link:
        # The checks read a link's href only: one Link per distinct target, whatever its anchor text.
        known = self._links.get(link.href)
        if known is not None:
            return known
        if len(self._links) >= _LINK_TABLE_SIZE:
            self._links.clear()
        shared = Link(href=link.href, internal=link.internal)
        self._links[link.href] = shared
        return shared
