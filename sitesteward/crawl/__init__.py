"""The crawler: safe, polite, conditional fetching of one site and checks of its outgoing links.

Public API::

    crawl_site(config, *, store=None, client=None, resolver=None, on_progress=None, keep_text=False,
               on_page=None, collect_pages=True)
    fetch_page(url, *, client, config=None, bypass_cache=True, resolver=None, obey_robots=True)
    fetch_resource(url, *, client, config=None, max_bytes=None, resolver=None, obey_robots=True)
    build_client(config, guard=None, *, user_agent=None)
    CrawlStore(path=None), CrawlProgress, AddressGuard, site_key(config)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sitesteward.lazy import lazy_attributes

if TYPE_CHECKING:
    from sitesteward.crawl.crawler import classify_link, crawl_site, site_key
    from sitesteward.crawl.fetch import build_client, parse_retry_after
    from sitesteward.crawl.guard import AddressGuard, Resolver, is_forbidden_address, parse_ipv4_lenient
    from sitesteward.crawl.page import FetchedResource, fetch_page, fetch_resource
    from sitesteward.crawl.progress import CrawlProgress
    from sitesteward.crawl.store import CrawlStore, Validators

#: Where each name lives, loaded on first use: an extraction worker imports
#: ``sitesteward.crawl.worker`` and must not pay for the HTTP client and the crawler (20 MiB, 0.2 s).
_MODULES = {
    "AddressGuard": "sitesteward.crawl.guard",
    "CrawlProgress": "sitesteward.crawl.progress",
    "CrawlStore": "sitesteward.crawl.store",
    "FetchedResource": "sitesteward.crawl.page",
    "Resolver": "sitesteward.crawl.guard",
    "Validators": "sitesteward.crawl.store",
    "build_client": "sitesteward.crawl.fetch",
    "classify_link": "sitesteward.crawl.crawler",
    "crawl_site": "sitesteward.crawl.crawler",
    "fetch_page": "sitesteward.crawl.page",
    "fetch_resource": "sitesteward.crawl.page",
    "is_forbidden_address": "sitesteward.crawl.guard",
    "parse_ipv4_lenient": "sitesteward.crawl.guard",
    "parse_retry_after": "sitesteward.crawl.fetch",
    "site_key": "sitesteward.crawl.crawler",
}

__getattr__ = lazy_attributes(__name__, _MODULES)


__all__ = [
    "AddressGuard",
    "CrawlProgress",
    "CrawlStore",
    "FetchedResource",
    "Resolver",
    "Validators",
    "build_client",
    "classify_link",
    "crawl_site",
    "fetch_page",
    "fetch_resource",
    "is_forbidden_address",
    "parse_ipv4_lenient",
    "parse_retry_after",
    "site_key",
]
