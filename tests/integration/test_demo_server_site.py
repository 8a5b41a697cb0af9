"""The bundled example site: every deliberate problem is there, and every other page is healthy.

The demo (and the README) promise specific findings on ``examples/site``; these tests keep the content
honest when someone edits it. Checks read the pages as served, with the audit's default thresholds.
"""

from __future__ import annotations

import re
import urllib.robotparser
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from lxml import etree
from lxml import html as lxml_html

from sitesteward.demo import EXAMPLE_SITE_ROOT, EXAMPLE_SOURCES_ROOT, SiteServer, SourcesServer, serve_demo
from sitesteward.models import AuditThresholds

LIMITS = AuditThresholds()
CURRENT_YEAR = 2026  # the year the healthy content was written for; "as of" older than LIMITS is stale

# Page -> the one deliberate problem it carries (see examples/PROBLEMS.md).
PROBLEM_PAGES = {
    "/about/": "stale_claim",
    "/why-static/": "stale_cited_figure",
    "/guides/backups/": "stale_last_updated",
    "/guides/forms/": "broken_internal_link",
    "/blog/larkspur-2-0/": "broken_external_link",
    "/guides/custom-domains/": "redirected_link",
    "/blog/moving-from-jekyll/": "redirect_chain",
    "/guides/webhooks/": "title_too_long",
    "/support/": "missing_description",
    "/changelog/": "multiple_h1",
    "/security/": "missing_h1",
    "/blog/faster-images/": "image_without_alt",
    "/blog/team-offsite/": "thin",
    "/contact/": "duplicate_description",
    "/careers/": "duplicate_description",
    "/legacy-plans/": "orphan",
    "/beta/": "noindex_in_sitemap",
    "/private/roadmap/": "robots_disallowed_in_sitemap",
}


@dataclass
class Served:
    path: str
    title: str
    description: str | None
    robots: str | None
    h1: list[str]
    words: int
    main_text: str
    images_without_alt: list[str]
    links: dict[str, int] = field(default_factory=dict)  # absolute href -> status (no redirects followed)


@dataclass
class Crawl:
    site: SiteServer
    sources: SourcesServer
    sitemap: list[str]
    robots: urllib.robotparser.RobotFileParser
    pages: dict[str, Served]


@pytest.fixture(scope="module")
def crawl() -> Iterator[Crawl]:
    # Read-only: the bundled site is served as is, never written.
    with (
        serve_demo(EXAMPLE_SITE_ROOT, EXAMPLE_SOURCES_ROOT) as (site, sources),
        httpx.Client(timeout=10) as http,
    ):
        sitemap_xml = etree.fromstring(http.get(site.base_url + "/sitemap.xml").content)
        sitemap = [loc.text or "" for loc in sitemap_xml.iter("{*}loc")]
        robots = urllib.robotparser.RobotFileParser()
        robots.parse(http.get(site.base_url + "/robots.txt").text.splitlines())
        statuses: dict[str, int] = {}
        pages: dict[str, Served] = {}
        for url in sitemap:
            response = http.get(url)
            assert response.status_code == 200, url
            tree = lxml_html.fromstring(response.content)
            main = tree.find(".//main")
            assert main is not None
            main_text = " ".join(main.text_content().split())
            served = Served(
                path=url.removeprefix(site.base_url),
                title=tree.findtext(".//title") or "",
                description=next(iter(tree.xpath("//meta[@name='description']/@content")), None),
                robots=next(iter(tree.xpath("//meta[@name='robots']/@content")), None),
                h1=[" ".join(h.text_content().split()) for h in tree.xpath("//h1")],
                words=len(main_text.split()),
                main_text=main_text,
                images_without_alt=tree.xpath("//img[not(@alt)]/@src"),
            )
            for href in tree.xpath("//a/@href"):
                target = str(httpx.URL(url).join(href))
                if target not in statuses:
                    statuses[target] = http.get(target).status_code
                served.links[target] = statuses[target]
            pages[served.path] = served
        yield Crawl(site, sources, sitemap, robots, pages)


def _is_healthy(path: str) -> bool:
    return path not in PROBLEM_PAGES


def _stale_years(text: str) -> list[int]:
    return [
        int(year)
        for year in re.findall(r"\b[Aa]s of (\d{4})\b", text)
        if CURRENT_YEAR - int(year) > LIMITS.stale_years
    ]


def test_site_size_and_every_problem_page_exists(crawl: Crawl) -> None:
    assert 15 <= len(crawl.pages) <= 25
    assert set(PROBLEM_PAGES) <= set(crawl.pages)
    healthy = [path for path in crawl.pages if _is_healthy(path)]
    assert len(healthy) >= 5


@pytest.mark.parametrize("path", ["/", "/pricing/", "/guides/", "/guides/getting-started/", "/blog/"])
def test_healthy_pages_are_healthy(crawl: Crawl, path: str) -> None:
    page = crawl.pages[path]
    assert LIMITS.title_min <= len(page.title) <= LIMITS.title_max, page.title
    assert page.description is not None
    assert LIMITS.description_min <= len(page.description) <= LIMITS.description_max
    assert len(page.h1) == 1
    assert page.words >= LIMITS.thin_words + 15  # a margin, so a different word counter agrees
    assert page.robots is None
    assert not page.images_without_alt
    assert not _stale_years(page.main_text)
    assert "Last updated" not in page.main_text
    assert all(status == 200 for status in page.links.values()), page.links


def test_every_page_without_a_listed_problem_is_healthy(crawl: Crawl) -> None:
    for path, page in crawl.pages.items():
        if not _is_healthy(path):
            continue
        assert LIMITS.title_min <= len(page.title) <= LIMITS.title_max, path
        assert page.description is not None, path
        assert len(page.h1) == 1, path
        assert page.words >= LIMITS.thin_words + 15, path
        assert all(status == 200 for status in page.links.values()), (path, page.links)


def test_pages_with_a_problem_have_only_the_seo_basics_it_names(crawl: Crawl) -> None:
    for path, problem in PROBLEM_PAGES.items():
        page = crawl.pages[path]
        if problem != "title_too_long":
            assert LIMITS.title_min <= len(page.title) <= LIMITS.title_max, path
        if problem != "missing_description":
            assert page.description is not None, path
        if problem not in {"multiple_h1", "missing_h1"}:
            assert len(page.h1) == 1, path
        if problem != "thin":
            assert page.words >= LIMITS.thin_words, path
        if problem != "image_without_alt":
            assert not page.images_without_alt, path


def test_stale_content(crawl: Crawl) -> None:
    assert _stale_years(crawl.pages["/about/"].main_text) == [2020]
    assert _stale_years(crawl.pages["/why-static/"].main_text) == [2019]
    assert "Last updated: 2019-06-12" in crawl.pages["/guides/backups/"].main_text
    stale_pages = {path for path, page in crawl.pages.items() if _stale_years(page.main_text)}
    assert stale_pages == {"/about/", "/why-static/"}


def test_the_stale_figure_cites_a_source_that_now_disagrees(crawl: Crawl) -> None:
    page = crawl.pages["/why-static/"]
    assert "As of 2019, 42% of teams use static sites" in page.main_text
    survey = crawl.sources.base_url + "/reports/static-sites-survey"
    assert page.links[survey] == 200
    with httpx.Client() as http:
        source = lxml_html.fromstring(http.get(survey).content)
    source_text = " ".join(source.text_content().split())
    assert "As of 2025, 57% of teams use static sites" in source_text
    assert "42% of teams use" not in source_text


def test_broken_and_redirected_links(crawl: Crawl) -> None:
    site, sources = crawl.site.base_url, crawl.sources.base_url
    broken = {
        (path, target)
        for path, page in crawl.pages.items()
        for target, status in page.links.items()
        if status == 404
    }
    assert broken == {
        ("/guides/forms/", site + "/guides/spam-filtering/"),
        ("/blog/larkspur-2-0/", sources + "/reports/cms-market-2018"),
    }
    redirected = {
        (path, target)
        for path, page in crawl.pages.items()
        for target, status in page.links.items()
        if status == 301
    }
    assert redirected == {
        ("/guides/custom-domains/", site + "/guides/deploy-hooks/"),
        ("/blog/moving-from-jekyll/", site + "/docs/setup/"),
    }
    other = {status for page in crawl.pages.values() for status in page.links.values()} - {200, 301, 404}
    assert not other


def test_redirect_hops(crawl: Crawl) -> None:
    with httpx.Client() as http:
        one = http.get(crawl.site.base_url + "/guides/deploy-hooks/", follow_redirects=True)
        three = http.get(crawl.site.base_url + "/docs/setup/", follow_redirects=True)
    assert len(one.history) == 1
    assert len(three.history) == 3 > LIMITS.redirect_chain_hops


def test_title_too_long_and_descriptions(crawl: Crawl) -> None:
    too_long = {path for path, page in crawl.pages.items() if len(page.title) > LIMITS.title_max}
    assert too_long == {"/guides/webhooks/"}
    missing = {path for path, page in crawl.pages.items() if page.description is None}
    assert missing == {"/support/"}
    by_description: dict[str, set[str]] = {}
    for path, page in crawl.pages.items():
        if page.description is not None:
            by_description.setdefault(page.description, set()).add(path)
    assert [paths for paths in by_description.values() if len(paths) > 1] == [{"/contact/", "/careers/"}]


def test_headings_images_and_thin_pages(crawl: Crawl) -> None:
    assert {path for path, page in crawl.pages.items() if len(page.h1) > 1} == {"/changelog/"}
    assert {path for path, page in crawl.pages.items() if not page.h1} == {"/security/"}
    assert {
        path: page.images_without_alt for path, page in crawl.pages.items() if page.images_without_alt
    } == {"/blog/faster-images/": ["/static/img/build-log.png"]}
    assert {path for path, page in crawl.pages.items() if page.words < LIMITS.thin_words} == {
        "/blog/team-offsite/"
    }


def test_orphan_noindex_and_robots(crawl: Crawl) -> None:
    site = crawl.site.base_url
    linked = {
        target.removeprefix(site)
        for path, page in crawl.pages.items()
        for target in page.links
        if target.startswith(site) and target.removeprefix(site) != path
    }
    orphans = {path for path in crawl.pages if path not in linked}
    assert orphans == {"/legacy-plans/"}
    assert {path for path, page in crawl.pages.items() if page.robots == "noindex"} == {"/beta/"}
    disallowed = {path for path in crawl.pages if not crawl.robots.can_fetch("sitesteward", site + path)}
    assert disallowed == {"/private/roadmap/"}
    assert site + "/beta/" in crawl.sitemap
    assert site + "/private/roadmap/" in crawl.sitemap
    assert site + "/legacy-plans/" in crawl.sitemap
    assert site + "/blog/next-release/" not in crawl.sitemap
