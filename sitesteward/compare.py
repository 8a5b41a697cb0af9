"""Compare a page with the sources it cites: deterministic checks first, an optional model judgement second.

Finding codes produced here (stable, for the README):

- ``source_unavailable``  a cited source could not be read; ``detail`` says *blocked* (401/403/429/bot
  wall: maybe fine for people) or *broken* (404/410, DNS, refused: the citation is dead).
- ``source_changed``      the source's main text differs from its snapshot at the page's last approved
  version (the comparison carries a unified diff).
- ``claim_unsupported``   a number, percentage, year or date in the citing sentence is no longer in the
  source's text (e.g. the page says 42 % and the source now says 57 %); when unambiguous the claim check
  proposes the replacement and the source sentence that carries it.
- ``page_drifted``        the page's own text changed since its last approved version.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Literal

from pydantic import Field

from sitesteward.models import Contract, Finding, LinkOutcome, Severity
from sitesteward.sources import Citation, SourceSnapshot, normalize_space, split_sentences, text_hash

FigureKind = Literal["percent", "number", "year", "date", "month"]

_MONTHS = {
    name: index
    for index, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}
_MONTH = r"(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_NUM = r"\d{1,3}(?:(?:,|\u00a0|\u202f| )\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_PATTERNS: list[tuple[FigureKind, re.Pattern[str]]] = [
    ("date", re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})\b")),
    ("date", re.compile(rf"\b{_MONTH}\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<y>\d{{4}})\b", re.I)),
    ("date", re.compile(rf"\b(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+{_MONTH}\s+(?P<y>\d{{4}})\b", re.I)),
    ("month", re.compile(rf"\b{_MONTH}\s+(?P<y>\d{{4}})\b", re.I)),
    ("percent", re.compile(rf"(?<![\w.])(?P<n>{_NUM})\s*(?:%|percent\b|per\s+cent\b|pct\b)", re.I)),
    ("year", re.compile(r"(?<![\w.,])(?P<n>(?:19|20)\d{2})(?![\w%]|[.,]\d)")),
    ("number", re.compile(rf"(?<![\w.,])(?P<n>{_NUM})(?![\w]|[.,]\d)")),
]
_FOOTNOTE_MARK = re.compile(r"\[\d{1,3}\]")
_WORD = re.compile(r"[a-zA-Z][a-zA-Z'-]+")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "will",
        "with",
        "than",
        "more",
        "less",
        "about",
        "over",
        "under",
        "per",
        "cent",
        "percent",
        "now",
    ]
)
#: Minimum word overlap (Jaccard) between the page sentence and a source sentence to propose a replacement.
MIN_SIMILARITY = 0.2
#: The unified diff kept in a comparison is cut after this many characters.
MAX_DIFF_CHARS = 20_000


class Figure(Contract):
    """A figure as written in a text and its normalised key (``percent:42``, ``date:2024-03-05``)."""

    raw: str
    kind: FigureKind
    key: str
    number: str = Field(description="The numeric part as written (for re-spelling a replacement).")


class ClaimCheck(Contract):
    """Whether a citing sentence's figure is still supported by the source; evidence-ready."""

    page_sentence: str
    source_url: str
    figure: str = Field(
        default="", description="The figure as the page writes it ('42%'); empty for a whole-sentence check."
    )
    supported: bool
    replacement: str | None = Field(default=None, description="The figure spelled like the page, e.g. '57%'.")
    source_quote: str | None = Field(default=None, description="The source sentence relied on.")
    method: Literal["deterministic", "llm"] = "deterministic"
    rationale: str = ""


class SourceDiff(Contract):
    """How a source's text changed since the snapshot at the page's last approved version."""

    url: str
    previous_hash: str
    current_hash: str
    previous_retrieved_at: datetime | None = None
    current_retrieved_at: datetime | None = None
    diff: str


class Comparison(Contract):
    """The result of comparing one page with its cited sources (persisted as evidence)."""

    page_url: str
    page_hash: str
    previous_page_hash: str | None = None
    compared_at: datetime
    citations: list[Citation] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    claims: list[ClaimCheck] = Field(default_factory=list)
    diffs: list[SourceDiff] = Field(default_factory=list)
    source_hashes: dict[str, str] = Field(default_factory=dict, description="url -> text hash compared.")


# --------------------------------------------------------------------------------------------- figures


def _clean_number(raw: str) -> str:
    digits = re.sub(r"[,\u00a0\u202f ]", "", raw)
    if "." in digits:
        digits = digits.rstrip("0").rstrip(".")
    return digits.lstrip("0") or "0"


def find_figures(text: str) -> list[Figure]:
    """Numbers, percentages, years and dates in ``text``, normalised ("42 %", "42 percent" -> percent:42).

    Footnote markers (``[3]``) are ignored. Each character belongs to at most one figure; dates win over
    years, percentages over plain numbers.
    """
    text = _FOOTNOTE_MARK.sub(lambda m: " " * len(m.group()), text)
    taken = [False] * len(text)
    found: list[tuple[int, Figure]] = []
    for kind, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            if any(taken[match.start() : match.end()]):
                continue
            groups = match.groupdict()
            if kind in {"date", "month"}:
                month_name = (groups.get("month") or "").lower().rstrip(".")
                month = _MONTHS.get(month_name) if month_name else int(groups["m"])
                year = int(groups["y"])
                if month is None or not 1 <= month <= 12:
                    continue
                if kind == "date":
                    day = int(groups["d"])
                    if not 1 <= day <= 31:
                        continue
                    key = f"date:{year:04d}-{month:02d}-{day:02d}"
                else:
                    key = f"month:{year:04d}-{month:02d}"
                number = groups["y"]
            else:
                number = groups["n"]
                key = f"{kind}:{_clean_number(number)}"
            for index in range(match.start(), match.end()):
                taken[index] = True
            found.append(
                (match.start(), Figure(raw=match.group().strip(), kind=kind, key=key, number=number))
            )
    return [figure for _, figure in sorted(found, key=lambda item: item[0])]


def _support_keys(figures: Iterable[Figure]) -> set[str]:
    """Every key a text supports: a date also supports its month and year, a year also the number."""
    keys: set[str] = set()
    for figure in figures:
        keys.add(figure.key)
        value = figure.key.split(":", 1)[1]
        if figure.kind == "date":
            keys.update({f"month:{value[:7]}", f"year:{value[:4]}", f"number:{value[:4]}"})
        elif figure.kind == "month":
            keys.update({f"year:{value[:4]}", f"number:{value[:4]}"})
        elif figure.kind == "year":
            keys.add(f"number:{value}")
        elif figure.kind == "number" and re.fullmatch(r"(19|20)\d{2}", value):
            keys.add(f"year:{value}")
    return keys


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if w.lower() not in _STOPWORDS}


def _similarity(left: str, right: str) -> float:
    a, b = _words(left), _words(right)
    return len(a & b) / len(a | b) if a and b else 0.0


def _respell(page_figure: Figure, source_figure: Figure) -> str:
    """The source's value written in the page's style ("42 percent" + "57%" -> "57 percent")."""
    if page_figure.kind in {"date", "month"} or page_figure.kind != source_figure.kind:
        return source_figure.raw
    return page_figure.raw.replace(page_figure.number, source_figure.number, 1)


def check_claims(sentence: str, source: SourceSnapshot) -> list[ClaimCheck]:
    """Check each figure of a citing sentence against the source's current text (deterministic).

    A figure is supported when the source text contains the same normalised value. For an unsupported
    one the replacement is proposed only when unambiguous: the source sentence most similar to the page
    sentence carries exactly as many new figures of that kind as the page has unsupported ones.
    """
    page_figures = find_figures(sentence)
    if not page_figures or not source.text:
        return []
    source_sentences = split_sentences(source.text)
    source_figures = {s: find_figures(s) for s in source_sentences}
    # "57%, up from 42% in 2019" still contains 42%, but as history: it no longer supports "42%".
    supported = _support_keys(
        f for text, figures in source_figures.items() for f in figures if not _historical(text, f.raw)
    )
    page_keys = {f.key for f in page_figures}
    checks: list[ClaimCheck] = []
    unsupported = [f for f in page_figures if f.key not in supported]
    proposals = _propose(sentence, unsupported, source_figures, page_keys)
    for figure in page_figures:
        if figure.key in supported:
            quote = next((s for s, figs in source_figures.items() if figure.key in _support_keys(figs)), None)
            checks.append(
                ClaimCheck(
                    page_sentence=sentence,
                    source_url=source.url,
                    figure=figure.raw,
                    supported=True,
                    source_quote=quote,
                    rationale=f"the source still says {figure.raw}",
                )
            )
            continue
        replacement, quote = proposals.get(figure.raw, (None, None))
        rationale = f"{figure.raw!r} is not in the source any more"
        if replacement:
            rationale += f"; the source now says {replacement!r}"
        checks.append(
            ClaimCheck(
                page_sentence=sentence,
                source_url=source.url,
                figure=figure.raw,
                supported=False,
                replacement=replacement,
                source_quote=quote,
                rationale=rationale,
            )
        )
    return checks


_HISTORY_CUES = ("from", "previously", "compared", "versus", "vs", "formerly")


def _historical(text: str, raw: str) -> bool:
    """Whether ``raw`` appears in ``text`` only as an earlier value ("up from 42%", "compared with 42%")."""
    index = text.find(raw)
    if index < 0:
        return False
    before = [word.strip(",;:()").lower() for word in text[:index].split()[-3:]]
    return any(word in _HISTORY_CUES for word in before)


def _context(text: str, raw: str) -> str:
    """Up to six words either side of ``raw`` in ``text`` (the figure's local context)."""
    index = text.find(raw)
    if index < 0:
        return text
    before = text[:index].split()[-6:]
    after = text[index + len(raw) :].split()[:6]
    return " ".join([*before, *after])


def _propose(
    sentence: str,
    unsupported: list[Figure],
    source_figures: dict[str, list[Figure]],
    page_keys: set[str],
) -> dict[str, tuple[str, str]]:
    proposals: dict[str, tuple[str, str]] = {}
    for kind in sorted({f.kind for f in unsupported}):
        wanted = [f for f in unsupported if f.kind == kind]
        scored: list[tuple[float, str, list[Figure]]] = []
        for source_sentence, figures in source_figures.items():
            fresh = [f for f in figures if f.kind == kind and f.key not in page_keys]
            if fresh:
                scored.append((_similarity(sentence, source_sentence), source_sentence, fresh))
        scored.sort(key=lambda item: -item[0])
        if not scored or scored[0][0] < MIN_SIMILARITY:
            continue
        best_score, best_sentence, fresh = scored[0]
        rivals = [
            s for s in scored[1:] if s[0] == best_score and [f.key for f in s[2]] != [f.key for f in fresh]
        ]
        if rivals:
            continue  # two equally good sentences say different things: a person has to choose
        if len(fresh) == len(wanted):
            pairs = list(zip(wanted, fresh, strict=True))
        elif len(wanted) == 1:
            # several new figures in the sentence: take the one whose neighbouring words match the page's
            page_context = _context(sentence, wanted[0].raw)
            ranked = sorted(
                ((_similarity(page_context, _context(best_sentence, f.raw)), i) for i, f in enumerate(fresh)),
                reverse=True,
            )
            if ranked[0][0] < MIN_SIMILARITY or ranked[0][0] == ranked[1][0]:
                continue
            pairs = [(wanted[0], fresh[ranked[0][1]])]
        else:
            continue
        for page_figure, source_figure in pairs:
            proposals[page_figure.raw] = (_respell(page_figure, source_figure), best_sentence)
    return proposals


# --------------------------------------------------------------------------------------------- compare


def unified_diff(previous: str, current: str, *, url: str = "source") -> str:
    """A readable unified diff of two texts, one sentence per line (cut at ``MAX_DIFF_CHARS``)."""
    diff = "\n".join(
        difflib.unified_diff(
            split_sentences(previous),
            split_sentences(current),
            fromfile=f"{url} (approved)",
            tofile=f"{url} (now)",
            lineterm="",
            n=1,
        )
    )
    return diff if len(diff) <= MAX_DIFF_CHARS else diff[:MAX_DIFF_CHARS] + "\n... (diff cut)"


def _unavailable_detail(snapshot: SourceSnapshot) -> str:
    status = f" (HTTP {snapshot.status})" if snapshot.status else ""
    if snapshot.outcome == LinkOutcome.blocked:
        return f"blocked{status}: the source refused our fetch; it may still be fine for readers"
    if snapshot.outcome == LinkOutcome.broken:
        return f"broken{status}: the source is gone; the citation is dead"
    return f"error{status}: the source could not be read this time"


ClaimJudge = Callable[[str, SourceSnapshot], ClaimCheck]


def compare_page(
    page_url: str,
    page_text: str,
    citations: Sequence[Citation],
    current_sources: Sequence[SourceSnapshot],
    previous_sources: Sequence[SourceSnapshot] = (),
    previous_page_hash: str | None = None,
    *,
    judge: ClaimJudge | None = None,
    compared_at: datetime | None = None,
) -> Comparison:
    """Compare one page with its cited sources.

    Args:
        page_url: The page.
        page_text: The page's main text now.
        citations: What the page cites (see :func:`sitesteward.sources.cited_sources`).
        current_sources: Snapshots fetched now (their ``outcome`` says whether the fetch worked).
        previous_sources: Snapshots taken at the page's last approved version.
        previous_page_hash: The page text hash at its last approved version (None: first version).
        judge: Optional second opinion (e.g. :func:`sitesteward.llm.judge_claim` bound to a client), asked
            only about citing sentences without figures, whose sources changed.
        compared_at: Timestamp for the evidence (now, UTC, when omitted).

    Returns:
        Findings, claim checks and source diffs, in a stable order.
    """
    page_hash = text_hash(page_text)
    findings: list[Finding] = []
    if previous_page_hash and previous_page_hash != page_hash:
        findings.append(
            Finding(
                code="page_drifted",
                severity=Severity.notice,
                url=page_url,
                detail="the page changed since its last approved version",
            )
        )
    current = {s.url: s for s in current_sources}
    previous = {s.url: s for s in previous_sources}
    claims: list[ClaimCheck] = []
    diffs: list[SourceDiff] = []
    hashes: dict[str, str] = {}
    for url in sorted({c.url for c in citations} | set(current)):
        snapshot = current.get(url)
        if snapshot is None:
            continue
        hashes[url] = snapshot.text_hash
        if snapshot.outcome not in {LinkOutcome.ok, LinkOutcome.redirected}:
            severity = Severity.warning if snapshot.outcome == LinkOutcome.blocked else Severity.error
            findings.append(
                Finding(
                    code="source_unavailable",
                    severity=severity,
                    url=page_url,
                    target=url,
                    detail=_unavailable_detail(snapshot),
                )
            )
            continue
        before = previous.get(url)
        changed = bool(before and before.text_hash and snapshot.text_hash != before.text_hash)
        if before and changed:
            diff = unified_diff(before.text, snapshot.text, url=url)
            diffs.append(
                SourceDiff(
                    url=url,
                    previous_hash=before.text_hash,
                    current_hash=snapshot.text_hash,
                    previous_retrieved_at=before.retrieved_at,
                    current_retrieved_at=snapshot.retrieved_at,
                    diff=diff,
                )
            )
            findings.append(
                Finding(
                    code="source_changed",
                    severity=Severity.warning,
                    url=page_url,
                    target=url,
                    detail=f"the source's text changed since {before.retrieved_at:%Y-%m-%d}",
                )
            )
        for citation in (c for c in citations if c.url == url):
            checks = check_claims(citation.sentence, snapshot)
            if not checks and judge is not None and changed:
                checks = [judge(citation.sentence, snapshot)]
            claims.extend(checks)
            for check in (c for c in checks if not c.supported):
                detail = check.rationale
                if check.source_quote:
                    detail += f' (source: "{_shorten(check.source_quote)}")'
                findings.append(
                    Finding(
                        code="claim_unsupported",
                        severity=Severity.error,
                        url=page_url,
                        target=url,
                        detail=f"{_shorten(citation.sentence)}: {detail}",
                    )
                )
    return Comparison(
        page_url=page_url,
        page_hash=page_hash,
        previous_page_hash=previous_page_hash,
        compared_at=compared_at or datetime.now(UTC),
        citations=list(citations),
        findings=findings,
        claims=claims,
        diffs=diffs,
        source_hashes=hashes,
    )


def _shorten(text: str, limit: int = 200) -> str:
    text = normalize_space(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
