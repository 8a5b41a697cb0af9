"""The site crawler: discovery (sitemaps, spidering, list mode), scope, budget and link checks.

Memory stays bounded on big sites: the frontier never holds more than ``max_pages`` URLs, the set of
seen URLs is capped (past the cap, discovered URLs are only counted), pages in the result carry no
main text and no validators (the store keeps them), identical ``Link`` objects and empty containers
are shared between pages, and snapshots are written to the store in batches while the crawl runs. An
audit collects no pages at all: it turns each into compact facts as it arrives
(:class:`sitesteward.facts.FactsCollector` as ``on_page``, with ``collect_pages=False``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import httpx

from sitesteward.aio import quick_gil_handoff
from sitesteward.crawl.extraction import build_page_async
from sitesteward.crawl.fetch import ACCEPT_HTML, Exchange, Fetcher, build_client
from sitesteward.crawl.guard import AddressGuard, Resolver
from sitesteward.crawl.limits import HostLimiter, SharedPoliteness
from sitesteward.crawl.politeness import Politeness
from sitesteward.crawl.progress import CrawlProgress
from sitesteward.crawl.robots import RobotsCache, origin_of
from sitesteward.crawl.sitemaps import MAX_SITEMAP_BYTES, parse_sitemap
from sitesteward.crawl.store import CrawlStore, Validators
from sitesteward.errors import BLOCKED_HTTP_CODES, ConfigurationError, InvalidUrl
from sitesteward.models import (
    CrawlConfig,
    CrawlResult,
    FetchError,
    Link,
    LinkCheck,
    LinkOutcome,
    Page,
    PageData,
    QueryHandling,
    SitemapEntry,
    SitemapProblem,
)
from sitesteward.settings import get_settings
from sitesteward.urls import host_of, normalize_url

logger = logging.getLogger(__name__)

#: Sitemap files read per crawl at most, and how deep indexes may nest.
MAX_SITEMAP_FILES = 200
MAX_SITEMAP_DEPTH = 3
#: Robots-disallowed URLs listed in the result at most (the rest are counted in the log).
MAX_ROBOTS_LISTED = 10_000
_STORE_BATCH = 200
_LINK_CACHE_SIZE = 200_000
_PAGE_FIELDS = set(Page.model_fields)
_PAGE_DATA_FIELDS = set(PageData.model_fields)


#: Shared by every slim page: frozen models never change their containers, and the ~6 empty ones of a
#: typical page cost ~350 bytes when each page has its own.
_EMPTY_LIST: list[Any] = []
_EMPTY_DICT: dict[str, Any] = {}
#: Values every page repeats (interned: one string object for the whole crawl).
_REPEATED = frozenset({"content_type", "encoding", "lang"})
_REPEATED_HEADERS = frozenset({"content-type", "content-language", "x-robots-tag", "cache-control"})
#: Per-page values the store keeps for conditional requests and no audit check reads: left off slim pages
#: (about 300 bytes a page).
_STORE_ONLY_HEADERS = frozenset({"etag", "last-modified", "content-length", "date"})


def _compact(fields: dict[str, Any], repeated: frozenset[str] = _REPEATED) -> dict[str, Any]:
    """A copy of a model's fields with empty containers shared and repeated strings interned."""
    compact: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, list | dict) and not value:
            value = _EMPTY_LIST if isinstance(value, list) else _EMPTY_DICT
        elif name in repeated and isinstance(value, str):
            value = sys.intern(value)
        compact[name] = value
    return compact


def site_key(config: CrawlConfig) -> str:
    """The key a crawl's snapshots are stored under: the first start URL's host (``CrawlResult.site``)."""
    first = config.start_urls[0]
    try:
        return host_of(normalize_url(first))
    except Exception:
        return first


@lru_cache(maxsize=8_192)
def _host_cached(url: str) -> str:
    return host_of(url)


@lru_cache(maxsize=8_192)
def _try_normalize(url: str, query: QueryHandling) -> str | None:
    # Cached: every page repeats the site's navigation, and links arrive normalised already.
    try:
        return normalize_url(url, query)
    except InvalidUrl:
        return None


def _compile(patterns: list[str], name: str) -> list[re.Pattern[str]]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ConfigurationError(f"invalid {name} regex {pattern!r}: {exc}") from None
    return compiled


@dataclass
class _Scope:
    hosts: frozenset[str]
    include: list[re.Pattern[str]]
    exclude: list[re.Pattern[str]]
    max_url_length: int

    def is_internal(self, url: str) -> bool:
        return _host_cached(url) in self.hosts

    def accepts(self, url: str) -> bool:
        if len(url) > self.max_url_length:
            return False
        if self.include and not any(p.search(url) for p in self.include):
            return False
        return not any(p.search(url) for p in self.exclude)


@dataclass
class _Counters:
    fetched: int = 0
    errors: int = 0
    enqueued: int = 0
    out_of_budget: int = 0


@dataclass
class _State:
    pages: list[Page] = field(default_factory=list)
    link_checks: list[LinkCheck] = field(default_factory=list)
    sitemap_entries: list[SitemapEntry] = field(default_factory=list)
    sitemap_problems: list[SitemapProblem] = field(default_factory=list)
    robots_disallowed: list[str] = field(default_factory=list)
    robots_disallowed_count: int = 0


class _Crawl:
    def __init__(
        self,
        config: CrawlConfig,
        *,
        store: CrawlStore | None,
        client: httpx.AsyncClient,
        guard: AddressGuard,
        politeness: Politeness,
        user_agent: str,
        on_progress: Callable[[CrawlProgress], None] | None,
        keep_text: bool,
        on_page: Callable[[Page], None] | None = None,
        collect_pages: bool = True,
    ) -> None:
        self.config = config
        self.store = store
        self.reused_link_checks: set[str] = set()
        self.site = site_key(config)
        self.on_progress = on_progress
        self.keep_text = keep_text
        self.on_page = on_page
        self.collect_pages = collect_pages
        self.query: QueryHandling = config.query_handling
        self.fetcher = Fetcher(client, config, guard=guard, politeness=politeness, user_agent=user_agent)
        self.robots = RobotsCache(self.fetcher, user_agent, politeness)
        self.fetcher.robots = self.robots.refusal
        self.counters = _Counters()
        self.state = _State()
        self.queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self.external_queue: asyncio.Queue[str] = asyncio.Queue()
        self.seen: set[str] = set()
        self.too_deep: set[str] = set()
        self.seen_cap = max(100_000, config.max_pages * 20)
        self.external_seen: set[str] = set()
        self.in_sitemap: set[str] = set()
        self.sitemap_entry_cap = max(50_000, 2 * config.max_pages)
        self.unsaved: list[Page] = []
        self.validators: dict[str, Validators] = {}
        self.link_cache: dict[Link, Link] = {}
        self.starts: list[str] = []
        invalid: list[tuple[str, str]] = []
        for raw in config.start_urls:
            try:
                self.starts.append(normalize_url(raw, self.query))
            except Exception as exc:
                invalid.append((raw, str(exc)))
        self.invalid_starts = invalid
        hosts = {host_of(url) for url in self.starts} | {
            h.strip().lower() for h in config.allowed_hosts if h.strip()
        }
        self.scope = _Scope(
            hosts=frozenset(hosts),
            include=_compile(config.include, "include"),
            exclude=_compile(config.exclude, "exclude"),
            max_url_length=config.max_url_length,
        )

    # ------------------------------------------------------------------------------------ discovery

    async def enqueue(self, url: str, depth: int) -> None:
        """Admit a normalised internal URL to the frontier, or count it as out of budget."""
        if url in self.seen:
            return
        if depth > self.config.max_depth:
            # Not marked seen: workers finish out of order, so a shorter path may still reach it.
            if url not in self.too_deep and len(self.too_deep) < self.seen_cap:
                self.too_deep.add(url)
                self.counters.out_of_budget += 1
            return
        if len(self.seen) >= self.seen_cap:
            self.counters.out_of_budget += 1
            return
        self.seen.add(url)
        if not self.scope.accepts(url):
            return
        if self.counters.enqueued >= self.config.max_pages:
            self.counters.out_of_budget += 1
            return
        policy = await self.robots.policy(url)
        if not policy.allows(url):
            if policy.unreachable is not None:
                # robots.txt could not even be fetched: the host is down or refused, say so per page.
                self.counters.enqueued += 1
                await self.record(
                    Page(
                        url=url,
                        final_url=url,
                        fetched_at=datetime.now(UTC),
                        error=policy.unreachable,
                        error_detail=policy.unreachable_detail,
                        depth=depth,
                    )
                )
                return
            self._robots_skip(url)
            return
        self.counters.enqueued += 1
        self.queue.put_nowait((url, depth))

    def _robots_skip(self, url: str) -> None:
        self.state.robots_disallowed_count += 1
        if len(self.state.robots_disallowed) < MAX_ROBOTS_LISTED:
            self.state.robots_disallowed.append(url)

    def discover_external(self, url: str) -> None:
        if not self.config.check_external or url in self.external_seen:
            return
        self.external_seen.add(url)
        self.external_queue.put_nowait(url)

    async def discover_links(self, page: Page, depth: int) -> None:
        data = page.data
        if data is None:
            return
        nofollow = (
            "nofollow" in (data.meta_robots or "").lower()
            or "nofollow" in page.headers.get("x-robots-tag", "").lower()
        )
        for link in data.links:
            # Extraction normalised hrefs already (tracking parameters stripped): with the same query
            # rule there is nothing left to do, and normalising 10k distinct hrefs costs ~0.6 s.
            url = (
                link.href
                if self.query is QueryHandling.strip_tracking
                else _try_normalize(link.href, self.query)
            )
            if url is None:
                continue
            if self.scope.is_internal(url):
                if not self.config.list_mode and not nofollow:
                    await self.enqueue(url, depth + 1)
            else:
                external = _try_normalize(link.href, QueryHandling.keep)
                if external is not None:
                    self.discover_external(external)

    async def read_sitemaps(self) -> None:
        candidates: list[tuple[str, int, bool]] = [(url, 0, False) for url in self.config.sitemaps]
        for origin in dict.fromkeys(origin_of(url) for url in self.starts):
            policy = await self.robots.policy(origin + "/")
            declared = [(url, 0, False) for url in policy.sitemaps]
            candidates.extend(declared or [(f"{origin}/sitemap.xml", 0, True)])
        done: set[str] = set()
        while candidates and len(done) < MAX_SITEMAP_FILES:
            url, level, guessed = candidates.pop(0)
            try:
                key = normalize_url(url)
            except Exception as exc:
                self.state.sitemap_problems.append(SitemapProblem(sitemap=url, detail=str(exc)))
                continue
            if key in done:
                continue
            done.add(key)
            children = await self._read_sitemap(key, guessed)
            if level + 1 > MAX_SITEMAP_DEPTH and children:
                self.state.sitemap_problems.append(
                    SitemapProblem(
                        sitemap=key, detail=f"sitemap indexes nested deeper than {MAX_SITEMAP_DEPTH}"
                    )
                )
                continue
            candidates.extend((child, level + 1, False) for child in children)
        if candidates:
            self.state.sitemap_problems.append(
                SitemapProblem(
                    sitemap=candidates[0][0], detail=f"more than {MAX_SITEMAP_FILES} sitemap files"
                )
            )

    async def _read_sitemap(self, url: str, guessed: bool) -> list[str]:
        exchange = await self.fetcher.fetch(url, body="any", max_bytes=MAX_SITEMAP_BYTES)
        if exchange.robots_blocked:
            self._robots_skip(exchange.robots_blocked)
        if exchange.status is None or exchange.error is not None or not 200 <= exchange.status < 300:
            if not (guessed and exchange.status == 404):
                detail = exchange.detail or f"HTTP {exchange.status}"
                self.state.sitemap_problems.append(SitemapProblem(sitemap=url, detail=detail))
            return []
        parsed = await asyncio.to_thread(parse_sitemap, exchange.body)
        for problem in parsed.problems:
            self.state.sitemap_problems.append(SitemapProblem(sitemap=url, detail=problem))
        for loc, lastmod in parsed.urls:
            normal = _try_normalize(loc, self.query)
            if normal is None or not self.scope.is_internal(normal):
                continue
            if len(self.state.sitemap_entries) < self.sitemap_entry_cap:
                self.state.sitemap_entries.append(SitemapEntry(url=normal, lastmod=lastmod, sitemap=url))
                self.in_sitemap.add(normal)
            if not self.config.list_mode:
                await self.enqueue(normal, 0)
        return parsed.children

    # ------------------------------------------------------------------------------------- crawling

    async def crawl_one(self, url: str, depth: int) -> None:
        headers = {"Accept": ACCEPT_HTML}
        # Taken out once used: a URL is fetched once per crawl, and the map shrinks as the crawl goes.
        validators = self.validators.pop(url, None)
        if validators is not None:
            headers.update(validators.headers())
        exchange = await self.fetcher.fetch(url, headers=headers)
        page: Page | None = None
        if exchange.status == 304 and exchange.error is None:
            page = self._from_snapshot(url, depth, exchange)
            if page is None:  # the snapshot is gone: ask again without validators
                exchange = await self.fetcher.fetch(url, headers={"Accept": ACCEPT_HTML})
        if exchange.robots_blocked and exchange.robots_blocked != url:
            self._robots_skip(exchange.robots_blocked)
        if page is None:
            final_internal = self.scope.is_internal(exchange.final_url)
            page = await build_page_async(
                exchange,
                url=url,
                depth=depth,
                in_sitemap=url in self.in_sitemap,
                site_hosts=self.scope.hosts,
                parse=final_internal,
            )
        if exchange.chain:
            self._mark_final(exchange)
        await self.record(page)
        await self.discover_links(page, depth)

    def _mark_final(self, exchange: Exchange) -> None:
        # The redirect target was fetched already: do not fetch it again if a link names it.
        try:
            final = normalize_url(exchange.final_url, self.query)
        except Exception:
            return
        if self.scope.is_internal(final) and len(self.seen) < self.seen_cap:
            self.seen.add(final)

    def _from_snapshot(self, url: str, depth: int, exchange: Exchange) -> Page | None:
        assert self.store is not None
        snapshot = self.store.load_page(self.site, url)
        if snapshot is None or snapshot.data is None:
            return None
        return snapshot.model_copy(
            update={
                "final_url": exchange.final_url,
                "redirect_chain": exchange.chain,
                "headers": {**snapshot.headers, **exchange.headers},
                "elapsed_ms": exchange.elapsed_ms,
                "fetched_at": exchange.fetched_at,
                "not_modified": True,
                "depth": depth,
                "in_sitemap": url in self.in_sitemap,
                "error": None,
                "error_detail": None,
            }
        )

    async def record(self, page: Page) -> None:
        self.counters.fetched += 1
        if page.error is not None:
            self.counters.errors += 1
        if self.store is not None:
            self.unsaved.append(page)
            if len(self.unsaved) >= _STORE_BATCH:
                await self.flush()
        if self.on_page is not None:
            self.on_page(page)
        if self.collect_pages:
            self.state.pages.append(self._slim(page))
        if self.on_progress is not None:
            progress = CrawlProgress(
                fetched=self.counters.fetched,
                queued=self.queue.qsize(),
                errors=self.counters.errors,
                current_url=page.url,
            )
            try:
                self.on_progress(progress)
            except Exception:
                logger.exception("on_progress callback failed (ignored)")

    def _slim(self, page: Page) -> Page:
        data = page.data
        if data is None:
            return page
        fields = _compact(data.__dict__)
        fields["links"] = [self._shared(link) for link in data.links]
        if not self.keep_text:
            fields["main_text"] = ""
        # model_construct with one shared fields-set: the values are validated already, and a per-page
        # copy of that set (and of each model's dict, as model_copy makes) costs ~1.5 KB a page.
        slim = PageData.model_construct(_fields_set=_PAGE_DATA_FIELDS, **fields)
        page_fields = _compact(page.__dict__)
        headers = {
            sys.intern(name): value for name, value in page.headers.items() if name not in _STORE_ONLY_HEADERS
        }
        page_fields["headers"] = _compact(headers, _REPEATED_HEADERS) if headers else _EMPTY_DICT
        page_fields["data"] = slim
        return Page.model_construct(_fields_set=_PAGE_FIELDS, **page_fields)

    def _shared(self, link: Link) -> Link:
        # Navigation links repeat on every page; one object per distinct link saves most of the memory.
        known = self.link_cache.get(link)
        if known is not None:
            return known
        if len(self.link_cache) >= _LINK_CACHE_SIZE:
            self.link_cache.clear()
        self.link_cache[link] = link
        return link

    async def flush(self) -> None:
        if self.store is None or not self.unsaved:
            return
        batch, self.unsaved = self.unsaved, []
        await asyncio.to_thread(self.store.save_pages, self.site, batch)

    # -------------------------------------------------------------------------------- link checking

    async def check_external(self, url: str) -> None:
        max_age = self.config.link_check_max_age_hours
        if self.store is not None and max_age > 0:
            recent = await asyncio.to_thread(self.store.recent_link_check, url, timedelta(hours=max_age))
            if recent is not None:
                # Checked recently (say, by last night's audit): a re-audit need not ask every host again.
                self.state.link_checks.append(recent)
                self.reused_link_checks.add(url)
                return
        policy = await self.robots.policy(url)
        if policy.unreachable is not None:
            # robots.txt could not be fetched at all: the host is unreachable, not robots-protected.
            outcome = LinkOutcome.broken if policy.unreachable_dns else LinkOutcome.error
            self.state.link_checks.append(
                LinkCheck(url=url, outcome=outcome, detail=policy.unreachable_detail)
            )
            return
        exchange = await self.fetcher.fetch(url, method="HEAD", body="none", headers={"Accept": ACCEPT_HTML})
        status = exchange.status
        if status is not None and (status == 501 or (400 <= status < 500 and status not in (404, 410, 429))):
            # HEAD refused or mishandled: ask with GET, reading nothing of the body.
            exchange = await self.fetcher.fetch(url, body="none", headers={"Accept": ACCEPT_HTML})
        if exchange.robots_blocked:
            self._robots_skip(exchange.robots_blocked)
        outcome, detail = classify_link(exchange)
        self.state.link_checks.append(
            LinkCheck(
                url=url,
                status=exchange.status,
                final_url=exchange.final_url,
                redirect_chain=exchange.chain,
                outcome=outcome,
                detail=detail,
            )
        )

    # --------------------------------------------------------------------------------------- driver

    async def run(self) -> CrawlResult:
        started = datetime.now(UTC)
        for raw, detail in self.invalid_starts:
            await self.record(
                Page(
                    url=raw,
                    final_url=raw,
                    fetched_at=started,
                    error=FetchError.invalid_url,
                    error_detail=detail,
                )
            )
        if self.store is not None and self.config.conditional:
            self.validators = await asyncio.to_thread(self.store.site_validators, self.site)
        for url in self.starts:
            await self.enqueue(url, 0)
        if self.config.use_sitemaps and not self.config.list_mode:
            await self.read_sitemaps()
        workers = [
            asyncio.create_task(self._worker())
            for _ in range(min(256, self.config.concurrency_per_host * len(self.scope.hosts) or 1))
        ]
        checkers = [
            asyncio.create_task(self._checker()) for _ in range(min(64, self.config.concurrency_per_host * 4))
        ]
        try:
            await self.queue.join()
            await self.external_queue.join()
        finally:
            for task in workers + checkers:
                task.cancel()
            await asyncio.gather(*workers, *checkers, return_exceptions=True)
        await self.flush()
        if self.store is not None:
            # Only fresh checks: re-saving a reused one would keep an old answer alive forever.
            fresh = [check for check in self.state.link_checks if check.url not in self.reused_link_checks]
            await asyncio.to_thread(self.store.save_link_checks, fresh)
        if self.state.robots_disallowed_count > len(self.state.robots_disallowed):
            logger.info(
                "%d robots-disallowed URLs; %d listed",
                self.state.robots_disallowed_count,
                len(self.state.robots_disallowed),
            )
        return CrawlResult(
            site=self.site,
            started=started,
            finished=datetime.now(UTC),
            pages=self.state.pages,
            link_checks=self.state.link_checks,
            sitemap_entries=self.state.sitemap_entries,
            sitemap_problems=self.state.sitemap_problems,
            robots_disallowed=self.state.robots_disallowed,
            out_of_budget=self.counters.out_of_budget,
        )

    async def _worker(self) -> None:
        while True:
            url, depth = await self.queue.get()
            try:
                await self.crawl_one(url, depth)
            except Exception:  # a bad page must never end the crawl
                logger.exception("crawling %s failed", url)
            finally:
                self.queue.task_done()

    async def _checker(self) -> None:
        while True:
            url = await self.external_queue.get()
            try:
                await self.check_external(url)
            except Exception:
                logger.exception("checking %s failed", url)
            finally:
                self.external_queue.task_done()


def classify_link(exchange: Exchange) -> tuple[LinkOutcome, str | None]:
    """Classify a link check: ok, redirected, broken, blocked (bot walls, robots) or error.

    Returns:
        ``(outcome, detail)``.
    """
    status = exchange.status
    if exchange.error == FetchError.robots_disallowed:
        return LinkOutcome.blocked, exchange.detail
    if exchange.dns_failure:
        return LinkOutcome.broken, exchange.detail
    if exchange.error in (FetchError.redirect_loop, FetchError.too_many_redirects, FetchError.invalid_url):
        return LinkOutcome.broken, exchange.detail
    if status is None or exchange.error in (
        FetchError.timeout,
        FetchError.connect_error,
        FetchError.address_refused,
    ):
        return LinkOutcome.error, exchange.detail
    if status in BLOCKED_HTTP_CODES:
        return LinkOutcome.blocked, f"HTTP {status}"
    if 400 <= status < 500:
        return LinkOutcome.broken, f"HTTP {status}"
    if status >= 500:
        return LinkOutcome.error, f"HTTP {status}"
    if exchange.chain:
        return LinkOutcome.redirected, f"{len(exchange.chain)} redirect(s) to {exchange.final_url}"
    return LinkOutcome.ok, None


async def crawl_site(
    config: CrawlConfig,
    *,
    store: CrawlStore | None = None,
    client: httpx.AsyncClient | None = None,
    resolver: Resolver | None = None,
    on_progress: Callable[[CrawlProgress], None] | None = None,
    keep_text: bool = False,
    on_page: Callable[[Page], None] | None = None,
    collect_pages: bool = True,
    limiter: HostLimiter | None = None,
) -> CrawlResult:
    """Crawl one site and check its external links.

    Discovery: start URLs, robots.txt ``Sitemap:`` lines (or ``/sitemap.xml``), ``config.sitemaps``,
    then links, within scope and budget; in list mode exactly ``start_urls``. Every request goes
    through the address guard, robots.txt, per-host politeness, the byte and time caps and the retry
    policy of :mod:`sitesteward.crawl.fetch`. Nothing about a bad page raises.

    Args:
        config: The crawl; ``user_agent`` and ``allow_private`` default to the settings'.
        store: Snapshots for conditional requests; the crawl saves its pages there.
        client: A shared client (else one is built whose connections are pinned to checked addresses;
            with your own client the guard still checks each hop, but the client resolves names again).
        resolver: ``async (host, port) -> [ip, ...]`` for the guard (tests stub DNS with it).
        on_progress: Called after every page (exceptions it raises are logged and ignored).
        keep_text: Keep ``main_text`` on the result's pages (the store always keeps it).
        on_page: Called with every full Page (main text included) as soon as it is fetched, so an
            audit can stream pages instead of holding them all.
        collect_pages: False leaves ``CrawlResult.pages`` empty (use ``on_page`` or the store):
            memory then stays flat however big the site (about 7 KB per collected page otherwise).
        limiter: A per-host limit shared with other processes (:mod:`sitesteward.crawl.limits`), held
            on top of this crawl's own politeness for every request; None (default): this process only.

    Returns:
        Pages, link checks, sitemap entries and problems, robots-skipped URLs and the budget overflow.

    Raises:
        ConfigurationError: an include or exclude pattern is not a valid regex.
    """
    settings = get_settings()
    user_agent = config.user_agent or settings.user_agent
    allow_private = config.allow_private if config.allow_private is not None else settings.allow_private
    guard = AddressGuard(allow_private=allow_private, resolver=resolver)
    politeness = (
        Politeness(config.concurrency_per_host, config.requests_per_second)
        if limiter is None
        else SharedPoliteness(config.concurrency_per_host, config.requests_per_second, limiter)
    )
    owned = client is None
    http = client if client is not None else build_client(config, guard, user_agent=user_agent)
    try:
        crawl = _Crawl(
            config,
            store=store,
            client=http,
            guard=guard,
            politeness=politeness,
            user_agent=user_agent,
            on_progress=on_progress,
            keep_text=keep_text,
            on_page=on_page,
            collect_pages=collect_pages,
        )
        with quick_gil_handoff():
            return await crawl.run()
    finally:
        if owned:
            await http.aclose()
