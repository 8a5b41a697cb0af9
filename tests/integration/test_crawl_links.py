"""External links are checked (HEAD, GET fallback), classified, and checked once each."""

from __future__ import annotations

from sitesteward.crawl import crawl_site
from sitesteward.models import LinkOutcome
from tests.integration.conftest import quick_config, run, stub_resolver
from tests.server import RecordedRequest, Reply, ScriptedServer


def test_external_links_are_checked_not_crawled(server: ScriptedServer) -> None:
    ext = lambda path: server.url(path, host="ext.test")  # noqa: E731
    links = ["/ok", "/moved", "/gone", "/missing", "/forbidden", "/limited", "/nohead", "/down", "/loop"]
    anchors = " ".join(f'<a href="{ext(p)}">{p}</a>' for p in links)
    anchors += f' <a href="{ext("/ok")}#again">dup</a> <a href="http://nxdomain.test/">dead</a>'
    server.page("/", anchors + ' <a href="/inner">inner</a>', host="site.test")
    server.page("/inner", f'<a href="{ext("/ok")}">again</a>', host="site.test")
    server.page("/ok", "<p>ok</p>", host="ext.test")
    server.redirect("/moved", "/ok", host="ext.test")
    server.route("/gone", status=410, host="ext.test")
    server.route("/missing", status=404, host="ext.test")
    server.route("/forbidden", status=403, host="ext.test")
    server.route("/limited", status=429, host="ext.test")
    server.route("/down", status=500, host="ext.test")
    server.redirect("/loop", "/loop", host="ext.test")

    def head_refused(request: RecordedRequest) -> Reply:
        return Reply(status=405) if request.method == "HEAD" else Reply(body="<p>fine</p>")

    server.handle("/nohead", head_refused, host="ext.test")
    resolver = stub_resolver({"site.test": ["127.0.0.1"], "ext.test": ["127.0.0.1"]})
    result = run(crawl_site(quick_config(server.url("/", host="site.test"), retries=1), resolver=resolver))

    outcomes = {check.url.rsplit("/", 1)[-1] or check.url: check.outcome for check in result.link_checks}
    assert outcomes == {
        "ok": LinkOutcome.ok,
        "moved": LinkOutcome.redirected,
        "gone": LinkOutcome.broken,
        "missing": LinkOutcome.broken,
        "forbidden": LinkOutcome.blocked,
        "limited": LinkOutcome.blocked,
        "nohead": LinkOutcome.ok,
        "down": LinkOutcome.error,
        "loop": LinkOutcome.broken,
        "http://nxdomain.test/": LinkOutcome.broken,
    }
    ext_requests = [r for r in server.requests if r.host == "ext.test" and r.path != "/robots.txt"]
    assert [r.method for r in ext_requests if r.path == "/ok"] == [
        "HEAD",
        "HEAD",
    ]  # once itself, once via /moved
    assert [r.method for r in ext_requests if r.path == "/nohead"] == ["HEAD", "GET"]
    down = next(c for c in result.link_checks if c.url.endswith("/down"))
    assert server.hits("/down") == 2, down  # retried once
    assert {page.url.rsplit("/", 1)[1] for page in result.pages} == {
        "",
        "inner",
    }  # external pages not crawled
    moved = next(check for check in result.link_checks if check.url.endswith("/moved"))
    assert moved.final_url == ext("/ok") and moved.redirect_chain[0].status == 301


def test_check_external_off(server: ScriptedServer) -> None:
    server.page("/", '<a href="http://elsewhere.test/">x</a>')
    result = run(crawl_site(quick_config(server.url("/"), check_external=False)))
    assert result.link_checks == []
