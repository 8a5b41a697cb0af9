"""The reviewer's view of a draft: Markdown shown in the approval form (Prefect renders it).

Everything that came from a crawl or a model is untrusted: it is escaped so it cannot forge links,
images, headings or HTML in the form, and diffs sit in code fences longer than any backtick run inside
them, so they cannot close their own fence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from sitesteward.draft import SourceQuote
from sitesteward.models import Draft, Edit, Finding
from sitesteward.readability import Readability
from sitesteward.sources import SourceSnapshot

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")
_MAX_FIELD = 1_500


def escape_markdown(text: str, *, limit: int = _MAX_FIELD) -> str:
    """Neutralise untrusted text for inline Markdown: no links, images, emphasis, headings or HTML."""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _diff_block(edit: Edit) -> str:
    old_lines = edit.old.splitlines() or [""]
    new_lines = edit.new.splitlines() or [""]
    body = "\n".join([*(f"- {line}" for line in old_lines), *(f"+ {line}" for line in new_lines)])
    fence = _fence(body)
    return f"{fence}diff\n{body}\n{fence}"


def _date(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "unknown date"


def review_markdown(
    draft: Draft,
    findings: Sequence[Finding],
    sources: Sequence[SourceQuote | SourceSnapshot] = (),
    warnings: Sequence[str] = (),
    readability_before: Readability | None = None,
    readability_after: Readability | None = None,
    *,
    draft_sha: str | None = None,
) -> str:
    """Render what the reviewer sees: per edit the finding, old -> new, the source quote and its date.

    Args:
        draft: The draft under review.
        findings: The job's findings (matched to edits by code and target).
        sources: Quotes or snapshots (for the retrieval date of each edit's source).
        warnings: Validator warnings and injection flags, shown first.
        readability_before: Flesch reading ease of the page now.
        readability_after: ... and with the draft applied.
        draft_sha: Shown so the reviewer knows exactly which draft they approve.
    """
    retrieved: dict[str, datetime | None] = {}
    for source in sources:
        retrieved.setdefault(source.url, source.retrieved_at)
        if isinstance(source, SourceSnapshot) and source.final_url:
            retrieved.setdefault(source.final_url, source.retrieved_at)
    lines = [f"## Review: {escape_markdown(draft.page_url)}", ""]
    lines.append(
        f"Drafted by **{escape_markdown(draft.drafter)}** (prompt {escape_markdown(draft.prompt_version)})"
    )
    if draft_sha:
        lines.append(f"Draft `{draft_sha[:16]}`")
    if draft.summary:
        lines += ["", f"Summary: {escape_markdown(draft.summary)}"]
    all_warnings = [*warnings, *draft.warnings]
    if all_warnings:
        lines += ["", "### ⚠ Warnings", ""]
        lines += [f"- {escape_markdown(w, limit=400)}" for w in all_warnings]
    if readability_before or readability_after:
        before = f"{readability_before.flesch_reading_ease:.1f}" if readability_before else "n/a"
        after = f"{readability_after.flesch_reading_ease:.1f}" if readability_after else "n/a"
        lines += ["", f"Reading ease (Flesch): {before} → {after}"]
    if not draft.edits:
        lines += ["", "_No edits proposed._"]
    for number, edit in enumerate(draft.edits, start=1):
        lines += [
            "",
            f"### Edit {number}: {escape_markdown(edit.kind)} ({escape_markdown(edit.finding)})",
            "",
        ]
        finding = next(
            (
                f
                for f in findings
                if f.code == edit.finding and (f.target is None or f.target == edit.source_url)
            ),
            next((f for f in findings if f.code == edit.finding), None),
        )
        if finding is not None:
            target = f" — {escape_markdown(finding.target)}" if finding.target else ""
            lines.append(f"Finding: **{escape_markdown(finding.code)}** ({finding.severity}){target}")
            if finding.detail:
                lines.append(f"Detail: {escape_markdown(finding.detail)}")
            lines.append("")
        if edit.kind in {"set_title", "set_description"} and not edit.old:
            lines.append(f"(currently absent) → {escape_markdown(edit.new)}")
        else:
            lines.append(_diff_block(edit))
        if edit.justification:
            lines += ["", f"Why: {escape_markdown(edit.justification)}"]
        if edit.source_url:
            when = _date(retrieved.get(edit.source_url))
            lines += ["", f"Source: {escape_markdown(edit.source_url)} (retrieved {when})"]
        if edit.source_quote:
            lines += ["", f"> {escape_markdown(edit.source_quote)}"]
    return "\n".join(lines) + "\n"
