"""Host limits and shard planning without servers: the in-process limiter, URL-hash partitions, shard
configs, the limiter settings and the planner's replay of the crawler's frontier on hand-built pages.

The Redis limiter and real sharded crawls are in ``tests/integration/test_crawl_shards.py``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from sitesteward.crawl.limits import HostLimiter, HostLimitSpec, LocalHostLimiter, RedisHostLimiter, hold
from sitesteward.crawl.shard import ShardPlanner, partition, shard_config, shard_of
from sitesteward.errors import ConfigurationError
from sitesteward.models import (
    CrawlConfig,
    CrawlResult,
    Link,
    LinkCheck,
    LinkOutcome,
    Page,
    PageData,
    RedirectHop,
    SitemapEntry,
)

SITE = "https://example.com"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


# ------------------------------------------------------------------------------------------ limiters


async def _max_in_flight(limiter: HostLimiter, tasks: int, hold_seconds: float) -> int:
    in_flight = peak = 0

    async def one() -> None:
        nonlocal in_flight, peak
        async with hold(limiter, "example.com"):
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(hold_seconds)
            in_flight -= 1

    await asyncio.gather(*(one() for _ in range(tasks)))
    return peak


def test_local_limiter_bounds_concurrency_per_host() -> None:
    assert asyncio.run(_max_in_flight(LocalHostLimiter(3), tasks=12, hold_seconds=0.01)) == 3
    assert asyncio.run(_max_in_flight(LocalHostLimiter(1), tasks=4, hold_seconds=0.005)) == 1


def test_local_limiter_spaces_request_starts() -> None:
    async def starts() -> tuple[float, list[float]]:
        limiter = LocalHostLimiter(10, requests_per_second=50)
        stamps: list[float] = []

        async def one() -> None:
            async with hold(limiter, "example.com"):
                stamps.append(time.monotonic())

        begin = time.monotonic()
        await asyncio.gather(*(one() for _ in range(6)))
        return begin, sorted(stamps)

    begin, stamps = asyncio.run(starts())
    # 50/s: the i-th start is reserved 20 ms after the one before (a late wake-up only delays it).
    assert all(stamp >= begin + i * 0.02 - 0.005 for i, stamp in enumerate(stamps)), stamps
    assert stamps[-1] - begin < 2.0


def test_local_limiter_gives_the_slot_back_when_cancelled_during_the_rate_wait() -> None:
    async def scenario() -> int:
        limiter = LocalHostLimiter(1, requests_per_second=5)
        first = await limiter.acquire("h")
        await limiter.release("h", first)
        waiting = asyncio.create_task(limiter.acquire("h"))  # must wait ~0.2 s for the rate
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # The cancelled waiter released its slot: the next acquire gets it (after the rate spacing).
        token = await asyncio.wait_for(limiter.acquire("h"), timeout=2)
        await limiter.release("h", token)
        return 1

    assert asyncio.run(scenario()) == 1


def test_limiters_satisfy_the_protocol() -> None:
    assert isinstance(LocalHostLimiter(1), HostLimiter)
    assert issubclass(RedisHostLimiter, HostLimiter)


def test_host_limit_spec_refuses_credentials_and_non_redis_urls() -> None:
    assert HostLimitSpec().backend == "local"
    assert HostLimitSpec(backend="redis", url="redis://127.0.0.1:6379/0").url
    with pytest.raises(ValidationError, match="no credentials"):
        HostLimitSpec(backend="redis", url="redis://user:secret@127.0.0.1:6379/0")
    with pytest.raises(ValidationError, match="redis://"):
        HostLimitSpec(backend="redis", url="http://127.0.0.1:6379")


# ---------------------------------------------------------------------------------------- partitions


def test_partition_by_url_hash_is_stable_balanced_and_complete() -> None:
    urls = [f"{SITE}/p/{i}" for i in range(4000)]
    parts = partition(urls, 4)
    assert sorted(url for part in parts for url in part) == sorted(urls)
    assert all(800 <= len(part) <= 1200 for part in parts), [len(part) for part in parts]
    position = {url: i for i, url in enumerate(urls)}
    assert all(part == sorted(part, key=position.__getitem__) for part in parts)  # order kept within a shard
    assert partition(urls, 4) == parts  # stable
    assert {shard_of(url, 1) for url in urls} == {0}
    # blake2b, not hash(): the same shard in every process (PYTHONHASHSEED does not matter).
    assert shard_of(f"{SITE}/p/0", 4) == shard_of(f"{SITE}/p/0", 4)
    assert [shard_of(f"{SITE}/p/{i}", 1000) for i in range(3)] == [
        shard_of(f"{SITE}/p/{i}", 1000) for i in range(3)
    ]


def test_shard_config_is_list_mode_with_the_whole_scope_and_splits_local_limits() -> None:
    config = CrawlConfig(
        start_urls=[SITE + "/"],
        allowed_hosts=["docs.example.com"],
        concurrency_per_host=8,
        requests_per_second=4.0,
    )
    urls = [f"{SITE}/a", "https://docs.example.com/b"]
    split = shard_config(config, urls, shards=4, shared_limit=False)
    assert split.list_mode and split.start_urls == urls and split.max_pages == 2
    assert set(split.allowed_hosts) == {"example.com", "docs.example.com"}
    assert split.concurrency_per_host == 2 and split.requests_per_second == 1.0
    shared = shard_config(config, urls, shards=4, shared_limit=True)
    assert shared.concurrency_per_host == 8 and shared.requests_per_second == 4.0
    with pytest.raises(ConfigurationError, match="exceed concurrency_per_host=8"):
        shard_config(config, urls, shards=9, shared_limit=False)


# ------------------------------------------------------------------------------------------- planner


def _page(path: str, links: list[str], **extra: object) -> Page:
    data = PageData(title=path, links=[Link(href=href if "://" in href else SITE + href) for href in links])
    values: dict[str, object] = {"url": SITE + path, "final_url": SITE + path, "status": 200, "data": data}
    values.update(extra)
    return Page(fetched_at=NOW, **values)  # type: ignore[arg-type]


class FakeSite:
    """Pages by URL; ``crawl`` answers a shard's URL list like a list-mode crawl (depth 0, no flags)."""

    def __init__(self, pages: list[Page], robots: frozenset[str] = frozenset()) -> None:
        self.pages = {page.url: page for page in pages}
        self.robots = robots
        self.fetched: list[str] = []

    def crawl(self, urls: list[str]) -> CrawlResult:
        self.fetched.extend(urls)
        found = [self.pages[u] for u in urls if u in self.pages and u not in self.robots]
        checks = [
            LinkCheck(url=link.href, outcome=LinkOutcome.ok)
            for page in found
            for link in (page.data.links if page.data else [])
            if not link.href.startswith(SITE)
        ]
        blocked = [u for u in urls if u in self.robots]
        return CrawlResult(
            site="example.com",
            started=NOW,
            finished=NOW,
            pages=found,
            link_checks=checks,
            robots_disallowed=blocked,
        )


def _run(config: CrawlConfig, site: FakeSite, shards: int, **planner: object) -> tuple[CrawlResult, int]:
    discovery = CrawlResult(
        site="example.com", started=NOW, finished=NOW, pages=[], sitemap_entries=planner.pop("sitemap", [])
    )  # type: ignore[arg-type]
    plan = ShardPlanner(config, discovery, **planner)  # type: ignore[arg-type]
    while urls := plan.next_round():
        for part in partition(urls, shards):
            if part:
                plan.add(site.crawl(part))
    return plan.result(), plan.rounds


def _depths(result: CrawlResult) -> dict[str, int]:
    return {page.url.removeprefix(SITE): page.depth for page in result.pages}


def test_planner_walks_links_breadth_first_in_rounds_within_depth_and_budget() -> None:
    site = FakeSite(
        [
            _page("/", ["/a", "/b", "/x?utm_source=mail"]),
            _page("/a", ["/c", "/", "https://other.example/"]),
            _page("/b", ["/c", "/d"]),
            _page("/c", ["/e"]),
            _page("/d", []),
            _page("/e", ["/f"]),
            _page("/x", []),
        ]
    )
    config = CrawlConfig(start_urls=[SITE + "/"], max_depth=2)
    result, rounds = _run(config, site, shards=3)
    assert _depths(result) == {"/": 0, "/a": 1, "/b": 1, "/x": 1, "/c": 2, "/d": 2}
    assert rounds == 3  # one round per depth level, nothing fetched twice
    assert sorted(site.fetched) == sorted(SITE + p for p in ["/", "/a", "/b", "/x", "/c", "/d"])
    assert result.out_of_budget == 1  # /e is one level too deep
    assert [check.url for check in result.link_checks] == ["https://other.example/"]
    budget, _ = _run(config.model_copy(update={"max_pages": 3}), FakeSite(list(site.pages.values())), 2)
    assert set(_depths(budget)) == {"/", "/a", "/b"}


def test_planner_honours_robots_nofollow_redirect_targets_and_scope() -> None:
    site = FakeSite(
        [
            _page("/", ["/private", "/nf", "/old", "/c", "/skip/me"]),
            _page("/c", ["/new"]),
            _page(
                "/nf",
                ["/hidden"],
                data=PageData(meta_robots="noindex, nofollow", links=[Link(href=SITE + "/hidden")]),
            ),
            _page(
                "/old",
                [],
                final_url=SITE + "/new",
                redirect_chain=[RedirectHop(url=SITE + "/old", status=301, location=SITE + "/new")],
            ),
            _page("/new", []),
            _page("/hidden", []),
            _page("/private", []),
        ],
        robots=frozenset({SITE + "/private"}),
    )
    config = CrawlConfig(start_urls=[SITE + "/"], exclude=["/skip/"], max_pages=4)
    result, _ = _run(config, site, shards=2)
    # /private is robots-blocked and does not use the budget (so /c fits in it); /hidden sits behind
    # nofollow; /new is the target of /old's redirect, which one crawl does not fetch again when /c
    # names it later; /skip/me is excluded.
    assert set(_depths(result)) == {"/", "/nf", "/old", "/c"}
    assert SITE + "/new" not in site.fetched and SITE + "/hidden" not in site.fetched
    assert result.robots_disallowed == [SITE + "/private"]
    assert SITE + "/skip/me" not in site.fetched


def test_planner_prefetches_hints_but_keeps_only_reachable_pages_with_sitemap_flags() -> None:
    site = FakeSite([_page("/", ["/a"]), _page("/a", ["/b"]), _page("/b", []), _page("/gone", ["/island"])])
    config = CrawlConfig(start_urls=[SITE + "/"])
    sitemap = [SitemapEntry(url=SITE + "/b", sitemap=SITE + "/sitemap.xml")]
    hints = [SITE + "/a", SITE + "/b", SITE + "/gone", "https://elsewhere.example/x"]
    result, rounds = _run(config, site, shards=2, hints=hints, sitemap=sitemap)
    assert _depths(result) == {"/": 0, "/b": 0, "/a": 1}  # /b is a sitemap URL: depth 0
    assert {page.url for page in result.pages if page.in_sitemap} == {SITE + "/b"}
    assert rounds == 1  # the hints covered the site in the first round
    # The unlinked hint was fetched once, then dropped; its own links were never followed.
    assert SITE + "/gone" in site.fetched and SITE + "/island" not in site.fetched
    assert "https://elsewhere.example/x" not in site.fetched


def test_planner_in_list_mode_fetches_exactly_the_list() -> None:
    site = FakeSite([_page("/", ["/a"]), _page("/a", []), _page("/b", [])])
    config = CrawlConfig(start_urls=[SITE + "/", SITE + "/b"], list_mode=True)
    result, rounds = _run(config, site, shards=2, hints=[SITE + "/a"])
    assert set(_depths(result)) == {"/", "/b"} and rounds == 1
    assert sorted(site.fetched) == [SITE + "/", SITE + "/b"]  # no hint, no link followed
