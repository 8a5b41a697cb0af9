"""Audit checks: per page (pure, fast, batched by a task) and site-wide (duplicates, links, sitemaps).

Every finding code, its severity and a one-line description live in :data:`FINDING_CODES`, the single
table the README renders. Codes are stable: rename never, add freely.

Conventions:
- ``Finding.url`` is the page the finding is about; for link findings it is the page *holding* the link
  and ``target`` the linked URL (one finding per page, target and code). Sitemap findings name the
  sitemap file in ``url`` and the listed URL in ``target``.
- Content checks (title, description, headings, thin content, alt text, stale dates) run only on pages
  answered 2xx (or 304 with a stored snapshot) whose HTML was parsed. Title and description checks also
  run on noindex pages (their titles still show in browsers and shares); ``thin_content`` does not, since
  a noindex page is usually a utility page (search, login, thanks) that is short on purpose.
- Redirect problems of a crawled URL (``redirect_chain``, ``redirect_loop``) name that URL itself;
  for checked external links they name each page holding the link.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from functools import lru_cache

from sitesteward.dates import stale_phrases
from sitesteward.errors import BLOCKED_HTTP_CODES, InvalidUrl
from sitesteward.facts import CrawlView, PageView
from sitesteward.models import (
    AuditThresholds,
    FetchError,
    Finding,
    LinkCheck,
    LinkOutcome,
    PageChange,
    QueryHandling,
    RedirectHop,
    Severity,
)
from sitesteward.urls import normalize_url

E, W, N = Severity.error, Severity.warning, Severity.notice

#: Every finding code: (severity, one-line description). The README renders this table.
FINDING_CODES: dict[str, tuple[Severity, str]] = {
    # page content
    "missing_title": (E, "The page has no <title> (or an empty one)."),
    "title_length": (W, "The title is shorter than title_min or longer than title_max characters."),
    "missing_meta_description": (W, "The page has no meta description."),
    "meta_description_length": (N, "The meta description is outside description_min..description_max."),
    "missing_h1": (W, "The page has no non-empty <h1>."),
    "multiple_h1": (N, "The page has more than one <h1>."),
    "thin_content": (W, "The main text has fewer than thin_words words (indexable pages only)."),
    "missing_alt": (W, 'Images without an alt attribute (alt="" marks a decorative image and is fine).'),
    "stale_date": (
        W,
        "The main text dates itself ('as of 2019', 'in 2019', 'updated 2019-03-03') beyond stale_years.",
    ),
    # fetching
    "server_error": (E, "The URL answered 5xx."),
    "client_error": (W, "The URL answered 4xx (links to it are reported as broken_link or blocked_link)."),
    "timeout": (W, "The fetch timed out."),
    "too_large": (W, "The response exceeded the byte cap (the page was truncated or skipped)."),
    "not_html": (N, "The URL is not an HTML document (not audited further)."),
    "connect_error": (E, "DNS failure, refused or reset connection."),
    "robots_disallowed": (N, "robots.txt forbids crawling the URL."),
    "address_refused": (N, "The URL resolves to a private or loopback address that is not allowed."),
    "invalid_url": (W, "The URL could not be parsed or is not http(s)."),
    "fetch_error": (W, "The fetch failed for another reason (see detail)."),
    # redirects
    "redirect_chain": (W, "The URL redirects through more than redirect_chain_hops hops."),
    "redirect_loop": (E, "The URL redirects in a loop."),
    # links
    "broken_link": (E, "A link points to a page answering 4xx/5xx (or a checked link that is broken)."),
    "blocked_link": (N, "A link's target refused the checker (401/403/429/999): probably fine for people."),
    "redirected_link": (N, "A link points to a URL that redirects; link to the final URL (detail) instead."),
    "link_error": (N, "A link's target could not be checked (timeout, DNS, TLS...)."),
    # duplicates and canonicals
    "duplicate_title": (W, "Several indexable pages share this title."),
    "duplicate_meta_description": (N, "Several indexable pages share this meta description."),
    "canonical_broken": (E, "The canonical URL answers 4xx/5xx, redirects or is itself noindex."),
    "canonical_mismatch": (N, "The page declares a different URL as canonical (detail names it)."),
    # sitemaps
    "noindex_in_sitemap": (E, "A sitemap lists a page that says noindex (meta robots or X-Robots-Tag)."),
    "sitemap_url_error": (
        E,
        "A sitemap lists a URL that answers 4xx/5xx, redirects, fails or is robots-blocked.",
    ),
    "sitemap_error": (W, "A sitemap file could not be read or parsed (detail says why)."),
    "orphan_page": (W, "A page is in a sitemap but no crawled page links to it."),
}

#: Codes that mark a page ``refresh_needed``: what a content edit (replace_text, set_title,
#: set_description, add_link) can fix on the page itself. Not included: fetch/server problems (operations),
#: redirects and canonicals (configuration), thin_content (needs new writing, not a refresh), missing_alt
#: (needs the image), headings (templates), orphan_page (fixed on *other* pages), blocked_link (bot walls).
REFRESH_CODES: frozenset[str] = frozenset(
    {
        "stale_date",
        "broken_link",
        "redirected_link",
        "missing_title",
        "title_length",
        "duplicate_title",
        "missing_meta_description",
        "meta_description_length",
        "duplicate_meta_description",
    }
)

_SEVERITY_WEIGHT = {Severity.error: 100, Severity.warning: 10, Severity.notice: 1}

_FETCH_ERROR_CODES: dict[FetchError, str] = {
    FetchError.timeout: "timeout",
    FetchError.too_large: "too_large",
    FetchError.not_html: "not_html",
    FetchError.connect_error: "connect_error",
    FetchError.robots_disallowed: "robots_disallowed",
    FetchError.address_refused: "address_refused",
    FetchError.invalid_url: "invalid_url",
    # redirect_loop and too_many_redirects are reported by audit_site (redirect_loop / redirect_chain);
    # http_error by status (server_error / client_error).
}


_FINDING_FIELDS = set(Finding.model_fields)


def finding(code: str, url: str, detail: str = "", target: str | None = None) -> Finding:
    """Build a finding with the severity :data:`FINDING_CODES` gives ``code``.

    Raises:
        KeyError: ``code`` is not a documented code.
    """
    # model_construct with one shared fields-set: the arguments are typed already, and a validated
    # model's own fields-set takes 728 bytes, more than the rest of a finding (a big site has millions).
    return Finding.model_construct(
        _fields_set=_FINDING_FIELDS,
        code=code,
        severity=FINDING_CODES[code][0],
        url=url,
        target=target,
        detail=detail,
    )


# ------------------------------------------------------------------------------------------- helpers


@lru_cache(maxsize=8_192)
def _key(url: str) -> str:
    """The comparison form of a URL (normalised, tracking parameters dropped).

    Cached: a site-wide audit asks for the same few thousand URLs hundreds of thousands of times.
    """
    try:
        return normalize_url(url, QueryHandling.strip_tracking)
    except InvalidUrl:
        return url.strip()


def _robots_tokens(value: str | None) -> set[str]:
    if not value:
        return set()
    tokens: set[str] = set()
    for part in value.lower().replace(";", ",").split(","):
        token = part.strip()
        if ":" in token:  # "googlebot: noindex"
            token = token.rsplit(":", 1)[1].strip()
        tokens.add(token)
    return tokens


def is_noindex(page: PageView) -> bool:
    """True when meta robots/googlebot or the X-Robots-Tag header says noindex (or none)."""
    data_robots = page.data.meta_robots if page.data else None
    tokens = _robots_tokens(data_robots) | _robots_tokens(page.headers.get("x-robots-tag"))
    return bool(tokens & {"noindex", "none"})


def _is_ok_html(page: PageView) -> bool:
    """Answered 2xx (or 304 from the snapshot) with parsed HTML and no fetch error, at its own URL.

    A URL that redirected is audited as a redirect only: its content belongs to the final URL, which
    the crawl fetches as a page of its own (otherwise every alias would be a duplicate of its target).
    """
    if page.data is None or page.error is not None or page.final_url != page.url:
        return False
    return page.not_modified or (page.status is not None and 200 <= page.status < 300)


def _is_indexable(page: PageView) -> bool:
    return _is_ok_html(page) and not is_noindex(page)


def _canonical_elsewhere(page: PageView) -> str | None:
    if page.data is None or not page.data.canonical:
        return None
    canonical = _key(page.data.canonical)
    return None if canonical in (_key(page.final_url), _key(page.url)) else page.data.canonical


def _has_loop(chain: Sequence[RedirectHop], final_url: str | None) -> bool:
    seen: set[str] = set()
    for hop in chain:
        key = _key(hop.url)
        if key in seen:
            return True
        seen.add(key)
    return final_url is not None and bool(chain) and _key(final_url) in seen


def _chain_text(chain: Sequence[RedirectHop], final_url: str | None) -> str:
    steps = [f"{hop.url} ({hop.status})" for hop in chain]
    if final_url:
        steps.append(final_url)
    return " → ".join(steps)


def _dedupe(findings: Iterable[Finding]) -> list[Finding]:
    seen: set[tuple[str, str, str | None]] = set()
    unique: list[Finding] = []
    for item in findings:
        key = (item.code, item.url, item.target)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Errors first, then by code, page and target: a stable order for reports and diffs."""
    order = {Severity.error: 0, Severity.warning: 1, Severity.notice: 2}
    return sorted(findings, key=lambda f: (order[f.severity], f.code, f.url, f.target or "", f.detail))


# ------------------------------------------------------------------------------------------- per page


def audit_page(page: PageView, thresholds: AuditThresholds, *, today: date) -> list[Finding]:
    """Run the per-page checks on one crawled page (pure: batch it freely).

    Args:
        page: The crawled page.
        thresholds: Limits of the length, thin-content and staleness checks.
        today: The reference date of ``stale_date``.

    Returns:
        The page's findings (fetch problems, or content problems of a parsed 2xx HTML page).
    """
    url = page.url
    found: list[Finding] = []
    if page.status is not None and page.status >= 500:
        found.append(finding("server_error", url, f"answered {page.status}"))
    elif page.status is not None and 400 <= page.status < 500:
        found.append(finding("client_error", url, f"answered {page.status}"))
    if page.error is not None:
        code = _FETCH_ERROR_CODES.get(page.error)
        if code is not None:
            found.append(finding(code, url, page.error_detail or ""))
        elif page.error == FetchError.http_error and page.status is None:
            found.append(finding("fetch_error", url, page.error_detail or "HTTP error"))
    if page.truncated and page.error != FetchError.too_large:
        found.append(finding("too_large", url, f"truncated at {page.bytes} bytes"))
    if not _is_ok_html(page):
        return found
    data = page.data
    assert data is not None  # _is_ok_html
    noindex = is_noindex(page)

    title = (data.title or "").strip()
    if not title:
        found.append(finding("missing_title", url))
    elif not thresholds.title_min <= len(title) <= thresholds.title_max:
        found.append(
            finding(
                "title_length",
                url,
                f"{len(title)} characters (want {thresholds.title_min}-{thresholds.title_max}): {title!r}",
            )
        )
    description = (data.meta_description or "").strip()
    if not description:
        found.append(finding("missing_meta_description", url))
    elif not thresholds.description_min <= len(description) <= thresholds.description_max:
        found.append(
            finding(
                "meta_description_length",
                url,
                f"{len(description)} characters "
                f"(want {thresholds.description_min}-{thresholds.description_max})",
            )
        )
    h1s = [text for text in data.headings.get("h1", []) if text.strip()]
    if not h1s:
        found.append(finding("missing_h1", url))
    elif len(h1s) > 1:
        found.append(finding("multiple_h1", url, f"{len(h1s)} h1 elements: " + " | ".join(h1s[:5])))
    if not noindex and data.word_count < thresholds.thin_words:
        found.append(finding("thin_content", url, f"{data.word_count} words (want {thresholds.thin_words}+)"))
    no_alt = [image.src for image in data.images if image.alt is None]
    if no_alt:
        shown = ", ".join(no_alt[:5]) + (f" and {len(no_alt) - 5} more" if len(no_alt) > 5 else "")
        found.append(finding("missing_alt", url, f"{len(no_alt)} image(s) without alt: {shown}"))
    stale = stale_phrases(data.dates, today, thresholds.stale_years)
    if stale:
        found.append(
            finding("stale_date", url, f"older than {thresholds.stale_years} years: " + "; ".join(stale))
        )
    return found


# ------------------------------------------------------------------------------------------- site-wide


class _Site:
    """Look-ups over one crawl: pages and link checks by comparison key, sitemap membership."""

    def __init__(self, result: CrawlView) -> None:
        self.pages: dict[str, PageView] = {}
        for page in result.pages:
            self.pages.setdefault(_key(page.url), page)
        for page in result.pages:  # a link to the final URL of a redirect reaches the same document
            self.pages.setdefault(_key(page.final_url), page)
        self.checks: dict[str, LinkCheck] = {}
        for check in result.link_checks:
            self.checks.setdefault(_key(check.url), check)
        self.sitemap_of: dict[str, str] = {}
        for entry in result.sitemap_entries:
            self.sitemap_of.setdefault(_key(entry.url), entry.sitemap)
        self.robots_disallowed = {_key(url) for url in result.robots_disallowed}

    def in_sitemap(self, page: PageView) -> bool:
        return page.in_sitemap or _key(page.url) in self.sitemap_of

    def page_redirects(self, page: PageView, key: str) -> bool:
        """The page was reached through redirects and ``key`` names the redirecting URL."""
        return bool(page.redirect_chain) and key != _key(page.final_url)


def _link_findings(site: _Site, holder: PageView, thresholds: AuditThresholds) -> list[Finding]:
    assert holder.data is not None
    found: list[Finding] = []
    for link in holder.data.links:
        key = _key(link.href)
        target_page = site.pages.get(key)
        if target_page is not None and key != _key(holder.url):
            found.extend(_internal_link_findings(site, holder, link.href, key, target_page))
            continue
        check = site.checks.get(key)
        if check is not None:
            found.extend(_checked_link_findings(holder, link.href, check, thresholds))
    return found


def _internal_link_findings(
    site: _Site, holder: PageView, href: str, key: str, target: PageView
) -> list[Finding]:
    found: list[Finding] = []
    url = holder.url
    if site.page_redirects(target, key):
        found.append(finding("redirected_link", url, f"redirects to {target.final_url}", href))
    status = target.status
    if status is not None and status >= 400:
        code = "blocked_link" if status in BLOCKED_HTTP_CODES else "broken_link"
        found.append(finding(code, url, f"target answered {status}", href))
    return found


def _checked_link_findings(
    holder: PageView, href: str, check: LinkCheck, thresholds: AuditThresholds
) -> list[Finding]:
    url = holder.url
    status = f" ({check.status})" if check.status is not None else ""
    detail = check.detail or ""
    found: list[Finding] = []
    if check.outcome == LinkOutcome.broken:
        found.append(finding("broken_link", url, f"target answered{status} {detail}".strip(), href))
    elif check.outcome == LinkOutcome.blocked:
        found.append(
            finding("blocked_link", url, f"target refused the checker{status} {detail}".strip(), href)
        )
    elif check.outcome == LinkOutcome.error:
        found.append(finding("link_error", url, detail or "could not be checked", href))
    if check.outcome == LinkOutcome.redirected or (check.redirect_chain and check.final_url):
        final = check.final_url or (check.redirect_chain[-1].location if check.redirect_chain else None)
        found.append(finding("redirected_link", url, f"redirects to {final or 'an unknown URL'}", href))
    if _has_loop(check.redirect_chain, check.final_url):
        found.append(finding("redirect_loop", url, _chain_text(check.redirect_chain, None), href))
    elif len(check.redirect_chain) > thresholds.redirect_chain_hops:
        found.append(
            finding(
                "redirect_chain",
                url,
                f"{len(check.redirect_chain)} hops: {_chain_text(check.redirect_chain, check.final_url)}",
                href,
            )
        )
    return found


def _redirect_findings(page: PageView, thresholds: AuditThresholds) -> list[Finding]:
    chain = page.redirect_chain
    if page.error == FetchError.redirect_loop or _has_loop(chain, page.final_url if chain else None):
        return [finding("redirect_loop", page.url, _chain_text(chain, None) or (page.error_detail or ""))]
    if page.error == FetchError.too_many_redirects or len(chain) > thresholds.redirect_chain_hops:
        detail = f"{len(chain)} hops: {_chain_text(chain, page.final_url)}"
        if page.error == FetchError.too_many_redirects:
            detail = "too many redirects; " + detail
        return [finding("redirect_chain", page.url, detail, page.final_url if chain else None)]
    return []


def _duplicate_findings(pages: Sequence[PageView]) -> list[Finding]:
    titles: dict[str, list[PageView]] = defaultdict(list)
    descriptions: dict[str, list[PageView]] = defaultdict(list)
    for page in pages:
        # A page that names another canonical is a declared duplicate, not an accidental one.
        if not _is_indexable(page) or _canonical_elsewhere(page) is not None:
            continue
        assert page.data is not None
        if page.data.title and page.data.title.strip():
            titles[" ".join(page.data.title.split()).casefold()].append(page)
        if page.data.meta_description and page.data.meta_description.strip():
            descriptions[" ".join(page.data.meta_description.split()).casefold()].append(page)
    found: list[Finding] = []
    for code, groups in (("duplicate_title", titles), ("duplicate_meta_description", descriptions)):
        for group in groups.values():
            urls = sorted({page.url for page in group})
            if len(urls) < 2:
                continue
            for url in urls:
                others = [other for other in urls if other != url]
                shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
                found.append(finding(code, url, f"shared with {len(others)} page(s): {shown}"))
    return found


def _canonical_findings(site: _Site, page: PageView) -> list[Finding]:
    if not _is_indexable(page):
        return []
    canonical = _canonical_elsewhere(page)
    if canonical is None:
        return []
    key = _key(canonical)
    target = site.pages.get(key)
    problem: str | None = None
    if target is not None:
        if target.status is not None and target.status >= 400:
            problem = f"canonical {canonical} answers {target.status}"
        elif site.page_redirects(target, key):
            problem = f"canonical {canonical} redirects to {target.final_url}"
        elif target.data is not None and is_noindex(target):
            problem = f"canonical {canonical} is noindex"
        elif target.error is not None:
            problem = f"canonical {canonical} could not be fetched ({target.error.value})"
    else:
        check = site.checks.get(key)
        if check is not None and check.outcome in (LinkOutcome.broken, LinkOutcome.redirected):
            problem = f"canonical {canonical} is {check.outcome.value}" + (
                f" ({check.status})" if check.status else ""
            )
    if problem is not None:
        return [finding("canonical_broken", page.url, problem, canonical)]
    return [finding("canonical_mismatch", page.url, f"canonical is {canonical}", canonical)]


def _sitemap_findings(site: _Site, result: CrawlView) -> list[Finding]:
    found: list[Finding] = []
    for problem in result.sitemap_problems:
        found.append(finding("sitemap_error", problem.sitemap, problem.detail))
    for entry in result.sitemap_entries:
        key = _key(entry.url)
        page = site.pages.get(key)
        detail: str | None = None
        if key in site.robots_disallowed:
            detail = "blocked by robots.txt"
        elif page is not None:
            if page.status is not None and page.status >= 400:
                detail = f"answers {page.status}"
            elif site.page_redirects(page, key):
                detail = f"redirects to {page.final_url}"
            elif page.error == FetchError.robots_disallowed:
                detail = "blocked by robots.txt"
            elif page.error is not None:
                detail = f"fetch failed: {page.error.value}"
        else:
            check = site.checks.get(key)
            if check is not None and check.outcome != LinkOutcome.ok:
                detail = f"{check.outcome.value}" + (f" ({check.status})" if check.status else "")
        if detail is not None:
            found.append(finding("sitemap_url_error", entry.sitemap, detail, entry.url))
    return found


def audit_site(result: CrawlView, page_findings: list[Finding], thresholds: AuditThresholds) -> list[Finding]:
    """Run the site-wide checks and merge them with the per-page findings.

    Args:
        result: The crawl.
        page_findings: What :func:`audit_page` returned for the crawl's pages.
        thresholds: Audit limits (``redirect_chain_hops``).

    Returns:
        Every finding of the audit: ``page_findings`` plus the site-wide ones, one per (code, url,
        target), sorted by :func:`sort_findings`.
    """
    site = _Site(result)
    found: list[Finding] = list(page_findings)
    linked: set[str] = set()
    for page in result.pages:
        found.extend(_redirect_findings(page, thresholds))
        if _is_ok_html(page):
            found.extend(_link_findings(site, page, thresholds))
            found.extend(_canonical_findings(site, page))
            assert page.data is not None
            own = {_key(page.url), _key(page.final_url)}
            for link in page.data.links:
                key = _key(link.href)
                if key in own:
                    continue
                linked.add(key)
                target = site.pages.get(key)
                if target is not None:
                    linked.add(_key(target.final_url))
        if site.in_sitemap(page) and page.data is not None and is_noindex(page):
            sitemap = site.sitemap_of.get(_key(page.url), "a sitemap")
            found.append(finding("noindex_in_sitemap", page.url, f"listed in {sitemap}"))
    found.extend(_duplicate_findings(result.pages))
    found.extend(_sitemap_findings(site, result))
    for page in result.pages:
        if (
            site.in_sitemap(page)
            and _is_ok_html(page)
            and _key(page.url) not in linked
            and _key(page.final_url) not in linked
        ):
            found.append(finding("orphan_page", page.url, "in a sitemap, linked from no crawled page"))
    return sort_findings(_dedupe(found))


# ------------------------------------------------------------------------------------------- changes


def diff_pages(previous: dict[str, str], pages: Sequence[PageView]) -> dict[str, PageChange]:
    """Compare this crawl's main-text hashes with the last crawl's.

    A page is ``new`` when the last crawl did not know it, ``changed`` / ``unchanged`` by its main-text
    hash (markup-only changes do not count; a 304 ``not_modified`` page is unchanged), ``removed`` when
    the last crawl knew it and this one got 404/410 for it or did not reach it. Pages that failed for
    another reason (timeouts, 5xx) are left out: their state is unknown.

    Args:
        previous: URL → ``PageData.text_hash`` of the last crawl (see :func:`text_hashes`).
        pages: This crawl's pages.

    Returns:
        URL → change, for this crawl's pages and the removed ones.
    """
    changes: dict[str, PageChange] = {}
    for page in pages:
        url = page.url
        if page.status in (404, 410):
            if url in previous:
                changes[url] = PageChange.removed
            continue
        if page.not_modified:
            changes[url] = PageChange.unchanged if url in previous else PageChange.new
            continue
        if not _is_ok_html(page):
            continue
        assert page.data is not None
        if url not in previous:
            changes[url] = PageChange.new
        elif previous[url] == page.data.text_hash:
            changes[url] = PageChange.unchanged
        else:
            changes[url] = PageChange.changed
    crawled = {page.url for page in pages}
    for url in previous:
        if url not in crawled:
            changes[url] = PageChange.removed
    return changes


def text_hashes(pages: Sequence[PageView]) -> dict[str, str]:
    """URL → main-text hash of the parsed pages: the ``previous`` of the next :func:`diff_pages`."""
    return {page.url: page.data.text_hash for page in pages if _is_ok_html(page) and page.data is not None}


# ------------------------------------------------------------------------------------------- refresh


def pages_needing_refresh(findings: Iterable[Finding]) -> list[str]:
    """The pages an audit marks ``refresh_needed``, most urgent first.

    Policy: a page needs a refresh when it has a finding in :data:`REFRESH_CODES`, i.e. a problem a
    content edit on that page can fix (stale dates, broken or redirected links, title and description
    problems). Urgency is the sum of those findings' severity weights (error 100, warning 10,
    notice 1); ties sort by URL, so a run's budget always takes the same pages.

    Args:
        findings: An audit's findings.

    Returns:
        PageView URLs, most urgent first.
    """
    score: dict[str, int] = defaultdict(int)
    for item in findings:
        if item.code in REFRESH_CODES:
            score[item.url] += _SEVERITY_WEIGHT[item.severity]
    return sorted(score, key=lambda url: (-score[url], url))
