"""Flesch reading ease, the reviewer's markdown and triage notes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sitesteward.draft import SourceQuote
from sitesteward.models import Draft, Edit, Finding, Severity
from sitesteward.readability import count_syllables, reading_ease
from sitesteward.review import escape_markdown, review_markdown


@pytest.mark.parametrize(
    ("word", "syllables"),
    [
        ("cat", 1),
        ("make", 1),
        ("table", 2),
        ("water", 2),
        ("deployment", 3),
        ("readability", 5),
        ("jumped", 1),
    ],
)
def test_syllables(word: str, syllables: int) -> None:
    assert count_syllables(word) == syllables


def test_reading_ease_orders_texts() -> None:
    easy = reading_ease("The cat sat on the mat. The dog ran.")
    hard = reading_ease(
        "Organisational interoperability necessitates comprehensive institutionalisation of "
        "multidisciplinary methodological considerations."
    )
    assert easy.flesch_reading_ease > 90
    assert hard.flesch_reading_ease < 0
    assert (easy.words, easy.sentences) == (9, 2)
    assert reading_ease("").words == 0


def test_reading_ease_matches_the_formula() -> None:
    result = reading_ease("The cat sat on the mat.")
    expected = 206.835 - 1.015 * (6 / 1) - 84.6 * (result.syllables / 6)
    assert result.flesch_reading_ease == pytest.approx(expected, abs=0.05)


def _draft(old: str, new: str, quote: str = "As of 2024, 57% of teams deploy.") -> Draft:
    edit = Edit(
        old=old,
        new=new,
        finding="claim_unsupported",
        justification="source now says 57%",
        source_url="https://research.example.org/s",
        source_quote=quote,
    )
    return Draft(
        page_url="https://blog.example.com/p/", edits=[edit], drafter="offline", prompt_version="offline-1"
    )


def test_review_markdown_shows_finding_diff_quote_and_date() -> None:
    finding = Finding(
        code="claim_unsupported",
        severity=Severity.error,
        url="https://blog.example.com/p/",
        target="https://research.example.org/s",
        detail="42% is no longer in the source",
    )
    quote = SourceQuote(
        url="https://research.example.org/s", quote="q", retrieved_at=datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    )
    text = review_markdown(
        _draft("42% of teams", "57% of teams"),
        [finding],
        [quote],
        warnings=['hidden text asks to ignore previous instructions: "..."'],
        draft_sha="abcdef0123456789ffff",
    )
    assert "```diff\n- 42% of teams\n+ 57% of teams\n```" in text
    assert "retrieved 2024-06-01 12:00 UTC" in text
    assert "claim\\_unsupported" in text and "Warnings" in text
    assert "> As of 2024, 57% of teams deploy\\." in text
    assert "abcdef0123456789" in text


def test_untrusted_text_cannot_forge_links_images_or_html() -> None:
    evil = (
        "Click [approve](https://evil.example/) ![x](https://evil.example/i.png) <img src=x onerror=alert(1)>"
    )
    text = review_markdown(_draft("42%", "57%", quote=evil), [], [], warnings=[evil])
    assert "[approve](" not in text and "![x](" not in text and "<img" not in text
    assert "\\[approve\\]\\(https://evil\\.example/\\)" in text
    assert escape_markdown("# Heading") == "\\# Heading"


def test_diff_fence_cannot_be_closed_from_inside() -> None:
    text = review_markdown(_draft("42%", "57%\n```\n# Approved!\n```"), [], [])
    fence_lines = [line for line in text.splitlines() if line.startswith("```")]
    assert fence_lines[0] == "````diff" and fence_lines[-1] == "````"
