"""Discovery, scope and budget: spidering, sitemaps, list mode, traps, regexes."""

from __future__ import annotations

import gzip

import pytest

from sitesteward.crawl import CrawlProgress, crawl_site
from sitesteward.errors import ConfigurationError
from sitesteward.models import FetchError
from tests.integration.conftest import quick_config, run
from tests.server import RecordedRequest, Reply, ScriptedServer, generated_site, sitemap_xml


def _paths(result, server: ScriptedServer) -> set[str]:
    return {page.url.removeprefix(server.url("")) or "/" for page in result.pages}


def test_spider_follows_links_once_each_normalised(server: ScriptedServer) -> None:
    server.page(
        "/",
        '<a href="/a">A</a> <a href="/a#top">A again</a> <a href="/a?utm_source=x">A tracked</a>'
        '<a href="b">B</a> <a href="mailto:x@example.com">mail</a> <a href="/./a">A dotted</a>',
    )
    server.page("/a", '<a href="/">home</a> <a href="/b">B</a>')
    server.page("/b", "<p>leaf</p>")
    seen: list[CrawlProgress] = []
    result = run(crawl_site(quick_config(server.url("/")), on_progress=seen.append))
    assert _paths(result, server) == {"/", "/a", "/b"}
    assert server.hits("/a") == 1 and server.hits("/b") == 1 and server.hits("/") == 1
    assert not server.requested("/a?utm_source=x")
    assert all(page.status == 200 and page.error is None for page in result.pages)
    assert result.out_of_budget == 0
    assert [p.fetched for p in seen] == [1, 2, 3]
    assert seen[-1].current_url in {page.url for page in result.pages}
    # main text is not carried by the result's pages unless asked for
    assert all(page.data is not None and page.data.main_text == "" for page in result.pages)
    kept = run(crawl_site(quick_config(server.url("/")), keep_text=True))
    assert any(page.data is not None and "leaf" in page.data.main_text for page in kept.pages)


def test_sitemaps_from_robots_gzip_index_and_orphans(server: ScriptedServer) -> None:
    server.robots(f"User-agent: *\nAllow: /\nSitemap: {server.url('/sitemap_index.xml.gz')}\n")
    server.route(
        "/sitemap_index.xml.gz",
        body=sitemap_xml([server.url("/s1.xml"), server.url("/s2.xml.gz")], index=True, gzipped=True),
        content_type="application/gzip",
    )
    server.sitemap("/s1.xml", [server.url("/orphan"), "http://elsewhere.invalid/x"])
    server.sitemap("/s2.xml.gz", [server.url("/other")], gzipped=True)
    server.page("/", "<p>home without links</p>")
    server.page("/orphan", "<p>only in the sitemap</p>")
    server.page("/other", "<p>also only in the sitemap</p>")
    result = run(crawl_site(quick_config(server.url("/"), use_sitemaps=True)))
    assert _paths(result, server) == {"/", "/orphan", "/other"}
    by_url = {page.url: page for page in result.pages}
    assert by_url[server.url("/orphan")].in_sitemap and not by_url[server.url("/")].in_sitemap
    assert {entry.url for entry in result.sitemap_entries} == {server.url("/orphan"), server.url("/other")}
    assert all(entry.lastmod == "2024-01-01" for entry in result.sitemap_entries)
    assert result.sitemap_problems == []
    assert not server.requested("/sitemap.xml")  # robots.txt named the sitemaps


def test_default_sitemap_location_and_bad_sitemaps_are_problems(server: ScriptedServer) -> None:
    server.route(
        "/sitemap.xml",
        body=sitemap_xml(
            [
                server.url("/s-bad.xml"),
                server.url("/bomb.xml.gz"),
                server.url("/dtd.xml"),
                server.url("/missing.xml"),
            ],
            index=True,
        ),
        content_type="application/xml",
    )
    server.route("/s-bad.xml", body=b"<urlset><url><loc>unclosed", content_type="application/xml")
    server.route(
        "/bomb.xml.gz",
        body=gzip.compress(b"<urlset>" + b" " * (60 * 1024 * 1024)),
        content_type="application/gzip",
    )
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        b"<urlset><url><loc>&lol2;</loc></url></urlset>"
    )
    server.route("/dtd.xml", body=laughs, content_type="application/xml")
    server.page("/", "<p>home</p>")
    result = run(crawl_site(quick_config(server.url("/"), use_sitemaps=True)))
    problems = {p.sitemap.rsplit("/", 1)[1]: p.detail for p in result.sitemap_problems}
    assert set(problems) == {"s-bad.xml", "bomb.xml.gz", "dtd.xml", "missing.xml"}
    assert "malformed" in problems["s-bad.xml"]
    assert "cap" in problems["bomb.xml.gz"]
    assert "DTD" in problems["dtd.xml"]
    assert "404" in problems["missing.xml"]
    assert [page.status for page in result.pages] == [200]


def test_list_mode_fetches_exactly_the_list(server: ScriptedServer) -> None:
    server.page("/one", '<a href="/linked">x</a>')
    server.page("/two", "<p>two</p>")
    server.page("/linked", "<p>never</p>")
    server.robots(f"Sitemap: {server.url('/sitemap.xml')}\n")
    server.sitemap("/sitemap.xml", [server.url("/linked")])
    config = quick_config(
        [server.url("/one"), server.url("/two"), "not a url"], list_mode=True, use_sitemaps=True
    )
    result = run(crawl_site(config))
    assert {page.url for page in result.pages} == {server.url("/one"), server.url("/two"), "not a url"}
    assert not server.requested("/linked") and not server.requested("/sitemap.xml")
    invalid = next(page for page in result.pages if page.url == "not a url")
    assert invalid.error == FetchError.invalid_url


def test_calendar_trap_ends_within_budget(server: ScriptedServer) -> None:
    def calendar(request: RecordedRequest) -> Reply:
        month = int(request.path.split("month=")[1].split("&")[0])
        return Reply(body=f'<a href="/cal?month={month + 1}&amp;sessionid=abc{month}">next</a>')

    server.handle("/cal", calendar)
    result = run(crawl_site(quick_config(server.url("/cal?month=1"), max_pages=25)))
    assert len(result.pages) == 25
    assert sum(1 for r in server.requests if r.path.startswith("/cal")) == 25
    assert result.out_of_budget == 1  # the 26th month was discovered, not fetched
    assert all("sessionid" not in page.url for page in result.pages)


def test_max_depth_and_out_of_budget(server: ScriptedServer) -> None:
    generated_site(server, 200, links_per_page=3)
    result = run(crawl_site(quick_config(server.url("/p/0"), max_depth=1)))
    # depth 0: /p/0; depth 1: its three children (and /p/1 via the menu is one of them)
    assert {page.url.rsplit("/", 1)[1] for page in result.pages} == {"0", "1", "2", "3"}
    assert result.out_of_budget > 0
    assert max(page.depth for page in result.pages) == 1


def test_include_exclude_and_allowed_hosts(server: ScriptedServer) -> None:
    server.page("/", '<a href="/docs/a">a</a> <a href="/docs/private/b">b</a> <a href="/blog/c">c</a>')
    for path in ("/docs/a", "/docs/private/b", "/blog/c"):
        server.page(path, "<p>x</p>")
    config = quick_config(
        server.url("/"), include=[r"/$", r"/docs/"], exclude=[r"/private/"], check_external=False
    )
    result = run(crawl_site(config))
    assert _paths(result, server) == {"/", "/docs/a"}
    assert not server.requested("/docs/private/b") and not server.requested("/blog/c")


def test_bad_regex_is_a_configuration_error(server: ScriptedServer) -> None:
    with pytest.raises(ConfigurationError, match="invalid include regex"):
        run(crawl_site(quick_config(server.url("/"), include=["(unclosed"])))
    assert server.requests == []


def test_unreachable_start_is_recorded_not_raised() -> None:
    with ScriptedServer() as gone:
        url = gone.url("/")
    result = run(crawl_site(quick_config(url, retries=1)))
    assert len(result.pages) == 1
    assert result.pages[0].error == FetchError.connect_error


def test_streaming_pages_without_collecting_them(server: ScriptedServer) -> None:
    generated_site(server, 60, links_per_page=4)
    streamed = []
    result = run(crawl_site(quick_config(server.url("/p/0")), on_page=streamed.append, collect_pages=False))
    assert result.pages == []
    assert len(streamed) == 60 and len({page.url for page in streamed}) == 60
    assert all(page.data is not None and page.data.main_text for page in streamed)


def test_a_page_first_seen_too_deep_is_still_crawled_through_a_shorter_path(server: ScriptedServer) -> None:
    # /a → /b → /x reaches /x at depth 3 (too deep) while /slow, which links to /x at depth 2, is
    # still answering: the crawl must not forget /x because the long path got there first.
    server.page("/", '<a href="/slow">slow</a> <a href="/a">a</a>')
    server.page("/slow", '<a href="/x">x</a>', delay=0.8)
    server.page("/a", '<a href="/b">b</a>')
    server.page("/b", '<a href="/x">x</a>')
    server.page("/x", "<p>two links away from home</p>")
    result = run(crawl_site(quick_config(server.url("/"), max_depth=2)))
    assert _paths(result, server) == {"/", "/slow", "/a", "/b", "/x"}
    assert server.hits("/x") == 1
