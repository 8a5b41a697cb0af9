"""One URL, fetched safely: address guard, robots gate, manual redirects, byte and time caps, retries.

Retries happen in exactly this layer (per request, per redirect hop): timeouts, connection errors and
the statuses in :data:`sitesteward.errors.RETRY_HTTP_CODES` are retried ``config.retries`` times with
exponential backoff and jitter, honouring ``Retry-After`` up to ``config.retry_after_cap_seconds``.
Callers must not retry again. Nothing here raises for a bad page: every failure is a
:class:`~sitesteward.models.FetchError` on the returned :class:`Exchange`.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import ssl
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

import httpx

from sitesteward.crawl.guard import AddressGuard, AddressRefusedError, DnsFailure, PinnedNetworkBackend
from sitesteward.crawl.inflate import ACCEPT_ENCODING, BoundedInflater, UnsupportedEncoding
from sitesteward.crawl.politeness import Politeness
from sitesteward.errors import RETRY_HTTP_CODES, AddressRefused
from sitesteward.models import CrawlConfig, FetchError, RedirectHop
from sitesteward.urls import absolutize, host_of, normalize_url

logger = logging.getLogger(__name__)

REDIRECT_STATUSES: frozenset[int] = frozenset({301, 302, 303, 307, 308})
HTML_TYPES: tuple[str, ...] = ("text/html", "application/xhtml+xml")
#: Response headers kept on a Page (lower-case names).
HEADERS_OF_INTEREST: tuple[str, ...] = (
    "content-type",
    "content-length",
    "content-language",
    "etag",
    "last-modified",
    "cache-control",
    "x-robots-tag",
    "link",
    "location",
    "retry-after",
    "server",
    "date",
)
_BACKOFF_CAP_SECONDS = 30.0
ACCEPT_HTML = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"

#: How a body is read: ``html`` (refuse non-HTML before reading), ``any`` (robots, sitemaps), ``none``.
BodyMode = Literal["html", "any", "none"]


@dataclass(frozen=True, slots=True)
class RobotsRefusal:
    """Why the robots gate stops a URL: its origin's rules, or a robots.txt that could not be fetched.

    ``error`` is ``robots_disallowed`` for rules; for an unreachable robots.txt it is that fetch's own
    error (``address_refused``, ``connect_error``...), so a redirect to a private or dead host says so
    instead of blaming robots.txt.
    """

    error: FetchError
    detail: str
    dns_failure: bool = False


#: ``await gate(url)``: None when robots.txt lets the agent fetch ``url``, else why not.
RobotsGate = Callable[[str], Awaitable[RobotsRefusal | None]]


@dataclass
class Exchange:
    """The outcome of fetching one URL, redirects included (crawl-internal, not a contract)."""

    url: str
    final_url: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    chain: list[RedirectHop] = field(default_factory=list)
    body: bytes = b""
    truncated: bool = False
    elapsed_ms: float = 0.0
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    error: FetchError | None = None
    detail: str | None = None
    dns_failure: bool = False
    robots_blocked: str | None = None

    @property
    def content_type(self) -> str | None:
        """The ``Content-Type`` header, if any."""
        return self.headers.get("content-type")


@dataclass
class _Answer:
    status: int
    headers: httpx.Headers
    body: bytes = b""
    truncated: bool = False
    error: FetchError | None = None
    detail: str | None = None


class _Transient(Exception):
    def __init__(self, error: FetchError, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail
        self.retry_after = retry_after


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Read a ``Retry-After`` header: delta-seconds or an HTTP date; garbage gives None.

    Returns:
        Seconds to wait (never negative), or None when absent or unreadable.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def is_html_type(content_type: str | None) -> bool:
    """Tell whether a ``Content-Type`` names an HTML document."""
    if content_type is None:
        return False
    return content_type.split(";", 1)[0].strip().lower() in HTML_TYPES


def _looks_like_html(prefix: bytes) -> bool:
    # Used only when the server sent no Content-Type at all.
    if b"\x00" in prefix[:1024]:
        return False
    head = prefix[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<!--", b"<meta", b"<title"))


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    # One per process: loading the CA bundle takes 30-50 ms, and every step that fetches builds a client.
    return httpx.create_ssl_context()


def build_client(
    config: CrawlConfig,
    guard: AddressGuard | None = None,
    *,
    user_agent: str | None = None,
) -> httpx.AsyncClient:
    """Create the shared client: keep-alive pool, no automatic redirects, connections pinned by ``guard``.

    With a guard, the TCP connection goes to an address the guard resolved and checked (no DNS
    rebinding window). This reaches into httpx's transport for its httpcore pool, which httpx 0.28
    does not expose publicly; if that ever fails the guard still checks every hop before the request.

    Args:
        config: Timeouts and concurrency.
        guard: Address guard that pins connections; None leaves name resolution to httpx.
        user_agent: The ``User-Agent`` header.

    Returns:
        A client the caller must close.
    """
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=128, keepalive_expiry=30.0)
    transport = httpx.AsyncHTTPTransport(verify=_tls_context(), limits=limits, retries=0)
    if guard is not None:
        pool = getattr(transport, "_pool", None)
        inner = getattr(pool, "_network_backend", None)
        if inner is not None:
            pool._network_backend = PinnedNetworkBackend(guard, inner)  # type: ignore[union-attr]
        else:  # pragma: no cover - depends on httpx internals
            logger.warning("cannot pin connections to checked addresses with this httpx version")
    headers = {"Accept-Encoding": ACCEPT_ENCODING}
    if user_agent:
        headers["User-Agent"] = user_agent
    timeout = httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds)
    return httpx.AsyncClient(
        transport=transport, headers=headers, timeout=timeout, follow_redirects=False, trust_env=False
    )


#: An unread body this small is read and dropped, so its keep-alive connection goes back to the pool
#: (a response closed before its end closes the connection: a re-crawl of 304s paid a TCP connect each).
_DISCARD_BYTES = 64 * 1024


async def _discard(response: httpx.Response) -> None:
    read = 0
    try:
        async for raw in response.aiter_raw():
            read += len(raw)
            if read > _DISCARD_BYTES:
                return  # too big to be worth it: the connection is closed instead
    except httpx.HTTPError:
        return


class Fetcher:
    """Fetch URLs politely and safely with one shared client.

    Args:
        client: The shared client (``follow_redirects`` is ignored: redirects are followed here).
        config: Caps, retries, redirects.
        guard: Checks every hop's address before the request (and pins it when the client was built
            by :func:`build_client` with the same guard).
        politeness: Per-host concurrency and rate.
        robots: Robots gate applied to every hop; None to skip (robots.txt itself).
        user_agent: Sent as ``User-Agent`` with every request (None: the client's own header).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        config: CrawlConfig,
        *,
        guard: AddressGuard,
        politeness: Politeness,
        robots: RobotsGate | None = None,
        user_agent: str | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.guard = guard
        self.politeness = politeness
        self.robots = robots
        # Only encodings BoundedInflater can bound, whatever client the caller passed in.
        self._base_headers = {"Accept-Encoding": ACCEPT_ENCODING}
        if user_agent:
            self._base_headers["User-Agent"] = user_agent

    async def fetch(
        self,
        url: str,
        *,
        method: str = "GET",
        body: BodyMode = "html",
        headers: dict[str, str] | None = None,
        max_bytes: int | None = None,
        use_robots: bool = True,
    ) -> Exchange:
        """Fetch ``url`` following redirects by hand, each hop guarded and recorded.

        Args:
            url: An absolute http(s) URL.
            method: ``GET`` or ``HEAD``.
            body: How to read the final body.
            headers: Extra request headers (conditional headers, ``Accept``).
            max_bytes: Body cap (default ``config.max_bytes``).
            use_robots: Apply the robots gate to every hop.

        Returns:
            The exchange; ``error`` says why it is unusable, if it is.
        """
        started = time.monotonic()
        exchange = Exchange(url=url, final_url=url)
        try:
            await self._follow(
                exchange, method, body, headers or {}, max_bytes or self.config.max_bytes, use_robots
            )
        except Exception as exc:  # a bad page must never end the crawl
            logger.exception("unexpected failure fetching %s", url)
            exchange.error = FetchError.http_error
            exchange.detail = f"unexpected {type(exc).__name__}: {exc}"
        exchange.elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        return exchange

    async def _follow(
        self,
        exchange: Exchange,
        method: str,
        body: BodyMode,
        headers: dict[str, str],
        max_bytes: int,
        use_robots: bool,
    ) -> None:
        current = exchange.url
        visited: set[str] = set()
        while True:
            if len(current) > self.config.max_url_length:
                exchange.error, exchange.detail = FetchError.invalid_url, "URL longer than max_url_length"
                return
            try:
                key = normalize_url(current)
            except Exception as exc:
                exchange.error, exchange.detail = FetchError.invalid_url, str(exc)
                return
            visited.add(key)
            refusal = await self.robots(current) if use_robots and self.robots is not None else None
            if refusal is not None:
                exchange.error, exchange.detail = refusal.error, refusal.detail
                exchange.dns_failure = refusal.dns_failure
                if refusal.error == FetchError.robots_disallowed:
                    exchange.robots_blocked = current
                return
            answer = await self._request_with_retries(current, method, body, headers, max_bytes, exchange)
            if answer is None:
                return
            location = answer.headers.get("location")
            if answer.status in REDIRECT_STATUSES and location:
                target = absolutize(location, current)
                exchange.chain.append(
                    RedirectHop(url=current, status=answer.status, location=target or location)
                )
                if target is None:
                    exchange.status = answer.status
                    exchange.error, exchange.detail = (
                        FetchError.invalid_url,
                        f"bad redirect target {location!r}",
                    )
                    return
                try:
                    target_key = normalize_url(target)
                except Exception:
                    target_key = target
                exchange.final_url = target
                if target_key in visited:
                    exchange.status = answer.status
                    exchange.error, exchange.detail = (
                        FetchError.redirect_loop,
                        f"redirect loop back to {target}",
                    )
                    return
                if len(exchange.chain) > self.config.max_redirects:
                    exchange.status = answer.status
                    exchange.error = FetchError.too_many_redirects
                    exchange.detail = f"more than {self.config.max_redirects} redirects"
                    return
                if answer.status == 303 or (answer.status in (301, 302) and method == "POST"):
                    method = "GET"
                current = target
                continue
            exchange.final_url = current
            exchange.status = answer.status or None  # 0: no HTTP answer at all
            exchange.headers = {
                name: answer.headers[name] for name in HEADERS_OF_INTEREST if name in answer.headers
            }
            exchange.body = answer.body
            exchange.truncated = answer.truncated
            exchange.error, exchange.detail = answer.error, answer.detail
            if exchange.error is None and answer.status >= 400:
                exchange.error, exchange.detail = FetchError.http_error, f"HTTP {answer.status}"
            return

    async def _request_with_retries(
        self,
        url: str,
        method: str,
        body: BodyMode,
        headers: dict[str, str],
        max_bytes: int,
        exchange: Exchange,
    ) -> _Answer | None:
        host = host_of(url)
        # urlsplit, not httpx.URL: httpx rejects odd IPv4 spellings (0177.0.0.1) that the guard must see.
        parts = urlsplit(url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            await self.guard.addresses(parts.hostname or "", port)
        except AddressRefused as exc:
            exchange.error, exchange.detail = FetchError.address_refused, str(exc)
            return None
        except DnsFailure as exc:
            exchange.error, exchange.detail, exchange.dns_failure = FetchError.connect_error, str(exc), True
            return None
        attempts = self.config.retries + 1
        for attempt in range(attempts):
            try:
                async with self.politeness.slot(host):
                    answer = await self._request_once(url, method, body, headers, max_bytes)
            except _Transient as exc:
                if attempt + 1 >= attempts:
                    exchange.error, exchange.detail = exc.error, exc.detail
                    return None
                logger.debug("retrying %s %s after %s", method, url, exc.detail)
                await asyncio.sleep(self._delay(attempt, exc.retry_after))
                continue
            except AddressRefusedError as exc:
                exchange.error, exchange.detail = FetchError.address_refused, str(exc)
                return None
            except DnsFailure as exc:
                exchange.error, exchange.detail, exchange.dns_failure = (
                    FetchError.connect_error,
                    str(exc),
                    True,
                )
                return None
            if answer.status in RETRY_HTTP_CODES and attempt + 1 < attempts:
                await asyncio.sleep(
                    self._delay(attempt, parse_retry_after(answer.headers.get("retry-after")))
                )
                continue
            return answer
        return None  # pragma: no cover - the loop always returns

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.config.retry_after_cap_seconds)
        base = self.config.backoff_base_seconds * (2.0**attempt)
        return min(base * random.uniform(0.5, 1.5), _BACKOFF_CAP_SECONDS)

    async def _request_once(
        self, url: str, method: str, body: BodyMode, headers: dict[str, str], max_bytes: int
    ) -> _Answer:
        try:
            request = self.client.build_request(method, url, headers={**self._base_headers, **headers})
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return _Answer(0, httpx.Headers(), error=FetchError.invalid_url, detail=str(exc))
        try:
            # One deadline around the whole exchange: a server trickling a byte at a time cannot
            # stall us, whatever httpx's per-read timeout says.
            async with asyncio.timeout(self.config.timeout_seconds):
                response = await self.client.send(request, stream=True, follow_redirects=False)
                try:
                    return await self._read(response, body, max_bytes)
                finally:
                    await response.aclose()
        except TimeoutError as exc:
            raise _Transient(
                FetchError.timeout, f"no complete answer within {self.config.timeout_seconds}s"
            ) from exc
        except httpx.TimeoutException as exc:
            raise _Transient(FetchError.timeout, f"{type(exc).__name__}: {exc}") from exc
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return _Answer(0, httpx.Headers(), error=FetchError.invalid_url, detail=str(exc))
        except httpx.DecodingError as exc:
            return _Answer(0, httpx.Headers(), error=FetchError.http_error, detail=f"undecodable body: {exc}")
        except httpx.RemoteProtocolError as exc:
            if "location header" in str(exc).lower():
                # httpx cannot parse the redirect target, so it could never connect there either.
                return _Answer(0, httpx.Headers(), error=FetchError.invalid_url, detail=f"redirect: {exc}")
            raise _Transient(FetchError.connect_error, f"{type(exc).__name__}: {exc}") from exc
        except httpx.TransportError as exc:
            raise _Transient(FetchError.connect_error, f"{type(exc).__name__}: {exc}") from exc

    async def _read(self, response: httpx.Response, body: BodyMode, max_bytes: int) -> _Answer:
        answer = _Answer(response.status_code, response.headers)
        status = response.status_code
        if body == "none" or status in REDIRECT_STATUSES or status == 304 or status >= 400:
            await _discard(response)
            return answer
        content_type = response.headers.get("content-type")
        if body == "html" and content_type is not None and not is_html_type(content_type):
            await _discard(response)
            answer.error, answer.detail = FetchError.not_html, f"content type {content_type}"
            return answer
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            answer.truncated = True
            answer.error, answer.detail = FetchError.too_large, f"Content-Length {declared} > {max_bytes}"
            if body != "html":
                return answer
        try:
            inflater = BoundedInflater(response.headers.get("content-encoding"))
        except UnsupportedEncoding as exc:
            answer.error, answer.detail = FetchError.http_error, str(exc)
            return answer
        chunks: list[bytes] = []
        size = 0
        try:
            # Raw bytes, inflated here with an output limit: never more than max_bytes (+1 to detect
            # an overflow) in memory, whatever the compression ratio.
            async for raw in response.aiter_raw():
                chunk = inflater.feed(raw, max_bytes + 1 - size)
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    break
        except zlib.error as exc:
            answer.error, answer.detail = FetchError.http_error, f"undecodable body: {exc}"
            return answer
        if size > max_bytes:
            chunks[-1] = chunks[-1][: len(chunks[-1]) - (size - max_bytes)]
            answer.truncated = True
            answer.error, answer.detail = FetchError.too_large, f"body exceeds {max_bytes} bytes"
        answer.body = b"".join(chunks)
        if body == "html" and content_type is None and not _looks_like_html(answer.body):
            answer.body = b""
            answer.error, answer.detail = FetchError.not_html, "no Content-Type and the body is not HTML"
        return answer
