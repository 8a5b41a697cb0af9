"""Verification: is the approved edit live, and did the page not regress?

Verification reads the page as the public sees it (a fresh fetch through the crawler, bypassing
caches) and compares with the page before the edit. Only a passed verification moves a job to
``monitoring``; "written" alone is never reported as done.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin

from pydantic import Field

from sitesteward.errors import InvalidUrl
from sitesteward.models import Contract, Draft, Edit, Page, PageData
from sitesteward.urls import normalize_url

_MD_LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_MD_MARKS = re.compile(r"(\*\*|__|\*|_|`|~~)")
_SPACE = re.compile(r"\s+")


class Check(Contract):
    name: str
    passed: bool
    detail: str = ""


class VerificationResult(Contract):
    """The recorded outcome of one verification fetch."""

    url: str
    status: int | None
    passed: bool
    checks: list[Check] = Field(default_factory=list)
    text_hash: str | None = Field(
        default=None, description="Main-text hash of the live page (the new baseline)."
    )


def visible_text(markdown: str) -> str:
    """What a Markdown snippet looks like once rendered: link text kept, markup dropped, spaces folded."""
    text = _MD_LINK.sub(lambda m: m.group(1), markdown)
    text = _MD_MARKS.sub("", text)
    return _fold(text)


def _fold(text: str) -> str:
    return _SPACE.sub(" ", text).strip().casefold()


def _is_indexable(data: PageData, headers: dict[str, str]) -> bool:
    robots = f"{data.meta_robots or ''},{headers.get('x-robots-tag', '')}".lower()
    return "noindex" not in robots


def _added_links(edit: Edit) -> list[str]:
    """Link targets the edit puts on the page: Markdown link targets new in ``new``, or a bare URL."""
    before = {m.group(2) for m in _MD_LINK.finditer(edit.old)}
    added = [m.group(2) for m in _MD_LINK.finditer(edit.new) if m.group(2) not in before]
    bare = edit.new.strip()
    if not added and bare and not _SPACE.search(bare) and bare.startswith(("/", "http://", "https://")):
        added = [bare]  # the edit rewrote a link target (a redirect or dead link fixed in place)
    return added


def _removed_links(edit: Edit) -> list[str]:
    """Markdown link targets ``old`` had that ``new`` drops (a dead link removed, its text kept)."""
    after = {m.group(2) for m in _MD_LINK.finditer(edit.new)}
    return [m.group(2) for m in _MD_LINK.finditer(edit.old) if m.group(2) not in after]


def _links_gone(hrefs: list[str], page_url: str, data: PageData) -> bool:
    live = {link.href for link in data.links}
    for href in hrefs:
        try:
            if normalize_url(urljoin(page_url, href)) in live:
                return False
        except InvalidUrl:
            continue
    return True


def _links_live(hrefs: list[str], page_url: str, data: PageData) -> bool:
    live = {link.href for link in data.links}
    for href in hrefs:
        try:
            wanted = normalize_url(urljoin(page_url, href))
        except InvalidUrl:
            return False
        if wanted not in live:
            return False
    return True


def _edit_check(edit: Edit, page_url: str, data: PageData) -> Check:
    if edit.kind == "set_title":
        ok = (data.title or "").strip() == edit.new.strip()
        return Check(name="title_set", passed=ok, detail=f"live title: {data.title!r}")
    if edit.kind == "set_description":
        ok = (data.meta_description or "").strip() == edit.new.strip()
        return Check(name="description_set", passed=ok, detail=f"live description: {data.meta_description!r}")
    removed = _removed_links(edit)
    if removed and not _links_gone(removed, page_url, data):
        return Check(name="link_removed", passed=False, detail="still linked: " + ", ".join(removed))
    hrefs = _added_links(edit)
    if hrefs and (edit.kind == "add_link" or hrefs == [edit.new.strip()]):
        return Check(name="link_present", passed=_links_live(hrefs, page_url, data), detail=", ".join(hrefs))
    expected = visible_text(edit.new)
    ok = (not expected or expected in _fold(data.main_text)) and _links_live(hrefs, page_url, data)
    return Check(name="text_present", passed=ok, detail=expected[:120])


def verify_live(page: Page, draft: Draft, before: PageData | None) -> VerificationResult:
    """Check that every approved edit is visible on ``page`` and that nothing regressed.

    Args:
        page: A fresh fetch of the live page (``data`` must carry ``main_text``).
        draft: The approved draft that was published.
        before: The page as crawled before the edit, for the regression checks (None: skip them).

    Returns:
        The result with one check per edit plus status, title, canonical and indexability checks.
    """
    checks = [
        Check(name="status_ok", passed=page.status == 200 and page.error is None, detail=str(page.status))
    ]
    data = page.data
    if data is None:
        checks.append(Check(name="parsed", passed=False, detail=page.error_detail or "no HTML"))
        return VerificationResult(url=page.url, status=page.status, passed=False, checks=checks)
    checks.extend(_edit_check(edit, page.final_url, data) for edit in draft.edits)
    if before is not None:
        title_edited = any(edit.kind == "set_title" for edit in draft.edits)
        if not title_edited:
            checks.append(
                Check(
                    name="title_kept",
                    passed=bool(data.title) or not before.title,
                    detail=f"{before.title!r} -> {data.title!r}",
                )
            )
        checks.append(
            Check(
                name="canonical_kept",
                passed=data.canonical == before.canonical,
                detail=f"{before.canonical} -> {data.canonical}",
            )
        )
        was_indexable = _is_indexable(before, {})
        checks.append(
            Check(
                name="indexable_kept",
                passed=_is_indexable(data, page.headers) or not was_indexable,
                detail="noindex appeared" if was_indexable and not _is_indexable(data, page.headers) else "",
            )
        )
    return VerificationResult(
        url=page.url,
        status=page.status,
        passed=all(check.passed for check in checks),
        checks=checks,
        text_hash=data.text_hash,
    )
