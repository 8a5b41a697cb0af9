"""Running a coroutine to completion from sync code (Prefect tasks, the CLI)."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)``, except that the result never sits on the main task.

    On CPython 3.11, ``asyncio.run`` ends by asking ``signal.getsignal`` for the SIGINT handler it
    installed: a ``functools.partial`` holding the main task. ``getsignal`` tries to turn it into a
    ``Handlers`` enum, and the failed attempt formats ``repr()`` of the partial into an error message
    it then discards; a done task's repr includes ``repr()`` of its result. For a crawl that is the
    whole ``CrawlResult`` rendered to one string: measured ~4 KB a page of transient memory (88 MB on
    top of 158 MB after a 20,000-page crawl) and the CPU to build it. The result travels in a box
    instead, so the task's own result is ``None``.
    """
    box: list[T] = []

    async def main() -> None:
        box.append(await coro)

    asyncio.run(main())
    return box[0]


#: The GIL switch interval while a crawl (or the CLI's whole audit run) runs; CPython's default is 5 ms.
#: The crawl's event loop gives the GIL away at every socket call, and another thread that is
#: computing (the extraction pipe's writer and reader, the store's batch writer, Prefect's event and log
#: threads) may keep it until the interval ends. Measured on the 530-page docs audit against a Prefect
#: server (medians of 4 alternating runs, `sitesteward audit` end to end): no difference on an idle
#: machine (cold 5.8 s both ways); with other work on the machine (a test suite, a busy loop), cold
#: 7.7 -> 7.0 s in one series, and 9.4 -> 9.0 s with the crawl store's changes of the same commit in
#: another.
CRAWL_SWITCH_INTERVAL = 0.001

_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.0


@contextmanager
def quick_gil_handoff(interval: float = CRAWL_SWITCH_INTERVAL) -> Iterator[None]:
    """Shorten the interpreter's GIL switch interval for the duration (never lengthen it).

    Concurrent users (crawl shards in threads of one process) share one setting: the first sets it,
    the last restores what was there before.
    """
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(interval, _switch_saved))
        _switch_users += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_saved)
