"""Sitemap parsing: formats, caps, and hostile documents (never a crash)."""

from __future__ import annotations

import gzip
import zlib

from sitesteward.crawl.sitemaps import MAX_URLS_PER_SITEMAP, gunzip_capped, parse_sitemap
from tests.server import sitemap_xml


def test_urlset_index_gzip_and_text() -> None:
    urls = ["https://e.test/a", "https://e.test/b"]
    parsed = parse_sitemap(sitemap_xml(urls))
    assert parsed.urls == [(u, "2024-01-01") for u in urls] and parsed.problems == []
    index = parse_sitemap(sitemap_xml(urls, index=True, gzipped=True))
    assert index.children == urls and index.urls == []
    text = parse_sitemap(b"https://e.test/a\n\nnot a url\r\nhttps://e.test/b\n")
    assert text.urls == [(u, None) for u in urls]


def test_whitespace_and_no_namespace_and_missing_loc() -> None:
    xml = b"<urlset><url><loc>\n  https://e.test/x \n</loc></url><url><lastmod>2020</lastmod></url></urlset>"
    assert parse_sitemap(xml).urls == [("https://e.test/x", None)]


def test_billion_laughs_is_refused() -> None:
    entities = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    doctype = f'<!DOCTYPE u [<!ENTITY l0 "lol">{entities}]>'
    bomb = f'<?xml version="1.0"?>{doctype}<urlset><url><loc>&l9;</loc></url></urlset>'
    parsed = parse_sitemap(bomb.encode())
    assert parsed.urls == [] and "DTD" in parsed.problems[0]


def test_external_entity_is_refused() -> None:
    xxe = b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY x SYSTEM "file:///etc/passwd">]><urlset><url><loc>&x;</loc></url></urlset>'
    parsed = parse_sitemap(xxe)
    assert parsed.urls == [] and parsed.problems


def test_gzip_bomb_is_capped() -> None:
    bomb = gzip.compress(b"\0" * (20 * 1024 * 1024))
    assert len(bomb) < 100_000
    parsed = parse_sitemap(bomb, max_bytes=1024 * 1024)
    assert parsed.urls == [] and "cap" in parsed.problems[0]
    try:
        gunzip_capped(bomb, 1000)
    except ValueError as exc:
        assert "cap" in str(exc)
    else:
        raise AssertionError("no cap")


def test_corrupt_gzip_and_malformed_xml_and_wrong_root() -> None:
    assert "gzip" in parse_sitemap(b"\x1f\x8b" + b"garbage").problems[0]
    assert "malformed" in parse_sitemap(b"<urlset><url><loc>x</url>").problems[0]
    assert "not a sitemap" in parse_sitemap(b"<html><body>hi</body></html>").problems[0]
    assert parse_sitemap(b"").problems == ["empty sitemap"]


def test_more_than_50000_urls_are_capped() -> None:
    urls = [f"https://e.test/p{i}" for i in range(MAX_URLS_PER_SITEMAP + 10)]
    data = gzip.compress(sitemap_xml(urls, lastmod=False))
    parsed = parse_sitemap(data)
    assert len(parsed.urls) == MAX_URLS_PER_SITEMAP
    assert parsed.urls[-1][0] == f"https://e.test/p{MAX_URLS_PER_SITEMAP - 1}"
    assert "50000" in parsed.problems[0]


def test_zlib_stream_is_not_gzip() -> None:
    # A raw zlib stream is not a sitemap format: reported, not crashed on.
    assert parse_sitemap(zlib.compress(b"<urlset/>")).problems
