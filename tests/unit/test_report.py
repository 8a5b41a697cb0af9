"""build_report, the JSON/CSV writers, the markdown summary, the table and the SVG chart."""

from __future__ import annotations

import csv
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree

from sitesteward.audit import finding
from sitesteward.models import AuditReport, CrawlResult, FetchError, Page, PageChange, PageData
from sitesteward.report import (
    build_report,
    chart_svg,
    findings_table,
    summary_markdown,
    worst_pages,
    write_csv,
    write_json,
)

SITE = "https://example.com"
START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _page(path: str, **fields: object) -> Page:
    values: dict[str, object] = {
        "url": SITE + path,
        "final_url": SITE + path,
        "status": 200,
        "fetched_at": START,
        "data": PageData(title=f"Title of {path}", word_count=321, text_hash="h"),
    }
    values.update(fields)
    return Page(**values)  # type: ignore[arg-type]


def _result() -> CrawlResult:
    return CrawlResult(
        site=SITE,
        started=START,
        finished=START + timedelta(seconds=4),
        pages=[
            _page("/"),
            _page("/a", depth=1),
            _page("/b", status=None, error=FetchError.timeout, data=None, depth=1),
            _page("/c", status=304, not_modified=True, depth=2),
        ],
    )


FINDINGS = [
    finding("missing_meta_description", SITE + "/"),
    finding("broken_link", SITE + "/a", "target answered 404", SITE + "/gone"),
    finding("stale_date", SITE + "/a", "older than 2 years: as of 2019"),
    finding("timeout", SITE + "/b"),
    finding("broken_link", SITE + "/", "target answered 404", SITE + "/gone"),
]
CHANGES = {
    SITE + "/": PageChange.unchanged,
    SITE + "/a": PageChange.changed,
    SITE + "/c": PageChange.unchanged,
    SITE + "/old": PageChange.removed,
}


def _report() -> AuditReport:
    return build_report(_result(), FINDINGS, CHANGES, stats_extra={"run": "abc"})


def test_build_report_pages_and_stats() -> None:
    report = _report()
    first = report.pages[0]
    assert dataclasses.asdict(first) == {
        "url": SITE + "/",
        "final_url": SITE + "/",
        "status": 200,
        "title": "Title of /",
        "word_count": 321,
        "change": "unchanged",
        "depth": 0,
        "error": None,
        "not_modified": False,
        "in_sitemap": False,
        "elapsed_ms": 0.0,
        "bytes": 0,
        "findings": 2,
    }
    assert report.pages[2].error == "timeout" and report.pages[2].title is None
    stats = report.stats
    assert stats["pages"] == 4 and stats["pages_fetched"] == 3 and stats["pages_errors"] == 1
    assert stats["pages_not_modified"] == 1
    assert stats["findings_by_code"] == {
        "broken_link": 2,
        "missing_meta_description": 1,
        "stale_date": 1,
        "timeout": 1,
    }
    assert stats["findings_by_severity"] == {"error": 2, "warning": 3, "notice": 0}
    assert stats["changes"] == {"new": 0, "changed": 1, "unchanged": 2, "removed": 1}
    assert stats["removed"] == [SITE + "/old"]
    assert stats["duration_seconds"] == 4.0 and stats["pages_per_second"] == 0.75
    assert stats["run"] == "abc"
    assert [item.severity.value for item in report.findings][:2] == ["error", "error"]  # sorted


def test_write_json_round_trips(tmp_path: Path) -> None:
    report = _report()
    path = write_json(report, tmp_path / "out" / "report.json")
    loaded = json.loads(path.read_text(encoding="utf-8"))
    assert set(loaded) == {"site", "started", "finished", "pages", "findings", "stats"}
    assert AuditReport.model_validate(loaded) == report
    assert list((tmp_path / "out").iterdir()) == [path]  # no temporary file left behind


def test_write_csv_columns_and_formula_defusing(tmp_path: Path) -> None:
    findings = [*FINDINGS, finding("title_length", SITE + "/x", '=HYPERLINK("http://evil")')]
    path = write_csv(findings, tmp_path / "findings.csv")
    with path.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == ["code", "severity", "url", "target", "detail"]
    assert len(rows) == len(findings)
    assert rows[0]["code"] == "broken_link" and rows[0]["target"] == SITE + "/gone"
    assert [row["target"] for row in rows if row["code"] == "timeout"] == [""]
    (evil,) = [row for row in rows if row["code"] == "title_length"]
    assert evil["detail"].startswith("'=")


def test_summary_markdown() -> None:
    text = summary_markdown(_report())
    assert text.startswith(f"# Audit of {SITE}\n")
    assert "4 pages crawled in 4.0 s (0.75 pages/s); 5 findings: 2 errors, 3 warnings, 0 notices." in text
    assert "| `broken\\_link` | error | 2 |" in text
    assert "## Worst pages" in text
    worst = text.split("## Worst pages")[1]
    assert worst.index(SITE + "/a") < worst.index(SITE + "/b")  # error+warning before a warning
    assert "0 new, 1 changed, 2 unchanged, 1 removed." in text
    assert f"- Changed: {SITE}/a" in text and f"- Removed: {SITE}/old" in text


def test_summary_escapes_crawled_text() -> None:
    result = CrawlResult(
        site="https://x.example/<script>",
        started=START,
        finished=START,
        pages=[_page("/p|q")],
    )
    report = build_report(result, [finding("missing_title", SITE + "/p|q<img src=x>")], {})
    text = summary_markdown(report)
    assert "<script>" not in text and "<img" not in text
    assert "p\\|q" in text  # a pipe cannot break the table


def test_summary_without_findings() -> None:
    report = build_report(_result(), [], {})
    assert "No findings." in summary_markdown(report)


def test_worst_pages_ranking() -> None:
    ranked = worst_pages(_report(), limit=2)
    # "/" and "/a" both hold an error and a warning: ties sort by URL
    assert [url for url, _score, _counts in ranked] == [SITE + "/", SITE + "/a"]


def test_findings_table() -> None:
    rows = findings_table(_report())
    assert len(rows) == 5
    assert rows[0] == {
        "code": "broken_link",
        "severity": "error",
        "url": SITE + "/",
        "target": SITE + "/gone",
        "detail": "target answered 404",
    }
    assert all(isinstance(value, str) for row in rows for value in row.values())
    assert len(findings_table(_report(), limit=2)) == 2


def test_chart_svg_is_valid_xml_with_escaped_labels() -> None:
    svg = chart_svg({"broken_link": 5, "stale_date": 2, "<b>&evil</b>": 1, "zero": 0})
    root = ElementTree.fromstring(svg)  # well-formed
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = [element.text for element in root.iter("{http://www.w3.org/2000/svg}text")]
    assert texts[:2] == ["broken_link", "5"]
    assert "<b>&evil</b>" in texts  # escaped in the markup, intact once parsed
    assert "zero" not in texts
    widths = [int(rect.get("width", "0")) for rect in root.iter("{http://www.w3.org/2000/svg}rect")]
    assert widths == sorted(widths, reverse=True) and widths[0] == 360


def test_chart_svg_empty() -> None:
    root = ElementTree.fromstring(chart_svg({}))
    assert "No findings" in "".join(root.itertext())
