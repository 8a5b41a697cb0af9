"""The audit report: JSON and CSV files, a markdown summary, a table and an inline SVG chart.

Everything crawled (titles, URLs, details) is untrusted text: the markdown escapes it, the SVG escapes
it, and CSV cells that a spreadsheet would run as a formula are defused.
"""

from __future__ import annotations

import csv
import html
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

from pydantic import TypeAdapter

from sitesteward.audit import FINDING_CODES, sort_findings
from sitesteward.facts import CrawlView, PageView
from sitesteward.models import AuditReport, Finding, PageChange, PageRow, Severity

_ANY: TypeAdapter[object] = TypeAdapter(object)
_ROW: TypeAdapter[PageRow] = TypeAdapter(PageRow)
CSV_COLUMNS = ("code", "severity", "url", "target", "detail")
_SEVERITY_WEIGHT = {Severity.error: 100, Severity.warning: 10, Severity.notice: 1}
_SEVERITY_ORDER = (Severity.error, Severity.warning, Severity.notice)


def _page_row(page: PageView, change: PageChange | None, finding_count: int) -> PageRow:
    data = page.data
    return PageRow(
        url=page.url,
        final_url=page.final_url,
        status=page.status,
        title=data.title if data else None,
        word_count=data.word_count if data else None,
        change=change.value if change else None,
        depth=page.depth,
        error=page.error.value if page.error else None,
        not_modified=page.not_modified,
        in_sitemap=page.in_sitemap,
        elapsed_ms=round(page.elapsed_ms, 1),
        bytes=page.bytes,
        findings=finding_count,
    )


def build_report(
    result: CrawlView,
    findings: list[Finding],
    changes: dict[str, PageChange],
    *,
    stats_extra: dict[str, object] | None = None,
) -> AuditReport:
    """Assemble the audit report.

    Args:
        result: The crawl.
        findings: Every finding (``audit_site``'s output).
        changes: ``diff_pages``'s output (removed URLs appear only in the stats).
        stats_extra: More statistics to merge in (e.g. timings of the flow's steps); they win on clashes.

    Returns:
        The report: compact page rows, the findings (sorted), and statistics.
    """
    per_page = Counter(item.url for item in findings)
    pages = [_page_row(page, changes.get(page.url), per_page[page.url]) for page in result.pages]
    duration = max((result.finished - result.started).total_seconds(), 0.0)
    fetched = [page for page in result.pages if page.status is not None]
    change_counts = Counter(change.value for change in changes.values())
    stats: dict[str, object] = {
        "pages": len(result.pages),
        "pages_fetched": len(fetched),
        "pages_errors": sum(
            1 for page in result.pages if page.error is not None or (page.status or 0) >= 400
        ),
        "pages_not_modified": sum(1 for page in result.pages if page.not_modified),
        "link_checks": len(result.link_checks),
        "sitemap_urls": len(result.sitemap_entries),
        "robots_disallowed": len(result.robots_disallowed),
        "out_of_budget": result.out_of_budget,
        "findings": len(findings),
        "findings_by_code": dict(sorted(Counter(item.code for item in findings).items())),
        "findings_by_severity": {
            severity.value: sum(1 for item in findings if item.severity == severity)
            for severity in _SEVERITY_ORDER
        },
        "changes": {change.value: change_counts.get(change.value, 0) for change in PageChange},
        "removed": sorted(url for url, change in changes.items() if change == PageChange.removed),
        "duration_seconds": round(duration, 3),
        "pages_per_second": round(len(fetched) / duration, 2) if duration > 0 else None,
    }
    if stats_extra:
        stats.update(stats_extra)
    return AuditReport(
        site=result.site,
        started=result.started,
        finished=result.finished,
        pages=pages,
        findings=sort_findings(findings),
        stats=stats,
    )


def _atomic_write(path: Path, write: Callable[[TextIO], None], *, newline: str | None = None) -> None:
    """Run ``write`` on a temporary file next to ``path``, then rename it over ``path``.

    The content is streamed, never built as one string: a 100,000-page report would otherwise hold a
    second copy of itself (about 1.5 KB a page) just to be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline=newline) as stream:
            write(stream)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _json(value: object, *, indent: int | None = None) -> str:
    return _ANY.dump_json(value, indent=indent).decode("utf-8")


def _write_array(stream: TextIO, name: str, items: Iterable[str]) -> None:
    stream.write(f'  "{name}": [')
    empty = True
    for item in items:
        stream.write("\n    " if empty else ",\n    ")
        stream.write(item)
        empty = False
    stream.write("],\n" if empty else "\n  ],\n")


def _write_report(report: AuditReport, stream: TextIO) -> None:
    # The same JSON as report.model_dump_json(), written piece by piece, one page row or finding a line.
    stream.write("{\n")
    for name in ("site", "started", "finished"):
        stream.write(f'  "{name}": {_json(getattr(report, name))},\n')
    _write_array(stream, "pages", (_ROW.dump_json(row).decode("utf-8") for row in report.pages))
    _write_array(stream, "findings", (item.model_dump_json() for item in report.findings))
    stats = _json(report.stats, indent=2).replace("\n", "\n  ")
    stream.write(f'  "stats": {stats}\n}}\n')


def write_json(report: AuditReport, path: str | Path) -> Path:
    """Write the report as JSON (atomically: a reader never sees half a file). Returns the path."""
    target = Path(path)
    _atomic_write(target, lambda stream: _write_report(report, stream))
    return target


def _csv_cell(value: str) -> str:
    # A cell starting with = + - @ (or a tab/CR) runs as a formula in spreadsheets; titles are crawled text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def write_csv(findings: list[Finding], path: str | Path) -> Path:
    """Write findings as CSV with the columns code, severity, url, target, detail. Returns the path."""

    def write(stream: TextIO) -> None:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for item in sort_findings(findings):
            row = (item.code, item.severity.value, item.url, item.target or "", item.detail)
            writer.writerow([_csv_cell(cell) for cell in row])

    target = Path(path)
    _atomic_write(target, write, newline="")
    return target


def _md(text: object, limit: int = 120) -> str:
    """Escape crawled text for a markdown table cell (no HTML, links, emphasis or broken columns)."""
    value = " ".join(str(text).split())
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    value = html.escape(value, quote=False)
    for char in "\\`*_[]()|#!~":
        value = value.replace(char, "\\" + char)
    return value


def worst_pages(report: AuditReport, limit: int = 10) -> list[tuple[str, int, Counter[str]]]:
    """Pages with the heaviest findings: (url, score, count per severity), worst first."""
    score: Counter[str] = Counter()
    severities: dict[str, Counter[str]] = {}
    for item in report.findings:
        score[item.url] += _SEVERITY_WEIGHT[item.severity]
        severities.setdefault(item.url, Counter())[item.severity.value] += 1
    ranked = sorted(score, key=lambda url: (-score[url], url))[:limit]
    return [(url, score[url], severities[url]) for url in ranked]


def summary_markdown(report: AuditReport, *, max_rows: int = 10) -> str:
    """A markdown summary: totals, findings per code, worst pages, changes since the last crawl.

    Used as a Prefect markdown artifact and printed by the CLI.
    """
    stats = report.stats
    by_severity = Counter(item.severity.value for item in report.findings)
    lines = [
        f"# Audit of {_md(report.site)}",
        "",
        f"{len(report.pages)} pages crawled in {stats.get('duration_seconds', '?')} s "
        f"({stats.get('pages_per_second') or '?'} pages/s); "
        f"{len(report.findings)} findings: "
        + ", ".join(f"{by_severity.get(severity.value, 0)} {severity.value}s" for severity in _SEVERITY_ORDER)
        + ".",
        "",
    ]
    counts = Counter(item.code for item in report.findings)
    if counts:
        lines += ["## Findings by code", "", "| code | severity | count | meaning |", "|---|---|---:|---|"]
        for code, count in sorted(counts.items(), key=lambda pair: (-pair[1], pair[0])):
            severity, meaning = FINDING_CODES.get(code, (Severity.notice, ""))
            lines.append(f"| `{_md(code)}` | {severity.value} | {count} | {_md(meaning)} |")
        lines.append("")
        lines += ["## Worst pages", "", "| page | errors | warnings | notices |", "|---|---:|---:|---:|"]
        for url, _score, severities in worst_pages(report, max_rows):
            lines.append(
                f"| {_md(url)} | {severities['error']} | {severities['warning']} | {severities['notice']} |"
            )
        lines.append("")
    else:
        lines += ["No findings.", ""]
    changes = {change.value: 0 for change in PageChange}
    changes.update(Counter(row.change for row in report.pages if row.change))
    removed = stats.get("removed")
    removed_urls = [str(url) for url in removed] if isinstance(removed, list) else []
    changes[PageChange.removed.value] = len(removed_urls)
    lines += [
        "## Changes since the last crawl",
        "",
        ", ".join(f"{changes[change.value]} {change.value}" for change in PageChange) + ".",
        "",
    ]
    for label, urls in (
        (
            "Changed",
            [row.url for row in report.pages if row.change == PageChange.changed.value],
        ),
        ("New", [row.url for row in report.pages if row.change == PageChange.new.value]),
        ("Removed", removed_urls),
    ):
        if urls:
            shown = ", ".join(_md(url) for url in urls[:max_rows])
            more = f" and {len(urls) - max_rows} more" if len(urls) > max_rows else ""
            lines.append(f"- {label}: {shown}{more}")
    return "\n".join(lines).rstrip() + "\n"


def findings_table(report: AuditReport, *, limit: int | None = None) -> list[dict[str, str]]:
    """Rows for a Prefect table artifact: code, severity, url, target, detail (strings, sorted)."""
    rows = [
        {
            "code": item.code,
            "severity": item.severity.value,
            "url": item.url,
            "target": item.target or "",
            "detail": item.detail,
        }
        for item in sort_findings(report.findings)
    ]
    return rows if limit is None else rows[:limit]


def chart_svg(counts: dict[str, int], *, width: int = 640, bar_height: int = 18) -> str:
    """A dependency-free inline SVG bar chart of findings per code (largest first, text escaped).

    Args:
        counts: Findings per code (zero and negative counts are left out).
        width: Width of the image in pixels.
        bar_height: Height of one bar in pixels.

    Returns:
        An ``<svg>`` document as a string.
    """
    items = sorted(
        ((code, count) for code, count in counts.items() if count > 0), key=lambda p: (-p[1], p[0])
    )
    gap, label_width, number_width = 6, 220, 60
    if not items:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="30" role="img" '
            'aria-label="No findings"><text x="4" y="20" font-family="sans-serif" font-size="13">'
            "No findings</text></svg>"
        )
    height = len(items) * (bar_height + gap) + gap
    biggest = max(count for _code, count in items)
    bar_space = max(width - label_width - number_width, 10)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Findings per code" '
        'font-family="sans-serif" font-size="12">'
    ]
    colours = {Severity.error: "#d1242f", Severity.warning: "#bf8700", Severity.notice: "#0969da"}
    for index, (code, count) in enumerate(items):
        y = gap + index * (bar_height + gap)
        length = max(1, round(bar_space * count / biggest))
        severity = FINDING_CODES.get(code, (Severity.notice, ""))[0]
        label = html.escape(code if len(code) <= 32 else code[:31] + "…", quote=True)
        parts.append(
            f'<text x="{label_width - 6}" y="{y + bar_height - 5}" text-anchor="end">{label}</text>'
            f'<rect x="{label_width}" y="{y}" width="{length}" height="{bar_height}" '
            f'fill="{colours[severity]}"><title>{label}: {count}</title></rect>'
            f'<text x="{label_width + length + 4}" y="{y + bar_height - 5}">{count}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
