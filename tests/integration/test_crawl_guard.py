"""The address guard end to end: refused targets are never contacted; connections use checked addresses."""

from __future__ import annotations

import httpx
import pytest

from sitesteward.crawl import AddressGuard, build_client, crawl_site
from sitesteward.crawl.crawler import classify_link
from sitesteward.crawl.fetch import Exchange, Fetcher
from sitesteward.crawl.politeness import Politeness
from sitesteward.crawl.robots import RobotsCache
from sitesteward.models import FetchError, LinkOutcome
from tests.integration.conftest import quick_config, run, stub_resolver
from tests.server import ScriptedServer


@pytest.mark.scenario(
    name="SSRF: a loopback start URL with allow_private off",
    faults="crawl target on 127.0.0.1",
    checks="address_refused recorded, zero requests reach the server; allowed when allow_private is on",
)
def test_loopback_refused_unless_allowed(server: ScriptedServer) -> None:
    server.page("/", "<p>hi</p>")
    refused = run(crawl_site(quick_config(server.url("/"), allow_private=False)))
    assert [page.error for page in refused.pages] == [FetchError.address_refused]
    assert server.requests == []
    allowed = run(crawl_site(quick_config(server.url("/"), allow_private=True)))
    assert [page.status for page in allowed.pages] == [200]


def test_settings_default_applies_when_config_leaves_it_unset(server: ScriptedServer, monkeypatch) -> None:
    from sitesteward.settings import get_settings

    server.page("/", "<p>hi</p>")
    monkeypatch.setenv("SITESTEWARD_ALLOW_PRIVATE", "false")
    get_settings.cache_clear()
    result = run(crawl_site(quick_config(server.url("/"), allow_private=None)))
    assert result.pages[0].error == FetchError.address_refused and server.requests == []


@pytest.mark.scenario(
    name="SSRF: DNS rebinding (connections pinned to the checked address)",
    faults="stub DNS for a name that is not in real DNS",
    checks="each name resolved once; every connection goes to the address the guard checked",
)
def test_stub_resolver_pins_the_connection(server: ScriptedServer) -> None:
    # site.test is not in real DNS: pages load only if the connection goes where the guard resolved.
    server.page("/", '<a href="/a">a</a> <a href="/b">b</a>', host="site.test")
    server.page("/a", "<p>a</p>", host="site.test")
    server.page("/b", "<p>b</p>", host="site.test")
    resolver = stub_resolver({"site.test": ["127.0.0.1"]})
    result = run(crawl_site(quick_config(server.url("/", host="site.test")), resolver=resolver))
    assert sorted(page.status for page in result.pages) == [200, 200, 200]
    assert {r.host for r in server.requests} == {"site.test"}
    assert resolver.calls == ["site.test"]  # resolved once, reused: no second answer can sneak in


class _OnlyTrusted(AddressGuard):
    """Allow loopback for trusted.test only, so a redirect elsewhere meets the real checks."""

    async def _resolve_and_check(self, host: str, port: int) -> list[str]:
        if host == "trusted.test":
            return ["127.0.0.1"]
        return await super()._resolve_and_check(host, port)


@pytest.mark.scenario(
    name="SSRF: redirects from an allowed host to private, decimal, IPv4-mapped, metadata and octal targets",
    faults="redirect hops to forbidden addresses",
    checks="address_refused (octal: invalid_url) after one hop; the private target never requested",
)
def test_guard_is_rechecked_on_every_redirect_hop(server: ScriptedServer) -> None:
    targets = {
        "/to-private": "http://intranet.test:{port}/admin",
        "/to-decimal": "http://2130706433:{port}/admin",
        "/to-mapped": "http://[::ffff:127.0.0.1]:{port}/admin",
        "/to-metadata": "http://169.254.169.254/latest/meta-data/",
    }
    for path, target in targets.items():
        server.redirect(path, target.format(port=server.port), host="trusted.test")
    server.page("/admin", "<p>admin</p>")
    config = quick_config(server.url("/"), allow_private=False, retries=0)

    async def go() -> None:
        guard = _OnlyTrusted(allow_private=False, resolver=stub_resolver({"intranet.test": ["10.1.2.3"]}))
        async with build_client(config, guard) as client:
            fetcher = Fetcher(client, config, guard=guard, politeness=Politeness(4))
            for path in targets:
                exchange = await fetcher.fetch(server.url(path, host="trusted.test"))
                assert exchange.error == FetchError.address_refused, path
                assert len(exchange.chain) == 1, path

            # httpx cannot even parse an octal Location: never followed, reported as an invalid URL
            server.redirect("/to-octal", f"http://0177.0.0.1:{server.port}/admin", host="trusted.test")
            octal = await fetcher.fetch(server.url("/to-octal", host="trusted.test"))
            assert octal.error == FetchError.invalid_url

    run(go())
    assert not server.requested("/admin")
    assert server.hits("/to-octal") == 1


def test_redirect_hop_to_a_private_or_dead_host_is_reported_as_such_not_as_robots(
    server: ScriptedServer,
) -> None:
    # With the robots gate on, each hop's origin has its robots.txt read first; when that fetch is refused
    # (private address) or fails (no such name), the hop reports that error, not "robots.txt disallows".
    server.redirect("/to-private", f"http://intranet.test:{server.port}/admin", host="trusted.test")
    server.redirect("/to-dead", f"http://gone.test:{server.port}/page", host="trusted.test")
    server.robots("User-agent: *\nDisallow: /secret\n", host="trusted.test")
    server.redirect("/to-secret", "/secret", host="trusted.test")
    config = quick_config(server.url("/"), allow_private=False, retries=0)

    async def go() -> dict[str, Exchange]:
        guard = _OnlyTrusted(allow_private=False, resolver=stub_resolver({"intranet.test": ["10.1.2.3"]}))
        async with build_client(config, guard) as client:
            fetcher = Fetcher(client, config, guard=guard, politeness=Politeness(4))
            fetcher.robots = RobotsCache(fetcher, "sitesteward-test", Politeness(4)).refusal
            paths = ("/to-private", "/to-dead", "/to-secret")
            return {path: await fetcher.fetch(server.url(path, host="trusted.test")) for path in paths}

    exchanges = run(go())
    private, dead, secret = exchanges["/to-private"], exchanges["/to-dead"], exchanges["/to-secret"]
    assert private.error == FetchError.address_refused and private.robots_blocked is None
    assert "10.1.2.3" in (private.detail or "")
    assert classify_link(private)[0] == LinkOutcome.error
    assert dead.error == FetchError.connect_error and dead.dns_failure and dead.robots_blocked is None
    assert classify_link(dead)[0] == LinkOutcome.broken  # a link to a name that no longer resolves
    # rules still read as rules
    assert secret.error == FetchError.robots_disallowed and secret.robots_blocked is not None
    assert classify_link(secret)[0] == LinkOutcome.blocked
    assert not server.requested("/admin") and not server.requested("/secret")


@pytest.mark.scenario(
    name="SSRF: odd spellings of loopback as start URLs (decimal, octal, hex, 127.1, IPv4-mapped)",
    faults="start URLs spelling 127.0.0.1 five ways",
    checks="each one address_refused; zero requests reach the server",
)
def test_odd_spellings_of_loopback_are_refused_as_start_urls(server: ScriptedServer) -> None:
    server.page("/", "<p>hi</p>")
    port = server.port
    starts = [
        f"http://2130706433:{port}/",
        f"http://0177.0.0.1:{port}/",
        f"http://0x7f.1:{port}/",
        f"http://127.1:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
    ]
    result = run(crawl_site(quick_config(starts, allow_private=False, list_mode=True)))
    assert [page.error for page in result.pages] == [FetchError.address_refused] * len(starts)
    assert server.requests == []


@pytest.mark.scenario(
    name="SSRF: a caller-supplied HTTP client",
    faults="an unguarded httpx client passed to crawl_site",
    checks="the guard still refuses loopback; zero requests reach the server",
)
def test_user_supplied_client_still_guarded(server: ScriptedServer) -> None:
    server.page("/", "<p>hi</p>")

    async def go():
        async with httpx.AsyncClient() as client:
            return await crawl_site(quick_config(server.url("/"), allow_private=False), client=client)

    result = run(go())
    assert result.pages[0].error == FetchError.address_refused and server.requests == []
