"""Integration fixtures for the crawler: a scripted loopback server, stub DNS, quick configs."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from flows.audit_site import AuditParams
from flows.refresh_site import RefreshSiteParams
from sitesteward.cli import EXAMPLES, _prepare_demo_site
from sitesteward.demo.server import SiteServer, SourcesServer
from sitesteward.models import CrawlConfig
from tests.server import ScriptedServer

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine in a fresh event loop (no pytest-asyncio)."""
    return asyncio.run(coro)


def quick_config(start: str | list[str], **overrides: Any) -> CrawlConfig:
    """A crawl config for tests: fast backoff and timeouts, no sitemap discovery unless asked."""
    values: dict[str, Any] = {
        "start_urls": [start] if isinstance(start, str) else start,
        "allow_private": True,
        "use_sitemaps": False,
        "backoff_base_seconds": 0.01,
        "retry_after_cap_seconds": 2.0,
        "timeout_seconds": 3.0,
        "connect_timeout_seconds": 1.0,
    }
    values.update(overrides)
    return CrawlConfig(**values)


def stub_resolver(mapping: dict[str, list[str]]) -> Any:
    """A resolver answering from ``mapping``; unknown names fail like NXDOMAIN (and are counted)."""
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in mapping:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return mapping[host]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    """A started :class:`ScriptedServer` (stopped after the test)."""
    with ScriptedServer() as scripted:
        yield scripted


@dataclass
class Demo:
    site: SiteServer
    sources: SourcesServer
    root: Path

    def params(self, **overrides: object) -> RefreshSiteParams:
        crawl = CrawlConfig(start_urls=[self.site.base_url + "/"], allow_private=True, max_pages=200)
        values: dict[str, object] = {
            "audit": AuditParams(crawl=crawl),
            "site_id": "demo",
            "content_root": str(self.root),
            "budget": 50,
            "max_links": 0,
        }
        values.update(overrides)
        return RefreshSiteParams.model_validate(values)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    with SourcesServer(EXAMPLES / "sources") as sources:
        root = tmp_path / "site"
        _prepare_demo_site(root, sources.base_url)
        with SiteServer(root, sources_url=sources.base_url) as site:
            yield Demo(site, sources, root)
