"""The crawl as one task: the async crawler does its own per-URL retries, politeness and caps."""

from __future__ import annotations

import asyncio
import re

from prefect import task

from sitesteward.crawl import CrawlStore, crawl_site
from sitesteward.models import CrawlConfig, CrawlResult
from sitesteward.settings import get_settings
from tasks.progress import ProgressReporter


def _artifact_key(site: str) -> str:
    # Artifact keys allow lower-case letters, digits and dashes only.
    return "crawl-progress-" + re.sub(r"[^a-z0-9]+", "-", site.lower()).strip("-")[:60]


@task(name="crawl_pages", retries=0, persist_result=False, log_prints=False)
def crawl_pages(config: CrawlConfig) -> CrawlResult:
    """Crawl the site (spider, sitemaps, link checks) with conditional requests against the store.

    Not retried by Prefect: the crawler retries transient failures per URL, and a crawl that failed
    as a whole (bad configuration) will not succeed on a second try.
    """
    settings = get_settings()
    reporter = ProgressReporter(_artifact_key(config.start_urls[0]))
    with CrawlStore(settings.crawl_store_path) as store:
        # The task is sync so any flow (sync or async) can call it; the crawler runs its own loop.
        return asyncio.run(crawl_site(config, store=store, on_progress=reporter))
