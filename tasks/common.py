"""What every task shares: the retry rule, result storage and cache keys that survive new runs.

Prefect's default cache policy includes the run id, so a new run starts cold; our keys are built from
what the step consumes (job, step, input hash, code/prompt version) so a re-run is a cache hit.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import Task
from prefect.client.schemas.objects import State, TaskRun

from sitesteward.engine.keys import CODE_VERSION, stable_hash
from sitesteward.errors import is_transient
from sitesteward.settings import get_settings

# CODE_VERSION and stable_hash are the job engine's: the flows' cache keys and the ledger's checkpoints agree.
__all__ = [
    "CODE_VERSION",
    "RETRY_DELAYS",
    "extra_wait",
    "result_storage",
    "retry_only_transient",
    "stable_hash",
]

#: Backoff between task retries (seconds); jitter is added by Prefect. ``retry_delay_scale`` shrinks it in
#: tests (read once, when the tasks are defined).
RETRY_DELAYS: list[float] = [delay * get_settings().retry_delay_scale for delay in (2.0, 10.0, 30.0)]


#: The longest ``Retry-After`` a task waits for (seconds, before ``retry_delay_scale``); a peer asking
#: for longer gets the normal backoff, and the attempt budget ends the job if it keeps refusing.
MAX_RETRY_AFTER = 120.0


def extra_wait(exc: BaseException, scheduled: float) -> float:
    """Seconds to wait on top of the scheduled backoff so that a peer's ``Retry-After`` is honoured.

    Args:
        exc: The task's failure (``TransientError.retry_after`` is what the peer asked for).
        scheduled: The backoff Prefect will wait anyway before this retry.
    """
    asked = getattr(exc, "retry_after", None)
    if not isinstance(asked, int | float) or asked <= 0:
        return 0.0
    wanted = min(float(asked), MAX_RETRY_AFTER) * get_settings().retry_delay_scale
    return max(0.0, wanted - scheduled)


def retry_only_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """``retry_condition_fn``: retry :class:`~sitesteward.errors.TransientError` only.

    Prefect's backoff is fixed per attempt; when the peer said ``Retry-After`` (429/503, a rate-limited
    model), the difference is waited here, before Prefect schedules the retry.
    """
    try:
        state.result()
    except Exception as exc:
        if not is_transient(exc):
            return False
        scheduled = RETRY_DELAYS[min(max(task_run.run_count - 1, 0), len(RETRY_DELAYS) - 1)]
        wait = extra_wait(exc, scheduled)
        if wait > 0:
            time.sleep(wait)
        return True
    return False


def result_storage() -> Path:
    """Where task results persist: under the data directory, so they survive with the ledger.

    A ``Path`` is what Prefect accepts without a saved block (an unsaved ``LocalFileSystem`` is refused).
    """
    path = (get_settings().data_dir / "results").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
