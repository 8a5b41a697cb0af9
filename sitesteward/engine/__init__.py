"""The job engine without Prefect: a refresh job's step sequence over the ledger's checkpoints.

    outcome = run_job(ledger, job_id, host=PlainHost(), steps=PlainSteps(), drafter=drafter)

``flows/refresh_page.py`` runs the same sequence as a Prefect flow, supplying Prefect tasks as
:class:`Steps` and pause/suspend as the :class:`Host`'s way to wait for a reviewer.
"""

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
