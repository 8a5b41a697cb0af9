"""The audit batch cache key: it moves with what the checks read (content hash, thresholds, day), not
with timings, so an unchanged site's batches come from the result cache."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

from sitesteward.facts import FactsCollector, PageFacts
from sitesteward.models import AuditThresholds
from tasks.audit import _batch_key
from tests.unit.test_audit import page

DAY = date(2025, 6, 1)


def _facts(**overrides: Any) -> list[PageFacts]:
    collector = FactsCollector()
    return [collector.facts_of(page(path, links=["/a"], **overrides)) for path in ("/1", "/2")]


def _key(pages: list[PageFacts], thresholds: AuditThresholds | None = None, today: date = DAY) -> str:
    parameters = {"pages": pages, "thresholds": thresholds or AuditThresholds(), "today": today}
    return _batch_key(None, parameters)  # type: ignore[arg-type]  # the context is not read


def test_same_facts_same_key_whatever_the_timings() -> None:
    pages = _facts()
    slower = [dataclasses.replace(item, elapsed_ms=item.elapsed_ms + 250.0) for item in pages]
    assert _key(pages) == _key(_facts()) == _key(slower)


def test_key_moves_with_content_thresholds_and_day() -> None:
    base = _key(_facts())
    assert _key(_facts(data={"text_hash": "changed"})) != base  # the main text changed
    assert _key(_facts(data={"title": "Another title for the page"})) != base
    assert _key(_facts(), AuditThresholds(thin_words=10)) != base
    assert _key(_facts(), today=date(2026, 6, 1)) != base  # stale_date depends on the day
