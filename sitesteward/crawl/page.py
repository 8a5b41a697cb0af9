"""From an exchange to a :class:`~sitesteward.models.Page`, and single-URL fetching for other steps."""

from __future__ import annotations

from datetime import datetime

import httpx
from pydantic import BaseModel, ConfigDict, Field

from sitesteward.crawl.fetch import ACCEPT_HTML, Exchange, Fetcher, is_html_type
from sitesteward.crawl.guard import AddressGuard, Resolver
from sitesteward.crawl.politeness import Politeness
from sitesteward.crawl.robots import RobotsCache
from sitesteward.crawl.worker import extract_data
from sitesteward.models import CrawlConfig, FetchError, Page, PageData, RedirectHop
from sitesteward.settings import get_settings
from sitesteward.urls import host_of, normalize_url

_NO_CACHE = {"Cache-Control": "no-cache", "Pragma": "no-cache"}


class FetchedResource(BaseModel):
    """A fetched body of any type (a cited source: HTML, PDF, plain text)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    final_url: str
    status: int | None = None
    redirect_chain: list[RedirectHop] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    content_type: str | None = None
    body: bytes = b""
    truncated: bool = False
    fetched_at: datetime
    error: FetchError | None = None
    error_detail: str | None = None


def wants_extraction(exchange: Exchange, *, parse: bool = True) -> bool:
    """Whether :func:`build_page` extracts data from this exchange (a usable 2xx answer with a body).

    A body cut at the byte cap is still parsed (``truncated=True``, ``error=too_large``): the first
    ``max_bytes`` of an HTML page hold its head and most links, which is more useful than nothing.
    """
    usable = exchange.error in (None, FetchError.too_large) and exchange.status is not None
    return parse and usable and bool(exchange.body) and 200 <= (exchange.status or 0) < 300


def build_page(
    exchange: Exchange,
    *,
    url: str,
    depth: int = 0,
    in_sitemap: bool = False,
    site_hosts: frozenset[str] = frozenset(),
    parse: bool = True,
    extracted: tuple[PageData | None, str, str | None] | None = None,
) -> Page:
    """Turn an exchange into a Page, decoding and extracting HTML when there is some.

    Args:
        exchange: The fetch outcome.
        url: The Page's URL (the normalised frontier URL).
        depth: Link depth from a start URL.
        in_sitemap: Whether a sitemap listed the URL.
        site_hosts: Hosts that count as internal for extraction.
        parse: Extract data (False for pages whose final URL left the crawl's scope).
        extracted: What :func:`extract_data` returned for this body, when it ran elsewhere (an
            extraction worker); None extracts here when :func:`wants_extraction` says so.
    """
    data: PageData | None = None
    encoding: str | None = None
    detail = exchange.detail
    if wants_extraction(exchange, parse=parse):
        if extracted is None:
            extracted = extract_data(exchange.body, exchange.content_type, exchange.final_url, site_hosts)
        data, encoding, problem = extracted
        detail = detail or problem
    return Page(
        url=url,
        final_url=exchange.final_url,
        status=exchange.status,
        redirect_chain=exchange.chain,
        headers=exchange.headers,
        content_type=exchange.content_type,
        encoding=encoding,
        bytes=len(exchange.body),
        truncated=exchange.truncated,
        elapsed_ms=exchange.elapsed_ms,
        fetched_at=exchange.fetched_at,
        error=exchange.error,
        error_detail=detail,
        depth=depth,
        in_sitemap=in_sitemap,
        data=data,
    )


def _single_fetcher(
    client: httpx.AsyncClient, config: CrawlConfig, resolver: Resolver | None, obey_robots: bool
) -> Fetcher:
    settings = get_settings()
    allow_private = config.allow_private if config.allow_private is not None else settings.allow_private
    user_agent = config.user_agent or settings.user_agent
    politeness = Politeness(config.concurrency_per_host, config.requests_per_second)
    guard = AddressGuard(allow_private=allow_private, resolver=resolver)
    fetcher = Fetcher(client, config, guard=guard, politeness=politeness, user_agent=user_agent)
    if obey_robots:
        fetcher.robots = RobotsCache(fetcher, user_agent, politeness).refusal
    return fetcher


async def fetch_page(
    url: str,
    *,
    client: httpx.AsyncClient,
    config: CrawlConfig | None = None,
    bypass_cache: bool = True,
    resolver: Resolver | None = None,
    obey_robots: bool = True,
) -> Page:
    """Fetch and extract one page (to verify a published edit, or read a cited HTML source).

    The same guard, redirect, cap and retry rules as a crawl apply. The client's own DNS is used for
    the connection (build it with :func:`sitesteward.crawl.fetch.build_client` to pin addresses).

    Args:
        url: An absolute http(s) URL.
        client: A shared client.
        config: Caps and retries (default: ``CrawlConfig`` defaults).
        bypass_cache: Ask caches and CDNs for a fresh copy (``Cache-Control: no-cache``).
        resolver: Stub DNS for the address guard.
        obey_robots: Fetch the origin's robots.txt and respect it.

    Returns:
        The Page with its main text; failures are in ``error`` / ``error_detail``.
    """
    config = config or CrawlConfig(start_urls=[url])
    try:
        key = normalize_url(url)
    except Exception as exc:
        return Page(
            url=url,
            final_url=url,
            fetched_at=Exchange(url, url).fetched_at,
            error=FetchError.invalid_url,
            error_detail=str(exc),
        )
    fetcher = _single_fetcher(client, config, resolver, obey_robots)
    headers = {"Accept": ACCEPT_HTML, **(_NO_CACHE if bypass_cache else {})}
    exchange = await fetcher.fetch(key, headers=headers)
    return build_page(exchange, url=key, site_hosts=frozenset({host_of(key)}))


async def fetch_resource(
    url: str,
    *,
    client: httpx.AsyncClient,
    config: CrawlConfig | None = None,
    max_bytes: int | None = None,
    resolver: Resolver | None = None,
    obey_robots: bool = True,
) -> FetchedResource:
    """Fetch any document (a PDF or text source) under the crawl's safety rules.

    Args:
        url: An absolute http(s) URL.
        client: A shared client.
        config: Caps and retries (default: ``CrawlConfig`` defaults).
        max_bytes: Body cap (default ``config.max_bytes``).
        resolver: Stub DNS for the address guard.
        obey_robots: Respect the origin's robots.txt.

    Returns:
        The body and HTTP facts; failures are in ``error``.
    """
    config = config or CrawlConfig(start_urls=[url])
    try:
        key = normalize_url(url)
    except Exception as exc:
        return FetchedResource(
            url=url,
            final_url=url,
            fetched_at=Exchange(url, url).fetched_at,
            error=FetchError.invalid_url,
            error_detail=str(exc),
        )
    fetcher = _single_fetcher(client, config, resolver, obey_robots)
    exchange = await fetcher.fetch(key, body="any", headers=dict(_NO_CACHE), max_bytes=max_bytes)
    return FetchedResource(
        url=key,
        final_url=exchange.final_url,
        status=exchange.status,
        redirect_chain=exchange.chain,
        headers=exchange.headers,
        content_type=exchange.content_type,
        body=exchange.body,
        truncated=exchange.truncated,
        fetched_at=exchange.fetched_at,
        error=exchange.error,
        error_detail=exchange.detail,
    )


__all__ = [
    "FetchedResource",
    "build_page",
    "extract_data",
    "fetch_page",
    "fetch_resource",
    "is_html_type",
    "wants_extraction",
]
