"""PageFacts: the audit and the report give the same answers on a page's compact facts as on the page."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import TypeAdapter

from sitesteward.audit import audit_page, is_noindex
from sitesteward.facts import FactsCollector, PageFacts
from sitesteward.models import FetchError, Image, Link, Page, RedirectHop
from sitesteward.report import build_report
from tests.unit.test_audit import SITE, TODAY, T, crawl, page

VARIANTS: dict[str, dict[str, Any]] = {
    "healthy": {},
    "images": {
        "data": {
            "images": [
                Image(src=SITE + "/a.png"),
                Image(src=SITE + "/b.png", alt=""),
                Image(src=SITE + "/c.png", alt="a chart"),
                *[Image(src=f"{SITE}/{n}.png") for n in range(7)],
            ]
        }
    },
    "headings": {"data": {"headings": {"h1": ["One", "Two", " "], "h2": ["Sub"]}}},
    "no_h1": {"data": {"headings": {"h2": ["Only a subheading"]}}},
    "stale": {"data": {"dates": ["as of 2019", "updated March 2018"], "word_count": 50}},
    "lengths": {"data": {"title": "Short", "meta_description": "x" * 400}},
    "missing": {"data": {"title": None, "meta_description": "  "}},
    "noindex_meta": {"data": {"meta_robots": "noindex, follow", "word_count": 10}},
    "noindex_header": {"headers": {"x-robots-tag": "googlebot: noindex"}, "data": {"word_count": 10}},
    "canonical": {"data": {"canonical": SITE + "/elsewhere"}},
    "server_error": {"status": 503, "data": None},
    "client_error": {"status": 404, "data": None},
    "timeout": {"status": None, "error": FetchError.timeout, "error_detail": "read timed out", "data": None},
    "truncated": {"truncated": True, "bytes": 5_000_000},
    "redirected": {
        "redirect_chain": [RedirectHop(url=SITE + "/old", status=301, location=SITE + "/new")],
        "final_url": SITE + "/new",
    },
    "not_modified": {"not_modified": True, "status": 200},
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_per_page_checks_and_report_rows_agree(name: str) -> None:
    overrides = VARIANTS[name]
    links = (
        None if "data" in overrides and overrides["data"] is None else ["/a", "/b", "https://other.example/x"]
    )
    original = page("/p", links=links, **overrides)
    facts = FactsCollector().facts_of(original)
    assert audit_page(facts, T, today=TODAY) == audit_page(original, T, today=TODAY)
    assert is_noindex(facts) == is_noindex(original)
    pages = crawl([original])
    assert build_report(FactsCollector().crawl(pages), [], {}).pages == build_report(pages, [], {}).pages


def test_the_variants_cover_every_per_page_code() -> None:
    # Agreement only means something if the variants raise the codes the facts must carry.
    raised = {
        item.code
        for overrides in VARIANTS.values()
        for item in audit_page(page("/p", **overrides), T, today=TODAY)
    }
    assert raised >= {
        "missing_alt",
        "multiple_h1",
        "missing_h1",
        "stale_date",
        "thin_content",
        "title_length",
        "meta_description_length",
        "missing_title",
        "missing_meta_description",
        "server_error",
        "client_error",
        "timeout",
        "too_large",
    }


def test_links_are_shared_between_pages_and_keep_only_what_checks_read() -> None:
    collector = FactsCollector()
    first = collector.facts_of(page("/1", links=["/a", "/b"]))
    second = collector.facts_of(
        page("/2", data={"links": [Link(href=SITE + "/a", text="other text", rel="nofollow")]})
    )
    assert first.data is not None and second.data is not None
    assert second.data.links[0] is first.data.links[0]  # one object per distinct target
    assert first.data.links[0].href == SITE + "/a" and first.data.links[0].text == ""


def test_facts_round_trip_as_json() -> None:
    # Cache keys hash the facts' JSON, and a sharded crawl's result crosses processes as JSON.
    original: Page = page("/p", links=["/a"], **VARIANTS["images"])
    facts = FactsCollector().facts_of(original)
    adapter = TypeAdapter(PageFacts)
    encoded = adapter.dump_json(facts)
    assert adapter.validate_json(encoded) == facts
    assert "x_robots_tag" in json.loads(encoded) and "headings" not in json.loads(encoded)
