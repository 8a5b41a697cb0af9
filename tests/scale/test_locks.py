"""The step locks' Redis lock manager: locks expire (a killed holder cannot block a job for good), and
:func:`tasks.locks.step_locks` hands it to the step transactions inside it."""

from __future__ import annotations

import time
import uuid

import pytest

from tasks.locks import ExpiringRedisLockManager, step_locks

pytestmark = pytest.mark.redis


def test_a_dead_holders_lock_expires_and_the_next_worker_takes_it(redis_url: str) -> None:
    key = f"scale-test-{uuid.uuid4().hex}"
    worker_a = ExpiringRedisLockManager(redis_url, hold_seconds=0.5)
    worker_b = ExpiringRedisLockManager(redis_url, hold_seconds=0.5)
    assert worker_a.acquire_lock(key, holder="a")
    assert worker_b.is_locked(key)
    assert not worker_b.acquire_lock(key, holder="b", acquire_timeout=0.1)  # held: B waits, then gives up
    # "a" never releases (its process was killed): the lock ends with its hold time.
    started = time.monotonic()
    assert worker_b.acquire_lock(key, holder="b", acquire_timeout=5)
    assert time.monotonic() - started < 1.0
    assert worker_b.is_lock_holder(key, "b") and worker_a.is_locked(key)
    worker_a.release_lock(key, "a")  # late release of an expired lock: tolerated, B keeps its lock
    assert worker_b.is_locked(key)
    worker_b.release_lock(key, "b")
    assert not worker_b.is_locked(key)


def test_step_locks_give_the_enclosed_transactions_redis_and_serializable(redis_url: str) -> None:
    from prefect.transactions import IsolationLevel, get_transaction

    with step_locks(redis_url, hold_seconds=30):
        txn = get_transaction()
        assert txn is not None and txn.store is not None
        assert isinstance(txn.store.lock_manager, ExpiringRedisLockManager)
        assert txn.isolation_level is IsolationLevel.SERIALIZABLE
    assert get_transaction() is None
    with step_locks(None, hold_seconds=30):  # no Redis configured: nothing changes
        assert get_transaction() is None
