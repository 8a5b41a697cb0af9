"""The job engine without Prefect: a refresh job's step sequence over the ledger's checkpoints.

    outcome = run_job(ledger, job_id, host=PlainHost(), steps=PlainSteps(), drafter=drafter)

``flows/refresh_page.py`` runs the same sequence as a Prefect flow, supplying Prefect tasks as
:class:`Steps` and pause/suspend as the :class:`Host`'s way to wait for a reviewer.
"""

from typing import TYPE_CHECKING

from sitesteward.lazy import lazy_attributes

if TYPE_CHECKING:
    from sitesteward.engine.job import (
        Host,
        JobOptions,
        JobOutcome,
        PlainHost,
        ReviewAnswer,
        RunLogger,
        outcome_of,
        review_for,
        run_job,
        worker_identity,
    )
    from sitesteward.engine.keys import CODE_VERSION, stable_hash
    from sitesteward.engine.runner import MAX_STEP_ATTEMPTS, JobRunner, JobStopped, stop_reason_for
    from sitesteward.engine.steps import PageSource, PlainSteps, Steps

#: Where each name lives: loaded on first use, so that importing ``sitesteward.engine.keys`` (every
#: task module does) does not bring the ledger and SQLAlchemy into an audit.
_MODULES = {
    "CODE_VERSION": "sitesteward.engine.keys",
    "Host": "sitesteward.engine.job",
    "JobOptions": "sitesteward.engine.job",
    "JobOutcome": "sitesteward.engine.job",
    "JobRunner": "sitesteward.engine.runner",
    "JobStopped": "sitesteward.engine.runner",
    "MAX_STEP_ATTEMPTS": "sitesteward.engine.runner",
    "PageSource": "sitesteward.engine.steps",
    "PlainHost": "sitesteward.engine.job",
    "PlainSteps": "sitesteward.engine.steps",
    "ReviewAnswer": "sitesteward.engine.job",
    "RunLogger": "sitesteward.engine.job",
    "Steps": "sitesteward.engine.steps",
    "outcome_of": "sitesteward.engine.job",
    "review_for": "sitesteward.engine.job",
    "run_job": "sitesteward.engine.job",
    "stable_hash": "sitesteward.engine.keys",
    "stop_reason_for": "sitesteward.engine.runner",
    "worker_identity": "sitesteward.engine.job",
}

__getattr__ = lazy_attributes(__name__, _MODULES)


__all__ = [
    "CODE_VERSION",
    "MAX_STEP_ATTEMPTS",
    "Host",
    "JobOptions",
    "JobOutcome",
    "JobRunner",
    "JobStopped",
    "PageSource",
    "PlainHost",
    "PlainSteps",
    "ReviewAnswer",
    "RunLogger",
    "Steps",
    "outcome_of",
    "review_for",
    "run_job",
    "stable_hash",
    "stop_reason_for",
    "worker_identity",
]
