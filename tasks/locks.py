"""Cross-worker locks for the job steps' Prefect transactions (Redis, through ``prefect-redis``).

Several workers may run the same job's step at the same time: two batches that planned the same job, or
a sweeper restarting a job whose lease ran out while a slow step was still running. The ledger's lease
and fencing token keep the *record* consistent either way; these locks keep the *work* from racing: each
step task runs as a ``SERIALIZABLE`` transaction on its cache key, so a second worker waits for the first
one's result and reads it as a cache hit instead of calling the site, its sources or the model again.

Prefect 3.9 has no setting for a default lock manager: a task takes one from its cache policy or from
the result store of an enclosing transaction. :func:`step_locks` opens such a transaction around a job,
so every step task inside it (including those of a ``refresh_page`` subflow) inherits the lock manager
and the isolation level, without the engine knowing about Redis.

``prefect-redis`` takes locks that never expire, like Prefect's file locks: a worker killed while holding
one would block the job for good. :class:`ExpiringRedisLockManager` gives every lock a hold timeout (the
job's lease: a step must finish within it anyway, or its fencing token is stale).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect.results import ResultStore
from prefect.transactions import CommitMode, IsolationLevel, transaction
from prefect_redis import RedisLockManager
from redis.exceptions import LockError

logger = logging.getLogger(__name__)


class ExpiringRedisLockManager(RedisLockManager):
    """A ``RedisLockManager`` whose locks expire after ``hold_seconds`` unless the caller says otherwise.

    Args:
        connection_url: ``redis://host:port/db`` (``rediss://`` and Sentinel URLs work too).
        hold_seconds: How long a lock outlives a holder that never releases it (a killed worker).
    """

    def __init__(self, connection_url: str, *, hold_seconds: float) -> None:
        if hold_seconds <= 0:
            raise ValueError("hold_seconds must be positive")
        self.hold_seconds = hold_seconds
        super().__init__(connection_url=connection_url)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "hold_seconds": self.hold_seconds}

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        # Prefect's transactions pass no hold timeout: without one a dead holder's lock lives forever.
        return super().acquire_lock(key, holder, acquire_timeout, hold_timeout or self.hold_seconds)

    async def aacquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        return await super().aacquire_lock(key, holder, acquire_timeout, hold_timeout or self.hold_seconds)

    def release_lock(self, key: str, holder: str) -> None:
        """Release the lock; one that expired under a step that overran its lease is gone already."""
        try:
            super().release_lock(key, holder)
        except LockError:
            self._locks.pop(self._lock_name_for_key(key), None)
            logger.warning("lock %s expired before its holder released it (a step overran its lease)", key)


@contextmanager
def step_locks(lock_url: str | None, *, hold_seconds: float) -> Iterator[None]:
    """Run the step tasks called inside as ``SERIALIZABLE`` transactions locked in Redis.

    Without ``lock_url`` (one machine, or no Redis) this does nothing: the ledger's lease still keeps one
    runner per job, only a step re-run after a stolen lease may repeat its work.

    Args:
        lock_url: The Redis URL (``SITESTEWARD_LOCK_URL``), or None.
        hold_seconds: The locks' expiry (the job's lease).
    """
    if not lock_url:
        yield
        return
    store = ResultStore(lock_manager=ExpiringRedisLockManager(lock_url, hold_seconds=hold_seconds))
    # No key: this transaction records nothing itself; it only hands its store (hence the lock manager)
    # and its isolation level to the task transactions inside. EAGER: each step commits (and releases its
    # lock) when it ends, not when the whole job does.
    with transaction(store=store, isolation_level=IsolationLevel.SERIALIZABLE, commit_mode=CommitMode.EAGER):
        yield
