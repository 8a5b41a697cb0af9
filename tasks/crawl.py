"""Crawl tasks: the whole crawl as one task, or the pieces of a sharded crawl (discovery, one shard).

The async crawler does its own per-URL retries, politeness and caps, so none of these is retried by
Prefect: a crawl that failed as a whole (bad configuration, Redis gone) will not succeed on a second try
within the same run.
"""

from __future__ import annotations

import re

from prefect import task

from sitesteward.aio import run_sync
from sitesteward.crawl import CrawlStore
from sitesteward.crawl.limits import HostLimitSpec
from sitesteward.crawl.shard import PinnedSiteStore, crawl_limited, discovery_config
from sitesteward.facts import AuditCrawl, FactsCollector
from sitesteward.models import CrawlConfig, CrawlResult
from sitesteward.settings import get_settings
from tasks.progress import ProgressReporter


def _artifact_key(site: str) -> str:
    # Artifact keys allow lower-case letters, digits and dashes only.
    return "crawl-progress-" + re.sub(r"[^a-z0-9]+", "-", site.lower()).strip("-")[:60]


@task(name="crawl_pages", retries=0, persist_result=False, log_prints=False)
def crawl_pages(config: CrawlConfig, limit: HostLimitSpec | None = None) -> AuditCrawl:
    """Crawl the site (spider, sitemaps, link checks) with conditional requests against the store.

    Pages come back as :class:`~sitesteward.facts.PageFacts`, made as each page arrives: the store
    keeps the whole pages, and the audit never holds them (about a third of the memory per page).

    Args:
        config: The crawl.
        limit: A per-host limit shared with other workers (None: this process's politeness only).
    """
    settings = get_settings()
    reporter = ProgressReporter(_artifact_key(config.start_urls[0]))
    collector = FactsCollector()
    with CrawlStore(settings.crawl_store_path) as store:
        # The task is sync so any flow (sync or async) can call it; the crawler runs its own loop.
        crawl = crawl_limited(
            config, store=store, limit=limit, on_progress=reporter, on_page=collector, collect_pages=False
        )
        return collector.crawl(run_sync(crawl))


@task(name="discover_site", retries=0, persist_result=False, log_prints=False)
def discover_site(config: CrawlConfig, limit: HostLimitSpec | None = None) -> CrawlResult:
    """Read robots.txt and the sitemaps of the site (no page): the seed of a sharded crawl."""
    return run_sync(crawl_limited(discovery_config(config), limit=limit))


@task(
    name="crawl_shard",
    retries=0,
    persist_result=False,
    log_prints=False,
    task_run_name="crawl_shard-{index}",
)
def crawl_shard(
    config: CrawlConfig, site: str, index: int, limit: HostLimitSpec | None = None
) -> CrawlResult:
    """Crawl one shard's URLs (list mode) and save their snapshots under the site's store key.

    Args:
        config: The shard's crawl (:func:`sitesteward.crawl.shard.shard_config`).
        site: The site's store key (its first start URL's host).
        index: The shard's number in its round (names the run and the progress artifact).
        limit: The per-host limit shared by all shards.
    """
    reporter = ProgressReporter(f"{_artifact_key(site)}-shard-{index}"[:100])
    with PinnedSiteStore(get_settings().crawl_store_path, site) as store:
        return run_sync(crawl_limited(config, store=store, limit=limit, on_progress=reporter))
