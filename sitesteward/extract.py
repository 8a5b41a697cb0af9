"""Page extraction on lxml: the crawler's per-page hot path.

One parse with libxml2's forgiving HTML parser, then as little Python per element as possible: one
tag-filtered walk over the document (head, headings, links, images, the few dropped tags), one XPath
query in C for the attributes that hide an element or name the main content, one walk over the main
content's boxes for boilerplate names, and an XSLT pass that reads the main text in C. BeautifulSoup is
banned here (26x slower on a real site).

Main content: the first ``<main>``, else ``[role=main]``, else a lone ``<article>``, else ``<body>``.
Inside it we drop script/style/noscript/template/svg/nav/aside/form (and a few more non-text elements),
``header``/``footer`` unless they sit inside an ``article`` or ``main`` (an article's header holds its
title and "Last updated" line), ARIA landmarks navigation/banner/contentinfo/complementary/search,
hidden elements (``hidden``, ``aria-hidden="true"``, inline ``display:none``/``visibility:hidden``) and
elements whose id or class names boilerplate (sidebar, menu, cookie, breadcrumb, toc, share...), unless
such a box holds main's first ``<h1>`` or most of its text in few links (a theme's "content-sidebar-wrap").
Comments and processing instructions are removed by the parser, so they never count as text; control
characters, which lxml keeps but refuses to rewrite, read as spaces.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from lxml import etree

from sitesteward.dates import date_phrases
from sitesteward.errors import InvalidUrl
from sitesteward.models import PageData, QueryHandling
from sitesteward.urls import absolutize, host_of, normalize_url

_TEXT_CAP = 500  # characters kept of a link text or heading
_JSONLD_CAP = 1_000_000  # characters of one JSON-LD block we are willing to parse
_LINK_CAP = 5000  # distinct links kept per page (mega menus and link farms)
_IMAGE_CAP = 2000

_DROP_TAGS = (
    "script",
    "style",
    "noscript",
    "template",
    "svg",
    "math",
    "nav",
    "aside",
    "form",
    "iframe",
    "object",
    "embed",
    "canvas",
    "select",
    "textarea",
    "button",
    "dialog",
    "menu",
)
_DROP_ROLES = frozenset(
    {"navigation", "banner", "contentinfo", "complementary", "search", "dialog", "menu", "menubar"}
)
_LANDMARK_TAGS = ("header", "footer")  # dropped unless inside an article or main
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
# Boilerplate words in a class token or id: "sidebar", "left-sidebar", "cookie-banner", "main-menu",
# "breadcrumbs", "toc-wrapper"; but not state classes on a content wrapper ("has-sidebar", "no-toc").
_BOILERPLATE_WORDS = (
    "sidebar",
    "side-bar",
    "sidenav",
    "menu",
    "menubar",
    "navbar",
    "nav",
    "navigation",
    "breadcrumb",
    "breadcrumbs",
    "cookie",
    "cookies",
    "cookiebar",
    "consent",
    "gdpr",
    "skip-link",
    "skiplink",
    "share",
    "sharing",
    "social",
    "advert",
    "advertisement",
    "ads",
    "masthead",
    "newsletter",
    "popup",
    "modal",
    "toc",
    "site-header",
    "site-footer",
    "global-header",
    "global-footer",
    "related",
)
_BOILERPLATE_TOKEN = re.compile(
    r"^(?!(?:has|with|no|is|show|hide|without)[-_])(?:[a-z0-9]+[-_])*"
    r"(?:" + "|".join(sorted(map(re.escape, _BOILERPLATE_WORDS), key=len, reverse=True)) + r")"
    r"(?:[-_][a-z0-9]+)*$",
    re.IGNORECASE,
)
_BLOCK_TAGS = (
    "p",
    "div",
    "section",
    "article",
    "main",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "table",
    "tr",
    "td",
    "th",
    "thead",
    "tbody",
    "tfoot",
    "caption",
    "blockquote",
    "pre",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "br",
    "hr",
    "figure",
    "figcaption",
    "details",
    "summary",
    "address",
    "body",
)
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_ABSOLUTE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def _parser() -> etree.HTMLParser:
    # huge_tree: a 20 MB attribute otherwise makes libxml2 drop the rest of the document;
    # the crawler's byte cap bounds the memory this allows. collect_ids: nothing here looks elements up
    # by id, and the id table costs about 4% of the parse.
    return etree.HTMLParser(
        encoding="utf-8",
        remove_comments=True,
        remove_pis=True,
        no_network=True,
        huge_tree=True,
        recover=True,
        collect_ids=False,
    )


def _collapse(text: str | None) -> str:
    return " ".join(text.split()) if text else ""


def _text_of(element: Any) -> str:
    if not len(element):  # no children (the common plain-text link): no image to look at either
        return _collapse(element.text)[:_TEXT_CAP]
    # All the text below the element, as "".join(element.itertext()) but gathered in C (4x faster).
    text = _collapse(etree.tostring(element, method="text", encoding=str, with_tail=False))
    if not text:  # an image-only link or heading speaks through its alt text
        text = _collapse(" ".join(img.get("alt") or "" for img in element.iter("img")))
    return text[:_TEXT_CAP]


def _names_boilerplate(value: str) -> bool:
    return any(_BOILERPLATE_TOKEN.match(token) for token in value.split())


_names_boilerplate_cached = lru_cache(maxsize=16_384)(_names_boilerplate)


def _is_boilerplate(value: str) -> bool:
    """Whether a class or id value has a token naming boilerplate (cached: pages repeat their classes)."""
    return _names_boilerplate_cached(value) if len(value) <= 256 else _names_boilerplate(value)


def _drop(element: Any) -> None:
    """Remove an element but keep its tail text (which belongs to the parent)."""
    parent = element.getparent()
    if parent is None:
        return
    tail = element.tail
    if tail:
        previous = element.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(element)


#: Attributes that may hide an element (any tag), or make it the main content (role=main), found by
#: libxml2 rather than by a Python loop, in one pass over the document rather than one per use: an
#: attribute step per name is several times cheaper than ``*[@hidden or @aria-hidden or ...]``.
_ROLE_AND_HIDING = etree.XPath(
    "descendant-or-self::*/@role | descendant-or-self::*/@hidden"
    " | descendant-or-self::*/@aria-hidden | descendant-or-self::*/@style"
)


def _main_root(root: Any, mains: list[Any], articles: list[Any], attributes: list[Any]) -> Any:
    """The main content element, from the document's main and article elements and role attributes."""
    if mains:
        return mains[0]
    for attribute in attributes:
        if attribute.attrname == "role" and attribute == "main":
            return attribute.getparent()
    outermost = [article for article in articles if next(article.iterancestors("article"), None) is None]
    if len(outermost) == 1:
        return outermost[0]
    body = root.find("body")
    return body if body is not None else root


def _below(element: Any, ancestor: Any) -> bool:
    """Whether ``element`` is a descendant of ``ancestor`` (in the tree as it is now)."""
    return any(parent is ancestor for parent in element.iterancestors(ancestor.tag))


def _is_hidden(element: Any) -> bool:
    if element.get("hidden") is not None or element.get("aria-hidden") == "true":
        return True
    role = element.get("role")
    if role and role.strip().lower() in _DROP_ROLES:
        return True
    style = element.get("style")
    return bool(style and _HIDDEN_STYLE.search(style))


def _is_boilerplate_box(element: Any) -> bool:
    """Whether a box's class or id names boilerplate.

    Boxes (the block tags, header and footer) are where boilerplate names are looked for: containers,
    not inline text. Real documentation has tens of thousands of ``<span class="pre">`` per page; a
    sidebar or a cookie banner is a box.
    """
    names = element.keys()  # most boxes have no attribute at all, and this is cheaper than two get()s
    return bool(names) and (
        ("class" in names and _is_boilerplate(element.get("class")))
        or ("id" in names and _is_boilerplate(element.get("id")))
    )


def _boilerplate(main: Any, found: dict[str, list[Any]], attributes: list[Any]) -> list[Any]:
    """``main``'s boilerplate (see the module docstring), in no particular order.

    The boxes come from a walk over ``main``; the dropped tags and landmarks, which are few, from the
    document's (``found`` by ``_collect``), and the hidden elements from its ``_ROLE_AND_HIDING``
    ``attributes``: those in ``main`` count.
    """
    named = [
        element for element in main.iter(*_BLOCK_TAGS) if element is not main and _is_boilerplate_box(element)
    ]
    doomed = _not_wrapping_content(main, named, found["heading"]) if named else named
    doomed += [element for element in found["drop"] if element is main or _below(element, main)]
    for element in found["landmark"]:
        if element is not main and not _below(element, main):
            continue
        if next(element.iterancestors("article", "main"), None) is None:
            doomed.append(element)  # a header or footer outside any article or main
        elif element is not main and _is_boilerplate_box(element):
            doomed.append(element)  # a header or footer kept as a landmark is still a box
    for attribute in attributes:
        element = attribute.getparent()
        if element is not main and _is_hidden(element) and _below(element, main):
            doomed.append(element)
    return doomed


def _text_length(element: Any) -> int:
    """Characters of text below ``element``, whitespace not counted (blocks need no separator here)."""
    text: str = etree.tostring(element, method="text", encoding=str, with_tail=False)
    return len(text) - sum(map(text.count, (" ", "\n", "\t", "\r")))


def _not_wrapping_content(main: Any, boxes: list[Any], headings: list[Any]) -> list[Any]:
    """``boxes`` (named as boilerplate) less those that wrap the page's content.

    A name is a guess: themes call the wrapper of the article and its sidebar "content-sidebar-wrap" or
    "page-with-sidebar", a site its article box "related-content". Dropping such a box would leave a
    real page with no text (a false ``thin_content``, a changed text hash), so a box stays when it holds
    main's first ``<h1>``, or more than half of main's text with less than half of its own in links (a
    menu bigger than a thin page's text is all links, and still goes). A real sidebar inside a kept box
    still goes: each box is judged on its own.
    """
    h1 = next((h for h in headings if h.tag == "h1" and (h is main or _below(h, main))), None)
    total: int | None = None
    doomed = []
    for box in boxes:
        if h1 is not None and _below(h1, box):
            continue
        if total is None:
            total = _text_length(main)
        length = _text_length(box) if total else 0
        if 2 * length > total and 2 * sum(map(_text_length, box.iter("a"))) < length:
            continue
        doomed.append(box)
    return doomed


def _drop_all(elements: list[Any]) -> None:
    # Dropping keeps tails in place, so the order of the drops does not change the result (an element
    # listed twice, or inside another dropped one, is dropped from wherever it is by then).
    for element in elements:
        _drop(element)


def _anchors_in(root: Any, anchors: list[Any], dropped: list[Any]) -> set[Any]:
    """The anchors (a, area) left in ``root`` once ``dropped`` are dropped (call it before that).

    ``anchors`` are the document's in document order, where ``root``'s subtree is a run: from its first
    anchor to the first one after it, less those that go with a ``dropped`` element other than ``root``
    (or that went with an earlier one). Only the start of ``root`` and what follows it up to that next
    anchor are walked, not the whole subtree.
    """
    first = next(root.iter("a", "area"), None)
    if first is None:
        return set()
    start = anchors.index(first)
    after = _first_anchor_after(root)
    inside = set(anchors[start : anchors.index(after, start) if after is not None else len(anchors)])
    for element in dropped:
        if element is not root:  # (main itself can be a dropped tag: its contents stay main)
            inside.difference_update(element.iter("a", "area"))
    return inside


def _first_anchor_after(element: Any) -> Any:
    """The first anchor after ``element`` and its subtree in document order, or None."""
    for node in (element, *element.iterancestors()):
        for sibling in node.itersiblings():
            found = next(sibling.iter("a", "area"), None)
            if found is not None:
                return found
    return None


_BLOCK_TAG_SET = frozenset(_BLOCK_TAGS)


def _has_block(element: Any) -> bool:
    """Whether a block element is below ``element`` (cheaper than ``iter(*_BLOCK_TAGS)`` on small trees)."""
    return bool(len(element)) and any(child.tag in _BLOCK_TAG_SET for child in element.iterdescendants())


def _mark_blocks(root: Any) -> None:
    """Blocks become line breaks so "<p>a</p><p>b</p>" reads "a\\nb", not "ab"."""
    for element in root.iter(*_BLOCK_TAGS):
        element.tail = "\n" + element.tail if element.tail else "\n"
        if element.tag != "br":
            element.text = "\n" + element.text if element.text else "\n"


#: The text ``_mark_blocks`` then ``tostring(method="text")`` would give (a line break at both ends of
#: every block, after every ``br``), without touching the tree: one pass in C instead of two writes per
#: block in Python. Its last line break (after the root) is one that tostring's ``with_tail=False`` leaves
#: out, which ``_collapse_lines`` ignores. (With no imported stylesheet, ``apply-imports`` is the built-in
#: rule: the children, as ``apply-templates`` would do, a little faster.)
_BLOCK_TEXT = etree.XSLT(  # (reads nothing but its input; usable from any thread)
    etree.XML(
        '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
        '<xsl:output method="text" encoding="UTF-8"/>'
        '<xsl:template match="'
        + "|".join(tag for tag in _BLOCK_TAGS if tag != "br")
        + '"><xsl:text>&#10;</xsl:text><xsl:apply-imports/><xsl:text>&#10;</xsl:text></xsl:template>'
        '<xsl:template match="br"><xsl:apply-imports/><xsl:text>&#10;</xsl:text></xsl:template>'
        "</xsl:stylesheet>"
    ),
    access_control=etree.XSLTAccessControl.DENY_ALL,
)


#: Characters lxml refuses in a ``.text``/``.tail`` value: ``_mark_blocks`` raises on them (and the page
#: then yields empty data), which ``_block_text`` must not paper over.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NOT_XML_ASCII = bytes(set(range(32)) - {9, 10, 13})
_NOT_XML_UTF8 = ("\ufffe".encode(), "\uffff".encode())  # (surrogates are not valid UTF-8 at all)


def _xml_compatible(data: bytes) -> bool:
    """Whether UTF-8 ``data`` has none of ``_NOT_XML`` (``bytes.translate`` is a much faster scan)."""
    return len(data.translate(None, _NOT_XML_ASCII)) == len(data) and not any(
        sequence in data for sequence in _NOT_XML_UTF8
    )


_CONTROLS_TO_SPACES = bytes(32 if byte in _NOT_XML_ASCII else byte for byte in range(256))


def _xml_spaces(data: bytes) -> bytes:
    """UTF-8 ``data`` with each character of ``_NOT_XML`` replaced by a space.

    Byte by byte is safe: ASCII bytes never occur inside a multi-byte UTF-8 sequence.
    """
    data = data.translate(_CONTROLS_TO_SPACES)
    for sequence in _NOT_XML_UTF8:
        data = data.replace(sequence, b" ")
    return data


def _block_text(main: Any) -> str | None:
    """``main``'s text as ``_marked_text`` gives it (see ``_BLOCK_TEXT``), or None: take that path then.

    None when an anchor holds main (its text would include the marks), when the text has characters
    that ``_mark_blocks`` could fail on, or when libxslt gives up (nesting deeper than its template depth).
    """
    if next(main.iterancestors("a", "area"), None) is not None:
        return None
    tail = main.tail
    if tail and _NOT_XML.search(tail):
        return None
    try:
        data = bytes(_BLOCK_TEXT(main))
        return data.decode("utf-8") if _xml_compatible(data) else None
    except (etree.Error, UnicodeDecodeError):
        return None


def _marked_text(main: Any) -> str:
    _mark_blocks(main)
    text: str = etree.tostring(main, method="text", encoding=str, with_tail=False)
    return text


def _collapse_lines(raw: str) -> str:
    """Collapse whitespace within each line and drop empty lines (all in C: no per-line Python)."""
    return "\n".join(map(" ".join, map(str.split, filter(str.strip, raw.splitlines()))))


def _jsonld_types(value: object, depth: int = 0) -> Iterator[str]:
    """@type values of top-level entities, ``@graph`` members and lists (not nested properties)."""
    if depth > 20:
        return
    if isinstance(value, list):
        for item in value:
            yield from _jsonld_types(item, depth + 1)
    elif isinstance(value, dict):
        kind = value.get("@type")
        if isinstance(kind, str):
            yield kind
        elif isinstance(kind, list):
            yield from (item for item in kind if isinstance(item, str))
        if "@graph" in value:
            yield from _jsonld_types(value["@graph"], depth + 1)


def _read_jsonld(scripts: list[Any]) -> list[str]:
    types: list[str] = []
    for script in scripts:
        if (script.get("type") or "").split(";")[0].strip().lower() != "application/ld+json":
            continue
        text = script.text or ""
        if len(text) > _JSONLD_CAP:
            continue
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            continue
        for kind in _jsonld_types(data):
            kind = kind.strip()
            if kind and kind not in types:
                types.append(kind)
    return types


@lru_cache(maxsize=8_192)
def _host_cached(url: str) -> str:
    return host_of(url)


@lru_cache(maxsize=8_192)
def _resolve_cached(href: str, base: str, query_handling: QueryHandling) -> str | None:
    absolute = absolutize(href, base)
    if absolute is None:
        return None
    try:
        return normalize_url(absolute, query_handling)
    except InvalidUrl:
        return None


def _directory_of(base: str) -> str:
    """The part of ``base`` a path-relative href resolves against: up to the last ``/`` of its path."""
    path = base.split("#", 1)[0].split("?", 1)[0]
    if path.count("/") < 3:  # "http://host": no path at all
        return path + "/"
    return path[: path.rindex("/") + 1]


class _Resolver:
    """Absolutise (``urls.absolutize``) and normalise (``urls.normalize_url``) hrefs against the base.

    Results are cached across pages, keyed by what a result really depends on: a site's navigation
    repeats on every page, a root-relative or absolute href depends only on the base's origin, a
    path-relative one only on the base's directory, and the fragment on nothing (it is dropped), so
    ``os.html#os.getcwd`` and ``os.html#os.walk`` are one cache entry. Within a page, results are also
    kept by the raw href without its fragment, which spares the parsing of most of a page's hrefs.
    """

    def __init__(self, base: str, query_handling: QueryHandling) -> None:
        self.base = base.split("#", 1)[0]
        parts = base.split("/", 3)
        self.origin = "/".join(parts[:3]) + "/" if len(parts) >= 3 else base
        self.directory = _directory_of(base)
        self.query_handling = query_handling
        self._resolved: dict[str, str | None] = {}

    def __call__(self, href: str | None) -> str | None:
        if not href:
            return None
        if len(href) > 4096:
            return self._resolve(href)
        # Per page, by the href without its fragment: what comes after the first "#" never matters, and
        # whitespace left before it is stripped by ``absolutize``.
        key = href.partition("#")[0]
        if key in self._resolved:
            return self._resolved[key]
        resolved = self._resolved[key] = self._resolve(href)
        return resolved

    def _resolve(self, href: str) -> str | None:
        href = href.strip()
        if len(href) > 4096:  # no real link is this long; do not cache or parse it
            return None
        href = href.partition("#")[0]
        if not href:  # "#section": this very page
            return None
        first = href[0]
        if first == "/":  # root-relative; "//host/path" is protocol-relative
            base = self.directory if href.startswith("//") else self.origin
        elif first == "?":
            base = self.base
        elif "://" in href and _ABSOLUTE.match(href):
            base = self.origin
        else:
            base = self.directory
        return _resolve_cached(href, base, self.query_handling)


#: The elements the whole-document walk collects, by kind ("a" and "area" together: document order;
#: "drop" and "landmark" for ``_boilerplate``, script being a "drop" too).
_KINDS = {
    **dict.fromkeys(_DROP_TAGS, "drop"),
    **dict.fromkeys(_LANDMARK_TAGS, "landmark"),
    **dict.fromkeys(_HEADINGS, "heading"),
    "a": "a",
    "area": "a",
    "base": "base",
    "title": "title",
    "meta": "meta",
    "link": "link",
    "img": "img",
    "script": "script",
    "main": "main",
    "article": "article",
}


def _collect(root: Any) -> dict[str, list[Any]]:
    """One walk over the document instead of one per tag: the elements of each kind in document order."""
    found: dict[str, list[Any]] = {kind: [] for kind in _KINDS.values()}
    kinds = _KINDS
    for element in root.iter(*kinds):
        found[kinds[element.tag]].append(element)
    found["drop"] += found["script"]
    return found


def extract_page(
    html: str,
    url: str,
    *,
    site_hosts: frozenset[str] = frozenset(),
    query_handling: QueryHandling = QueryHandling.strip_tracking,
) -> PageData:
    """Extract title, meta, canonical, headings, links, images, main text and dates from one document.

    Links are de-duplicated by normalised href (first text and rel win; ``in_main`` is true when any
    occurrence is in the main content). Headings and links are read from the whole document; main text,
    word count, text hash and dates from the main content only (see the module docstring).

    Args:
        html: The decoded document.
        url: The document's final URL (base for relative links unless ``<base href>`` says otherwise).
        site_hosts: Hosts that count as internal for ``Link.internal`` (the page's own host always does).
        query_handling: How link and canonical URLs treat query strings (match the crawl's setting so
            that hrefs compare equal to crawled URLs).

    Returns:
        The page's data; malformed HTML yields what could be read, never an exception.
    """
    empty_hash = hashlib.sha256(b"").hexdigest()
    data = html.encode("utf-8", "replace")
    if not _xml_compatible(data):
        # A stray control character (a NUL, a form feed, a \x08 pasted from a word processor) is a parse
        # error browsers shrug off; lxml keeps it in the text, then refuses it in every text it is asked to
        # set, so the page read as empty: no title, no links, no words. Each one reads as a space.
        data = _xml_spaces(data)
    try:
        root = etree.fromstring(data, _parser())
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        root = None
    if root is None:
        return PageData(text_hash=empty_hash)
    try:
        return _extract(root, url, site_hosts, query_handling)
    except Exception:  # a page must never crash the crawl
        return PageData(text_hash=empty_hash)


def _extract(root: Any, url: str, site_hosts: frozenset[str], query_handling: QueryHandling) -> PageData:
    page_host = host_of(url)
    found = _collect(root)
    base = url
    for element in found["base"]:
        resolved = absolutize(element.get("href") or "", url)
        if resolved:
            base = resolved
            break
    resolve = _Resolver(base, query_handling)

    title = None
    for element in found["title"]:
        if next(element.iterancestors("svg"), None) is None:
            title = _collapse("".join(element.itertext()))
            break

    description: str | None = None
    robots: list[str] = []
    for meta in found["meta"]:
        name = (meta.get("name") or meta.get("property") or "").strip().lower()
        content = meta.get("content")
        if content is None:
            continue
        if name == "description" and description is None:
            description = _collapse(content)
        elif name in ("robots", "googlebot") and content.strip():
            robots.append(_collapse(content))

    canonical: str | None = None
    hreflang: dict[str, str] = {}
    for element in found["link"]:
        rel = (element.get("rel") or "").lower().split()
        if "canonical" in rel and canonical is None:
            canonical = resolve(element.get("href"))
        elif "alternate" in rel and element.get("hreflang"):
            target = resolve(element.get("href"))
            language = (element.get("hreflang") or "").strip().lower()
            if target and language and language not in hreflang:
                hreflang[language] = target

    headings: dict[str, list[str]] = {}
    for element in found["heading"]:  # before the boilerplate pass changes the tree
        text = _text_of(element)
        if text:
            headings.setdefault(element.tag, []).append(text)

    images: list[dict[str, str | None]] = []
    for element in found["img"]:
        source = element.get("src") or element.get("data-src") or ""
        resolved = resolve(source)
        if resolved is None:
            if not source.strip().lower().startswith("data:"):
                continue
            resolved = source.strip()[:64]
        alt = element.get("alt")
        images.append({"src": resolved, "alt": alt.strip() if alt is not None else None})
        if len(images) >= _IMAGE_CAP:
            break

    jsonld_types = _read_jsonld(found["script"])
    lang = root.get("lang") or root.get("{http://www.w3.org/XML/1998/namespace}lang")

    attributes = _ROLE_AND_HIDING(root)
    main = _main_root(root, found["main"], found["article"], attributes)
    dropped = _boilerplate(main, found, attributes)
    main_anchors = _anchors_in(main, found["a"], dropped)
    _drop_all(dropped)
    # Blocks read as line breaks: the text is the one marking main's blocks (``_mark_blocks``) gives,
    # mostly read without marking the tree (``_block_text``). Then the only other reader of the marks,
    # the text of a link in main, gets those of its own blocks below.
    raw = _block_text(main)
    marked = raw is None  # (the tree is marked: link texts read it as it is)
    main_text = _collapse_lines(_marked_text(main) if raw is None else raw)
    if not main_text and main is not root:
        # An empty <main> placeholder (client-side rendering): fall back to the whole body.
        body = root.find("body")
        if body is not None and body is not main:
            if not marked:  # the body's pass reads main's blocks marked, their tails included
                _mark_blocks(main)
            doomed = _boilerplate(body, found, attributes)
            main_anchors = _anchors_in(body, found["a"], dropped + doomed)
            _drop_all(doomed)
            main_text = _collapse_lines(_marked_text(body))
            marked = True

    # Plain dicts, validated in one pass by PageData: about twice as fast as a Link() per link.
    links: dict[str, dict[str, object]] = {}
    for anchor in found["a"]:
        raw_href = anchor.get("href")
        if raw_href is None:
            continue
        href = resolve(raw_href)
        if href is None:
            continue
        in_main = anchor in main_anchors
        known = links.get(href)
        if known is not None:
            if in_main:
                known["in_main"] = True
            continue
        if len(links) >= _LINK_CAP:
            continue
        if in_main and not marked and _has_block(anchor):
            _mark_blocks(anchor)  # the line breaks its blocks would have had (see above)
        host = _host_cached(href)
        links[href] = {
            "href": href,
            "text": _text_of(anchor),
            "rel": " ".join((anchor.get("rel") or "").lower().split()),
            "internal": host == page_host or host in site_hosts,
            "in_main": in_main,
        }

    # main_text is collapsed: its words are separated by exactly one space or line break.
    flat = main_text.replace("\n", " ")
    return PageData(
        title=title,
        meta_description=description,
        meta_robots=", ".join(robots) if robots else None,
        canonical=canonical,
        hreflang=hreflang,
        headings=headings,
        links=list(links.values()),  # validated into Link here
        images=images,
        word_count=flat.count(" ") + 1 if flat else 0,
        text_hash=hashlib.sha256(flat.encode("utf-8", "replace")).hexdigest(),
        main_text=main_text,
        dates=date_phrases(main_text),
        jsonld_types=jsonld_types,
        lang=lang.strip() if lang and lang.strip() else None,
    )
