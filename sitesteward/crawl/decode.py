"""Turn an HTML body into text with the right character set.

Order, as browsers do (WHATWG "encoding sniffing"): byte-order mark, the ``Content-Type`` charset, a
``<meta charset>`` or ``http-equiv`` declaration in the first 2 KiB, then a strict UTF-8 attempt,
charset-normalizer's guess and finally UTF-8 with replacement characters. ``iso-8859-1`` and
``ascii`` labels mean windows-1252, as on the web, so a page declared Latin-1 keeps its curly quotes.
"""

from __future__ import annotations

import codecs
import re

from charset_normalizer import from_bytes

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?([\w.:-]+)""", re.IGNORECASE)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)""", re.IGNORECASE)
_WEB_ALIASES = {
    "iso-8859-1": "windows-1252",
    "iso8859-1": "windows-1252",
    "latin-1": "windows-1252",
    "latin1": "windows-1252",
    "us-ascii": "windows-1252",
    "ascii": "windows-1252",
    "x-user-defined": "windows-1252",
}
_SNIFF_BYTES = 2048
_GUESS_BYTES = 64 * 1024


def _codec(label: str | None) -> str | None:
    """Return a Python codec name for a web charset label, or None when unknown."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    label = _WEB_ALIASES.get(label, label)
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    return name


def charset_from_content_type(content_type: str | None) -> str | None:
    """Return the codec named by a ``Content-Type`` header's charset parameter, if valid."""
    if not content_type:
        return None
    match = _HEADER_CHARSET.search(content_type)
    return _codec(match.group(1)) if match else None


def charset_from_meta(body: bytes) -> str | None:
    """Return the codec declared by ``<meta charset>`` or ``http-equiv`` in the first 2 KiB."""
    match = _META_CHARSET.search(body[:_SNIFF_BYTES])
    if not match:
        return None
    name = _codec(match.group(1).decode("ascii", "replace"))
    # A <meta> can only be read if the bytes are ASCII-compatible, so a UTF-16 declaration is a lie.
    if name is not None and name.startswith("utf-16"):
        return "utf-8"
    return name


def _guess(sample: bytes) -> str | None:
    matches = from_bytes(sample)
    best = matches.best()
    if best is None:
        return None
    # Short Western text fits cp1250, cp1252 and cp1257 equally well; on ties the web's default wins.
    tied = [
        match.encoding
        for match in matches
        if match.chaos <= best.chaos + 0.01 and match.coherence >= best.coherence - 0.01
    ]
    if "cp1252" in tied:
        return "cp1252"
    return _codec(best.encoding)


def decode_html(body: bytes, content_type: str | None = None) -> tuple[str, str]:
    """Decode an HTML body.

    Args:
        body: The raw (content-decoded) bytes.
        content_type: The response's ``Content-Type`` header, if any.

    Returns:
        ``(text, encoding)``; never raises: undecodable bytes become U+FFFD.
    """
    for bom, name in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(name, "replace"), name
    declared = charset_from_content_type(content_type) or charset_from_meta(body)
    if declared is not None:
        return body.decode(declared, "replace"), declared
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    guessed = _guess(body[:_GUESS_BYTES])
    if guessed is not None:
        return body.decode(guessed, "replace"), guessed
    return body.decode("utf-8", "replace"), "utf-8"
