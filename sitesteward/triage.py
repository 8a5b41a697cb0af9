"""Rule-based triage of a failing job: what kind of failure it is and what to do next.

Failure classes:

- ``transient_upstream``  timeouts, connection errors, 429/5xx, model rate limits: wait and retry.
- ``permanent_content``   the page or source is gone, not HTML, too large, or the model's answer was unusable.
- ``configuration``       bad settings, an endpoint refusing our key or model, an unknown block.
- ``policy``              a guard rail held: robots.txt, a refused address, a draft that broke the rules.
- ``unknown``             anything else (a bug): look at the logs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import Field

from sitesteward import errors
from sitesteward.models import Contract

FailureClass = Literal["transient_upstream", "permanent_content", "configuration", "policy", "unknown"]

_CLASSES: list[tuple[type[errors.StewardError], FailureClass]] = [
    (errors.TransientError, "transient_upstream"),
    (errors.ConfigurationError, "configuration"),
    (errors.PolicyViolation, "policy"),
    (errors.RobotsDisallowed, "policy"),
    (errors.AddressRefused, "policy"),
    (errors.AccessDenied, "policy"),
    (errors.IllegalTransition, "unknown"),
    (errors.StaleVersion, "transient_upstream"),
    (errors.PermanentError, "permanent_content"),
]
#: Exception class name -> failure class (the first matching base in ``_CLASSES`` wins).
_BY_NAME: dict[str, FailureClass] = {
    name: next((cls for base, cls in _CLASSES if issubclass(obj, base)), "unknown")
    for name, obj in vars(errors).items()
    if isinstance(obj, type) and issubclass(obj, errors.StewardError)
}

_ACTIONS: dict[FailureClass, str] = {
    "transient_upstream": "wait and retry the job (retries honour Retry-After); if it keeps failing, "
    "check the upstream's status or lower the crawl rate",
    "permanent_content": "fix the content or the citation (the page or source changed for good), "
    "then re-run; retrying as is will not help",
    "configuration": "fix the configuration (LLM base URL, model, key, site block) and re-run the job",
    "policy": "review by hand: a guard rail stopped the job (robots.txt, refused address or an unsafe "
    "draft); do not override it without a reviewer",
    "unknown": "look at the flow run's logs and open an issue with the job id",
}


class FailureRecord(Contract):
    """One failed attempt of a job step, as the ledger records it."""

    step: str
    error_type: str = Field(description="The exception class name, e.g. 'LLMRateLimited'.")
    message: str = ""
    at: datetime | None = None
    retry_after: float | None = None


class TriageNote(Contract):
    """What a person (or the sweep flow) reads about a failing job."""

    summary: str
    failure_class: FailureClass
    next_action: str
    retryable: bool
    attempts: int
    last_step: str | None = None


def classify(error_type: str) -> FailureClass:
    """The failure class of an exception class name (unknown names are ``unknown``)."""
    return _BY_NAME.get(error_type, "unknown")


def triage_note(history: Sequence[FailureRecord], *, max_attempts: int = 3) -> TriageNote:
    """Summarise a job's failures and recommend the next action (rule-based, deterministic).

    The latest failure decides the class, except that a transient failure repeated past
    ``max_attempts`` is reported as needing a person (the upstream is not recovering).

    Args:
        history: The job's failed attempts, oldest first.
        max_attempts: The retry budget.
    """
    if not history:
        return TriageNote(
            summary="no failures recorded",
            failure_class="unknown",
            next_action="nothing to do",
            retryable=False,
            attempts=0,
        )
    last = history[-1]
    failure_class = classify(last.error_type)
    same = sum(1 for record in history if record.error_type == last.error_type and record.step == last.step)
    counts = Counter(record.error_type for record in history)
    summary = f"{last.step} failed {same}x with {last.error_type}"
    if last.message:
        summary += f": {last.message[:200]}"
    if len(counts) > 1:
        summary += (
            " (also "
            + ", ".join(f"{name} x{n}" for name, n in sorted(counts.items()) if name != last.error_type)
            + ")"
        )
    retryable = failure_class == "transient_upstream" and same < max_attempts
    action = _ACTIONS[failure_class]
    if failure_class == "transient_upstream" and not retryable:
        action = f"retry budget spent ({same}/{max_attempts}): " + action
    elif retryable and last.retry_after:
        action = f"retry after {last.retry_after:.0f}s; " + action
    return TriageNote(
        summary=summary,
        failure_class=failure_class,
        next_action=action,
        retryable=retryable,
        attempts=len(history),
        last_step=last.step,
    )
