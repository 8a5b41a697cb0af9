"""The sitesteward error tree.

Every failure the domain package signals is one of these; adapters translate library exceptions at the
boundary (``raise PageGone(url) from exc``) so raw httpx or openai exceptions never escape.

    StewardError
    ├── TransientError                 retry with backoff (honour ``retry_after`` up to a cap)
    │   ├── FetchTimeout               connect/read/total-time timeout
    │   ├── ConnectFailed              DNS failure, refused or reset connection
    │   ├── RetryableStatus            408, 429, 5xx (``status``, ``retry_after``)
    │   └── LLMRateLimited             the model endpoint said slow down
    └── PermanentError                 never retried
        ├── PageGone                   404 / 410
        ├── AccessDenied               401 / 403 / bot walls
        ├── RobotsDisallowed           robots.txt forbids the URL for our user agent
        ├── AddressRefused             private / loopback / link-local target not allowed
        ├── NotHtml                    the response is not an HTML document
        ├── TooLarge                   the body exceeded the byte cap
        ├── InvalidUrl                 unparseable or unsupported URL
        ├── InvalidModelOutput         the LLM answer failed validation
        ├── PolicyViolation            a draft or target broke a guard rail
        ├── StaleVersion               a compare-and-set lost the race (fencing)
        ├── IllegalTransition          a job state change the state machine forbids
        ├── ConfigurationError         bad settings, unknown block, unreachable server
        └── BudgetExceeded             a job's token or cost budget would be (or was) overspent
"""

from __future__ import annotations

from typing import Any

#: HTTP statuses worth retrying, as data (like scrapy's ``RETRY_HTTP_CODES``).
RETRY_HTTP_CODES: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504, 522, 524})

#: Statuses that a bot wall answers with: the link is *blocked*, not broken.
BLOCKED_HTTP_CODES: frozenset[int] = frozenset({401, 403, 429, 999})


class StewardError(Exception):
    """Base class of every error sitesteward raises on purpose."""


class TransientError(StewardError):
    """A failure that may go away: retry with backoff.

    Args:
        message: What went wrong, for people.
        retry_after: Seconds the peer asked us to wait, if it said so.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FetchTimeout(TransientError):
    """The request timed out (connect, read, or the total time cap)."""


class ConnectFailed(TransientError):
    """DNS failure, refused or reset connection."""


class RetryableStatus(TransientError):
    """The server answered with a retryable status (408, 429, 5xx)."""

    def __init__(self, url: str, status: int, *, retry_after: float | None = None) -> None:
        super().__init__(f"{url} answered {status}", retry_after=retry_after)
        self.url = url
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its own arguments, not from ``args`` (the message): Prefect pickles task errors.
        return (_rebuild_retryable_status, (self.url, self.status, self.retry_after))


def _rebuild_retryable_status(url: str, status: int, retry_after: float | None) -> RetryableStatus:
    return RetryableStatus(url, status, retry_after=retry_after)


class LLMRateLimited(TransientError):
    """The model endpoint rate-limited us or was temporarily unavailable."""


class PermanentError(StewardError):
    """A failure that retrying will not fix."""


class PageGone(PermanentError):
    """404 or 410."""


class AccessDenied(PermanentError):
    """401, 403 or a bot wall."""


class RobotsDisallowed(PermanentError):
    """robots.txt forbids the URL for the configured user agent."""


class AddressRefused(PermanentError):
    """The target resolves to a private, loopback or link-local address that is not allowed."""


class NotHtml(PermanentError):
    """The response is not an HTML document."""


class TooLarge(PermanentError):
    """The response body exceeded the byte cap."""


class InvalidUrl(PermanentError):
    """An unparseable or unsupported URL."""


class InvalidModelOutput(PermanentError):
    """The LLM's answer failed schema or guard-rail validation."""


class PolicyViolation(PermanentError):
    """A draft, edit or publish target broke a guard rail."""


class StaleVersion(PermanentError):
    """A compare-and-set on the ledger lost (another writer moved the record first)."""


class IllegalTransition(PermanentError):
    """The job state machine does not allow this transition."""


class ConfigurationError(PermanentError):
    """Bad settings, an unknown block, an unreachable server."""


class BudgetExceeded(PermanentError):
    """A job's LLM token or cost budget would be overspent (before a call) or was (after it).

    Permanent on purpose: retrying the same request costs the same again. The job stops with
    ``budget_exceeded`` and a person raises the budget or narrows the job.

    Args:
        message: What was over budget, for people.
        limit: The budget (tokens or USD).
        amount: What the call would spend (estimate) or did spend (reported usage).
    """

    def __init__(self, message: str, *, limit: float, amount: float) -> None:
        super().__init__(message)
        self.limit = limit
        self.amount = amount

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword-only arguments are not in ``args``: without this a pickled copy (Prefect hands task
        # exceptions across its result layer) could not be rebuilt and would surface as another error
        return (_rebuild_budget_exceeded, (str(self), self.limit, self.amount))


def _rebuild_budget_exceeded(message: str, limit: float, amount: float) -> BudgetExceeded:
    return BudgetExceeded(message, limit=limit, amount=amount)


def is_transient(exc: BaseException) -> bool:
    """Tell whether ``exc`` is worth retrying (used by Prefect ``retry_condition_fn``)."""
    return isinstance(exc, TransientError)
