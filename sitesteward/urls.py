"""URL normalisation shared by the crawler, extraction, audit and publishing.

Two URLs that name the same resource must normalise to the same string, so that de-duplication ends
traps (calendars, session ids) within the page budget.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote_to_bytes, urlencode, urljoin, urlsplit, urlunsplit

from sitesteward.errors import InvalidUrl
from sitesteward.models import QueryHandling

DEFAULT_PORTS = {"http": 80, "https": 443}
_TRACKING = re.compile(
    r"^(utm_[a-z]+|gclid|fbclid|msclkid|mc_cid|mc_eid|_ga|yclid|phpsessid|jsessionid|sid|sessionid|session_id)$",
    re.IGNORECASE,
)
# Characters that need no percent-encoding in a path (RFC 3986 pchar + "/"), so "%7E" and "~" agree.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_QUERY_SAFE = "/:@!$'()*+,;-._~?"


#: A path in its normal form already: only characters that need no encoding (no "%"), no dot segment.
#: Most paths of a crawl are (they come from extraction, normalised): they skip the work below.
_NORMAL_PATH = re.compile(r"(?!.*(?:^|/)\.\.?(?:/|$))[A-Za-z0-9/:@!$&'()*+,;=\-._~]*\Z")
_ENCODED_SLASH = re.compile("%2[fF]")


def _normalise_path(path: str) -> str:
    if _NORMAL_PATH.match(path):
        return path if path.startswith("/") else "/" + path
    # Resolve dot segments the way a browser does, then re-encode consistently.
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if len(segments) > 1:
                segments.pop()
        elif segment != ".":
            segments.append(segment)
    joined = "/".join(segments) or "/"
    if not joined.startswith("/"):
        joined = "/" + joined
    # An encoded slash is data, not a separator: keep it encoded.
    pieces = _ENCODED_SLASH.split(joined)
    return "%2F".join(quote(unquote_to_bytes(piece), safe=_PATH_SAFE) for piece in pieces)


def normalize_url(url: str, query: QueryHandling = QueryHandling.keep) -> str:
    """Return the canonical spelling of an absolute http(s) URL.

    Lower-cases scheme and host, drops default ports, fragments and empty queries, resolves dot
    segments, normalises percent-encoding and handles the query as ``query`` says (sorted when kept).

    Raises:
        InvalidUrl: not an absolute http(s) URL, or unparseable.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise InvalidUrl(f"unparseable URL {url!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidUrl(f"not an http(s) URL: {url!r}")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise InvalidUrl(f"URL without a host: {url!r}")
    try:
        host = host.encode("idna").decode("ascii").lower() if not host.isascii() else host.lower()
    except UnicodeError as exc:
        raise InvalidUrl(f"bad host in {url!r}") from exc
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _normalise_path(parts.path)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = QueryHandling(query)
    if query == QueryHandling.drop:
        pairs = []
    elif query == QueryHandling.strip_tracking:
        pairs = [(k, v) for k, v in pairs if not _TRACKING.match(k)]
    query_string = urlencode(sorted(pairs), safe=_QUERY_SAFE) if pairs else ""
    return urlunsplit((scheme, netloc, path, query_string, ""))


def absolutize(href: str, base: str) -> str | None:
    """Resolve ``href`` against ``base`` and drop the fragment; None for non-http(s) links.

    mailto:, tel:, javascript: and data: links are not crawlable and return None.
    """
    href = href.strip()
    if not href or href.startswith("#"):
        return None
    lowered = href[:11].lower()
    if lowered.startswith(("mailto:", "tel:", "javascript:", "data:", "ftp:", "sms:", "file:")):
        return None
    try:
        joined = urljoin(base, href)
        parts = urlsplit(joined)
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.netloc:
        return None
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


def host_of(url: str) -> str:
    """The lower-case host (with port when not default) of an absolute URL."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port
    if port is None or port == DEFAULT_PORTS.get(parts.scheme):
        return host
    return f"{host}:{port}"
