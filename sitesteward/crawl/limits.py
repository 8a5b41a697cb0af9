"""Per-host request limits that hold across processes: one crawl or many shards on many workers.

A :class:`HostLimiter` hands out request slots per host (``acquire`` returns a token, ``release`` gives
it back). Two implementations:

* :class:`LocalHostLimiter` — the crawler's in-process behaviour (an ``asyncio`` semaphore and a start
  spacing per host), for code that wants the protocol without a server.
* :class:`RedisHostLimiter` — the same bound across every process that talks to one Redis. Each host's
  slots are a sorted set of tokens scored by their lease expiry; a Lua script drops expired tokens and
  adds one only while fewer than ``limit`` remain, atomically. A worker killed while holding slots does
  not leak them: its tokens expire after ``lease_seconds`` and the slots come back. An optional request
  rate is shared the same way (one "next start" timestamp per host, reserved in the same script), and
  the clock is Redis's own (``TIME``), so workers' clocks need not agree.

The crawler takes a limiter through :func:`sitesteward.crawl.crawl_site` ``(limiter=...)``, which wraps
its per-process :class:`~sitesteward.crawl.politeness.Politeness` in :class:`SharedPoliteness`: the local
limits still apply (and Crawl-delay from robots.txt stays per process), and every request additionally
holds a shared slot for exactly one attempt, so a lease only has to outlive ``timeout_seconds``.

``redis`` is an optional dependency (``pip install 'sitesteward[redis]'``); it is imported only when a
Redis limiter is built.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sitesteward.crawl.politeness import Politeness
from sitesteward.errors import ConfigurationError, TransientError

if TYPE_CHECKING:  # pragma: no cover
    from redis.asyncio import Redis

#: Default key prefix in Redis; crawls sharing a prefix share their per-host limits.
DEFAULT_NAMESPACE = "sitesteward:host"
#: Polling between attempts to take a slot when a host is full (seconds; doubles up to the cap).
_POLL_FIRST, _POLL_CAP = 0.005, 0.1
#: Attempts of a Redis call before a request fails (backoff 0.1, 0.2, 0.4, 0.8, 1.6 s between them).
_REDIS_ATTEMPTS = 6


@runtime_checkable
class HostLimiter(Protocol):
    """Hands out request slots per host.

    ``acquire`` waits until the caller may start a request to ``host`` and returns a token that
    ``release`` takes back. Callers must release what they acquired (use :func:`hold`).
    """

    async def acquire(self, host: str) -> str:
        """Wait for a slot of ``host`` (and its rate limit); return the slot's token."""
        ...

    async def release(self, host: str, token: str) -> None:
        """Give the slot ``token`` of ``host`` back."""
        ...


@asynccontextmanager
async def hold(limiter: HostLimiter, host: str) -> AsyncIterator[str]:
    """Hold one of ``host``'s slots for the body of the ``async with`` (released on any exit)."""
    token = await limiter.acquire(host)
    try:
        yield token
    finally:
        await limiter.release(host, token)


class LocalHostLimiter:
    """The in-process limit (what :class:`~sitesteward.crawl.politeness.Politeness` does), as a limiter.

    Args:
        limit: Requests in flight to one host at most.
        requests_per_second: Request starts per second to one host at most (None: unlimited).
    """

    def __init__(self, limit: int, requests_per_second: float | None = None) -> None:
        if limit < 1:
            raise ConfigurationError(f"host limit must be at least 1, not {limit}")
        self._limit = limit
        self._interval = 1.0 / requests_per_second if requests_per_second else 0.0
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._next_start: dict[str, float] = {}

    async def acquire(self, host: str) -> str:
        semaphore = self._semaphores.get(host)
        if semaphore is None:
            semaphore = self._semaphores[host] = asyncio.Semaphore(self._limit)
        await semaphore.acquire()
        if self._interval:
            # No await between reading and reserving the start: the event loop makes this atomic.
            now = time.monotonic()
            start = max(now, self._next_start.get(host, 0.0))
            self._next_start[host] = start + self._interval
            if start > now:
                try:
                    await asyncio.sleep(start - now)
                except BaseException:
                    semaphore.release()
                    raise
        return "local"

    async def release(self, host: str, token: str) -> None:
        self._semaphores[host].release()


# KEYS[1]: the host's slot set, KEYS[2]: the host's next allowed start (ms).
# ARGV: token, limit, lease_ms, interval_ms.
# Returns -1 when the host is full, else the milliseconds to wait before starting (rate limit).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local interval = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= limit then
  return -1
end
local start = now
if interval > 0 then
  local nxt = tonumber(redis.call('GET', KEYS[2]) or '0')
  if nxt > start then start = nxt end
  redis.call('SET', KEYS[2], start + interval, 'PX', start - now + interval + 1000)
end
redis.call('ZADD', KEYS[1], start + lease, ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < start - now + lease then
  redis.call('PEXPIRE', KEYS[1], start - now + lease + 1000)
end
return start - now
"""


class RedisHostLimiter:
    """A per-host limit shared by every process using the same Redis (and ``namespace``).

    Args:
        client: A ``redis.asyncio.Redis`` client (bound to the running event loop).
        limit: Requests in flight to one host at most, across all processes.
        requests_per_second: Request starts per second to one host, across all processes (None: no rate).
        lease_seconds: How long a slot stays taken without a release: set it above the longest hold
            (the crawler holds a slot for one attempt, so its ``timeout_seconds`` plus a margin). A killed
            holder's slot comes back after this long.
        namespace: Key prefix; crawls with the same prefix share their limits.
        owns_client: Close the client in :meth:`aclose`.
    """

    def __init__(
        self,
        client: Redis,
        limit: int,
        *,
        requests_per_second: float | None = None,
        lease_seconds: float = 60.0,
        namespace: str = DEFAULT_NAMESPACE,
        owns_client: bool = False,
    ) -> None:
        if limit < 1:
            raise ConfigurationError(f"host limit must be at least 1, not {limit}")
        if lease_seconds <= 0:
            raise ConfigurationError(f"lease_seconds must be positive, not {lease_seconds}")
        self._client = client
        self._limit = limit
        self._interval_ms = round(1000.0 / requests_per_second) if requests_per_second else 0
        self._lease_ms = max(1, round(lease_seconds * 1000))
        self._namespace = namespace
        self._owns_client = owns_client
        self._script = client.register_script(_ACQUIRE)

    @classmethod
    def from_url(cls, url: str, limit: int, **options: Any) -> RedisHostLimiter:
        """A limiter with its own client for ``url`` (``redis://host:port/db``); close it with :meth:`aclose`.

        Raises:
            ConfigurationError: the ``redis`` package is missing or the URL is not a Redis URL.
        """
        try:
            from redis.asyncio import Redis
        except ImportError as exc:  # pragma: no cover - the redis extra is part of the test setup
            raise ConfigurationError(
                "the Redis host limiter needs the redis package: pip install 'sitesteward[redis]'"
            ) from exc
        try:
            client = Redis.from_url(url, socket_connect_timeout=5.0, socket_timeout=10.0)
        except ValueError as exc:
            raise ConfigurationError(f"bad Redis URL for the host limiter: {exc}") from None
        return cls(client, limit, owns_client=True, **options)

    def _keys(self, host: str) -> list[str]:
        return [f"{self._namespace}:{host}:slots", f"{self._namespace}:{host}:next"]

    async def acquire(self, host: str) -> str:
        token = uuid.uuid4().hex
        keys = self._keys(host)
        args = [token, self._limit, self._lease_ms, self._interval_ms]
        pause = _POLL_FIRST
        while True:
            wait_ms = int(await self._call(keys, args))
            if wait_ms >= 0:
                break
            # Full: poll with a growing, jittered pause (no thundering herd on a busy host).
            await asyncio.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, _POLL_CAP)
        if wait_ms > 0:
            try:
                await asyncio.sleep(wait_ms / 1000)
            except BaseException:  # cancelled while waiting for the rate: give the slot back now
                await self.release(host, token)
                raise
        return token

    async def release(self, host: str, token: str) -> None:
        try:
            await self._client.zrem(self._keys(host)[0], token)
        except Exception:  # the lease frees the slot anyway; never fail the request over it
            return

    async def in_use(self, host: str) -> int:
        """Slots of ``host`` taken now (leases not yet expired), across all processes."""
        keys = self._keys(host)
        now_ms = await self._server_ms()
        return int(await self._client.zcount(keys[0], f"({now_ms}", "+inf"))

    async def _server_ms(self) -> int:
        seconds, micros = await self._client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def _call(self, keys: list[str], args: list[Any]) -> Any:
        from redis.exceptions import RedisError

        # A blip (failover, restart) is waited out for a few seconds; past that the request fails
        # rather than going out unlimited.
        for attempt in range(_REDIS_ATTEMPTS):
            try:
                return await self._script(keys=keys, args=args)
            except RedisError as exc:
                if attempt + 1 >= _REDIS_ATTEMPTS:
                    raise LimiterUnavailable(f"host limiter: Redis failed: {exc}") from exc
                await asyncio.sleep(0.1 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def ping(self) -> None:
        """Check that Redis answers (a misconfigured URL fails before the crawl, not on every page).

        Raises:
            LimiterUnavailable: Redis did not answer.
        """
        from redis.exceptions import RedisError

        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(f"host limiter: Redis does not answer: {exc}") from exc

    async def aclose(self) -> None:
        """Close the client if this limiter created it."""
        if self._owns_client:
            await self._client.aclose()


class LimiterUnavailable(TransientError):
    """The shared limiter's Redis did not answer: no request goes out unlimited.

    Before a crawl (:func:`open_limiter` pings) this fails the crawl; during one, after a few seconds
    of retries, the affected fetches fail (their pages carry the error) and the crawl goes on.
    """


class SharedPoliteness(Politeness):
    """The crawler's per-process politeness plus a shared :class:`HostLimiter` slot per request.

    The local slot is taken first (its rate and Crawl-delay spacing included), then the shared one,
    so a process never queues more shared slots than its own concurrency.
    """

    def __init__(
        self, concurrency_per_host: int, requests_per_second: float | None, limiter: HostLimiter
    ) -> None:
        super().__init__(concurrency_per_host, requests_per_second)
        self.limiter = limiter

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        async with super().slot(host), hold(self.limiter, host):
            yield


class HostLimitSpec(BaseModel):
    """Which per-host limiter a crawl uses: plain data, so it travels in task and flow parameters.

    ``backend="local"`` is today's behaviour (limits per process). ``"redis"`` bounds each host across
    every worker: ``concurrency_per_host`` requests in flight and ``requests_per_second`` starts.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Literal["local", "redis"] = "local"
    url: str | None = Field(default=None, description="redis://host:port/db (redis backend only).")
    lease_seconds: float | None = Field(
        default=None, gt=0, le=3600, description="Slot lease; default: the crawl's timeout_seconds + 10."
    )
    namespace: str = Field(default=DEFAULT_NAMESPACE, min_length=1, max_length=200)

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("the host limiter URL must be redis://, rediss:// or unix://")
        if "@" in value.split("//", 1)[-1].split("/", 1)[0]:
            raise ValueError("no credentials in the host limiter URL: parameters are visible in the UI")
        return value


@asynccontextmanager
async def open_limiter(
    spec: HostLimitSpec | None,
    *,
    limit: int,
    requests_per_second: float | None,
    timeout_seconds: float,
) -> AsyncIterator[HostLimiter | None]:
    """The limiter ``spec`` describes, open for the ``async with`` body (None: the local default).

    Raises:
        ConfigurationError: ``backend="redis"`` without a URL.
        LimiterUnavailable: Redis does not answer.
    """
    if spec is None or spec.backend == "local":
        yield None
        return
    if not spec.url:
        raise ConfigurationError("the redis host limiter needs a url (redis://host:port/db)")
    limiter = RedisHostLimiter.from_url(
        spec.url,
        limit,
        requests_per_second=requests_per_second,
        lease_seconds=spec.lease_seconds or timeout_seconds + 10.0,
        namespace=spec.namespace,
    )
    try:
        await limiter.ping()
        yield limiter
    finally:
        await limiter.aclose()
