"""The Prefect UI is the approval desk: a reviewer resumes a suspended ``refresh_page`` run in a real browser.

A real ``prefect server start`` (SQLite, UI on), the ``refresh-page`` deployment served by
``python -m deployments.serve``, the example site on loopback. The job's run suspends at the approval step;
headless Chromium opens the run page in the new UI (``/v2/``), picks *Resume* from the run's menu, fills
the form Prefect generates from ``ApprovalForm`` and submits it. The run must then finish, the page carry
the edit exactly once, and the ledger hold the reviewer's name with channel ``ui``.

Screenshots of the suspended run and the filled form are kept under ``tests/artifacts/``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from sitesteward.ledger import Channel, Decision, JobState
from sitesteward.models import Edit
from sitesteward.publish import apply_edits
from tests.conftest import service_unavailable
from tests.e2e.conftest import (
    ARTIFACTS,
    Stack,
    deployment_stack,
    is_completed,
    is_suspended,
    start_job_run,
    use_stack_data_dir,
    wait_for_run,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.prefect]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REVIEWER = "Rita Reviewer"
NOTES = "figures match the 2025 survey"
UI_TIMEOUT_MS = 60_000  # the UI's first load on a busy machine (SPA bundle + API calls)


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium and the Playwright driver (skip locally, fail in CI, when either is missing)."""
    if shutil.which(str(CHROMIUM)) is None:
        service_unavailable("Chromium", f"{CHROMIUM} not found (scripts/install_browser.sh installs it)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        service_unavailable("Playwright", "the playwright package is not installed (pip install playwright)")
    return CHROMIUM


@pytest.fixture(scope="module")
def stack(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with deployment_stack(tmp_path_factory.mktemp("ui-stack"), ui=True) as running:
        yield running


def _resume_in_the_ui(chromium: Path, run_url: str) -> None:
    """Open the run page, pick Resume from its menu, fill and submit the generated form.

    Playwright's sync API runs an event loop in this thread while it is open, so it is opened only here
    (Prefect's sync calls and the crawler's ``asyncio.run`` must not run inside it).
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.goto(run_url)
            page.get_by_text("Suspended").first.wait_for()
            page.screenshot(path=str(ARTIFACTS / "ui-approval-1-suspended-run.png"), full_page=True)

            page.get_by_role("button", name="Open menu").first.click()
            page.get_by_role("menuitem", name="Resume").click()
            dialog = page.get_by_role("dialog")
            # The form's description is the review the flow wrote: the reviewer sees what they approve.
            dialog.get_by_text("Review:").wait_for()
            dialog.get_by_label("Select Decision").click()
            page.get_by_role("option", name="approve", exact=True).click()
            dialog.get_by_label("Reviewer").fill(REVIEWER)
            dialog.get_by_label("Notes (Optional)").fill(NOTES)
            page.screenshot(path=str(ARTIFACTS / "ui-approval-2-filled-form.png"), full_page=True)
            dialog.get_by_role("button", name="Resume", exact=True).click()
            dialog.wait_for(state="hidden")
        finally:
            browser.close()


def test_reviewer_resumes_the_suspended_run_in_the_prefect_ui(
    stack: Stack, chromium: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_stack_data_dir(stack, monkeypatch)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    original = stack.markdown("why-static.md")
    job_id = stack.job_for("/why-static/")

    run_id = start_job_run(job_id)
    wait_for_run(run_id, is_suspended, "suspended for review", timeout=180)
    job = stack.job(job_id)
    assert job.state is JobState.awaiting_review and job.flow_run_id == str(run_id)
    assert stack.markdown("why-static.md") == original

    _resume_in_the_ui(chromium, f"{stack.server.url}/v2/runs/flow-run/{run_id}")
    wait_for_run(run_id, is_completed, "completed after the UI resume", timeout=180)

    approval = stack.approval(job_id)
    assert approval is not None
    recorded = (approval.decision, approval.reviewer, approval.channel)
    assert recorded == (Decision.approve, REVIEWER, Channel.ui)
    assert approval.notes == NOTES

    job = stack.job(job_id)
    assert job.state is JobState.monitoring, (job.state, job.failure_reason)
    ledger = stack.ledger()
    try:
        effects = ledger.list_effects(job_id)
        draft = ledger.latest_evidence(job_id, "draft")
    finally:
        ledger.close()
    assert len(effects) == 1 and effects[0].status.value in {"applied", "reconciled"}, effects
    assert draft is not None
    edits = [Edit.model_validate(edit) for edit in draft.payload["draft"]["edits"]]
    published = stack.markdown("why-static.md")
    assert published == apply_edits(original, edits) != original  # the edit, applied exactly once
    assert "57%" in published and "42% of teams" not in published
