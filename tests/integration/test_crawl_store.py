"""Conditional re-crawls against the crawl store: validators sent, 304s answered from the snapshot."""

from __future__ import annotations

import pathlib

from sitesteward.crawl import CrawlStore, crawl_site
from sitesteward.settings import get_settings
from tests.integration.conftest import quick_config, run
from tests.server import RecordedRequest, Reply, ScriptedServer


def _etag_page(body: str, etag: str) -> object:
    def handler(request: RecordedRequest) -> Reply:
        if request.headers.get("if-none-match") == etag:
            return Reply(status=304, body=b"", content_type=None, headers={"ETag": etag})
        return Reply(body=body, headers={"ETag": etag})

    return handler


def test_second_crawl_is_conditional_and_keeps_spidering(server: ScriptedServer) -> None:
    server.handle(
        "/", _etag_page('<html><body><main><p>home</p><a href="/child">c</a></main></body></html>', '"v1"')
    )
    stamp = "Wed, 21 Oct 2015 07:28:00 GMT"

    def child(request: RecordedRequest) -> Reply:
        if request.headers.get("if-modified-since") == stamp:
            return Reply(status=304, body=b"", content_type=None)
        return Reply(body="<main><p>child text</p></main>", headers={"Last-Modified": stamp})

    server.handle("/child", child)
    config = quick_config(server.url("/"))
    with CrawlStore() as store:
        assert str(store.path) == str(get_settings().crawl_store_path)
        first = run(crawl_site(config, store=store))
        assert [p.not_modified for p in first.pages] == [False, False]
        hashes = store.previous_hashes(first.site)
        assert set(hashes) == {server.url("/"), server.url("/child")} and all(hashes.values())

        second = run(crawl_site(config, store=store))
    assert server.requests_for("/")[-1].headers.get("if-none-match") == '"v1"'
    assert server.requests_for("/child")[-1].headers.get("if-modified-since") == stamp
    by_url = {page.url: page for page in second.pages}
    assert set(by_url) == {
        server.url("/"),
        server.url("/child"),
    }  # the child was reached via the snapshot's links
    home = by_url[server.url("/")]
    assert home.not_modified and home.status == 200 and home.data is not None
    assert home.data.text_hash == hashes[server.url("/")]
    assert home.data.main_text == ""  # the result stays slim; the store has the text
    with CrawlStore() as store:
        snapshot = store.load_page(second.site, server.url("/child"))
    assert snapshot is not None and "child text" in snapshot.data.main_text


def test_conditional_off_sends_no_validators(server: ScriptedServer) -> None:
    server.handle("/", _etag_page("<p>home</p>", '"v1"'))
    with CrawlStore() as store:
        run(crawl_site(quick_config(server.url("/")), store=store))
        result = run(crawl_site(quick_config(server.url("/"), conditional=False), store=store))
    assert "if-none-match" not in server.requests_for("/")[-1].headers
    assert not result.pages[0].not_modified


def test_changed_page_is_reparsed(server: ScriptedServer) -> None:
    versions = iter(['"a"', '"b"'])
    bodies = {'"a"': "<main><p>old words</p></main>", '"b"': "<main><p>new words</p></main>"}

    def handler(request: RecordedRequest) -> Reply:
        etag = next(versions)
        return Reply(body=bodies[etag], headers={"ETag": etag})

    server.handle("/", handler)
    with CrawlStore() as store:
        first = run(crawl_site(quick_config(server.url("/")), store=store))
        before = store.previous_hashes(first.site)
        second = run(crawl_site(quick_config(server.url("/")), store=store))
        after = store.previous_hashes(first.site)
    assert not second.pages[0].not_modified
    assert before[server.url("/")] != after[server.url("/")]


def test_recent_external_link_checks_are_reused_and_old_ones_asked_again(tmp_path: pathlib.Path) -> None:
    from datetime import timedelta

    from sitesteward.models import LinkOutcome

    with ScriptedServer() as site, ScriptedServer() as other:
        other.page("/ref", "<html><body>ok</body></html>")
        site.page("/", f"<html><body><main><a href='{other.url('/ref')}'>ref</a></main></body></html>")
        config = quick_config(site.url("/"))
        with CrawlStore(tmp_path / "crawl.sqlite") as store:
            first = run(crawl_site(config, store=store))
            assert [c.outcome for c in first.link_checks] == [LinkOutcome.ok]
            assert other.hits("/ref") == 1
            second = run(crawl_site(config, store=store))
            assert [c.outcome for c in second.link_checks] == [LinkOutcome.ok]
            assert other.hits("/ref") == 1  # reused, not asked again
            remembered = store.recent_link_check(other.url("/ref"), timedelta(hours=1))
            assert remembered is not None and remembered.outcome is LinkOutcome.ok
            fresh = quick_config(site.url("/"), link_check_max_age_hours=0)
            run(crawl_site(fresh, store=store))
            assert other.hits("/ref") == 2  # max age 0: always asked


def test_result_pages_are_slim_and_the_store_keeps_the_rest(server: ScriptedServer) -> None:
    # Memory per crawled page is what bounds a 100k-page audit: validators and empty containers
    # are left off (or shared by) the result's pages, while the snapshot keeps everything.
    for path in ("/a", "/b"):
        server.handle(
            path,
            lambda request, path=path: Reply(
                body=f"<main><h1>{path}</h1><p>text of {path}</p></main>",
                headers={"ETag": f'"{path}"', "X-Robots-Tag": "nofollow"},
            ),
        )
    config = quick_config([server.url("/a"), server.url("/b")], list_mode=True)
    with CrawlStore() as store:
        result = run(crawl_site(config, store=store))
        snapshot = store.load_page(result.site, server.url("/a"))
    first, second = result.pages
    assert first.data is not None and second.data is not None
    assert "etag" not in first.headers and first.headers["x-robots-tag"] == "nofollow"
    assert first.data.images == [] and first.data.images is second.data.images  # one shared empty list
    assert first.content_type is second.content_type  # interned
    assert snapshot is not None and snapshot.headers["etag"] == '"/a"'
    assert snapshot.data is not None and "text of /a" in snapshot.data.main_text
