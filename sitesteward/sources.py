"""Cited sources: which URLs a page cites (and with which sentence), and snapshots of their text.

Fetching is the caller's job (the task layer uses the crawler); everything here takes HTML or text that
was already fetched, so it is pure and testable without a network.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

import lxml.html  # type: ignore[import-untyped, unused-ignore]
from lxml import etree  # type: ignore[import-untyped, unused-ignore]
from pydantic import Field

from sitesteward.models import Contract, LinkOutcome, PageData
from sitesteward.urls import absolutize, host_of, normalize_url

#: Elements whose text is one block of prose (the unit a citing sentence is looked for in).
_BLOCK_TAGS = frozenset(
    {
        "p",
        "li",
        "td",
        "th",
        "dd",
        "dt",
        "blockquote",
        "figcaption",
        "caption",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "pre",
        "div",
        "section",
        "article",
        "main",
        "body",
    }
)
_BOILERPLATE_TAGS = ("nav", "header", "footer", "aside", "script", "style", "noscript", "template")
_SOURCE_LINE = re.compile(r"^\s*(sources?|via|references?|data)\s*:", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"”’)\]]*\s+(?=[\"“(\[]?[A-Z0-9])")
_WHITESPACE = re.compile(r"\s+")

CitationKind = Literal["link", "cite", "footnote", "source_line"]
_AddFn = Callable[[str, str, str, CitationKind], None]


class Citation(Contract):
    """One source a page cites, with the page sentence that relies on it."""

    url: str = Field(description="Absolute, normalised URL of the source.")
    sentence: str = Field(description="The page's sentence (or paragraph, for 'Source:' lines) citing it.")
    anchor_text: str = ""
    kind: CitationKind = "link"


class SourceSnapshot(Contract):
    """A cited source's main text at one retrieval, with the HTTP facts that came with it."""

    url: str
    final_url: str | None = None
    status: int | None = None
    outcome: LinkOutcome = LinkOutcome.ok
    etag: str | None = None
    last_modified: str | None = None
    retrieved_at: datetime
    text: str = ""
    text_hash: str = ""
    extractor: Literal["trafilatura", "lxml", "none"] = "none"


def text_hash(text: str) -> str:
    """SHA-256 of whitespace-normalised text (so re-wrapping a paragraph is not a change)."""
    return hashlib.sha256(normalize_space(text).encode("utf-8")).hexdigest()


def normalize_space(text: str) -> str:
    """Collapse runs of whitespace (non-breaking spaces included) to one space and strip the ends."""
    return _WHITESPACE.sub(" ", text.replace("\u00a0", " ").replace("\u202f", " ")).strip()


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences (a heuristic: terminal punctuation followed by a capital or digit)."""
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n|\n", text):
        paragraph = normalize_space(paragraph)
        if paragraph:
            sentences.extend(s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip())
    return sentences


def _sentence_at(text: str, offset: int) -> str:
    """The sentence of ``text`` (already whitespace-normalised) that contains character ``offset``."""
    start = 0
    for part in _SENTENCE_END.finditer(text):
        if part.start() >= offset:
            return text[start : part.start()].strip()
        start = part.end()
    return text[start:].strip()


def _block_of(element: etree._Element) -> etree._Element:
    node: etree._Element | None = element.getparent()
    while node is not None and not (isinstance(node.tag, str) and node.tag in _BLOCK_TAGS):
        node = node.getparent()
    return node if node is not None else element


def _text_before(block: etree._Element, target: etree._Element) -> str:
    """Text of ``block`` that precedes ``target`` in document order."""
    parts: list[str] = []
    for node in block.iter():
        if node is target:
            break
        if (node is not block and node.text and target not in node.iterancestors()) or (
            node is block and node.text
        ):
            parts.append(node.text)
        if node is not block and node.tail and not _contains(node, target):
            parts.append(node.tail)
    return "".join(parts)


def _contains(node: etree._Element, target: etree._Element) -> bool:
    return any(descendant is target for descendant in node.iter())


def _citing_sentence(anchor: etree._Element) -> str:
    block = _block_of(anchor)
    before = normalize_space(_text_before(block, anchor))
    whole = normalize_space(block.text_content())
    # the text before the anchor is a prefix of the block's text up to whitespace differences
    offset = min(len(before) + (1 if before else 0), max(len(whole) - 1, 0))
    return _sentence_at(whole, offset)


def _resolve(href: str | None, page_url: str) -> str | None:
    if not href:
        return None
    absolute = absolutize(href.strip(), page_url)
    if absolute is None:
        return None
    try:
        return normalize_url(absolute)
    except Exception:  # an unparseable href is not a citation
        return None


def _main_root(root: etree._Element) -> etree._Element:
    for xpath in ("//main", "//article", "//*[@role='main']", "//body"):
        found = root.xpath(xpath)
        if isinstance(found, list) and found and isinstance(found[0], etree._Element):
            return found[0]
    return root


def _in_boilerplate(element: etree._Element) -> bool:
    return any(isinstance(a.tag, str) and a.tag in _BOILERPLATE_TAGS for a in element.iterancestors())


def cited_sources(page_html: str, page_url: str, data: PageData) -> list[Citation]:
    """Find the sources a page cites and the sentence citing each.

    Candidates are the outbound links that extraction marked ``in_main`` (or, when ``data`` has no links,
    outbound links in ``<main>``/``<article>`` outside navigation), plus explicit citations: ``<cite>``
    and ``<blockquote cite>``/``<q cite>``, footnote references whose note holds a link, and
    "Source: ..." lines (whose citing text is the paragraph before them).

    Args:
        page_html: The page's decoded HTML.
        page_url: Its final URL (base for relative links).
        data: What extraction read from it.

    Returns:
        Citations in document order, one per (url, sentence); malformed HTML yields what could be read.
    """
    if not page_html.strip():
        return []
    try:
        root = lxml.html.document_fromstring(page_html)
    except (etree.ParserError, ValueError):
        return []
    page_host = host_of(page_url)
    internal_hosts = {page_host} | {host_of(link.href) for link in data.links if link.internal}
    candidates = {link.href for link in data.links if link.in_main and not link.internal}
    main = _main_root(root)
    found: list[Citation] = []
    seen: set[tuple[str, str]] = set()

    def add(url: str, sentence: str, anchor: str, kind: CitationKind) -> None:
        key = (url, sentence)
        if sentence and key not in seen:
            seen.add(key)
            found.append(Citation(url=url, sentence=sentence, anchor_text=anchor, kind=kind))

    note_ids = {
        (a.get("href") or "")[1:] for a in root.iter("a") if (a.get("href") or "").startswith("#")
    } - {""}
    notes = [n for n in root.iter() if isinstance(n.tag, str) and n.get("id") in note_ids]
    for anchor in root.iter("a"):
        href = anchor.get("href") or ""
        if href.startswith("#"):
            _add_footnote(root, anchor, href[1:], page_url, internal_hosts, add)
            continue
        url = _resolve(href, page_url)
        if url is None or host_of(url) in internal_hosts:
            continue
        anchor_text = normalize_space(anchor.text_content())
        block = _block_of(anchor)
        block_text = normalize_space(block.text_content())
        cite_ancestor = any(a.tag == "cite" for a in anchor.iterancestors())
        if _SOURCE_LINE.match(block_text):
            add(url, _previous_paragraph(block) or block_text, anchor_text, "source_line")
        elif cite_ancestor:
            add(url, _citing_sentence(anchor), anchor_text, "cite")
        elif any(_contains(note, anchor) for note in notes):
            continue  # the footnote reference carries the citation
        elif url in candidates or (
            not data.links and _contains(main, anchor) and not _in_boilerplate(anchor)
        ):
            add(url, _citing_sentence(anchor), anchor_text, "link")
    for quoted in root.xpath("//blockquote[@cite] | //q[@cite]"):
        if isinstance(quoted, etree._Element):
            url = _resolve(quoted.get("cite"), page_url)
            if url and host_of(url) not in internal_hosts:
                add(url, normalize_space(quoted.text_content()), "", "cite")
    for cite in root.iter("cite"):
        text = normalize_space(cite.text_content())
        if text.startswith(("http://", "https://")) and not list(cite.iter("a")):
            url = _resolve(text, page_url)
            if url and host_of(url) not in internal_hosts:
                add(url, _citing_sentence(cite), text, "cite")
    return found


def _previous_paragraph(block: etree._Element) -> str:
    node = block.getprevious()
    while node is not None:
        text = normalize_space(node.text_content()) if isinstance(node.tag, str) else ""
        if text:
            return text
        node = node.getprevious()
    return ""


def _add_footnote(
    root: etree._Element,
    reference: etree._Element,
    note_id: str,
    page_url: str,
    internal_hosts: set[str],
    add: _AddFn,
) -> None:
    if not note_id:
        return
    notes = root.xpath("//*[@id=$id]", id=note_id)
    if not isinstance(notes, list) or not notes or not isinstance(notes[0], etree._Element):
        return
    note = notes[0]
    if _contains(note, reference):
        return  # a back-reference from the note to the text
    for link in note.iter("a"):
        url = _resolve(link.get("href"), page_url)
        if url and host_of(url) not in internal_hosts:
            add(url, _citing_sentence(reference), normalize_space(link.text_content()), "footnote")


def _lxml_text(html: str) -> str:
    """Visible text by a plain lxml pass (fallback when trafilatura finds no main text)."""
    try:
        root = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return ""
    for bad in root.xpath("//script | //style | //noscript | //template | //head"):
        if isinstance(bad, lxml.html.HtmlElement):
            bad.drop_tree()
    lines: list[str] = []
    for element in root.iter():
        if isinstance(element.tag, str) and element.tag in _BLOCK_TAGS - {
            "div",
            "section",
            "article",
            "main",
            "body",
        }:
            text = normalize_space(element.text_content())
            if text:
                lines.append(text)
    if not lines:
        lines = [normalize_space(root.text_content())]
    return "\n".join(line for line in lines if line)


def extract_main_text(
    html: str, url: str | None = None
) -> tuple[str, Literal["trafilatura", "lxml", "none"]]:
    """Main text of a source document: trafilatura first, a plain lxml pass when it returns nothing.

    Returns:
        The text (paragraphs separated by newlines) and which extractor produced it.
    """
    try:
        from trafilatura import extract as trafilatura_extract
    except ImportError:  # trafilatura (or its lxml_html_clean dependency) is missing: lxml pass only
        trafilatura_extract = None  # type: ignore[assignment]
    if trafilatura_extract is not None and html.strip():
        try:
            text = trafilatura_extract(
                html,
                url=url,
                include_comments=False,
                include_tables=True,
                favor_recall=True,
                deduplicate=False,
            )
        except Exception:  # trafilatura raises assorted errors on hostile markup; fall back
            text = None
        if isinstance(text, str) and text.strip():
            return text.strip(), "trafilatura"
    text = _lxml_text(html) if html.strip() else ""
    return (text, "lxml") if text else ("", "none")


def snapshot_source(
    url: str,
    html: str,
    *,
    http_meta: dict[str, str | int | None] | None = None,
    outcome: LinkOutcome = LinkOutcome.ok,
    retrieved_at: datetime | None = None,
) -> SourceSnapshot:
    """Snapshot one fetched source: its main text, the text's hash and the HTTP facts.

    Args:
        url: The cited URL.
        html: The decoded body (empty when the fetch failed).
        http_meta: ``status``, ``final_url``, ``etag``, ``last-modified`` (header names any case).
        outcome: The caller's fetch outcome (``broken``/``blocked`` when the source was unavailable).
        retrieved_at: Retrieval time (now, UTC, when omitted).
    """
    meta = {key.lower().replace("_", "-"): value for key, value in (http_meta or {}).items()}
    text, extractor = (
        extract_main_text(html, url)
        if outcome in {LinkOutcome.ok, LinkOutcome.redirected}
        else (
            "",
            "none",
        )
    )
    status = meta.get("status")
    final_url = meta.get("final-url")
    etag = meta.get("etag")
    modified = meta.get("last-modified")
    return SourceSnapshot(
        url=url,
        final_url=str(final_url) if final_url else None,
        status=int(status) if status is not None else None,
        outcome=outcome,
        etag=str(etag) if etag else None,
        last_modified=str(modified) if modified else None,
        retrieved_at=retrieved_at or datetime.now(UTC),
        text=text,
        text_hash=text_hash(text) if text else "",
        extractor=extractor,
    )
