"""``audit_site``: crawl a site (whole, or in shards across workers), audit it in batches, diff against
the last crawl, report."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Self

from prefect import flow, get_run_logger
from prefect.utilities.annotations import quote
from pydantic import BaseModel, ConfigDict, Field, model_validator

from blocks.site import load_site_config
from flows.audit_shard import ShardParams, run_shard
from sitesteward.audit import diff_pages, pages_needing_refresh
from sitesteward.crawl import CrawlStore, site_key
from sitesteward.crawl.limits import HostLimitSpec
from sitesteward.crawl.shard import ShardPlanner, partition, shard_config
from sitesteward.facts import FactsCollector
from sitesteward.models import AuditThresholds, CrawlConfig, CrawlResult, Finding
from sitesteward.settings import get_settings
from tasks.audit import audit_pages, audit_site_wide, write_report
from tasks.common import result_storage
from tasks.crawl import crawl_pages, crawl_shard, discover_site


class AuditParams(BaseModel):
    """Parameters of ``audit_site`` (what the Prefect UI shows as the run form).

    The site comes either inline (``crawl`` and optionally ``thresholds``) or from a ``SiteConfig``
    block (``site_block``): exactly one of the two.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    crawl: CrawlConfig | None = Field(
        default=None, description="What to crawl and how politely (or give site_block instead)."
    )
    site_block: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Name of a SiteConfig block holding the site, its politeness and thresholds.",
    )
    thresholds: AuditThresholds | None = Field(
        default=None, description="Audit thresholds with inline crawl values (default: the defaults)."
    )
    report_json: str | None = Field(default=None, description="Write the JSON report here.")
    report_csv: str | None = Field(default=None, description="Write the findings CSV here.")
    batch_size: int = Field(default=250, ge=1, le=10_000, description="Pages audited per task run.")
    shards: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Split the crawl into this many shards by URL hash (1: one crawl, as before).",
    )
    shard_deployment: str | None = Field(
        default=None,
        description=(
            "With shards > 1: run each shard as a run of this deployment (e.g. audit_shard/audit-shard) so "
            "the work pool's workers share the crawl; empty: as concurrent tasks of this run."
        ),
    )
    host_limit: HostLimitSpec = Field(
        default_factory=HostLimitSpec,
        description=(
            "local: concurrency_per_host and requests_per_second per process (shards split them); "
            "redis: both bound each host across every worker sharing the Redis."
        ),
    )

    @model_validator(mode="after")
    def _one_site(self) -> Self:
        if (self.crawl is None) == (self.site_block is None):
            raise ValueError("give exactly one of crawl (inline values) or site_block (a SiteConfig block)")
        if self.site_block is not None and self.thresholds is not None:
            raise ValueError(
                "thresholds come from the SiteConfig block: leave thresholds empty with site_block"
            )
        if self.host_limit.backend == "redis" and not self.host_limit.url:
            raise ValueError("host_limit redis needs a url (redis://host:port/db)")
        return self


class ResolvedSite(BaseModel):
    """The crawl and thresholds an audit runs with, whether given inline or by block name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    crawl: CrawlConfig
    thresholds: AuditThresholds


def resolve_site(params: AuditParams) -> ResolvedSite:
    """The audit's crawl and thresholds: inline values, or the ``SiteConfig`` block named ``site_block``.

    Raises:
        ConfigurationError: no SiteConfig block has that name.
    """
    if params.site_block is not None:
        block = load_site_config(params.site_block)
        return ResolvedSite(crawl=block.crawl_config(), thresholds=block.audit_thresholds())
    assert params.crawl is not None  # the validator guarantees one of the two
    return ResolvedSite(crawl=params.crawl, thresholds=params.thresholds or AuditThresholds())


class AuditSummary(BaseModel):
    """What ``audit_site`` returns: enough for ``refresh_site`` to plan jobs without re-reading."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    site: str
    pages: int
    findings: list[Finding]
    refresh_needed: list[str]
    stats: dict[str, object]
    report_json: str | None = None


@flow(name="audit_site", log_prints=False, persist_result=False)
def audit_site(params: AuditParams) -> AuditSummary:
    """Crawl and audit a site.

    Needs: network reach to the site (loopback only when ``allow_private``); the crawl store in the
    data directory (``SITESTEWARD_DATA_DIR``) for conditional re-crawls and change detection; the
    ``SiteConfig`` block when ``site_block`` names one; Redis with ``host_limit`` redis; with
    ``shard_deployment``, that deployment and workers on its pool.
    """
    logger = get_run_logger()
    resolved = resolve_site(params)
    config, thresholds = resolved.crawl, resolved.thresholds
    site = site_key(config)
    with CrawlStore(get_settings().crawl_store_path) as store:
        previous = store.previous_hashes(site)

    if params.shards > 1:
        result = FactsCollector().crawl(_crawl_in_shards(config, params, hints=list(previous)))
    else:
        result = crawl_pages(config, params.host_limit)
    logger.info("crawled %d pages of %s", len(result.pages), site)

    storage = result_storage()
    batch_task = audit_pages.with_options(result_storage=storage)
    today = date.today()
    # quote(): pages are plain data, never futures; without it Prefect walks every field of every page
    # of every argument looking for upstream dependencies (the biggest cost on large sites). Prefect's
    # type hints do not know that quote() is unwrapped before the call, hence the ignores.
    futures = [
        batch_task.submit(quote(result.pages[i : i + params.batch_size]), thresholds, today)  # type: ignore[call-overload]
        for i in range(0, len(result.pages), params.batch_size)
    ]
    page_findings = [finding for future in futures for finding in future.result().findings]
    # audit_site_wide returns the page findings too, merged and de-duplicated with the site-wide ones.
    findings = audit_site_wide(quote(result), quote(page_findings), thresholds).findings  # type: ignore[call-overload]
    changes = diff_pages(previous, result.pages)
    built = write_report(  # type: ignore[call-overload]
        quote(result),
        quote(findings),
        quote(changes),
        Path(params.report_json) if params.report_json else None,
        Path(params.report_csv) if params.report_csv else None,
    )
    return AuditSummary(
        site=site,
        pages=len(result.pages),
        findings=built.findings,
        refresh_needed=pages_needing_refresh(built.findings),
        stats=built.stats,
        report_json=params.report_json,
    )


def _crawl_in_shards(config: CrawlConfig, params: AuditParams, *, hints: list[str]) -> CrawlResult:
    """Discover, crawl the URLs in rounds of shards until no in-scope link is left, merge.

    Each round's shards run at once: as runs of ``shard_deployment`` (spread over the work pool's
    workers) or as tasks of this run (threads of this process). The planner hands every URL out once,
    so rounds end; the merged result is the one crawl of the site would give.
    """
    logger = get_run_logger()
    shared = params.host_limit.backend == "redis"
    discovery = discover_site(config, params.host_limit)
    planner = ShardPlanner(config, discovery, hints=hints)
    while urls := planner.next_round():
        parts = [part for part in partition(urls, params.shards) if part]
        shard_params = [
            ShardParams(
                config=shard_config(config, part, shards=params.shards, shared_limit=shared),
                site=planner.site,
                index=index,
                limit=params.host_limit,
            )
            for index, part in enumerate(parts)
        ]
        if params.shard_deployment:
            futures = [run_shard.submit(params.shard_deployment, shard) for shard in shard_params]
        else:
            futures = [
                crawl_shard.submit(shard.config, shard.site, shard.index, shard.limit)
                for shard in shard_params
            ]
        for future in futures:
            planner.add(future.result())
        logger.info("round %d: %d URLs in %d shards", planner.rounds, len(urls), len(parts))
    return planner.result()
