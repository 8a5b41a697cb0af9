"""Site-wide crawls split into shards that can run on different workers, with the same result as one crawl.

How a sharded crawl goes (the ``audit_site`` flow drives it; nothing here knows about Prefect)::

    discovery  (one small crawl: robots.txt and sitemaps, no page)     -> discovery_config()
    round 0    start URLs + sitemap URLs (+ the previous crawl's URLs as a head start)
    round k    in-scope links the earlier rounds found that no shard fetched yet
               each round: partition(urls, shards) -> shard_config() per part -> crawl_shard() anywhere
    merge      ShardPlanner.result(): one CrawlResult, as the unsharded crawl would have produced it

:class:`ShardPlanner` replays the crawler's frontier rules (scope, ``max_depth``, ``max_pages``,
robots, nofollow, redirect targets, seen-URL cap) as a breadth-first walk over the pages fetched so
far, so the pages it keeps — and their depth, sitemap flags and link checks — are those of one crawl of
the site. The previous crawl's URLs are fetched in round 0 only to spread work early: a page the walk
does not reach (unlinked since) is dropped from the result, and its links are never followed.

Shards crawl in list mode with the site's full host scope (a redirect to another in-scope host is
parsed, a link there is internal) and, through :class:`PinnedSiteStore`, under the site's store key.
Without a shared limiter each shard gets an equal part of ``concurrency_per_host`` and
``requests_per_second``; with one (:mod:`sitesteward.crawl.limits`) every shard may use the whole
limit and the limiter bounds their sum.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sitesteward.crawl.crawler import _compile, crawl_site, site_key
from sitesteward.crawl.limits import HostLimitSpec, open_limiter
from sitesteward.crawl.progress import CrawlProgress
from sitesteward.crawl.store import DEFAULT_BATCH_SIZE, CrawlStore, Validators
from sitesteward.errors import ConfigurationError
from sitesteward.models import CrawlConfig, CrawlResult, LinkCheck, Page, QueryHandling
from sitesteward.urls import host_of, normalize_url

#: An include pattern that matches nothing: the discovery crawl reads robots.txt and sitemaps only.
_MATCH_NOTHING = r"(?!)"


def shard_of(url: str, shards: int) -> int:
    """The shard of ``url``: a stable hash range (the same on every worker and Python version)."""
    digest = hashlib.blake2b(url.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") * shards >> 64


def partition(urls: Iterable[str], shards: int) -> list[list[str]]:
    """Split ``urls`` into ``shards`` lists by URL hash range, keeping their order within a shard."""
    parts: list[list[str]] = [[] for _ in range(shards)]
    for url in urls:
        parts[shard_of(url, shards)].append(url)
    return parts


def site_hosts(config: CrawlConfig) -> list[str]:
    """Every host the crawl treats as internal: the start URLs' hosts and ``allowed_hosts``."""
    hosts: dict[str, None] = {}
    for raw in config.start_urls:
        normal = _normal(raw, config.query_handling)
        if normal is not None:  # an invalid start URL becomes an error page, not a host
            hosts[host_of(normal)] = None
    for host in config.allowed_hosts:
        if host.strip():
            hosts[host.strip().lower()] = None
    return list(hosts)


def discovery_config(config: CrawlConfig) -> CrawlConfig:
    """A crawl of ``config`` that fetches robots.txt and the sitemaps but admits no page.

    Its result carries the sitemap entries and problems, the robots-blocked sitemaps and one error
    page per invalid start URL: everything of a crawl that does not come from fetching pages.
    """
    return config.model_copy(update={"include": [_MATCH_NOTHING], "check_external": False})


def shard_config(config: CrawlConfig, urls: list[str], *, shards: int, shared_limit: bool) -> CrawlConfig:
    """The list-mode crawl of one shard's ``urls``, with the whole site's host scope.

    Args:
        config: The site's crawl.
        urls: Normalised in-scope URLs (from :meth:`ShardPlanner.next_round`).
        shards: How many shards run at once (without a shared limit each gets its part of the limits).
        shared_limit: A shared limiter bounds the hosts across shards (each shard may use the whole limit).

    Raises:
        ConfigurationError: no shared limit and more shards than ``concurrency_per_host``: the host
            would see more concurrent requests than configured.
    """
    if not urls:
        raise ValueError("a shard needs at least one URL")
    update: dict[str, object] = {
        "start_urls": list(urls),
        "list_mode": True,
        "max_pages": len(urls),
        "allowed_hosts": site_hosts(config),
    }
    if not shared_limit and shards > 1:
        if shards > config.concurrency_per_host:
            raise ConfigurationError(
                f"{shards} shards without a shared host limiter would exceed concurrency_per_host="
                f"{config.concurrency_per_host}: use host_limit redis or at most "
                f"{config.concurrency_per_host} shards"
            )
        update["concurrency_per_host"] = config.concurrency_per_host // shards
        if config.requests_per_second:
            update["requests_per_second"] = config.requests_per_second / shards
    return CrawlConfig.model_validate({**config.model_dump(), **update})


class PinnedSiteStore(CrawlStore):
    """A crawl store whose page snapshots go under one site key, whatever the crawl's first URL is.

    A shard's first URL may be on another in-scope host than the site's first start URL; its
    conditional requests and saved snapshots must still use the site's key.
    """

    def __init__(self, path: Path | str | None, site: str) -> None:
        super().__init__(path)
        self.site = site

    def validators(self, site: str, url: str) -> Validators | None:
        return super().validators(self.site, url)

    def site_validators(self, site: str) -> dict[str, Validators]:
        return super().site_validators(self.site)

    def load_page(self, site: str, url: str) -> Page | None:
        return super().load_page(self.site, url)

    def save_pages(self, site: str, pages: Iterable[Page], *, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
        return super().save_pages(self.site, pages, batch_size=batch_size)


async def crawl_limited(
    config: CrawlConfig,
    *,
    store: CrawlStore | None = None,
    limit: HostLimitSpec | None = None,
    on_progress: Callable[[CrawlProgress], None] | None = None,
    on_page: Callable[[Page], None] | None = None,
    collect_pages: bool = True,
) -> CrawlResult:
    """:func:`~sitesteward.crawl.crawl_site` under the host limit ``limit`` describes.

    With a shared limiter the crawl's own ``requests_per_second`` is left to the limiter (it spaces
    starts across all processes); the per-process concurrency cap and Crawl-delay still apply.
    """
    async with open_limiter(
        limit,
        limit=config.concurrency_per_host,
        requests_per_second=config.requests_per_second,
        timeout_seconds=config.timeout_seconds,
    ) as limiter:
        local = config if limiter is None else config.model_copy(update={"requests_per_second": None})
        return await crawl_site(
            local,
            store=store,
            limiter=limiter,
            on_progress=on_progress,
            on_page=on_page,
            collect_pages=collect_pages,
        )


def _normal(url: str, query: QueryHandling) -> str | None:
    try:
        return normalize_url(url, query)
    except Exception:  # InvalidUrl, and whatever urllib raises on a hostile href
        return None


def _is_nofollow(page: Page) -> bool:
    meta = (page.data.meta_robots or "") if page.data is not None else ""
    return "nofollow" in meta.lower() or "nofollow" in page.headers.get("x-robots-tag", "").lower()


@dataclass
class _Walk:
    """One breadth-first replay of the crawler's frontier over the pages known so far."""

    admitted: list[tuple[str, int]] = field(default_factory=list)
    unfetched: list[str] = field(default_factory=list)
    robots_skipped: list[str] = field(default_factory=list)
    out_of_budget: int = 0


class ShardPlanner:
    """Plans the rounds of a sharded crawl and merges the shards' results into one crawl's result.

    Args:
        config: The site's crawl (spidering or list mode; its budget and scope rules apply).
        discovery: The result of :func:`discovery_config`'s crawl (sitemaps, invalid start URLs).
        hints: URLs worth fetching in round 0 before any link names them (the previous crawl's).
    """

    def __init__(self, config: CrawlConfig, discovery: CrawlResult, *, hints: Iterable[str] = ()) -> None:
        self.config = config
        self.site = site_key(config)
        self.query = config.query_handling
        self.discovery = discovery
        self.started = datetime.now(UTC)
        self.rounds = 0
        self._hosts = frozenset(site_hosts(config))
        self._include = _compile(config.include, "include")
        self._exclude = _compile(config.exclude, "exclude")
        self._seen_cap = max(100_000, config.max_pages * 20)
        self._starts: list[str] = []
        for raw in config.start_urls:
            normal = _normal(raw, self.query)
            if normal is not None:
                self._starts.append(normal)
        self._sitemap_urls = [] if config.list_mode else [e.url for e in discovery.sitemap_entries]
        self._in_sitemap = {entry.url for entry in discovery.sitemap_entries}
        # A list-mode crawl fetches exactly its URLs: hints would only be fetched to be dropped.
        usable = () if config.list_mode else dict.fromkeys(hints)
        self._hints = [h for h in usable if self._is_internal(h) and self._accepts(h)]
        self._assigned: set[str] = set()
        self._pages: dict[str, Page] = {}
        self._robots: set[str] = set()
        self._link_checks: dict[str, LinkCheck] = {}
        self._other_robots: dict[str, None] = {}

    # ------------------------------------------------------------------------------------- scope

    def _is_internal(self, url: str) -> bool:
        return host_of(url) in self._hosts

    def _accepts(self, url: str) -> bool:
        if len(url) > self.config.max_url_length:
            return False
        if self._include and not any(p.search(url) for p in self._include):
            return False
        return not any(p.search(url) for p in self._exclude)

    # ------------------------------------------------------------------------------------ rounds

    def next_round(self) -> list[str]:
        """The URLs to fetch next (each URL is handed out once); empty when the crawl is complete."""
        walk = self._walk()
        batch = [url for url in walk.unfetched if url not in self._assigned]
        if self.rounds == 0 and self._hints:
            room = max(0, self.config.max_pages - len(walk.admitted))
            known = set(batch)
            batch.extend([h for h in self._hints if h not in known][:room])
        self._assigned.update(batch)
        if batch:
            self.rounds += 1
        return batch

    def add(self, result: CrawlResult) -> None:
        """Take one shard's result in (any order, any round)."""
        for page in result.pages:
            self._pages.setdefault(page.url, page)
        for url in result.robots_disallowed:
            if url in self._assigned and url not in self._pages:
                self._robots.add(url)
            else:  # a redirect hop or a checked link that robots.txt refused
                self._other_robots.setdefault(url)
        for check in result.link_checks:
            self._link_checks.setdefault(check.url, check)

    def _walk(self) -> _Walk:
        walk = _Walk()
        seen: set[str] = set()
        queue: deque[tuple[str, int]] = deque()

        def visit(url: str, depth: int) -> None:
            # The crawler's enqueue(), in its order: seen cap, scope, depth and budget, robots.
            if url in seen:
                return
            if len(seen) >= self._seen_cap:
                walk.out_of_budget += 1
                return
            seen.add(url)
            if not self._accepts(url):
                return
            if depth > self.config.max_depth or len(walk.admitted) >= self.config.max_pages:
                walk.out_of_budget += 1
                return
            if url in self._robots:
                walk.robots_skipped.append(url)
                return
            walk.admitted.append((url, depth))
            queue.append((url, depth))

        for url in self._starts:
            visit(url, 0)
        for url in self._sitemap_urls:
            visit(url, 0)
        while queue:
            url, depth = queue.popleft()
            page = self._pages.get(url)
            if page is None:  # not fetched yet (or its shard lost it: then it is never handed out again)
                walk.unfetched.append(url)
                continue
            if page.redirect_chain:
                # The crawler does not fetch a redirect's target again when a link names it.
                final = _normal(page.final_url, self.query)
                if final is not None and self._is_internal(final) and len(seen) < self._seen_cap:
                    seen.add(final)
            if self.config.list_mode or page.data is None or _is_nofollow(page):
                continue
            for link in page.data.links:
                target = _normal(link.href, self.query)
                if target is not None and self._is_internal(target):
                    visit(target, depth + 1)
        return walk

    # ------------------------------------------------------------------------------------- merge

    def result(self) -> CrawlResult:
        """One crawl's result: the pages the walk reaches (depth and sitemap flags as one crawl sets
        them), the link checks of their external links, and the discovery's sitemap findings."""
        walk = self._walk()
        pages = list(self.discovery.pages)
        for url, depth in walk.admitted:
            page = self._pages.get(url)
            if page is not None:
                pages.append(page.model_copy(update={"depth": depth, "in_sitemap": url in self._in_sitemap}))
        externals: set[str] = set()
        if self.config.check_external:
            for page in pages:
                for link in page.data.links if page.data is not None else []:
                    target = _normal(link.href, QueryHandling.keep)
                    if target is not None and not self._is_internal(target):
                        externals.add(target)
        checks = [check for url, check in self._link_checks.items() if url in externals]
        robots = dict.fromkeys(self.discovery.robots_disallowed)
        robots.update(dict.fromkeys(walk.robots_skipped))
        robots.update(self._other_robots)
        return CrawlResult(
            site=self.site,
            started=self.started,
            finished=datetime.now(UTC),
            pages=pages,
            link_checks=checks,
            sitemap_entries=list(self.discovery.sitemap_entries),
            sitemap_problems=list(self.discovery.sitemap_problems),
            robots_disallowed=list(robots),
            out_of_budget=walk.out_of_budget,
        )
