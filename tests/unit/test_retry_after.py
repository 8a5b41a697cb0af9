"""A peer's Retry-After is honoured by task retries (on top of the fixed backoff, capped)."""

from __future__ import annotations

import pytest

from sitesteward.errors import LLMRateLimited, PolicyViolation, RetryableStatus
from sitesteward.settings import get_settings
from tasks.common import MAX_RETRY_AFTER, extra_wait


@pytest.fixture(autouse=True)
def unscaled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITESTEWARD_RETRY_DELAY_SCALE", "1")
    get_settings.cache_clear()


def test_the_difference_to_the_scheduled_backoff_is_waited() -> None:
    assert extra_wait(RetryableStatus("https://a.test/", 503, retry_after=12.0), scheduled=2.0) == 10.0
    assert extra_wait(LLMRateLimited("slow down", retry_after=5.0), scheduled=10.0) == 0.0


def test_no_retry_after_or_a_permanent_error_adds_nothing() -> None:
    assert extra_wait(RetryableStatus("https://a.test/", 503), scheduled=2.0) == 0.0
    assert extra_wait(PolicyViolation("no"), scheduled=2.0) == 0.0


def test_a_year_long_retry_after_is_capped() -> None:
    year = 365 * 24 * 3600.0
    assert extra_wait(RetryableStatus("https://a.test/", 429, retry_after=year), scheduled=2.0) == (
        MAX_RETRY_AFTER - 2.0
    )
