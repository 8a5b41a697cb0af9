"""``SiteConfig``: one site's crawl scope, politeness and audit thresholds, editable in the Prefect UI."""

from __future__ import annotations

from typing import Any, ClassVar

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl

from blocks.loading import load_named
from sitesteward.models import AuditThresholds, CrawlConfig

DOCS_URL = HttpUrl("https://github.com/sitesteward/sitesteward/blob/main/docs/deploy.md")


class SiteConfig(Block):
    """The site a deployment audits: where it starts, what is in scope and how politely it is crawled.

    Holds no credentials. Flows turn it into the domain's :class:`~sitesteward.models.CrawlConfig` and
    :class:`~sitesteward.models.AuditThresholds` with :meth:`crawl_config` and :meth:`audit_thresholds`.
    """

    _block_type_name: ClassVar[str] = "Sitesteward Site Config"
    _documentation_url: ClassVar[HttpUrl | None] = DOCS_URL
    _code_example: ClassVar[str] = """
```python
from blocks import SiteConfig

site = SiteConfig.load("BLOCK_NAME")
crawl = site.crawl_config(max_pages=500)
```
"""

    base_url: str = Field(description="The site's start URL, such as https://example.com/.")
    sitemaps: list[str] = Field(
        default_factory=list, description="Extra sitemap URLs (robots.txt and /sitemap.xml are read anyway)."
    )
    include: list[str] = Field(
        default_factory=list, description="URL regexes; when set, a URL must match one to be crawled."
    )
    exclude: list[str] = Field(default_factory=list, description="URL regexes; a matching URL is skipped.")
    max_pages: int = Field(default=10_000, ge=1, le=1_000_000, description="Pages fetched per crawl at most.")
    concurrency_per_host: int = Field(default=4, ge=1, le=256, description="Concurrent requests per host.")
    requests_per_second: float | None = Field(
        default=2.0, gt=0, le=10_000, description="Requests per second per host (empty: no rate limit)."
    )
    allow_private: bool = Field(
        default=False, description="Allow private and loopback addresses (local sites and the demo only)."
    )
    thresholds: AuditThresholds = Field(
        default_factory=AuditThresholds, description="Audit thresholds (title and description lengths...)."
    )

    def crawl_config(self, **overrides: Any) -> CrawlConfig:
        """The domain's crawl configuration for this site.

        Args:
            **overrides: Any other :class:`~sitesteward.models.CrawlConfig` field (``max_depth``, ...).

        Returns:
            A validated, frozen ``CrawlConfig``.

        Raises:
            pydantic.ValidationError: an override is unknown or out of bounds.
        """
        values: dict[str, Any] = {
            "start_urls": [self.base_url],
            "sitemaps": list(self.sitemaps),
            "include": list(self.include),
            "exclude": list(self.exclude),
            "max_pages": self.max_pages,
            "concurrency_per_host": self.concurrency_per_host,
            "requests_per_second": self.requests_per_second,
            "allow_private": self.allow_private or None,
        }
        values.update(overrides)
        return CrawlConfig.model_validate(values)

    def audit_thresholds(self) -> AuditThresholds:
        """The audit thresholds for this site (a copy: the block stays editable)."""
        return AuditThresholds.model_validate(self.thresholds.model_dump())


def load_site_config(name: str) -> SiteConfig:
    """Load the ``SiteConfig`` block ``name`` (``my-site`` or ``sitesteward-site-config/my-site``).

    Needs the Prefect API (``PREFECT_API_URL``, or the ephemeral server).

    Raises:
        ConfigurationError: no SiteConfig block has that name (one line, for the CLI's exit code 2).
    """
    return load_named(SiteConfig, name)
