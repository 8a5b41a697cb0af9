"""audit_page, audit_site, diff_pages and the refresh policy on hand-built pages and crawls."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from sitesteward.audit import (
    FINDING_CODES,
    REFRESH_CODES,
    audit_page,
    audit_site,
    diff_pages,
    finding,
    is_noindex,
    pages_needing_refresh,
    text_hashes,
)
from sitesteward.facts import FactsCollector
from sitesteward.models import (
    AuditThresholds,
    CrawlResult,
    FetchError,
    Finding,
    Image,
    Link,
    LinkCheck,
    LinkOutcome,
    Page,
    PageChange,
    PageData,
    RedirectHop,
    Severity,
    SitemapEntry,
    SitemapProblem,
)

SITE = "https://example.com"
TODAY = date(2025, 6, 1)
T = AuditThresholds()
NOW = datetime(2025, 6, 1, tzinfo=UTC)
GOOD_TITLE = "A perfectly fine page title"
GOOD_DESCRIPTION = "A meta description that is long enough to pass the minimum length check."


def data(**overrides: Any) -> PageData:
    fields: dict[str, Any] = {
        "title": GOOD_TITLE,
        "meta_description": GOOD_DESCRIPTION,
        "headings": {"h1": ["Heading"]},
        "word_count": 500,
        "text_hash": "h",
    }
    fields.update(overrides)
    return PageData(**fields)


def page(path: str, *, links: list[str] | None = None, **overrides: Any) -> Page:
    """A healthy 200 HTML page at SITE + path, linking to ``links`` (paths or absolute URLs)."""
    url = SITE + path
    fields: dict[str, Any] = {"url": url, "final_url": url, "status": 200, "fetched_at": NOW}
    data_overrides = overrides.pop("data", {})
    if links is not None:
        data_overrides["links"] = [
            Link(href=href if href.startswith("http") else SITE + href, internal=not href.startswith("http"))
            for href in links
        ]
    fields["data"] = data(**data_overrides) if data_overrides is not None else None
    fields.update(overrides)
    return Page(**fields)


def crawl(pages: list[Page], **fields: Any) -> CrawlResult:
    return CrawlResult(site=SITE, started=NOW, finished=NOW, pages=pages, **fields)


def site_findings(result: CrawlResult, thresholds: AuditThresholds = T) -> list[Finding]:
    """The audit of ``result``, checked to be the same on its pages and on their compact facts."""
    page_findings = [item for p in result.pages for item in audit_page(p, thresholds, today=TODAY)]
    findings = audit_site(result, page_findings, thresholds)
    facts = FactsCollector().crawl(result)
    fact_findings = [item for p in facts.pages for item in audit_page(p, thresholds, today=TODAY)]
    assert fact_findings == page_findings  # the facts hold everything the per-page checks read
    assert audit_site(facts, fact_findings, thresholds) == findings  # and the site-wide ones
    assert diff_pages({}, facts.pages) == diff_pages({}, result.pages)
    assert text_hashes(facts.pages) == text_hashes(result.pages)
    return findings


def codes(findings: list[Finding]) -> list[str]:
    return sorted(item.code for item in findings)


def only(findings: list[Finding], code: str) -> list[Finding]:
    return [item for item in findings if item.code == code]


# ------------------------------------------------------------------------------------ the code table


def test_every_code_has_severity_and_description() -> None:
    for code, (severity, description) in FINDING_CODES.items():
        assert code.islower() and " " not in code
        assert isinstance(severity, Severity)
        assert description.endswith(".")
    assert set(REFRESH_CODES) <= set(FINDING_CODES)


def test_finding_rejects_unknown_codes() -> None:
    with pytest.raises(KeyError):
        finding("no_such_code", SITE)


# ------------------------------------------------------------------------------------ audit_page


def test_healthy_page_has_no_findings() -> None:
    assert audit_page(page("/"), T, today=TODAY) == []


@pytest.mark.parametrize(
    ("data_overrides", "expected"),
    [
        ({"title": None}, "missing_title"),
        ({"title": "   "}, "missing_title"),
        ({"title": "Short"}, "title_length"),
        ({"title": "x" * 61}, "title_length"),
        ({"meta_description": None}, "missing_meta_description"),
        ({"meta_description": "Too short."}, "meta_description_length"),
        ({"meta_description": "x" * 161}, "meta_description_length"),
        ({"headings": {"h2": ["Only h2"]}}, "missing_h1"),
        ({"headings": {"h1": ["One", "Two"]}}, "multiple_h1"),
        ({"word_count": 199}, "thin_content"),
        ({"images": [Image(src=SITE + "/a.png")]}, "missing_alt"),
        ({"dates": ["as of 2019"]}, "stale_date"),
        ({"dates": ["in 2020"]}, "stale_date"),
        ({"dates": ["updated 2019-03-03"]}, "stale_date"),
    ],
)
def test_content_checks(data_overrides: dict[str, Any], expected: str) -> None:
    findings = audit_page(page("/p", data=data_overrides), T, today=TODAY)
    assert codes(findings) == [expected]
    assert findings[0].url == SITE + "/p"
    assert findings[0].severity == FINDING_CODES[expected][0]


@pytest.mark.parametrize(
    "data_overrides",
    [
        {"title": "x" * 10},  # bounds are inclusive
        {"title": "x" * 60},
        {"meta_description": "x" * 50},
        {"meta_description": "x" * 160},
        {"word_count": 200},
        {"images": [Image(src=SITE + "/spacer.gif", alt="")]},  # decorative image
        {"dates": ["as of 2024", "since 2001", "© 2010", "date 2012-01-01"]},  # fresh or not staleness kinds
        {"headings": {"h1": ["Title"], "h2": ["A", "B"]}},
    ],
)
def test_content_checks_negative(data_overrides: dict[str, Any]) -> None:
    assert audit_page(page("/p", data=data_overrides), T, today=TODAY) == []


def test_details_are_useful() -> None:
    (title,) = audit_page(page("/p", data={"title": "Short"}), T, today=TODAY)
    assert "5 characters (want 10-60)" in title.detail
    images = [Image(src=f"{SITE}/{i}.png") for i in range(7)] + [Image(src=SITE + "/ok.png", alt="ok")]
    (alt,) = audit_page(page("/p", data={"images": images}), T, today=TODAY)
    assert alt.detail.startswith("7 image(s) without alt") and "and 2 more" in alt.detail
    (stale,) = audit_page(page("/p", data={"dates": ["as of 2019", "in 2024"]}), T, today=TODAY)
    assert stale.detail == "older than 2 years: as of 2019"


def test_thresholds_are_honoured() -> None:
    strict = AuditThresholds(thin_words=1000, stale_years=0, title_max=20)
    found = audit_page(page("/p", data={"dates": ["as of 2024"]}), strict, today=TODAY)
    assert codes(found) == ["stale_date", "thin_content", "title_length"]


def test_noindex_page_skips_thin_content_but_not_titles() -> None:
    noindex = page("/search", data={"word_count": 3, "meta_robots": "noindex, follow", "title": None})
    assert codes(audit_page(noindex, T, today=TODAY)) == ["missing_title"]
    header = page("/s2", data={"word_count": 3}, headers={"x-robots-tag": "googlebot: noindex"})
    assert is_noindex(header)
    assert audit_page(header, T, today=TODAY) == []


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (FetchError.timeout, "timeout"),
        (FetchError.too_large, "too_large"),
        (FetchError.not_html, "not_html"),
        (FetchError.connect_error, "connect_error"),
        (FetchError.robots_disallowed, "robots_disallowed"),
        (FetchError.address_refused, "address_refused"),
        (FetchError.invalid_url, "invalid_url"),
    ],
)
def test_fetch_errors_map_to_findings(error: FetchError, code: str) -> None:
    failed = page("/x", status=None, error=error, error_detail="why", data=None)
    assert [(item.code, item.detail) for item in audit_page(failed, T, today=TODAY)] == [(code, "why")]


def test_other_fetch_error_without_status() -> None:
    failed = page("/x", status=None, error=FetchError.http_error, error_detail="protocol error", data=None)
    assert [(item.code, item.detail) for item in audit_page(failed, T, today=TODAY)] == [
        ("fetch_error", "protocol error")
    ]


def test_every_fetch_error_is_reported_somewhere() -> None:
    for error in FetchError:
        failed = page("/x", status=None, error=error, data=None)
        assert site_findings(crawl([failed])), error


def test_status_findings() -> None:
    assert codes(audit_page(page("/x", status=503, data=None), T, today=TODAY)) == ["server_error"]
    assert codes(audit_page(page("/x", status=404, data=None), T, today=TODAY)) == ["client_error"]
    # an error page's content is not audited
    assert codes(audit_page(page("/x", status=500, data={"title": None}), T, today=TODAY)) == ["server_error"]


def test_truncated_page_is_too_large_and_still_audited() -> None:
    found = audit_page(page("/big", truncated=True, bytes=5_000_000, data={"word_count": 5}), T, today=TODAY)
    assert codes(found) == ["thin_content", "too_large"]


def test_not_modified_page_is_audited_from_its_snapshot() -> None:
    snapshot = page("/p", status=304, not_modified=True, data={"title": None})
    assert codes(audit_page(snapshot, T, today=TODAY)) == ["missing_title"]


# ------------------------------------------------------------------------------------ links


def test_broken_internal_links_one_finding_per_page_and_target() -> None:
    result = crawl(
        [
            page("/", links=["/gone", "/gone", "/forbidden", "/server"]),
            page("/gone", status=404, data=None),
            page("/forbidden", status=403, data=None),
            page("/server", status=502, data=None),
        ]
    )
    found = site_findings(result)
    broken = only(found, "broken_link")
    assert [(item.url, item.target) for item in broken] == [
        (SITE + "/", SITE + "/gone"),
        (SITE + "/", SITE + "/server"),
    ]
    assert broken[0].detail == "target answered 404"
    assert [(item.url, item.target) for item in only(found, "blocked_link")] == [
        (SITE + "/", SITE + "/forbidden")
    ]


def test_links_from_error_pages_are_not_checked() -> None:
    result = crawl([page("/e", status=500, links=["/gone"]), page("/gone", status=404, data=None)])
    assert only(site_findings(result), "broken_link") == []


def test_external_link_checks() -> None:
    result = crawl(
        [
            page(
                "/",
                links=[
                    "https://a.org/x",
                    "https://b.org/y",
                    "https://c.org/z",
                    "https://d.org/ok",
                    "https://e.org/t",
                ],
            )
        ],
        link_checks=[
            LinkCheck(url="https://a.org/x", status=404, outcome=LinkOutcome.broken),
            LinkCheck(url="https://b.org/y", status=999, outcome=LinkOutcome.blocked),
            LinkCheck(
                url="https://c.org/z",
                status=200,
                final_url="https://c.org/z/",
                redirect_chain=[RedirectHop(url="https://c.org/z", status=301, location="/z/")],
                outcome=LinkOutcome.redirected,
            ),
            LinkCheck(url="https://d.org/ok", status=200, outcome=LinkOutcome.ok),
            LinkCheck(url="https://e.org/t", outcome=LinkOutcome.error, detail="timeout"),
        ],
    )
    found = site_findings(result)
    by_code = {item.code: item for item in found if item.target}
    assert set(by_code) == {"broken_link", "blocked_link", "redirected_link", "link_error"}
    assert by_code["broken_link"].target == "https://a.org/x"
    assert by_code["blocked_link"].target == "https://b.org/y"
    assert by_code["redirected_link"].detail == "redirects to https://c.org/z/"
    assert by_code["link_error"].detail == "timeout"
    assert all(item.url == SITE + "/" for item in by_code.values())


def test_redirected_internal_link_names_the_final_url() -> None:
    result = crawl(
        [
            page("/", links=["/old", "/new"]),
            page(
                "/old",
                final_url=SITE + "/new",
                redirect_chain=[RedirectHop(url=SITE + "/old", status=301, location="/new")],
            ),
        ]
    )
    (redirected,) = only(site_findings(result), "redirected_link")
    assert (redirected.url, redirected.target, redirected.detail) == (
        SITE + "/",
        SITE + "/old",
        f"redirects to {SITE}/new",
    )


def _chain(*paths: str) -> list[RedirectHop]:
    return [RedirectHop(url=SITE + path, status=301) for path in paths]


def test_redirect_chain_over_threshold() -> None:
    long = page("/a", final_url=SITE + "/d", redirect_chain=_chain("/a", "/b", "/c"))
    (chain,) = only(site_findings(crawl([long])), "redirect_chain")
    assert chain.url == SITE + "/a" and chain.detail.startswith("3 hops")


def test_redirect_chain_at_threshold_is_fine() -> None:
    short = page("/a", final_url=SITE + "/c", redirect_chain=_chain("/a", "/b"))
    assert only(site_findings(crawl([short])), "redirect_chain") == []


def test_redirect_chain_threshold_is_configurable() -> None:
    short = page("/a", final_url=SITE + "/c", redirect_chain=_chain("/a", "/b"))
    assert only(site_findings(crawl([short]), AuditThresholds(redirect_chain_hops=1)), "redirect_chain")


def test_redirect_loops() -> None:
    by_error = page(
        "/l", status=None, error=FetchError.redirect_loop, redirect_chain=_chain("/l", "/m"), data=None
    )
    by_chain = page("/n", status=301, redirect_chain=_chain("/n", "/o", "/n"), data=None)
    found = site_findings(crawl([by_error, by_chain]))
    assert [item.url for item in only(found, "redirect_loop")] == [SITE + "/l", SITE + "/n"]
    assert only(found, "redirect_chain") == []  # a loop is reported as a loop, not also as a chain


def test_external_link_redirect_loop_and_chain() -> None:
    result = crawl(
        [page("/", links=["https://x.org/1", "https://y.org/1"])],
        link_checks=[
            LinkCheck(
                url="https://x.org/1",
                redirect_chain=[
                    RedirectHop(url="https://x.org/1", status=302),
                    RedirectHop(url="https://x.org/2", status=302),
                ],
                final_url="https://x.org/1",
                outcome=LinkOutcome.error,
                detail="redirect loop",
            ),
            LinkCheck(
                url="https://y.org/1",
                status=200,
                final_url="https://y.org/4",
                redirect_chain=[RedirectHop(url=f"https://y.org/{i}", status=301) for i in (1, 2, 3)],
                outcome=LinkOutcome.redirected,
            ),
        ],
    )
    found = site_findings(result)
    assert [(item.url, item.target) for item in only(found, "redirect_loop")] == [
        (SITE + "/", "https://x.org/1")
    ]
    assert [(item.url, item.target) for item in only(found, "redirect_chain")] == [
        (SITE + "/", "https://y.org/1")
    ]


def test_too_many_redirects_is_a_redirect_chain() -> None:
    failed = page("/r", status=None, error=FetchError.too_many_redirects, data=None)
    assert codes(site_findings(crawl([failed]))) == ["redirect_chain"]


# ------------------------------------------------------------------------------------ duplicates


def test_duplicate_titles_and_descriptions_among_indexable_pages() -> None:
    result = crawl(
        [
            page("/a", data={"title": "Same  Title here", "meta_description": GOOD_DESCRIPTION}),
            page("/b", data={"title": "same title here", "meta_description": GOOD_DESCRIPTION}),
            page("/c", data={"title": "Unique title here", "meta_description": GOOD_DESCRIPTION + " x"}),
            page("/noindex", data={"title": "Same title here", "meta_robots": "noindex"}),
            page("/gone", status=404, data={"title": "Same title here"}),
            page("/variant", data={"title": "Same title here", "canonical": SITE + "/a"}),
        ]
    )
    found = site_findings(result)
    assert [item.url for item in only(found, "duplicate_title")] == [SITE + "/a", SITE + "/b"]
    assert only(found, "duplicate_title")[0].detail == f"shared with 1 page(s): {SITE}/b"
    assert [item.url for item in only(found, "duplicate_meta_description")] == [SITE + "/a", SITE + "/b"]


# ------------------------------------------------------------------------------------ canonicals


def test_canonical_mismatch_is_a_notice_naming_the_canonical() -> None:
    result = crawl([page("/a", data={"canonical": SITE + "/b"}), page("/b")])
    (mismatch,) = only(site_findings(result), "canonical_mismatch")
    assert mismatch.severity == Severity.notice and SITE + "/b" in mismatch.detail


def test_self_canonical_is_fine() -> None:
    result = crawl([page("/a", data={"canonical": SITE + "/a?utm_source=x"})])
    assert only(site_findings(result), "canonical_mismatch") == []


@pytest.mark.parametrize(
    "target",
    [
        page("/b", status=404, data=None),
        page("/b", status=500, data=None),
        page("/b", final_url=SITE + "/c", redirect_chain=_chain("/b")),
        page("/b", data={"meta_robots": "noindex"}),
    ],
)
def test_canonical_broken(target: Page) -> None:
    found = site_findings(crawl([page("/a", data={"canonical": SITE + "/b"}), target]))
    (broken,) = only(found, "canonical_broken")
    assert (broken.url, broken.target) == (SITE + "/a", SITE + "/b")
    assert only(found, "canonical_mismatch") == []


def test_canonical_broken_through_a_link_check() -> None:
    result = crawl(
        [page("/a", data={"canonical": "https://other.org/a"})],
        link_checks=[LinkCheck(url="https://other.org/a", status=410, outcome=LinkOutcome.broken)],
    )
    assert codes(only(site_findings(result), "canonical_broken")) == ["canonical_broken"]


# ------------------------------------------------------------------------------------ sitemaps


def test_noindex_in_sitemap_via_meta_and_header() -> None:
    result = crawl(
        [
            page("/meta", in_sitemap=True, data={"meta_robots": "noindex"}, links=["/header"]),
            page("/header", headers={"x-robots-tag": "noindex, nofollow"}, links=["/meta"]),
        ],
        sitemap_entries=[SitemapEntry(url=SITE + "/header", sitemap=SITE + "/sitemap.xml")],
    )
    found = only(site_findings(result), "noindex_in_sitemap")
    assert [item.url for item in found] == [SITE + "/header", SITE + "/meta"]
    assert found[0].detail == f"listed in {SITE}/sitemap.xml"


def test_noindex_page_not_in_sitemap_is_fine() -> None:
    result = crawl([page("/", links=["/private"]), page("/private", data={"meta_robots": "noindex"})])
    assert only(site_findings(result), "noindex_in_sitemap") == []


def test_sitemap_url_errors() -> None:
    sitemap = SITE + "/sitemap.xml"
    entries = [
        SitemapEntry(url=SITE + path, sitemap=sitemap) for path in ("/", "/gone", "/moved", "/secret", "/ext")
    ]
    result = crawl(
        [
            page("/", links=["/gone", "/moved"]),
            page("/gone", status=404, data=None),
            page("/moved", final_url=SITE + "/", redirect_chain=_chain("/moved")),
        ],
        sitemap_entries=entries,
        robots_disallowed=[SITE + "/secret"],
        link_checks=[LinkCheck(url=SITE + "/ext", status=500, outcome=LinkOutcome.broken)],
        sitemap_problems=[SitemapProblem(sitemap=SITE + "/sitemap-2.xml", detail="not XML")],
    )
    found = site_findings(result)
    errors = {item.target: item.detail for item in only(found, "sitemap_url_error")}
    assert errors == {
        SITE + "/gone": "answers 404",
        SITE + "/moved": f"redirects to {SITE}/",
        SITE + "/secret": "blocked by robots.txt",
        SITE + "/ext": "broken (500)",
    }
    assert all(item.url == sitemap for item in only(found, "sitemap_url_error"))
    (problem,) = only(found, "sitemap_error")
    assert (problem.url, problem.detail) == (SITE + "/sitemap-2.xml", "not XML")


def test_orphan_pages() -> None:
    result = crawl(
        [
            page("/", in_sitemap=True, links=["/linked", "/old"]),
            page("/linked", in_sitemap=True, links=["/"]),
            page("/orphan", in_sitemap=True, links=["/orphan", "/"]),  # a self-link does not count
            page("/new", in_sitemap=True, links=["/"]),  # reached through /old's redirect
            page("/old", final_url=SITE + "/new", redirect_chain=_chain("/old")),
            page("/unlisted", links=["/"]),  # not in a sitemap: not an orphan by this definition
        ]
    )
    assert [item.url for item in only(site_findings(result), "orphan_page")] == [SITE + "/orphan"]


# ------------------------------------------------------------------------------------ audit_site output


def test_audit_site_merges_dedupes_and_sorts() -> None:
    result = crawl([page("/", links=["/gone"]), page("/gone", status=404, data=None)])
    page_findings = [item for p in result.pages for item in audit_page(p, T, today=TODAY)]
    found = audit_site(result, page_findings + page_findings, T)
    assert [item.code for item in found] == ["broken_link", "client_error"]
    assert audit_site(result, page_findings, T) == found  # stable


# ------------------------------------------------------------------------------------ diff_pages


def test_diff_pages() -> None:
    pages = [
        page("/same", data={"text_hash": "1"}),
        page("/edited", data={"text_hash": "new"}),
        page("/fresh", data={"text_hash": "3"}),
        page("/cached", status=304, not_modified=True, data={"text_hash": ""}),
        page("/deleted", status=410, data=None),
        page("/flaky", status=None, error=FetchError.timeout, data=None),
    ]
    previous = {
        SITE + "/same": "1",
        SITE + "/edited": "old",
        SITE + "/cached": "4",
        SITE + "/deleted": "5",
        SITE + "/flaky": "6",
        SITE + "/vanished": "7",
    }
    assert diff_pages(previous, pages) == {
        SITE + "/same": PageChange.unchanged,
        SITE + "/edited": PageChange.changed,
        SITE + "/fresh": PageChange.new,
        SITE + "/cached": PageChange.unchanged,
        SITE + "/deleted": PageChange.removed,
        SITE + "/vanished": PageChange.removed,
    }


def test_text_hashes_feed_the_next_diff() -> None:
    pages = [page("/a", data={"text_hash": "x"}), page("/b", status=500, data=None)]
    assert text_hashes(pages) == {SITE + "/a": "x"}
    assert diff_pages(text_hashes(pages), pages) == {SITE + "/a": PageChange.unchanged}


# ------------------------------------------------------------------------------------ refresh policy


def test_pages_needing_refresh_policy_and_order() -> None:
    findings = [
        finding("stale_date", SITE + "/b"),
        finding("broken_link", SITE + "/a", target=SITE + "/x"),
        finding("title_length", SITE + "/c"),
        finding("stale_date", SITE + "/c"),
        finding("thin_content", SITE + "/d"),  # needs writing, not a refresh
        finding("server_error", SITE + "/e"),
        finding("orphan_page", SITE + "/f"),
    ]
    assert pages_needing_refresh(findings) == [SITE + "/a", SITE + "/c", SITE + "/b"]
    assert pages_needing_refresh([]) == []
