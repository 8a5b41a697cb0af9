"""Sitemap parsing: XML ``urlset`` and ``sitemapindex`` files, gzip, plain-text lists.

The parser is defensive by construction: documents with a DTD are refused (sitemaps never need one,
and entity-expansion bombs live there), gzip is decompressed with a hard cap on the output size, the
number of URLs read per file is capped (50,000 is the protocol's own limit) and elements are dropped
as soon as they are read, so memory stays bounded whatever the file holds. Every problem becomes a
message in :attr:`ParsedSitemap.problems`; nothing here raises on bad input.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

#: The sitemaps.org limits: 50,000 URLs and 50 MiB uncompressed per file.
MAX_URLS_PER_SITEMAP = 50_000
MAX_SITEMAP_BYTES = 50 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class ParsedSitemap:
    """What one sitemap file listed.

    Attributes:
        urls: ``(loc, lastmod)`` pairs of a ``urlset`` (or a text sitemap), in document order.
        children: Sitemap URLs listed by a ``sitemapindex``.
        problems: Human-readable reasons the file was (partly) unreadable.
    """

    urls: list[tuple[str, str | None]] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def gunzip_capped(data: bytes, max_bytes: int = MAX_SITEMAP_BYTES) -> bytes:
    """Decompress gzip ``data`` without ever producing more than ``max_bytes``.

    Raises:
        ValueError: the data is not valid gzip, or decompresses to more than ``max_bytes``.
    """
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise ValueError(f"invalid gzip data: {exc}") from exc
    if len(out) > max_bytes:
        raise ValueError(f"gzip data expands beyond the {max_bytes}-byte cap (a decompression bomb?)")
    return out


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def _child_text(element: Element, name: str) -> str | None:
    for child in element:
        if isinstance(child.tag, str) and _local(child.tag) == name:
            text = (child.text or "").strip()
            return text or None
    return None


def _parse_text(data: bytes, result: ParsedSitemap, max_urls: int) -> ParsedSitemap:
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line.startswith(("http://", "https://")):
            continue
        if len(result.urls) >= max_urls:
            result.problems.append(f"more than {max_urls} URLs; the rest were ignored")
            break
        result.urls.append((line, None))
    if not result.urls:
        result.problems.append("not a sitemap: no XML and no URL lines")
    return result


def parse_sitemap(
    data: bytes, *, max_urls: int = MAX_URLS_PER_SITEMAP, max_bytes: int = MAX_SITEMAP_BYTES
) -> ParsedSitemap:
    """Parse one sitemap file (XML, gzip-compressed XML or plain text).

    Args:
        data: The file's bytes as served (gzip is detected by its magic number, not by the name).
        max_urls: URLs (or child sitemaps) read at most; the rest are ignored with a problem.
        max_bytes: Cap on the decompressed size.

    Returns:
        The URLs or child sitemaps found, and any problems. Never raises.
    """
    result = ParsedSitemap()
    if data.startswith(_GZIP_MAGIC):
        try:
            data = gunzip_capped(data, max_bytes)
        except ValueError as exc:
            result.problems.append(str(exc))
            return result
    elif len(data) > max_bytes:
        result.problems.append(f"sitemap larger than the {max_bytes}-byte cap")
        return result
    stripped = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not stripped:
        result.problems.append("empty sitemap")
        return result
    if not stripped.startswith(b"<"):
        return _parse_text(stripped, result, max_urls)
    root: Element | None = None
    kind: str | None = None
    try:
        for event, element in iterparse(io.BytesIO(data), events=("start", "end"), forbid_dtd=True):
            if event == "start":
                if root is None:
                    root = element
                    kind = _local(element.tag)
                    if kind not in ("urlset", "sitemapindex"):
                        result.problems.append(f"not a sitemap: root element <{kind}>")
                        return result
                continue
            name = _local(element.tag)
            if name not in ("url", "sitemap"):
                continue
            if len(result.urls) + len(result.children) >= max_urls:
                result.problems.append(f"more than {max_urls} entries; the rest were ignored")
                return result
            loc = _child_text(element, "loc")
            if loc is not None:
                if name == "url" and kind == "urlset":
                    result.urls.append((loc, _child_text(element, "lastmod")))
                elif name == "sitemap" and kind == "sitemapindex":
                    result.children.append(loc)
            # Read entries are dropped at once, so a huge file never sits in memory as a tree.
            assert root is not None
            root.clear()
    except DefusedXmlException as exc:
        result.problems.append(f"refused XML: {type(exc).__name__} (DTDs and entities are not allowed)")
    except ParseError as exc:
        result.problems.append(f"malformed XML: {exc}")
    return result
