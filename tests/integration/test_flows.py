"""The Prefect flows end to end against a real Prefect API (``prefect_test_harness``) and real servers.

The bundled example site is copied to a temporary content directory, served on loopback with its cited
sources on a second port, then audited, refreshed, approved, published and verified through the flows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.audit_site import AuditParams, audit_site
from flows.refresh_page import RefreshParams, refresh_page
from flows.refresh_site import refresh_site
from sitesteward.cli_jobs import decide
from sitesteward.ledger import Decision, JobState, Ledger
from sitesteward.models import CrawlConfig
from sitesteward.settings import get_settings
from tests.integration.conftest import Demo

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_api")]


def _ledger() -> Ledger:
    return Ledger.open(get_settings().ledger_url)


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*.md"))}


def test_audit_flow_reports_findings_and_recrawls_conditionally(demo: Demo, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    crawl = CrawlConfig(start_urls=[demo.site.base_url + "/"], allow_private=True)
    first = audit_site(AuditParams(crawl=crawl, report_json=str(report)))
    codes = {finding.code for finding in first.findings}
    assert {"stale_date", "broken_link", "redirected_link", "title_length", "orphan_page"} <= codes
    assert report.exists() and '"findings"' in report.read_text()
    # An alias that redirects is not a duplicate of its target.
    assert not any(f.code == "duplicate_title" and "/guides/deploy-hooks/" in f.url for f in first.findings)
    second = audit_site(AuditParams(crawl=crawl))
    assert second.stats["pages_not_modified"] >= first.pages - 5
    assert second.stats["changes"].get("changed", 0) == 0  # type: ignore[union-attr]


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on the default SQLite ledger and again on PostgreSQL."""
    if request.param == "postgres":
        monkeypatch.setenv("SITESTEWARD_DATABASE_URL", request.getfixturevalue("postgres_url"))
        get_settings.cache_clear()
    return str(request.param)


def test_refresh_loop_publishes_once_and_a_rerun_does_nothing(demo: Demo, ledger_backend: str) -> None:
    assert get_settings().ledger_url.startswith("postgresql" if ledger_backend == "postgres" else "sqlite")
    before = _snapshot(demo.root)
    summary = refresh_site(demo.params())
    waiting = [job for job in summary.jobs if job.state == "awaiting_review"]
    assert waiting, summary
    assert _snapshot(demo.root) == before  # nothing is written before a human approves

    why_static = next(job for job in waiting if job.job_id and "why-static" in _page(job.job_id))
    for job in waiting:
        decide(job.job_id, Decision.approve, "tester", "looks right", resume=True)

    ledger = _ledger()
    try:
        job = ledger.get_job(why_static.job_id)
        assert job.state is JobState.monitoring, (job.state, job.failure_reason)
        effects = ledger.list_effects(job.job_id)
        assert len(effects) == 1 and effects[0].status.value in {"applied", "reconciled"}
        assert ledger.verify_chain(job.job_id).ok
        kinds = [record.kind for record in ledger.evidence(job.job_id)]
        assert {"comparison", "draft", "review", "approval", "verification"} <= set(kinds)
    finally:
        ledger.close()
    text = (demo.root / "why-static.md").read_text()
    assert "57%" in text and "42% of teams" not in text
    after_first = _snapshot(demo.root)

    # The same command again: no new draft, no new approval request, no write.
    drafts_before = _count("draft")
    approvals_before = _count("approval")
    again = refresh_site(demo.params())
    assert not [job for job in again.jobs if job.state == "awaiting_review"]
    assert _snapshot(demo.root) == after_first
    assert _count("draft") == drafts_before
    assert _count("approval") == approvals_before


def test_rejected_draft_is_never_published(demo: Demo) -> None:
    before = _snapshot(demo.root)
    summary = refresh_site(demo.params())
    waiting = [job for job in summary.jobs if job.state == "awaiting_review"]
    assert waiting
    job_id = waiting[0].job_id
    decide(job_id, Decision.reject, "tester", "no", resume=True)
    outcome = refresh_page(RefreshParams(job_id=job_id))
    assert outcome.state == "rejected" and outcome.stop_reason == "rejected"
    assert _snapshot(demo.root) == before


def _page(job_id: str) -> str:
    ledger = _ledger()
    try:
        return ledger.get_job(job_id).page_url
    finally:
        ledger.close()


def _count(kind: str) -> int:
    ledger = _ledger()
    try:
        return sum(len(ledger.evidence(job.job_id, kind)) for job in ledger.list_jobs())
    finally:
        ledger.close()


def test_no_setting_makes_a_flow_approve_by_itself(demo: Demo, monkeypatch: pytest.MonkeyPatch) -> None:
    # SITESTEWARD_APPROVE_ALL belongs to the demo command; a worker that happens to have it set must
    # still wait for a person.
    monkeypatch.setenv("SITESTEWARD_APPROVE_ALL", "true")
    get_settings.cache_clear()
    before = _snapshot(demo.root)
    summary = refresh_site(demo.params())
    assert summary.jobs and all(job.state != "monitoring" for job in summary.jobs)
    waiting = [job for job in summary.jobs if job.state == "awaiting_review"]
    assert waiting
    ledger = _ledger()
    try:
        for job in waiting:
            approval = ledger.get_approval(job.job_id, job.draft_sha or "")
            assert approval is not None and approval.pending
            assert ledger.list_effects(job.job_id) == []
    finally:
        ledger.close()
    assert _snapshot(demo.root) == before


def test_audit_writes_a_chart_beside_the_report(demo: Demo, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    crawl = CrawlConfig(start_urls=[demo.site.base_url + "/"], allow_private=True)
    audit_site(AuditParams(crawl=crawl, report_json=str(report)))
    chart = report.with_suffix(".svg").read_text()
    assert chart.startswith("<svg") and "stale_date" in chart
