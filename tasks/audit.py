"""Audit tasks: per-page checks in batches (Prefect overhead per batch, not per page), site-wide checks,
the report files and the artifacts people read in the Prefect UI."""

from __future__ import annotations

import base64
import hashlib
from datetime import date
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import TaskRunContext
from pydantic import TypeAdapter

from sitesteward import audit, report
from sitesteward.facts import AuditCrawl, PageFacts
from sitesteward.models import AuditReport, AuditThresholds, Contract, Finding, PageChange
from tasks.common import CODE_VERSION, stable_hash

_VOLATILE = {"elapsed_ms"}
#: Part of the batch cache key: bump when what a batch returns changes shape.
_BATCH_FORMAT = "findings-v2"


class Findings(Contract):
    """A task's findings in one object.

    Prefect links every element of a returned list to the task's state (an entry, a tuple and a weak
    reference in the flow run's context: ~250 bytes a finding, 50 MB for 200,000 findings, held to the
    end of the run); a model is linked once, as one result.
    """

    findings: list[Finding]


_FACTS: TypeAdapter[PageFacts] = TypeAdapter(PageFacts)


def _batch_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    # The key covers what the checks read: page facts (not timings), thresholds, the day (stale_date
    # depends on it) and the code version. A changed page changes its text hash and so the key.
    digest = hashlib.sha256()
    for page in parameters["pages"]:
        digest.update(_FACTS.dump_json(page, exclude=_VOLATILE))
    return "audit_pages:" + stable_hash(
        digest.hexdigest(), parameters["thresholds"], parameters["today"], CODE_VERSION, _BATCH_FORMAT
    )


@task(
    name="audit_pages",
    cache_key_fn=_batch_key,
    persist_result=True,
    result_serializer="json",
    retries=0,
)
def audit_pages(pages: list[PageFacts], thresholds: AuditThresholds, today: date) -> Findings:
    """Per-page checks for one batch of pages."""
    findings: list[Finding] = []
    for page in pages:
        findings.extend(audit.audit_page(page, thresholds, today=today))
    return Findings(findings=findings)


@task(name="audit_site_wide", persist_result=False)
def audit_site_wide(
    result: AuditCrawl, page_findings: list[Finding], thresholds: AuditThresholds
) -> Findings:
    """Checks that need the whole crawl: duplicates, links, redirects, canonicals, sitemaps, orphans."""
    return Findings(findings=audit.audit_site(result, page_findings, thresholds))


@task(name="write_report", persist_result=False)
def write_report(
    result: AuditCrawl,
    findings: list[Finding],
    changes: dict[str, PageChange],
    json_path: Path | None,
    csv_path: Path | None,
) -> AuditReport:
    """Build the report, write the JSON/CSV files asked for and leave the artifacts."""
    built = report.build_report(result, findings, changes)
    if json_path is not None:
        report.write_json(built, json_path)
    if csv_path is not None:
        report.write_csv(built.findings, csv_path)
    by_code = {code: int(count) for code, count in dict(built.stats.get("findings_by_code", {})).items()}
    chart = report.chart_svg(by_code)
    if json_path is not None:
        json_path.with_suffix(".svg").write_text(chart, encoding="utf-8")
    rows = report.findings_table(built)
    create_table_artifact(table=rows[:5000], key="audit-findings", description=f"Findings for {built.site}")
    # The chart travels inside the markdown as a data URI: the UI renders images, not raw SVG markup.
    image = base64.b64encode(chart.encode()).decode()
    chart_markdown = f"\n\n![Findings by code](data:image/svg+xml;base64,{image})\n"
    markdown = report.summary_markdown(built) + chart_markdown
    create_markdown_artifact(markdown=markdown, key="audit-summary")
    return built
