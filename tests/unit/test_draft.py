"""OfflineDrafter, DraftRequest.inputs_hash and internal-link suggestions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from sitesteward.compare import ClaimCheck, compare_page
from sitesteward.content import parse_document
from sitesteward.draft import (
    DraftRequest,
    LinkCandidate,
    OfflineDrafter,
    build_draft_request,
    suggest_internal_links,
    unique_snippet,
)
from sitesteward.models import Finding, PageData, Severity
from sitesteward.sources import cited_sources, snapshot_source
from sitesteward.validate import validate_draft

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
PAGE_URL = "https://blog.example.com/deploy-daily/"
SURVEY = "https://research.example.org/state-of-deployment"
T1 = datetime(2024, 1, 10, tzinfo=UTC)
T2 = datetime(2024, 6, 1, tzinfo=UTC)


def _apply(document: str, request: DraftRequest) -> str:
    """Apply replace_text/add_link edits the way a publisher would (exact, once)."""
    result = OfflineDrafter().draft(request)
    for edit in result.draft.edits:
        if edit.kind in {"replace_text", "add_link"}:
            assert document.count(edit.old) == 1
            document = document.replace(edit.old, edit.new, 1)
    return document


@pytest.fixture
def survey_request() -> DraftRequest:
    page_html = (FIXTURES / "page.html").read_text()
    citations = cited_sources(page_html, PAGE_URL, PageData())
    before = snapshot_source(SURVEY, (FIXTURES / "survey_v1.html").read_text(), retrieved_at=T1)
    after = snapshot_source(SURVEY, (FIXTURES / "survey_v2.html").read_text(), retrieved_at=T2)
    comparison = compare_page(PAGE_URL, "page text", citations, [after], [before], compared_at=T2)
    return build_draft_request(
        PAGE_URL,
        (FIXTURES / "page.md").read_text(),
        comparison=comparison,
        sources=[after],
        site_hosts=["blog.example.com"],
    )


def test_offline_draft_updates_stale_figure_with_the_new_quote(survey_request: DraftRequest) -> None:
    result = OfflineDrafter().draft(survey_request)
    figure = [e for e in result.draft.edits if "42%" in e.old]
    assert len(figure) == 1
    edit = figure[0]
    assert edit.kind == "replace_text"
    assert edit.finding == "claim_unsupported"
    assert "57%" in edit.new and "42%" not in edit.new
    assert edit.source_url == SURVEY
    assert edit.source_quote is not None and "57% of teams deploy" in edit.source_quote
    updated = _apply(survey_request.page_source, survey_request)
    assert "As of 2024, 57% of teams deploy to production every day" in updated
    assert result.draft.drafter == "offline"
    assert result.usage.cost_usd == 0


def test_offline_edits_are_exact_and_pass_validation(survey_request: DraftRequest) -> None:
    result = OfflineDrafter().draft(survey_request)
    assert result.draft.edits
    for edit in result.draft.edits:
        assert survey_request.page_source.count(edit.old) == 1
    validation = validate_draft(
        result.draft,
        document_text=survey_request.page_source,
        allowed_link_hosts=survey_request.allowed_link_hosts(),
        page_url=PAGE_URL,
    )
    assert validation.ok


def test_applying_twice_is_a_no_op(survey_request: DraftRequest) -> None:
    once = _apply(survey_request.page_source, survey_request)
    again = OfflineDrafter().draft(survey_request.model_copy(update={"page_source": once}))
    assert [e for e in again.draft.edits if e.finding == "claim_unsupported"] == []


def test_inputs_hash_is_stable_and_sensitive(survey_request: DraftRequest) -> None:
    same = DraftRequest.model_validate_json(survey_request.model_dump_json())
    key = survey_request.inputs_hash(prompt_version="v1", model="m")
    assert same.inputs_hash(prompt_version="v1", model="m") == key
    assert survey_request.inputs_hash(prompt_version="v2", model="m") != key
    assert survey_request.inputs_hash(prompt_version="v1", model="other") != key
    changed_page = survey_request.model_copy(update={"page_source": survey_request.page_source + "\nmore"})
    assert changed_page.inputs_hash(prompt_version="v1", model="m") != key
    changed_source = survey_request.model_copy(update={"source_hashes": {SURVEY: "0" * 64}})
    assert changed_source.inputs_hash(prompt_version="v1", model="m") != key
    assert OfflineDrafter().cache_key(survey_request) == OfflineDrafter().cache_key(same)


def test_inputs_hash_ignores_retrieval_time(survey_request: DraftRequest) -> None:
    later = [
        q.model_copy(update={"retrieved_at": datetime(2030, 1, 1, tzinfo=UTC)})
        for q in survey_request.sources
    ]
    assert later
    relaid = survey_request.model_copy(update={"sources": later})
    assert relaid.inputs_hash(prompt_version="v", model="m") == survey_request.inputs_hash(
        prompt_version="v", model="m"
    )


def test_offline_draft_is_deterministic(survey_request: DraftRequest) -> None:
    first = OfflineDrafter().draft(survey_request)
    second = OfflineDrafter().draft(survey_request)
    assert first == second
    assert first.inputs_hash == OfflineDrafter().cache_key(survey_request)


def _finding(code: str, target: str | None = None, detail: str = "") -> Finding:
    return Finding(code=code, severity=Severity.warning, url=PAGE_URL, target=target, detail=detail)


def test_redirect_dead_link_title_and_description() -> None:
    source = (FIXTURES / "page.md").read_text()
    request = DraftRequest(
        page_url=PAGE_URL,
        page_source=source,
        findings=[
            _finding("link_redirected", "https://docs.example.net/old-guide"),
            _finding("source_unavailable", "https://tools.example.com/checklist", "broken (HTTP 404): gone"),
            _finding("title_too_long"),
            _finding("description_missing"),
        ],
        redirects={"https://docs.example.net/old-guide": "https://docs.example.net/new-guide"},
    )
    draft = OfflineDrafter().draft(request).draft
    by_finding = {e.finding: e for e in draft.edits}
    redirect = by_finding["link_redirected"]
    assert redirect.old == "https://docs.example.net/old-guide"
    assert redirect.new == "https://docs.example.net/new-guide"
    dead = by_finding["source_unavailable"]
    assert dead.old == "[release checklist](https://tools.example.com/checklist)"
    assert dead.new == "release checklist"
    title = by_finding["title_too_long"]
    current_title = parse_document(source).meta["title"]
    assert title.kind == "set_title" and title.old == current_title
    assert len(title.new) <= 60 and not title.new.endswith((" in", " for", "|"))
    description = by_finding["description_missing"]
    assert description.kind == "set_description" and description.old == ""
    assert description.new.startswith("As of 2023, 42% of teams")
    assert len(description.new) <= 160
    assert any("dead citation" in w for w in draft.warnings)


def test_blocked_source_is_flagged_not_edited() -> None:
    request = DraftRequest(
        page_url=PAGE_URL,
        page_source=(FIXTURES / "page.md").read_text(),
        findings=[_finding("source_unavailable", SURVEY, "blocked (HTTP 403): refused")],
    )
    draft = OfflineDrafter().draft(request).draft
    assert draft.edits == []
    assert any("refused our fetch" in w for w in draft.warnings)


def test_ambiguous_claim_is_not_edited() -> None:
    claim = ClaimCheck(page_sentence="42% do X.", source_url=SURVEY, figure="42%", supported=False)
    request = DraftRequest(page_url=PAGE_URL, page_source="42% do X.\n", claims=[claim])
    draft = OfflineDrafter().draft(request).draft
    assert draft.edits == []
    assert any("no unambiguous update" in w for w in draft.warnings)


def test_figure_repeated_in_page_gets_context_to_be_unique() -> None:
    document = "Intro: 42% of cats.\n\nLater: 42% of teams deploy daily.\n"
    claim = ClaimCheck(
        page_sentence="Later: 42% of teams deploy daily.",
        source_url=SURVEY,
        figure="42%",
        supported=False,
        replacement="57%",
        source_quote="57% of teams deploy daily.",
    )
    request = DraftRequest(page_url=PAGE_URL, page_source=document, claims=[claim])
    (edit,) = OfflineDrafter().draft(request).draft.edits
    assert document.count(edit.old) == 1
    assert (
        document.replace(edit.old, edit.new) == "Intro: 42% of cats.\n\nLater: 57% of teams deploy daily.\n"
    )


def test_as_of_year_refreshed_only_when_source_supports_it() -> None:
    document = "As of 2021, 42% of teams deploy to production daily.\n"
    supported = ClaimCheck(
        page_sentence="As of 2021, 42% of teams deploy to production daily.",
        source_url=SURVEY,
        figure="42%",
        supported=False,
        replacement="57%",
        source_quote="In 2024, 57% of teams deploy to production daily.",
    )
    request = DraftRequest(
        page_url=PAGE_URL, page_source=document, claims=[supported], findings=[_finding("stale_date")]
    )
    edits = OfflineDrafter().draft(request).draft.edits
    updated = document
    for edit in edits:
        updated = updated.replace(edit.old, edit.new, 1)
    assert updated == "As of 2024, 57% of teams deploy to production daily.\n"
    no_year = supported.model_copy(update={"source_quote": "57% of teams deploy to production daily."})
    edits = OfflineDrafter().draft(request.model_copy(update={"claims": [no_year]})).draft.edits
    assert all("2021" not in e.old or "2021" in e.new for e in edits)


def test_unique_snippet_gives_up_on_identical_lines() -> None:
    document = "same 42% line\nsame 42% line\n"
    assert unique_snippet(document, 5, 8) is None


def test_suggest_internal_links() -> None:
    page = "---\ntitle: Deploying daily\n---\n# Deploying daily\n\nUse feature flags and a rollback plan.\n"
    candidates = [
        LinkCandidate(
            url="https://blog.example.com/feature-flags/", title="Feature flags", headings=["Flags"]
        ),
        ("https://blog.example.com/rollback/", "Rollback plan", ["Plans"], False),  # not indexable
        LinkCandidate(url="https://blog.example.com/deploy-daily/", title="Deploying daily"),  # itself
    ]
    edits = suggest_internal_links(PAGE_URL, page, candidates, max_links=3)
    assert len(edits) == 1
    (edit,) = edits
    assert edit.kind == "add_link"
    assert edit.old == "feature flags"
    assert edit.new == "[feature flags](/feature-flags/)"
    linked = page.replace(edit.old, edit.new, 1)
    assert suggest_internal_links(PAGE_URL, linked, candidates) == []  # never twice


def test_suggest_internal_links_respects_max_and_headings() -> None:
    page = "# Feature flags\n\nFeature flags help. Rollbacks help. Canary releases help.\n"
    candidates = [
        LinkCandidate(url="https://b.example/flags/", title="Feature flags"),
        LinkCandidate(url="https://b.example/rollbacks/", title="Rollbacks"),
        LinkCandidate(url="https://b.example/canary/", title="Canary releases"),
    ]
    edits = suggest_internal_links("https://b.example/post/", page, candidates, max_links=2)
    assert len(edits) == 2
    for edit in edits:
        assert not page[page.index(edit.old) - 2 : page.index(edit.old)].startswith("#")
        assert page.count(edit.old) == 1


def test_root_relative_internal_links_are_rewritten_and_dropped() -> None:
    site = "http://site.test"
    source = (
        "---\ntitle: Custom domains\n---\n"
        "See [deploy hooks](/guides/deploy-hooks/) and the [old form guide](/guides/spam-filtering/).\n"
    )
    request = DraftRequest(
        page_url=f"{site}/guides/custom-domains/",
        page_source=source,
        findings=[
            Finding(
                code="redirected_link",
                severity=Severity.notice,
                url=f"{site}/guides/custom-domains/",
                target=f"{site}/guides/deploy-hooks/",
            ),
            Finding(
                code="broken_link",
                severity=Severity.error,
                url=f"{site}/guides/custom-domains/",
                target=f"{site}/guides/spam-filtering/",
            ),
        ],
        redirects={f"{site}/guides/deploy-hooks/": f"{site}/guides/webhooks/"},
    )
    edits = {edit.finding: edit for edit in OfflineDrafter().draft(request).draft.edits}
    # Written as a path in the Markdown, so rewritten as a path (never as the crawler's absolute URL).
    assert edits["redirected_link"].old.endswith("/guides/deploy-hooks/")
    assert edits["redirected_link"].new.endswith("/guides/webhooks/")
    assert "http" not in edits["redirected_link"].new
    assert edits["broken_link"].old == "[old form guide](/guides/spam-filtering/)"
    assert edits["broken_link"].new == "old form guide"


def test_internal_links_skip_the_brand_and_need_a_shared_topic() -> None:
    from sitesteward.draft import LinkCandidate, suggest_internal_links

    page = (
        "---\\ntitle: Custom domains on Larkspur\\n---\\n"
        "Every Larkspur site gets an address. Point your domain at Larkspur, then set up webhooks and "
        "deploy hooks so that everyone's changes rebuild the site.\\n"
    )
    candidates = [
        LinkCandidate(url="https://s.test/blog/", title="Blog – news from the Larkspur team"),
        LinkCandidate(url="https://s.test/blog/two/", title="Larkspur 2.0: faster builds for everyone"),
        LinkCandidate(url="https://s.test/about/", title="About Larkspur"),
        LinkCandidate(
            url="https://s.test/guides/webhooks/",
            title="Webhooks and deploy hooks on Larkspur",
            headings=["Deploy hooks"],
        ),
    ]
    edits = suggest_internal_links("https://s.test/guides/custom-domains/", page, candidates, max_links=3)
    anchors = {edit.new for edit in edits}
    assert all("[Larkspur]" not in anchor and "[everyone" not in anchor for anchor in anchors)
    assert [edit.source_url for edit in edits] == ["https://s.test/guides/webhooks/"]
