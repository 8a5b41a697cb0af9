"""Markdown content with YAML front matter: parse, dump, and the URL <-> file mapping.

The mapping is shared by the demo server (which renders the files) and the Markdown publisher (which
edits them), so both always agree on which file a URL is:

    /                -> index.md
    /guide/          -> guide.md, else guide/index.md
    /guide/setup/    -> guide/setup.md, else guide/setup/index.md
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import yaml

from sitesteward.errors import PolicyViolation

_FENCE = "---"


@dataclass
class Document:
    """A Markdown document: front matter mapping plus body text."""

    meta: dict[str, Any] = field(default_factory=dict)
    body: str = ""


def parse_document(text: str) -> Document:
    """Split YAML front matter (between ``---`` lines at the top) from the Markdown body.

    Malformed front matter is kept as body text rather than raising, so a broken file still renders.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.startswith(_FENCE + "\n") and not text.startswith(_FENCE + "\r\n"):
        return Document({}, text)
    rest = text.split("\n", 1)[1]
    end = rest.find("\n" + _FENCE)
    if rest.startswith(_FENCE):
        end = -1
        meta_text, body = "", rest.split("\n", 1)[1] if "\n" in rest else ""
    elif end < 0:
        return Document({}, text)
    else:
        meta_text = rest[:end]
        after = rest[end + 1 + len(_FENCE) :]
        body = after[1:] if after.startswith("\n") else after.lstrip("\r\n")
    try:
        meta = yaml.safe_load(meta_text) or {}
    except yaml.YAMLError:
        return Document({}, text)
    if not isinstance(meta, dict):
        return Document({}, text)
    return Document(meta, body)


def dump_document(document: Document) -> str:
    """Serialise a document back to front matter + body (keys keep their order)."""
    if not document.meta:
        return document.body
    meta = yaml.safe_dump(document.meta, sort_keys=False, allow_unicode=True, width=10_000)
    return f"{_FENCE}\n{meta}{_FENCE}\n{document.body}"


def candidate_files(url_path: str) -> list[PurePosixPath]:
    """The relative files that may hold the page at ``url_path``, in order of preference.

    Raises:
        PolicyViolation: the path tries to leave the content root (``..``, backslashes, NUL).
    """
    if "\x00" in url_path or "\\" in url_path:
        raise PolicyViolation(f"refusing content path {url_path!r}")
    parts = [p for p in url_path.split("/") if p]
    if any(p in {".", ".."} or p.startswith(".") for p in parts):
        raise PolicyViolation(f"refusing content path {url_path!r}")
    if not parts:
        return [PurePosixPath("index.md")]
    stem = PurePosixPath(*parts)
    if stem.suffix in {".html", ".htm"}:
        stem = stem.with_suffix("")
    return [stem.with_suffix(".md") if stem.suffix != ".md" else stem, stem / "index.md"]


def url_path_for(relative_file: PurePosixPath) -> str:
    """The URL path a content file is served at (inverse of :func:`candidate_files`)."""
    parts = list(relative_file.with_suffix("").parts)
    if parts and parts[-1] == "index":
        parts = parts[:-1]
    return "/" + "".join(f"{p}/" for p in parts)
