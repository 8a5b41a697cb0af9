"""SSRF through the whole audit path, with ``allow_private`` off: nothing private is ever connected to.

A public-looking site (``www.public.test``, stub-resolved to the public address 93.184.216.34) links
and redirects to private, loopback, link-local and metadata addresses in every spelling. Two witnesses:

- a **stub resolver**: no real DNS is asked, and names can resolve to whatever the scenario needs;
- a **connect spy** in place of the HTTP client's network backend (under the guard's
  :class:`~sitesteward.crawl.guard.PinnedNetworkBackend`): it records every TCP connect, sends the one
  public test address to the loopback server and refuses everything else, so a guard bug shows up as a
  recorded attempt, never as a packet leaving loopback.

Each refusal must be a recorded finding (``address_refused`` for a crawled URL, ``link_error`` for a
checked link, ``invalid_url`` for what cannot even be parsed), never a crash. The guard's unit cases are
in ``tests/unit/test_crawl_guard.py``, single hops through the fetcher in
``tests/integration/test_crawl_guard.py``.

A redirect hop into a private origin meets the per-hop robots.txt gate before the address check: the
origin's robots.txt is refused by the guard (so never fetched), the origin counts as disallowed, and the
hop is reported as ``robots_disallowed`` rather than ``address_refused``. Both are refusals without a
connection; the tests accept either and the spy proves the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import pytest

from sitesteward.crawl import AddressGuard
from sitesteward.crawl.guard import PinnedNetworkBackend
from sitesteward.errors import InvalidUrl
from sitesteward.models import CrawlConfig, FetchError, LinkOutcome
from sitesteward.urls import normalize_url
from tests.durability.scenarios import crawl_and_audit
from tests.integration.conftest import quick_config, stub_resolver
from tests.server import ScriptedServer

PUBLIC_IP = "93.184.216.34"
SITE = "www.public.test"

#: Names the stub resolver answers; every one but the site resolves to something private.
DNS = {
    SITE: [PUBLIC_IP],
    "intranet.test": ["10.1.2.3"],
    "metadata.test": ["169.254.169.254"],
    "v6-private.test": ["fd00::1"],
    "v6-link-local.test": ["fe80::1"],
    "mapped.test": ["::ffff:10.0.0.1"],
    "mixed.test": [PUBLIC_IP, "192.168.1.1"],  # one private answer is enough to refuse
    "localhost": ["127.0.0.1", "::1"],
    "127.0.0.1.nip.io": ["127.0.0.1"],
    "cgnat.test": ["100.64.0.1"],
}

#: Private targets as a URL can spell them: literal addresses in every form, and names resolving to them.
TARGETS = [
    "http://127.0.0.1/admin",
    "http://2130706433/admin",  # decimal 127.0.0.1
    "http://0x7f.0.0.1/admin",  # hex
    "http://0x7f000001/admin",
    "http://127.1/admin",  # short form
    "http://0177.1/admin",  # short octal (httpx parses this one)
    "http://0/admin",  # 0.0.0.0
    "http://[::1]/admin",
    "http://[::]/admin",
    "http://[::ffff:127.0.0.1]/admin",  # IPv4-mapped IPv6
    "http://[::ffff:a9fe:a9fe]/latest/meta-data/",  # mapped metadata, hex groups
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",  # NAT64 of the metadata address
    "http://[2002:a9fe:a9fe::]/latest/meta-data/",  # 6to4 of the metadata address
    "http://169.254.169.254/latest/meta-data/",
    "http://2852039166/latest/meta-data/",  # decimal 169.254.169.254
    "http://0xA9.0xFE.0xA9.0xFE/latest/meta-data/",
    "http://[fd00::1]/admin",  # unique local, fd00::/8
    "http://[fd12:3456:789a::1]/admin",
    "http://[fe80::1]/admin",
    "http://10.0.0.1/admin",
    "http://172.16.0.1/admin",
    "http://192.168.0.1/admin",
    "http://100.64.0.1/admin",
    "http://www.public.test@127.0.0.1/admin",  # userinfo: the host is 127.0.0.1
    "http://intranet.test/admin",
    "http://metadata.test/latest/meta-data/",
    "http://v6-private.test/admin",
    "http://v6-link-local.test/admin",
    "http://mapped.test/admin",
    "http://mixed.test/admin",
    "http://localhost/admin",
    "http://127.0.0.1.nip.io/admin",
    "http://cgnat.test/admin",
]
#: What httpx cannot even parse (a dotted-octal host): never followed, reported as invalid.
UNPARSEABLE = ["http://0177.0.0.1/admin"]


#: How a refused hop is reported (see the module docstring).
REFUSED = (FetchError.address_refused, FetchError.robots_disallowed)


class ConnectSpy(httpcore.AsyncNetworkBackend):
    """Records every TCP connect; sends the public test address to loopback, refuses everything else."""

    def __init__(self, loopback_port: int) -> None:
        self.inner: httpcore.AsyncNetworkBackend = httpcore.AnyIOBackend()  # replaced by the client's own
        self.loopback_port = loopback_port
        self.attempts: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.attempts.append((host, port))
        if host != PUBLIC_IP or port != self.loopback_port:
            raise httpcore.ConnectError(f"connect spy: {host}:{port} is not the test site")
        return await self.inner.connect_tcp(
            "127.0.0.1", port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        self.attempts.append((path, 0))
        raise httpcore.ConnectError("connect spy: no unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as scripted:
        yield scripted


@pytest.fixture
def spy(server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> ConnectSpy:
    """Put a connect spy under the pinned backend of the client ``crawl_site`` builds for itself.

    The crawl keeps its one guard (the fetcher's checks and the connection pinning share it, as in
    production); only the last step, the TCP connect, goes through the spy.
    """
    from sitesteward.crawl import crawler

    real_build_client = crawler.build_client
    connect_spy = ConnectSpy(server.port)

    def build_spied_client(config: CrawlConfig, guard: AddressGuard | None = None, **kwargs: Any) -> Any:
        client = real_build_client(config, guard, **kwargs)
        pinned = client._transport._pool._network_backend
        assert isinstance(pinned, PinnedNetworkBackend), "build_client no longer pins connections"
        connect_spy.inner = pinned._inner
        pinned._inner = connect_spy
        return client

    monkeypatch.setattr(crawler, "build_client", build_spied_client)
    return connect_spy


def _site(server: ScriptedServer, path: str = "/") -> str:
    return server.url(path, host=SITE)


@pytest.mark.scenario(
    name="SSRF: links and redirects to private, link-local and metadata addresses in every spelling",
    faults=f"a public-looking site (stub DNS) linking and redirecting to {len(TARGETS) + len(UNPARSEABLE)} "
    "private targets: decimal, octal, hex, short, IPv4-mapped/NAT64/6to4 IPv6, [::1], fd00::/8, fe80::, "
    "169.254.169.254, userinfo tricks, names resolving to private addresses; allow_private off",
    checks="a connect spy sees only the public test address; every redirect is a finding (address_refused, "
    "octal: invalid_url) after one hop; every link is checked and refused (link_error); no crash",
)
def test_links_and_redirects_to_private_addresses_are_refused(
    server: ScriptedServer, spy: ConnectSpy
) -> None:
    redirects = {f"/go/{n}": target for n, target in enumerate(TARGETS + UNPARSEABLE)}
    for path, target in redirects.items():
        server.redirect(path, target, host=SITE)
    # Links carry ?via=link: a link to the very URL a redirect ended at would count as that page.
    links = "".join(f'<a href="{t}?via=link">{n}</a>' for n, t in enumerate(TARGETS))
    hops = "".join(f'<a href="{path}">{path}</a>' for path in redirects)
    server.page("/", f"<h1>Public site</h1>{links}{hops}", host=SITE)
    server.page("/admin", "<p>the private admin page</p>")  # what a leak would reach on loopback
    resolver = stub_resolver(DNS)
    config = quick_config(_site(server), allow_private=False, retries=0, max_pages=200)

    audited = crawl_and_audit(config, resolver=resolver)

    # Nothing but the public test site was ever connected to, and nothing private was requested.
    assert spy.attempts and {host for host, _ in spy.attempts} == {PUBLIC_IP}
    assert {r.host for r in server.requests} == {SITE.lower()}
    assert not server.requested("/admin") and not server.requested("/latest/meta-data/")
    assert set(resolver.calls) <= set(DNS), resolver.calls  # literal addresses never reach DNS

    for path, target in redirects.items():
        page = next(p for p in audited.result.pages if p.url == _site(server, path))
        if target in UNPARSEABLE:  # httpx cannot parse the Location header: not even a hop
            assert page.error == FetchError.invalid_url and len(page.redirect_chain) <= 1, target
            assert audited.of("invalid_url", page.url), target
        else:
            assert page.error in REFUSED and len(page.redirect_chain) == 1, (
                target,
                page.error,
                page.error_detail,
            )
            assert audited.of(page.error.value, page.url), target

    errors = [f.target or "" for f in audited.of("link_error", _site(server))]
    for target in TARGETS:
        link = f"{target}?via=link"
        checks = [check for check in audited.result.link_checks if _same(check.url, link)]
        assert len(checks) == 1 and checks[0].outcome == LinkOutcome.error, (target, checks)
        assert "non-public" in (checks[0].detail or ""), (target, checks[0].detail)
        assert [t for t in errors if _same(t, link)], (target, errors)


def _normal(url: str) -> str:
    try:
        return normalize_url(url)
    except InvalidUrl:
        return url


def _same(a: str, b: str) -> bool:
    """Whether two spellings of a URL name the same thing (the crawler normalises what it records)."""
    return _normal(a) == _normal(b)


@pytest.mark.scenario(
    name="SSRF: private addresses as start URLs, and DNS that changes its answer",
    faults="start URLs spelling private addresses every way; a name that resolves public, then private "
    "(DNS rebinding)",
    checks="each start URL is an address_refused finding with no connect; the rebinding name is resolved "
    "once and every connection goes to its first, checked address",
)
def test_private_start_urls_and_rebinding_dns(server: ScriptedServer, spy: ConnectSpy) -> None:
    answers = iter([[PUBLIC_IP]] + [["127.0.0.1"]] * 100)
    calls: list[str] = []
    fixed = stub_resolver(DNS)

    async def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers) if host == "rebind.test" else await fixed(host, port)

    for path in ("/", "/a", "/b"):
        server.page(path, '<a href="/a">a</a> <a href="/b">b</a>', host="rebind.test")
    starts = [*TARGETS, *UNPARSEABLE]
    config = quick_config([server.url("/", host="rebind.test"), *starts], allow_private=False, retries=0)

    audited = crawl_and_audit(config, resolver=rebinding)

    assert {host for host, _ in spy.attempts} == {PUBLIC_IP}
    assert calls.count("rebind.test") == 1
    assert sorted(p.url.rsplit("/", 1)[1] for p in audited.result.pages if p.status == 200) == ["", "a", "b"]
    assert {r.host for r in server.requests} == {"rebind.test"}
    private = [p for p in audited.result.pages if p.status is None]
    # Spellings that normalise alike (the userinfo trick is 127.0.0.1) are one page.
    assert len(private) == len({_normal(url) for url in starts}), sorted(p.url for p in private)
    for page in private:
        assert page.error == FetchError.address_refused, (page.url, page.error, page.error_detail)
        assert audited.of("address_refused", page.url), page.url
