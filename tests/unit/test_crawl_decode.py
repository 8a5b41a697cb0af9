"""Charset detection: BOM, header, meta, guesses; the accents survive."""

from __future__ import annotations

import codecs
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from sitesteward.crawl.decode import charset_from_content_type, charset_from_meta, decode_html
from sitesteward.crawl.fetch import parse_retry_after

TEXT = "Café crème – “naïve” résumé, 20 €"


def test_bom_wins_over_everything() -> None:
    body = codecs.BOM_UTF8 + f"<p>{TEXT}</p>".encode()
    assert decode_html(body, "text/html; charset=windows-1252") == (f"<p>{TEXT}</p>", "utf-8")
    utf16 = codecs.BOM_UTF16_LE + "<p>é</p>".encode("utf-16-le")
    assert decode_html(utf16)[0] == "<p>é</p>"


def test_header_then_meta_then_guess() -> None:
    cp = f"<html><head><title>{TEXT}</title></head></html>".encode("cp1252")
    assert decode_html(cp, "text/html; charset=windows-1252")[0].count("crème") == 1
    assert decode_html(cp, 'text/html; charset="ISO-8859-1"') == (cp.decode("cp1252"), "cp1252")
    meta = f'<meta http-equiv="Content-Type" content="text/html; charset=windows-1252"><p>{TEXT}</p>'.encode(
        "cp1252"
    )
    assert TEXT in decode_html(meta, "text/html")[0]
    assert TEXT in decode_html(cp, "text/html")[0]  # no declaration at all: the guess prefers cp1252
    assert decode_html(f"<p>{TEXT}</p>".encode(), None) == (f"<p>{TEXT}</p>", "utf-8")


def test_unknown_labels_are_ignored_and_garbage_never_raises() -> None:
    assert charset_from_content_type("text/html; charset=klingon") is None
    assert charset_from_meta(b'<meta charset="utf-16">') == "utf-8"
    text, encoding = decode_html(bytes(range(256)) * 4, "text/html; charset=nope")
    assert isinstance(text, str) and encoding


def test_russian_is_not_forced_to_cp1252() -> None:
    body = "<p>Привет, как дела? Это тестовая страница на русском языке.</p>".encode("cp1251")
    assert "Привет" in decode_html(body)[0]


def test_retry_after_parsing() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert parse_retry_after("tomorrow, maybe") is None
    assert parse_retry_after("") is None and parse_retry_after(None) is None
    assert parse_retry_after("-5") is None
