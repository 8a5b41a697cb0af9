"""A scripted HTTP server on 127.0.0.1 for integration tests (reusable by every suite).

Usage::

    with ScriptedServer() as server:
        server.page("/", "<a href='/about'>About</a>")
        server.route("/gone", status=410)
        server.redirect("/old", "/new")
        server.sequence("/flaky", [Reply(status=503), Reply(body="<p>ok</p>")])
        ... crawl server.url("/") ...
        assert server.hits("/flaky") == 2
        assert not server.requested("/private")

Routes match on (host, path with query), then (host, path), then host-less keys, then prefix handlers.
``host`` lets one server play several sites when a stub resolver sends ``site.test`` and ``ext.test``
to 127.0.0.1. Every request is logged (method, path, host, headers) in ``server.requests``.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    host: str
    headers: dict[str, str]


@dataclass
class Reply:
    """A scripted answer.

    Attributes:
        status: The HTTP status.
        body: The body (str is UTF-8 encoded unless ``encoding`` says otherwise).
        content_type: The ``Content-Type`` header (None: send none).
        headers: Extra headers.
        chunks: Instead of ``body``: ``(bytes, delay_before)`` pairs, written one by one (trickling).
        content_length: Declared length, if it must differ from the real one (a lying server).
        encoding: How a str body is encoded.
        delay: Seconds to wait before answering.
    """

    status: int = 200
    body: bytes | str = b""
    content_type: str | None = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Iterable[tuple[bytes, float]] | None = None
    content_length: int | None = None
    encoding: str = "utf-8"
    delay: float = 0.0

    def payload(self) -> bytes:
        return self.body.encode(self.encoding) if isinstance(self.body, str) else self.body


Handler = Callable[[RecordedRequest], Reply]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The default listen backlog of 5 drops SYNs under a crawler's concurrency (a 1 s connect stall).
    request_queue_size = 256
    scripted: ScriptedServer

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients hang up on purpose (byte caps, timeouts): that is not a test failure.
        pass


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes: without this, Nagle + delayed ACK add 40 ms per request.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._answer()

    def _answer(self) -> None:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        request = RecordedRequest(
            method=self.command,
            path=self.path,
            host=host,
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        reply = self.server.scripted._dispatch(request)
        if reply.delay:
            time.sleep(reply.delay)
        body = reply.payload()
        self.send_response(reply.status)
        if reply.content_type is not None:
            self.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.chunks is not None:
            chunks = list(reply.chunks)
            declared = reply.content_length
            if declared is None:
                declared = sum(len(c) for c, _ in chunks)
            self.send_header("Content-Length", str(declared))
            self.end_headers()
            if self.command == "HEAD":
                return
            try:
                for chunk, pause in chunks:
                    if pause:
                        time.sleep(pause)
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except OSError:
                pass
            self.close_connection = True
            return
        declared = reply.content_length if reply.content_length is not None else len(body)
        self.send_header("Content-Length", str(declared))
        if reply.content_length is not None and reply.content_length != len(body):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(body)
            except OSError:
                self.close_connection = True


class ScriptedServer:
    """A threaded HTTP/1.1 server with scripted routes and a request log (a context manager)."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str | None, str], Handler] = {}
        self._prefixes: list[tuple[str | None, str, Handler]] = []
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------ lifecycle

    def __enter__(self) -> ScriptedServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        httpd = _Server(("127.0.0.1", 0), _RequestHandler)
        httpd.scripted = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT`` as ``sitesteward.urls.host_of`` spells it."""
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        """The absolute URL of ``path`` (on ``host``, e.g. a stub-resolved ``site.test``)."""
        return f"http://{host}:{self.port}{path}"

    # -------------------------------------------------------------------------------- scripting

    def handle(self, path: str, handler: Handler, *, host: str | None = None) -> None:
        """Answer ``path`` (exact, with or without query) with ``handler(request)``."""
        self._routes[(host, path)] = handler

    def handle_prefix(self, prefix: str, handler: Handler, *, host: str | None = None) -> None:
        """Answer every path that starts with ``prefix`` (and matches no exact route)."""
        self._prefixes.append((host, prefix, handler))

    def route(self, path: str, *, host: str | None = None, **reply: object) -> None:
        """Answer ``path`` with a fixed :class:`Reply` built from keyword arguments."""
        fixed = Reply(**reply)  # type: ignore[arg-type]
        self.handle(path, lambda _request: fixed, host=host)

    def page(self, path: str, html: str, *, host: str | None = None, **reply: object) -> None:
        """Answer ``path`` with an HTML page (a bare fragment is wrapped in a document)."""
        if "<html" not in html.lower():
            html = f"<!doctype html><html><head><title>{path}</title></head><body>{html}</body></html>"
        self.route(path, host=host, body=html, **reply)

    def redirect(self, path: str, to: str, status: int = 301, *, host: str | None = None) -> None:
        """Answer ``path`` with a redirect to ``to``."""
        self.route(path, host=host, status=status, headers={"Location": to}, body=b"", content_type=None)

    def sequence(self, path: str, replies: list[Reply], *, host: str | None = None) -> None:
        """Answer the n-th request of ``path`` with ``replies[n]`` (the last one repeats)."""
        counter = {"n": 0}

        def handler(_request: RecordedRequest) -> Reply:
            with self._lock:
                index = min(counter["n"], len(replies) - 1)
                counter["n"] += 1
            return replies[index]

        self.handle(path, handler, host=host)

    def robots(self, text: str, *, host: str | None = None, status: int = 200) -> None:
        """Serve ``/robots.txt``."""
        self.route("/robots.txt", host=host, status=status, body=text, content_type="text/plain")

    def sitemap(self, path: str, urls: list[str], *, gzipped: bool = False, index: bool = False) -> None:
        """Serve a sitemap (or sitemap index) listing ``urls``."""
        self.route(path, body=sitemap_xml(urls, index=index, gzipped=gzipped), content_type="application/xml")

    def trickle(self, path: str, *, size: int = 100, interval: float = 0.5) -> None:
        """Serve an HTML body one byte every ``interval`` seconds."""
        self.route(path, chunks=[(b"<", 0.0)] + [(b"x", interval)] * (size - 1))

    # -------------------------------------------------------------------------------- the log

    def hits(self, path: str, method: str | None = None) -> int:
        """How many requests asked for ``path`` (exact, query included)."""
        with self._lock:
            return sum(1 for r in self.requests if r.path == path and (method is None or r.method == method))

    def requested(self, path: str) -> bool:
        """Whether ``path`` was requested at all."""
        return self.hits(path) > 0

    def requests_for(self, path: str) -> list[RecordedRequest]:
        """The requests for ``path``, in order."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def _dispatch(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
        bare = urlsplit(request.path).path
        for key in ((request.host, request.path), (request.host, bare), (None, request.path), (None, bare)):
            handler = self._routes.get(key)
            if handler is not None:
                return handler(request)
        for host, prefix, handler in self._prefixes:
            if host in (None, request.host) and request.path.startswith(prefix):
                return handler(request)
        return Reply(status=404, body="<!doctype html><title>Not found</title><p>Not found</p>")


def sitemap_xml(
    urls: list[str], *, index: bool = False, gzipped: bool = False, lastmod: bool = True
) -> bytes:
    """Build a sitemap (or sitemap index) document."""
    tag, root = ("sitemap", "sitemapindex") if index else ("url", "urlset")
    stamp = "<lastmod>2024-01-01</lastmod>" if lastmod else ""
    entries = "".join(f"<{tag}><loc>{u}</loc>{stamp}</{tag}>" for u in urls)
    xml = (
        f'<?xml version="1.0" encoding="UTF-8"?>'
        f'<{root} xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</{root}>'
    ).encode()
    return gzip.compress(xml) if gzipped else xml


def http_date(offset_seconds: float) -> str:
    """An HTTP date ``offset_seconds`` from now (for Retry-After, Last-Modified)."""
    return formatdate(time.time() + offset_seconds, usegmt=True)


def generated_site(
    server: ScriptedServer, pages: int, *, links_per_page: int = 5, prefix: str = "/p/"
) -> None:
    """Serve a generated site of ``pages`` pages under ``prefix`` (``/p/0`` links to the next pages).

    Page ``i`` links to its children ``i*k+1 .. i*k+k`` (a tree of fan-out ``k = links_per_page``, so
    depth stays logarithmic), to page ``i+1`` and to a shared menu, so every page is reachable from
    ``/p/0`` and link de-duplication matters.
    """

    def handler(request: RecordedRequest) -> Reply:
        tail = urlsplit(request.path).path[len(prefix) :]
        if not tail.isdigit() or int(tail) >= pages:
            return Reply(status=404, body="<p>Not found</p>")
        i = int(tail)
        targets = [t for t in range(i * links_per_page + 1, (i + 1) * links_per_page + 1) if t < pages]
        targets.append((i + 1) % pages)
        links = "".join(f'<li><a href="{prefix}{t}">Page {t}</a></li>' for t in targets)
        menu = f'<nav><a href="{prefix}0">Home</a> <a href="{prefix}1">About</a></nav>'
        words = " ".join(f"word{(i * 7 + w) % 97}" for w in range(120))
        html = (
            f"<!doctype html><html lang='en'><head><title>Page {i} of the generated site</title>"
            f"<meta name='description' content='Generated page number {i} for crawler tests.'></head>"
            f"<body>{menu}<main><h1>Page {i}</h1><p>{words}</p><ul>{links}</ul></main></body></html>"
        )
        return Reply(body=html)

    server.handle_prefix(prefix, handler)
