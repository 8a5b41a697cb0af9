"""A cited source changes between two jobs on the same page: the second job sees it and redrafts."""

from __future__ import annotations

import pytest

from flows.refresh_page import RefreshParams, refresh_page
from sitesteward.cli_jobs import decide
from sitesteward.jobs import JobInputs
from sitesteward.ledger import Decision, Ledger
from sitesteward.models import Finding, Severity
from sitesteward.settings import get_settings
from tests.integration.conftest import Demo

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_api")]
SURVEY = "/reports/static-sites-survey"


def _submit(demo: Demo, code: str, trigger: str) -> str:
    page = f"{demo.site.base_url}/why-static/"
    inputs = JobInputs(
        site_id="sources",
        base_url=demo.site.base_url + "/",
        page_url=page,
        content_root=str(demo.root),
        findings=[Finding(code=code, severity=Severity.warning, url=page)],
        allow_private=True,
        max_links=0,
    )
    with Ledger.open(get_settings().ledger_url) as ledger:
        return ledger.submit_job("sources", page, goal="t", trigger=trigger, inputs=inputs).job.job_id


def test_a_changed_source_is_found_against_the_last_verified_version(demo: Demo) -> None:
    # First version: the survey still says 42%, so the page is right; a description fix is published.
    demo.sources.use_version(SURVEY, "static-sites-survey-2019")
    first = _submit(demo, "missing_meta_description", "first")
    (demo.root / "why-static.md").write_text(
        (demo.root / "why-static.md").read_text().replace("description:", "summary:", 1)
    )
    assert refresh_page(RefreshParams(job_id=first)).state == "awaiting_review"
    decide(first, Decision.approve, "tester", None, resume=True)
    with Ledger.open(get_settings().ledger_url) as ledger:
        assert ledger.get_job(first).state.value == "monitoring"
        first_comparison = ledger.latest_evidence(first, "comparison").payload
        first_codes = {f["code"] for f in first_comparison["findings"]}
    assert "claim_unsupported" not in first_codes and "source_changed" not in first_codes

    # The survey is updated to 57%: the next job on the page compares with what was verified.
    demo.sources.clear_override(SURVEY)
    second = _submit(demo, "stale_date", "second")
    assert refresh_page(RefreshParams(job_id=second)).state == "awaiting_review"
    with Ledger.open(get_settings().ledger_url) as ledger:
        comparison = ledger.latest_evidence(second, "comparison").payload
        draft = ledger.latest_evidence(second, "draft").payload["draft"]
    codes = {f["code"] for f in comparison["findings"]}
    assert {"source_changed", "claim_unsupported"} <= codes
    assert comparison["diffs"], "source_changed comes with a readable diff"
    figure = next(edit for edit in draft["edits"] if edit["finding"] == "claim_unsupported")
    assert "57%" in figure["new"] and "42%" in figure["old"]
    assert figure["source_quote"] and "57%" in figure["source_quote"]
