"""Address guard: never connect to private, loopback or link-local targets unless allowed.

The guard resolves a host once, checks every address it resolves to and remembers the checked
addresses; :class:`PinnedNetworkBackend` then connects to exactly those addresses, so there is no
window between the check and the connection in which DNS could answer differently (DNS rebinding).

Odd spellings of IPv4 addresses that ``inet_aton`` (and therefore browsers and curl) accept, such as
``2130706433``, ``0177.0.0.1``, ``0x7f.1`` or ``127.1``, are decoded before the check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import select
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore

from sitesteward.errors import AddressRefused, ConnectFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: An injectable resolver: ``await resolver(host, port)`` returns the host's IP addresses as strings.
Resolver = Callable[[str, int], Awaitable[list[str]]]

# Prefixes that ``ipaddress`` does not flag on every Python version but that never name a public host.
_EXTRA_BLOCKED: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    ipaddress.ip_network("100.64.0.0/10"),  # carrier-grade NAT
    ipaddress.ip_network("192.0.0.0/24"),
    ipaddress.ip_network("198.18.0.0/15"),  # benchmarking
    ipaddress.ip_network("64:ff9b:1::/48"),  # local-use NAT64
    ipaddress.ip_network("fc00::/7"),
    ipaddress.ip_network("fec0::/10"),  # deprecated site-local
)


class DnsFailure(ConnectFailed):
    """The host name does not resolve (a broken link, not a flaky network)."""


class AddressRefusedError(AddressRefused):
    """Raised inside the transport so that httpx lets it through unchanged."""


def parse_ipv4_lenient(text: str) -> ipaddress.IPv4Address | None:
    """Decode an IPv4 address the way ``inet_aton`` does (decimal, octal, hex, 1 to 4 parts).

    Args:
        text: A host name as it appears in a URL.

    Returns:
        The address, or None when ``text`` is not an IPv4 spelling (an ordinary host name).
    """
    parts = text.rstrip(".").split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        lowered = part.lower()
        try:
            if lowered.startswith("0x"):
                number = int(lowered[2:] or "0", 16)
            elif len(lowered) > 1 and lowered.startswith("0"):
                number = int(lowered, 8)
            else:
                if not lowered.isdigit():
                    return None
                number = int(lowered, 10)
        except ValueError:
            return None
        numbers.append(number)
    # The last part fills the remaining bytes: a.b.c.d, a.b.c(16 bits), a.b(24 bits), a(32 bits).
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    value = value * 256 ** (5 - len(numbers)) + last
    return ipaddress.IPv4Address(value)


def literal_address(host: str) -> IPAddress | None:
    """Return the IP address a URL host spells literally (any IPv4 spelling, IPv6 in brackets)."""
    bare = host.strip("[]")
    if ":" in bare:
        try:
            return ipaddress.IPv6Address(bare.split("%", 1)[0])
        except ValueError:
            return None
    return parse_ipv4_lenient(bare)


def is_forbidden_address(address: IPAddress) -> bool:
    """Tell whether connecting to ``address`` could reach something that is not a public web server.

    Private, loopback, link-local, multicast, reserved, unspecified and shared addresses are
    forbidden, and so are IPv6 addresses that embed one of those (IPv4-mapped, 6to4, NAT64). Python
    counts every IPv4-mapped address (``::ffff:0:0/96``) as non-global, so even a mapped public
    address is refused: no public site needs one in its DNS answer.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in ipaddress.IPv6Network("64:ff9b::/96"):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and is_forbidden_address(embedded):
            return True
    if (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    ):
        return True
    return any(address in network for network in _EXTRA_BLOCKED if network.version == address.version)


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the event loop's ``getaddrinfo`` (the default resolver)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class AddressGuard:
    """Resolve and check hosts; remember the checked addresses so connections go exactly there.

    Args:
        allow_private: Allow every address (tests, the demo, intranet sites).
        resolver: ``async (host, port) -> [ip, ...]``; default :func:`system_resolver`.
    """

    def __init__(self, *, allow_private: bool, resolver: Resolver | None = None) -> None:
        self.allow_private = allow_private
        self._resolver: Resolver = resolver or system_resolver
        self._cache: dict[str, list[str]] = {}
        self._failures: dict[str, DnsFailure | AddressRefusedError] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def addresses(self, host: str, port: int) -> list[str]:
        """Return the checked addresses of ``host`` (resolved once per guard).

        Raises:
            AddressRefusedError: an address is not allowed (every address must pass, so a name
                that resolves to one public and one private address is refused).
            DnsFailure: the name does not resolve.
        """
        key = host.lower().strip("[]")
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._cache.get(key)
            if cached is not None:
                return cached
            failure = self._failures.get(key)
            if failure is not None:
                # A name that did not resolve (or was refused) is not asked again in this crawl: a slow
                # failing lookup would otherwise stall every link to that host.
                raise failure
            try:
                checked = await self._resolve_and_check(key, port)
            except (DnsFailure, AddressRefusedError) as exc:
                self._failures[key] = exc
                raise
            self._cache[key] = checked
            return checked

    async def _resolve_and_check(self, host: str, port: int) -> list[str]:
        literal = literal_address(host)
        if literal is not None:
            resolved = [str(literal)]
        else:
            try:
                resolved = await self._resolver(host, port)
            except (OSError, UnicodeError) as exc:
                raise DnsFailure(f"cannot resolve {host}: {exc}") from exc
            if not resolved:
                raise DnsFailure(f"{host} resolves to no address")
        if self.allow_private:
            return resolved
        for text in resolved:
            try:
                address = ipaddress.ip_address(text.split("%", 1)[0])
            except ValueError as exc:
                raise AddressRefusedError(f"{host} resolved to an unparseable address {text!r}") from exc
            if is_forbidden_address(address):
                raise AddressRefusedError(f"{host} resolves to {address}, a non-public address")
        return resolved


class _ReadableCheck(httpcore.AsyncNetworkStream):
    """A stream whose ``is_readable`` answer is cheap.

    httpcore's pool asks every connection ``has_expired()`` (``get_extra_info("is_readable")``) each
    time any request starts or ends: about 25 times a request with eight connections. anyio builds its
    whole attribute table for each question (with a ``getpeername`` system call), which cost a re-crawl
    of 530 pages about a tenth of its CPU. The raw socket is looked up once instead; everything else is
    delegated.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _ReadableCheck(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._socket is not None:
            return _socket_readable(self._socket)
        return self._inner.get_extra_info(info)


def _socket_readable(sock: socket.socket) -> bool:
    """Data (or the end of the stream) is waiting: an idle keep-alive connection the server closed."""
    fd = sock.fileno()
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class PinnedNetworkBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to addresses the guard has checked.

    TLS still uses the URL's host name for SNI and certificate checks (httpcore passes it separately),
    so pinning the TCP address does not weaken HTTPS.
    """

    def __init__(self, guard: AddressGuard, inner: httpcore.AsyncNetworkBackend) -> None:
        self._guard = guard
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect to the first reachable checked address of ``host``."""
        addresses = await self._guard.addresses(host, port)
        last_error: Exception | None = None
        for address in addresses:
            try:
                stream = await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
                return _ReadableCheck(stream)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        """Unix sockets are never a crawl target."""
        raise AddressRefusedError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        """Delegate to the wrapped backend."""
        await self._inner.sleep(seconds)
