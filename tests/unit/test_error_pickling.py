"""Errors survive pickling with their fields: Prefect pickles task exceptions across its result layer."""

from __future__ import annotations

import pickle

from sitesteward.errors import BudgetExceeded, RetryableStatus


def test_retryable_status_keeps_url_status_and_retry_after() -> None:
    copy = pickle.loads(pickle.dumps(RetryableStatus("https://a.test/x", 503, retry_after=2.5)))
    assert isinstance(copy, RetryableStatus)
    assert (copy.url, copy.status, copy.retry_after, str(copy)) == (
        "https://a.test/x",
        503,
        2.5,
        "https://a.test/x answered 503",
    )


def test_budget_exceeded_keeps_its_numbers() -> None:
    original = BudgetExceeded("over budget", limit=100, amount=150)
    copy = pickle.loads(pickle.dumps(original))
    assert isinstance(copy, BudgetExceeded) and (copy.limit, copy.amount) == (100, 150)
