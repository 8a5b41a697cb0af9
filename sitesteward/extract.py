"""Page extraction on lxml (placeholder signature; the extraction helper owns this module)."""

from __future__ import annotations

from sitesteward.models import PageData


def extract_page(html: str, url: str, *, site_hosts: frozenset[str] = frozenset()) -> PageData:
    """Extract title, meta, canonical, headings, links, images, main text and dates from one document.

    Args:
        html: The decoded document.
        url: The document's final URL (base for relative links unless ``<base href>`` says otherwise).
        site_hosts: Hosts that count as internal for ``Link.internal``.

    Returns:
        The page's data; malformed HTML yields what could be read, never an exception.
    """
    raise NotImplementedError
