"""Fetch safety on a real loopback server: redirects, retries, Retry-After, caps, content types, charsets."""

from __future__ import annotations

import time

import httpx

from sitesteward.crawl import crawl_site, fetch_page, fetch_resource
from sitesteward.models import FetchError
from tests.integration.conftest import quick_config, run
from tests.server import Reply, ScriptedServer, http_date


def _only(result, server: ScriptedServer, path: str):
    return next(page for page in result.pages if page.url == server.url(path))


async def _fetch(server: ScriptedServer, path: str, **config):
    async with httpx.AsyncClient() as client:
        return await fetch_page(
            server.url(path), client=client, config=quick_config(server.url("/"), **config)
        )


def test_redirect_chain_recorded_hop_by_hop(server: ScriptedServer) -> None:
    server.redirect("/old", "/older", 301)
    server.redirect("/older", server.url("/new"), 302)
    server.page("/new", "<p>new</p>")
    page = run(_fetch(server, "/old"))
    assert [(hop.url.rsplit("/", 1)[1], hop.status) for hop in page.redirect_chain] == [
        ("old", 301),
        ("older", 302),
    ]
    assert page.redirect_chain[0].location == server.url("/older")
    assert page.final_url == server.url("/new") and page.status == 200 and page.error is None
    assert page.data is not None and "new" in page.data.main_text


def test_redirect_loop_and_too_many_redirects(server: ScriptedServer) -> None:
    server.redirect("/a", "/b")
    server.redirect("/b", "/a")
    for i in range(10):
        server.redirect(f"/hop{i}", f"/hop{i + 1}")
    loop = run(_fetch(server, "/a"))
    assert loop.error == FetchError.redirect_loop and len(loop.redirect_chain) == 2
    many = run(_fetch(server, "/hop0", max_redirects=3))
    assert many.error == FetchError.too_many_redirects
    assert len(many.redirect_chain) == 4 and server.hits("/hop4") == 0


def test_transient_statuses_are_retried_then_succeed(server: ScriptedServer) -> None:
    server.sequence("/flaky", [Reply(status=503), Reply(status=500), Reply(body="<p>finally</p>")])
    server.sequence("/down", [Reply(status=502)])
    server.route("/missing", status=404, body="<p>no</p>")
    assert run(_fetch(server, "/flaky", retries=2)).status == 200
    assert server.hits("/flaky") == 3
    down = run(_fetch(server, "/down", retries=2))
    assert down.status == 502 and down.error == FetchError.http_error and server.hits("/down") == 3
    missing = run(_fetch(server, "/missing", retries=3))
    assert missing.status == 404 and missing.error == FetchError.http_error and server.hits("/missing") == 1


def test_retry_after_seconds_date_and_garbage(server: ScriptedServer) -> None:
    server.sequence("/secs", [Reply(status=429, headers={"Retry-After": "1"}), Reply(body="<p>ok</p>")])
    server.sequence(
        "/date", [Reply(status=503, headers={"Retry-After": http_date(2)}), Reply(body="<p>ok</p>")]
    )
    server.sequence(
        "/junk", [Reply(status=503, headers={"Retry-After": "soon-ish"}), Reply(body="<p>ok</p>")]
    )
    server.sequence("/long", [Reply(status=503, headers={"Retry-After": "3600"}), Reply(body="<p>ok</p>")])
    # HTTP dates have whole seconds: "in 2 s" means 1 to 2 s from now.
    for path, low, high in (
        ("/date", 0.5, 2.5),
        ("/secs", 0.9, 1.9),
        ("/junk", 0.0, 0.5),
        ("/long", 0.4, 1.0),
    ):
        started = time.monotonic()
        page = run(_fetch(server, path, retry_after_cap_seconds=0.5 if path == "/long" else 5.0))
        waited = time.monotonic() - started
        assert page.status == 200, path
        assert low <= waited <= high, (path, waited)


def test_byte_cap_truncates_and_keeps_the_head(server: ScriptedServer) -> None:
    filler = "<p>" + "x" * 200_000 + "</p>"
    server.page(
        "/huge", f'<html><head><title>Huge</title></head><body><a href="/z">z</a>{filler}</body></html>'
    )
    page = run(_fetch(server, "/huge", max_bytes=4096))
    assert page.truncated and page.error == FetchError.too_large
    assert page.bytes == 4096
    assert page.data is not None and page.data.title == "Huge"
    assert [link.href for link in page.data.links] == [server.url("/z")]


def test_trickling_server_hits_the_total_deadline(server: ScriptedServer) -> None:
    server.trickle("/slow", size=40, interval=0.2)
    started = time.monotonic()
    page = run(_fetch(server, "/slow", timeout_seconds=1.0, retries=0))
    assert page.error == FetchError.timeout
    assert time.monotonic() - started < 2.5


def test_lying_content_length_is_an_error_not_a_crash(server: ScriptedServer) -> None:
    server.route("/liar", body="<p>short</p>", content_length=5000)
    page = run(_fetch(server, "/liar", retries=1))
    assert page.error == FetchError.connect_error
    assert "incomplete" in (page.error_detail or "").lower() or "closed" in (page.error_detail or "").lower()
    assert server.hits("/liar") == 2


def test_non_html_is_not_parsed_or_downloaded(server: ScriptedServer) -> None:
    server.route("/img", body=b"\x89PNG\r\n" + b"\x00" * 50_000, content_type="image/png")
    server.route("/blob", body=b"\x00\x01\x02binary" * 100, content_type=None)
    server.route("/pdf", body=b"%PDF-1.4 fake", content_type="application/pdf")
    img = run(_fetch(server, "/img"))
    assert img.error == FetchError.not_html and img.data is None and img.bytes == 0
    blob = run(_fetch(server, "/blob"))
    assert blob.error == FetchError.not_html and blob.data is None

    async def source() -> None:
        async with httpx.AsyncClient() as client:
            pdf = await fetch_resource(
                server.url("/pdf"), client=client, config=quick_config(server.url("/"))
            )
        assert pdf.body == b"%PDF-1.4 fake" and pdf.content_type == "application/pdf" and pdf.error is None

    run(source())


def test_windows_1252_page_keeps_its_accents(server: ScriptedServer) -> None:
    text = "Café crème – “naïve” résumé"
    server.route(
        "/cp",
        body=f"<html><head><title>{text}</title></head><body><p>{text}</p></body></html>",
        encoding="cp1252",
        content_type="text/html",
    )
    server.route(
        "/meta",
        body=f'<html><head><meta charset="windows-1252"><title>{text}</title></head></html>',
        encoding="cp1252",
        content_type="text/html",
    )
    server.route(
        "/latin",
        body=f"<html><head><title>{text}</title></head></html>",
        encoding="cp1252",
        content_type="text/html; charset=ISO-8859-1",
    )
    for path in ("/cp", "/meta", "/latin"):
        page = run(_fetch(server, path))
        assert page.data is not None and page.data.title == text, path
    assert run(_fetch(server, "/meta")).encoding == "cp1252"


def test_crawl_records_errors_per_page_and_continues(server: ScriptedServer) -> None:
    server.page("/", '<a href="/gone">g</a> <a href="/img">i</a> <a href="/ok">o</a> <a href="/loop">l</a>')
    server.route("/gone", status=410, body="<p>gone</p>")
    server.route("/img", body=b"\x89PNG", content_type="image/png")
    server.page("/ok", "<p>ok</p>")
    server.redirect("/loop", "/loop")
    result = run(crawl_site(quick_config(server.url("/"))))
    errors = {page.url.rsplit("/", 1)[1]: page.error for page in result.pages}
    assert errors == {
        "": None,
        "gone": FetchError.http_error,
        "img": FetchError.not_html,
        "ok": None,
        "loop": FetchError.redirect_loop,
    }
