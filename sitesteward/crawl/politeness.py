"""Per-host politeness: a concurrency cap and an optional request rate, shared by every request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class _HostState:
    semaphore: asyncio.Semaphore
    next_start: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Politeness:
    """Limit concurrent requests and request starts per second for each host.

    Args:
        concurrency_per_host: Requests in flight to one host at most.
        requests_per_second: Request starts per second to one host at most (None: unlimited).
    """

    def __init__(self, concurrency_per_host: int, requests_per_second: float | None = None) -> None:
        self._concurrency = concurrency_per_host
        self._interval = 1.0 / requests_per_second if requests_per_second else 0.0
        self._hosts: dict[str, _HostState] = {}
        self._intervals: dict[str, float] = {}

    def _state(self, host: str) -> _HostState:
        state = self._hosts.get(host)
        if state is None:
            state = _HostState(asyncio.Semaphore(self._concurrency))
            self._hosts[host] = state
        return state

    def slow_down(self, host: str, interval: float) -> None:
        """Space request starts to ``host`` at least ``interval`` seconds apart (robots Crawl-delay)."""
        if interval > self._intervals.get(host, 0.0):
            self._intervals[host] = interval

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        """Hold one of ``host``'s request slots, waiting for the rate limit first."""
        state = self._state(host)
        interval = max(self._interval, self._intervals.get(host, 0.0))
        async with state.semaphore:
            if interval:
                async with state.lock:
                    now = time.monotonic()
                    start = max(now, state.next_start)
                    state.next_start = start + interval
                if start > now:
                    await asyncio.sleep(start - now)
            yield
