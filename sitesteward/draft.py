"""Drafting refreshes: the request a drafter gets, the offline drafter, and internal-link suggestions.

Every edit a drafter proposes is "replace this exact old text with this new text" in the page's source
document (front matter + Markdown body), so applying it twice is a no-op and the validator can check
that nothing outside the quoted snippets is touched.

Finding codes the offline drafter acts on (aliases accepted, since audit codes are owned elsewhere):

=========================  ==========================================================================
``claim_unsupported``      update the stale figure to the source's current one (with the quote)
``link_redirected``        replace the link by its final URL (``DraftRequest.redirects``)
``source_unavailable``     *broken*: drop the dead link, keep its text; *blocked*: flag for the reviewer
``link_broken``            drop the dead link, keep its text
``title_too_long``         shorten the title at a word boundary (``set_title``)
``title_missing``          use the first heading (``set_title``)
``description_missing``    first sentences of the page's own text (``set_description``)
``description_too_long``   shorten at a sentence or word boundary (``set_description``)
``stale_date``             refresh "as of YEAR" only when an updated figure's source quote names a newer
                           year
=========================  ==========================================================================
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from pydantic import Field

from sitesteward.compare import ClaimCheck, Comparison
from sitesteward.content import parse_document
from sitesteward.models import Contract, Draft, Edit, Finding
from sitesteward.sources import SourceSnapshot, normalize_space
from sitesteward.urls import host_of

#: Bump when the offline rules change: it is part of every offline cache key.
OFFLINE_VERSION = "offline-1"

REDIRECT_CODES = frozenset({"link_redirected", "redirected_link", "redirect", "redirect_chain"})
BROKEN_CODES = frozenset({"link_broken", "broken_link", "dead_link"})
TITLE_LONG_CODES = frozenset({"title_length", "title_too_long", "title_long"})
TITLE_MISSING_CODES = frozenset({"title_missing", "missing_title"})
DESCRIPTION_MISSING_CODES = frozenset(
    {"missing_meta_description", "description_missing", "meta_description_missing", "missing_description"}
)
DESCRIPTION_LONG_CODES = frozenset({"meta_description_length", "description_too_long", "description_long"})
STALE_CODES = frozenset({"stale_date", "stale_as_of", "stale_year", "outdated_date"})

_AS_OF = re.compile(r"\b([Aa]s of)\s+((?:19|20)\d{2})\b")
_YEAR = re.compile(r"(?<!\d)((?:19|20)\d{2})(?!\d)")
_TERM = re.compile(r"[A-Za-z][A-Za-z0-9'-]{2,}")
_TERM_STOPWORDS = frozenset(
    [
        "the",
        "and",
        "for",
        "with",
        "from",
        "that",
        "this",
        "your",
        "you",
        "our",
        "are",
        "was",
        "were",
        "has",
        "have",
        "how",
        "what",
        "why",
        "when",
        "where",
        "which",
        "into",
        "about",
        "over",
        "under",
        "more",
        "less",
        "than",
        "page",
        "home",
        "guide",
        "guides",
        "using",
        "use",
        # words that say nothing about a page make misleading anchors
        "everyone",
        "anyone",
        "someone",
        "people",
        "every",
        "other",
        "thing",
        "things",
        "ways",
        "best",
        "good",
        "new",
        "all",
        "one",
        "two",
        "any",
        "notes",
        "team",
        "teams",
    ]
)


class SourceQuote(Contract):
    """A quote from a cited source as retrieved (what the reviewer checks an edit against)."""

    url: str
    quote: str
    retrieved_at: datetime | None = None
    text_hash: str = ""


class LLMUsage(Contract):
    """Tokens and cost of the model calls behind one draft (zero for the offline drafter)."""

    model: str = ""
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0


class DraftRequest(Contract):
    """Everything a drafter may use for one page; :meth:`inputs_hash` is the draft step's cache key."""

    page_url: str
    page_source: str = Field(description="The document edits apply to: front matter + Markdown body.")
    page_text: str = Field(default="", description="The rendered main text (context for the model).")
    title: str | None = Field(default=None, description="Current title when the source has no front matter.")
    description: str | None = None
    findings: list[Finding] = Field(default_factory=list)
    claims: list[ClaimCheck] = Field(default_factory=list)
    sources: list[SourceQuote] = Field(default_factory=list)
    source_hashes: dict[str, str] = Field(default_factory=dict, description="url -> snapshot text hash.")
    redirects: dict[str, str] = Field(default_factory=dict, description="Linked URL -> its final URL.")
    site_hosts: list[str] = Field(default_factory=list)
    title_max: int = Field(default=60, ge=10, le=1000)
    description_max: int = Field(default=160, ge=50, le=5000)

    def inputs_hash(self, *, prompt_version: str, model: str) -> str:
        """Stable hash of the inputs that decide a draft (retrieval times excluded on purpose).

        Page content hash + findings + claims + source snapshot hashes + redirects + hosts + limits +
        prompt version + model. Two requests that would produce the same draft hash the same, so an
        unchanged re-run is a cache hit and makes no model call.
        """
        payload = {
            "page": hashlib.sha256(self.page_source.encode("utf-8")).hexdigest(),
            "url": self.page_url,
            "title": self.title,
            "description": self.description,
            "findings": sorted(f.model_dump_json() for f in self.findings),
            "claims": sorted(c.model_dump_json() for c in self.claims),
            "quotes": sorted((q.url, q.quote, q.text_hash) for q in self.sources),
            "sources": sorted(self.source_hashes.items()),
            "redirects": sorted(self.redirects.items()),
            "hosts": sorted(set(self.site_hosts)),
            "limits": [self.title_max, self.description_max],
            "prompt_version": prompt_version,
            "model": model,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()

    def allowed_link_hosts(self) -> frozenset[str]:
        """The site's hosts plus the hosts of cited sources and redirect targets (for validation)."""
        hosts = {h.lower() for h in self.site_hosts} | {host_of(self.page_url)}
        hosts |= {host_of(q.url) for q in self.sources} | {host_of(u) for u in self.source_hashes}
        hosts |= {host_of(c.source_url) for c in self.claims} | {host_of(u) for u in self.redirects.values()}
        return frozenset(h for h in hosts if h)


def build_draft_request(
    page_url: str,
    page_source: str,
    *,
    comparison: Comparison | None = None,
    findings: Sequence[Finding] = (),
    sources: Sequence[SourceSnapshot] = (),
    redirects: dict[str, str] | None = None,
    site_hosts: Iterable[str] = (),
    page_text: str = "",
    title: str | None = None,
    description: str | None = None,
) -> DraftRequest:
    """Assemble a :class:`DraftRequest` from the audit findings, a comparison and source snapshots.

    Source quotes are the claim checks' quotes (the sentence each relied on), tied to the snapshot's
    retrieval time and hash.
    """
    by_url = {s.url: s for s in sources}
    all_findings = list(findings) + (list(comparison.findings) if comparison else [])
    unique_findings = list({f.model_dump_json(): f for f in all_findings}.values())
    claims = list(comparison.claims) if comparison else []
    quotes: dict[tuple[str, str], SourceQuote] = {}
    for claim in claims:
        if claim.source_quote:
            snapshot = by_url.get(claim.source_url)
            quotes[(claim.source_url, claim.source_quote)] = SourceQuote(
                url=claim.source_url,
                quote=claim.source_quote,
                retrieved_at=snapshot.retrieved_at if snapshot else None,
                text_hash=snapshot.text_hash if snapshot else "",
            )
    hashes = dict(comparison.source_hashes) if comparison else {}
    hashes.update({s.url: s.text_hash for s in sources})
    return DraftRequest(
        page_url=page_url,
        page_source=page_source,
        page_text=page_text,
        title=title,
        description=description,
        findings=unique_findings,
        claims=claims,
        sources=list(quotes.values()),
        source_hashes=hashes,
        redirects=dict(redirects or {}),
        site_hosts=sorted(set(site_hosts)),
    )


class DraftResult(Contract):
    """A draft plus what it cost and the cache key it was made under."""

    draft: Draft
    usage: LLMUsage = Field(default_factory=LLMUsage)
    inputs_hash: str


@runtime_checkable
class Drafter(Protocol):
    """Anything that turns a :class:`DraftRequest` into reviewable edits."""

    @property
    def name(self) -> str:
        """``offline`` or ``llm:<model>`` (recorded on the draft)."""
        ...

    @property
    def prompt_version(self) -> str:
        """Version of the rules or prompt (part of the cache key)."""
        ...

    def cache_key(self, request: DraftRequest) -> str:
        """The inputs hash this drafter would produce ``request``'s draft under."""
        ...

    def draft(self, request: DraftRequest) -> DraftResult:
        """Propose edits for the request's findings.

        Raises:
            TransientError: the model endpoint is rate-limited or unavailable (retry).
            InvalidModelOutput: the answer failed validation (do not retry).
        """
        ...


# --------------------------------------------------------------------------------------------- helpers


def _body_offset(document: str) -> int:
    """Where the Markdown body starts (0 when there is no front matter)."""
    parsed = parse_document(document)
    if not parsed.meta:
        return 0
    index = document.rfind(parsed.body) if parsed.body else len(document)
    return index if index >= 0 else 0


def unique_snippet(document: str, start: int, end: int, *, floor: int = 0) -> tuple[int, int] | None:
    """Grow ``document[start:end]`` word by word (within its line) until it occurs exactly once.

    Returns:
        The (start, end) of the unique snippet, or None when the whole line is not unique.
    """
    line_start = max(document.rfind("\n", 0, start) + 1, floor)
    line_end = document.find("\n", end)
    line_end = len(document) if line_end < 0 else line_end
    grow_left = True
    while document.count(document[start:end]) > 1:
        if start <= line_start and end >= line_end:
            return None
        if (grow_left and start > line_start) or end >= line_end:
            previous_space = document.rfind(" ", line_start, max(start - 1, line_start))
            start = line_start if previous_space < 0 else previous_space + 1
        else:
            next_space = document.find(" ", min(end + 1, line_end), line_end)
            end = line_end if next_space < 0 else next_space
        grow_left = not grow_left
    return start, end


def _word_overlap(left: str, right: str) -> int:
    return len({w.lower() for w in _TERM.findall(left)} & {w.lower() for w in _TERM.findall(right)})


def _line_at(document: str, index: int) -> str:
    start = document.rfind("\n", 0, index) + 1
    end = document.find("\n", index)
    return document[start : len(document) if end < 0 else end]


def _occurrences(document: str, needle: str, floor: int) -> list[int]:
    found: list[int] = []
    pattern = re.compile(r"(?<![\w.])" + re.escape(needle) + r"(?![\w]|[.,]\d)")
    for match in pattern.finditer(document, floor):
        found.append(match.start())
    return found


def _shorten(text: str, limit: int) -> str:
    """Cut at the last sentence end, else word boundary, within ``limit`` characters."""
    text = normalize_space(text)
    if len(text) <= limit:
        return text
    cut = text[:limit]
    sentence_end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    if sentence_end >= limit // 2:
        return cut[: sentence_end + 1]
    space = cut.rfind(" ")
    words = (cut[:space] if space > 0 else cut).rstrip(" ,;:-–—|").split(" ")
    while len(words) > 1 and words[-1].lower() in _DANGLING:
        words.pop()
    return " ".join(words).rstrip(" ,;:-–—|")


_DANGLING = frozenset(
    ["a", "an", "and", "as", "at", "by", "for", "from", "in", "into", "of", "on", "or", "the", "to", "with"]
)
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_DECORATION = re.compile(r"[*_`>#]+")


def _plain_paragraphs(body: str) -> list[str]:
    paragraphs: list[str] = []
    in_code = False
    for block in re.split(r"\n\s*\n", body):
        if block.lstrip().startswith("```"):
            in_code = not in_code if block.count("```") % 2 else in_code
            continue
        if in_code or block.lstrip().startswith(("#", "|", "<", "- ", "* ", "1.")):
            continue
        text = normalize_space(_MD_DECORATION.sub("", _MD_LINK.sub(r"\1", block)))
        if len(text) >= 40:
            paragraphs.append(text)
    return paragraphs


def _first_heading(body: str) -> str | None:
    match = re.search(r"^#\s+(.+?)\s*#*\s*$", body, re.MULTILINE)
    return normalize_space(_MD_LINK.sub(r"\1", match.group(1))) if match else None


# --------------------------------------------------------------------------------------------- offline


class OfflineDrafter:
    """Deterministic edits from the findings alone: no model, no network, same input -> same draft."""

    def __init__(self, *, version: str = OFFLINE_VERSION) -> None:
        self._version = version

    @property
    def name(self) -> str:
        return "offline"

    @property
    def prompt_version(self) -> str:
        return self._version

    def cache_key(self, request: DraftRequest) -> str:
        return request.inputs_hash(prompt_version=self._version, model="offline")

    def draft(self, request: DraftRequest) -> DraftResult:
        """Propose edits for the findings the offline rules know (see the module docstring)."""
        builder = _EditBuilder(request.page_source)
        warnings: list[str] = []
        self._figures(request, builder, warnings)
        self._links(request, builder, warnings)
        self._metadata(request, builder, warnings)
        edits = builder.edits
        handled = {e.finding for e in edits}
        for finding in request.findings:
            if finding.code not in handled and finding.code not in {"source_changed", "page_drifted"}:
                warnings.append(
                    f"no automatic edit for {finding.code}"
                    + (f" ({finding.target})" if finding.target else "")
                )
        summary = (
            f"{len(edits)} edit(s): " + ", ".join(sorted({e.finding for e in edits})) if edits else "no edits"
        )
        draft = Draft(
            page_url=request.page_url,
            edits=edits,
            summary=summary,
            drafter=self.name,
            prompt_version=self._version,
            warnings=sorted(set(warnings)),
        )
        return DraftResult(draft=draft, usage=LLMUsage(model="offline"), inputs_hash=self.cache_key(request))

    # figures and "as of YEAR" -----------------------------------------------------------------------

    def _figures(self, request: DraftRequest, builder: _EditBuilder, warnings: list[str]) -> None:
        document = request.page_source
        floor = _body_offset(document)
        updated_sentences: dict[str, ClaimCheck] = {}
        for claim in request.claims:
            if claim.supported or not claim.figure:
                continue
            if not claim.replacement:
                warnings.append(
                    f"{claim.figure!r} is not supported by {claim.source_url}; no unambiguous update"
                )
                continue
            positions = _occurrences(document, claim.figure, floor)
            if not positions:
                warnings.append(f"{claim.figure!r} not found in the page source")
                continue
            position = max(positions, key=lambda p: _word_overlap(_line_at(document, p), claim.page_sentence))
            if builder.replace(
                position,
                position + len(claim.figure),
                claim.replacement,
                floor=floor,
                finding="claim_unsupported",
                justification=f"the source now says {claim.replacement} (was {claim.figure})",
                source_url=claim.source_url,
                source_quote=claim.source_quote,
            ):
                updated_sentences[claim.page_sentence] = claim
            else:
                warnings.append(f"{claim.figure!r} could not be located unambiguously")
        if not any(f.code in STALE_CODES for f in request.findings) and not updated_sentences:
            return
        for match in _AS_OF.finditer(document, floor):
            line = _line_at(document, match.start())
            updated = next(
                (
                    c
                    for s, c in updated_sentences.items()
                    if _word_overlap(line, s) >= 3 and match.group(0) in s
                ),
                None,
            )
            if updated is None or not updated.source_quote:
                continue  # only a source that supports the newer year may refresh it
            newer = sorted({y for y in _YEAR.findall(updated.source_quote) if y > match.group(2)})
            if len(newer) != 1:
                continue
            builder.replace(
                match.start(2),
                match.end(2),
                newer[0],
                floor=floor,
                finding="stale_date",
                justification=f"the source's current figure is for {newer[0]}",
                source_url=updated.source_url,
                source_quote=updated.source_quote,
            )

    # links --------------------------------------------------------------------------------------------

    def _links(self, request: DraftRequest, builder: _EditBuilder, warnings: list[str]) -> None:
        document = request.page_source
        floor = _body_offset(document)
        for finding in request.findings:
            target = finding.target
            if not target:
                continue
            if finding.code in REDIRECT_CODES or (
                finding.code not in BROKEN_CODES and target in request.redirects
            ):
                final = request.redirects.get(target)
                if not final or final == target:
                    continue
                for spelling, replacement in _spellings(target, final, request.page_url):
                    for start, end in _link_targets(document, spelling, floor):
                        builder.replace(
                            start,
                            end,
                            replacement,
                            floor=floor,
                            finding=finding.code,
                            justification=f"{target} redirects to {final}",
                            source_url=final,
                        )
            elif finding.code in BROKEN_CODES or (
                finding.code == "source_unavailable" and finding.detail.startswith("broken")
            ):
                dropped = False
                spans = [
                    match
                    for spelling, _ in _spellings(target, target, request.page_url)
                    for match in _link_spans(document, spelling, floor)
                ]
                for match in spans:
                    dropped |= builder.replace(
                        match[0],
                        match[1],
                        match[2],
                        floor=floor,
                        finding=finding.code,
                        justification=f"{target} is gone ({finding.detail or 'broken'}); link dropped",
                        source_url=target,
                    )
                if not dropped:
                    warnings.append(f"dead citation {target}: link not found in the page source")
                else:
                    warnings.append(
                        f"dead citation {target} removed: check whether the claim needs a new source"
                    )
            elif finding.code == "source_unavailable":
                warnings.append(f"source {target} refused our fetch ({finding.detail}); check it by hand")

    # title and description ----------------------------------------------------------------------------

    def _metadata(self, request: DraftRequest, builder: _EditBuilder, warnings: list[str]) -> None:
        parsed = parse_document(request.page_source)
        title = parsed.meta.get("title") if isinstance(parsed.meta.get("title"), str) else request.title
        description = parsed.meta.get("description")
        if not isinstance(description, str):
            description = request.description
        codes = {f.code for f in request.findings}
        if codes & TITLE_LONG_CODES and title:
            # drop a " | Site name" style suffix first, then cut at a word boundary
            core = re.split(r"\s+[|–—·-]\s+", title)[0] if len(title) > request.title_max else title
            new_title = _shorten(core, request.title_max)
            if new_title and new_title != title:
                builder.metadata(
                    "set_title",
                    title,
                    new_title,
                    finding=sorted(codes & TITLE_LONG_CODES)[0],
                    justification=f"title shortened to {len(new_title)} characters",
                )
        if codes & TITLE_MISSING_CODES and not title:
            heading = _first_heading(parsed.body)
            if heading:
                builder.metadata(
                    "set_title",
                    "",
                    _shorten(heading, request.title_max),
                    finding=sorted(codes & TITLE_MISSING_CODES)[0],
                    justification="title taken from the page's first heading",
                )
            else:
                warnings.append("title missing and the page has no heading to take one from")
        if codes & DESCRIPTION_MISSING_CODES and not description:
            paragraphs = _plain_paragraphs(parsed.body) or [normalize_space(request.page_text)]
            text = _shorten(paragraphs[0], request.description_max) if paragraphs[0] else ""
            if text:
                builder.metadata(
                    "set_description",
                    "",
                    text,
                    finding=sorted(codes & DESCRIPTION_MISSING_CODES)[0],
                    justification="description taken from the page's first paragraph",
                )
        if codes & DESCRIPTION_LONG_CODES and description and len(description) > request.description_max:
            builder.metadata(
                "set_description",
                description,
                _shorten(description, request.description_max),
                finding=sorted(codes & DESCRIPTION_LONG_CODES)[0],
                justification="description shortened",
            )


def _spellings(url: str, replacement: str, page_url: str) -> list[tuple[str, str]]:
    """How a link to ``url`` may be written in the page source, each with its replacement's spelling.

    The absolute URL always; for a link to the page's own site also the root-relative path (how
    Markdown sites usually link internally), replaced by the root-relative form of ``replacement``.
    """
    spellings = [(url, replacement)]
    target, page, final = urlsplit(url), urlsplit(page_url), urlsplit(replacement)
    if (target.scheme, target.netloc) == (page.scheme, page.netloc) and target.path:
        relative = target.path + (f"?{target.query}" if target.query else "")
        same_site = (final.scheme, final.netloc) == (page.scheme, page.netloc)
        final_relative = final.path + (f"?{final.query}" if final.query else "") if same_site else replacement
        spellings.append((relative, final_relative))
    return spellings


def _link_targets(document: str, url: str, floor: int) -> list[tuple[int, int]]:
    """Spans of ``url`` used as a link target: ``](url)``, ``](url "title")``, ``href="url"``, ``<url>``."""
    spans: list[tuple[int, int]] = []
    variants = {url, url.rstrip("/")} if url.endswith("/") and url.count("/") > 3 else {url}
    for variant in variants:
        escaped = re.escape(variant)
        pattern = re.compile(
            rf"(?<=\]\()({escaped})(?=[)\s])|(?<=href=[\"'])({escaped})(?=[\"'])|(?<=<)({escaped})(?=>)"
        )
        for match in pattern.finditer(document, floor):
            spans.append(match.span())
    return sorted(set(spans))


def _link_spans(document: str, url: str, floor: int) -> list[tuple[int, int, str]]:
    """Whole links to ``url`` with the text that replaces them when the link is dropped."""
    escaped = re.escape(url)
    found: list[tuple[int, int, str]] = []
    markdown = re.compile(rf"(?<!!)\[([^\]]+)\]\({escaped}(?:\s+\"[^\"]*\")?\)")
    html = re.compile(rf"<a\s[^>]*href=[\"']{escaped}[\"'][^>]*>(.*?)</a>", re.IGNORECASE | re.DOTALL)
    for pattern in (markdown, html):
        for match in pattern.finditer(document, floor):
            found.append((match.start(), match.end(), match.group(1)))
    return found


class _EditBuilder:
    """Collects non-overlapping edits whose old text is unique in the document."""

    def __init__(self, document: str) -> None:
        self.document = document
        self.edits: list[Edit] = []
        self._spans: list[tuple[int, int]] = []

    def replace(
        self,
        start: int,
        end: int,
        replacement: str,
        *,
        floor: int,
        finding: str,
        justification: str,
        source_url: str | None = None,
        source_quote: str | None = None,
    ) -> bool:
        """Replace ``document[start:end]`` by ``replacement`` inside a unique snippet; False if impossible."""
        span = unique_snippet(self.document, start, end, floor=floor)
        if span is None or any(span[0] < e and s < span[1] for s, e in self._spans):
            return False
        old = self.document[span[0] : span[1]]
        new = self.document[span[0] : start] + replacement + self.document[end : span[1]]
        if old == new:
            return False
        self._spans.append(span)
        self.edits.append(
            Edit(
                kind="replace_text",
                old=old,
                new=new,
                finding=finding,
                justification=justification,
                source_url=source_url,
                source_quote=source_quote,
            )
        )
        return True

    def metadata(self, kind: str, old: str, new: str, *, finding: str, justification: str) -> None:
        if any(e.kind == kind for e in self.edits):
            return
        if kind == "set_title":
            self.edits.append(
                Edit(kind="set_title", old=old, new=new, finding=finding, justification=justification)
            )
        else:
            self.edits.append(
                Edit(kind="set_description", old=old, new=new, finding=finding, justification=justification)
            )


# --------------------------------------------------------------------------------------------- links


class LinkCandidate(Contract):
    """A page of the same site that could be linked from the page being refreshed."""

    url: str
    title: str
    headings: list[str] = Field(default_factory=list)
    indexable: bool = True


def _anchor_phrases(title: str, common: set[str]) -> list[str]:
    """2-4 word phrases of a title that can carry a link, longest first.

    A single word ("Faster", "Hosting") says too little about the target to be an anchor; a phrase must
    hold a distinctive term and neither start nor end with a stop word ("deploy hooks", "custom domains").
    """
    words = re.findall(r"[A-Za-z0-9][A-Za-z0-9'.-]*", title)
    phrases: list[str] = []
    for size in (4, 3, 2):
        for start in range(len(words) - size + 1):
            chunk = words[start : start + size]
            first, last = chunk[0].lower(), chunk[-1].lower()
            if first in _TERM_STOPWORDS or last in _TERM_STOPWORDS or first in common or last in common:
                continue
            if not _terms(" ".join(chunk)) - common:
                continue
            phrases.append(" ".join(chunk))  # matched case-insensitively in the page
    return list(dict.fromkeys(phrases))


def _terms(text: str) -> set[str]:
    return {t.lower() for t in _TERM.findall(text) if t.lower() not in _TERM_STOPWORDS}


def _linked_already(document: str, url: str) -> bool:
    path = urlsplit(url).path or "/"
    patterns = {url, url.rstrip("/")}
    if path != "/":
        patterns |= {f"({path})", f"({path.rstrip('/')})", f'"{path}"', f'"{path.rstrip("/")}"'}
    return any(p in document for p in patterns)


def suggest_internal_links(
    page_url: str,
    page_source: str,
    candidates: Sequence[LinkCandidate | tuple[str, str, list[str], bool]],
    *,
    max_links: int = 3,
) -> list[Edit]:
    """Suggest ``add_link`` edits to related pages of the same site, by shared title/heading terms.

    A link is proposed only where the target is indexable, is not the page itself, is not linked from the
    page already, and one of its title's terms (or the whole title) appears in a body paragraph outside
    existing links, headings and code. Each target is linked at most once, each phrase used once.

    Returns:
        At most ``max_links`` edits, best matches first; deterministic for the same inputs.
    """
    floor = _body_offset(page_source)
    parsed = parse_document(page_source)
    page_terms = _terms(str(parsed.meta.get("title", ""))) | _terms(
        " ".join(re.findall(r"^#+\s+(.*)$", parsed.body, re.MULTILINE))
    )
    page_terms |= _terms(parsed.body)
    page_path = urlsplit(page_url).path.rstrip("/") or "/"
    pool = [
        raw
        if isinstance(raw, LinkCandidate)
        else LinkCandidate(url=raw[0], title=raw[1], headings=list(raw[2]), indexable=raw[3])
        for raw in candidates
    ]
    # Terms in many titles (the brand, the product, the section name) relate every page to every other
    # and make the worst anchors: only terms distinctive of a few pages count.
    title_terms = Counter(term for candidate in pool for term in _terms(candidate.title))
    common = {term for term, count in title_terms.items() if count > max(2, len(pool) // 5)}
    scored: list[tuple[int, str, LinkCandidate]] = []
    for candidate in pool:
        path = urlsplit(candidate.url).path.rstrip("/") or "/"
        if not candidate.indexable or path == page_path or _linked_already(page_source, candidate.url):
            continue
        shared = ((_terms(candidate.title) | _terms(" ".join(candidate.headings))) & page_terms) - common
        if len(shared) >= 2:  # one shared word is a coincidence, two are a topic
            scored.append((len(shared), candidate.url, candidate))
    scored.sort(key=lambda item: (-item[0], item[1]))
    builder = _EditBuilder(page_source)
    blocked = _blocked_spans(page_source)
    for _, _, candidate in scored:
        if len(builder.edits) >= max_links:
            break
        path = urlsplit(candidate.url).path or "/"
        phrases = [candidate.title, *_anchor_phrases(candidate.title, common)]
        for phrase in phrases:
            match = _free_occurrence(page_source, phrase, floor, blocked)
            if match is None:
                continue
            text = page_source[match[0] : match[1]]
            if builder.replace(
                match[0],
                match[1],
                f"[{text}]({path})",
                floor=floor,
                finding="internal_link",
                justification=f"related page: {candidate.title}",
                source_url=candidate.url,
            ):
                blocked.append(match)
                break
    return [e.model_copy(update={"kind": "add_link"}) for e in builder.edits]


_NO_LINK_ZONES = (
    re.compile(r"!?\[[^\]]*\]\([^)]*\)"),  # existing links and images
    re.compile(r"^\s*\[[^\]]+\]:.*$", re.MULTILINE),  # reference definitions
    re.compile(r"^#.*$", re.MULTILINE),  # headings
    re.compile(r"```.*?```", re.DOTALL),  # fenced code
    re.compile(r"`[^`\n]*`"),  # inline code
    re.compile(r"<a\b.*?</a>", re.DOTALL | re.IGNORECASE),  # HTML links
    re.compile(r"<[^>]+>"),  # any tag
)


def _blocked_spans(document: str) -> list[tuple[int, int]]:
    """Regions where no link may be added: existing links, headings, code, HTML tags, front matter."""
    spans = [(0, _body_offset(document))]
    for pattern in _NO_LINK_ZONES:
        spans.extend(m.span() for m in pattern.finditer(document))
    return spans


def _free_occurrence(
    document: str, phrase: str, floor: int, blocked: list[tuple[int, int]]
) -> tuple[int, int] | None:
    if len(phrase) < 4:
        return None
    for match in re.finditer(rf"(?<!\w){re.escape(phrase)}(?!\w)", document[floor:], re.IGNORECASE):
        start, end = match.start() + floor, match.end() + floor
        if not any(start < e and s < end for s, e in blocked):
            return start, end
    return None
