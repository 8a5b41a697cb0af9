"""Ledger-first checkpoints for a job's steps: moved to the Prefect-free engine.

:mod:`sitesteward.engine.runner` holds :class:`JobRunner`, :class:`JobStopped`, :func:`stop_reason_for`
and :data:`MAX_STEP_ATTEMPTS`; they are re-exported here for code that still imports them from flows.
"""

from __future__ import annotations

from sitesteward.engine.runner import MAX_STEP_ATTEMPTS, JobRunner, JobStopped, stop_reason_for

__all__ = ["MAX_STEP_ATTEMPTS", "JobRunner", "JobStopped", "stop_reason_for"]
