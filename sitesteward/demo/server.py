"""Loopback HTTP servers for the demo: the Markdown site and the "external" sources site.

``SiteServer`` renders a Markdown content directory (the same one the Markdown publisher edits) on
every request, so a published edit is live on the next fetch:

    /robots.txt       ``Disallow: /private/`` and a ``Sitemap:`` line
    /sitemap.xml      every served page (drafts excluded), ``<lastmod>`` from ``updated`` or ``date``
    /static/...       files under ``<content_root>/static/``
    /<page>/          the Markdown file :func:`sitesteward.content.candidate_files` names; a path that
                      is not the page's canonical spelling (``/guides``, ``/about.html``) answers 301
    aliases           front matter ``aliases: [/old/]`` and ``<content_root>/_redirects`` lines
                      (``/from/ /to/ [status]``) answer 301
    anything else     404 with an HTML page

Pages and files answer ``ETag`` (hash of the bytes sent) and ``Last-Modified`` (file mtime) and honour
``If-None-Match`` / ``If-Modified-Since`` with 304. Paths that try to leave the root (``..``, encoded
or not, dot files, ``_`` files, NUL, backslashes) answer 404.

``SourcesServer`` serves static HTML from a second directory on another port (another host as far as
the crawler is concerned): ``/reports/x`` is ``reports/x.html``. ``set_override`` swaps a page's HTML in
memory, so a test can show a cited figure changing between two runs.

Both bind loopback addresses only; anything else raises ``ValueError``.
"""

from __future__ import annotations

import email.utils
import hashlib
import ipaddress
import logging
import mimetypes
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, Protocol, Self, cast
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape as xml_escape

from sitesteward.content import Document, candidate_files, parse_document, url_path_for
from sitesteward.demo.render import front_matter_text, render_not_found, render_page
from sitesteward.errors import PolicyViolation

logger = logging.getLogger(__name__)

#: The imaginary product the bundled example site is about.
DEMO_SITE_NAME = "Larkspur"
#: ``examples/`` in a source checkout (the demo runs from the repository).
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_SITE_ROOT = EXAMPLES_DIR / "site"
EXAMPLE_SOURCES_ROOT = EXAMPLES_DIR / "sources"

_REDIRECTS_FILE = "_redirects"
_STATIC_DIR = "static"
_HTML = "text/html; charset=utf-8"
mimetypes.add_type("image/svg+xml", ".svg")


class _Headers(Protocol):
    """The part of the request headers the routes read (``email.message.Message`` or a dict)."""

    def get(self, name: str, /) -> str | None: ...


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _loopback_address(host: str) -> tuple[socket.AddressFamily, str]:
    """The address family and literal address for ``host``; ValueError unless it is loopback."""
    if host == "localhost":
        return socket.AF_INET, "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"demo servers bind loopback addresses only, not {host!r}") from None
    if not address.is_loopback:
        raise ValueError(f"demo servers bind loopback addresses only, not {host!r}")
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    return family, str(address)


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _not_modified(request: _Headers, etag: str, modified: float | None) -> bool:
    """RFC 9110 evaluation: If-None-Match wins; If-Modified-Since only when it is absent."""
    if_none_match = request.get("If-None-Match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or etag in tags
    if_modified_since = request.get("If-Modified-Since")
    if if_modified_since is None or modified is None:
        return False
    try:
        since = email.utils.parsedate_to_datetime(if_modified_since).timestamp()
    except (TypeError, ValueError, IndexError):
        return False
    return int(modified) <= since


def _cacheable(
    request: _Headers, body: bytes, content_type: str, modified: float | None, status: int = 200
) -> _Response:
    """A response with validators, or 304 when the request's validators still match."""
    etag = _etag(body)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if modified is not None:
        headers["Last-Modified"] = email.utils.formatdate(modified, usegmt=True)
    if status == 200 and _not_modified(request, etag, modified):
        return _Response(304, b"", headers)
    return _Response(status, body, {"Content-Type": content_type, **headers})


def _request_path(raw: str) -> str:
    """The percent-decoded path of a request target (origin or absolute form), query dropped."""
    path = urlsplit(raw).path if not raw.startswith("/") else raw.split("?", 1)[0].split("#", 1)[0]
    return unquote(path or "/")


def _safe_parts(path: str) -> list[str]:
    """Path segments, refusing anything that could leave a root or reach hidden files."""
    if "\x00" in path or "\\" in path:
        raise PolicyViolation(f"refusing path {path!r}")
    parts = [part for part in path.split("/") if part]
    if any(part in {".", ".."} or part.startswith((".", "_")) for part in parts):
        raise PolicyViolation(f"refusing path {path!r}")
    return parts


def _inside(root: Path, relative: PurePosixPath | str) -> Path | None:
    """``root / relative`` if it is a regular file that resolves inside ``root``, else None."""
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


def _slashed(path: str) -> str:
    """Canonical spelling of a redirect source: leading slash, trailing slash unless a file name."""
    path = "/" + path.strip().lstrip("/")
    last = path.rsplit("/", 1)[-1]
    if last and "." not in last:
        path += "/"
    return path


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 15  # idle keep-alive connections do not hold a thread for ever
    disable_nagle_algorithm = True  # headers and body are two writes: avoid the delayed-ACK stall
    server_version = "sitesteward-demo/1"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _answer(self, *, head: bool) -> None:
        app = cast("_HTTPServer", self.server).app
        try:
            response = app.respond(self.path, self.headers)
        except Exception:  # a demo server must keep serving; the traceback goes to the log
            logger.exception("demo server failed on %s", self.path)
            response = _Response(500, b"internal error\n", {"Content-Type": "text/plain; charset=utf-8"})
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.status != 304:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if not head and response.status != 304:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    app: _LoopbackServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A crawler closing a keep-alive connection (or a HEAD check hanging up early) is normal.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _LoopbackServer:
    """A ThreadingHTTPServer on a loopback address, run in a daemon thread."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._family, self.host = _loopback_address(host)
        self._requested_port = port
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://host:port`` (no trailing slash); only valid once started."""
        host = f"[{self.host}]" if self._family == socket.AF_INET6 else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Self:
        """Bind and serve in a daemon thread (idempotent)."""
        if self._server is not None:
            return self
        family = self._family

        class _Bound(_HTTPServer):
            address_family = family

        server = _Bound((self.host, self._requested_port), _Handler)
        server.app = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (idempotent)."""
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def respond(self, raw_path: str, request: _Headers) -> _Response:  # pragma: no cover
        raise NotImplementedError

    def _redirect(self, target: str, status: int = 301) -> _Response:
        location = target if target.startswith(("http://", "https://")) else self.base_url + target
        body = (
            f'<!DOCTYPE html>\n<p>Moved to <a href="{xml_escape(location)}">{xml_escape(location)}</a></p>\n'
        )
        return _Response(status, body.encode(), {"Location": location, "Content-Type": _HTML})


@dataclass(frozen=True)
class _Page:
    relative: PurePosixPath
    url_path: str
    document: Document
    modified: float


class SiteServer(_LoopbackServer):
    """Serve a Markdown content directory as a website, re-reading files on every request.

    Args:
        content_root: The content directory (``examples/site`` or a copy of it).
        host: A loopback address (``127.0.0.1``, ``::1``, ``localhost``); anything else is refused.
        port: 0 picks a free port.
        sources_url: Base URL substituted for ``{{sources}}`` in page bodies (settable later via the
            ``sources_url`` attribute, before pages are fetched).
        site_name: Shown in every page's header.

    Raises:
        ValueError: ``host`` is not a loopback address.
    """

    def __init__(
        self,
        content_root: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        sources_url: str | None = None,
        site_name: str = DEMO_SITE_NAME,
    ) -> None:
        super().__init__(host=host, port=port)
        self.content_root = Path(content_root).resolve()
        if not self.content_root.is_dir():
            raise ValueError(f"content root {content_root} is not a directory")
        self.sources_url = sources_url
        self.site_name = site_name

    # ---------------------------------------------------------------------------------- content

    def _load(self, relative: PurePosixPath) -> _Page | None:
        if relative.parts and relative.parts[0] == _STATIC_DIR:
            return None
        path = _inside(self.content_root, relative)
        if path is None:
            return None
        try:
            modified = path.stat().st_mtime
            document = parse_document(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            return None
        if document.meta.get("draft") is True:
            return None
        return _Page(relative, url_path_for(relative), document, modified)

    def pages(self) -> list[_Page]:
        """Every served page (drafts, hidden and ``_`` files excluded), sorted by URL path."""
        found: dict[str, _Page] = {}
        for path in sorted(self.content_root.rglob("*.md")):
            relative = PurePosixPath(path.relative_to(self.content_root).as_posix())
            if any(part.startswith((".", "_")) for part in relative.parts):
                continue
            page = self._load(relative)
            if page is not None:
                found.setdefault(page.url_path, page)
        return [found[key] for key in sorted(found)]

    def redirects(self) -> dict[str, tuple[str, int]]:
        """Redirect source path -> (target, status), from ``_redirects`` and front-matter aliases."""
        table: dict[str, tuple[str, int]] = {}
        redirects_file = self.content_root / _REDIRECTS_FILE
        if redirects_file.is_file():
            for line in redirects_file.read_text(encoding="utf-8").splitlines():
                fields = line.split("#", 1)[0].split()
                if len(fields) < 2:
                    continue
                status = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else 301
                table[_slashed(fields[0])] = (fields[1], status)
        for page in self.pages():
            aliases = page.document.meta.get("aliases") or []
            if isinstance(aliases, str):
                aliases = [aliases]
            for alias in aliases:
                if isinstance(alias, str) and alias.strip():
                    table.setdefault(_slashed(alias), (page.url_path, 301))
        return table

    # ---------------------------------------------------------------------------------- routes

    def respond(self, raw_path: str, request: _Headers) -> _Response:
        path = _request_path(raw_path)
        if path == "/robots.txt":
            return _cacheable(request, self.robots_txt().encode(), "text/plain; charset=utf-8", None)
        if path == "/sitemap.xml":
            return _cacheable(request, self.sitemap_xml().encode(), "application/xml; charset=utf-8", None)
        try:
            if path.startswith(f"/{_STATIC_DIR}/"):
                return self._static(path, request)
            candidates = candidate_files(path)
            _safe_parts(path)
        except PolicyViolation:
            return self._not_found(path)
        for relative in candidates:
            page = self._load(relative)
            if page is None:
                continue
            if path != page.url_path:
                return self._redirect(page.url_path)
            html = render_page(
                page.document,
                page.url_path,
                base_url=self.base_url,
                site_name=self.site_name,
                sources_url=self.sources_url,
            )
            return _cacheable(request, html.encode("utf-8"), _HTML, page.modified)
        target = self.redirects().get(_slashed(path))
        if target is not None:
            return self._redirect(*target)
        return self._not_found(path)

    def _static(self, path: str, request: _Headers) -> _Response:
        parts = _safe_parts(path)[1:]
        static_root = (self.content_root / _STATIC_DIR).resolve()
        file = _inside(static_root, "/".join(parts)) if parts else None
        if file is None:
            return self._not_found(path)
        content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        return _cacheable(request, file.read_bytes(), content_type, file.stat().st_mtime)

    def _not_found(self, path: str) -> _Response:
        body = render_not_found(path, site_name=self.site_name).encode("utf-8")
        return _Response(404, body, {"Content-Type": _HTML})

    def robots_txt(self) -> str:
        """The site's robots.txt: everything allowed but ``/private/``, plus the sitemap."""
        return f"User-agent: *\nDisallow: /private/\n\nSitemap: {self.base_url}/sitemap.xml\n"

    def sitemap_xml(self) -> str:
        """A sitemap listing every served page, noindex, orphan and robots-disallowed ones included."""
        lines = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">',
        ]
        for page in self.pages():
            lastmod = front_matter_text(page.document.meta.get("updated")) or front_matter_text(
                page.document.meta.get("date")
            )
            entry = f"  <url><loc>{xml_escape(self.base_url + page.url_path)}</loc>"
            if lastmod is not None:
                entry += f"<lastmod>{xml_escape(lastmod)}</lastmod>"
            lines.append(entry + "</url>")
        lines.append("</urlset>")
        return "\n".join(lines) + "\n"


class SourcesServer(_LoopbackServer):
    """Serve static files (the cited "external" sources) from a directory.

    ``/reports/x`` is ``reports/x.html`` (or ``reports/x`` if that file exists, or
    ``reports/x/index.html``); ``/`` is ``index.html``. Dot and ``_`` paths are never served, so
    ``_versions/`` can hold alternative versions of pages for tests.

    Args:
        root: The directory (``examples/sources``).
        host: A loopback address; anything else is refused.
        port: 0 picks a free port.

    Raises:
        ValueError: ``host`` is not a loopback address.
    """

    def __init__(self, root: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ValueError(f"sources root {root} is not a directory")
        self._overrides: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def set_override(self, url_path: str, html: str) -> None:
        """Serve ``html`` at ``url_path`` instead of the file (until cleared); Last-Modified is now."""
        with self._lock:
            self._overrides[url_path] = (html.encode("utf-8"), time.time())

    def use_version(self, url_path: str, version: str) -> None:
        """Serve ``<root>/_versions/<version>.html`` at ``url_path`` (an older or newer edition).

        Raises:
            FileNotFoundError: no such version file.
        """
        _safe_parts(version)
        file = _inside(self.root / "_versions", f"{version}.html")
        if file is None:
            raise FileNotFoundError(f"no version {version!r} under {self.root / '_versions'}")
        self.set_override(url_path, file.read_text(encoding="utf-8"))

    def clear_override(self, url_path: str | None = None) -> None:
        """Go back to the file at ``url_path`` (every path when None)."""
        with self._lock:
            if url_path is None:
                self._overrides.clear()
            else:
                self._overrides.pop(url_path, None)

    def respond(self, raw_path: str, request: _Headers) -> _Response:
        path = _request_path(raw_path)
        with self._lock:
            override = self._overrides.get(path)
        if override is not None:
            return _cacheable(request, override[0], _HTML, override[1])
        try:
            parts = _safe_parts(path)
        except PolicyViolation:
            return self._not_found()
        stem = "/".join(parts)
        candidates = [f"{stem}/index.html"] if not stem else [stem, f"{stem}.html", f"{stem}/index.html"]
        for relative in candidates:
            file = _inside(self.root, relative.lstrip("/"))
            if file is None:
                continue
            content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            if content_type.startswith("text/"):
                content_type += "; charset=utf-8"
            return _cacheable(request, file.read_bytes(), content_type, file.stat().st_mtime)
        return self._not_found()

    @staticmethod
    def _not_found() -> _Response:
        body = b'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Not found</title></head>'
        body += b"<body><h1>Not found</h1></body></html>\n"
        return _Response(404, body, {"Content-Type": _HTML})


@contextmanager
def serve_demo(
    site_root: Path = EXAMPLE_SITE_ROOT,
    sources_root: Path = EXAMPLE_SOURCES_ROOT,
    *,
    host: str = "127.0.0.1",
    site_port: int = 0,
    sources_port: int = 0,
) -> Iterator[tuple[SiteServer, SourcesServer]]:
    """Run the sources server and the site server (citing it) until the block exits.

    Args:
        site_root: The Markdown content directory served as the site (the publisher's target).
        sources_root: The directory of cited source pages, served on another port.
        host: A loopback address for both.
        site_port: 0 picks a free port.
        sources_port: 0 picks a free port.

    Yields:
        ``(site_server, sources_server)``, both started.
    """
    with SourcesServer(sources_root, host=host, port=sources_port) as sources:
        site = SiteServer(site_root, host=host, port=site_port, sources_url=sources.base_url)
        with site:
            yield site, sources
