"""``audit_site``: crawl a site, audit it in batches, diff against the last crawl, report."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.utilities.annotations import quote
from pydantic import BaseModel, ConfigDict, Field

from sitesteward.audit import diff_pages, pages_needing_refresh
from sitesteward.crawl import CrawlStore, site_key
from sitesteward.models import AuditThresholds, CrawlConfig, Finding
from sitesteward.settings import get_settings
from tasks.audit import audit_pages, audit_site_wide, write_report
from tasks.common import result_storage
from tasks.crawl import crawl_pages


class AuditParams(BaseModel):
    """Parameters of ``audit_site`` (what the Prefect UI shows as the run form)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    crawl: CrawlConfig = Field(description="What to crawl and how politely.")
    thresholds: AuditThresholds = Field(default_factory=AuditThresholds)
    report_json: str | None = Field(default=None, description="Write the JSON report here.")
    report_csv: str | None = Field(default=None, description="Write the findings CSV here.")
    batch_size: int = Field(default=250, ge=1, le=10_000, description="Pages audited per task run.")


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
    data directory (``SITESTEWARD_DATA_DIR``) for conditional re-crawls and change detection.
    """
    logger = get_run_logger()
    site = site_key(params.crawl)
    with CrawlStore(get_settings().crawl_store_path) as store:
        previous = store.previous_hashes(site)

    result = crawl_pages(params.crawl)
    logger.info("crawled %d pages of %s", len(result.pages), site)

    storage = result_storage()
    batch_task = audit_pages.with_options(result_storage=storage)
    today = date.today()
    # quote(): pages are plain data, never futures; without it Prefect walks every field of every page
    # of every argument looking for upstream dependencies (the biggest cost on large sites). Prefect's
    # type hints do not know that quote() is unwrapped before the call, hence the ignores.
    futures = [
        batch_task.submit(quote(result.pages[i : i + params.batch_size]), params.thresholds, today)  # type: ignore[call-overload]
        for i in range(0, len(result.pages), params.batch_size)
    ]
    page_findings = [finding for future in futures for finding in future.result()]
    # audit_site_wide returns the page findings too, merged and de-duplicated with the site-wide ones.
    findings = audit_site_wide(quote(result), quote(page_findings), params.thresholds)  # type: ignore[call-overload]
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
