"""run_sync: a coroutine's result is returned, never rendered to a string on the way; quick_gil_handoff."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading

import pytest

from sitesteward.aio import CRAWL_SWITCH_INTERVAL, quick_gil_handoff, run_sync


class _Counted:
    """A result that counts how often something renders it (a crawl result's repr costs ~4 KB a page)."""

    def __init__(self) -> None:
        self.reprs = 0

    def __repr__(self) -> str:
        self.reprs += 1
        return "<counted>"


async def _make(value: _Counted) -> _Counted:
    await asyncio.sleep(0)
    return value


def test_run_sync_returns_the_result_without_rendering_it() -> None:
    value = _Counted()
    assert run_sync(_make(value)) is value
    assert value.reprs == 0


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the getsignal repr happens on CPython 3.11")
def test_plain_asyncio_run_renders_the_result_on_3_11() -> None:
    # The cost run_sync avoids, shown on the same object: asyncio.run's SIGINT handling formats the
    # main task (and with it the result) into an error message it discards. It installs its handler
    # only over the default one, as in the CLI's main thread; an earlier test may have changed it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        value = _Counted()
        assert asyncio.run(_make(value)) is value
        assert value.reprs >= 1
        counted = _Counted()
        assert run_sync(_make(counted)) is counted
        assert counted.reprs == 0  # and run_sync, under the same handler, does not
    finally:
        signal.signal(signal.SIGINT, previous)


def test_run_sync_propagates_exceptions() -> None:
    async def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_sync(fail())


def test_quick_gil_handoff_is_shared_by_overlapping_users_and_restored_by_the_last() -> None:
    before = sys.getswitchinterval()
    assert before > CRAWL_SWITCH_INTERVAL  # the test would prove nothing at the short interval already
    entered, release = threading.Barrier(3), threading.Event()
    seen: list[float] = []

    def shard() -> None:
        with quick_gil_handoff():
            entered.wait()
            release.wait()
            seen.append(sys.getswitchinterval())

    threads = [threading.Thread(target=shard) for _ in range(2)]
    for thread in threads:
        thread.start()
    entered.wait()
    assert sys.getswitchinterval() == pytest.approx(CRAWL_SWITCH_INTERVAL)
    release.set()
    for thread in threads:
        thread.join()
    # The shard that left first did not restore the interval under the other's feet.
    assert seen == [pytest.approx(CRAWL_SWITCH_INTERVAL)] * 2
    assert sys.getswitchinterval() == pytest.approx(before)


def test_quick_gil_handoff_never_lengthens_a_shorter_interval() -> None:
    before = sys.getswitchinterval()
    sys.setswitchinterval(CRAWL_SWITCH_INTERVAL / 2)
    try:
        with quick_gil_handoff():
            assert sys.getswitchinterval() == pytest.approx(CRAWL_SWITCH_INTERVAL / 2)
    finally:
        sys.setswitchinterval(before)
