"""Rule-based triage notes."""

from __future__ import annotations

import pytest

from sitesteward.triage import FailureRecord, classify, triage_note


@pytest.mark.parametrize(
    ("error_type", "failure_class"),
    [
        ("LLMRateLimited", "transient_upstream"),
        ("FetchTimeout", "transient_upstream"),
        ("RetryableStatus", "transient_upstream"),
        ("PageGone", "permanent_content"),
        ("InvalidModelOutput", "permanent_content"),
        ("ConfigurationError", "configuration"),
        ("PolicyViolation", "policy"),
        ("RobotsDisallowed", "policy"),
        ("KeyError", "unknown"),
    ],
)
def test_classify(error_type: str, failure_class: str) -> None:
    assert classify(error_type) == failure_class


def test_transient_is_retryable_until_the_budget_is_spent() -> None:
    one = [FailureRecord(step="draft", error_type="LLMRateLimited", message="429", retry_after=7)]
    note = triage_note(one, max_attempts=3)
    assert note.retryable and note.failure_class == "transient_upstream"
    assert note.next_action.startswith("retry after 7s")
    three = one * 3
    spent = triage_note(three, max_attempts=3)
    assert not spent.retryable and "budget spent (3/3)" in spent.next_action
    assert spent.summary.startswith("draft failed 3x with LLMRateLimited")


def test_latest_failure_decides_and_history_is_summarised() -> None:
    history = [
        FailureRecord(step="draft", error_type="LLMRateLimited"),
        FailureRecord(step="validate", error_type="PolicyViolation", message="edit 1 adds <script>"),
    ]
    note = triage_note(history)
    assert note.failure_class == "policy" and not note.retryable
    assert "also LLMRateLimited x1" in note.summary
    assert note.last_step == "validate" and note.attempts == 2
    assert "reviewer" in note.next_action


def test_no_history() -> None:
    assert triage_note([]).attempts == 0
