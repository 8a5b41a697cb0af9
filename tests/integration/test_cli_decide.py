"""`sitesteward approve --draft SHA`: a reviewer never decides on a draft they did not read."""

from __future__ import annotations

from typer.testing import CliRunner

from sitesteward.cli import app
from sitesteward.ledger import Decision, JobState, Ledger
from sitesteward.settings import get_settings
from tests.integration.test_ledger import DRAFT_A, advance_to, submit


def _job_awaiting_review() -> str:
    with Ledger.open(get_settings().ledger_url) as ledger:
        job = advance_to(ledger, submit(ledger), JobState.awaiting_review)
        assert job.draft_sha == DRAFT_A
        return job.job_id


def _approve(job_id: str, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["approve", job_id, "--reviewer", "Ann", "--no-resume", *extra], catch_exceptions=False
    )
    return result.exit_code, result.output


def test_a_draft_that_changed_since_it_was_read_is_not_approved() -> None:
    job_id = _job_awaiting_review()
    code, output = _approve(job_id, "--draft", "0123456789ab")
    assert code != 0 and "now waits on draft" in output and "sitesteward show" in output
    with Ledger.open(get_settings().ledger_url) as ledger:
        approval = ledger.get_approval(job_id, DRAFT_A)
        assert approval is None or approval.pending  # no decision was recorded


def test_the_draft_that_was_read_is_approved_and_show_names_it() -> None:
    job_id = _job_awaiting_review()
    shown = CliRunner().invoke(app, ["show", job_id], catch_exceptions=False).output
    assert f"--draft {DRAFT_A[:12]}" in " ".join(shown.split())  # rich may wrap the line
    code, output = _approve(job_id, "--draft", DRAFT_A[:12].upper())
    assert code == 0, output
    with Ledger.open(get_settings().ledger_url) as ledger:
        approval = ledger.get_approval(job_id, DRAFT_A)
        assert approval is not None and approval.decision is Decision.approve


def test_a_too_short_draft_prefix_is_refused() -> None:
    job_id = _job_awaiting_review()
    code, output = _approve(job_id, "--draft", "0123")
    assert code != 0 and "at least the first 8 characters" in output
