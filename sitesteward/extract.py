"""Page extraction on lxml: the crawler's per-page hot path.

One parse with libxml2's forgiving HTML parser, a handful of XPath queries evaluated in C, and a cheap
boilerplate-stripping pass for the main text. BeautifulSoup is banned here (26x slower on a real site).

Main content: the first ``<main>``, else ``[role=main]``, else a lone ``<article>``, else ``<body>``.
Inside it we drop script/style/noscript/template/svg/nav/aside/form (and a few more non-text elements),
``header``/``footer`` unless they sit inside an ``article`` or ``main`` (an article's header holds its
title and "Last updated" line), ARIA landmarks navigation/banner/contentinfo/complementary/search,
hidden elements (``hidden``, ``aria-hidden="true"``, inline ``display:none``/``visibility:hidden``) and
elements whose id or class names boilerplate (sidebar, menu, cookie, breadcrumb, toc, share...).
Comments and processing instructions are removed by the parser, so they never count as text.
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
    # the crawler's byte cap bounds the memory this allows.
    return etree.HTMLParser(
        encoding="utf-8",
        remove_comments=True,
        remove_pis=True,
        no_network=True,
        huge_tree=True,
        recover=True,
    )


def _collapse(text: str | None) -> str:
    return " ".join(text.split()) if text else ""


def _text_of(element: Any) -> str:
    text = _collapse("".join(element.itertext()))
    if not text:  # an image-only link or heading speaks through its alt text
        text = _collapse(" ".join(img.get("alt") or "" for img in element.iter("img")))
    return text[:_TEXT_CAP]


def _is_boilerplate(value: str, cache: dict[str, bool]) -> bool:
    verdict = cache.get(value)
    if verdict is None:
        verdict = any(_BOILERPLATE_TOKEN.match(token) for token in value.split())
        cache[value] = verdict
    return verdict


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


def _main_root(root: Any) -> Any:
    body = root.find("body")
    for path in ("//main", "//*[@role='main']"):
        found = root.xpath(path)
        if found:
            return found[0]
    articles = root.xpath("//article[not(ancestor::article)]")
    if len(articles) == 1:
        return articles[0]
    return body if body is not None else root


def _is_hidden(element: Any) -> bool:
    if element.get("hidden") is not None or element.get("aria-hidden") == "true":
        return True
    role = element.get("role")
    if role and role.strip().lower() in _DROP_ROLES:
        return True
    style = element.get("style")
    return bool(style and _HIDDEN_STYLE.search(style))


def _is_boilerplate_box(element: Any, cache: dict[str, bool]) -> bool:
    return _is_boilerplate(element.get("class") or "", cache) or _is_boilerplate(
        element.get("id") or "", cache
    )


#: Where a boilerplate class or id is looked for: containers, not inline text. Real documentation has
#: tens of thousands of ``<span class="pre">`` per page; a sidebar or a cookie banner is a box.
_BOX_TAGS = (*_BLOCK_TAGS, "header", "footer")
#: Elements that may hide themselves (any tag), found by libxml2 rather than by a Python loop.
_HIDING = etree.XPath(".//*[@hidden or @aria-hidden or @role or @style]")


def _strip_boilerplate(main: Any) -> None:
    doomed = list(main.iter(*_DROP_TAGS))
    doomed.extend(
        element
        for element in main.iter(*_LANDMARK_TAGS)
        if next(element.iterancestors("article", "main"), None) is None
    )
    doomed.extend(element for element in _HIDING(main) if _is_hidden(element))
    cache: dict[str, bool] = {}
    doomed.extend(
        element
        for element in main.iter(*_BOX_TAGS)
        if element is not main and _is_boilerplate_box(element, cache)
    )
    for element in doomed:
        _drop(element)


def _main_text(main: Any) -> str:
    # Blocks become line breaks so "<p>a</p><p>b</p>" reads "a\nb", not "ab".
    for element in main.iter(*_BLOCK_TAGS):
        element.tail = "\n" + element.tail if element.tail else "\n"
        if element.tag != "br":
            element.text = "\n" + element.text if element.text else "\n"
    raw = etree.tostring(main, method="text", encoding=str, with_tail=False)
    lines = (_collapse(line) for line in raw.splitlines())
    return "\n".join(line for line in lines if line)


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


def _read_jsonld(root: Any) -> list[str]:
    types: list[str] = []
    for script in root.iter("script"):
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
    ``os.html#os.getcwd`` and ``os.html#os.walk`` are one cache entry.
    """

    def __init__(self, base: str, query_handling: QueryHandling) -> None:
        self.base = base.split("#", 1)[0]
        parts = base.split("/", 3)
        self.origin = "/".join(parts[:3]) + "/" if len(parts) >= 3 else base
        self.directory = _directory_of(base)
        self.query_handling = query_handling

    def __call__(self, href: str | None) -> str | None:
        if not href:
            return None
        href = href.strip()
        if len(href) > 4096:  # no real link is this long; do not cache or parse it
            return None
        href = href.split("#", 1)[0]
        if not href:  # "#section": this very page
            return None
        if (href.startswith("/") and not href.startswith("//")) or _ABSOLUTE.match(href):
            return _resolve_cached(href, self.origin, self.query_handling)
        if href.startswith("?"):
            return _resolve_cached(href, self.base, self.query_handling)
        return _resolve_cached(href, self.directory, self.query_handling)


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
    try:
        root = etree.fromstring(html.encode("utf-8", "replace"), _parser())
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
    base = url
    for element in root.iter("base"):
        resolved = absolutize(element.get("href") or "", url)
        if resolved:
            base = resolved
            break
    resolve = _Resolver(base, query_handling)

    title = None
    for element in root.xpath("//title[not(ancestor::svg)]"):
        title = _collapse("".join(element.itertext()))
        break

    description: str | None = None
    robots: list[str] = []
    for meta in root.iter("meta"):
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
    for element in root.iter("link"):
        rel = (element.get("rel") or "").lower().split()
        if "canonical" in rel and canonical is None:
            canonical = resolve(element.get("href"))
        elif "alternate" in rel and element.get("hreflang"):
            target = resolve(element.get("href"))
            language = (element.get("hreflang") or "").strip().lower()
            if target and language and language not in hreflang:
                hreflang[language] = target

    headings: dict[str, list[str]] = {}
    for element in root.iter(*_HEADINGS):
        text = _text_of(element)
        if text:
            headings.setdefault(element.tag, []).append(text)

    anchors = root.xpath("//a[@href] | //area[@href]")
    images: list[dict[str, str | None]] = []
    for element in root.iter("img"):
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

    jsonld_types = _read_jsonld(root)
    lang = root.get("lang") or root.get("{http://www.w3.org/XML/1998/namespace}lang")

    main = _main_root(root)
    _strip_boilerplate(main)
    main_anchors = set(main.iter("a", "area"))
    main_text = _main_text(main)
    if not main_text and main is not root:
        # An empty <main> placeholder (client-side rendering): fall back to the whole body.
        body = root.find("body")
        if body is not None and body is not main:
            _strip_boilerplate(body)
            main_anchors = set(body.iter("a", "area"))
            main_text = _main_text(body)

    # Plain dicts, validated in one pass by PageData: about twice as fast as a Link() per link.
    links: dict[str, dict[str, object]] = {}
    for anchor in anchors:
        href = resolve(anchor.get("href"))
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
        host = _host_cached(href)
        links[href] = {
            "href": href,
            "text": _text_of(anchor),
            "rel": " ".join((anchor.get("rel") or "").lower().split()),
            "internal": host == page_host or host in site_hosts,
            "in_main": in_main,
        }

    words = main_text.split()
    flat = " ".join(words)
    return PageData(
        title=title,
        meta_description=description,
        meta_robots=", ".join(robots) if robots else None,
        canonical=canonical,
        hreflang=hreflang,
        headings=headings,
        links=list(links.values()),  # validated into Link here
        images=images,
        word_count=len(words),
        text_hash=hashlib.sha256(flat.encode("utf-8", "replace")).hexdigest(),
        main_text=main_text,
        dates=date_phrases(main_text),
        jsonld_types=jsonld_types,
        lang=lang.strip() if lang and lang.strip() else None,
    )
