"""dates.find_dates, canonical phrases and staleness."""

from __future__ import annotations

from datetime import date

import pytest

from sitesteward.dates import (
    DateMention,
    date_phrases,
    find_dates,
    is_stale,
    parse_phrase,
    stale_phrases,
)


def _found(text: str) -> list[tuple[str, str]]:
    return [(mention.kind, mention.phrase) for mention in find_dates(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Prices as of 2019 were lower.", [("as_of", "as of 2019")]),
        ("As at 3 March 2017 the rate was 2%.", [("as_of", "as of 2017-03-03")]),
        ("as of Q3 2018", [("as_of", "as of 2018")]),
        ("as of March 2020", [("as_of", "as of 2020-03")]),
        ("In 2021 we moved offices.", [("event", "event in 2021")]),  # it happened: history, not stale
        ("The best laptops in 2021 are these.", [("in_year", "in 2021")]),
        ("during early 2016", [("in_year", "in 2016")]),
        ("in Sept. 2015", [("in_year", "in 2015-09")]),
        ("Open since 2018.", [("since", "since 2018")]),
        ("Updated: 2020-05-01", [("updated", "updated 2020-05-01")]),
        ("Last updated March 3, 2019", [("updated", "updated 2019-03-03")]),
        ("Last updated: March 3rd, 2019", [("updated", "updated 2019-03-03")]),
        ("modified on 12th Jan 2014", [("updated", "updated 2014-01-12")]),
        ("Reviewed 2022", [("updated", "updated 2022")]),
        ("© 2015-2018 Acme", [("copyright", "© 2018")]),
        ("Copyright 2020 Acme", [("copyright", "© 2020")]),
        ("Released 2019-03-03.", [("date", "date 2019-03-03")]),
        ("on 4 July 2010 at noon", [("date", "date 2010-07-04")]),
    ],
)
def test_find_dates(text: str, expected: list[tuple[str, str]]) -> None:
    assert _found(text) == expected


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        # Saved from the Python docs (python3-doc), where each was reported stale before.
        ("'Released in 1975 by Steven Spielberg'", "event"),
        ("The very first article about Python was written in 1991 and is now quite outdated.", "event"),
        ("distutils is the original build system first added\nto the standard library in 1998.", "event"),
        ("In 2019, prices rose by 5%.", "event"),
        ("The meeting took place in May 2019.", "event"),
        # A statement about that year, or a plan for it: stale once the year is long gone.
        ("Prices in 2019 are the highest on record.", "in_year"),
        ("Support is expected in 2020.", "in_year"),
        ("The launch is planned in early 2021.", "in_year"),
        ("We need in 2021 more staff.", "in_year"),
        ("The most advanced phones in 2021 are these.", "in_year"),  # a list that goes stale
        ("Recommended tools in 2020: the editor we use and two linters.", "in_year"),
        ("x" * 57 + "sed in 2021 the price is 10 euros.", "in_year"),  # a word cut by the look-behind window
        ("It was a good year. In 2019 the fee is 10 euros.", "in_year"),  # the past tense is another sentence
    ],
)
def test_an_in_year_phrase_that_tells_an_event_is_history(text: str, kind: str) -> None:
    (mention,) = find_dates(text)
    assert mention.kind == kind
    assert is_stale(mention, TODAY, 2) is (kind == "in_year")
    assert parse_phrase(mention.phrase) == DateMention(
        kind, mention.year, mention.month, None, mention.phrase
    )


@pytest.mark.parametrize(
    "text",
    [
        "We had 2019 visitors.",  # a number, not a date phrase
        "in 2000s",  # a decade
        "in 12019",
        "in 1850",  # out of range
        "within 2019",  # "in" inside a word
        "version 2.2019",
        "",
    ],
)
def test_no_dates(text: str) -> None:
    assert find_dates(text) == []


def test_overlaps_prefer_the_specific_kind_and_keep_order() -> None:
    text = "Last updated: March 3, 2019. As of 2019, prices rose; in 2018 they stay flat; since 2017 up."
    assert _found(text) == [
        ("updated", "updated 2019-03-03"),
        ("as_of", "as of 2019"),
        ("in_year", "in 2018"),
        ("since", "since 2017"),
    ]
    mention = find_dates(text)[0]
    assert mention.text == "Last updated: March 3, 2019"
    assert (mention.year, mention.month, mention.day, mention.start) == (2019, 3, 3, 0)


def test_invalid_day_falls_back_to_the_year() -> None:
    assert _found("updated 2019-02-30") == [("updated", "updated 2019")]


def test_long_text_far_apart() -> None:
    text = "filler words " * 5000 + "as of 2019" + " more" * 5000 + " in 2020"
    assert _found(text) == [("as_of", "as of 2019"), ("in_year", "in 2020")]


def test_date_phrases_unique_and_limited() -> None:
    assert date_phrases("as of 2019 and again as of 2019, in 2020") == ["as of 2019", "in 2020"]
    many = " ".join(f"in {year}" for year in range(1950, 2030))
    assert len(date_phrases(many, limit=5)) == 5


@pytest.mark.parametrize(
    "phrase", ["as of 2019", "in 2021-05", "updated 2019-03-03", "since 2018", "© 2018", "date 2010-07-04"]
)
def test_phrase_round_trip(phrase: str) -> None:
    mention = parse_phrase(phrase)
    assert mention is not None and mention.phrase == phrase


@pytest.mark.parametrize(
    "phrase", ["", "as of", "as of 19", "updated 2019-13", "updated 2019-02-30", "hello"]
)
def test_parse_phrase_rejects(phrase: str) -> None:
    assert parse_phrase(phrase) is None


TODAY = date(2025, 6, 1)


@pytest.mark.parametrize(
    ("phrase", "stale_years", "stale"),
    [
        ("as of 2022", 2, True),
        ("as of 2023", 2, False),  # could mean December 2023: not two years old yet
        ("in 2019", 2, True),
        ("updated 2023-05-31", 2, True),
        ("updated 2023-06-01", 2, False),
        ("updated 2023-06", 2, False),
        ("since 2001", 2, False),  # a start, not a snapshot
        ("© 2010", 2, False),
        ("date 2010-01-01", 2, False),
        ("as of 2024", 0, True),
        ("as of 2030", 0, False),  # future
    ],
)
def test_is_stale(phrase: str, stale_years: int, stale: bool) -> None:
    mention = parse_phrase(phrase)
    assert mention is not None
    assert is_stale(mention, TODAY, stale_years) is stale


def test_is_stale_with_custom_kinds_and_leap_day() -> None:
    mention = DateMention("in_year", 2019)
    assert not is_stale(mention, TODAY, 2, kinds={"as_of"})
    assert is_stale(DateMention("as_of", 2020, 2, 28), date(2024, 2, 29), 4)


def test_stale_phrases() -> None:
    phrases = ["as of 2019", "since 2010", "garbage", "updated 2025-01-01"]
    assert stale_phrases(phrases, TODAY, 2) == ["as of 2019"]
