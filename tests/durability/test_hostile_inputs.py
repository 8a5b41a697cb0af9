"""Hostile sites through the real audit path (``crawl_site`` + ``audit``): bounded time and memory,
findings instead of crashes.

Each test is one category of hostility served from loopback, crawled and audited as the ``audit_site``
flow does (without Prefect), and checked three ways: the crawl finishes within a wall-clock bound, the
process's resident set grows by less than a bound (:class:`~tests.durability.scenarios.PeakMemory`, which
counts C allocations too: lxml, zlib, socket buffers) and the hostility shows up as findings. The
fetch-level details (exact Retry-After waits, hop-by-hop chains, the sitemap parser's unit cases) are
tested in ``tests/integration/test_crawl_*.py`` and ``tests/unit/test_crawl_sitemaps.py``; this suite
turns the volume up (a billion laughs, a 256 MiB gzip bomb, 200,000 sitemap URLs, a 200 MB body) and
looks at the whole run.

The bounds are several times what a healthy run takes on a busy 2-core CI box and far below what the
attack would cost unbounded (a 200 MB body held in memory, a 256 MiB expansion, a crawl that never ends).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import pytest

from sitesteward.models import FetchError, Page
from tests.durability.scenarios import Audited, crawl_and_audit
from tests.integration.conftest import quick_config
from tests.server import RecordedRequest, Reply, ScriptedServer, http_date, sitemap_xml

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pages"
MIB = 1024 * 1024


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as scripted:
        yield scripted


def _within(audited: Audited, *, seconds: float, mib: float) -> None:
    print(
        f"crawl + audit: {audited.seconds:.2f} s, resident set +{audited.peak_mib:.0f} MiB"
    )  # shown on failure
    assert audited.seconds < seconds, f"took {audited.seconds:.1f} s (bound {seconds} s)"
    assert audited.peak_mib < mib, f"resident set grew {audited.peak_mib:.0f} MiB (bound {mib} MiB)"


def _page(audited: Audited, url: str) -> Page:
    matches = [page for page in audited.result.pages if page.url == url]
    assert len(matches) == 1, f"{url} crawled {len(matches)} times: {[p.url for p in audited.result.pages]}"
    return matches[0]


def _zeros_gzip(size: int) -> bytes:
    """gzip of ``size`` zero bytes, built in 1 MiB steps (never ``size`` bytes in memory)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * MIB
    parts = [compressor.compress(block) for _ in range(size // MIB)]
    parts.append(compressor.flush())
    return b"".join(parts)


@pytest.fixture(scope="module")
def bomb_256mib() -> bytes:
    bomb = _zeros_gzip(256 * MIB)
    assert len(bomb) < 400_000  # about 1000:1
    return bomb


class RawServer:
    """A loopback TCP server that answers with hand-written bytes: what ``http.server`` cannot send
    (a body delimited only by closing the connection, headers trickled a byte at a time).

    ``handlers`` map a request path to ``handler(connection)``; every request path is logged.
    """

    def __init__(self, handlers: dict[str, Callable[[socket.socket], None]]) -> None:
        self.handlers = handlers
        self.paths: list[str] = []
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = int(self._sock.getsockname()[1])
        self._sock.settimeout(0.05)  # accept() wakes up to see _closing (closing it from here would not)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._closing = False

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing = True
        self._thread.join(timeout=5)
        self._sock.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self._closing:
            try:
                connection, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection.settimeout(None)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            try:
                head = b""
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    chunk = connection.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                path = head.split(b" ", 2)[1].decode("ascii", "replace")
                self.paths.append(path)
                handler = self.handlers.get(path)
                if handler is None:
                    connection.sendall(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                else:
                    handler(connection)
            except OSError:
                pass  # the crawler hung up on purpose (byte cap, deadline)


# ----------------------------------------------------------------------------------- malformed HTML


@pytest.mark.scenario(
    name="hostile HTML: malformed markup",
    faults="100,000 unclosed <div>s, an unclosed comment, an unclosed <title>, NUL and control bytes, a "
    "1 MB attribute, 20,000 links on one page, random bytes labelled text/html, broken tags and URLs",
    checks="every page recorded and parsed, none crashes the crawl; findings (missing_title, broken_link...) "
    "instead; link discovery stays within max_pages; < 30 s, < 250 MiB",
)
def test_malformed_html_gives_findings_not_crashes(server: ScriptedServer) -> None:
    hostile = {
        "/deep": "<html><head><title>Deeply nested page</title></head><body>" + "<div>" * 100_000 + "deep",
        "/comment": "<html><head><title>An unclosed comment page</title></head><body><p>before</p><!-- "
        + "x" * 100_000,
        "/title": "<html><head><title>never closed" + "<p>still the title?</p>" * 5_000,
        "/nul": "<html><head><title>NUL\x00 and \x01 control bytes</title></head><body>\x00<p>a\x00b\x1b</p>",
        "/attribute": '<html><head><title>A huge attribute page</title></head><body><a href="/deep" title="'
        + "a" * 1_000_000
        + '">deep</a>',
        "/links": "<html><head><title>Twenty thousand links</title></head><body>"
        + "".join(f'<a href="/l/{i}">link {i}</a>' for i in range(20_000)),
        "/tags": "<html><<<>>><title>Broken tags and URLs</title><a href=javascript:alert(1)>js</a>"
        "<a href='http://[::1'>bad ipv6</a><a href='http://a b/'>space</a><a href='//'>empty</a>"
        "<a href='http://x:99999/'>port</a><img src=x alt><body><body><html></p></div></table>",
        "/fixture": (FIXTURES / "malformed.html").read_text(encoding="utf-8"),
    }
    for path, html in hostile.items():
        server.route(path, body=html)
    server.route("/binary", body=os.urandom(200_000), content_type="text/html")
    server.handle_prefix("/l/", lambda request: Reply(status=404, body="<p>gone</p>"))
    links = "".join(f'<a href="{path}">{path}</a>' for path in [*hostile, "/binary"])
    server.page("/", f"<h1>Hostile HTML</h1>{links}")

    audited = crawl_and_audit(quick_config(server.url("/"), max_pages=40))

    _within(audited, seconds=30, mib=250)
    for path in [*hostile, "/binary"]:
        page = _page(audited, server.url(path))
        assert page.status == 200 and page.error is None and page.data is not None, path
    assert len(audited.result.pages) == 40 and audited.result.out_of_budget > 0
    assert audited.of("missing_h1", server.url("/deep")) and not audited.of(
        "missing_title", server.url("/deep")
    )
    assert audited.of("broken_link", server.url("/links"))  # the /l/ pages that fitted the budget answer 404
    assert _page(audited, server.url("/attribute")).data.title == "A huge attribute page"


# ---------------------------------------------------------------------------------- sitemap bombs


@pytest.mark.scenario(
    name="hostile sitemaps: XML and gzip bombs",
    faults="billion laughs (10^9 expansions), quadratic blowup, external entities (http to loopback, "
    "file://, parameter entity), a 256 MiB gzip bomb (.xml.gz and as Content-Encoding), an index of bombs",
    checks="one sitemap_error finding per bomb; no entity URL is ever requested; the real page is still "
    "crawled; < 30 s, < 250 MiB",
)
def test_xml_and_gzip_bombs_in_sitemaps(server: ScriptedServer, bomb_256mib: bytes) -> None:
    laughs = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    quadratic = "q" * 100_000
    bombs: dict[str, bytes] = {
        "/laughs.xml": f'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY l0 "lol">{laughs}]>'
        "<urlset><url><loc>&l9;</loc></url></urlset>".encode(),
        "/quadratic.xml": f'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY q "{quadratic}">]><urlset>'
        f"<url><loc>{'&q;' * 10_000}</loc></url></urlset>".encode(),
        "/xxe-http.xml": f'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY x SYSTEM "{server.url("/entity")}">]>'
        "<urlset><url><loc>&x;</loc></url></urlset>".encode(),
        "/xxe-file.xml": b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<urlset><url><loc>&x;</loc></url></urlset>",
        "/xxe-param.xml": f'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY % p SYSTEM "{server.url("/dtd")}">'
        "%p;]><urlset/>".encode(),
    }
    for path, body in bombs.items():
        server.route(path, body=body, content_type="application/xml")
    server.route("/bomb.xml.gz", body=bomb_256mib, content_type="application/gzip")
    server.route(
        "/encoded-bomb.xml",
        body=bomb_256mib,
        content_type="application/xml",
        headers={"Content-Encoding": "gzip"},
    )
    index = sitemap_xml(
        [server.url("/bomb.xml.gz"), server.url("/laughs.xml"), server.url("/good.xml")], index=True
    )
    server.route("/index.xml", body=index, content_type="application/xml")
    server.sitemap("/good.xml", [server.url("/ok")])
    server.page("/ok", "<p>the one real page</p>")
    server.page("/", '<a href="/ok">ok</a>')
    listed = [*bombs, "/encoded-bomb.xml", "/index.xml"]
    server.robots("".join(f"Sitemap: {server.url(path)}\n" for path in listed))

    audited = crawl_and_audit(quick_config(server.url("/"), use_sitemaps=True))

    _within(audited, seconds=30, mib=250)
    errors = {f.url.removeprefix(server.url("")): f.detail for f in audited.of("sitemap_error")}
    assert set(errors) == {*bombs, "/bomb.xml.gz", "/encoded-bomb.xml"}, errors
    for path in bombs:
        assert "refused XML" in errors[path], (path, errors[path])
    assert "cap" in errors["/bomb.xml.gz"]
    assert "exceeds" in errors["/encoded-bomb.xml"] or "cap" in errors["/encoded-bomb.xml"]
    assert not server.requested("/entity") and not server.requested("/dtd")
    assert server.hits("/bomb.xml.gz") == 1  # listed twice (robots and the index), read once
    assert _page(audited, server.url("/ok")).status == 200


# -------------------------------------------------------------------------------- huge sitemaps


@pytest.mark.scenario(
    name="hostile sitemaps: 50,000+ URLs, and an index of several",
    faults="one sitemap of 50,010 URLs, an index of three gzipped 10,000-URL sitemaps (80,010 URLs)",
    checks="sitemap_error for the over-long file; sitemap entries capped at 50,000; pages fetched capped at "
    "max_pages, the rest counted out of budget; < 40 s, < 300 MiB",
)
def test_sitemaps_with_fifty_thousand_urls_and_more(server: ScriptedServer) -> None:
    def urls(start: int, count: int) -> list[str]:
        return [server.url(f"/u/{i}") for i in range(start, start + count)]

    server.sitemap("/big.xml", urls(0, 50_010))
    children = [f"/part{n}.xml.gz" for n in range(3)]
    for n, child in enumerate(children):
        server.route(
            child,
            body=sitemap_xml(urls(100_000 + n * 10_000, 10_000), gzipped=True),
            content_type="application/gzip",
        )
    server.sitemap("/index.xml", [server.url(child) for child in children], index=True)
    server.robots(f"Sitemap: {server.url('/big.xml')}\nSitemap: {server.url('/index.xml')}\n")
    server.handle_prefix("/u/", lambda request: Reply(body=f"<title>{request.path}</title><p>listed</p>"))
    server.page("/", "<p>home</p>")

    audited = crawl_and_audit(quick_config(server.url("/"), use_sitemaps=True, max_pages=30))

    _within(audited, seconds=40, mib=300)
    errors = {f.url.removeprefix(server.url("")): f.detail for f in audited.of("sitemap_error")}
    assert set(errors) == {"/big.xml"} and "50000" in errors["/big.xml"], errors
    assert len(audited.result.sitemap_entries) == 50_000
    assert len(audited.result.pages) == 30
    assert sum(1 for r in server.requests if r.path.startswith("/u/")) == 29  # "/" and 29 listed pages
    assert audited.result.out_of_budget > 75_000  # all but the 29 fetched
    assert all(server.hits(child) == 1 for child in children)


# ------------------------------------------------------------------------------------- redirects


@pytest.mark.scenario(
    name="hostile redirects: loops and a 30-hop chain",
    faults="a two-URL loop, a self-redirect, a loop through a tracking parameter, an endless chain, a "
    "30-hop chain (with max_redirects 5 and 30)",
    checks="redirect_loop for each loop, redirect_chain ('too many redirects') past max_redirects with no "
    "request beyond it; with max_redirects 30 the chain ends 200 with a 30-hop redirect_chain; < 20 s",
)
def test_redirect_loops_and_thirty_hop_chains(server: ScriptedServer) -> None:
    server.redirect("/loop-a", "/loop-b")
    server.redirect("/loop-b", "/loop-a")
    server.redirect("/self", "/self", 302)
    server.redirect("/tracked", "/tracked?utm_source=loop", 307)
    server.handle_prefix(
        "/endless/", lambda r: Reply(status=301, headers={"Location": f"/endless/{int(r.path[9:]) + 1}"})
    )
    for hop in range(30):
        server.redirect(f"/chain{hop}", f"/chain{hop + 1}", 301 if hop % 2 else 308)
    server.page("/chain30", "<title>The end of a long chain</title><p>arrived</p>")
    starts = ["/loop-a", "/self", "/tracked", "/endless/0", "/chain0"]
    server.page("/", "".join(f'<a href="{path}">{path}</a>' for path in starts))

    short = crawl_and_audit(quick_config(server.url("/")))
    _within(short, seconds=20, mib=150)
    for path in ("/loop-a", "/self", "/tracked"):
        assert short.of("redirect_loop", server.url(path)), path
    for path in ("/endless/0", "/chain0"):
        chain = short.of("redirect_chain", server.url(path))
        assert chain and "too many redirects" in chain[0].detail, path
    assert not server.requested("/chain7") and not server.requested("/endless/7")

    long = crawl_and_audit(quick_config(server.url("/chain0"), max_redirects=30, list_mode=True))
    _within(long, seconds=20, mib=150)
    page = _page(long, server.url("/chain0"))
    assert page.status == 200 and len(page.redirect_chain) == 30 and page.final_url == server.url("/chain30")
    assert long.of("redirect_chain", server.url("/chain0"))[0].detail.startswith("30 hops")


# ------------------------------------------------------------------------------------------ traps


@pytest.mark.scenario(
    name="crawler traps: calendars and session ids",
    faults="an endless calendar (next/previous month and year links), session ids in the path "
    "(;jsessionid=) and the query (PHPSESSID, sid) that change on every visit",
    checks="the crawl stops at max_pages and max_depth with the rest counted out of budget; query session "
    "ids are stripped (never requested); < 20 s",
)
def test_calendar_and_session_id_traps_end_within_budget(server: ScriptedServer) -> None:
    def calendar(request: RecordedRequest) -> Reply:
        year, month = (int(part) for part in request.path.split("/")[2:4])
        after = (year + month // 12, month % 12 + 1)
        before = (year - (month == 1), (month - 2) % 12 + 1)
        links = "".join(
            f'<a href="/cal/{y}/{m}/">{y}-{m}</a>'
            for y, m in (after, before, (year + 1, month), (year - 1, month))
        )
        return Reply(body=f"<title>Calendar {year}-{month}</title>{links}")

    visits = iter(range(10**9))

    def session(request: RecordedRequest) -> Reply:
        n = next(visits)
        return Reply(
            body=f'<title>Session page</title><a href="/s;jsessionid=J{n}">more</a>'
            f'<a href="/q?page=1&amp;PHPSESSID=P{n}&amp;sid=S{n}">query</a>'
        )

    server.handle_prefix("/cal/", calendar)
    server.handle_prefix("/s", session)
    server.handle_prefix("/q", session)
    server.page("/", '<a href="/cal/2024/6/">calendar</a> <a href="/s">session</a>')

    audited = crawl_and_audit(quick_config(server.url("/"), max_pages=80))
    _within(audited, seconds=20, mib=150)
    assert len(audited.result.pages) == 80 and audited.result.out_of_budget > 0
    assert len(server.requests) <= 80 + 1  # and robots.txt
    assert not [r for r in server.requests if "PHPSESSID" in r.path or "sid=" in r.path]
    assert server.hits("/q?page=1") == 1

    shallow = crawl_and_audit(quick_config(server.url("/cal/2024/6/"), max_depth=3))
    _within(shallow, seconds=20, mib=150)
    assert max(page.depth for page in shallow.result.pages) == 3
    assert shallow.result.out_of_budget > 0


# ---------------------------------------------------------------------------------- Retry-After


@pytest.mark.scenario(
    name="rate limiting: 429 with Retry-After in seconds, HTTP date, garbage and one year",
    faults="429s whose Retry-After is 1 s, an HTTP date, garbage, negative, 1e9, one year (seconds and date)",
    checks="waits capped at retry_after_cap_seconds; pages answered after a 429 are audited normally; a "
    "host that always answers 429 is a finding after retries + 1 requests; < 20 s",
)
def test_retry_after_variants_are_capped(server: ScriptedServer) -> None:
    year = 365 * 24 * 3600
    headers = {
        "/secs": "1",
        "/date": http_date(1),
        "/garbage": "soon, probably",
        "/negative": "-5",
        "/float": "1e9",
        "/year-secs": str(year),
        "/year-date": http_date(year),
    }
    for path, value in headers.items():
        server.sequence(
            path,
            [Reply(status=429, headers={"Retry-After": value}), Reply(body=f"<title>{path} page</title>")],
        )
    server.route("/always", status=429, headers={"Retry-After": str(year)}, body="<p>slow down</p>")
    server.page("/", "".join(f'<a href="{path}">{path}</a>' for path in [*headers, "/always"]))

    config = quick_config(server.url("/"), retries=2, retry_after_cap_seconds=1.0, concurrency_per_host=16)
    audited = crawl_and_audit(config)

    # Everything waits in parallel: about two capped waits for /always, one for the rest.
    _within(audited, seconds=20, mib=150)
    for path in headers:
        page = _page(audited, server.url(path))
        assert page.status == 200 and page.data is not None and page.data.title == f"{path} page", path
        assert server.hits(path) == 2, path
    always = _page(audited, server.url("/always"))
    assert always.status == 429 and server.hits("/always") == 3
    assert audited.of("client_error", server.url("/always"))
    assert audited.of("blocked_link", server.url("/"))  # the page linking to it: a bot wall, not broken


# ------------------------------------------------------------------------ trickling and lying servers


def _trickled_headers(connection: socket.socket) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Slow: " + b"s" * 200:
        connection.sendall(bytes([byte]))
        time.sleep(0.05)


def _long_length_then_silence(connection: socket.socket) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5000\r\n\r\n<p>short")
    time.sleep(6)  # neither the rest nor a close: only the crawler's deadline ends this


@pytest.mark.scenario(
    name="slow and lying servers: trickling bodies and headers, lying Content-Length",
    faults="a body trickled a byte per 0.2 s, headers trickled a byte per 0.05 s, Content-Length larger than "
    "the body (then close, or then silence), Content-Length smaller than the body",
    checks="timeout / connect_error findings within the total deadline (timeout_seconds per attempt); the "
    "honest page on the same server is still audited; < 20 s",
)
def test_trickling_and_lying_servers_hit_the_deadline(server: ScriptedServer) -> None:
    server.trickle("/trickle", size=200, interval=0.2)
    server.route("/long-length", body="<title>Short</title>", content_length=5000)
    server.route(
        "/short-length", body="<title>Short length page</title>" + "<p>extra</p>" * 100, content_length=40
    )
    server.route("/honest", body="<html><head><title>An honest page here</title></head><p>fine</p></html>")
    raw_handlers = {"/headers": _trickled_headers, "/silence": _long_length_then_silence}
    with RawServer(raw_handlers) as raw:
        starts = [server.url(p) for p in ("/trickle", "/long-length", "/short-length", "/honest")]
        starts += [raw.url(p) for p in raw_handlers]
        config = quick_config(starts, list_mode=True, timeout_seconds=1.5, retries=1, use_sitemaps=False)
        audited = crawl_and_audit(config)
        _within(audited, seconds=20, mib=150)
        assert raw.paths.count("/headers") == 2 and raw.paths.count("/silence") == 2

    assert _page(audited, server.url("/trickle")).error == FetchError.timeout
    assert _page(audited, raw.url("/headers")).error == FetchError.timeout
    assert _page(audited, raw.url("/silence")).error == FetchError.timeout
    assert _page(audited, server.url("/long-length")).error == FetchError.connect_error
    short = _page(audited, server.url("/short-length"))
    assert short.status == 200 and short.bytes == 40 and short.data is not None
    assert _page(audited, server.url("/honest")).data.title == "An honest page here"
    assert {f.url for f in audited.of("timeout")} == {
        server.url("/trickle"),
        raw.url("/headers"),
        raw.url("/silence"),
    }
    assert [f.url for f in audited.of("connect_error")] == [server.url("/long-length")]


# --------------------------------------------------------------------------------- 200 MB bodies


def _endless_html(connection: socket.socket) -> None:
    # No Content-Length: the body ends when the connection does (HTTP/1.1 allows it), so only the
    # crawler's byte cap can stop reading. The server streams one shared 64 KiB block, holding nothing.
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n")
    connection.sendall(b"<html><head><title>An endless page body</title></head><body>")
    block = b"<p>" + b"x" * (64 * 1024 - 7) + b"</p>"
    for _ in range(200 * MIB // len(block)):
        connection.sendall(block)


@pytest.mark.scenario(
    name="200 MB bodies",
    faults="a 200 MB HTML body with an honest Content-Length, and one delimited only by closing the "
    "connection (no length at all)",
    checks="too_large findings; at most max_bytes (5 MB) read and kept; the head still parsed (title); "
    "< 20 s, < 100 MiB",
)
def test_two_hundred_megabyte_bodies_stop_at_the_byte_cap(server: ScriptedServer) -> None:
    block = b"<p>" + b"y" * (64 * 1024 - 7) + b"</p>"
    head = b"<html><head><title>A huge page body</title></head><body>"
    server.route("/huge", chunks=[(head, 0.0)] + [(block, 0.0)] * (200 * MIB // len(block)))
    with RawServer({"/endless": _endless_html}) as raw:
        starts = [server.url("/huge"), raw.url("/endless")]
        audited = crawl_and_audit(quick_config(starts, list_mode=True, timeout_seconds=10.0))
        _within(audited, seconds=20, mib=100)

    for url in starts:
        page = _page(audited, url)
        assert page.error == FetchError.too_large and page.truncated and page.bytes == 5_000_000, url
        assert audited.of("too_large", url), url
    assert _page(audited, server.url("/huge")).data.title == "A huge page body"
    assert _page(audited, raw.url("/endless")).data.title == "An endless page body"


def _brotli_zeros(size: int) -> bytes:
    import brotli  # httpx decodes br because brotli is installed (it is: httpx[brotli])

    compressor = brotli.Compressor(quality=5)
    parts = [compressor.process(b"\0" * MIB) for _ in range(size // MIB)]
    return b"".join([*parts, compressor.finish()])


@pytest.mark.scenario(
    name="content-encoding bombs",
    faults="a 64 MiB run of zeros gzip-compressed to ~64 KB; the same in brotli, "
    "which the crawler never asks for",
    checks="gzip inflated only up to the 5 MB cap (too_large); unrequested br refused with a clear error; "
    "resident memory grows < 80 MiB (the 5 MB body parsed as HTML; inflating whole reads cost 130-517 MiB)",
)
@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_content_encoding_bombs_are_capped_before_they_are_inflated(
    server: ScriptedServer, encoding: str
) -> None:
    bomb = _zeros_gzip(64 * MIB) if encoding == "gzip" else _brotli_zeros(64 * MIB)
    server.route("/bomb", body=bomb, headers={"Content-Encoding": encoding})
    audited = crawl_and_audit(quick_config(server.url("/bomb"), list_mode=True))
    page = _page(audited, server.url("/bomb"))
    if encoding == "gzip":
        assert page.error == FetchError.too_large and page.bytes == 5_000_000
    else:
        assert page.error == FetchError.http_error and page.bytes == 0
        assert "Content-Encoding" in (page.error_detail or "")
    _within(audited, seconds=20, mib=80)


# ------------------------------------------------------------------------------ mislabelled encodings


@pytest.mark.scenario(
    name="mislabelled encodings",
    faults="UTF-8 labelled windows-1252 and the reverse, a UTF-16 BOM under a UTF-8 label, a <meta> naming "
    "UTF-16 on ASCII bytes, an unknown charset, Shift_JIS declared for UTF-8, invalid UTF-8 sequences",
    checks="every page decoded without a crash and audited; titles that the bytes allow are read correctly",
)
def test_mislabelled_encodings_are_decoded_not_crashed_on(server: ScriptedServer) -> None:
    title = "Café crème – “naïve” résumé"
    doc = f"<html><head><title>{title}</title></head><body><h1>{title}</h1><p>{title}</p></body></html>"
    cases: dict[str, tuple[bytes, str]] = {
        "/utf8-as-1252": (doc.encode("utf-8"), "text/html; charset=windows-1252"),
        "/1252-as-utf8": (doc.encode("cp1252"), "text/html; charset=utf-8"),
        "/utf16-bom-as-utf8": (codecs_bom_utf16(doc), "text/html; charset=utf-8"),
        "/meta-utf16": (
            b'<html><head><meta charset="utf-16"><title>ASCII under a UTF-16 meta</title></head></html>',
            "text/html",
        ),
        "/unknown-charset": (doc.encode("utf-8"), "text/html; charset=x-no-such-charset"),
        "/sjis-meta": (
            f'<html><head><meta charset="shift_jis"><title>{title}</title></head></html>'.encode(),
            "text/html",
        ),
        "/invalid-utf8": (
            b"<html><head><title>Bad \xff\xfe\xc3 bytes</title></head><body>\x80\x81</body></html>",
            "text/html; charset=utf-8",
        ),
    }
    for path, (body, content_type) in cases.items():
        server.route(path, body=body, content_type=content_type)
    starts = [server.url(path) for path in cases]

    audited = crawl_and_audit(quick_config(starts, list_mode=True))
    _within(audited, seconds=20, mib=150)
    titles = {}
    for path in cases:
        page = _page(audited, server.url(path))
        assert page.status == 200 and page.error is None and page.data is not None, path
        titles[path] = page.data.title
    # The header's label wins, as in browsers: windows-1252 bytes under a UTF-8 label show U+FFFD.
    assert titles["/1252-as-utf8"] == title.encode("cp1252").decode("utf-8", "replace")
    assert titles["/utf16-bom-as-utf8"] == title  # the BOM wins over the header
    assert titles["/meta-utf16"] == "ASCII under a UTF-16 meta"
    assert titles["/unknown-charset"] == title
    assert "Bad" in (titles["/invalid-utf8"] or "")


def codecs_bom_utf16(text: str) -> bytes:
    """``text`` as UTF-16-LE with its byte-order mark."""
    return b"\xff\xfe" + text.encode("utf-16-le")
