"""Render a Markdown :class:`~sitesteward.content.Document` as the demo site's HTML page.

The layout is deliberately plain so that audits see exactly what the Markdown says:

* the site name sits in a ``<p>`` in the header, never in a heading, so a page's H1 count is the
  number of ``#`` headings its author wrote;
* raw HTML in Markdown is disabled (content is data, never markup or script);
* ``![](src)`` (an image with empty alt text) renders *without* an ``alt`` attribute: in this
  content directory an empty alt means the author forgot it;
* ``{{sources}}`` in the body is replaced by the base URL of the sources site (another server, so
  another host), which lets the bundled content cite "external" pages on a port chosen at run time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from html import escape
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

from sitesteward.content import Document

#: Written in Markdown wherever the sources site's base URL belongs (``{{sources}}/reports/x``).
SOURCES_PLACEHOLDER = "{{sources}}"
#: What the placeholder becomes when no sources server is running (a reserved, unresolvable host).
UNRESOLVED_SOURCES_URL = "http://sources.invalid"

#: Header navigation: (label, path).
NAVIGATION: tuple[tuple[str, str], ...] = (
    ("Home", "/"),
    ("Guides", "/guides/"),
    ("Blog", "/blog/"),
    ("Pricing", "/pricing/"),
    ("About", "/about/"),
)
#: Footer links: (label, path).
FOOTER_LINKS: tuple[tuple[str, str], ...] = (
    ("Support", "/support/"),
    ("Contact", "/contact/"),
    ("Careers", "/careers/"),
    ("Security", "/security/"),
    ("Changelog", "/changelog/"),
)

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:46rem;margin:0 auto;padding:0 1rem;"
    "line-height:1.55;color:#1d2330}header,footer{display:flex;flex-wrap:wrap;gap:1rem;"
    "align-items:baseline;padding:1rem 0;border-bottom:1px solid #dde}footer{border-top:1px solid #dde;"
    "border-bottom:0;margin-top:3rem;font-size:.9rem}.site-name{font-weight:700;margin:0}"
    "nav a,footer a{margin-right:.8rem}img{max-width:100%}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccd;padding:.3rem .6rem}.byline{color:#667}"
)


def _render_image(
    renderer: RendererHTML, tokens: Sequence[Token], index: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[index]
    alt = renderer.renderInlineAsText(token.children or [], options, env)
    attrs = {key: value for key, value in token.attrs.items() if key != "alt"}
    if alt:
        attrs = {"src": attrs.pop("src", ""), "alt": alt, **attrs}
    rendered = "".join(f' {escape(str(key))}="{escape(str(value))}"' for key, value in attrs.items())
    return f"<img{rendered}>"


def _markdown() -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": False}).enable("table")
    parser.add_render_rule("image", _render_image)
    return parser


_MARKDOWN = _markdown()


def front_matter_text(value: Any) -> str | None:
    """A front-matter scalar as text (YAML turns ``2024-03-01`` into a date); None when empty."""
    if value is None:
        return None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    text = str(value).strip()
    return text or None


def substitute_sources(text: str, sources_url: str | None) -> str:
    """Replace ``{{sources}}`` with the sources site's base URL (no trailing slash)."""
    base = (sources_url or UNRESOLVED_SOURCES_URL).rstrip("/")
    return text.replace(SOURCES_PLACEHOLDER, base)


def render_markdown(body: str, *, sources_url: str | None) -> str:
    """The HTML of a Markdown body (raw HTML disabled, ``{{sources}}`` substituted)."""
    html: str = _MARKDOWN.render(substitute_sources(body, sources_url))
    return html


def _links(items: Sequence[tuple[str, str]]) -> str:
    return "".join(f'<a href="{escape(path)}">{escape(label)}</a>' for label, path in items)


def render_page(
    document: Document,
    url_path: str,
    *,
    base_url: str,
    site_name: str,
    sources_url: str | None,
) -> str:
    """Render one page of the demo site as an HTML5 document.

    Args:
        document: The parsed Markdown file (front matter ``title``, ``description``, ``date``,
            ``noindex`` are used here).
        url_path: The page's canonical path, e.g. ``/guides/backups/``.
        base_url: The site's origin, e.g. ``http://127.0.0.1:8000``; the canonical link is
            ``base_url + url_path``.
        site_name: Shown in the header (not as a heading).
        sources_url: The sources site's base URL substituted for ``{{sources}}``; None leaves links
            pointing at an unresolvable host.

    Returns:
        The complete HTML text.
    """
    meta = document.meta
    title = front_matter_text(meta.get("title")) or site_name
    description = front_matter_text(meta.get("description"))
    published = front_matter_text(meta.get("date"))
    head = [
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
    ]
    if description is not None:
        head.append(f'<meta name="description" content="{escape(description)}">')
    if meta.get("noindex") is True:
        head.append('<meta name="robots" content="noindex">')
    head.append(f'<link rel="canonical" href="{escape(base_url.rstrip("/") + url_path)}">')
    head.append(f"<style>{_STYLE}</style>")
    byline = ""
    if published is not None and url_path.startswith("/blog/") and url_path != "/blog/":
        stamp = escape(published)
        byline = f'<p class="byline">Published <time datetime="{stamp}">{stamp}</time></p>\n'
    body = render_markdown(document.body, sources_url=sources_url)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n'
        + "\n".join(head)
        + "\n</head>\n<body>\n"
        + f'<header><p class="site-name"><a href="/">{escape(site_name)}</a></p>'
        + f'<nav aria-label="Main">{_links(NAVIGATION)}</nav></header>\n'
        + f"<main>\n{byline}{body}</main>\n"
        + f"<footer>{_links(FOOTER_LINKS)}<p>&copy; {escape(site_name)}</p></footer>\n"
        + "</body>\n</html>\n"
    )


def render_not_found(url_path: str, *, site_name: str) -> str:
    """The 404 page (noindex, no canonical)."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>Page not found · {escape(site_name)}</title>\n"
        '<meta name="robots" content="noindex">\n'
        f"<style>{_STYLE}</style>\n</head>\n<body>\n"
        f'<header><p class="site-name"><a href="/">{escape(site_name)}</a></p>'
        f'<nav aria-label="Main">{_links(NAVIGATION)}</nav></header>\n'
        f"<main>\n<h1>Page not found</h1>\n<p>Nothing lives at <code>{escape(url_path)}</code>.</p>\n"
        '<p><a href="/">Back to the home page</a></p>\n</main>\n'
        "</body>\n</html>\n"
    )
