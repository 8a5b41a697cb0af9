"""Verification of a published edit against a fresh fetch of the live page."""

from __future__ import annotations

from datetime import UTC, datetime

from sitesteward.extract import extract_page
from sitesteward.models import Draft, Edit, Page
from sitesteward.verify import verify_live, visible_text

URL = "http://site.test/guides/custom-domains/"


def _page(body: str, *, title: str = "Custom domains", robots: str = "", status: int = 200) -> Page:
    head = f"<title>{title}</title><link rel=canonical href='{URL}'>"
    if robots:
        head += f"<meta name=robots content='{robots}'>"
    html = f"<html><head>{head}</head><body><main>{body}</main></body></html>"
    data = extract_page(html, URL, site_hosts=frozenset({"site.test"}))
    return Page(url=URL, final_url=URL, status=status, fetched_at=datetime.now(UTC), data=data)


def _draft(*edits: Edit) -> Draft:
    return Draft(page_url=URL, edits=list(edits), drafter="offline", prompt_version="t")


def test_visible_text_drops_markup_and_keeps_link_text() -> None:
    assert visible_text("As of **2025**, [57%](https://x.test/s) of teams") == "as of 2025, 57% of teams"


def test_replaced_text_must_be_visible() -> None:
    edit = Edit(
        old="As of 2019, 42%", new="As of 2025, [57%](https://src.test/r)", finding="claim_unsupported"
    )
    before = _page("<p>As of 2019, 42% of teams.</p>")
    live = _page("<p>As of 2025, <a href='https://src.test/r'>57%</a> of teams.</p>")
    assert verify_live(live, _draft(edit), before.data).passed
    stale = verify_live(before, _draft(edit), before.data)
    assert not stale.passed
    assert [c.name for c in stale.checks if not c.passed] == ["text_present"]


def test_a_rewritten_link_target_is_checked_among_the_links() -> None:
    edit = Edit(old="/guides/deploy-hooks/", new="/guides/webhooks/", finding="redirected_link")
    live = _page("<p>See <a href='/guides/webhooks/'>hooks</a>.</p>")
    assert verify_live(live, _draft(edit), None).passed
    old = _page("<p>See <a href='/guides/deploy-hooks/'>hooks</a>.</p>")
    assert not verify_live(old, _draft(edit), None).passed


def test_added_internal_link_and_title() -> None:
    link = Edit(
        kind="add_link", old="static sites", new="[static sites](/why-static/)", finding="internal_link"
    )
    title = Edit(kind="set_title", old="A very long title", new="Custom domains", finding="title_length")
    live = _page("<p>Why <a href='/why-static/'>static sites</a>?</p>")
    assert verify_live(live, _draft(link, title), None).passed
    wrong_title = _page("<p>Why <a href='/why-static/'>static sites</a>?</p>", title="Other")
    assert not verify_live(wrong_title, _draft(link, title), None).passed


def test_regressions_fail_verification() -> None:
    edit = Edit(old="old words", new="new words", finding="stale_date")
    before = _page("<p>old words</p>")
    noindex = _page("<p>new words</p>", robots="noindex")
    result = verify_live(noindex, _draft(edit), before.data)
    assert not result.passed
    assert {c.name for c in result.checks if not c.passed} == {"indexable_kept"}
    gone = _page("<p>new words</p>", status=404)
    assert not verify_live(gone, _draft(edit), before.data).passed


def test_a_dropped_dead_link_must_be_gone_from_the_live_page() -> None:
    edit = Edit(old="[filtering spam](/guides/spam-filtering/)", new="filtering spam", finding="broken_link")
    still_linked = _page("<p>Read about <a href='/guides/spam-filtering/'>filtering spam</a>.</p>")
    result = verify_live(still_linked, _draft(edit), None)
    assert not result.passed
    assert [c.name for c in result.checks if not c.passed] == ["link_removed"]
    assert verify_live(_page("<p>Read about filtering spam.</p>"), _draft(edit), None).passed
