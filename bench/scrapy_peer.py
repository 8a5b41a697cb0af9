"""The peer: a plain Scrapy spider doing the same job as a sitesteward crawl, in its own process.

Settings are Scrapy's defaults except: ``CONCURRENT_REQUESTS=32`` (``CONCURRENT_REQUESTS_PER_DOMAIN``
stays at Scrapy's default 8, the same as sitesteward's default per-host concurrency, unless
``--per-domain`` says otherwise), ``ROBOTSTXT_OBEY``, no AutoThrottle, no HTTP cache, ``LOG_LEVEL=WARNING``,
telnet console off, and ``CLOSESPIDER_PAGECOUNT`` as the page cap. Links are followed with a
``LinkExtractor`` restricted to the start host; every HTML page yields its title, first h1 and meta
description (written as JSON lines when ``--items`` is given, as sitesteward writes its report).

    python -m bench.scrapy_peer http://127.0.0.1:8080/ --max-pages 2000 --out /tmp/scrapy.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scrapy import Request, Spider
from scrapy.crawler import CrawlerProcess
from scrapy.http import HtmlResponse, Response
from scrapy.linkextractors import LinkExtractor


def extract_page(response: HtmlResponse) -> dict[str, Any]:
    """The fields both crawlers extract from a page: title, first h1, meta description."""
    return {
        "url": response.url,
        "status": response.status,
        "title": (response.css("title::text").get() or "").strip(),
        "h1": " ".join(response.css("h1 ::text").getall()).strip(),
        "description": (response.xpath("//meta[@name='description']/@content").get() or "").strip(),
    }


class PeerSpider(Spider):
    """Spider the start URL's host; yield one item per HTML page."""

    name = "bench_peer"

    def __init__(self, start_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        parts = urlsplit(start_url)
        self.start_url = start_url
        self.allowed_domains = [parts.hostname or ""]
        # LinkExtractor compares the netloc, port included ("127.0.0.1:8080"); the offsite filter, the host.
        self.link_extractor = LinkExtractor(allow_domains=[parts.netloc])
        self.html_pages = 0

    async def start(self) -> Any:  # Scrapy >= 2.13
        yield Request(self.start_url, callback=self.parse)

    def parse(self, response: Response, **kwargs: Any) -> Iterator[Any]:
        if not isinstance(response, HtmlResponse):
            return
        self.html_pages += 1
        yield extract_page(response)
        for link in self.link_extractor.extract_links(response):
            yield response.follow(link.url, callback=self.parse)


def crawl_settings(max_pages: int, per_domain: int, items: Path | None) -> dict[str, Any]:
    """The Scrapy settings of the peer (see the module docstring)."""
    settings: dict[str, Any] = {
        "CONCURRENT_REQUESTS": 32,
        "CONCURRENT_REQUESTS_PER_DOMAIN": per_domain,
        "ROBOTSTXT_OBEY": True,
        "AUTOTHROTTLE_ENABLED": False,
        "HTTPCACHE_ENABLED": False,
        "LOG_LEVEL": "WARNING",
        "TELNETCONSOLE_ENABLED": False,
        "CLOSESPIDER_PAGECOUNT": max_pages,
    }
    if items is not None:
        settings["FEEDS"] = {str(items): {"format": "jsonlines", "overwrite": True}}
    return settings


def main(argv: list[str] | None = None) -> int:
    """Crawl, then write a JSON summary (pages, responses, statuses, crawl seconds) to ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m bench.scrapy_peer", description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--max-pages", type=int, default=2000)
    parser.add_argument("--per-domain", type=int, default=8, help="CONCURRENT_REQUESTS_PER_DOMAIN")
    parser.add_argument("--out", type=Path, required=True, help="write the summary JSON here")
    parser.add_argument("--items", type=Path, default=None, help="write the extracted items here")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    process = CrawlerProcess(settings=crawl_settings(args.max_pages, args.per_domain, args.items))
    crawler = process.create_crawler(PeerSpider)
    process.crawl(crawler, start_url=args.url)
    process.start()
    elapsed = time.perf_counter() - started
    stats = crawler.stats.get_stats() if crawler.stats else {}
    spider = crawler.spider
    start_time, finish_time = stats.get("start_time"), stats.get("finish_time")
    summary = {
        "pages": getattr(spider, "html_pages", 0),
        "responses": stats.get("downloader/response_count", 0),
        "statuses": {
            key.rsplit("/", 1)[1]: value
            for key, value in stats.items()
            if key.startswith("downloader/response_status_count/")
        },
        "items": stats.get("item_scraped_count", 0),
        "crawl_seconds": (finish_time - start_time).total_seconds() if start_time and finish_time else None,
        "process_seconds_after_imports": elapsed,
        "finish_reason": stats.get("finish_reason"),
        "settings": crawl_settings(args.max_pages, args.per_domain, None),
    }
    args.out.write_text(json.dumps(summary, indent=2, default=str))
    return 0 if summary["pages"] else 1


if __name__ == "__main__":
    sys.exit(main())
