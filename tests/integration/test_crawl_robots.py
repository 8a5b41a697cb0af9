"""robots.txt on a real server: disallowed URLs are never requested."""

from __future__ import annotations

from sitesteward.crawl import crawl_site
from tests.integration.conftest import quick_config, run
from tests.server import ScriptedServer


def _site(server: ScriptedServer) -> None:
    server.page(
        "/",
        '<a href="/private/x">p</a> <a href="/files/report.pdf">pdf</a>'
        '<a href="/files/report.pdf?v=2">pdf2</a>'
        '<a href="/public">pub</a> <a href="/search?q=1">search</a> <a href="/only-bots">bots</a>',
    )
    for path in (
        "/private/x",
        "/files/report.pdf",
        "/files/report.pdf?v=2",
        "/public",
        "/search?q=1",
        "/only-bots",
    ):
        server.page(path, "<p>content</p>")


def test_disallowed_urls_are_never_requested(server: ScriptedServer) -> None:
    _site(server)
    server.robots(
        "User-agent: *\nDisallow: /private/\nDisallow: /*.pdf$\nDisallow: /search\n\n"
        "User-agent: sitesteward\nDisallow: /private/\nDisallow: /*.pdf$\nDisallow: /search\n"
        "Disallow: /only-bots\n"
    )
    result = run(crawl_site(quick_config(server.url("/"), check_external=False)))
    fetched = {page.url.removeprefix(server.url("")) for page in result.pages}
    assert fetched == {"/", "/public", "/files/report.pdf?v=2"}  # "$" anchors: the ?v=2 URL is allowed
    for path in ("/private/x", "/files/report.pdf", "/search?q=1", "/only-bots"):
        assert not server.requested(path), path
    assert {url.removeprefix(server.url("")) for url in result.robots_disallowed} == {
        "/private/x",
        "/files/report.pdf",
        "/search?q=1",
        "/only-bots",
    }
    assert server.hits("/robots.txt") == 1
    assert "sitesteward" in server.requests_for("/")[0].headers["user-agent"]


def test_robots_404_allows_everything(server: ScriptedServer) -> None:
    _site(server)
    result = run(crawl_site(quick_config(server.url("/"))))
    assert len(result.pages) == 7 and result.robots_disallowed == []


def test_robots_5xx_disallows_the_whole_host(server: ScriptedServer) -> None:
    _site(server)
    server.robots("oops", status=503)
    result = run(crawl_site(quick_config(server.url("/"), retries=1)))
    assert result.pages == []
    assert result.robots_disallowed == [server.url("/")]
    assert {r.path for r in server.requests} == {"/robots.txt"}


def test_redirect_into_a_disallowed_path_stops_there(server: ScriptedServer) -> None:
    server.robots("User-agent: *\nDisallow: /private/\n")
    server.redirect("/", "/private/home")
    server.page("/private/home", "<p>secret</p>")
    result = run(crawl_site(quick_config(server.url("/"))))
    assert not server.requested("/private/home")
    assert result.pages[0].error == "robots_disallowed"
    assert result.robots_disallowed == [server.url("/private/home")]
