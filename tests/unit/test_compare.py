"""Citations, source snapshots and the deterministic comparison (42% -> 57%)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from sitesteward.compare import ClaimCheck, check_claims, compare_page, find_figures
from sitesteward.models import Link, LinkOutcome, PageData, Severity
from sitesteward.sources import cited_sources, extract_main_text, snapshot_source, text_hash

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
PAGE_URL = "https://blog.example.com/deploy-daily/"
SURVEY = "https://research.example.org/state-of-deployment"
T1 = datetime(2024, 1, 10, tzinfo=UTC)
T2 = datetime(2024, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("42%", ["percent:42"]),
        ("42 %", ["percent:42"]),
        ("42 percent", ["percent:42"]),
        ("42.0 per cent", ["percent:42"]),
        ("1,234,567 users", ["number:1234567"]),
        ("1234567 users", ["number:1234567"]),
        ("in 2021", ["year:2021"]),
        ("on March 5, 2024", ["date:2024-03-05"]),
        ("on 5 March 2024", ["date:2024-03-05"]),
        ("on 2024-03-05", ["date:2024-03-05"]),
        ("in March 2024", ["month:2024-03"]),
        ("fell by a third[3]", []),
        ("costs 3.50 each", ["number:3.5"]),
    ],
)
def test_find_figures_normalises(text: str, keys: list[str]) -> None:
    assert [f.key for f in find_figures(text)] == keys


def _snapshot(name: str, at: datetime) -> object:
    return snapshot_source(SURVEY, (FIXTURES / name).read_text(), retrieved_at=at)


def test_snapshot_uses_trafilatura_and_records_http_meta() -> None:
    snapshot = snapshot_source(
        SURVEY,
        (FIXTURES / "survey_v1.html").read_text(),
        http_meta={"status": 200, "ETag": '"v1"', "Last-Modified": "Tue, 05 Mar 2024 10:00:00 GMT"},
        retrieved_at=T1,
    )
    assert snapshot.extractor == "trafilatura"
    assert "42% of teams deploy" in snapshot.text
    assert "Privacy" not in snapshot.text  # boilerplate dropped
    assert snapshot.text_hash == text_hash(snapshot.text)
    assert (snapshot.status, snapshot.etag, snapshot.retrieved_at) == (200, '"v1"', T1)
    assert snapshot.last_modified == "Tue, 05 Mar 2024 10:00:00 GMT"


def test_lxml_fallback_when_trafilatura_finds_nothing() -> None:
    text, extractor = extract_main_text("<html><body><p>Only 7%.</p></body></html>")
    assert "Only 7%." in text
    assert extractor in {"trafilatura", "lxml"}
    text, extractor = extract_main_text("<html><body><td>Rate: 7%</td></body></html>")
    assert "7%" in text
    assert extract_main_text("") == ("", "none")


def test_text_hash_ignores_rewrapping() -> None:
    assert text_hash("a  b\nc") == text_hash("a b c")
    assert text_hash("a b c") != text_hash("a b d")


def test_cited_sources_finds_links_cites_footnotes_and_source_lines() -> None:
    citations = cited_sources((FIXTURES / "page.html").read_text(), PAGE_URL, PageData())
    by_url = {c.url: c for c in citations}
    survey = by_url[SURVEY]
    assert survey.kind == "link"
    assert survey.sentence.startswith("As of 2023, 42% of teams deploy")
    assert by_url["https://incidents.example.org/report"].kind == "footnote"
    assert by_url["https://incidents.example.org/report"].sentence.startswith("Incidents fell by a third")
    source_line = by_url["https://stats.example.org/rollbacks"]
    assert source_line.kind == "source_line"
    assert source_line.sentence == "Teams report 30 percent fewer rollbacks."
    assert by_url["https://flags.example.org/intro"].kind == "cite"
    assert "https://twitter.example.com/exampleblog" not in by_url  # navigation is not a citation
    assert sum(1 for c in citations if c.url == "https://incidents.example.org/report") == 1


def test_cited_sources_uses_extraction_in_main_flags() -> None:
    html = (
        '<html><body><main><p>See <a href="https://a.example/x">A</a> and <a href="https://b.example/y">B</a>.'
        "</p></main></body></html>"
    )
    data = PageData(
        links=[
            Link(href="https://a.example/x", internal=False, in_main=True),
            Link(href="https://b.example/y", internal=False, in_main=False),
        ]
    )
    assert [c.url for c in cited_sources(html, PAGE_URL, data)] == ["https://a.example/x"]
    assert cited_sources("", PAGE_URL, data) == []


def test_source_that_changed_produces_source_changed_and_claim_unsupported() -> None:
    citations = cited_sources((FIXTURES / "page.html").read_text(), PAGE_URL, PageData())
    before = snapshot_source(SURVEY, (FIXTURES / "survey_v1.html").read_text(), retrieved_at=T1)
    after = snapshot_source(SURVEY, (FIXTURES / "survey_v2.html").read_text(), retrieved_at=T2)
    comparison = compare_page(PAGE_URL, "page", citations, [after], [before], compared_at=T2)
    codes = [f.code for f in comparison.findings]
    assert "source_changed" in codes
    assert "claim_unsupported" in codes
    (diff,) = comparison.diffs
    assert "-As of 2023, 42% of teams" in diff.diff and "+As of 2024, 57% of teams" in diff.diff
    figure = next(c for c in comparison.claims if c.figure == "42%")
    assert not figure.supported
    assert figure.replacement == "57%"
    assert figure.source_quote is not None and figure.source_quote.startswith("As of 2024, 57% of teams")
    assert comparison.source_hashes[SURVEY] == after.text_hash
    # JSON round trip: evidence-ready
    assert type(comparison).model_validate_json(comparison.model_dump_json()) == comparison


def test_unchanged_source_gives_no_findings() -> None:
    citations = cited_sources((FIXTURES / "page.html").read_text(), PAGE_URL, PageData())
    before = snapshot_source(SURVEY, (FIXTURES / "survey_v1.html").read_text(), retrieved_at=T1)
    comparison = compare_page(
        PAGE_URL, "page", citations, [before], [before], previous_page_hash=text_hash("page")
    )
    assert comparison.findings == []
    assert all(c.supported for c in comparison.claims)


def test_unavailable_sources_keep_blocked_and_broken_apart() -> None:
    citations = cited_sources((FIXTURES / "page.html").read_text(), PAGE_URL, PageData())
    blocked = snapshot_source(SURVEY, "", outcome=LinkOutcome.blocked, http_meta={"status": 403})
    broken = snapshot_source(
        "https://tools.example.com/checklist", "", outcome=LinkOutcome.broken, http_meta={"status": 404}
    )
    comparison = compare_page(PAGE_URL, "page", citations, [blocked, broken])
    details = {f.target: f for f in comparison.findings if f.code == "source_unavailable"}
    assert details[SURVEY].detail.startswith("blocked (HTTP 403)")
    assert details[SURVEY].severity == Severity.warning
    assert details["https://tools.example.com/checklist"].detail.startswith("broken (HTTP 404)")
    assert details["https://tools.example.com/checklist"].severity == Severity.error
    assert comparison.claims == []  # no claim is checked against a source we could not read


def test_page_drift() -> None:
    comparison = compare_page(PAGE_URL, "new text", [], [], previous_page_hash=text_hash("old text"))
    assert [f.code for f in comparison.findings] == ["page_drifted"]


def test_ambiguous_replacement_is_not_proposed() -> None:
    source = snapshot_source(
        SURVEY,
        "<html><body><p>Teams deploying daily: 57% in Europe.</p><p>Teams deploying daily: 61% in Asia.</p>"
        "</body></html>",
    )
    (check,) = check_claims("Teams deploying daily: 42%.", source)
    assert not check.supported
    assert check.replacement is None


def test_percent_spelling_is_respected() -> None:
    source = snapshot_source(SURVEY, "<html><body><p>Now 57% of teams deploy daily.</p></body></html>")
    (check,) = check_claims("About 42 percent of teams deploy daily.", source)
    assert check.replacement == "57 percent"


def test_judge_is_asked_only_for_changed_sources_without_figures() -> None:
    asked: list[str] = []

    def judge(sentence: str, source: object) -> ClaimCheck:
        asked.append(sentence)
        return ClaimCheck(
            page_sentence=sentence, source_url=SURVEY, supported=False, method="llm", rationale="r"
        )

    html = (
        '<html><body><main><p>Teams love it, says <a href="https://research.example.org/state-of-deployment">'
        "the survey</a>.</p></main></body></html>"
    )
    citations = cited_sources(html, PAGE_URL, PageData())
    before = snapshot_source(SURVEY, (FIXTURES / "survey_v1.html").read_text(), retrieved_at=T1)
    after = snapshot_source(SURVEY, (FIXTURES / "survey_v2.html").read_text(), retrieved_at=T2)
    comparison = compare_page(PAGE_URL, "p", citations, [after], [before], judge=judge)
    assert asked == ["Teams love it, says the survey."]
    assert any(f.code == "claim_unsupported" for f in comparison.findings)
    compare_page(PAGE_URL, "p", citations, [before], [before], judge=judge)
    assert len(asked) == 1  # unchanged source: no model call


def test_an_old_figure_kept_as_history_no_longer_supports_the_claim() -> None:
    html = (
        "<html><body><main><p>As of 2025, 57% of teams use static sites, up from 42% in our 2019 survey.</p>"
        "</main></body></html>"
    )
    source = snapshot_source(SURVEY, html, retrieved_at=T2)
    checks = check_claims("As of 2019, 42% of teams use static sites.", source)
    by_figure = {check.figure: check for check in checks}
    assert by_figure["42%"].supported is False
    assert by_figure["42%"].replacement == "57%"
    # A figure the source states as current still counts.
    assert check_claims("57% of teams use static sites.", source)[0].supported is True


def test_a_figure_stated_in_the_past_tense_still_counts() -> None:
    html = (
        "<html><body><main><p>The median time to first byte was 48 ms in our study.</p></main></body></html>"
    )
    source = snapshot_source(SURVEY, html, retrieved_at=T2)
    checks = check_claims("The median time to first byte was 48 ms.", source)
    assert [(check.figure, check.supported) for check in checks] == [("48", True)]
