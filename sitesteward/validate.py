"""Guard rails for drafts: an edit may only replace its quoted snippet, with safe text and allowed links.

Raises :class:`~sitesteward.errors.InvalidModelOutput` for drafts that do not fit the document (old
text absent or ambiguous, overlapping or oversized edits) and :class:`~sitesteward.errors.PolicyViolation`
for unsafe content (scripts, frames, forms, event handlers, ``javascript:`` URLs, links to foreign hosts,
front-matter edits outside ``set_title``/``set_description``). Both are permanent: never retried.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import Field

from sitesteward.content import parse_document
from sitesteward.errors import InvalidModelOutput, PolicyViolation
from sitesteward.models import Contract, Draft, Edit
from sitesteward.urls import host_of

#: Default limits (overridable per call).
MAX_EDITS = 20
MAX_EDIT_CHARS = 2_000
MAX_TITLE_CHARS = 120
MAX_DESCRIPTION_CHARS = 320

_FORBIDDEN: list[tuple[str, re.Pattern[str]]] = [
    ("<script>", re.compile(r"<\s*script\b", re.IGNORECASE)),
    ("<iframe>", re.compile(r"<\s*i?frame\b", re.IGNORECASE)),
    ("<form>", re.compile(r"<\s*(form|input|button|textarea|select)\b", re.IGNORECASE)),
    ("<object>/<embed>", re.compile(r"<\s*(object|embed|applet|base|meta|link)\b", re.IGNORECASE)),
    ("<style>", re.compile(r"<\s*style\b", re.IGNORECASE)),
    ("event-handler attribute", re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE | re.DOTALL)),
    ("javascript: URL", re.compile(r"(?:java|vb)\s*script\s*:", re.IGNORECASE)),
    ("data: URL", re.compile(r"(?:\]\(\s*|(?:href|src)\s*=\s*[\"']?\s*)data:", re.IGNORECASE)),
]
_URL_PATTERNS = [
    re.compile(r"\]\(\s*<?([^)\s>]+)"),  # [text](url) and ![alt](url)
    re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE),  # reference definitions
    re.compile(r"(?:href|src|action|formaction|srcset)\s*=\s*[\"']?([^\"'\s>]+)", re.IGNORECASE),
    re.compile(r"<((?:https?:)?//[^>\s]+)>", re.IGNORECASE),  # autolinks
    re.compile(r"(?<![\w(\"'=<])((?:https?:)?//[^\s)<>\"']+)", re.IGNORECASE),  # bare URLs
]
_INVISIBLE = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


class ValidationResult(Contract):
    """A draft that passed, with what the reviewer should still look at."""

    ok: bool = True
    warnings: list[str] = Field(default_factory=list)
    edits_checked: int = 0


def _urls(text: str) -> list[str]:
    found: list[str] = []
    for pattern in _URL_PATTERNS:
        found.extend(match.group(1) for match in pattern.finditer(text))
    return found


def _host(url: str) -> str | None:
    """Host of an absolute or protocol-relative URL; None for relative, fragment or mailto links."""
    if url.startswith("//"):
        url = "https:" + url
    if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", url):
        return None  # relative link: stays on the site
    scheme = url.split(":", 1)[0].lower()
    if scheme not in {"http", "https"}:
        return f"{scheme}:"  # mailto:, tel:, ftp: ... judged by the caller
    try:
        return host_of(url)
    except Exception:
        return "invalid"


def _host_allowed(host: str, allowed: frozenset[str]) -> bool:
    bare = host.split(":", 1)[0].removeprefix("www.")
    return host in allowed or bare in {h.split(":", 1)[0].removeprefix("www.") for h in allowed}


def _count(pattern: re.Pattern[str], text: str) -> int:
    return len(pattern.findall(text))


def _front_matter_end(document: str) -> int:
    parsed = parse_document(document)
    if not parsed.meta:
        return 0
    index = document.rfind(parsed.body) if parsed.body else len(document)
    return max(index, 0)


def validate_draft(
    draft: Draft,
    *,
    document_text: str,
    allowed_link_hosts: Iterable[str],
    max_edit_chars: int = MAX_EDIT_CHARS,
    max_edits: int = MAX_EDITS,
    page_url: str | None = None,
) -> ValidationResult:
    """Check a draft against the document it edits and the guard rails.

    Args:
        draft: The proposed edits.
        document_text: The page's source document (front matter + Markdown body) the edits apply to.
        allowed_link_hosts: The site's hosts plus the cited sources' hosts; links elsewhere are refused.
        max_edit_chars: Longest allowed old or new text of one edit.
        max_edits: Most edits in one draft.
        page_url: When given, the draft must be for this page (a model cannot change the target).

    Returns:
        The result with warnings for the reviewer (already-applied edits, mailto links, changed numbers).

    Raises:
        InvalidModelOutput: the edits do not fit the document.
        PolicyViolation: an edit adds unsafe content, a foreign link, or touches the front matter.
    """
    allowed = frozenset(h.lower() for h in allowed_link_hosts if h)
    warnings: list[str] = []
    if page_url is not None and draft.page_url != page_url:
        raise PolicyViolation(f"draft targets {draft.page_url!r}, not {page_url!r}")
    if len(draft.edits) > max_edits:
        raise InvalidModelOutput(f"{len(draft.edits)} edits (at most {max_edits})")
    body_start = _front_matter_end(document_text)
    spans: list[tuple[int, int, int]] = []
    for number, edit in enumerate(draft.edits, start=1):
        label = f"edit {number} ({edit.kind}, {edit.finding})"
        _check_content(edit, label, allowed, max_edit_chars, warnings)
        if edit.kind in {"set_title", "set_description"}:
            _check_metadata(edit, label, document_text)
            continue
        if not edit.old:
            raise InvalidModelOutput(f"{label}: empty old text (a replacement must quote what it replaces)")
        occurrences = [m.start() for m in re.finditer(re.escape(edit.old), document_text)]
        if not occurrences:
            if edit.new and edit.new in document_text:
                warnings.append(f"{label}: already applied (new text present, old text absent)")
                continue
            raise InvalidModelOutput(f"{label}: old text does not occur in the document: {edit.old[:80]!r}")
        if len(occurrences) > 1:
            raise InvalidModelOutput(f"{label}: old text occurs {len(occurrences)} times; quote more context")
        start = occurrences[0]
        end = start + len(edit.old)
        if start < body_start:
            raise PolicyViolation(
                f"{label}: replace_text inside the front matter (use set_title/set_description)"
            )
        for other_start, other_end, other in spans:
            if start < other_end and other_start < end:
                raise InvalidModelOutput(f"{label}: overlaps edit {other}")
        spans.append((start, end, number))
        if edit.kind == "add_link" and _urls(edit.new) == _urls(edit.old):
            raise InvalidModelOutput(f"{label}: add_link adds no link")
        if edit.old.count("\n") != edit.new.count("\n") and "\n\n" in edit.new:
            warnings.append(f"{label}: changes paragraph structure")
    return ValidationResult(ok=True, warnings=warnings, edits_checked=len(draft.edits))


def _check_content(
    edit: Edit, label: str, allowed: frozenset[str], max_chars: int, warnings: list[str]
) -> None:
    if len(edit.new) > max_chars or len(edit.old) > max_chars:
        raise InvalidModelOutput(f"{label}: longer than {max_chars} characters")
    if "\x00" in edit.new or (_INVISIBLE.search(edit.new) and not _INVISIBLE.search(edit.old)):
        raise PolicyViolation(f"{label}: adds invisible or control characters")
    for name, pattern in _FORBIDDEN:
        if _count(pattern, edit.new) > _count(pattern, edit.old):
            raise PolicyViolation(f"{label}: adds {name}")
    old_urls = set(_urls(edit.old))
    for url in _urls(edit.new):
        if url in old_urls:
            continue
        host = _host(url.strip())
        if host is None:
            continue
        if host.endswith(":"):
            if host == "mailto:":
                warnings.append(f"{label}: adds a mailto link {url}")
                continue
            raise PolicyViolation(f"{label}: adds a {host} link")
        if not _host_allowed(host, allowed):
            raise PolicyViolation(f"{label}: links to {host}, which is neither the site nor a cited source")
    if re.search(r"(?<!\\)!\[[^\]]*\]\(", edit.new) and _count(re.compile(r"!\["), edit.new) > _count(
        re.compile(r"!\["), edit.old
    ):
        warnings.append(f"{label}: adds an image")


def _check_metadata(edit: Edit, label: str, document: str) -> None:
    limit = MAX_TITLE_CHARS if edit.kind == "set_title" else MAX_DESCRIPTION_CHARS
    if not edit.new.strip():
        raise InvalidModelOutput(f"{label}: empty value")
    if "\n" in edit.new or "\r" in edit.new or len(edit.new) > limit:
        raise InvalidModelOutput(f"{label}: must be one line of at most {limit} characters")
    if re.search(r"<[a-zA-Z/!]", edit.new):
        raise PolicyViolation(f"{label}: HTML in a {edit.kind.removeprefix('set_')}")
    key = "title" if edit.kind == "set_title" else "description"
    current = parse_document(document).meta.get(key)
    if edit.old and isinstance(current, str) and edit.old != current:
        raise InvalidModelOutput(f"{label}: old {key} {edit.old[:60]!r} is not the current one")
    if edit.old and current is None and edit.old not in document:
        raise InvalidModelOutput(f"{label}: old {key} does not occur in the document")
